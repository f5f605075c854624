# Sends malformed frames on eth0 through an AF_PACKET socket: the guest
# side of pasta's tap. Used by tests/bad_input.rs; argv: COUNT SEED.
# Prints the number of frames sent.
import random
import socket
import struct
import sys

count, seed = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(seed)

IFACE = "eth0"
OUR = open(f"/sys/class/net/{IFACE}/address").read().strip()
OUR = bytes.fromhex(OUR.replace(":", ""))
PASTA = bytes.fromhex("9a559a559a55")
BCAST = b"\xff" * 6
GW4 = socket.inet_aton(sys.argv[3])
ME4 = socket.inet_aton(sys.argv[4])
LL = socket.inet_pton(socket.AF_INET6, "fe80::1234")
ALL_ROUTERS = socket.inet_pton(socket.AF_INET6, "ff02::2")
DHCP6_SRV = socket.inet_pton(socket.AF_INET6, "ff02::1:2")

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((IFACE, 0))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    t = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF


def eth(dst, ethertype, payload):
    return dst + OUR + struct.pack("!H", ethertype) + payload


def ip4(proto, payload, src=ME4, dst=GW4, options=b"", flags_frag=0,
        tot_len=None, good_csum=True, ihl=None):
    if ihl is None:
        ihl = 5 + len(options) // 4
    if tot_len is None:
        tot_len = 20 + len(options) + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot_len & 0xFFFF,
                      rnd.randrange(65536), flags_frag, 64, proto, 0, src,
                      dst) + options
    c = csum(hdr)
    if not good_csum:
        c ^= 0x5A5A
    hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


def echo4(ident=0x4242, seq=1, data=b"x" * 16):
    m = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def ip6(nh, payload, src=LL, dst=ALL_ROUTERS, plen=None, hlim=255):
    if plen is None:
        plen = len(payload)
    return struct.pack("!IHBB16s16s", 0x60000000, plen & 0xFFFF, nh, hlim,
                       src, dst) + payload


def icmp6(src, dst, body):
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    c = csum(pseudo + body)
    return body[:2] + struct.pack("!H", c) + body[4:]


def udp4(sport, dport, data, src=b"\0" * 4, dst=b"\xff" * 4, length=None):
    if length is None:
        length = 8 + len(data)
    return struct.pack("!HHHH", sport, dport, length & 0xFFFF, 0) + data


def junk(n):
    return bytes(rnd.randrange(256) for _ in range(n))


def dhcp_overrun():
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0,
                        rnd.randrange(1 << 32), 0, 0x8000, b"\0" * 4,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, OUR + b"\0" * 10,
                        b"", b"")
    opts = b"\x63\x82\x53\x63" + b"\x35\x01\x03"  # DHCPREQUEST
    kind = rnd.randrange(4)
    if kind == 0:
        opts += bytes([50, 200]) + junk(3)  # length past the end
    elif kind == 1:
        opts += bytes([55, 255])  # parameter list, nothing follows
    elif kind == 2:
        opts += b"\x35"  # message type again, no length
    else:
        opts += junk(rnd.randrange(1, 40))
    return ip4(17, udp4(68, 67, bootp + opts), src=b"\0" * 4,
               dst=b"\xff" * 4)


def rs_garbage():
    kind = rnd.randrange(4)
    if kind == 0:
        opts = b"\x01\x00" + OUR  # option length 0: an endless loop bait
    elif kind == 1:
        opts = b"\x01\xff" + OUR  # length past the end
    elif kind == 2:
        opts = junk(rnd.randrange(1, 64))
    else:
        opts = bytes([rnd.randrange(256), 1]) + junk(5)
    body = struct.pack("!BBHI", 133, 0, 0, 0) + opts
    good = rnd.randrange(2)
    msg = icmp6(LL, ALL_ROUTERS, body) if good else body
    return ip6(58, msg)


def ns_garbage():
    tgt = socket.inet_pton(socket.AF_INET6, "fe80::1")
    body = struct.pack("!BBHI16s", 135, 0, 0, 0, tgt) + junk(rnd.randrange(0, 24))
    return ip6(58, icmp6(LL, ALL_ROUTERS, body))


def dhcp6_garbage():
    data = bytes([rnd.choice([1, 3, 11, 12, 255])]) + junk(rnd.randrange(0, 60))
    u = struct.pack("!HHHH", 546, 547, 8 + len(data), 0) + data
    if rnd.randrange(2):
        u = u[:4] + struct.pack("!H", 0xFFFF) + u[6:]  # length too big
    return ip6(17, u, dst=DHCP6_SRV, hlim=1)


def garbage_arp():
    kind = rnd.randrange(4)
    if kind == 0:
        return junk(rnd.randrange(0, 28))  # truncated
    if kind == 1:  # a request with huge address lengths
        return struct.pack("!HHBBH", 1, 0x0800, 200, 200, 1) + junk(20)
    if kind == 2:  # a request for the gateway from a bogus sender
        return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, OUR,
                           b"\xff" * 4, b"\0" * 6, GW4)
    return junk(rnd.randrange(28, 80))


def frames():
    gens = [
        # truncated IPv4
        lambda: eth(PASTA, 0x0800, ip4(1, echo4())[: rnd.randrange(0, 20)]),
        # wrong IPv4 header checksum
        lambda: eth(PASTA, 0x0800, ip4(1, echo4(), good_csum=False)),
        # IPv4 options (and an IHL larger than the packet)
        lambda: eth(PASTA, 0x0800, ip4(1, echo4(), options=b"\x07\x07\x04" + b"\0" * 5)),
        lambda: eth(PASTA, 0x0800, ip4(1, echo4(), ihl=15)),
        lambda: eth(PASTA, 0x0800, ip4(1, echo4(), ihl=rnd.randrange(0, 5))),
        # fragments: first one, a middle one, a last one
        lambda: eth(PASTA, 0x0800, ip4(1, echo4(data=junk(64)), flags_frag=0x2000)),
        lambda: eth(PASTA, 0x0800, ip4(rnd.choice([1, 6, 17]), junk(32), flags_frag=0x2000 | rnd.randrange(1, 0x1FFF))),
        lambda: eth(PASTA, 0x0800, ip4(17, junk(8), flags_frag=rnd.randrange(1, 0x1FFF))),
        # unknown EtherTypes
        lambda: eth(PASTA, rnd.choice([0x88B5, 0x88B6, 0x1234, 0x8100, 0x0000]), junk(rnd.randrange(0, 100))),
        # oversized length fields
        lambda: eth(PASTA, 0x0800, ip4(1, echo4(), tot_len=65535)),
        lambda: eth(PASTA, 0x0800, ip4(17, udp4(1234, 53, junk(10), src=ME4, dst=GW4, length=60000))),
        lambda: eth(PASTA, 0x86DD, ip6(58, junk(16), plen=65535)),
        lambda: eth(PASTA, 0x86DD, ip6(0, b"\x3a\xff" + junk(6))),  # hop-by-hop, length past the end
        # garbage ARP
        lambda: eth(BCAST, 0x0806, garbage_arp()),
        # DHCP with overrunning options
        lambda: eth(BCAST, 0x0800, dhcp_overrun()),
        # RS, NS and DHCPv6 with garbage
        lambda: eth(b"\x33\x33\x00\x00\x00\x02", 0x86DD, rs_garbage()),
        lambda: eth(b"\x33\x33\x00\x00\x00\x02", 0x86DD, ns_garbage()),
        lambda: eth(b"\x33\x33\x00\x01\x00\x02", 0x86DD, dhcp6_garbage()),
        # anything at all
        lambda: eth(rnd.choice([PASTA, BCAST]), rnd.choice([0x0800, 0x86DD, 0x0806]), junk(rnd.randrange(0, 200))),
        lambda: junk(rnd.randrange(1, 14)),
    ]
    for i in range(count):
        yield gens[i % len(gens)]()


sent = 0
for f in frames():
    if len(f) < 14:
        f = f + b"\0" * (14 - len(f))
    try:
        s.send(f)
        sent += 1
    except OSError:
        pass
print(sent)
