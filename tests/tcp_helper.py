#!/usr/bin/env python3
"""Small TCP clients and servers for tests/tcp.rs.

Every mode either listens (--listen ADDR PORT, writing --ready FILE once
listening) or connects (--connect ADDR PORT). Results go to stdout as one
line of words, errors to stderr with a non-zero exit status.
"""

import argparse
import errno
import hashlib
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time

CHUNK = 1 << 20


def listen(args, backlog=128):
    addr = args.listen[0]
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    if getattr(args, "rcvbuf", 0):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    s.bind((addr, int(args.listen[1])))
    s.listen(backlog)
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write("ready\n")
        os.rename(args.ready + ".tmp", args.ready)
    return s


def peer_of(conn):
    host = conn.getpeername()[0]
    return host[7:] if host.startswith("::ffff:") else host


def one(args):
    """The connected socket of this run: accepted or connected."""
    if args.listen:
        s = listen(args)
        c, _ = s.accept()
        s.close()
        return c
    c = socket.create_connection((args.connect[0], int(args.connect[1])), timeout=args.timeout)
    c.settimeout(None)
    return c


def send_random(c, size):
    h = hashlib.sha256()
    left = size
    while left:
        b = os.urandom(min(CHUNK, left))
        h.update(b)
        try:
            c.sendall(b)
        except socket.timeout:
            stalled("sending", size - left)
        left -= len(b)
    return h.hexdigest()


def recv_all(c, pause_every=0, pause_ms=0):
    """Reads to EOF; returns (count, sha256, max gap between reads in ms,
    not counting our own pauses)."""
    h = hashlib.sha256()
    n = 0
    last = time.monotonic()
    max_gap = 0.0
    next_pause = pause_every
    while True:
        try:
            b = c.recv(1 << 16)
        except socket.timeout:
            stalled("receiving", n)
        now = time.monotonic()
        max_gap = max(max_gap, now - last)
        last = now
        if not b:
            break
        h.update(b)
        n += len(b)
        if pause_every and n >= next_pause:
            next_pause += pause_every
            time.sleep(pause_ms / 1000)
            last = time.monotonic()
    return n, h.hexdigest(), max_gap * 1000


def stalled(what, n):
    print("stalled: no progress for the --stall time while %s, after %d bytes" % (what, n), file=sys.stderr)
    sys.exit(3)


def mode_source(args):
    c = one(args)
    if args.stall:
        c.settimeout(args.stall)
    digest = send_random(c, args.size)
    c.shutdown(socket.SHUT_WR)
    while c.recv(1 << 16):
        pass
    c.close()
    print("sent", args.size, digest)


def mode_sink(args):
    c = one(args)
    if args.stall:
        c.settimeout(args.stall)
    n, digest, gap = recv_all(c, args.pause_every, args.pause_ms)
    c.close()
    print("recv", n, digest, "maxgap_ms %.1f" % gap)


def reply_bytes(n):
    return random.Random(n).randbytes(n)


def mode_halfclose_server(args):
    """Reads the request to EOF, then sends a long reply and closes."""
    c = one(args)
    req = b""
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        req += b
    peer = peer_of(c)
    c.sendall(reply_bytes(args.size))
    c.close()
    print("request", len(req), "ok" if req == b"q" * 1000 else "MISMATCH", "peer", peer)


def mode_halfclose_client(args):
    """Sends a request, shuts its write side down, reads the whole reply."""
    c = one(args)
    req = b"q" * 1000
    c.sendall(req)
    c.shutdown(socket.SHUT_WR)
    got = bytearray()
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        got += b
    c.close()
    ok = bytes(got) == reply_bytes(args.size)
    print("reply", len(got), "ok" if ok else "MISMATCH")


def linger0(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def mode_abort(args):
    """Exchanges a greeting, then closes with SO_LINGER 0 (a RST)."""
    c = one(args)
    c.sendall(b"hello")
    assert c.recv(5) == b"hello"
    linger0(c)
    c.close()
    print("aborted")


def mode_expect_reset(args):
    """Exchanges a greeting, then waits for the peer's RST."""
    c = one(args)
    c.settimeout(args.timeout)
    assert c.recv(5) == b"hello"
    c.sendall(b"hello")
    t = time.monotonic()
    try:
        b = c.recv(1 << 16)
        print("unexpected", "eof" if not b else "data")
    except ConnectionResetError:
        print("reset after_ms %d" % ((time.monotonic() - t) * 1000))
    except socket.timeout:
        print("timeout")


def mode_idle(args):
    """Exchanges a greeting, then stays idle until the connection is reset."""
    c = one(args)
    c.settimeout(args.timeout)
    c.sendall(b"hello")
    assert c.recv(5) == b"hello"
    t = time.monotonic()
    try:
        b = c.recv(1 << 16)
        print("unexpected", "eof" if not b else "data")
    except ConnectionResetError:
        print("reset after_ms %d" % ((time.monotonic() - t) * 1000))
    except socket.timeout:
        print("timeout")


def mode_refused(args):
    t = time.monotonic()
    try:
        socket.create_connection((args.connect[0], int(args.connect[1])), timeout=args.timeout)
        print("connected")
    except ConnectionRefusedError:
        print("refused after_ms %d" % ((time.monotonic() - t) * 1000))
    except OSError as e:
        print("error", errno.errorcode.get(e.errno, e.errno), e)


def mode_peer_http(args):
    """A HTTP server answering every request with the peer's address."""
    s = listen(args)
    for _ in range(args.count):
        c, _ = s.accept()
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = c.recv(4096)
            if not b:
                break
            buf += b
        body = peer_of(c).encode()
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        c.close()
    print("served", args.count)


def conn_data(i, size):
    return random.Random(i).randbytes(size)


def mode_echo_many(args):
    """Echo server for --count connections, each closed by us after echoing
    --size bytes; exits once all were served."""
    s = listen(args, backlog=4096)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    done = 0
    accepted = 0
    pending = {}
    while done < args.count:
        for key, _ in sel.select(timeout=args.timeout):
            if key.fileobj is s:
                try:
                    c, _ = s.accept()
                except BlockingIOError:
                    continue
                accepted += 1
                c.setblocking(False)
                pending[c] = 0
                sel.register(c, selectors.EVENT_READ)
                continue
            c = key.fileobj
            b = c.recv(1 << 16)
            if b:
                c.setblocking(True)
                c.sendall(b)
                c.setblocking(False)
                pending[c] += len(b)
            if not b or pending[c] >= args.size:
                sel.unregister(c)
                del pending[c]
                c.shutdown(socket.SHUT_WR)
                c.close()
                done += 1
    print("served", done, "accepted", accepted)


def mode_many_clients(args):
    """Opens --count connections at once, sends each --size distinct bytes,
    reads the echo back and checks it, waits for the server's EOF, closes."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want, hard))
    socks = []
    for i in range(args.count):
        c = socket.create_connection((args.connect[0], int(args.connect[1])), timeout=args.timeout)
        socks.append(c)
    for i, c in enumerate(socks):
        c.sendall(conn_data(i, args.size))
    bad = 0
    for i, c in enumerate(socks):
        got = bytearray()
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            got += b
        if bytes(got) != conn_data(i, args.size):
            bad += 1
        c.close()
    print("clients", len(socks), "bad", bad)


def mode_table_full(args):
    """Opens --count connections sending --size bytes each in two halves to
    a sink_many server; between the halves, one more connection must be
    refused. Prints the digests the server must report."""
    socks = []
    halves = []
    for i in range(args.count):
        c = socket.create_connection((args.connect[0], int(args.connect[1])), timeout=args.timeout)
        c.settimeout(args.timeout)
        socks.append(c)
        halves.append((os.urandom(args.size // 2), os.urandom(args.size - args.size // 2)))
    for c, (a, _) in zip(socks, halves):
        c.sendall(a)
    t = time.monotonic()
    try:
        extra = socket.create_connection((args.connect[0], int(args.connect[1])), timeout=args.timeout)
        extra_res = "extra_connected"
        extra.close()
    except ConnectionRefusedError:
        extra_res = "extra_refused after_ms %d" % ((time.monotonic() - t) * 1000)
    except OSError as e:
        extra_res = "extra_error " + str(e).replace(" ", "_")
    digests = []
    for c, (a, b) in zip(socks, halves):
        c.sendall(b)
        c.shutdown(socket.SHUT_WR)
        digests.append(hashlib.sha256(a + b).hexdigest())
    # The server answers each connection with its digest.
    replies = []
    for c in socks:
        r = b""
        while True:
            b = c.recv(4096)
            if not b:
                break
            r += b
        replies.append(r.decode())
        c.close()
    print(extra_res)
    for d, r in zip(digests, replies):
        print("conn", "ok" if d == r else "MISMATCH", d, r)


def mode_sink_many(args):
    """Accepts connections; each is read to EOF and answered with the
    sha256 of what it carried. Exits after --count connections."""
    s = listen(args)
    threads = []

    def serve(c):
        h = hashlib.sha256()
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            h.update(b)
        c.sendall(h.hexdigest().encode())
        c.close()

    for _ in range(args.count):
        c, _ = s.accept()
        t = threading.Thread(target=serve, args=(c,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    print("served", args.count)


def mode_vanish(args):
    """Guest side of the keepalive test: connects, exchanges a greeting,
    then forgets the connection without the peer hearing of it: a
    blackhole route toward the peer swallows the RST of an SO_LINGER 0
    close, and the route is removed again afterwards."""
    c = one(args)
    c.sendall(b"hello")
    assert c.recv(5) == b"hello"
    peer = args.connect[0]
    plen = "128" if ":" in peer else "32"
    os.system("ip route add blackhole %s/%s" % (peer, plen))
    linger0(c)
    c.close()
    os.system("ip route del blackhole %s/%s" % (peer, plen))
    print("forgotten")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("--listen", nargs=2)
    p.add_argument("--connect", nargs=2)
    p.add_argument("--ready")
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--stall", type=float, default=0, help="give up after this long without progress")
    p.add_argument("--rcvbuf", type=int, default=0)
    p.add_argument("--pause-every", type=int, default=0)
    p.add_argument("--pause-ms", type=int, default=0)
    args = p.parse_args()
    globals()["mode_" + args.mode.replace("-", "_")](args)


if __name__ == "__main__":
    main()
