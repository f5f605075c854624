//! Automatic forwarding (`auto`, pasta's default for `-t`/`-u`/`-T`/`-U`):
//! a TCP or UDP server that starts listening on one side becomes
//! reachable from the other side's loopback within about a second (the
//! scan interval), and stops being forwarded once it is gone; a TCP
//! listening port gets a UDP forward too, and our own UDP flow sockets
//! are not forwarded back.

mod common;

use common::tcp::*;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How soon a change must be followed: one scan interval, plus slack for
/// two busy cores.
const FOLLOW: Duration = Duration::from_millis(2500);

/// Whether `socat` in the host namespace gets `want` from `port` on the
/// host's loopback.
fn host_reaches(tb: &Testbed, port: u16, want: &str) -> bool {
    let o = run(tb
        .in_host("timeout")
        .args(["2", "socat", "-u", &format!("TCP:127.0.0.1:{port}"), "-"])
        .stdin(Stdio::null()));
    String::from_utf8_lossy(&o.stdout).trim() == want
}

/// Whether a connection to `port` on the host's loopback is refused.
fn host_refused(tb: &Testbed, port: u16) -> bool {
    let o = run(tb
        .in_host("timeout")
        .args(["2", "socat", "-u", &format!("TCP:127.0.0.1:{port}"), "-"])
        .stdin(Stdio::null()));
    !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Connection refused")
}

/// A server started in the namespace is forwarded from the host's
/// loopback (`-t auto`, the default), and no longer once it exited.
#[test]
fn namespace_server_follows_to_host() {
    let tb = Tb::new();
    let (ready, stop, stopped) = (tb.path("ready"), tb.path("stop"), tb.path("stopped"));
    let script = format!(
        "socat TCP-LISTEN:7001,fork,reuseaddr SYSTEM:'echo from-namespace' &
        until [ -n \"$(ss -Hltn 'sport = :7001')\" ]; do sleep 0.02; done
        touch '{r}'
        until [ -e '{s}' ]; do sleep 0.02; done
        kill $!; wait
        until [ -z \"$(ss -Hltn 'sport = :7001')\" ]; do sleep 0.02; done
        touch '{d}'
        sleep 10",
        r = ready.display(),
        s = stop.display(),
        d = stopped.display()
    );
    let _pasta = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(&tb, &["-d", "--config-net"], &script),
    );
    wait_ready(&ready);
    let t0 = Instant::now();
    wait_for("the namespace server on the host", FOLLOW, || {
        host_reaches(&tb, 7001, "from-namespace")
    });
    eprintln!("forwarded after {:?}", t0.elapsed());
    std::fs::write(&stop, "").unwrap();
    wait_ready(&stopped);
    let t0 = Instant::now();
    wait_for("the forward to go", FOLLOW, || host_refused(&tb, 7001));
    eprintln!("closed after {:?}", t0.elapsed());
}

/// A server started on the host's loopback is forwarded from the
/// namespace's loopback (`-T auto`, the default), and no longer once it
/// exited.
#[test]
fn host_server_follows_to_namespace() {
    let tb = Tb::new();
    let (reached, stopped) = (tb.path("reached"), tb.path("stopped"));
    // socat itself (no `timeout` in between), so that killing it ends the
    // listener.
    let mut server = tb.in_host("socat");
    server.args([
        "TCP-LISTEN:7002,bind=127.0.0.1,fork,reuseaddr",
        "SYSTEM:echo from-host",
    ]);
    let server = Bg::spawn(&tb, "server", server);
    wait_listen(&tb.host, 7002);
    let ms = FOLLOW.as_millis() / 50;
    let script = format!(
        "i=0
        until [ \"$(socat -u TCP:127.0.0.1:7002 - 2>/dev/null)\" = from-host ]; do
            i=$((i+1)); [ $i -gt {ms} ] && {{ echo never reached; exit 1; }}; sleep 0.05
        done
        echo reached after $((i*50)) ms
        touch '{r}'
        until [ -e '{s}' ]; do sleep 0.02; done
        i=0
        until socat -u TCP:127.0.0.1:7002 - 2>&1 | grep -q 'Connection refused'; do
            i=$((i+1)); [ $i -gt {ms} ] && {{ echo still forwarded; exit 1; }}; sleep 0.05
        done
        echo refused after $((i*50)) ms",
        r = reached.display(),
        s = stopped.display()
    );
    let pasta = Bg::spawn(&tb, "pasta", pasta_sh(&tb, &["--config-net"], &script));
    wait_ready(&reached);
    drop(server);
    wait_for("the host server to exit", Duration::from_secs(10), || {
        let o = run(Command::new("ip").args([
            "netns",
            "exec",
            &tb.host,
            "ss",
            "-Hltn",
            "sport = :7002",
        ]));
        String::from_utf8_lossy(&o.stdout).trim().is_empty()
    });
    std::fs::write(&stopped, "").unwrap();
    let out = pasta.done(Duration::from_secs(T));
    assert!(
        out.contains("reached after") && out.contains("refused after"),
        "{out}"
    );
}

// ----------------------------------------------------------------------
// UDP (`-u auto`, `-U auto`)
// ----------------------------------------------------------------------

/// Sends one datagram to ADDR PORT from a new socket and reports what
/// happened: `echo PAYLOAD`, `refused` (ICMP port unreachable) or
/// `silence` (nothing within 300 ms). Optional SPORT binds the source.
const PROBE: &str = r#"
import socket, sys
addr, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
if len(sys.argv) > 4:
    s.bind(("", int(sys.argv[4])))
s.connect((addr, port))
s.settimeout(0.3)
try:
    s.send(payload)
    print("echo " + s.recv(65535).decode())
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("silence")
"#;

fn udp_helper() -> String {
    format!("{}/tests/udp_helper.py", env!("CARGO_MANIFEST_DIR"))
}

/// The probe script, written once per test bed.
fn probe_file(tb: &Tb) -> String {
    let p = tb.path("probe.py");
    if !p.exists() {
        std::fs::write(&p, PROBE).unwrap();
    }
    p.display().to_string()
}

/// Runs the probe in the host namespace: its answer.
fn host_probe(tb: &Tb, port: u16, payload: &str, sport: Option<u16>) -> String {
    let mut c = tb.in_host("timeout");
    c.args(["5", python(), &probe_file(tb), "127.0.0.1"])
        .args([port.to_string(), payload.to_string()])
        .args(sport.map(|p| p.to_string()))
        .stdin(Stdio::null());
    String::from_utf8_lossy(&run(&mut c).stdout)
        .trim()
        .to_string()
}

/// `ss -Hlunp` for UDP `port` in the namespace `ns`: the unconnected
/// sockets bound to it, with their processes.
fn udp_bound(ns: &str, port: u16) -> String {
    let o = run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "ss",
        "-Hlunp",
        &format!("sport = :{port}"),
    ]));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A UDP echo server started in the namespace on `bind` becomes
/// reachable from the host's loopback (`-u auto`); the sockets of the
/// flows it serves are not taken for bound ports and forwarded back; once
/// the server exited, the port is no longer forwarded, and when the flows
/// have timed out pasta holds nothing on that port any more.
fn namespace_udp_server(bind: &str, port: u16, extra: &[&str]) {
    let tb = Tb::new();
    let (ready, stop, stopped) = (tb.path("ready"), tb.path("stop"), tb.path("stopped"));
    let (ready2, stop2) = (tb.path("ready2"), tb.path("stop2"));
    let h = udp_helper();
    let py = python();
    let script = format!(
        "'{py}' '{h}' echo {port} --bind {bind} --ready '{r}' >/dev/null &
        until [ -e '{s}' ]; do sleep 0.02; done
        kill $!; wait
        until [ -z \"$(ss -Hlun 'sport = :{port}')\" ]; do sleep 0.02; done
        touch '{d}'
        '{py}' '{h}' echo {p2} --bind 0.0.0.0 --ready '{r2}' >/dev/null &
        until [ -e '{s2}' ]; do sleep 0.02; done
        kill $!; wait",
        r = ready.display(),
        s = stop.display(),
        d = stopped.display(),
        p2 = port + 1,
        r2 = ready2.display(),
        s2 = stop2.display(),
    );
    let mut args = vec!["--config-net", "-u", "auto", "-U", "none"];
    args.extend_from_slice(extra);
    let mut cmd = pasta_sh(&tb, &args, &script);
    // Flows time out after a second, so the end is quick to observe.
    cmd.env("PASST_RS_TEST_UDP_TIMEOUT", "1");
    let _pasta = Bg::spawn(&tb, "pasta", cmd);
    wait_ready(&ready);
    let t0 = Instant::now();
    wait_for("the namespace UDP server on the host", FOLLOW, || {
        host_probe(&tb, port, "hello-ns", None) == "echo hello-ns"
    });
    eprintln!("UDP forwarded after {:?}", t0.elapsed());
    assert!(udp_bound(&tb.host, port).contains("\"pasta\""));
    // A client on a fixed port outside the ephemeral range: its flow's
    // socket in the namespace is bound to that port, but connected, so the
    // scanner must not forward it back to the host.
    let sport = port + 100;
    assert_eq!(
        host_probe(&tb, port, "from-fixed-port", Some(sport)),
        "echo from-fixed-port"
    );
    // A second server appearing proves that scans went by since.
    std::fs::write(&stop, "").unwrap();
    wait_ready(&stopped);
    wait_ready(&ready2);
    wait_for("the second server on the host", FOLLOW, || {
        host_probe(&tb, port + 1, "second", None) == "echo second"
    });
    let b = udp_bound(&tb.host, sport);
    assert!(b.is_empty(), "flow socket forwarded back: {b}");
    // The first server is gone: no listener, nothing echoes.
    let t0 = Instant::now();
    wait_for("the UDP forward to go", FOLLOW, || {
        udp_bound(&tb.host, port).is_empty()
    });
    eprintln!("UDP forward closed after {:?}", t0.elapsed());
    assert_ne!(host_probe(&tb, port, "anyone", None), "echo anyone");
    // Once the flows timed out, the port is free on the host.
    wait_for("the host port to be free", Duration::from_secs(5), || {
        run(tb
            .in_host(python())
            .args([&udp_helper(), "bindable", &port.to_string()]))
        .status
        .success()
    });
    std::fs::write(&stop2, "").unwrap();
}

#[test]
fn namespace_udp_server_follows_to_host() {
    namespace_udp_server("0.0.0.0", 7101, &[]);
}

/// The same for a server on the namespace's loopback: reached with
/// `--host-lo-to-ns-lo` (without it, datagrams from the host's loopback
/// go to the namespace's own address, as upstream).
#[test]
fn namespace_udp_loopback_server_follows_to_host() {
    namespace_udp_server("127.0.0.1", 7111, &["--host-lo-to-ns-lo"]);
}

/// A UDP server on the host's loopback is reachable from the namespace's
/// loopback (`-U auto`), and no longer once it exited (the namespace's
/// kernel then refuses datagrams to the port: nothing listens there).
#[test]
fn host_udp_server_follows_to_namespace() {
    let tb = Tb::new();
    let (reached, stopped, ready) = (tb.path("reached"), tb.path("stopped"), tb.path("ready"));
    let port = 7121;
    let mut server = tb.in_host(python());
    server.args([
        &udp_helper(),
        "echo",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--ready",
    ]);
    server.arg(&ready);
    let server = Bg::spawn(&tb, "server", server);
    wait_ready(&ready);
    let ms = FOLLOW.as_millis() / 50;
    let probe = format!("'{}' '{}' 127.0.0.1 {port}", python(), probe_file(&tb));
    let script = format!(
        "i=0
        until [ \"$({probe} from-ns)\" = 'echo from-ns' ]; do
            i=$((i+1)); [ $i -gt {ms} ] && {{ echo never reached; exit 1; }}; sleep 0.05
        done
        echo reached after $((i*50)) ms
        ss -Hlunp 'sport = :{port}'
        touch '{r}'
        until [ -e '{s}' ]; do sleep 0.02; done
        i=0
        until [ \"$({probe} anyone)\" = refused ]; do
            i=$((i+1)); [ $i -gt {ms} ] && {{ echo still forwarded; exit 1; }}; sleep 0.05
        done
        echo refused after $((i*50)) ms
        [ -z \"$(ss -Hlun 'sport = :{port}')\" ] || {{ echo still bound; exit 1; }}",
        r = reached.display(),
        s = stopped.display()
    );
    let pasta = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(&tb, &["--config-net", "-U", "auto", "-u", "none"], &script),
    );
    wait_ready(&reached);
    drop(server);
    wait_for("the host server to exit", Duration::from_secs(10), || {
        udp_bound(&tb.host, port).is_empty()
    });
    std::fs::write(&stopped, "").unwrap();
    let out = pasta.done(Duration::from_secs(T));
    assert!(
        out.contains("reached after") && out.contains("refused after"),
        "{out}"
    );
    // The namespace listeners were pasta's: bound to `lo`.
    assert!(out.contains("%lo:7121"), "{out}");
}

/// In `auto` mode, a TCP listening port also gets a UDP forward (as
/// upstream: iperf3 and others pair a TCP control port with UDP data).
#[test]
fn tcp_listener_gets_udp_forward_too() {
    let tb = Tb::new();
    let (ready, stop) = (tb.path("ready"), tb.path("stop"));
    let script = format!(
        "socat TCP-LISTEN:7131,fork,reuseaddr SYSTEM:'echo tcp' &
        until [ -n \"$(ss -Hltn 'sport = :7131')\" ]; do sleep 0.02; done
        touch '{r}'
        until [ -e '{s}' ]; do sleep 0.02; done
        kill $!; wait",
        r = ready.display(),
        s = stop.display()
    );
    let _pasta = Bg::spawn(&tb, "pasta", pasta_sh(&tb, &["--config-net"], &script));
    wait_ready(&ready);
    wait_for("a UDP forward of the TCP port", FOLLOW, || {
        udp_bound(&tb.host, 7131).contains("\"pasta\"")
    });
    assert!(host_reaches(&tb, 7131, "tcp"));
    std::fs::write(&stop, "").unwrap();
    wait_for("the UDP forward to go", FOLLOW, || {
        udp_bound(&tb.host, 7131).is_empty()
    });
}
