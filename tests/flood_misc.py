# Floods and forbidden frames from the guest, through an AF_PACKET socket on
# eth0 (the guest side of pasta's tap). Used by tests/flood_misc.rs.
#
#   forbidden PORT GW4 ME4 GW6 ME6
#       frames the guest must not get through (unspecified, broadcast and
#       multicast destinations, spoofed sources), all UDP to PORT, then one
#       good datagram "ok" from ME4 to GW4:PORT; prints the number sent.
#   measure KIND SECS SINK PORT GW4 ME4 GW6 ME6 RATE FRAMES
#       a TCP transfer to SINK:PORT; its rate over SECS undisturbed, then
#       while another process floods FRAMES frames of KIND (udp_ports,
#       icmp_echo, arp, ndp, dhcp, dhcpv6, malformed) at RATE frames per
#       second (0: as fast as it can; at most 30 s), then over SECS after
#       the flood; prints "rates UNDISTURBED DISTURBED AFTER frames N".
import multiprocessing
import os
import socket
import struct
import sys
import threading
import time

IFACE = "eth0"

def our_mac():
    """The guest interface's own MAC address. Not from /sys/class/net:
    pasta's namespace sees the host's sysfs there, so that would be the
    host's interface of the same name, and pasta, which learns the
    guest's address from the frames it gets, would then send the
    transfer's ACKs to a MAC the guest's kernel drops (PACKET_OTHERHOST)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((IFACE, 0))
    mac = s.getsockname()[4]
    s.close()
    return mac


OUR = our_mac()
PASTA = b"\x9a\x55\x9a\x55\x9a\x55"
BCAST = b"\xff" * 6


def csum(data):
    if len(data) % 2:
        data += b"\0"
    t = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF


def a4(s):
    return socket.inet_aton(s)


def a6(s):
    return socket.inet_pton(socket.AF_INET6, s)


def eth(dst, ethertype, payload):
    return dst + OUR + struct.pack("!H", ethertype) + payload


def ip4(proto, payload, src, dst):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def udp4(src, dst, sport, dport, data, dmac=PASTA):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return eth(dmac, 0x0800, ip4(17, u, src, dst))


def ip6(nh, payload, src, dst):
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, 64) + src + dst + payload


def l4_6(nh, src, dst, seg, off):
    pseudo = src + dst + struct.pack("!IxxxB", len(seg), nh)
    c = csum(pseudo + seg)
    return seg[:off] + struct.pack("!H", c) + seg[off + 2:]


def udp6(src, dst, sport, dport, data, dmac=PASTA):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return eth(dmac, 0x86DD, ip6(17, l4_6(17, src, dst, u, 6), src, dst))


def icmp6(src, dst, typ, body, dmac=PASTA):
    m = struct.pack("!BBH", typ, 0, 0) + body
    return eth(dmac, 0x86DD, ip6(58, l4_6(58, src, dst, m, 2), src, dst))


def forbidden(port, gw4, me4, gw6, me6):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((IFACE, 0))
    prefix4 = me4[:3]
    frames = [
        udp4(me4, a4("0.0.0.0"), 40001, port, b"unspecified"),
        udp4(me4, a4("255.255.255.255"), 40002, port, b"broadcast", BCAST),
        udp4(me4, prefix4 + b"\xff", 40003, port, b"subnet broadcast", BCAST),
        udp4(me4, a4("224.0.0.1"), 40004, port, b"multicast"),
        udp4(prefix4 + b"\x4d", gw4, 40005, port, b"spoofed"),
        udp4(a4("0.0.0.0"), gw4, 40006, port, b"zero source"),
        udp6(me6, a6("::"), 40007, port, b"unspecified6"),
        udp6(me6, a6("ff02::1"), 40008, port, b"multicast6"),
        udp6(a6("2001:db9::77"), gw6, 40009, port, b"spoofed6"),
        udp6(a6("::"), gw6, 40010, port, b"zero source6"),
    ]
    for f in frames:
        s.send(f)
    s.send(udp4(me4, gw4, 40100, port, b"ok"))
    print(len(frames))


def flood_frames(kind, gw4, me4, gw6, me6):
    """A generator of frames of one kind, endless."""
    ll = a6("fe80::5054:ff:fe00:1")
    if kind == "udp_ports":
        # Tens of thousands of source ports toward one port of the host.
        base = bytearray(udp4(me4, gw4, 1024, 9, b"x" * 32))
        port = 1024
        while True:
            base[34:36] = struct.pack("!H", port)
            yield bytes(base)
            port = 1024 if port == 65535 else port + 1
    elif kind == "icmp_echo":
        frames = []
        for ident in range(64):
            m = struct.pack("!BBHHH", 8, 0, 0, 0x7000 + ident, 1) + b"p" * 56
            m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
            frames.append(eth(PASTA, 0x0800, ip4(1, m, me4, gw4)))
        while True:
            yield from frames
    elif kind == "arp":
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, OUR, me4, b"\0" * 6, gw4)
        f = eth(BCAST, 0x0806, arp)
        while True:
            yield f
    elif kind == "ndp":
        rs = icmp6(ll, a6("ff02::2"), 133, b"\0" * 4, b"\x33\x33\0\0\0\x02")
        ns = icmp6(ll, a6("ff02::1:ff00:1"), 135, b"\0" * 4 + a6("fe80::1"), b"\x33\x33\xff\0\0\x01")
        while True:
            yield rs
            yield ns
    elif kind == "dhcp":
        bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x1234, 0, 0x8000,
                            b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, OUR, b"", b"")
        opts = b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\xff"
        f = udp4(a4("0.0.0.0"), a4("255.255.255.255"), 68, 67, bootp + opts, BCAST)
        while True:
            yield f
    elif kind == "dhcpv6":
        duid = struct.pack("!HH", 3, 1) + OUR
        msg = b"\x01\x00\x12\x34" + struct.pack("!HH", 1, len(duid)) + duid
        msg += struct.pack("!HHIII", 3, 12, 1, 0, 0)
        f = udp6(ll, a6("ff02::1:2"), 546, 547, msg, b"\x33\x33\0\x01\0\x02")
        while True:
            yield f
    elif kind == "malformed":
        good = udp4(me4, gw4, 40000, 9, b"m" * 20)
        bad = [
            good[:14] + b"\x46" + good[15:],  # options (IHL 6)
            good[:24] + b"\0\0" + good[26:],  # bad header checksum
            good[:12] + b"\x88\xcc" + good[14:],  # unknown EtherType
            good[:20],  # truncated IPv4 header
            good[:14] + b"\x65" + good[15:],  # wrong version
            eth(PASTA, 0x86DD, b"\x60" + b"\0" * 10),  # truncated IPv6
        ]
        while True:
            yield from bad
    else:
        raise SystemExit(f"unknown flood {kind}")


def flood(kind, args, count, fps, frames):
    # Below the transfer's priority: on a shared machine (the test hosts
    # run many jobs on two cores) a flooder competing on equal terms takes
    # the transfer's endpoints' CPU time, and the ratio would measure the
    # scheduler. Niced, it still sends as fast as the CPU it gets allows:
    # what is measured is what pasta does with the frames.
    os.nice(10)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((IFACE, 0))
    start = time.monotonic()
    end = start + 30
    n = 0
    for f in flood_frames(kind, *args):
        if n >= frames:
            break
        try:
            s.send(f)
        except OSError:
            pass  # a full queue: the frame is lost, as on a real link
        n += 1
        if n % 256 == 0:
            now = time.monotonic()
            if now >= end:
                break
            if fps:
                ahead = n / fps - (now - start)
                if ahead > 0:
                    time.sleep(ahead)
    count.value = n


def measure(kind, secs, sink, port, args, fps, frames):
    c = socket.create_connection((sink, port), timeout=10)
    sent = [0]
    stop = threading.Event()
    chunk = b"\0" * (256 << 10)

    def sender():
        while not stop.is_set():
            sent[0] += c.send(chunk)

    t = threading.Thread(target=sender, daemon=True)
    t.start()

    def rate(window):
        time.sleep(0.3)  # settle (a new flow's first window)
        b0, t0 = sent[0], time.monotonic()
        time.sleep(window)
        return (sent[0] - b0) / (time.monotonic() - t0)

    before = rate(secs)
    count = multiprocessing.Value("q", 0)
    p = multiprocessing.Process(target=flood, args=(kind, args, count, fps, frames))
    # The rate during the flood: from its start to its end.
    b0, t0 = sent[0], time.monotonic()
    p.start()
    p.join()
    during = (sent[0] - b0) / (time.monotonic() - t0)
    after = rate(secs)
    stop.set()
    t.join()
    c.close()
    print(f"rates {before:.0f} {during:.0f} {after:.0f} frames {count.value}", flush=True)


def main():
    mode = sys.argv[1]
    if mode == "forbidden":
        port = int(sys.argv[2])
        gw4, me4, gw6, me6 = a4(sys.argv[3]), a4(sys.argv[4]), a6(sys.argv[5]), a6(sys.argv[6])
        forbidden(port, gw4, me4, gw6, me6)
    elif mode == "measure":
        kind, secs, sink, port = sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        args = (a4(sys.argv[6]), a4(sys.argv[7]), a6(sys.argv[8]), a6(sys.argv[9]))
        measure(kind, secs, sink, port, args, int(sys.argv[10]), int(sys.argv[11]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    sys.stdout.flush()
    os._exit(0)


main()
