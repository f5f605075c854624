#!/usr/bin/env python3
"""Seeds for the `frame` and `tcp` fuzz targets from a pcap file that
pasta or passt wrote (`--pcap FILE`): frames the guest sent become `frame`
inputs (each alone, and all of them in runs of up to 16), its TCP
conversations become `tcp` step lists (see src/fuzz/datapath.rs for both
formats).

    pcap_seeds.py FILE.pcap OUT_DIR   # writes OUT_DIR/frame, OUT_DIR/tcp
"""
import hashlib
import os
import struct
import sys

OUR_MAC = bytes.fromhex("9a559a559a55")


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        yield data[off + 16 : off + 16 + incl]
        off += 16 + incl


def from_guest(fr):
    return len(fr) >= 14 and fr[6:12] != OUR_MAC


def write(d, blob):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(blob).hexdigest()), "wb") as f:
        f.write(blob)


def frame_input(frs):
    return b"".join(struct.pack(">H", len(fr)) + fr for fr in frs)


def tcp_steps(frs):
    """The guest's segments of its IPv4 TCP connections, as `tcp` steps:
    the first SYN with its real ISN, then in-order segments with the
    guest's flags, window, options and payload length."""
    out = b""
    started = False
    for fr in frs:
        if fr[12:14] != b"\x08\x00" or fr[23] != 6:
            continue
        ihl = (fr[14] & 15) * 4
        t = fr[14 + ihl :]
        total = struct.unpack_from(">H", fr, 16)[0]
        doff = (t[12] >> 4) * 4
        plen = total - ihl - doff
        flags = t[13] & 0x3F
        seq = t[4:8]
        wnd = t[14:16]
        opts = t[20:doff]
        mss = ws = None
        i = 0
        while i < len(opts):
            k = opts[i]
            if k == 0:
                break
            if k == 1:
                i += 1
                continue
            n = opts[i + 1] if i + 1 < len(opts) else 2
            if k == 2 and n == 4:
                mss = opts[i + 2 : i + 4]
            if k == 3 and n == 3:
                ws = opts[i + 2 : i + 3]
            i += max(n, 2)
        opt = (1 if mss else 0) | (2 if ws else 0)
        ob = (mss or b"") + (ws or b"")
        if flags & 0x02 and not started:
            started = True
            out += bytes([0, flags, 3]) + seq + bytes([0]) + wnd + bytes([opt]) + ob + bytes([0])
            continue
        if not started:
            continue
        big = plen > 255
        ln = min(plen // 64, 255) if big else plen
        out += bytes([0, flags, 0x80 if big else 0, 0]) + wnd + bytes([opt]) + ob + bytes([ln])
    return out


def main():
    path, out = sys.argv[1], sys.argv[2]
    guest = [fr for fr in frames(path) if from_guest(fr)]
    for fr in guest:
        if len(fr) <= 4096:
            write(os.path.join(out, "frame"), frame_input([fr]))
    for i in range(0, len(guest), 16):
        write(os.path.join(out, "frame"), frame_input(guest[i : i + 16]))
    steps = tcp_steps(guest)
    if steps:
        write(os.path.join(out, "tcp"), steps)


if __name__ == "__main__":
    main()
