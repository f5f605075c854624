//! Automatic forwarding (`auto`, pasta's default for `-t`/`-T`): a server
//! that starts listening on one side becomes reachable from the other
//! side's loopback within about a second (the scan interval), and stops
//! being forwarded once it is gone.

mod common;
#[path = "support/tcp.rs"]
mod support;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

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
