#!/usr/bin/env python3
"""Seed inputs for the parser fuzz targets (fuzz/fuzz_targets), from real data.

    scripts/fuzz_seeds.py OUTDIR [PCAP]

writes OUTDIR/TARGET/NAME for the targets stream, dns_name, cli, netlink and
vhost_user, in each target's input format (see src/fuzz/parsers.rs):

- stream: the frames of PCAP (a `--pcap` capture of a test run), each with
  its 4-byte big-endian length, in runs of a few frames, cut at a few places;
- dns_name: the domain names of the test suite and of resolv.conf;
- cli: the command lines of src/conf/cli.rs's tests, tests/consumers.rs and
  the consumers inventory (/work/shared/passt-inventory.md);
- netlink: this machine's kernel replies to the link, address and route
  dumps pasta makes (sequence number 1);
- vhost_user: a front-end session as QEMU runs it (features, one memory
  region, rings 0 and 1 set up), a frame queued by the guest on the
  transmit ring and buffers on the receive ring, then a kick and a flush.

The corpora committed under fuzz/corpus/ are these seeds minimised with
`cargo fuzz cmin`, grown by fuzzing.
"""

import os
import re
import socket
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pcap_frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off, frames = 24, []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off : off + 16])
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


def stream_seeds(out, pcap):
    frames = pcap_frames(pcap) if pcap else []
    # Distinct shapes first (protocol, length), a few frames per seed.
    seen, pick = set(), []
    for fr in frames:
        key = (fr[12:14], fr[23:24] if fr[12:14] == b"\x08\x00" else fr[20:21], len(fr) // 256)
        if key not in seen and 14 <= len(fr) <= 65535:
            seen.add(key)
            pick.append(fr)
    for i in range(0, len(pick), 3):
        group = pick[i : i + 3]
        body = b"".join(struct.pack(">I", len(fr)) + fr for fr in group)
        # Cut in the middle of the first length prefix, after the first
        # frame and one byte at a time for a while: the reassembly's cases.
        cuts = [2, 4 + len(group[0]) - 2, 1, 1, 1]
        ctl = bytes([len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts)
        put(out, "stream", f"pcap-{i // 3:03}", ctl + body)
    # A bad length after a good frame, and a runt.
    if pick:
        fr = pick[0]
        put(out, "stream", "bad-length", b"\0" + struct.pack(">I", len(fr)) + fr + struct.pack(">I", 70000))
    put(out, "stream", "runt", b"\0" + struct.pack(">I", 13) + bytes(13))


def dns_seeds(out):
    names = [
        "example.com", "passt.top", "www.example.com.", "fqdn1.passt.test",
        "a.b.c.d.e.f", "localdomain", "search.example.org", "x" * 63 + ".com",
    ]
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                w = line.split()
                if w and w[0] in ("search", "domain"):
                    names += w[1:]
    except OSError:
        pass
    put(out, "dns_name", "list-300", struct.pack("<H", 300) + "\n".join(names).encode())
    put(out, "dns_name", "list-40", struct.pack("<H", 40) + b"example.com\nfoo.example.com\nbar.foo.example.com")
    put(out, "dns_name", "fqdn", struct.pack("<H", 255) + b"fqdn1.passt.test.")


def rust_strings(text):
    """String literals of Rust source, continuation lines joined."""
    text = re.sub(r"\\\n\s*", "", text)
    return re.findall(r'"((?:[^"\\]|\\.)*)"', text)


def cli_seeds(out):
    lines = set()
    with open(os.path.join(ROOT, "src/conf/cli.rs")) as f:
        text = f.read()
    for s in rust_strings(text[text.index("mod tests") :]):
        if s.startswith("-") and len(s) > 1:
            lines.add(s)
    with open(os.path.join(ROOT, "tests/consumers.rs")) as f:
        text = f.read()
    for block in re.findall(r"\.pasta\(&\[(.*?)\]\)", text, re.S):
        lines.add(" ".join(rust_strings(block)))
    try:
        with open("/work/shared/passt-inventory.md") as f:
            for m in re.findall(r"`((?:pasta|passt) -[^`]*)`", f.read()):
                lines.add(m.split(" ", 1)[1].replace("…", "1"))
    except OSError:
        pass
    for i, line in enumerate(sorted(lines)):
        put(out, "cli", f"argv-{i:03}", b"\0".join(w.encode() for w in line.split()))
    for i, spec in enumerate(["22", "8080:80", "127.0.0.1/8080-8081:80-81", "[::1]/53", "%lo/22",
                              "all", "auto", "none", "~1000-2000", "1-1024,~22", "0.0.0.0%eth0/80"]):
        put(out, "cli", f"spec-{i:02}", spec.encode())


# Netlink message types and flags (linux/rtnetlink.h, linux/netlink.h).
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE = 18, 22, 26
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300


def netlink_seeds(out):
    reqs = {
        "links": (RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0)),
        "addrs4": (RTM_GETADDR, struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)),
        "addrs6": (RTM_GETADDR, struct.pack("=BBBBI", socket.AF_INET6, 0, 0, 0, 0)),
        "routes4": (RTM_GETROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 0, 0, 1, 0)),
        "routes6": (RTM_GETROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET6, 0, 0, 0, 254, 0, 0, 1, 0)),
    }
    for name, (mtype, body) in reqs.items():
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        s.bind((0, 0))
        s.sendto(struct.pack("=IHHII", 16 + len(body), mtype, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body, (0, 0))
        seed, done = b"", False
        while not done:
            d = s.recv(65536)
            seed += struct.pack("<H", len(d)) + d
            off = 0
            while off + 16 <= len(d):
                ln, t = struct.unpack("=IH", d[off : off + 6])
                done |= t in (2, 3)  # NLMSG_ERROR, NLMSG_DONE
                off += (ln + 3) & ~3
                if ln < 16:
                    break
        s.close()
        put(out, "netlink", name, seed[:60000])
    # An error reply (EEXIST) and an acknowledgement.
    err = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -17) + struct.pack("=IHHII", 16, 16, 5, 1, 0)
    put(out, "netlink", "eexist", struct.pack("<H", len(err)) + err)


# vhost_user: opcodes of src/fuzz/parsers.rs::vhost_user.
OP_FEATURES, OP_MEM, OP_NUM, OP_ADDR, OP_BASE, OP_KICK, OP_CALL = 0, 1, 2, 3, 4, 5, 6
OP_WRITE, OP_RECV, OP_FLUSH = 12, 14, 15
VMM = 0x7F0000000000  # QEMU's address of the region
GPA = 0x100000
QSIZE = 8


def vhost_seeds(out):
    # VERSION_1 (32), MRG_RXBUF (15), CSUM (0), GUEST_CSUM (1), EVENT_IDX (29)
    feats = (1 << 32) | (1 << 15) | 1 | 2 | (1 << 29)
    ops = bytes([OP_FEATURES]) + struct.pack("<Q", feats)
    ops += bytes([OP_MEM, 1]) + struct.pack("<QQQQ", GPA, 64 << 10, VMM, 0)

    def ring(q):
        base = q * 0x1000
        desc, avail, used = base, base + 16 * QSIZE, base + 0x800
        return desc, avail, used

    for q in (0, 1):
        desc, avail, used = ring(q)
        ops += bytes([OP_NUM, q]) + struct.pack("<I", QSIZE)
        ops += bytes([OP_ADDR, q]) + struct.pack("<IQQQQ", 0, VMM + desc, VMM + used, VMM + avail, 0)
        ops += bytes([OP_BASE, q]) + struct.pack("<I", 0)
        ops += bytes([OP_KICK, q, 0])
        ops += bytes([OP_CALL, q])

    def write(off, data):
        return bytes([OP_WRITE]) + struct.pack("<HB", off, len(data)) + data

    # Transmit ring (1): one chain of two descriptors, header then frame.
    desc, avail, used = ring(1)
    buf = 0x8000
    frame = bytes.fromhex("ffffffffffff02000000000108060001080006040001020000000001c0000202000000000000c0000201")
    hdr = bytes(12)
    d0 = struct.pack("<QIHH", GPA + buf, len(hdr), 1, 1)  # NEXT
    d1 = struct.pack("<QIHH", GPA + buf + 0x100, len(frame), 0, 0)
    ops += write(desc, d0 + d1)
    ops += write(buf, hdr) + write(buf + 0x100, frame)
    ops += write(avail, struct.pack("<HHH", 0, 1, 0))
    ops += bytes([OP_RECV, 1, 0])
    # Receive ring (0): two writable buffers, then a frame to the guest.
    desc, avail, used = ring(0)
    rxbuf = 0x9000
    ds = b"".join(struct.pack("<QIHH", GPA + rxbuf + i * 0x800, 0x800, 2, 0) for i in range(2))
    ops += write(desc, ds)
    ops += write(avail, struct.pack("<HHHH", 0, 2, 0, 1))
    ops += bytes([OP_FLUSH, 0, 0]) + struct.pack("<HHHH", len(frame) - 1, 0, 0, 0) + frame
    put(out, "vhost_user", "session", ops)


def main():
    out = sys.argv[1]
    pcap = sys.argv[2] if len(sys.argv) > 2 else None
    stream_seeds(out, pcap)
    dns_seeds(out)
    cli_seeds(out)
    netlink_seeds(out)
    vhost_seeds(out)


if __name__ == "__main__":
    main()
