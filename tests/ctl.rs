//! Forwarding rules changed at run time through the configuration socket
//! (`-c`), spoken by `tests/pesto_client.py`, a client written from the
//! protocol's definition (upstream's pesto v2): the daemon's bytes are
//! checked against that definition, and changes are made with it.
//!
//! - new forwards carry traffic at once, removed ones refuse, and a
//!   transfer admitted by a removed rule finishes byte-exact;
//! - bad rules, conflicts and ports that can't be bound are refused with
//!   the old table in force;
//! - garbage, half-way and silent clients are dropped and the daemon goes
//!   on serving;
//! - only the socket's owner gets in.

mod common;

use common::tcp::*;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pesto_client.py");

/// Runs the protocol client in the host namespace: its JSON answer.
fn client(tb: &Testbed, sock: &Path, args: &[&str]) -> Value {
    let mut c = tb.in_host("timeout");
    c.args(["30", python(), CLIENT, &sock.display().to_string()])
        .args(args)
        .stdin(Stdio::null());
    let o = run(&mut c);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{c:?}: {}\nstdout: {out}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn show(tb: &Testbed, sock: &Path) -> Value {
    client(tb, sock, &["show"])
}

/// Replaces tables: the status.
fn set(tb: &Testbed, sock: &Path, update: Value) -> Value {
    client(tb, sock, &["set", &update.to_string()])
}

/// A dual-stack TCP rule for `port`.
fn tcp(port: u16) -> Value {
    json!({"proto": "tcp", "addr": null, "first": port, "last": port, "to": port})
}

/// The HOST table's rules as (proto, addr, first, last, to).
fn host_rules(v: &Value) -> Vec<(String, Value, u64, u64, u64)> {
    v["tables"]["1"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["proto"].as_str().unwrap().to_string(),
                r["addr"].clone(),
                r["first"].as_u64().unwrap(),
                r["last"].as_u64().unwrap(),
                r["to"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// What `socat` in the host namespace reads from `addr:port`: `None` if
/// refused.
fn fetch(tb: &Testbed, addr: &str, port: u16) -> Option<String> {
    let o = run(tb
        .in_host("timeout")
        .args(["5", "socat", "-u", &format!("TCP:{addr}:{port}"), "-"])
        .stdin(Stdio::null()));
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Same from the remote namespace (through the tap, not spliced).
fn fetch_remote(tb: &Testbed, port: u16) -> Option<String> {
    let o = run(tb
        .in_remote("timeout")
        .args(["5", "socat", "-u", &format!("TCP:{HOST4}:{port}"), "-"])
        .stdin(Stdio::null()));
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// pasta with `-c SOCK` and `extra` options, running a namespace where
/// ports 7101 and 7102 answer "one" and "two", UDP port 7301 echoes,
/// port 7103 takes a slow
/// transfer (a sink pausing 50 ms every 256 KiB); returns it once the
/// servers listen.
fn start_pasta(tb: &Tb, sock: &Path, extra: &[&str]) -> Bg {
    let ready = tb.path("ready");
    let sink = shell(&helper(
        "sink",
        &[
            "--listen",
            "0.0.0.0",
            "7103",
            "--pause-every",
            "262144",
            "--pause-ms",
            "50",
        ],
    ));
    let script = format!(
        "socat TCP6-LISTEN:7101,ipv6only=0,fork,reuseaddr SYSTEM:'echo one' &
        socat TCP6-LISTEN:7102,ipv6only=0,fork,reuseaddr SYSTEM:'echo two' &
        socat UDP6-LISTEN:7301,ipv6only=0,fork PIPE &
        dev=$(ip -o -4 route show default | awk '{{print $5}}')
        ip address add 192.0.2.77/32 dev $dev
        socat TCP-LISTEN:7121,bind=192.0.2.77,fork,reuseaddr SYSTEM:'echo seven' &
        {sink} > '{out}' &
        until [ -n \"$(ss -Hltn 'sport = :7101')\" ] && [ -n \"$(ss -Hltn 'sport = :7102')\" ] \
            && [ -n \"$(ss -Hltn 'sport = :7103')\" ] && [ -n \"$(ss -Hlun 'sport = :7301')\" ] \
            && [ -n \"$(ss -Hltn 'sport = :7121')\" ]; do
            sleep 0.02
        done
        touch '{r}'
        wait",
        out = tb.path("sink.out").display(),
        r = ready.display()
    );
    let sock_s = sock.display().to_string();
    let mut args = vec![
        "--config-net",
        "-c",
        &sock_s,
        "-T",
        "none",
        "-U",
        "none",
        "-u",
        "none",
    ];
    args.extend_from_slice(extra);
    let pasta = Bg::spawn(tb, "pasta", pasta_sh(tb, &args, &script));
    wait_ready(&ready);
    wait_for("the configuration socket", Duration::from_secs(10), || {
        sock.exists()
    });
    pasta
}

/// pasta: rules added, replaced and removed while it runs; a transfer
/// through a removed rule finishes byte-exact; the daemon's greeting and
/// tables are upstream's layout.
#[test]
fn pasta_forwarding_changes_at_run_time() {
    require_root();
    let tb = Tb::new();
    let sock = tb.path("conf.sock");
    let _pasta = start_pasta(
        &tb,
        &sock,
        &["-t", "7101", "-t", "0.0.0.0/7120:192.0.2.77/7121", "-d"],
    );

    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");

    let v = show(&tb, &sock);
    assert_eq!(
        v["hello"],
        json!({"version": 2, "pif_name_size": 128, "ifnamsiz": 16})
    );
    assert_eq!(v["tables"]["1"]["name"], "HOST");
    assert_eq!(v["tables"]["3"]["name"], "SPLICE");
    // IPv4, IPv6, TCP, UDP, scan, ifname.
    assert_eq!(v["tables"]["1"]["caps"], 0x3f);
    assert_eq!(
        host_rules(&v)[0],
        ("tcp".into(), Value::Null, 7101, 7101, 7101)
    );
    // A target address: to 192.0.2.77 in the namespace, never spliced.
    assert_eq!(
        host_rules(&v)[1],
        ("tcp".into(), json!("0.0.0.0"), 7120, 7120, 7121)
    );
    assert_eq!(v["tables"]["1"]["rules"][1]["taddr"], "192.0.2.77");
    assert_eq!(fetch_remote(&tb, 7120).as_deref(), Some("seven"));
    assert_eq!(fetch(&tb, "127.0.0.1", 7120).as_deref(), Some("seven"));
    assert_eq!(v["tables"]["3"]["rules"], json!([]));
    assert_eq!(
        fetch(&tb, "127.0.0.1", 7101).as_deref(),
        Some("one"),
        "{}",
        std::fs::read_to_string(tb.path("pasta.err")).unwrap_or_default()
    );
    assert_eq!(fetch(&tb, "127.0.0.1", 7102), None);

    // Added: 7102 answers at once, 7101 still does; 7104 goes to 7102.
    let remap = json!({"proto": "tcp", "addr": null, "first": 7104, "last": 7104, "to": 7102});
    let seven = json!({"proto": "tcp", "addr": "0.0.0.0", "first": 7122, "last": 7122, "to": 7121, "taddr": "192.0.2.77"});
    let st = set(
        &tb,
        &sock,
        json!({"1": [tcp(7101), tcp(7102), remap, tcp(7103), seven]}),
    );
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(fetch(&tb, "127.0.0.1", 7102).as_deref(), Some("two"));
    assert_eq!(fetch(&tb, "127.0.0.1", 7104).as_deref(), Some("two"));
    assert_eq!(fetch(&tb, "[::1]", 7101).as_deref(), Some("one"));
    assert_eq!(fetch_remote(&tb, 7101).as_deref(), Some("one"));
    assert_eq!(fetch_remote(&tb, 7122).as_deref(), Some("seven"));
    assert_eq!(fetch_remote(&tb, 7120), None, "removed");
    assert_eq!(host_rules(&show(&tb, &sock)).len(), 5);

    // A slow transfer from the remote through 7103 (via the tap), then
    // 7101 and 7103 go: the transfer finishes whole.
    let source = Bg::spawn(
        &tb,
        "source",
        remote_helper(
            &tb,
            "source",
            &["--connect", HOST4, "7103", "--size", "16777216"],
        ),
    );
    wait_for("the transfer to start", Duration::from_secs(10), || {
        let o = run(tb
            .in_host("ss")
            .args(["-Htn", "state", "established", "sport = :7103"]));
        !String::from_utf8_lossy(&o.stdout).trim().is_empty()
    });
    let st = set(&tb, &sock, json!({"1": [tcp(7102)]}));
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(
        fetch(&tb, "127.0.0.1", 7101),
        None,
        "removed rule still forwards"
    );
    assert_eq!(fetch_remote(&tb, 7103), None, "removed rule still forwards");
    assert_eq!(fetch(&tb, "127.0.0.1", 7102).as_deref(), Some("two"));
    let sent = source.done(Duration::from_secs(T_BULK));
    let sent = line(&sent, "sent");
    wait_for("the sink's result", Duration::from_secs(30), || {
        std::fs::read_to_string(tb.path("sink.out")).is_ok_and(|s| s.starts_with("recv"))
    });
    let got = std::fs::read_to_string(tb.path("sink.out")).unwrap();
    let got = line(&got, "recv");
    assert_eq!(
        (got[1], got[2]),
        (sent[1], sent[2]),
        "transfer not byte-exact"
    );
    assert_eq!(
        host_rules(&show(&tb, &sock)),
        [("tcp".into(), Value::Null, 7102, 7102, 7102)]
    );

    // The same port on one address only: the old wildcard socket must
    // go first (the change closes it, then binds).
    let lo = json!({"proto": "tcp", "addr": "127.0.0.1", "first": 7102, "last": 7102, "to": 7102});
    let st = set(&tb, &sock, json!({"1": [lo]}));
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(fetch(&tb, "127.0.0.1", 7102).as_deref(), Some("two"));
    assert_eq!(fetch_remote(&tb, 7102), None, "bound to 127.0.0.1 only");

    // Outbound (SPLICE) rules: the namespace's loopback reaches a host
    // server.
    let mut server = tb.in_host("socat");
    server.args([
        "TCP-LISTEN:7110,bind=127.0.0.1,fork,reuseaddr",
        "SYSTEM:echo host",
    ]);
    let _server = Bg::spawn(&tb, "server", server);
    wait_listen(&tb.host, 7110);
    let out_rule = json!({"proto": "tcp", "addr": null, "ifname": "lo", "first": 7110, "last": 7110, "to": 7110});
    let st = set(&tb, &sock, json!({"3": [out_rule]}));
    assert_eq!(st["ok"], true, "{st}");
    let v = show(&tb, &sock);
    assert_eq!(v["tables"]["3"]["rules"][0]["ifname"], "lo");
    assert_eq!(host_rules(&v).len(), 1, "HOST left as it was");

    // Clearing: nothing forwarded.
    let st = set(&tb, &sock, json!({"1": [], "3": []}));
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(fetch(&tb, "127.0.0.1", 7102), None);
    assert!(host_rules(&show(&tb, &sock)).is_empty());
}

/// Bad rules, conflicts and a port somebody else holds: refused with a
/// reason, the old table still in force and still serving.
#[test]
fn refused_changes_leave_the_old_table() {
    require_root();
    let tb = Tb::new();
    let sock = tb.path("conf.sock");
    let _pasta = start_pasta(&tb, &sock, &["-t", "7101"]);
    let before = show(&tb, &sock);

    let mut holder = tb.in_host("socat");
    holder.args(["TCP-LISTEN:7105,reuseaddr,fork", "SYSTEM:echo holder"]);
    let _holder = Bg::spawn(&tb, "holder", holder);
    wait_listen(&tb.host, 7105);

    let port0 = json!({"proto": "tcp", "addr": null, "first": 0, "last": 3, "to": 0});
    let reversed = json!({"proto": "tcp", "addr": null, "first": 90, "last": 80, "to": 80});
    let overflow = json!({"proto": "tcp", "addr": null, "first": 100, "last": 200, "to": 65500});
    let bad_proto = json!({"proto": 1, "addr": null, "first": 80, "last": 80, "to": 80});
    let v4_dual = json!({"proto": "tcp", "addr": "0.0.0.0", "first": 80, "last": 80, "to": 80});
    let cases = [
        (json!({"1": [tcp(7102), tcp(7102)]}), "conflicts"),
        (json!({"1": [port0]}), "port 0"),
        (json!({"1": [reversed]}), "invalid port range"),
        (json!({"1": [overflow]}), "past port 65535"),
        (json!({"1": [bad_proto]}), "protocol"),
        (json!({"1": [tcp(7102), tcp(7105)]}), "7105"),
        (json!({"2": [tcp(7102)]}), "no table 2"),
        (json!({"3": [tcp(7102)]}), "loopback only"),
        (json!({"1": [v4_dual], "3": []}), "0.0.0.0"),
    ];
    for (update, why) in cases {
        // The dual-stack flag with an IPv4 address: written by hand.
        let st = if why == "0.0.0.0" {
            let mut raw = String::from("01");
            raw += "00000001";
            raw += "00000000000000000000ffff00000000";
            raw += &"00".repeat(32);
            raw += "00500050005006";
            raw += "01";
            raw += "00";
            client(&tb, &sock, &["raw", &raw])
        } else {
            set(&tb, &sock, update.clone())
        };
        assert_eq!(st["ok"], false, "{update}: {st}");
        let text = st["text"].as_str().unwrap();
        assert!(text.contains(why), "{update}: '{text}' should say '{why}'");
        assert_eq!(
            show(&tb, &sock)["tables"],
            before["tables"],
            "{update} changed the table"
        );
        assert_eq!(
            fetch(&tb, "127.0.0.1", 7101).as_deref(),
            Some("one"),
            "after {update}"
        );
        assert_eq!(fetch(&tb, "127.0.0.1", 7102), None, "after {update}");
    }
    assert_eq!(fetch(&tb, "127.0.0.1", 7105).as_deref(), Some("holder"));
}

/// Clients that send garbage, too much, stop half-way, say nothing or
/// hang up: each is dropped, nothing changes, and the next one is served.
#[test]
fn hostile_clients_leave_the_daemon_serving() {
    require_root();
    let tb = Tb::new();
    let sock = tb.path("conf.sock");
    let pasta = start_pasta(&tb, &sock, &["-t", "7101", "-d"]);
    let before = show(&tb, &sock);
    let check = |what: &str| {
        assert_eq!(
            show(&tb, &sock)["tables"],
            before["tables"],
            "{what} changed the table"
        );
        assert_eq!(
            fetch(&tb, "127.0.0.1", 7101).as_deref(),
            Some("one"),
            "after {what}"
        );
    };

    let junk: String = (0..3000u32)
        .map(|i| format!("{:02x}", (i * 7919 + 13) % 251))
        .collect();
    let st = client(&tb, &sock, &["raw", &junk]);
    assert!(st["ok"] == false || st.get("reset").is_some(), "{st}");
    check("garbage");

    // A count over 255 rules, a pif we don't have, trailing bytes.
    for (raw, why) in [
        ("0100000100", "rules"),
        ("070000000000", "no table 7"),
        ("010000000000ff", "bytes after"),
    ] {
        let st = client(&tb, &sock, &["raw", raw]);
        assert_eq!(st["ok"], false, "{raw}: {st}");
        assert!(st["text"].as_str().unwrap().contains(why), "{raw}: {st}");
        check(raw);
    }

    // Longer than any update: 300 KB.
    let st = client(&tb, &sock, &["big", "300000"]);
    assert!(st["ok"] == false || st.get("reset").is_some(), "{st}");
    check("an oversized update");

    // Half a rule, then EOF.
    let st = client(&tb, &sock, &["raw", "0100000001000000"]);
    assert_eq!(st, Value::Null, "no status for a half update: {st}");
    check("half an update");

    client(&tb, &sock, &["hangup"]);
    check("a hang-up");

    // Half a rule and silence: dropped after the session deadline; a
    // client waiting meanwhile is served after it.
    let staller = Bg::spawn(&tb, "staller", {
        let mut c = tb.in_host("timeout");
        c.args([
            "30",
            python(),
            CLIENT,
            &sock.display().to_string(),
            "stall",
            "01000000010000",
            "8",
        ]);
        c
    });
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    check("a silent client");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(9),
        "the next client waited {waited:?}: the silent one should be dropped after 5 s"
    );
    let out = staller.done(Duration::from_secs(30));
    assert!(
        out.contains("\"after\": \"\""),
        "the silent client was not closed: {out}"
    );
    drop(pasta);
    let log = std::fs::read_to_string(tb.path("pasta.err")).unwrap_or_default();
    for want in [
        "stopped half-way",
        "no complete update within 5 s",
        "change refused",
    ] {
        assert!(log.contains(want), "log lacks '{want}': {log}");
    }
}

/// Only the socket's owner: a client of another UID is refused before
/// the greeting, even where the file's mode would let it in.
#[test]
fn only_the_owner_gets_in() {
    require_root();
    let tb = Tb::new();
    let sock = tb.path("conf.sock");
    let pasta = start_pasta(&tb, &sock, &["-t", "7101", "-d"]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The client where anybody can run it (the checkout may be private),
    // with the system's interpreter.
    let _ = std::fs::set_permissions(&tb.tmp, std::fs::Permissions::from_mode(0o755));
    let script = tb.path("pesto_client.py");
    std::fs::copy(CLIENT, &script).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = tb.in_host("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "timeout",
        "20",
        "/usr/bin/python3",
    ])
    .arg(&script)
    .arg(&sock)
    .arg("show")
    .stdin(Stdio::null());
    let o = run(&mut c);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("refused"),
        "UID 65534 got in: {out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        host_rules(&show(&tb, &sock)).len(),
        1,
        "the owner still gets in"
    );
    drop(pasta);
    let log = std::fs::read_to_string(tb.path("pasta.err")).unwrap_or_default();
    assert!(log.contains("runs as UID 65534"), "{log}");
}

/// passt: the same socket and tables (HOST only), listeners follow.
#[test]
fn passt_forwarding_changes_at_run_time() {
    require_root();
    let tb = Tb::new();
    let sock = tb.path("conf.sock");
    let qemu = tb.path("passt.sock");
    let mut c = tb.in_host("timeout");
    c.args(["60", passt(), "-f", "-s"])
        .arg(&qemu)
        .arg("-c")
        .arg(&sock)
        .args(["-t", "7201"]);
    let _passt = Bg::spawn(&tb, "passt", c);
    wait_for("passt's sockets", Duration::from_secs(10), || {
        sock.exists() && qemu.exists()
    });
    let listening = |port: u16| {
        let o = run(tb
            .in_host("ss")
            .args(["-Hltn", &format!("sport = :{port}")]));
        !String::from_utf8_lossy(&o.stdout).trim().is_empty()
    };
    let v = show(&tb, &sock);
    assert_eq!(v["tables"]["1"]["name"], "HOST");
    assert!(
        v["tables"].get("3").is_none(),
        "passt has no SPLICE table: {v}"
    );
    // No scan capability: IPv4, IPv6, TCP, UDP, ifname.
    assert_eq!(v["tables"]["1"]["caps"], 0x2f);
    assert!(listening(7201));
    let st = set(&tb, &sock, json!({"1": [tcp(7202), tcp(7203)]}));
    assert_eq!(st["ok"], true, "{st}");
    assert!(listening(7202) && listening(7203) && !listening(7201));
    let auto =
        json!({"proto": "tcp", "addr": null, "first": 1, "last": 65535, "to": 1, "scan": true});
    let st = set(&tb, &sock, json!({"1": [auto]}));
    assert_eq!(st["ok"], false, "{st}");
    assert!(
        st["text"]
            .as_str()
            .unwrap()
            .contains("only allowed for pasta"),
        "{st}"
    );
    assert!(listening(7202));
    let _ = Command::new("true").status();
}

/// UDP and `auto` rules at run time (pasta): a UDP forward added while
/// running carries datagrams both ways, and the flow it started goes on
/// after the rule is removed while a new peer gets nothing; an `auto`
/// rule added at run time forwards what the namespace listens on at once.
#[test]
fn udp_and_auto_rules_at_run_time() {
    require_root();
    let tb = Tb::new();
    let sock = tb.path("conf.sock");
    let _pasta = start_pasta(&tb, &sock, &["-t", "none", "-d"]);
    let udp = json!({"proto": "udp", "addr": null, "first": 7301, "last": 7301, "to": 7301});
    let st = set(&tb, &sock, json!({"1": [udp]}));
    assert_eq!(st["ok"], true, "{st}");

    // One socket: "a" echoed; the rule goes; "b" on the same flow still
    // echoed; a new socket's "c" is not.
    let script = "import socket, sys, time, json, subprocess
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect(('127.0.0.1', 7301))
s.send(b'a')
r = [s.recv(10).decode()]
print(subprocess.run(sys.argv[1:], capture_output=True, text=True).stdout.strip(), file=sys.stderr)
s.send(b'b')
r.append(s.recv(10).decode())
n = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n.settimeout(1.5)
n.connect(('127.0.0.1', 7301))
try:
    n.send(b'c')
    r.append(n.recv(10).decode())
except (socket.timeout, ConnectionRefusedError):
    r.append('none')
print(json.dumps(r))";
    let mut c = tb.in_host("timeout");
    c.args(["30", python(), "-c", script, python(), CLIENT])
        .arg(&sock)
        .args(["set", r#"{"1": []}"#])
        .stdin(Stdio::null());
    let o = run(&mut c);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("\"ok\": true"), "the change: {err}");
    assert_eq!(out.trim(), r#"["a", "b", "none"]"#, "{err}");

    // auto over 7101-7102: both namespace servers forwarded at once.
    let auto = json!({"proto": "tcp", "addr": null, "first": 7101, "last": 7102, "to": 7101, "scan": true});
    let st = set(&tb, &sock, json!({"1": [auto]}));
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(fetch(&tb, "127.0.0.1", 7101).as_deref(), Some("one"));
    assert_eq!(fetch(&tb, "127.0.0.1", 7102).as_deref(), Some("two"));
    assert_eq!(show(&tb, &sock)["tables"]["1"]["rules"][0]["scan"], true);
}
