//! UDP through pasta, with real sockets on both ends: echo from the
//! namespace to a host beyond the gateway and back (both families, sizes
//! up to 65000 bytes), many concurrent flows, ICMP port unreachable seen as
//! ECONNREFUSED in the namespace, flow timeouts, `-u` inbound from a remote
//! host, the splice path (`-U`, and `-u` from the host's loopback), and the
//! command line Podman uses.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn helper() -> String {
    format!("{}/tests/udp_helper.py", env!("CARGO_MANIFEST_DIR"))
}

/// An echo server in the remote namespace on the addresses "beyond" the
/// host (so replies come from the address the namespace wrote to).
fn remote_echo(tb: &Testbed, port: u16) -> Guard {
    let ready = tb.path(&format!("echo-{port}.ready"));
    let child = tb
        .in_remote("python3")
        .args([&helper(), "echo", &port.to_string(), "--ready"])
        .arg(&ready)
        .args([
            "--bind", BEYOND4, "--bind", BEYOND6, "--bind", REMOTE4, "--bind", REMOTE6,
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("echo server");
    let g = Guard(child);
    wait_for("remote echo server", T, || ready.exists());
    g
}

#[test]
fn echo_beyond_the_host_both_families() {
    let tb = Testbed::new();
    let _echo = remote_echo(&tb, 7000);
    let h = helper();
    let out = in_pasta(
        &tb,
        &[],
        &format!(
            "python3 {h} client {BEYOND4} 7000 --sport 40001 && \
             python3 {h} client {BEYOND6} 7000 --sport 40002"
        ),
    );
    // Every size (1 to 65000 bytes) echoed with its payload intact, and
    // the host socket used the namespace's source port.
    assert!(out.contains("ok 15 40001"), "{out}");
    assert!(out.contains("ok 15 40002"), "{out}");
}

#[test]
fn two_hundred_concurrent_flows() {
    let tb = Testbed::new();
    let _echo = remote_echo(&tb, 7000);
    let h = helper();
    let out = in_pasta(
        &tb,
        &[],
        &format!("python3 {h} many {BEYOND4} 7000 200 && python3 {h} many {BEYOND6} 7000 200"),
    );
    assert_eq!(out.matches("ok 200 flows 200 ports").count(), 2, "{out}");
}

#[test]
fn port_unreachable_is_econnrefused_in_the_namespace() {
    let tb = Testbed::new();
    let h = helper();
    // Nothing listens on port 7999 on the remote host: its kernel answers
    // with ICMP port unreachable, which must reach the namespace's
    // connected socket as ECONNREFUSED.
    let out = in_pasta(
        &tb,
        &[],
        &format!("python3 {h} refused {BEYOND4} 7999 && python3 {h} refused {BEYOND6} 7999"),
    );
    assert_eq!(out.matches("refused").count(), 2, "{out}");
}

fn bindable(tb: &Testbed, port: u16) -> bool {
    tb.in_host("python3")
        .args([&helper(), "bindable", &port.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn flows_expire_after_the_timeout() {
    let tb = Testbed::new();
    let _echo = remote_echo(&tb, 7000);
    let h = helper();
    let done = tb.path("client.done");
    // The namespace's client gets its echo from source port 40005, then
    // stays around (its own socket stays open).
    let mut c = tb.in_host(pasta());
    c.args(["--config-net", "--", "sh", "-c"])
        .arg(format!(
            "python3 {h} client {BEYOND4} 7000 --count 1 --sizes 10 --sport 40005 > {d}.tmp && \
             mv {d}.tmp {d} && sleep 60",
            d = done.display()
        ))
        .env("PASST_RS_TEST_UDP_TIMEOUT", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let _pasta = Guard(c.spawn().expect("pasta"));
    wait_for("the echo", T, || done.exists());
    // The flow's host socket holds port 40005 on the host...
    assert!(
        !bindable(&tb, 40005),
        "the flow's socket should hold the port"
    );
    // ...until the flow times out (2 s) and its socket is closed.
    wait_for("the flow to time out", Duration::from_secs(15), || {
        bindable(&tb, 40005)
    });
}

/// pasta running `script` in the background; `ready` appears once the
/// namespace's server listens.
fn pasta_server(tb: &Testbed, args: &[&str], script: &str, env: &[(&str, &str)]) -> Guard {
    let mut c = tb.in_host(pasta());
    c.arg("--config-net")
        .args(args)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    Guard(c.spawn().expect("pasta"))
}

fn client_from(tb_cmd: &mut Command, addr: &str, port: u16, sport: u16) -> String {
    must(tb_cmd.args([
        &helper(),
        "client",
        addr,
        &port.to_string(),
        "--sport",
        &sport.to_string(),
    ]))
}

fn wait_ready(p: &Path) {
    wait_for("the namespace's server", T, || p.exists());
}

#[test]
fn inbound_from_a_remote_host_both_families() {
    let tb = Testbed::new();
    let ready = tb.path("ns.ready");
    let _p = pasta_server(
        &tb,
        &["-u", "7001"],
        &format!(
            "exec python3 {} echo 7001 --ready {}",
            helper(),
            ready.display()
        ),
        &[],
    );
    wait_ready(&ready);
    let out = client_from(&mut tb.in_remote("python3"), HOST4, 7001, 41001);
    assert!(out.contains("ok 15 41001"), "{out}");
    let out = client_from(&mut tb.in_remote("python3"), HOST6, 7001, 41002);
    assert!(out.contains("ok 15 41002"), "{out}");
}

/// Writes a small server that echoes each datagram prefixed with the
/// address and port it came from, as the namespace sees them.
fn peer_echo_script(tb: &Testbed, port: u16, ready: &Path) -> String {
    let path = tb.path("peer_echo.py");
    std::fs::write(
        &path,
        format!(
            r#"
import os, select, socket
socks = []
for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, {port}))
    socks.append(s)
open("{ready}", "w").close()
while True:
    for s in select.select(socks, [], [])[0]:
        data, peer = s.recvfrom(65535)
        s.sendto(("%s %d|" % (peer[0], peer[1])).encode() + data, peer)
"#,
            ready = ready.display()
        ),
    )
    .expect("write script");
    format!("exec python3 {}", path.display())
}

/// Sends `msg` from `sport` to `addr:port` in the host namespace; returns
/// the reply.
fn ask(tb: &Testbed, addr: &str, port: u16, sport: u16, msg: &str) -> String {
    let fam = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let any = if addr.contains(':') { "::" } else { "0.0.0.0" };
    must(tb.in_host("python3").arg("-c").arg(format!(
        r#"
import socket
s = socket.socket(socket.{fam}, socket.SOCK_DGRAM)
s.bind(("{any}", {sport}))
s.settimeout(1)
for _ in range(10):
    s.sendto(b"{msg}", ("{addr}", {port}))
    try:
        print(s.recv(65535).decode())
        break
    except socket.timeout:
        pass
"#
    )))
    .trim()
    .to_string()
}

#[test]
fn host_loopback_to_namespace_is_spliced() {
    let tb = Testbed::new();
    let ready = tb.path("ns.ready");
    let _p = pasta_server(
        &tb,
        &["-u", "7003"],
        &peer_echo_script(&tb, 7003, &ready),
        &[],
    );
    wait_ready(&ready);
    // Spliced: the namespace sees a local source (its own address, not
    // the gateway), with the host client's port.
    let r = ask(&tb, "127.0.0.1", 7003, 42001, "hello4");
    assert_eq!(r, format!("{HOST4} 42001|hello4"));
    let r = ask(&tb, "::1", 7003, 42002, "hello6");
    assert_eq!(r, format!("{HOST6} 42002|hello6"));
    // A second datagram of the same flow takes the flow's own sockets.
    let r = ask(&tb, "127.0.0.1", 7003, 42001, "again");
    assert_eq!(r, format!("{HOST4} 42001|again"));
}

#[test]
fn host_loopback_to_namespace_with_host_lo_to_ns_lo() {
    let tb = Testbed::new();
    let ready = tb.path("ns.ready");
    let _p = pasta_server(
        &tb,
        &["-u", "7003", "--host-lo-to-ns-lo"],
        &peer_echo_script(&tb, 7003, &ready),
        &[],
    );
    wait_ready(&ready);
    let r = ask(&tb, "127.0.0.1", 7003, 42003, "lo4");
    assert_eq!(r, "127.0.0.1 42003|lo4");
    let r = ask(&tb, "::1", 7003, 42004, "lo6");
    assert_eq!(r, "::1 42004|lo6");
}

#[test]
fn no_splice_sends_host_loopback_through_the_tap() {
    let tb = Testbed::new();
    let ready = tb.path("ns.ready");
    let _p = pasta_server(
        &tb,
        &["-u", "7003", "--no-splice"],
        &peer_echo_script(&tb, 7003, &ready),
        &[],
    );
    wait_ready(&ready);
    // Through the tap, the host's loopback appears as the gateway.
    let r = ask(&tb, "127.0.0.1", 7003, 42005, "tap4");
    assert_eq!(r, format!("{REMOTE4} 42005|tap4"));
}

#[test]
fn namespace_loopback_to_host_loopback_with_big_u() {
    let tb = Testbed::new();
    let ready = tb.path("host.ready");
    let child = tb
        .in_host("python3")
        .args([&helper(), "echo", "7002", "--ready"])
        .arg(&ready)
        .args(["--bind", "127.0.0.1", "--bind", "::1"])
        .stdout(Stdio::null())
        .spawn()
        .expect("echo");
    let _echo = Guard(child);
    wait_ready(&ready);
    let h = helper();
    // -U 7002:7012... port 7012 in the namespace goes to 7002 on the host.
    let out = in_pasta(
        &tb,
        &["-U", "7012:7002"],
        &format!(
            "python3 {h} client 127.0.0.1 7012 --sport 43001 && \
             python3 {h} client ::1 7012 --sport 43002"
        ),
    );
    assert!(out.contains("ok 15 43001"), "{out}");
    assert!(out.contains("ok 15 43002"), "{out}");
}

#[test]
fn podman_command_line_with_inbound_udp() {
    let tb = Testbed::new();
    let ns = format!("prs-pod-{}", std::process::id());
    must(Command::new("ip").args(["netns", "add", &ns]));
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "ip netns pids {0} | xargs -r kill -9; ip netns del {0}",
                    self.0
                ))
                .output();
        }
    }
    let _del = Del(ns.clone());
    let pid_file = tb.path("pasta.pid");
    let ns_path = format!("/run/netns/{ns}");
    must(&mut tb.pasta(&[
        "--config-net",
        "--dns-forward",
        "169.254.1.1",
        "--map-guest-addr",
        "169.254.1.2",
        "--no-map-gw",
        "--quiet",
        "-t",
        "none",
        "-u",
        "5353",
        "-T",
        "none",
        "-U",
        "none",
        "--pid",
        pid_file.to_str().unwrap(),
        "--netns",
        &ns_path,
    ]));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("PID file")
        .trim()
        .parse()
        .expect("PID");
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(self.0.to_string()).output();
        }
    }
    let _kill = Kill(pid);
    let ready = tb.path("pod.ready");
    let mut echo = Command::new("ip");
    echo.args([
        "netns",
        "exec",
        &ns,
        "python3",
        &helper(),
        "echo",
        "5353",
        "--ready",
    ])
    .arg(&ready)
    .stdout(Stdio::piped());
    let mut child = echo.spawn().expect("echo in the container");
    let stdout = child.stdout.take().expect("stdout");
    let _echo = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    assert_eq!(line.trim(), "ready");
    let out = client_from(&mut tb.in_remote("python3"), HOST4, 5353, 44001);
    assert!(out.contains("ok 15 44001"), "{out}");
    let out = client_from(&mut tb.in_remote("python3"), HOST6, 5353, 44002);
    assert!(out.contains("ok 15 44002"), "{out}");
}

#[test]
fn guest_ttl_applies_and_time_exceeded_comes_back() {
    let tb = Testbed::new();
    // The remote host routes 203.0.113.0/24 onwards: a datagram arriving
    // with TTL 1 gets "time exceeded" from it instead.
    must(tb.in_remote("sh").arg("-c").arg(format!(
        "sysctl -qw net.ipv4.ip_forward=1 && ip route add 203.0.113.0/24 via {HOST4}"
    )));
    let out = in_pasta(
        &tb,
        &["--no-map-gw"],
        &format!("python3 {} ttl 203.0.113.9 33434", helper()),
    );
    assert_eq!(out.trim(), format!("icmp type 11 code 0 from {REMOTE4}"));
}

/// A `sink` (udp_helper.py) in the remote namespace on `bind`:`port`,
/// counting datagrams of `size` bytes made by `burst`, once it listens.
fn sink(tb: &Testbed, bind: &str, port: u16, size: usize) -> Guard {
    let ready = tb.path("sink.ready");
    let _ = std::fs::remove_file(&ready);
    let child = tb
        .in_remote("python3")
        .args([
            &helper(),
            "sink",
            bind,
            &port.to_string(),
            &size.to_string(),
        ])
        .arg("--ready")
        .arg(&ready)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sink");
    let g = Guard(child);
    wait_for("the sink", T, || ready.exists());
    g
}

/// What a [`sink`] received: the datagrams that arrived whole, after
/// asserting that none was damaged or out of order; and its report line.
fn sink_result(mut sink: Guard) -> (u32, String) {
    let mut line = String::new();
    let stdout = sink.0.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("sink result");
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w.len(), 6, "{line}");
    let (good, bad, reordered): (u32, u32, u32) = (
        w[1].parse().unwrap(),
        w[3].parse().unwrap(),
        w[5].parse().unwrap(),
    );
    assert_eq!((bad, reordered), (0, 0), "{line}");
    (good, line)
}

/// Bursts of equal-size datagrams leave as GSO super-datagrams: every
/// datagram must still arrive whole, in order, at the remote host.
#[test]
fn bursts_arrive_intact_and_in_order() {
    let tb = Testbed::new();
    for (bind, size) in [(BEYOND4, 1400), (BEYOND6, 1200), (BEYOND4, 100)] {
        let sink = sink(&tb, bind, 7100, size);
        let out = in_pasta(
            &tb,
            &[],
            &format!("python3 {} burst {bind} 7100 2000 {size}", helper()),
        );
        assert!(out.contains("sent 2000"), "{out}");
        let (good, line) = sink_result(sink);
        // UDP may lose some under load; nearly all must arrive.
        assert!(good >= 1800, "{line}");
    }
}

/// UDP segmentation offload from the namespace (`TUN_F_USO4/6`): a sender
/// with `UDP_SEGMENT` hands its kernel 40 datagrams per send, which reach
/// pasta as one super-frame (`rx_udp_gso_frames`); each must leave as the
/// datagram it was, whole and in order, in both families; and with the
/// offload off (`PASST_RS_TEST_NO_TSO`) the namespace's kernel cuts them
/// itself, to the same result.
#[test]
fn udp_super_frames_from_the_namespace_arrive_as_datagrams() {
    let tb = Testbed::new();
    for (bind, size, offload) in [
        (BEYOND4, 1200, true),
        (BEYOND6, 1000, true),
        (BEYOND4, 1200, false),
    ] {
        let sink = sink(&tb, bind, 7101, size);
        let mut c = tb.in_host("timeout");
        c.arg("60")
            .arg(pasta())
            .args(["--config-net", "-d", "--"])
            .args(["sh", "-c"])
            .arg(format!(
                "python3 {} burst {bind} 7101 2000 {size} --gso 40",
                helper()
            ))
            .stdin(Stdio::null());
        if !offload {
            c.env("PASST_RS_TEST_NO_TSO", "1");
        }
        let o = run(&mut c);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(
            o.status.success() && out.contains("sent 2000"),
            "{out}\n{err}"
        );
        let supers = counter(&err, "tap", "rx_udp_gso_frames");
        if offload {
            assert!(supers > 0, "no UDP super-frame from the namespace:\n{err}");
        } else {
            assert_eq!(supers, 0, "{err}");
        }
        let (good, line) = sink_result(sink);
        // UDP may lose some under load; nearly all must arrive.
        assert!(good >= 1800, "{line} (offload {offload})");
    }
}

/// A flood of datagrams from the namespace toward a port of the host's
/// loopback (the gateway) where nothing listens, from 1000 flows: every
/// datagram comes back as an ICMP port unreachable (not rate-limited on
/// loopback) into the error queue of the flow's host-side socket. The
/// kernel sets the socket's pending error (sk_err) after it queues the
/// ICMP error, and clears it when the last queued error is read: an error
/// read between the two leaves sk_err set with the queue empty. Without
/// SO_ERROR to clear it (commit 6782855), the level-triggered EPOLLERR
/// then woke every epoll_wait and pasta spun at 100 % CPU for good. To
/// make that race likely, the host's loopback hands its packets (and so
/// the ICMP errors) to CPU 1 (RPS) while pasta runs on CPU 0. Once the
/// flood stops, pasta must go idle and still forward UDP.
#[test]
fn port_unreachable_flood_leaves_pasta_idle() {
    let tb = Testbed::new();
    let h = helper();
    must(
        tb.in_host("sh")
            .arg("-c")
            .arg("echo 2 > /sys/class/net/lo/queues/rx-0/rps_cpus"),
    );
    let ready = tb.path("host-echo.ready");
    let child = tb
        .in_host("python3")
        .args([&h, "echo", "7004", "--ready"])
        .arg(&ready)
        .args(["--bind", "127.0.0.1"])
        .stdout(Stdio::null())
        .spawn()
        .expect("echo");
    let _echo = Guard(child);
    wait_ready(&ready);
    let (flooded, go, echoed, pid_file) = (
        tb.path("flooded"),
        tb.path("go"),
        tb.path("echoed"),
        tb.path("pasta.pid"),
    );
    let (f, g, e) = (flooded.display(), go.display(), echoed.display());
    // Port 7998 of the host's loopback is closed; the sender runs on CPU
    // 1. Then, told to go on, the namespace asks the echo server on port
    // 7004 (at most 60 s waiting).
    let script = format!(
        "taskset -c 1 python3 {h} flood {REMOTE4} 7998 2 100 --flows 1000 > {f}.tmp && \
         mv {f}.tmp {f} && \
         i=0; while [ ! -e {g} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; \
         python3 {h} client {REMOTE4} 7004 --count 2 --sizes 100,32000 > {e}.tmp; \
         mv {e}.tmp {e}; sleep 60"
    );
    let mut c = tb.in_host("taskset");
    c.args(["-c", "0", pasta(), "--config-net", "-P"])
        .arg(&pid_file)
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let _pasta = Guard(c.spawn().expect("pasta"));
    wait_for("the flood", T, || flooded.exists());
    let sent = std::fs::read_to_string(&flooded).unwrap_or_default();
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // pasta may still be draining what the flood left queued: it must be
    // idle (under 10 % of a CPU) in one of five 1-second windows. With
    // the pending error left set it spins in every one of them.
    let mut loads = Vec::new();
    for _ in 0..5 {
        let (c0, t0) = (cpu(pid), std::time::Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let load = (cpu(pid) - c0) / t0.elapsed().as_secs_f64();
        loads.push(load);
        if load < 0.10 {
            break;
        }
    }
    eprintln!(
        "flood: {}; pasta's CPU after it, per second: {loads:?}",
        sent.trim()
    );
    assert!(
        loads.last().is_some_and(|&l| l < 0.10),
        "pasta busy after the flood stopped: {loads:?} ({})",
        sent.trim()
    );
    std::fs::write(&go, "go\n").expect("go");
    wait_for("the echo after the flood", T, || echoed.exists());
    let out = std::fs::read_to_string(&echoed).unwrap_or_default();
    assert!(out.contains("ok 4"), "no echo after the flood: {out:?}");
}
