# Servers in the "remote" namespace: a sink (reads to EOF, answers with
# count and sha256) and a flood target (accepts and closes at once).
import socket, sys, threading, hashlib, os
ip = sys.argv[1]; sink_port = int(sys.argv[2]); flood_port = int(sys.argv[3]); ready = sys.argv[4]
fam = socket.AF_INET6 if ':' in ip else socket.AF_INET
def lsock(port, backlog):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port)); s.listen(backlog); return s
def sink(s):
    while True:
        c, _ = s.accept()
        def one(c):
            h = hashlib.sha256(); n = 0
            while True:
                b = c.recv(1 << 20)
                if not b: break
                h.update(b); n += len(b)
            c.sendall(("%d %s\n" % (n, h.hexdigest())).encode()); c.close()
        threading.Thread(target=one, args=(c,), daemon=True).start()
def flood(s):
    while True:
        c, _ = s.accept(); c.close()
a = lsock(sink_port, 16); b = lsock(flood_port, 4096)
threading.Thread(target=flood, args=(b,), daemon=True).start()
open(ready, "w").close()
sink(a)
