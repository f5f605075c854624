#!/usr/bin/env python3
"""Many idle TCP connections, for the idle-instance figure of bench/run.sh.

    idle_conns.py serve   --port P --count N --seconds S --ready FILE
    idle_conns.py connect --host H --port P --count N --seconds S --ready FILE

`serve` listens on 0.0.0.0:P, accepts up to N connections and holds them;
`connect` opens N connections to H:P, one after the other (a blocking
connect, 1 s timeout each; it gives up after 50 failures), and holds them. Each writes "accepted=K" or
"connected=K failed=F" to FILE (written whole, then renamed) as soon as it
has its N, or when its share of the deadline is spent, then holds its
sockets until S seconds after its start and exits. Nothing is sent: the
connections stay idle. Every wait is bounded by S. Needs a descriptor limit
above N (the caller raises `ulimit -n`).
"""

import argparse
import os
import socket
import sys
import time


def report(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.rename(tmp, path)


def serve(a, deadline):
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("0.0.0.0", a.port))
    lst.listen(4096)
    held = []
    while len(held) < a.count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        lst.settimeout(min(left, 1.0))
        try:
            conn, _ = lst.accept()
        except socket.timeout:
            continue
        held.append(conn)
    report(a.ready, f"accepted={len(held)}")
    return held


def connect(a, deadline):
    held, failed = [], 0
    while len(held) + failed < a.count and failed < 50 and time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect((a.host, a.port))
            held.append(s)
        except OSError:
            s.close()
            failed += 1
    report(a.ready, f"connected={len(held)} failed={failed}")
    return held


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["serve", "connect"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--ready", required=True)
    a = p.parse_args()
    start = time.monotonic()
    end = start + a.seconds
    # Opening is given two thirds of the time, holding the rest at least.
    held = (serve if a.role == "serve" else connect)(a, start + a.seconds * 2 / 3)
    while time.monotonic() < end:
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))
    for s in held:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
