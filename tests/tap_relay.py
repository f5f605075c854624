#!/usr/bin/env python3
"""A guest for passt's stream socket: a tap device in this namespace,
relayed to passt's UNIX socket, so that the namespace's own kernel is the
guest (real TCP, ARP, UDP) without a VM.

  tap_relay.py SOCKET [TAP]

Creates TAP (default tap0; IFF_TAP | IFF_NO_PI: bare Ethernet frames),
connects to SOCKET (retrying for 10 s while passt starts), prints "ready",
then moves frames both ways (one thread each way): a frame read from the tap goes to passt with
passt's 32-bit big-endian length prefix, a frame from passt is written to
the tap. Exits when passt closes the socket. The caller configures the
tap (addresses, MTU, link up) after "ready".
"""

import fcntl
import os
import socket
import struct
import sys
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def main():
    path = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else "tap0"
    tap = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tap, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    end = time.monotonic() + 10
    while True:
        try:
            s.connect(path)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)
    # Large buffers and one thread per direction: passt drops frames it
    # cannot write to a full socket, and a relay blocked writing one way
    # must not stop reading the other.
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        s.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
    print("ready", flush=True)
    threading.Thread(target=to_passt, args=(tap, s), daemon=True).start()
    buf = b""
    while True:
        b = s.recv(1 << 18)
        if not b:
            return
        buf += b
        while len(buf) >= 4:
            n = struct.unpack("!I", buf[:4])[0]
            if len(buf) < 4 + n:
                break
            try:
                os.write(tap, buf[4 : 4 + n])
            except OSError:
                # The tap is down (not configured yet): the kernel
                # refuses the frame, as a link would lose it.
                pass
            buf = buf[4 + n :]


def to_passt(tap, s):
    while True:
        f = os.read(tap, 1 << 17)
        try:
            s.sendall(struct.pack("!I", len(f)) + f)
        except OSError:
            os._exit(0)  # passt is gone

if __name__ == "__main__":
    main()
