# Sends TCP SYNs from the guest's IPv6 address to IPv4-mapped IPv6
# destinations (::ffff:127.0.0.1 and friends) through an AF_PACKET socket on
# eth0, the guest side of pasta's tap. Used by tests/bad_input.rs; argv:
# PORT SRC6. Prints the number of frames sent.
import socket
import struct
import sys

port, src = int(sys.argv[1]), socket.inet_pton(socket.AF_INET6, sys.argv[2])
IFACE = "eth0"
OUR = bytes.fromhex(open(f"/sys/class/net/{IFACE}/address").read().strip().replace(":", ""))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    t = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF


s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((IFACE, 0))
sent = 0
for i, dst in enumerate(["::ffff:127.0.0.1", "::ffff:127.0.0.2", "::ffff:0.0.0.0"]):
    dst = socket.inet_pton(socket.AF_INET6, dst)
    tcp = struct.pack("!HHIIBBHHH", 40000 + i, port, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + dst
    frame = b"\xff" * 6 + OUR + struct.pack("!H", 0x86DD) + ip6 + tcp
    s.send(frame)
    sent += 1
print(sent)
