//! TCP through pasta, with real clients and servers: curl, python's
//! http.server and the small clients and servers of `tcp_helper.py`.
//!
//! Paths covered, from the namespace ("guest"):
//! - to a host address through the tap (the guest gets another address),
//! - to the gateway, mapped to the host namespace's loopback,
//! - beyond the host (the remote namespace's loopback addresses),
//! - inbound through `-t`, from the remote namespace to the host's address.
//!
//! Every command runs under `timeout`, servers announce that they listen
//! through a ready file (or are polled with `ss`), and the test bed kills
//! whatever is left on drop.

mod common;

use common::tcp::*;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Size of the bulk transfers, each way. 1 GiB takes about 5 s (release)
/// to 8 s (debug) per direction here.
const BULK: u64 = 1 << 30;

// ---------------------------------------------------------------------
// HTTP with curl

/// curl from the namespace to python's http.server on the host's own
/// address (through the tap), on the host's loopback (the gateway) and
/// beyond the host; a 1 MiB file, checksums compared.
fn http_curl(v6: bool) {
    let tb = Tb::new();
    let www = tb.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let blob = www.join("blob");
    std::fs::write(&blob, {
        let mut v = vec![0u8; 1 << 20];
        // Not compressible, not periodic.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for b in v.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        v
    })
    .unwrap();
    let sum = sha256_file(&blob);
    let www = www.to_str().unwrap();
    let server = |ns: Command, addr: &str, port: &str| {
        let mut c = ns;
        c.args([
            "timeout",
            "60",
            python(),
            "-m",
            "http.server",
            "-b",
            addr,
            "-d",
            www,
            port,
        ]);
        c
    };
    let (host, gw, lo, beyond) = if v6 {
        (HOST6, REMOTE6, "::1", BEYOND6)
    } else {
        (HOST4, REMOTE4, "127.0.0.1", BEYOND4)
    };
    let _s1 = Bg::spawn(&tb, "s1", server(tb.in_host("env"), host, "8001"));
    let _s2 = Bg::spawn(&tb, "s2", server(tb.in_host("env"), lo, "8002"));
    let _s3 = Bg::spawn(&tb, "s3", server(tb.in_remote("env"), beyond, "8003"));
    wait_listen(&tb.host, 8001);
    wait_listen(&tb.host, 8002);
    wait_listen(&tb.remote, 8003);
    let url = |a: &str, p: u16| {
        if v6 {
            format!("http://[{a}]:{p}/blob")
        } else {
            format!("http://{a}:{p}/blob")
        }
    };
    let script = format!(
        // mktemp, not $$: the command is PID 1 or so of its own PID
        // namespace, like the IPv4 and IPv6 runs of this test at once.
        "f=$(mktemp) || exit 1
        for u in {} {} {}; do
            curl -g -fsS -m 10 -o $f $u || exit 1
            echo $u $(sha256sum < $f)
        done
        rm -f $f",
        url(host, 8001),
        url(gw, 8002),
        url(beyond, 8003)
    );
    let mut args = GUEST4.to_vec();
    args.extend(["-a", "2001:db8::3"]);
    let out = ok(pasta_sh(&tb, &args, &script));
    assert_eq!(out.lines().count(), 3, "{out}");
    for l in out.lines() {
        assert!(l.contains(&sum), "checksum mismatch ({sum}): {out}");
    }
}

#[test]
fn http_curl_to_host_gateway_and_beyond_ipv4() {
    http_curl(false);
}

#[test]
fn http_curl_to_host_gateway_and_beyond_ipv6() {
    http_curl(true);
}

#[test]
fn http_inbound_keeps_the_source_address() {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let cmd = helper(
        "peer-http",
        &[
            "--listen",
            "::",
            "8080",
            "--count",
            "2",
            "--ready",
            ready.to_str().unwrap(),
        ],
    );
    let guest = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(&tb, &["--config-net", "-t", "8080"], &shell(&cmd)),
    );
    wait_ready(&ready);
    let v4 = ok({
        let mut c = tb.in_remote("curl");
        c.args(["-fsS", "-m", "10", &format!("http://{HOST4}:8080/")]);
        c
    });
    assert_eq!(v4, REMOTE4, "the server in the namespace saw another peer");
    let v6 = ok({
        let mut c = tb.in_remote("curl");
        c.args(["-fsS", "-g", "-m", "10", &format!("http://[{HOST6}]:8080/")]);
        c
    });
    assert_eq!(v6, REMOTE6, "the server in the namespace saw another peer");
    guest.done(Duration::from_secs(20));
}

// ---------------------------------------------------------------------
// Bulk transfers

/// Guest → host loopback through the gateway, then host loopback → guest,
/// `BULK` bytes each, checksums compared.
fn bulk_gateway(gw: &str, lo: &str) {
    let tb = Tb::new();
    let size = BULK.to_string();
    for (n, (host_mode, guest_mode)) in [("sink", "source"), ("source", "sink")]
        .into_iter()
        .enumerate()
    {
        let ready = tb.path(&format!("ready{n}"));
        let port = format!("{}", 9000 + n);
        let host = Bg::spawn(
            &tb,
            &format!("host{n}"),
            host_helper_t(
                &tb,
                T_BULK,
                host_mode,
                &[
                    "--listen",
                    lo,
                    &port,
                    "--stall",
                    STALL,
                    "--size",
                    &size,
                    "--ready",
                    ready.to_str().unwrap(),
                ],
            ),
        );
        wait_ready(&ready);
        let start = Instant::now();
        let (guest, host) = both(
            pasta_sh_t(
                &tb,
                T_BULK,
                &["-d", "--config-net"],
                &shell(&helper(
                    guest_mode,
                    &["--connect", gw, &port, "--size", &size, "--stall", STALL],
                )),
            ),
            host,
            Duration::from_secs(T_BULK),
        );
        eprintln!("{guest_mode} in guest: {:?}", start.elapsed());
        let (sent, recv) = if guest_mode == "source" {
            (guest, host)
        } else {
            (host, guest)
        };
        let s = line(&sent, "sent");
        let r = line(&recv, "recv");
        assert_eq!(r[1], size, "bytes received: {recv}");
        assert_eq!(s[2], r[2], "checksums differ: {sent} / {recv}");
    }
}

/// Remote → guest through `-t 8080` to the host's address, then guest →
/// remote, `BULK` bytes each, checksums compared.
fn bulk_inbound(host_addr: &str) {
    let tb = Tb::new();
    let size = BULK.to_string();
    for (n, (guest_mode, remote_mode)) in [("sink", "source"), ("source", "sink")]
        .into_iter()
        .enumerate()
    {
        let ready = tb.path(&format!("ready{n}"));
        let guest = Bg::spawn(
            &tb,
            &format!("pasta{n}"),
            pasta_sh_t(
                &tb,
                T_BULK,
                &["-d", "--config-net", "-t", "8080"],
                &shell(&helper(
                    guest_mode,
                    &[
                        "--listen",
                        "::",
                        "8080",
                        "--stall",
                        STALL,
                        "--size",
                        &size,
                        "--ready",
                        ready.to_str().unwrap(),
                    ],
                )),
            ),
        );
        wait_ready(&ready);
        let start = Instant::now();
        let (remote, guest) = both(
            remote_helper_t(
                &tb,
                T_BULK,
                remote_mode,
                &[
                    "--connect",
                    host_addr,
                    "8080",
                    "--size",
                    &size,
                    "--stall",
                    STALL,
                ],
            ),
            guest,
            Duration::from_secs(T_BULK),
        );

        eprintln!("{guest_mode} in guest: {:?}", start.elapsed());
        let (sent, recv) = if guest_mode == "source" {
            (guest, remote)
        } else {
            (remote, guest)
        };
        let s = line(&sent, "sent");
        let r = line(&recv, "recv");
        assert_eq!(r[1], size, "bytes received: {recv}");
        assert_eq!(s[2], r[2], "checksums differ: {sent} / {recv}");
    }
}

#[test]
fn bulk_gateway_ipv4() {
    bulk_gateway(REMOTE4, "127.0.0.1");
}

#[test]
fn bulk_gateway_ipv6() {
    bulk_gateway(REMOTE6, "::1");
}

#[test]
fn bulk_inbound_ipv4() {
    bulk_inbound(HOST4);
}

#[test]
fn bulk_inbound_ipv6() {
    bulk_inbound(HOST6);
}

// ---------------------------------------------------------------------
// Half-close

const REPLY: &str = "8388608"; // 8 MiB

#[test]
fn half_close_guest_initiated() {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let server = Bg::spawn(
        &tb,
        "server",
        host_helper(
            &tb,
            "halfclose-server",
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--size",
                REPLY,
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    let client = ok(pasta_sh(
        &tb,
        &["--config-net"],
        &shell(&helper(
            "halfclose-client",
            &["--connect", REMOTE4, "9000", "--size", REPLY],
        )),
    ));
    let server = server.done(Duration::from_secs(T));
    assert_eq!(line(&server, "request")[2], "ok", "{server}");
    assert_eq!(line(&client, "reply"), ["reply", REPLY, "ok"], "{client}");
}

#[test]
fn half_close_inbound() {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let server = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(
            &tb,
            &["--config-net", "-t", "8080"],
            &shell(&helper(
                "halfclose-server",
                &[
                    "--listen",
                    "::",
                    "8080",
                    "--size",
                    REPLY,
                    "--ready",
                    ready.to_str().unwrap(),
                ],
            )),
        ),
    );
    wait_ready(&ready);
    let client = ok(remote_helper(
        &tb,
        "halfclose-client",
        &["--connect", HOST4, "8080", "--size", REPLY],
    ));
    let server = server.done(Duration::from_secs(T));
    assert_eq!(
        line(&server, "request"),
        ["request", "1000", "ok", "peer", REMOTE4],
        "{server}"
    );
    assert_eq!(line(&client, "reply"), ["reply", REPLY, "ok"], "{client}");
}

// ---------------------------------------------------------------------
// Resets

/// One side closes with SO_LINGER 0, the other must see ECONNRESET.
fn reset(host_mode: &str, guest_mode: &str) -> (String, String) {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let host = Bg::spawn(
        &tb,
        "host",
        host_helper(
            &tb,
            host_mode,
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--timeout",
                "10",
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    let guest = ok(pasta_sh(
        &tb,
        &["--config-net"],
        &shell(&helper(
            guest_mode,
            &["--connect", REMOTE4, "9000", "--timeout", "10"],
        )),
    ));
    (host.done(Duration::from_secs(T)), guest)
}

#[test]
fn reset_from_guest_reaches_host_peer() {
    let (host, guest) = reset("expect-reset", "abort");
    assert!(guest.contains("aborted"), "{guest}");
    assert!(host.starts_with("reset"), "host peer: {host}");
}

#[test]
fn reset_from_host_peer_reaches_guest() {
    let (host, guest) = reset("abort", "expect-reset");
    assert!(host.contains("aborted"), "{host}");
    assert!(guest.starts_with("reset"), "guest: {guest}");
}

/// The same through `-t 8080`: one side (remote or guest) closes with
/// SO_LINGER 0, the other must see ECONNRESET.
fn reset_inbound(remote_mode: &str, guest_mode: &str) -> (String, String) {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let guest = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(
            &tb,
            &["--config-net", "-t", "8080"],
            &shell(&helper(
                guest_mode,
                &[
                    "--listen",
                    "::",
                    "8080",
                    "--timeout",
                    "10",
                    "--ready",
                    ready.to_str().unwrap(),
                ],
            )),
        ),
    );
    wait_ready(&ready);
    let remote = ok(remote_helper(
        &tb,
        remote_mode,
        &["--connect", HOST4, "8080", "--timeout", "10"],
    ));
    (remote, guest.done(Duration::from_secs(T)))
}

#[test]
fn reset_from_guest_reaches_remote_peer_inbound() {
    let (remote, guest) = reset_inbound("expect-reset", "abort");
    assert!(guest.contains("aborted"), "{guest}");
    assert!(remote.starts_with("reset"), "remote peer: {remote}");
}

#[test]
fn reset_from_remote_peer_reaches_guest_inbound() {
    let (remote, guest) = reset_inbound("abort", "expect-reset");
    assert!(remote.contains("aborted"), "{remote}");
    assert!(guest.starts_with("reset"), "guest: {guest}");
}

#[test]
fn killed_host_peer_resets_guest() {
    // The host server is killed with unread data in its socket: its kernel
    // resets the connection, and the guest must see that.
    let tb = Tb::new();
    let ready = tb.path("ready");
    let pidfile = tb.path("pid");
    let script = format!(
        "echo $$ > {}; exec {}",
        pidfile.display(),
        shell(&helper(
            "sink",
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--ready",
                ready.to_str().unwrap(),
                "--pause-every",
                "1",
                "--pause-ms",
                "60000",
            ],
        ))
    );
    let server = Bg::spawn(&tb, "server", {
        let mut c = tb.in_host("sh");
        c.args(["-c", &script]);
        c
    });
    wait_ready(&ready);
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim().to_string();
    // The guest sends, then waits for the reset while we kill the server.
    let sent = tb.path("sent");
    let sent2 = sent.clone();
    let killer = std::thread::spawn(move || {
        wait_for("the guest's data", Duration::from_secs(20), || {
            sent2.exists()
        });
        let _ = Command::new("kill").args(["-9", &pid]).status();
    });
    let guest = pasta_sh(
        &tb,
        &["--config-net"],
        &format!(
            "{} -c '
import socket, time
c = socket.create_connection((\"{REMOTE4}\", 9000), timeout=10)
c.sendall(b\"x\" * 100000)
open(\"{}\", \"w\").close()
try:
    while c.recv(65536):
        pass
    print(\"eof\")
except ConnectionResetError:
    print(\"reset\")
'",
            python(),
            sent.display()
        ),
    );
    let out = ok(guest);
    killer.join().unwrap();
    let _ = server.wait(Duration::from_secs(10));
    assert_eq!(out.trim(), "reset");
}

#[test]
fn killed_guest_process_resets_host_peer() {
    // The guest's client is killed -9 with unread data in its socket: the
    // guest's kernel sends a RST, and the host peer must see the reset.
    let tb = Tb::new();
    let ready = tb.path("ready");
    let got = tb.path("got");
    let host = Bg::spawn(
        &tb,
        "host",
        host_helper(
            &tb,
            "expect-reset",
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--timeout",
                "10",
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    let script = format!(
        "{py} -c '
import select, socket, time
c = socket.create_connection((\"{REMOTE4}\", 9000), timeout=10)
c.sendall(b\"hello\")
select.select([c], [], [], 10)
open(\"{got}\", \"w\").close()
time.sleep(30)
' &
        pid=$!
        i=0; while [ ! -e {got} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
        kill -9 $pid
        wait $pid
        exit 0",
        py = python(),
        got = got.display()
    );
    ok(pasta_sh(&tb, &["--config-net"], &script));
    let host = host.done(Duration::from_secs(T));
    assert!(got.exists(), "the guest never got the host's data");
    assert!(host.starts_with("reset"), "host peer: {host}");
}

#[test]
fn connect_to_closed_port_is_refused_quickly() {
    let tb = Tb::new();
    let mut script = String::new();
    for addr in [REMOTE4, REMOTE6, HOST4, BEYOND4, BEYOND6] {
        script += &shell(&helper(
            "refused",
            &["--connect", addr, "9", "--timeout", "5"],
        ));
        script += "\n";
    }
    let mut args = GUEST4.to_vec();
    args.extend(["-a", "2001:db8::3"]);
    let out = ok(pasta_sh(&tb, &args, &script));
    assert_eq!(out.lines().count(), 5, "{out}");
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w[0], "refused", "{out}");
        let ms: u64 = w[2].parse().unwrap();
        assert!(ms < 1000, "refused only after {ms} ms: {out}");
    }
}

// ---------------------------------------------------------------------
// Many connections, flow table

#[test]
fn thousand_concurrent_connections() {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let server = Bg::spawn(
        &tb,
        "server",
        host_helper(
            &tb,
            "echo-many",
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--count",
                "1000",
                "--size",
                "4096",
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    // After the clients, wait (bounded) until the guest's last FINs were
    // acknowledged, so that pasta saw every connection close.
    let script = format!(
        "{} || exit 1
        i=0
        while [ -n \"$(ss -Htn state last-ack state fin-wait-1 state closing)\" ] && [ $i -lt 200 ]; do
            sleep 0.05; i=$((i+1))
        done",
        shell(&helper(
            "many-clients",
            &[
                "--connect",
                REMOTE4,
                "9000",
                "--count",
                "1000",
                "--size",
                "4096",
            ],
        ))
    );
    let o = run(pasta_sh(&tb, &["-d", "--config-net"], &script).stdin(Stdio::null()));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(line(&out, "clients"), ["clients", "1000", "bad", "0"]);
    let server = server.done(Duration::from_secs(T));
    assert!(server.starts_with("served 1000"), "{server}");
    let opened = tcp_counter(&err, "opened_from_tap");
    let closed = tcp_counter(&err, "closed");
    assert_eq!(opened, 1000, "{err}");
    assert_eq!(closed, opened, "flows left open at exit: {err}");
}

#[test]
fn full_flow_table_refuses_and_running_transfers_finish() {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let server = Bg::spawn(
        &tb,
        "server",
        host_helper(
            &tb,
            "sink-many",
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--count",
                "4",
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    let mut cmd = pasta_sh(
        &tb,
        &["-d", "--config-net"],
        &shell(&helper(
            "table-full",
            &[
                "--connect",
                REMOTE4,
                "9000",
                "--count",
                "4",
                "--size",
                "16777216",
                "--timeout",
                "10",
            ],
        )),
    );
    cmd.env("PASST_RS_TEST_FLOW_MAX", "4");
    let o = run(cmd.stdin(Stdio::null()));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    let server = server.done(Duration::from_secs(T));
    assert!(server.starts_with("served 4"), "{server}");
    assert!(out.starts_with("extra_refused"), "{out}");
    assert_eq!(out.matches("conn ok").count(), 4, "{out}");
    assert!(tcp_counter(&err, "refused_table_full") >= 1, "{err}");
}

// ---------------------------------------------------------------------
// Timers

#[test]
fn keepalive_reclaims_connection_the_guest_forgot() {
    // The guest forgets the connection without telling anybody: a
    // blackhole route toward the gateway swallows the RST of its
    // SO_LINGER 0 close, then the route goes again. Only pasta's
    // keepalive (1 s here) can find out: the guest answers it with a RST,
    // and the host peer must then see a reset too.
    let tb = Tb::new();
    let ready = tb.path("ready");
    let done = tb.path("done");
    let host = Bg::spawn(
        &tb,
        "host",
        host_helper(
            &tb,
            "expect-reset",
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--timeout",
                "15",
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    let script = format!(
        "{} || exit 1
        i=0; while [ ! -e {} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done",
        shell(&helper(
            "vanish",
            &["--connect", REMOTE4, "9000", "--timeout", "10"]
        )),
        done.display()
    );
    let mut cmd = pasta_sh(&tb, &["-d", "--config-net"], &script);
    cmd.env("PASST_RS_TEST_TCP_KEEPALIVE", "1");
    let guest = Bg::spawn(&tb, "pasta", cmd);
    let host = host.done(Duration::from_secs(T));
    std::fs::write(&done, "").unwrap();
    let (st, out, err) = guest.wait(Duration::from_secs(T));
    assert!(st.success(), "{out}\n{err}");
    assert!(out.contains("forgotten"), "{out}");
    let w: Vec<&str> = host.split_whitespace().collect();
    assert_eq!(w[0], "reset", "host peer: {host}");
    let ms: u64 = w[2].parse().unwrap();
    assert!(ms < 5000, "reset only after {ms} ms");
    assert!(tcp_counter(&err, "keepalives") >= 1, "{err}");
}

#[test]
fn inactivity_resets_idle_connection() {
    // Both sides alive but silent: with a 2 s inactivity interval, the
    // connection is reset after 2 to 4 s, toward both.
    let tb = Tb::new();
    let ready = tb.path("ready");
    let host = Bg::spawn(
        &tb,
        "host",
        host_helper(
            &tb,
            "expect-reset",
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--timeout",
                "15",
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    let mut cmd = pasta_sh(
        &tb,
        &["-d", "--config-net"],
        &shell(&helper(
            "idle",
            &["--connect", REMOTE4, "9000", "--timeout", "15"],
        )),
    );
    cmd.env("PASST_RS_TEST_TCP_INACTIVITY", "2");
    let o = run(cmd.stdin(Stdio::null()));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let host = host.done(Duration::from_secs(T));
    for (who, r) in [("guest", out.as_ref()), ("host peer", host.as_str())] {
        let w: Vec<&str> = r.split_whitespace().collect();
        assert_eq!(w.first(), Some(&"reset"), "{who}: {r}\n{err}");
        let ms: u64 = w[2].parse().unwrap();
        assert!((1000..6000).contains(&ms), "{who} reset after {ms} ms");
    }
    assert!(tcp_counter(&err, "inactivity_resets") >= 1, "{err}");
}

// ---------------------------------------------------------------------
// Stall regression

#[test]
fn slow_reader_keeps_bulk_transfer_moving() {
    // Guest → host loopback into a reader with a small receive buffer that
    // pauses 50 ms every MiB: apart from those pauses, no gap between two
    // reads may reach 180 ms (an RTO-length stall).
    let tb = Tb::new();
    let ready = tb.path("ready");
    let size = (200u64 << 20).to_string();
    let host = Bg::spawn(
        &tb,
        "host",
        host_helper_t(
            &tb,
            T_BULK,
            "sink",
            &[
                "--listen",
                "127.0.0.1",
                "9000",
                "--stall",
                STALL,
                "--rcvbuf",
                "65536",
                "--pause-every",
                "1048576",
                "--pause-ms",
                "50",
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    let guest = ok(pasta_sh_t(
        &tb,
        T_BULK,
        &["-d", "--config-net"],
        &shell(&helper(
            "source",
            &["--connect", REMOTE4, "9000", "--size", &size],
        )),
    ));
    let host = host.done(Duration::from_secs(T_BULK));
    let s = line(&guest, "sent");
    let r = line(&host, "recv");
    assert_eq!(r[1], size, "{host}");
    assert_eq!(s[2], r[2], "checksums differ: {guest} / {host}");
    let gap: f64 = r[4].parse().unwrap();
    eprintln!("longest gap between reads: {gap} ms");
    assert!(gap < 180.0, "stall of {gap} ms between reads: {host}");
}
