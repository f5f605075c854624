#!/usr/bin/env python3
"""Small UDP clients and servers for tests/udp.rs and tests/dns.rs.

  echo PORT [--ready FILE] [--bind ADDR]   echo every datagram back (IPv4 and
                                           IPv6), forever
  client ADDR PORT [--count N] [--sizes a,b] [--sport P]
                                           send datagrams with a checkable
                                           payload, expect each one back
  many ADDR PORT FLOWS                     one socket per flow, all at once
  refused ADDR PORT                        connected socket: expect
                                           ECONNREFUSED after a send
  ttl ADDR PORT                            send with TTL 1, report the ICMP
                                           error (type, code, offender)
  sink BIND PORT SIZE [--ready F]          count and check datagrams from burst
  burst ADDR PORT COUNT SIZE               numbered datagrams back to back
  bindable PORT                            exit 0 if UDP PORT can be bound
  flood ADDR PORT SECONDS SIZE [--flows N]  datagrams as fast as it can for
                                           SECONDS from N sockets in turn,
                                           errors ignored

Results go to stdout as one line of words, errors to stderr with a
non-zero exit status.
"""

import argparse
import errno
import os
import select
import socket
import sys
import time


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def payload(i, size):
    head = b"%08d:" % i
    body = bytes((i + k) % 251 for k in range(max(size - len(head), 0)))
    return (head + body)[:size] if size >= len(head) else head[:size]


def ready(path):
    if path:
        with open(path + ".tmp", "w") as f:
            f.write("ready\n")
        os.rename(path + ".tmp", path)


def echo(args):
    socks = []
    binds = args.bind or ["0.0.0.0", "::"]
    for addr in binds:
        s = socket.socket(family_of(addr), socket.SOCK_DGRAM)
        if ":" in addr:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((addr, args.port))
        socks.append(s)
    ready(args.ready)
    print("ready", flush=True)
    while True:
        r, _, _ = select.select(socks, [], [])
        for s in r:
            try:
                data, peer = s.recvfrom(65535)
                s.sendto(data, peer)
            except OSError:
                pass


def exchange(s, i, size, timeout):
    """Sends datagram i, waits for its echo; retries a few times (UDP)."""
    want = payload(i, size)
    for _ in range(5):
        s.send(want)
        end = time.time() + timeout
        while time.time() < end:
            r, _, _ = select.select([s], [], [], max(end - time.time(), 0))
            if not r:
                break
            data = s.recv(65535)
            if data == want:
                return True
            # A late echo of an earlier try: ignore.
    return False


def client(args):
    s = socket.socket(family_of(args.addr), socket.SOCK_DGRAM)
    if args.sport:
        s.bind(("::" if ":" in args.addr else "0.0.0.0", args.sport))
    s.connect((args.addr, args.port))
    sizes = [int(x) for x in args.sizes.split(",")]
    n = 0
    for i in range(args.count):
        for size in sizes:
            if not exchange(s, n, size, 1.0):
                print("no echo for datagram %d (%d bytes)" % (n, size), file=sys.stderr)
                sys.exit(1)
            n += 1
    print("ok %d %s" % (n, s.getsockname()[1]), flush=True)
    if args.hold:
        time.sleep(args.hold)


def many(args):
    socks = []
    for i in range(args.flows):
        s = socket.socket(family_of(args.addr), socket.SOCK_DGRAM)
        s.connect((args.addr, args.port))
        socks.append(s)
    pending = {}
    for i, s in enumerate(socks):
        pending[s] = payload(i, 100 + i)
    for attempt in range(5):
        for s, want in pending.items():
            s.send(want)
        end = time.time() + 2.0
        while pending and time.time() < end:
            r, _, _ = select.select(list(pending), [], [], max(end - time.time(), 0))
            for s in r:
                data = s.recv(65535)
                if data == pending.get(s):
                    del pending[s]
        if not pending:
            break
    if pending:
        print("%d flows without echo" % len(pending), file=sys.stderr)
        sys.exit(1)
    ports = {s.getsockname()[1] for s in socks}
    print("ok %d flows %d ports" % (len(socks), len(ports)), flush=True)


def refused(args):
    s = socket.socket(family_of(args.addr), socket.SOCK_DGRAM)
    s.connect((args.addr, args.port))
    s.settimeout(1.0)
    for _ in range(5):
        try:
            s.send(b"anybody there?")
            s.recv(100)
            print("unexpected reply", file=sys.stderr)
            sys.exit(1)
        except ConnectionRefusedError:
            print("refused", flush=True)
            return
        except socket.timeout:
            continue
    print("no error reported", file=sys.stderr)
    sys.exit(1)


IP_RECVERR = 11  # linux/in.h


def ttl(args):
    """Sends with TTL 1 and reports the ICMP error queued: type, code and
    who sent it (IPv4)."""
    import struct
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    for _ in range(10):
        s.sendto(b"probe", (args.addr, args.port))
        r, _, x = select.select([], [], [s], 1.0)
        try:
            _, anc, _, _ = s.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        for level, kind, data in anc:
            if level == socket.IPPROTO_IP and kind == IP_RECVERR:
                _, origin, icmp_type, code = struct.unpack("=IBBB", data[:7])
                offender = socket.inet_ntoa(data[16 + 4 : 16 + 8])
                print("icmp type %d code %d from %s" % (icmp_type, code, offender))
                return
    print("no ICMP error", file=sys.stderr)
    sys.exit(1)


def sink(args):
    """Counts datagrams made by `burst`, checking each one's contents;
    prints the count and the number of bad ones after `--idle` seconds
    without traffic (once something arrived)."""
    s = socket.socket(family_of(args.bind), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind((args.bind, args.port))
    ready(args.ready)
    good = bad = 0
    last = -1
    reordered = 0
    while True:
        r, _, _ = select.select([s], [], [], args.idle if good + bad else None)
        if not r:
            break
        data = s.recv(65535)
        try:
            i = int(data[:8])
        except ValueError:
            bad += 1
            continue
        if data == payload(i, len(data)) and len(data) == args.size:
            good += 1
            reordered += i < last
            last = i
        else:
            bad += 1
    print("good %d bad %d reordered %d" % (good, bad, reordered), flush=True)


def burst(args):
    """Sends COUNT numbered datagrams of SIZE bytes back to back."""
    s = socket.socket(family_of(args.addr), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.connect((args.addr, args.port))
    if args.gso:
        # UDP segmentation offload: one send of GSO datagrams, which the
        # kernel hands on as one super-frame where the device takes them.
        s.setsockopt(socket.IPPROTO_UDP, 103, args.size)  # UDP_SEGMENT
    i = 0
    while i < args.count:
        n = min(max(args.gso, 1), args.count - i)
        data = b"".join(payload(j, args.size) for j in range(i, i + n))
        while True:
            try:
                s.send(data)
                break
            except BlockingIOError:
                time.sleep(0.001)
        i += n
    print("sent %d" % args.count, flush=True)


def flood(args):
    """Sends SIZE-byte datagrams from one socket (one flow) to ADDR PORT as
    fast as it can for SECONDS. The socket is not connected: the port
    unreachables that come back are no error here."""
    socks = []
    for _ in range(args.flows):
        s = socket.socket(family_of(args.addr), socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        socks.append(s)
    data = b"x" * args.size
    dest = (args.addr, args.port)
    sent = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        for s in socks:
            for _ in range(64):
                try:
                    s.sendto(data, dest)
                    sent += 1
                except OSError:
                    # A full queue (EAGAIN, ENOBUFS) or an error from an
                    # earlier datagram: keep going.
                    pass
    print("sent %d" % sent, flush=True)


def bindable(args):
    for addr in ["0.0.0.0"]:
        s = socket.socket(family_of(addr), socket.SOCK_DGRAM)
        try:
            s.bind((addr, args.port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                print("in use")
                sys.exit(1)
            raise
    print("free")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("echo")
    e.add_argument("port", type=int)
    e.add_argument("--ready")
    e.add_argument("--bind", action="append")
    c = sub.add_parser("client")
    c.add_argument("addr")
    c.add_argument("port", type=int)
    c.add_argument("--count", type=int, default=3)
    c.add_argument("--sizes", default="1,100,1400,8000,65000")
    c.add_argument("--sport", type=int, default=0)
    c.add_argument("--hold", type=float, default=0)
    m = sub.add_parser("many")
    m.add_argument("addr")
    m.add_argument("port", type=int)
    m.add_argument("flows", type=int)
    r = sub.add_parser("refused")
    r.add_argument("addr")
    r.add_argument("port", type=int)
    t = sub.add_parser("ttl")
    t.add_argument("addr")
    t.add_argument("port", type=int)
    k = sub.add_parser("sink")
    k.add_argument("bind")
    k.add_argument("port", type=int)
    k.add_argument("size", type=int)
    k.add_argument("--ready")
    k.add_argument("--idle", type=float, default=2.0)
    u = sub.add_parser("burst")
    u.add_argument("addr")
    u.add_argument("port", type=int)
    u.add_argument("count", type=int)
    u.add_argument("size", type=int)
    u.add_argument("--gso", type=int, default=0,
                   help="datagrams per send, with UDP_SEGMENT")
    f = sub.add_parser("flood")
    f.add_argument("addr")
    f.add_argument("port", type=int)
    f.add_argument("seconds", type=float)
    f.add_argument("size", type=int)
    f.add_argument("--flows", type=int, default=1)
    b = sub.add_parser("bindable")
    b.add_argument("port", type=int)
    args = p.parse_args()
    {"echo": echo, "client": client, "many": many, "refused": refused, "bindable": bindable,
     "ttl": ttl, "sink": sink, "burst": burst, "flood": flood}[
        args.mode
    ](args)


if __name__ == "__main__":
    main()
