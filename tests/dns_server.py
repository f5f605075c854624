#!/usr/bin/env python3
"""A tiny DNS server for tests/dns.rs, over UDP and TCP.

  dns_server.py --bind ADDR [--bind ADDR...] [--port 53] [--ready FILE]

Answers every A query with 203.0.113.7 and every AAAA query with
2001:db8:ffff::7 (TTL 60), other types with an empty answer. Each query
is logged to stdout as "udp NAME TYPE" or "tcp NAME TYPE".
"""

import argparse
import os
import select
import socket
import struct
import sys

A = 1
AAAA = 28


def parse_question(msg):
    """(name, qtype, end offset of the question) of a query."""
    off = 12
    labels = []
    while True:
        n = msg[off]
        off += 1
        if n == 0:
            break
        labels.append(msg[off : off + n].decode("ascii", "replace"))
        off += n
    qtype, _qclass = struct.unpack("!HH", msg[off : off + 4])
    return ".".join(labels), qtype, off + 4


def answer(msg):
    if len(msg) < 12:
        return None, None, None
    name, qtype, end = parse_question(msg)
    rdata = None
    if qtype == A:
        rdata = socket.inet_pton(socket.AF_INET, "203.0.113.7")
    elif qtype == AAAA:
        rdata = socket.inet_pton(socket.AF_INET6, "2001:db8:ffff::7")
    (txid,) = struct.unpack("!H", msg[:2])
    ancount = 1 if rdata else 0
    out = struct.pack("!HHHHHH", txid, 0x8180, 1, ancount, 0, 0) + msg[12:end]
    if rdata:
        # Name: pointer to the question (offset 12).
        out += struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(rdata)) + rdata
    return out, name, qtype


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", action="append", required=True)
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--ready")
    args = p.parse_args()
    udp, tcp = [], []
    for addr in args.bind:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.bind((addr, args.port))
        udp.append(u)
        t = socket.socket(fam, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((addr, args.port))
        t.listen(16)
        tcp.append(t)
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write("ready\n")
        os.rename(args.ready + ".tmp", args.ready)
    while True:
        r, _, _ = select.select(udp + tcp, [], [])
        for s in r:
            try:
                if s in udp:
                    msg, peer = s.recvfrom(65535)
                    out, name, qtype = answer(msg)
                    if out:
                        s.sendto(out, peer)
                        print("udp %s %d" % (name, qtype), flush=True)
                else:
                    c, _ = s.accept()
                    c.settimeout(5)
                    with c:
                        hdr = c.recv(2, socket.MSG_WAITALL)
                        (n,) = struct.unpack("!H", hdr)
                        msg = c.recv(n, socket.MSG_WAITALL)
                        out, name, qtype = answer(msg)
                        if out:
                            c.sendall(struct.pack("!H", len(out)) + out)
                            print("tcp %s %d" % (name, qtype), flush=True)
            except (OSError, IndexError, struct.error) as e:
                print("error %s" % e, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
