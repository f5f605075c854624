# Runs in pasta's namespace, driven by the test through files: at each
# phase it prints "PHASE name" and waits for the test to create go-name.
import socket, sys, os, time, hashlib, json, multiprocessing, selectors, errno, random
(ip, sink_port, flood_port, closed_port, size, procs, attempts, hold, splice_port,
 tmp) = sys.argv[1:11]
sink_port, flood_port, closed_port, splice_port = map(int, (sink_port, flood_port, closed_port, splice_port))
size, procs, attempts, hold = map(int, (size, procs, attempts, hold))
fam = socket.AF_INET6 if ':' in ip else socket.AF_INET

def phase(name):
    print("PHASE", name, flush=True)
    end = time.monotonic() + 90
    while not os.path.exists(os.path.join(tmp, "go-" + name)):
        assert time.monotonic() < end, "no go for " + name
        time.sleep(0.02)

block = random.Random(1).randbytes(1 << 20)

def connect():
    return socket.create_connection((ip, sink_port), timeout=30)

SECS = 4.0

def transfer(c):
    """Sends size bytes on c, or what SECS allow, returns Gbit/s; the
    sink's count and sha256 must match."""
    t0 = time.monotonic()
    h = hashlib.sha256(); n = 0
    while n < size and time.monotonic() - t0 < SECS:
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

def flooder(k, stop, release, out):
    """Connection attempts, half to the flood server, half to a closed
    port, 64 in flight; with hold, keeps up to hold connected sockets
    open until release.

    Niced: on a 2-CPU machine eight flooders at the transfer's priority
    take its endpoints' CPU time, and the ratio would measure the
    scheduler rather than pasta."""
    os.nice(10)
    sel = selectors.DefaultSelector(); inflight = {}; held = []
    done = {"ok": 0, "refused": 0, "timeout": 0, "other": 0}
    i = 0; limit = attempts // procs
    while i < limit or inflight:
        if stop.is_set() and not inflight: break
        now = time.monotonic()
        while i < limit and len(inflight) < 64 and not stop.is_set():
            s = socket.socket(fam, socket.SOCK_STREAM); s.setblocking(False)
            port = flood_port if i % 2 == 0 else closed_port
            i += 1
            try: s.connect((ip, port))
            except BlockingIOError: pass
            except OSError: done["other"] += 1; s.close(); continue
            sel.register(s, selectors.EVENT_WRITE); inflight[s] = now + 3.0
        for key, _ in sel.select(0.05):
            s = key.fileobj; e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            sel.unregister(s); del inflight[s]
            if e == 0:
                done["ok"] += 1
                if len(held) < hold: held.append(s); continue
            elif e in (errno.ECONNREFUSED, errno.ECONNRESET): done["refused"] += 1
            else: done["other"] += 1
            s.close()
        now = time.monotonic()
        for s in [s for s, d in inflight.items() if d < now]:
            done["timeout"] += 1; sel.unregister(s); del inflight[s]; s.close()
    out.put((i, done, len(held)))
    release.wait(90)
    for s in held: s.close()

def probe(addr, port):
    """One connection attempt: 'refused', 'reset' (connected, then reset
    or closed at once), 'open' (still open after 3 s) or 'timeout'."""
    s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try: s.connect((addr, port))
    except (ConnectionRefusedError, ConnectionResetError): return "refused"
    except socket.timeout: return "timeout"
    try:
        return "reset" if s.recv(1) == b"" else "data"
    except (ConnectionResetError, BrokenPipeError): return "reset"
    except socket.timeout: return "open"
    finally: s.close()

res = {}
if splice_port:
    # pasta forwards the host's listening ports once its scan found them.
    end = time.monotonic() + 30
    while True:
        try: socket.create_connection(("127.0.0.1", splice_port), timeout=3).close(); break
        except OSError:
            assert time.monotonic() < end, "no spliced listener"
            time.sleep(0.1)
phase("start")
res["undisturbed"] = transfer(connect())
old = connect()
old2 = connect() if hold else None
stop = multiprocessing.Event(); release = multiprocessing.Event(); q = multiprocessing.Queue()
ps = [multiprocessing.Process(target=flooder, args=(k, stop, release, q)) for k in range(procs)]
for p in ps: p.start()
time.sleep(0.2)
phase("flood")
res["disturbed"] = transfer(old)
if hold:
    # Wait until the flooders made all their attempts: pasta is
    # exhausted now, with the held connections open.
    pass
else:
    stop.set(); release.set()
tot = {}; n = 0; held = 0
for p in ps:
    i, d, h = q.get(timeout=120); n += i; held += h
    for k, v in d.items(): tot[k] = tot.get(k, 0) + v
res["attempts"] = n; res["outcomes"] = tot; res["held"] = held
if hold:
    # Slots or descriptors freed since (the first transfer's) are taken
    # again: connections until one is refused.
    extra = []
    for _ in range(200):
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3)
        try: s.connect((ip, flood_port)); extra.append(s)
        except OSError: s.close(); break
    res["topped_up"] = len(extra)
    phase("exhausted")
    # Probes to the sinks, which never close first: "open" means the
    # connection got through, "refused" or "reset" that pasta refused it.
    # A slot or descriptor may come free meanwhile (the first
    # transfer's flow closing): what gets through is held, and tried
    # again.
    for _ in range(10):
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3)
        try: s.connect((ip, sink_port)); extra.append(s)
        except socket.timeout: s.close(); res["probe_tap"] = "timeout"; break
        except OSError: s.close(); res["probe_tap"] = "refused"; break
    else:
        res["probe_tap"] = "open"
    if splice_port: res["probe_splice"] = probe("127.0.0.1", splice_port)
    res["exhausted_transfer"] = transfer(old2)
    phase("quiet")
release.set()
if hold:
    for s in extra: s.close()
for p in ps: p.join()
phase("flood_end")
res["after"] = transfer(connect())
print("RESULT", json.dumps(res), flush=True)
