#!/usr/bin/env python3
"""passt's side of the passt-repair protocol, for tests/repair.rs.

    repair_helper.py HELPER SOCKPATH [--dir DIR]

Starts HELPER (our passt-repair) on SOCKPATH (or on DIR, binding SOCKPATH
inside it only afterwards), then runs the cases and prints one JSON
object of results.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import time

TCP_REPAIR = 19


def tcp_pair():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    c = socket.create_connection(lst.getsockname())
    a, _ = lst.accept()
    lst.close()
    return c, a


def repair(s):
    return s.getsockopt(socket.IPPROTO_TCP, TCP_REPAIR)


def command(conn, value, socks):
    socket.send_fds(conn, [struct.pack("b", value)], [s.fileno() for s in socks])
    return conn.recv(1)


def main():
    helper, path = sys.argv[1], sys.argv[2]
    target = sys.argv[4] if len(sys.argv) > 3 and sys.argv[3] == "--dir" else path
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if target == path:
        # passt listens before it asks for the helper.
        lst.bind(path)
        lst.listen(1)
    proc = subprocess.Popen([helper, target], stderr=subprocess.PIPE, text=True)
    if target != path:
        time.sleep(0.3)  # the helper is waiting on the directory by now
        lst.bind(path)
        lst.listen(1)
    lst.settimeout(15)
    conn, _ = lst.accept()
    conn.settimeout(10)
    out = {}
    c1, a1 = tcp_pair()
    c2, a2 = tcp_pair()
    out["on_echo"] = list(command(conn, 1, [c1, c2]))
    out["on"] = [repair(c1), repair(c2), repair(a1)]
    out["off_echo"] = list(command(conn, 0, [c1]))
    out["off_no_wp_echo"] = list(struct.unpack("b", command(conn, -1, [c2])))
    out["off"] = [repair(c1), repair(c2)]
    # 253 sockets in one message.
    many = [tcp_pair()[0] for _ in range(253)]
    out["many_echo"] = list(command(conn, 1, many))
    out["many_on"] = sum(repair(s) for s in many)
    command(conn, 0, many)
    case = sys.argv[-1]
    if case == "bad-command":
        out["bad_echo"] = list(command(conn, 5, [c1]))
    elif case == "no-socket":
        conn.send(b"\x01")
        out["bad_echo"] = list(conn.recv(1))
    else:
        conn.close()
    out["status"] = proc.wait(timeout=10)
    out["stderr"] = proc.stderr.read()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
