#!/usr/bin/env python3
"""A configuration client written from the pesto protocol's definition
(version 2, upstream's pesto.h and fwd_rule.h), independent of our Rust
code: it checks the daemon's bytes and sends its own.

    pesto_client.py SOCK show                 tables as JSON
    pesto_client.py SOCK set JSON             replace tables, print the status
    pesto_client.py SOCK raw HEX              send these bytes after reading
    pesto_client.py SOCK stall BYTES SECS     send BYTES (hex) then wait SECS
    pesto_client.py SOCK hangup               close right after connecting
    pesto_client.py SOCK big N                a table header and N zero bytes

JSON for `set`: {"1": [rule, ...], "3": [...]}, a rule being
{"proto": "tcp"|"udp", "addr": "ADDR"|null (dual stack), "ifname": "",
"first": N, "last": N, "to": N, "weak": bool, "scan": bool,
"taddr": "ADDR"|null}.
"""

import ipaddress
import json
import socket
import struct
import sys
import time

HELLO = struct.Struct(">8sIII")  # magic, version, pif_name_size, ifnamsiz
PIF_INFO = struct.Struct(">128sII")  # name, caps, count
RULE = struct.Struct(">16s16s16sHHHBB")  # addr, taddr, ifname, first, last, to, proto, flags
STATUS = struct.Struct(">8sII")  # our status: magic, status, length

FLAG_DUAL, FLAG_WEAK, FLAG_SCAN = 1, 2, 4
PROTOS = {6: "tcp", 17: "udp"}


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError(f"EOF after {len(b)} of {n} bytes")
        b += chunk
    return b


def unpack_addr(b):
    a = ipaddress.IPv6Address(b)
    return str(a.ipv4_mapped) if a.ipv4_mapped else str(a)


def pack_addr(s):
    if s is None:
        return bytes(16)
    a = ipaddress.ip_address(s)
    if a.version == 4:
        return bytes(10) + b"\xff\xff" + a.packed
    return a.packed


def read_tables(s):
    magic, version, pif_name_size, ifnamsiz = HELLO.unpack(recv_exact(s, HELLO.size))
    assert magic == b"basil:s\0", magic
    hello = {"version": version, "pif_name_size": pif_name_size, "ifnamsiz": ifnamsiz}
    tables = {}
    while True:
        (pif,) = recv_exact(s, 1)
        if pif == 0:
            break
        name, caps, count = PIF_INFO.unpack(recv_exact(s, PIF_INFO.size))
        assert name.index(b"\0") > 0
        rules = []
        for _ in range(count):
            addr, taddr, ifname, first, last, to, proto, flags = RULE.unpack(
                recv_exact(s, RULE.size))
            rules.append({
                "proto": PROTOS.get(proto, proto),
                "addr": None if flags & FLAG_DUAL else unpack_addr(addr),
                "taddr": None if taddr == bytes(16) else unpack_addr(taddr),
                "ifname": ifname.split(b"\0")[0].decode(),
                "first": first, "last": last, "to": to,
                "weak": bool(flags & FLAG_WEAK), "scan": bool(flags & FLAG_SCAN),
            })
        tables[str(pif)] = {"name": name.split(b"\0")[0].decode(), "caps": caps,
                            "rules": rules}
    return hello, tables


def encode_update(update):
    out = b""
    for pif, rules in update.items():
        out += struct.pack(">BI", int(pif), len(rules))
        for r in rules:
            flags = (FLAG_DUAL if r.get("addr") is None else 0) \
                | (FLAG_WEAK if r.get("weak") else 0) | (FLAG_SCAN if r.get("scan") else 0)
            proto = {"tcp": 6, "udp": 17}.get(r["proto"], r["proto"])
            out += RULE.pack(pack_addr(r.get("addr")), pack_addr(r.get("taddr")),
                             r.get("ifname", "").encode().ljust(16, b"\0"),
                             r["first"], r.get("last", r["first"]), r.get("to", r["first"]),
                             proto, flags)
    return out + b"\0"


def read_status(s):
    s.settimeout(10)
    b = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        b += chunk
    if not b:
        return None
    magic, status, length = STATUS.unpack(b[:STATUS.size])
    assert magic == b"basil:r\0", magic
    text = b[STATUS.size:STATUS.size + length].decode()
    assert len(text.encode()) == length
    return {"ok": status == 0, "text": text}


def main():
    path, cmd = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    if cmd == "hangup":
        s.close()
        print("{}")
        return
    try:
        hello, tables = read_tables(s)
    except EOFError as e:
        print(json.dumps({"refused": str(e)}))
        return
    if cmd == "show":
        print(json.dumps({"hello": hello, "tables": tables}))
        s.close()
        return
    if cmd == "set":
        s.sendall(encode_update(json.loads(sys.argv[3])))
        s.shutdown(socket.SHUT_WR)
        print(json.dumps(read_status(s)))
    elif cmd == "raw":
        try:
            s.sendall(bytes.fromhex(sys.argv[3]))
            s.shutdown(socket.SHUT_WR)
            print(json.dumps(read_status(s)))
        except (BrokenPipeError, ConnectionResetError) as e:
            print(json.dumps({"reset": str(e)}))
    elif cmd == "big":
        try:
            s.sendall(bytes.fromhex("01000000ff") + bytes(int(sys.argv[3])))
            s.shutdown(socket.SHUT_WR)
            print(json.dumps(read_status(s)))
        except (BrokenPipeError, ConnectionResetError) as e:
            print(json.dumps({"reset": str(e)}))
    elif cmd == "stall":
        s.sendall(bytes.fromhex(sys.argv[3]))
        time.sleep(float(sys.argv[4]))
        s.settimeout(0.5)
        try:
            print(json.dumps({"after": s.recv(100).hex()}))
        except socket.timeout:
            print(json.dumps({"after": "open"}))


if __name__ == "__main__":
    main()
