//! pasta's TCP splice path: loopback connections between the host and the
//! namespace joined socket to socket (`-t` from the host's loopback, `-T`
//! from the namespace's), with real clients and servers.
//!
//! Whether a connection was spliced is observable from the namespace: a
//! spliced `-t` connection comes from the namespace's own address (pasta
//! connects inside the namespace), one through the tap from the gateway
//! (the host's loopback mapped by `--map-host-loopback`). pasta's exit
//! statistics (`-d`) count spliced connections too.

mod common;

use common::tcp::*;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Size of the bulk transfers, each way.
const BULK: u64 = 1 << 30;

const REPLY: &str = "8388608"; // 8 MiB

/// Host loopback → namespace through `-t 8080`, 1 GiB each way.
fn bulk_t(lo: &str) {
    let tb = Tb::new();
    let size = BULK.to_string();
    for (n, (guest_mode, host_mode)) in [("sink", "source"), ("source", "sink")]
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
        let (host, guest, err) = pair(
            host_helper_t(
                &tb,
                T_BULK,
                host_mode,
                &["--connect", lo, "8080", "--size", &size, "--stall", STALL],
            ),
            guest,
            Duration::from_secs(T_BULK),
        );
        eprintln!("-t {lo}: {guest_mode} in namespace: {:?}", start.elapsed());
        let (sent, recv) = if guest_mode == "source" {
            (guest, host)
        } else {
            (host, guest)
        };
        let s = line(&sent, "sent");
        let r = line(&recv, "recv");
        assert_eq!(r[1], size, "bytes received: {recv}");
        assert_eq!(s[2], r[2], "checksums differ: {sent} / {recv}");
        assert_eq!(tcp_counter(&err, "spliced_opened"), 1, "not spliced: {err}");
        assert_eq!(
            tcp_counter(&err, "opened_from_sock"),
            0,
            "went through the tap: {err}"
        );
        assert_eq!(tcp_counter(&err, "spliced_resets"), 0, "{err}");
    }
}

#[test]
fn bulk_host_loopback_to_namespace_ipv4() {
    bulk_t("127.0.0.1");
}

/// Namespace loopback → host loopback through `-T 9000`, 1 GiB each way.
#[test]
fn bulk_namespace_loopback_to_host() {
    let tb = Tb::new();
    let size = BULK.to_string();
    for (n, (host_mode, guest_mode)) in [("sink", "source"), ("source", "sink")]
        .into_iter()
        .enumerate()
    {
        let ready = tb.path(&format!("ready{n}"));
        let host = Bg::spawn(
            &tb,
            &format!("host{n}"),
            host_helper_t(
                &tb,
                T_BULK,
                host_mode,
                &[
                    "--listen",
                    "127.0.0.1",
                    "9000",
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
        let o = run(pasta_sh_t(
            &tb,
            T_BULK,
            &["-d", "--config-net", "-T", "9000", "-t", "none"],
            &shell(&helper(
                guest_mode,
                &[
                    "--connect",
                    "127.0.0.1",
                    "9000",
                    "--size",
                    &size,
                    "--stall",
                    STALL,
                ],
            )),
        )
        .stdin(Stdio::null()));
        let guest = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{guest}\n{err}");
        let host = host.done(Duration::from_secs(T_BULK));
        eprintln!("-T: {guest_mode} in namespace: {:?}", start.elapsed());
        let (sent, recv) = if guest_mode == "source" {
            (guest, host)
        } else {
            (host, guest)
        };
        let s = line(&sent, "sent");
        let r = line(&recv, "recv");
        assert_eq!(r[1], size, "bytes received: {recv}");
        assert_eq!(s[2], r[2], "checksums differ: {sent} / {recv}");
        assert_eq!(tcp_counter(&err, "spliced_opened"), 1, "{err}");
        assert_eq!(
            tcp_counter(&err, "opened_from_tap"),
            0,
            "went through the tap: {err}"
        );
    }
}

/// The client shuts down its sending side after a request, the server
/// answers 8 MiB after reading the request to EOF: `-t` from the host's
/// loopback, the server in the namespace. Returns the peer the server saw.
fn half_close_t(extra: &[&str]) -> (String, String) {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let mut args = vec!["-d", "--config-net", "-t", "8080"];
    args.extend_from_slice(extra);
    let server = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(
            &tb,
            &args,
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
    let (client, server, err) = pair(
        host_helper(
            &tb,
            "halfclose-client",
            &["--connect", "127.0.0.1", "8080", "--size", REPLY],
        ),
        server,
        Duration::from_secs(T),
    );
    assert_eq!(line(&client, "reply"), ["reply", REPLY, "ok"], "{client}");
    let req = line(&server, "request");
    assert_eq!(req[..3], ["request", "1000", "ok"], "{server}");
    (req[4].to_string(), err)
}

#[test]
fn half_close_host_to_namespace() {
    let (peer, err) = half_close_t(&[]);
    // Spliced: pasta connected from inside the namespace, to its address.
    assert_eq!(peer, HOST4, "{err}");
    assert_eq!(tcp_counter(&err, "spliced_opened"), 1, "{err}");
}

/// Over IPv6: from the host's ::1 to the namespace's global address.
#[test]
fn half_close_host_to_namespace_ipv6() {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let server = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(
            &tb,
            &["-d", "--config-net", "-t", "8080"],
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
    let (client, server, err) = pair(
        host_helper(
            &tb,
            "halfclose-client",
            &["--connect", "::1", "8080", "--size", REPLY],
        ),
        server,
        Duration::from_secs(T),
    );
    assert_eq!(line(&client, "reply"), ["reply", REPLY, "ok"], "{client}");
    assert_eq!(
        line(&server, "request"),
        ["request", "1000", "ok", "peer", HOST6],
        "{server}"
    );
    assert_eq!(tcp_counter(&err, "spliced_opened"), 1, "{err}");
}

/// Nothing listens in the namespace: the spliced connect fails, and the
/// host's client, already accepted by our listener, gets a reset.
#[test]
fn refused_in_namespace_resets_host_client() {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let done = tb.path("done");
    let script = format!(
        "touch '{}'; until [ -e '{}' ]; do sleep 0.02; done",
        ready.display(),
        done.display()
    );
    let pasta = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(&tb, &["-d", "--config-net", "-t", "8080"], &script),
    );
    wait_ready(&ready);
    let t0 = Instant::now();
    // (socat takes a reset for an end of file: python tells them apart.)
    let o = run(tb
        .in_host("timeout")
        .args([
            "10",
            python(),
            "-c",
            "import socket\n\
             c = socket.create_connection(('127.0.0.1', 8080))\n\
             try:\n    print('data', c.recv(10))\n\
             except ConnectionResetError:\n    print('reset')",
        ])
        .stdin(Stdio::null()));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.trim(), "reset");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    std::fs::write(&done, "").unwrap();
    let (st, _, perr) = pasta.wait(Duration::from_secs(T));
    assert!(st.success(), "{perr}");
    assert_eq!(tcp_counter(&perr, "spliced_resets"), 1, "{perr}");
    assert_eq!(tcp_counter(&perr, "spliced_closed"), 1, "{perr}");
}

/// `--no-splice`: the same connection goes through the tap, and the
/// namespace sees it come from the gateway (the host's loopback mapped).
#[test]
fn no_splice_goes_through_the_tap() {
    let (peer, err) = half_close_t(&["--no-splice"]);
    assert_eq!(peer, REMOTE4, "{err}");
    assert_eq!(tcp_counter(&err, "spliced_opened"), 0, "{err}");
    assert_eq!(tcp_counter(&err, "opened_from_sock"), 1, "{err}");
}

#[test]
fn half_close_namespace_to_host() {
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
    let o = run(pasta_sh(
        &tb,
        &["-d", "--config-net", "-T", "9000"],
        &shell(&helper(
            "halfclose-client",
            &["--connect", "127.0.0.1", "9000", "--size", REPLY],
        )),
    )
    .stdin(Stdio::null()));
    let client = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{client}\n{err}");
    assert_eq!(line(&client, "reply"), ["reply", REPLY, "ok"], "{client}");
    let server = server.done(Duration::from_secs(T));
    assert_eq!(
        line(&server, "request"),
        ["request", "1000", "ok", "peer", "127.0.0.1"],
        "{server}"
    );
    assert_eq!(tcp_counter(&err, "spliced_opened"), 1, "{err}");
}

/// 200 connections at once from the namespace's loopback through `-T`,
/// each echoed and closed by the host's server: all spliced, all freed by
/// the time pasta exits.
#[test]
fn many_concurrent_spliced_connections() {
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
                "200",
                "--size",
                "65536",
                "--ready",
                ready.to_str().unwrap(),
            ],
        ),
    );
    wait_ready(&ready);
    let o = run(pasta_sh(
        &tb,
        &["-d", "--config-net", "-T", "9000"],
        &shell(&helper(
            "many-clients",
            &[
                "--connect",
                "127.0.0.1",
                "9000",
                "--count",
                "200",
                "--size",
                "65536",
            ],
        )),
    )
    .stdin(Stdio::null()));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(line(&out, "clients"), ["clients", "200", "bad", "0"]);
    let server = server.done(Duration::from_secs(T));
    assert!(server.starts_with("served 200"), "{server}");
    assert_eq!(tcp_counter(&err, "spliced_opened"), 200, "{err}");
    assert_eq!(
        tcp_counter(&err, "spliced_closed"),
        200,
        "flows left open at exit: {err}"
    );
    assert_eq!(tcp_counter(&err, "spliced_resets"), 0, "{err}");
}

/// `--splice-only`: no tap device in the namespace, and `-t` from the
/// host's loopback reaches the namespace's loopback.
#[test]
fn splice_only() {
    let tb = Tb::new();
    let ready = tb.path("ready");
    let links = tb.path("links");
    let script = format!(
        "ip -o link show > '{}' && {}",
        links.display(),
        shell(&helper(
            "halfclose-server",
            &[
                "--listen",
                "127.0.0.1",
                "8080",
                "--size",
                REPLY,
                "--ready",
                ready.to_str().unwrap(),
            ],
        ))
    );
    let server = Bg::spawn(
        &tb,
        "pasta",
        pasta_sh(&tb, &["-d", "--splice-only", "-t", "8080"], &script),
    );
    wait_ready(&ready);
    let (client, server, err) = pair(
        host_helper(
            &tb,
            "halfclose-client",
            &["--connect", "127.0.0.1", "8080", "--size", REPLY],
        ),
        server,
        Duration::from_secs(T),
    );
    assert_eq!(line(&client, "reply"), ["reply", REPLY, "ok"], "{client}");
    assert_eq!(
        line(&server, "request"),
        ["request", "1000", "ok", "peer", "127.0.0.1"],
        "{server}"
    );
    let links = std::fs::read_to_string(&links).unwrap();
    assert_eq!(links.lines().count(), 1, "only lo expected: {links}");
    assert!(links.contains(": lo:"), "{links}");
    assert_eq!(tcp_counter(&err, "spliced_opened"), 1, "{err}");
}

/// Rules claiming the same port are rejected at start, naming both.
#[test]
fn conflicting_rules_are_rejected() {
    let tb = Tb::new();
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["-t", "8080", "-t", "8000-8100"],
            "TCP [*]:8000-8100 => 8000-8100",
            "TCP [*]:8080 => 8080",
        ),
        (
            &["-T", "5000", "-T", "4000-6000"],
            "TCP [*%lo]:4000-6000 => 4000-6000",
            "TCP [*%lo]:5000 => 5000",
        ),
        (
            &["-u", "53", "-u", "50-60"],
            "UDP [*]:50-60 => 50-60",
            "UDP [*]:53 => 53",
        ),
    ];
    for (args, new, old) in cases {
        let mut a = args.to_vec();
        a.extend(["--", "true"]);
        let o = tb.pasta_output(&a, Duration::from_secs(T));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        let want = format!("forwarding rule {new} conflicts with rule {old}");
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    // The same port for TCP and UDP, or -t and -T, is fine.
    let o = tb.pasta_output(
        &["-t", "8080", "-u", "8080", "-T", "8080", "--", "true"],
        Duration::from_secs(T),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Podman's exact command line (rootful netavark-less pasta networking),
/// then curl from the host's loopback through `-t 8080` to a web server
/// in the container's namespace.
#[test]
fn podman_command_line() {
    let tb = Tb::new();
    let ns = format!("prs-pod-{}", std::process::id());
    must(Command::new("ip").args(["netns", "add", &ns]));
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("ip netns pids {} | xargs -r kill -9", self.0))
                .output();
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _del = Del(ns.clone());
    let pid_file = tb.path("pasta.pid");
    let netns_path = format!("/run/netns/{ns}");
    let o = run(tb
        .pasta(&[
            "--config-net",
            "--dns-forward",
            "169.254.1.1",
            "--map-guest-addr",
            "169.254.1.2",
            "--no-map-gw",
            "--quiet",
            "-t",
            "8080",
            "-u",
            "none",
            "-T",
            "none",
            "-U",
            "none",
            "--pid",
            pid_file.to_str().unwrap(),
            "--netns",
            &netns_path,
        ])
        .stdin(Stdio::null()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(&self.0).status();
        }
    }
    let _kill = Kill(pid);
    let dir = tb.path("www");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "hello from the container\n").unwrap();
    let mut web = Command::new("ip");
    web.args(["netns", "exec", &ns, "timeout", "60", python()])
        .args(["-m", "http.server", "--bind", "::", "8080", "--directory"])
        .arg(&dir);
    let _web = Bg::spawn(&tb, "web", web);
    wait_listen(&ns, 8080);
    let body = ok({
        let mut c = tb.in_host("curl");
        c.args([
            "-sS",
            "--max-time",
            "20",
            "http://127.0.0.1:8080/index.html",
        ]);
        c
    });
    assert_eq!(body, "hello from the container\n");
}
