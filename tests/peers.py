#!/usr/bin/env python3
"""Peers for tests/peers.rs: a reference bulk transfer from pasta's
namespace to a remote sink, timed alone and then while other peers
misbehave, and those peers.

Roles (argv[1]):
  sink PORT READY            remote: per connection, read to EOF, answer
                             "COUNT SHA256" and close.
  (the host loopback peers listen on ::1 instead of 127.0.0.1 with V6=1 in
  their environment)
  stall PORT READY SECS OUT  host loopback: accept one connection and do not
                             read for SECS seconds, then read to EOF, write
                             "COUNT SHA256 STALLED_S" to OUT.
  reset PORT READY AFTER OUT host loopback: accept, read AFTER bytes, close
                             with SO_LINGER 0, write "aborted N" to OUT.
  halfclose PORT READY OUT   host loopback: accept, shutdown(SHUT_WR), read
                             to EOF, write "COUNT SHA256" to OUT.
  guest ...                  the namespace's side: see guest().
  who TAG READY LOG ADDR:PORT...
                             (tests/mapped_addrs.rs) answers every TCP
                             connection and UDP datagram on each ADDR:PORT
                             with TAG, and logs "proto addr" per peer to LOG.
  ask ADDR PORT...           connects (TCP) and sends (UDP) to each, prints
                             "tcp ADDR PORT ANSWER" and "udp ADDR PORT
                             ANSWER", ANSWER the tag or the error.

Every wait has a deadline; every result is one line on stdout.
"""

import errno
import hashlib
import os
import socket
import sys
import threading
import time

# An odd-sized block, so that a lost or repeated block of a round size
# changes the checksum as well as the count.
BLOCK = bytes((i * 7 + (i >> 8) * 13) & 0xFF for i in range(196613))


LOOPBACK = "::1" if os.environ.get("V6") == "1" else "127.0.0.1"


def ready(path):
    open(path, "w").close()


def listener(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(16)
    return s


def read_all(c):
    h = hashlib.sha256()
    n = 0
    while True:
        b = c.recv(1 << 18)
        if not b:
            return n, h.hexdigest()
        h.update(b)
        n += len(b)


def expected(size):
    """(size, sha256) of the stream send_stream() sends."""
    h = hashlib.sha256()
    left = size
    while left:
        k = min(left, len(BLOCK))
        h.update(BLOCK[:k])
        left -= k
    return size, h.hexdigest()


def sink(port, rdy):
    s = listener("::", port)
    ready(rdy)

    def serve(c):
        with c:
            c.settimeout(120)
            n, d = read_all(c)
            c.sendall(f"{n} {d}\n".encode())

    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def stall(port, rdy, secs, out):
    s = listener(LOOPBACK, port)
    ready(rdy)
    s.settimeout(60)
    c, _ = s.accept()
    t0 = time.monotonic()
    # Not a word read for that long: the guest's sender meets a zero
    # window, and pasta keeps the flow through it.
    time.sleep(secs)
    stalled = time.monotonic() - t0
    c.settimeout(60)
    n, d = read_all(c)
    with open(out + ".tmp", "w") as f:
        f.write(f"{n} {d} {stalled:.1f}\n")
    os.rename(out + ".tmp", out)


def reset(port, rdy, after, out):
    s = listener(LOOPBACK, port)
    ready(rdy)
    s.settimeout(60)
    c, _ = s.accept()
    c.settimeout(60)
    n = 0
    while n < after:
        b = c.recv(min(1 << 16, after - n))
        if not b:
            break
        n += len(b)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    with open(out, "w") as f:
        f.write(f"aborted {n}\n")


def halfclose(port, rdy, out):
    s = listener(LOOPBACK, port)
    ready(rdy)
    s.settimeout(60)
    c, _ = s.accept()
    c.settimeout(60)
    c.shutdown(socket.SHUT_WR)
    n, d = read_all(c)
    with open(out + ".tmp", "w") as f:
        f.write(f"{n} {d}\n")
    os.rename(out + ".tmp", out)


def send_stream(c, size, blocked=None):
    """Sends `size` bytes of the BLOCK pattern. With `blocked` (an Event),
    sends with a short timeout and sets it once a send makes no progress
    for 0.5 s: the peer's window is closed."""
    left = size
    off = 0
    if blocked is not None:
        c.settimeout(0.5)
    while left:
        k = min(left, len(BLOCK) - off)
        try:
            m = c.send(BLOCK[off:off + k])
        except socket.timeout:
            blocked.set()
            continue
        left -= m
        off = (off + m) % len(BLOCK)


def reference(addr, port, size):
    """One timed transfer to the sink: (seconds, ok, detail)."""
    t0 = time.monotonic()
    c = socket.create_connection((addr, port), timeout=60)
    send_stream(c, size)
    c.shutdown(socket.SHUT_WR)
    reply = b""
    while not reply.endswith(b"\n"):
        b = c.recv(200)
        if not b:
            break
        reply += b
    t = time.monotonic() - t0
    c.close()
    n, d = expected(size)
    return t, reply.decode().split() == [str(n), d], reply.decode().strip()


def err_name(e):
    if isinstance(e, socket.timeout):
        return "TIMEOUT"
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else repr(e)


def guest(argv):
    (sink_addr, sink_port, size, gw, p_stall, p_reset, p_half, stall_size,
     half_size, udp_closed, rej_addr, rej_port, unreach_addr) = argv
    sink_port, size = int(sink_port), int(size)
    p_stall, p_reset, p_half = int(p_stall), int(p_reset), int(p_half)
    stall_size, half_size = int(stall_size), int(half_size)
    udp_closed, rej_port = int(udp_closed), int(rej_port)
    res = {}

    # The reference alone.
    t, ok, detail = reference(sink_addr, sink_port, size)
    print(f"alone {t:.3f} {'ok' if ok else 'BAD'} {detail}", flush=True)

    # (a) A host peer that does not read: send until the window closes.
    blocked = threading.Event()
    sc = socket.create_connection((gw, p_stall), timeout=30)

    def stall_sender():
        try:
            send_stream(sc, stall_size, blocked)
            sc.shutdown(socket.SHUT_WR)
            res["stall"] = "sent"
        except OSError as e:
            res["stall"] = "error " + err_name(e)

    ts = threading.Thread(target=stall_sender, daemon=True)
    ts.start()
    if not blocked.wait(30):
        print("stall never blocked", flush=True)
    else:
        print("stall blocked", flush=True)

    # The reference again, while (b), (c) and (d) run.
    ref = {}

    def ref_run():
        ref["r"] = reference(sink_addr, sink_port, size)

    tr = threading.Thread(target=ref_run, daemon=True)
    tr.start()

    # (b) A peer that resets mid-transfer: the sender sees ECONNRESET
    # (or EPIPE once the reset is in).
    def reset_sender():
        c = socket.create_connection((gw, p_reset), timeout=30)
        c.settimeout(30)
        try:
            send_stream(c, 1 << 30)
            res["reset"] = "no-error"
        except OSError as e:
            res["reset"] = "error " + err_name(e)
        c.close()

    tb = threading.Thread(target=reset_sender, daemon=True)
    tb.start()

    # (c) A peer that half-closes at once and keeps reading: we see its
    # EOF, then send everything and close.
    def half_sender():
        c = socket.create_connection((gw, p_half), timeout=30)
        c.settimeout(30)
        try:
            eof = c.recv(10) == b""
            send_stream(c, half_size)
            c.shutdown(socket.SHUT_WR)
            # The peer closes once it read everything.
            end = c.recv(10) == b""
            res["half"] = f"eof {eof} sent {half_size} closed {end}"
        except OSError as e:
            res["half"] = "error " + err_name(e)
        c.close()

    th = threading.Thread(target=half_sender, daemon=True)
    th.start()

    # (d) ICMP errors from the remote, over and over while the reference
    # runs (bounded): UDP port unreachable, TCP to a rejected port, TCP to
    # an unreachable host.
    counts = {}
    slowest = {}
    fam = socket.AF_INET6 if ":" in sink_addr else socket.AF_INET
    for i in range(200):
        if i >= 3 and not tr.is_alive():
            break
        t0 = time.monotonic()
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.settimeout(5)
        u.connect((sink_addr, udp_closed))
        try:
            u.send(b"x")
            u.recv(10)
            k = "udp:answered"
        except OSError as e:
            k = "udp:" + err_name(e)
        if k != "udp:ECONNREFUSED":
            print(f"udp attempt {i}: {k}", flush=True)
        u.close()
        counts[k] = counts.get(k, 0) + 1
        slowest["udp"] = max(slowest.get("udp", 0), time.monotonic() - t0)
        for name, addr, port in (("rej", rej_addr, rej_port),
                                 ("unreach", unreach_addr, rej_port + 1)):
            t0 = time.monotonic()
            try:
                c = socket.create_connection((addr, port), timeout=5)
                c.close()
                k = name + ":connected"
            except OSError as e:
                k = name + ":" + err_name(e)
            took = time.monotonic() - t0
            slowest[name] = max(slowest.get(name, 0), took)
            if took > 3:
                k += "-slow"
            counts[k] = counts.get(k, 0) + 1

    tr.join(120)
    t2, ok2, detail2 = ref.get("r", (0.0, False, "not done"))
    print(f"during {t2:.3f} {'ok' if ok2 else 'BAD'} {detail2}", flush=True)
    print("icmp " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
    print("slowest " + " ".join(f"{k}={v:.3f}" for k, v in sorted(slowest.items())),
          flush=True)
    for name, th_ in (("stall", ts), ("reset", tb), ("half", th)):
        th_.join(60)
        print(f"{name} {res.get(name, 'unfinished')}", flush=True)


def split_hostport(hp):
    host, port = hp.rsplit(":", 1)
    return host.strip("[]"), int(port)


def who(tag, rdy, log, addrs):
    import select
    socks = []
    for hp in addrs:
        host, port = split_hostport(hp)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        t = listener(host, port)
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.bind((host, port))
        socks += [t, u]
    ready(rdy)
    end = time.monotonic() + 120
    with open(log, "a") as f:
        while time.monotonic() < end:
            r, _, _ = select.select(socks, [], [], 0.5)
            for s in r:
                if s.type == socket.SOCK_STREAM:
                    c, peer = s.accept()
                    c.sendall(tag.encode())
                    c.close()
                    f.write(f"tcp {peer[0]}\n")
                else:
                    _, peer = s.recvfrom(100)
                    s.sendto(tag.encode(), peer)
                    f.write(f"udp {peer[0]}\n")
                f.flush()


def ask(argv):
    for addr, port in zip(argv[::2], argv[1::2]):
        port = int(port)
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            c = socket.create_connection((addr, port), timeout=3)
            c.settimeout(3)
            a = c.recv(100).decode() or "EOF"
            c.close()
        except OSError as e:
            a = err_name(e)
        print(f"tcp {addr} {port} {a}", flush=True)
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.settimeout(2)
        try:
            u.connect((addr, port))
            u.send(b"who")
            a = u.recv(100).decode()
        except OSError as e:
            a = err_name(e)
        u.close()
        print(f"udp {addr} {port} {a}", flush=True)


def main():
    role, a = sys.argv[1], sys.argv[2:]
    if role == "sink":
        sink(int(a[0]), a[1])
    elif role == "stall":
        stall(int(a[0]), a[1], float(a[2]), a[3])
    elif role == "reset":
        reset(int(a[0]), a[1], int(a[2]), a[3])
    elif role == "halfclose":
        halfclose(int(a[0]), a[1], a[2])
    elif role == "guest":
        guest(a)
    elif role == "who":
        who(a[0], a[1], a[2], a[3:])
    elif role == "ask":
        ask(a)
    elif role == "expected":
        print(*expected(int(a[0])))
    else:
        sys.exit(f"unknown role {role}")


if __name__ == "__main__":
    main()
