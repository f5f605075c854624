# The full flow table (tests/flood_table.rs), both ends.
#
# "holders IP BASE N READY", in the remote namespace: listens on ports
# BASE..BASE+N-1 and, for each connection, accepts, shuts its sending
# side down and keeps the socket. pasta's flow then stays until the
# client closes, as with an accept-and-close server, but the server's
# sockets are not orphans: 131071 of those would be close to the
# machine-wide tcp_max_orphans, beyond which the kernel resets them.
#
# "driver IP SINK BASE N PROCS SIZE TABLE TMP", in pasta's namespace: at each
# phase it prints "PHASE name" and waits for the test to create go-name.
import socket, sys, os, threading, time, hashlib, json, multiprocessing, selectors, errno, random, resource

def nofile(n):
    # Root in the test's namespaces (or pasta's limit inherited).
    try: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    except (ValueError, OSError):
        h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))

def sysctl(name, value):
    """Namespace-private sysctls; best effort."""
    try:
        with open("/proc/sys/" + name.replace(".", "/"), "w") as f: f.write(value)
    except OSError: pass

def holders(ip, base, n, ready):
    nofile(400000)
    sysctl("net.core.somaxconn", "65535")
    fam = socket.AF_INET6 if ':' in ip else socket.AF_INET
    sel = selectors.DefaultSelector()
    for p in range(base, base + n):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, p)); s.listen(65535); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    open(ready, "w").close()
    held = []
    while True:
        for key, _ in sel.select():
            while True:
                try: c, _ = key.fileobj.accept()
                except BlockingIOError: break
                except OSError as e:
                    # Out of descriptors: let the connection wait.
                    if e.errno in (errno.EMFILE, errno.ENFILE): time.sleep(0.01); break
                    raise
                try: c.shutdown(socket.SHUT_WR)
                except OSError: pass
                held.append(c)

block = random.Random(1).randbytes(1 << 20)

def transfer(c, size, secs, stop=None):
    """Sends size bytes on c, or what secs allow, or until stop is set,
    returns Gbit/s; the sink's count and sha256 must match."""
    t0 = time.monotonic()
    h = hashlib.sha256(); n = 0
    while n < size and time.monotonic() - t0 < secs and not (stop and stop.is_set()):
        b = block[: min(len(block), size - n)]
        c.sendall(b); h.update(b); n += len(b)
    c.shutdown(socket.SHUT_WR)
    r = b""
    while True:
        x = c.recv(4096)
        if not x: break
        r += x
    dt = time.monotonic() - t0
    c.close()
    got_n, got_h = r.split()
    assert int(got_n) == n and got_h.decode() == h.hexdigest(), (r, n, h.hexdigest())
    return n * 8 / dt / 1e9

def flooder(k, ip, ports, quota, stop_after, release, out):
    """Connections to the holders, 128 in flight, each connected one held,
    until quota of them or stop_after refusals (the table is full).
    Four flooders keep 512 SYNs in flight, below the tun device's queue
    of 1000 frames: with 1024 the burst overflowed it, and the SYNs
    dropped there came again a second later (filling took twice as long)."""
    fam = socket.AF_INET6 if ':' in ip else socket.AF_INET
    sel = selectors.DefaultSelector(); inflight = {}; held = []
    done = {"ok": 0, "refused": 0, "timeout": 0, "other": 0}
    i = k; end = time.monotonic() + 90
    def more():
        return len(held) < quota and done["refused"] < stop_after and time.monotonic() < end
    while more() or inflight:
        now = time.monotonic()
        while more() and len(inflight) < 128:
            s = socket.socket(fam, socket.SOCK_STREAM); s.setblocking(False)
            port = ports[i % len(ports)]; i += 1
            try: s.connect((ip, port))
            except BlockingIOError: pass
            except OSError: done["other"] += 1; s.close(); continue
            sel.register(s, selectors.EVENT_WRITE); inflight[s] = now + 5.0
        for key, _ in sel.select(0.05):
            s = key.fileobj; e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            sel.unregister(s); del inflight[s]
            if e == 0:
                done["ok"] += 1; held.append(s); continue
            elif e in (errno.ECONNREFUSED, errno.ECONNRESET): done["refused"] += 1
            else: done["other"] += 1
            s.close()
        now = time.monotonic()
        for s in [s for s, d in inflight.items() if d < now]:
            done["timeout"] += 1; sel.unregister(s); del inflight[s]; s.close()
    out.put((done, len(held)))
    release.wait(120)
    # Closed as a well-behaved client closes many: at most 128 FINs of
    # each flooder not yet acknowledged. All at once, the burst
    # overflows the tun device's queue (1000 frames) while pasta works
    # through the first thousand; what is dropped there comes again
    # after the clients' retransmission timeouts, which back off, and the
    # drain took from 4 to 14 s for 19000 flows, or minutes at 131071.
    # shutdown() sends the FIN and keeps the socket, whose state says
    # when pasta acknowledged it (TCP_CLOSE, 7, first byte of tcp_info).
    end = time.monotonic() + 120; pending = []
    while held or pending:
        assert time.monotonic() < end, "%d FINs never acknowledged" % len(pending)
        while held and len(pending) < 128:
            s = held.pop()
            try: s.shutdown(socket.SHUT_WR); pending.append(s)
            except OSError: s.close()
        time.sleep(0.005)
        left = []
        for s in pending:
            if s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 7: s.close()
            else: left.append(s)
        pending = left
    out.put("closed")

def retrans():
    """RetransSegs of this namespace's TCP."""
    h, v = [l.split() for l in open("/proc/net/snmp") if l.startswith("Tcp:")]
    return int(v[h.index("RetransSegs")])

def driver(ip, sink, base, n, procs, size, table, tmp):
    nofile(400000)
    # Four-tuples to the holders: the whole port range toward each port.
    sysctl("net.ipv4.ip_local_port_range", "1024 65535")
    fam = socket.AF_INET6 if ':' in ip else socket.AF_INET
    def phase(name):
        print("PHASE", name, flush=True)
        end = time.monotonic() + 120
        while not os.path.exists(os.path.join(tmp, "go-" + name)):
            assert time.monotonic() < end, "no go for " + name
            time.sleep(0.02)
    def connect():
        return socket.create_connection((ip, sink), timeout=30)
    res = {}
    # Transfers opened before the flood: one sends while the flood fills
    # the table, the other once it is full.
    during = connect(); old = connect()
    phase("start")
    filled = threading.Event()
    def filling():
        try: res["filling_transfer"] = transfer(during, 1 << 40, 150.0, filled)
        except Exception as e: res["filling_transfer"] = "failed: %r" % (e,)
    th = threading.Thread(target=filling)
    ports = list(range(base, base + n))
    release = multiprocessing.Event(); q = multiprocessing.Queue()
    quota = table // procs + 1024
    ps = [multiprocessing.Process(target=flooder,
                                  args=(k, ip, ports, quota, 64, release, q))
          for k in range(procs)]
    t0 = time.monotonic()
    for p in ps: p.start()
    # Started after the fork: a child gets only the forking thread.
    th.start()
    tot = {}; held = 0
    for _ in ps:
        d, h = q.get(timeout=150); held += h
        for k, v in d.items(): tot[k] = tot.get(k, 0) + v
    res["fill_secs"] = time.monotonic() - t0
    res["outcomes"] = tot; res["held"] = held
    # New flows while full: to the sink, which never closes first.
    probes = {"refused": 0, "open": 0, "timeout": 0}
    extra = []
    for _ in range(20):
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3)
        try: s.connect((ip, sink)); extra.append(s); probes["open"] += 1
        except socket.timeout: s.close(); probes["timeout"] += 1
        except OSError: s.close(); probes["refused"] += 1
    res["probes"] = probes
    # Only now (its flow's slot comes free when it ends).
    filled.set(); th.join(60)
    phase("full")
    res["full_transfer"] = transfer(old, size, 4.0)
    retrans0 = retrans()
    phase("release")
    t1 = time.monotonic()
    release.set()
    for s in extra: s.close()
    for _ in ps: assert q.get(timeout=120) == "closed"
    for p in ps: p.join()
    res["close_secs"] = time.monotonic() - t1
    phase("drained")
    # The clients' FINs sent again: few, as they close at the pace pasta
    # acknowledges (see flooder()).
    res["retransmits_in_drain"] = retrans() - retrans0
    res["after"] = transfer(connect(), size, 2.0)
    # And a burst of new flows, held, then closed.
    after = []
    for k in range(1000):
        after.append(socket.create_connection((ip, ports[k % n]), timeout=5))
    for s in after: s.close()
    res["after_conns"] = len(after)
    print("RESULT", json.dumps(res), flush=True)

if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "holders": holders(a[1], int(a[2]), int(a[3]), a[4])
    else: driver(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), int(a[6]), int(a[7]), a[8])
