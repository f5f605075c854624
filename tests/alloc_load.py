# Load for tests/no_alloc.rs and bench/soak.sh. "server PORT ADDR [SECONDS]"
# (lives SECONDS, default 300): in the remote namespace, TCP on
# PORT sinks what it gets (then replies with the count), on PORT+1 sends the
# bytes asked for, on PORT+2 echoes; UDP on PORT counts datagrams and
# answers the count to a "?". "client ADDR PORT SCALE": bulk TCP both ways
# (SCALE x 4 MiB), SCALE x 200 request/response transactions and SCALE x
# 1000 UDP datagrams; prints "done". Bounded: every socket has a timeout.
# "soak ADDR PORT DNS SECONDS" (bench/soak.sh): for SECONDS, at once, bulk
# TCP each way (8 MiB per connection, connection after connection), short
# connections (connect, 1-byte request and response, close; paced at about
# 50 a second), a paced UDP stream (~2000 datagrams a second) and DNS
# queries to DNS:53 (~20 a second, from a pool of 16 sockets so that UDP
# flows stay a bounded set); prints "done" and what it moved. Lost UDP
# exchanges are counted (an error only beyond a tenth of them).
import socket
import struct
import sys
import threading

T = 30


def listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    s.settimeout(120)
    return s


def serve_tcp(s, handler):
    while True:
        c, _ = s.accept()
        c.settimeout(T)
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def sink(c):
    n = 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        n += len(b)
    c.sendall(struct.pack("!Q", n))
    c.close()


def source(c):
    n = struct.unpack("!Q", c.recv(8))[0]
    chunk = b"x" * (1 << 16)
    while n > 0:
        k = min(n, len(chunk))
        c.sendall(chunk[:k])
        n -= k
    c.close()


def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(1)
        if not b:
            break
        c.sendall(b)
    c.close()


def udp(s):
    n = 0
    while True:
        b, a = s.recvfrom(2048)
        if b == b"?":
            s.sendto(str(n).encode(), a)
        else:
            n += 1


def server(port, addr, lifetime=300):
    # Everything bound before "ready".
    for p, h in ((port, sink), (port + 1, source), (port + 2, echo)):
        threading.Thread(target=serve_tcp, args=(listener(p), h), daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Bound to the address the client sends to: replies must come from it.
    u.bind((addr, port))
    threading.Thread(target=udp, args=(u,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait(lifetime)


def client(addr, port, scale):
    size = scale * (4 << 20)
    c = socket.create_connection((addr, port), timeout=T)
    chunk = b"y" * (1 << 16)
    left = size
    while left > 0:
        k = min(left, len(chunk))
        c.sendall(chunk[:k])
        left -= k
    c.shutdown(socket.SHUT_WR)
    got = struct.unpack("!Q", c.recv(8))[0]
    assert got == size, (got, size)
    c.close()
    c = socket.create_connection((addr, port + 1), timeout=T)
    c.sendall(struct.pack("!Q", size))
    n = 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        n += len(b)
    assert n == size, (n, size)
    c.close()
    c = socket.create_connection((addr, port + 2), timeout=T)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(scale * 200):
        c.sendall(b"q")
        assert c.recv(1) == b"q"
    c.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(T)
    u.connect((addr, port))
    for i in range(scale * 1000):
        u.send(b"d" * 1000)
        if i % 50 == 49:
            # Paced: a few lost to a full queue would not matter, but
            # keep them all in flight within the socket buffers.
            u.send(b"?")
            u.recv(64)
    print("done", flush=True)


def soak(addr, port, dns, seconds):
    import time

    end = time.monotonic() + seconds
    counts = {"up": 0, "down": 0, "short": 0, "udp": 0, "udp_lost": 0, "dns": 0, "dns_lost": 0}
    errors = []
    size = 8 << 20

    def loop(name, body):
        try:
            while time.monotonic() < end:
                body()
        except Exception as e:  # reported, and fails the run
            errors.append(f"{name}: {e!r}")

    def up():
        c = socket.create_connection((addr, port), timeout=T)
        chunk = b"y" * (1 << 16)
        for _ in range(size >> 16):
            c.sendall(chunk)
        c.shutdown(socket.SHUT_WR)
        got = struct.unpack("!Q", c.recv(8))[0]
        assert got == size, (got, size)
        c.close()
        counts["up"] += size

    def down():
        c = socket.create_connection((addr, port + 1), timeout=T)
        c.sendall(struct.pack("!Q", size))
        n = 0
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            n += len(b)
        assert n == size, (n, size)
        c.close()
        counts["down"] += size

    def short():
        c = socket.create_connection((addr, port + 2), timeout=T)
        c.sendall(b"q")
        assert c.recv(1) == b"q"
        c.close()
        counts["short"] += 1
        time.sleep(0.02)

    # UDP may lose datagrams (full socket buffers under the bulk load): a
    # lost "?" or answer is counted, not an error; the run fails only if
    # more than a tenth are lost.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    u.connect((addr, port))

    def udp_burst():
        for _ in range(50):
            u.send(b"d" * 1000)
        u.send(b"?")
        try:
            u.recv(64)
            counts["udp"] += 50
        except TimeoutError:
            counts["udp_lost"] += 1
        time.sleep(0.025)

    pool = []
    for _ in range(16):
        d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        d.settimeout(2)
        d.connect((dns, 53))
        pool.append(d)
    query_id = [0]

    def dns_query():
        i = query_id[0] = (query_id[0] + 1) & 0xFFFF
        d = pool[i % len(pool)]
        name = b"".join(bytes([len(x)]) + x for x in (b"soak%d" % i, b"example", b"org"))
        d.send(struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + name + b"\0" + struct.pack("!HH", 1, 1))
        try:
            # A late answer to a query counted lost may come first.
            while struct.unpack("!H", d.recv(512)[:2])[0] != i:
                pass
            counts["dns"] += 1
        except TimeoutError:
            counts["dns_lost"] += 1
        time.sleep(0.05)

    threads = [
        threading.Thread(target=loop, args=(n, b))
        for n, b in (("up", up), ("down", down), ("short", short), ("udp", udp_burst), ("dns", dns_query))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(" ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    if counts["udp_lost"] * 50 > counts["udp"] / 10 or counts["dns_lost"] > counts["dns"] / 10:
        errors.append("more than a tenth of the UDP or DNS exchanges lost")
    if errors:
        print("errors: " + "; ".join(errors), flush=True)
        sys.exit(1)
    print("done", flush=True)


if sys.argv[1] == "server":
    server(int(sys.argv[2]), sys.argv[3], *(float(a) for a in sys.argv[4:5]))
elif sys.argv[1] == "soak":
    soak(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
else:
    client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
