# A guest that speaks TCP by hand through an AF_PACKET socket on eth0, the
# guest side of pasta's tap, to check that pasta retransmits the part of a
# super-frame the guest did not acknowledge. Used by tests/tso_retransmit.rs;
# pasta runs without --config-net and eth0 has no address (and IPv6 off), so
# the namespace's kernel neither answers nor resets anything.
#
#   python3 tso_retransmit.py FAMILY ME DST PORT SIZE SEED
#
# FAMILY is 4 or 6; ME the guest's address (pasta's default, the host's),
# DST:PORT a server that sends SIZE bytes of random.Random(SEED) then
# closes. Steps, each with a deadline:
#   1. handshake: SYN with MSS 1460 and window scale 7 (128 KiB window);
#   2. no ACK: pasta sends what it has, then its retransmission timer
#      resends it all at once, as super-frames (frames longer than the
#      MTU); waits for one with more than 6 segments of payload;
#   3. ACKs a sequence number X strictly inside that super-frame (its start
#      + 5 * 1460 + 100), then sends the same ACK three times more (duplicate
#      ACKs: a fast retransmit), and waits for a frame starting exactly at X;
#   4. ACKs everything it gets in order until pasta's FIN, then closes.
# Every frame from pasta must have a consistent length (the frame is its IP
# header's length plus the Ethernet header's) and payload equal to the
# pattern at its offset. Prints "retransmit X_OFFSET LEN X_SEQ", "max_frame N",
# "super_frames N" and "recv SIZE"; exits non-zero (with a message) on any
# failure.
import random
import socket
import struct
import sys
import time

IFACE = "eth0"
PASTA = b"\x9a\x55\x9a\x55\x9a\x55"
MSS = 1460
WS = 7
# 128 KiB (1024 << WS) in flight at most: two super-frames, which the
# socket's receive buffer holds even at its default limit (rmem_max; only
# the initial namespace's root may force more).
WINDOW = 1024
PACKET_OUTGOING = 4

family, me, dst, port, size, seed = sys.argv[1:7]
V6 = family == "6"
AF = socket.AF_INET6 if V6 else socket.AF_INET
ME, DST = socket.inet_pton(AF, me), socket.inet_pton(AF, dst)
PORT, SIZE = int(port), int(size)
PATTERN = random.Random(int(seed)).randbytes(SIZE)
SPORT = 40123
ETH_HDR = 14
L3_HDR = 40 if V6 else 20


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    t = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF


sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sock.bind((IFACE, 0))
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
# Our MAC from the socket, not from /sys: pasta's namespace sees the host's
# sysfs (see flood_misc.py).
OUR = sock.getsockname()[4]


def send_tcp(seq, ack, flags, opts=b"", payload=b""):
    off = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", SPORT, PORT, seq, ack, off << 4, flags, WINDOW, 0, 0)
    tcp += opts + payload
    if V6:
        pseudo = ME + DST + struct.pack("!IxxxB", len(tcp), 6)
    else:
        pseudo = ME + DST + struct.pack("!xBH", 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    if V6:
        l3 = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + ME + DST
        etype = 0x86DD
    else:
        l3 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, ME, DST)
        l3 = l3[:10] + struct.pack("!H", csum(l3)) + l3[12:]
        etype = 0x0800
    sock.send(PASTA + OUR + struct.pack("!H", etype) + l3 + tcp)


stats = {"max_frame": 0, "super_frames": 0}


def recv_segment(deadline):
    """The next TCP segment of our connection from pasta: (seq, ack, flags,
    payload), after checking its lengths; None at the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            frame, addr = sock.recvfrom(1 << 17)
        except socket.timeout:
            return None
        if addr[2] == PACKET_OUTGOING or frame[6:12] != PASTA:
            continue
        etype = struct.unpack("!H", frame[12:14])[0]
        if etype != (0x86DD if V6 else 0x0800):
            continue
        l3 = frame[ETH_HDR:]
        if V6:
            if l3[6] != 6 or l3[8:24] != DST or l3[24:40] != ME:
                continue
            l3_len = 40 + struct.unpack("!H", l3[4:6])[0]
        else:
            if l3[9] != 6 or l3[12:16] != DST or l3[16:20] != ME:
                continue
            if l3[0] != 0x45:
                fail(f"IPv4 header {l3[0]:#x}")
            l3_len = struct.unpack("!H", l3[2:4])[0]
        if len(frame) != ETH_HDR + l3_len:
            fail(f"frame of {len(frame)} bytes, IP says {ETH_HDR + l3_len}")
        tcp = l3[L3_HDR:l3_len]
        sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
        if (sport, dport) != (PORT, SPORT):
            continue
        hlen = (off >> 4) * 4
        if hlen < 20 or hlen > len(tcp):
            fail(f"TCP header length {hlen} in a segment of {len(tcp)} bytes")
        stats["max_frame"] = max(stats["max_frame"], len(frame))
        if len(frame) > ETH_HDR + L3_HDR + 20 + MSS:
            stats["super_frames"] += 1
        return seq, ack, flags, tcp[hlen:]


SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
ISS = 1000
opts = struct.pack("!BBH", 2, 4, MSS) + struct.pack("!BBBB", 1, 3, 3, WS)
end = time.monotonic() + 10
while True:
    send_tcp(ISS, 0, SYN, opts)
    seg = recv_segment(min(end, time.monotonic() + 1))
    if seg and seg[2] & (SYN | ACK) == SYN | ACK and seg[1] == ISS + 1:
        break
    if seg and seg[2] & RST:
        fail("reset instead of SYN,ACK")
    if time.monotonic() > end:
        fail("no SYN,ACK")
base = (seg[0] + 1) & 0xFFFFFFFF
send_tcp(ISS + 1, base, ACK)


def offset(seq):
    return (seq - base) & 0xFFFFFFFF


def check(seq, payload):
    o = offset(seq)
    if o + len(payload) > SIZE or PATTERN[o : o + len(payload)] != payload:
        fail(f"{len(payload)} bytes at offset {o} are not the pattern's")
    return o


# 2. No ACK yet: a super-frame, from the first send or the retransmission
# timer's.
end = time.monotonic() + 20
while True:
    seg = recv_segment(end)
    if seg is None:
        fail(f"no super-frame of more than 6 segments: {stats}")
    seq, _, flags, payload = seg
    if flags & RST:
        fail("reset")
    if payload:
        start = check(seq, payload)
        if len(payload) > 6 * MSS:
            break
# 3. A partial ACK inside it, then duplicates.
x = start + 5 * MSS + 100
ack = (base + x) & 0xFFFFFFFF
for _ in range(4):
    send_tcp(ISS + 1, ack, ACK)
end = time.monotonic() + 20
while True:
    seg = recv_segment(end)
    if seg is None:
        fail(f"nothing retransmitted from offset {x}")
    seq, _, flags, payload = seg
    if flags & RST:
        fail("reset")
    if payload:
        o = check(seq, payload)
        if o == x:
            print(f"retransmit {x} {len(payload)} {ack}", flush=True)
            break
# 4. Everything, ACKed in order.
got = bytearray(PATTERN[:x])
end = time.monotonic() + 60
fin = False
while not fin:
    seg = recv_segment(end)
    if seg is None:
        fail(f"stalled at {len(got)} of {SIZE} bytes")
    seq, _, flags, payload = seg
    if flags & RST:
        fail("reset")
    o = offset(seq)
    if payload:
        check(seq, payload)
        if o <= len(got) < o + len(payload):
            got += payload[len(got) - o :]
    if flags & FIN and o + len(payload) == len(got) == SIZE:
        fin = True
    send_tcp(ISS + 1, (base + len(got) + fin) & 0xFFFFFFFF, ACK)
if bytes(got) != PATTERN:
    fail("data differs")
# Our FIN, and pasta's ACK of it.
send_tcp(ISS + 1, (base + SIZE + 1) & 0xFFFFFFFF, FIN | ACK)
end = time.monotonic() + 10
while True:
    seg = recv_segment(end)
    if seg is None:
        fail("our FIN was not acknowledged")
    if seg[1] == ISS + 2:
        break
print(f"max_frame {stats['max_frame']}", flush=True)
print(f"super_frames {stats['super_frames']}", flush=True)
print(f"recv {len(got)}", flush=True)
