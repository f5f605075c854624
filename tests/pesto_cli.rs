//! The `pesto` binary: against a real `pasta -c SOCK` (show, replace, add,
//! delete, clear, `-s`, refused changes leaving the tables as they were),
//! against servers played by the test (upstream's, which sends no status:
//! the update checked byte for byte; one that stops talking; garbage),
//! and on its own (`--help`, `--version`, no server).
//!
//! Traffic through changed forwards is tested elsewhere: here a forward
//! is judged by its listening socket (`ss`) and by the tables the server
//! shows.

mod common;

use common::tcp::{wait_listen, Bg};
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pesto() -> &'static str {
    env!("CARGO_BIN_EXE_pesto")
}

/// What a run of pesto gave.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (bounded by `timeout` in its arguments).
fn outcome(mut cmd: Command) -> Out {
    cmd.stdin(Stdio::null());
    let o = run(&mut cmd);
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `pesto ARGS` in the host namespace, at most 30 s.
fn pesto_in(tb: &Testbed, args: &[&str]) -> Out {
    let mut c = tb.in_host("timeout");
    c.arg("30").arg(pesto()).args(args);
    outcome(c)
}

/// `pesto ARGS` here, at most 30 s.
fn pesto_here(args: &[&str]) -> Out {
    let mut c = Command::new("timeout");
    c.arg("30").arg(pesto()).args(args);
    outcome(c)
}

/// A network namespace for pasta to attach to, deleted on drop.
struct Target(String);

impl Drop for Target {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// pasta in the host namespace with `-c SOCK` and `args`, attached to a
/// namespace of its own (dropped after pasta) and running until dropped;
/// returns once its configuration socket answers.
///
/// Attached rather than spawning a command: in spawn mode, pasta's middle
/// process (forked after the host's listeners were opened) holds copies of
/// them, so a removed rule's port stays bound by that process.
fn pasta_with_socket(tb: &Testbed, args: &[&str]) -> (Target, Guard, String) {
    let target = Target(format!("{}-p", tb.host));
    must(Command::new("ip").args(["netns", "add", &target.0]));
    let sock = tb.path("ctl.sock").display().to_string();
    let child = tb
        .pasta(&["--config-net", "-f", "-c", &sock])
        .args(args)
        .args(["--netns", &target.0])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pasta");
    let pasta = Guard(child);
    wait_for(
        "pasta's configuration socket",
        Duration::from_secs(20),
        || UnixStream::connect(&sock).is_ok(),
    );
    (target, pasta, sock)
}

/// The tables as `pesto SOCK` shows them (it must succeed).
fn show(tb: &Testbed, sock: &str) -> String {
    let o = pesto_in(tb, &[sock]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.is_empty(), "{o:?}");
    o.stdout
}

/// The show output for these HOST and SPLICE rules.
fn tables(sock: &str, host: &[&str], splice: &[&str]) -> String {
    let mut s = format!("passt/pasta configuration ({sock})\n  HOST\n");
    for r in host {
        s += &format!("    {r}\n");
    }
    s += "  SPLICE\n";
    for r in splice {
        s += &format!("    {r}\n");
    }
    s
}

/// Runs a change that the server must apply.
fn change(tb: &Testbed, args: &[&str]) -> Out {
    let o = pesto_in(tb, args);
    assert_eq!(o.code, 0, "{args:?}: {o:?}");
    assert!(o.stdout.contains("applied"), "{args:?}: {o:?}");
    o
}

/// Whether something listens on TCP `port` in the host namespace.
fn listening(tb: &Testbed, port: u16) -> bool {
    let o = run(tb
        .in_host("ss")
        .args(["-Hltn", &format!("sport = :{port}")]));
    !String::from_utf8_lossy(&o.stdout).trim().is_empty()
}

#[test]
fn show_replace_add_delete_clear() {
    let tb = Testbed::new();
    let (_ns, _pasta, sock) = pasta_with_socket(
        &tb,
        &["-t", "10001", "-u", "none", "-T", "10101", "-U", "none"],
    );
    let s = sock.as_str();
    let splice = ["TCP [*%lo]:10101 => 10101"];
    assert_eq!(
        show(&tb, s),
        tables(s, &["TCP [*]:10001 => 10001"], &splice)
    );
    assert!(listening(&tb, 10001));

    // The first -t replaces the HOST table, SPLICE stays.
    change(&tb, &["-t", "10002", s]);
    assert_eq!(
        show(&tb, s),
        tables(s, &["TCP [*]:10002 => 10002"], &splice)
    );
    assert!(listening(&tb, 10002) && !listening(&tb, 10001));

    // -A adds.
    change(&tb, &[s, "-A", "--tcp-ports", "10003"]);
    assert_eq!(
        show(&tb, s),
        tables(
            s,
            &["TCP [*]:10002 => 10002", "TCP [*]:10003 => 10003"],
            &splice
        )
    );
    assert!(listening(&tb, 10002) && listening(&tb, 10003));

    // -D deletes.
    change(&tb, &["-D", "-t", "10002", s]);
    assert_eq!(
        show(&tb, s),
        tables(s, &["TCP [*]:10003 => 10003"], &splice)
    );
    assert!(!listening(&tb, 10002) && listening(&tb, 10003));

    // -s shows before and after.
    let o = change(&tb, &["-s", "-A", "-u", "10004", s]);
    let before = format!(
        "Previous configuration ({s})\n  HOST\n    TCP [*]:10003 => 10003\n  SPLICE\n    {}\n",
        splice[0]
    );
    let after = format!(
        "Updated configuration ({s})\n  HOST\n    TCP [*]:10003 => 10003\n    UDP [*]:10004 => 10004\n  SPLICE\n    {}\n",
        splice[0]
    );
    assert!(o.stdout.starts_with(&(before + &after)), "{o:?}");

    // -T replaces SPLICE; -C HOST empties HOST.
    change(&tb, &["-T", "10102", "-C", "HOST", s]);
    assert_eq!(show(&tb, s), tables(s, &[], &["TCP [*%lo]:10102 => 10102"]));
    assert!(!listening(&tb, 10003));
}

#[test]
fn refused_changes_leave_the_tables() {
    let tb = Testbed::new();
    let (_ns, _pasta, sock) = pasta_with_socket(
        &tb,
        &["-t", "10001", "-u", "none", "-T", "none", "-U", "none"],
    );
    let s = sock.as_str();
    let initial = show(&tb, s);
    assert_eq!(initial, tables(s, &["TCP [*]:10001 => 10001"], &[]));

    // Refused by pesto: nothing is sent.
    let cases: &[(&[&str], &str)] = &[
        (
            &["-t", "70000"],
            "-t: in '70000': port 70000 is out of range",
        ),
        (
            &["-t", "10002", "-t", "10002"],
            "conflicts with the rule TCP [*]:10002",
        ),
        (
            &["-A", "-t", "10001"],
            "conflicts with the rule TCP [*]:10001 => 10001",
        ),
        (
            &["-D", "-t", "10001-10002"],
            "overlaps the rule TCP [*]:10001 => 10001 without matching it",
        ),
        (
            &["-D", "-t", "9999"],
            "no rule TCP [*]:9999 => 9999 to delete",
        ),
        (&["-C", "NOPE"], "-C NOPE: no such table"),
        (&["-t", "all"], "only allowed for passt"),
    ];
    for (args, msg) in cases {
        let mut a = args.to_vec();
        a.push(s);
        let o = pesto_in(&tb, &a);
        assert_eq!(o.code, 1, "{args:?}: {o:?}");
        assert!(o.stderr.contains(msg), "{args:?}: {o:?}");
        assert!(o.stdout.is_empty(), "{args:?}: {o:?}");
        assert_eq!(show(&tb, s), initial, "after {args:?}");
    }

    // Refused by the server: a port somebody else has. Its status says
    // why; the old rule keeps its socket.
    let busy = Bg::spawn(&tb, "busy", {
        let mut c = tb.in_host("timeout");
        c.args([
            "55",
            "socat",
            "TCP-LISTEN:10005,bind=127.0.0.1,reuseaddr",
            "-",
        ]);
        c
    });
    wait_listen(&tb.host, 10005);
    let o = pesto_in(&tb, &["-A", "-t", "127.0.0.1/10005", s]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("pesto: change refused: ") && o.stderr.contains("10005"),
        "{o:?}"
    );
    assert_eq!(show(&tb, s), initial);
    assert!(listening(&tb, 10001));
    drop(busy);
}

#[test]
fn help_version_and_no_server() {
    let o = pesto_here(&["--help"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.starts_with("Usage: pesto [OPTION]... PATH\n"),
        "{o:?}"
    );
    for opt in [
        "--add",
        "--delete",
        "--clear",
        "--tcp-ports",
        "--udp-ns",
        "--show",
        "--debug",
    ] {
        assert!(o.stdout.contains(opt), "{opt}: {o:?}");
    }
    let o = pesto_here(&["-s", "--version", "-x"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .starts_with(&format!("pesto {} (passt-rs)\n", env!("CARGO_PKG_VERSION"))),
        "{o:?}"
    );

    let dir = std::env::temp_dir().join(format!("pesto-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nobody = dir.join("nobody.sock");
    let o = pesto_here(&[nobody.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.starts_with(&format!(
            "pesto: Failed to connect to {}: ",
            nobody.display()
        )),
        "{o:?}"
    );
    // A socket file nobody listens on.
    drop(UnixListener::bind(&nobody).unwrap());
    let o = pesto_here(&["-t", "22", nobody.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("Failed to connect"), "{o:?}");
    // Usage errors.
    for args in [&[][..], &["-t"], &["--bogus", "x"], &["a", "b"]] {
        let o = pesto_here(args);
        assert_eq!(o.code, 1, "{args:?}: {o:?}");
        assert!(o.stderr.contains("Usage: pesto"), "{args:?}: {o:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The greeting and one HOST table with `TCP [*]:10001 => 10001`, as a
/// server of protocol version 2 sends them.
fn upstream_tables() -> Vec<u8> {
    let mut b = b"basil:s\0".to_vec();
    for v in [2u32, 128, 16] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.push(1); // PIF_HOST
    let mut name = [0u8; 128];
    name[..4].copy_from_slice(b"HOST");
    b.extend_from_slice(&name);
    b.extend_from_slice(&0x2fu32.to_be_bytes()); // IPv4 IPv6 TCP UDP ifname
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&rule(10001));
    b.push(0); // end
    b
}

/// `TCP [*]:PORT => PORT`, upstream's `struct fwd_rule`: address `::`,
/// no target address, no interface, ports, protocol 6, dual stack.
fn rule(port: u16) -> Vec<u8> {
    let mut r = vec![0u8; 48];
    for _ in 0..3 {
        r.extend_from_slice(&port.to_be_bytes());
    }
    r.extend_from_slice(&[6, 1]);
    assert_eq!(r.len(), 56);
    r
}

/// A server played by the test at `path`: sends `greeting`, then
/// (if `read`) reads until the client shuts its side and closes without
/// a status, as upstream's does. Returns what the client sent.
fn fake_server(
    path: &Path,
    greeting: Vec<u8>,
    read: bool,
    hold: Duration,
) -> std::thread::JoinHandle<Vec<u8>> {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.write_all(&greeting).unwrap();
        let mut got = Vec::new();
        if read {
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            c.read_to_end(&mut got).unwrap();
        } else {
            std::thread::sleep(hold);
        }
        got
    })
}

#[test]
fn against_servers_played_by_the_test() {
    let dir = std::env::temp_dir().join(format!("pesto-fake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Upstream's server: shows, and takes the update (every table, whole)
    // without a status.
    let path = dir.join("upstream.sock");
    let srv = fake_server(&path, upstream_tables(), true, Duration::ZERO);
    let o = pesto_here(&["-A", "-t", "10003", path.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains("no status from the server (upstream passt?): check its log"),
        "{o:?}"
    );
    let got = srv.join().unwrap();
    let mut want = vec![1u8];
    want.extend_from_slice(&2u32.to_be_bytes());
    want.extend(rule(10001));
    want.extend(rule(10003));
    want.push(0);
    assert_eq!(got, want);
    let _ = std::fs::remove_file(&path);

    // Showing sends nothing.
    let srv = fake_server(&path, upstream_tables(), true, Duration::ZERO);
    let o = pesto_here(&[path.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout,
        format!(
            "passt/pasta configuration ({})\n  HOST\n    TCP [*]:10001 => 10001\n",
            path.display()
        )
    );
    assert!(srv.join().unwrap().is_empty());
    let _ = std::fs::remove_file(&path);

    // Garbage, and a greeting cut short.
    for (bytes, msg) in [
        (b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(), "Bad magic number"),
        (upstream_tables()[..100].to_vec(), "truncated"),
    ] {
        let srv = fake_server(&path, bytes, false, Duration::ZERO);
        let o = pesto_here(&["-t", "1", path.to_str().unwrap()]);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stderr.contains(msg), "{msg}: {o:?}");
        srv.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    // A server that stops talking: given up after 10 s.
    let srv = fake_server(
        &path,
        upstream_tables()[..30].to_vec(),
        false,
        Duration::from_secs(25),
    );
    let t0 = Instant::now();
    let o = pesto_here(&[path.to_str().unwrap()]);
    let took = t0.elapsed();
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("no tables from the server within 10 s"),
        "{o:?}"
    );
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(20),
        "{took:?}"
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of `bin` that user nobody can run, in `dir`.
fn for_anyone(bin: &str, dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dst = dir.join(Path::new(bin).file_name().unwrap());
    std::fs::copy(bin, &dst).expect("copy binary");
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dst.display().to_string()
}

/// `setpriv` arguments to run a command as user nobody.
const AS_NOBODY: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

/// passt has one table, `HOST`, and no scanner. Both run as nobody, as
/// passt usually runs as a user (started as root, passt would become
/// nobody in a user namespace of its own, where root's client is not its
/// socket's owner).
#[test]
fn passt_has_one_table() {
    use std::os::unix::fs::PermissionsExt;
    let tb = Testbed::new();
    let dir = tb.path("nobody");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&tb.tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let passt_bin = for_anyone(passt(), &dir);
    let pesto_bin = for_anyone(pesto(), &dir);
    let sock = dir.join("ctl.sock").display().to_string();
    let qemu = dir.join("qemu.sock").display().to_string();
    let child = tb
        .in_host("setpriv")
        .args(AS_NOBODY)
        .args([&passt_bin, "-f", "-s", &qemu, "-c", &sock, "-t", "10001"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn passt");
    let _passt = Guard(child);
    wait_for(
        "passt's configuration socket",
        Duration::from_secs(20),
        || UnixStream::connect(&sock).is_ok(),
    );
    let s = sock.as_str();
    let pesto_as_nobody = |args: &[&str]| {
        let mut c = tb.in_host("timeout");
        c.args(["30", "setpriv"])
            .args(AS_NOBODY)
            .arg(&pesto_bin)
            .args(args)
            .arg(s);
        outcome(c)
    };
    let initial = format!("passt/pasta configuration ({s})\n  HOST\n    TCP [*]:10001 => 10001\n");
    let o = pesto_as_nobody(&[]);
    assert_eq!((o.code, o.stdout.as_str()), (0, initial.as_str()), "{o:?}");
    for (args, msg) in [
        (&["-T", "22"][..], "Can't use -T, no outbound interface"),
        (
            &["-A", "-t", "auto"],
            "'auto' port forwarding is only allowed for pasta",
        ),
        (
            &["-C", "SPLICE"],
            "-C SPLICE: no such table (the server has HOST)",
        ),
    ] {
        let o = pesto_as_nobody(args);
        assert_eq!(o.code, 1, "{args:?}: {o:?}");
        assert!(o.stderr.contains(msg), "{args:?}: {o:?}");
    }
    let o = pesto_as_nobody(&["-A", "-t", "10002:22"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("applied"), "{o:?}");
    let o = pesto_as_nobody(&[]);
    assert_eq!(
        o.stdout,
        format!("{initial}    TCP [*]:10002 => 22\n"),
        "{o:?}"
    );
    assert!(listening(&tb, 10001) && listening(&tb, 10002));
}
