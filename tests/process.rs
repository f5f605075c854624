//! The process model: the log file's format, SIGTERM, the launcher's
//! readiness contract with `--pid`, `-q` and `-d` on stderr, and errors
//! before start-up.

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A namespace made with `ip netns add`, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tb: &Testbed, tag: &str) -> Netns {
        let name = format!("{}-{tag}", tb.host);
        must(Command::new("ip").args(["netns", "add", &name]));
        Netns(name)
    }

    fn has_link(&self, name: &str) -> bool {
        run(Command::new("ip").args(["-n", &self.0, "link", "show", name]))
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Result of a foreground attach-mode pasta ended by SIGTERM.
struct Ended {
    status: ExitStatus,
    stderr: String,
    /// From SIGTERM to exit.
    took: Duration,
    pid: String,
}

/// Runs `pasta --config-net -f ARGS --netns TARGET` in the host namespace,
/// waits for the tap in the target, pings the gateway from there (a ping
/// flow to log about), sends SIGTERM and collects the result.
fn attach_then_term(tb: &Testbed, tag: &str, args: &[&str]) -> Ended {
    let target = Netns::new(tb, tag);
    let child = tb
        .pasta(&["--config-net", "-f"])
        .args(args)
        .args(["--netns", &target.0])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pasta");
    let mut pasta = Guard(child);
    // `ip netns exec` execs pasta in place: the child is pasta itself.
    let pid = pasta.0.id().to_string();
    wait_for("the tap in the target", Duration::from_secs(10), || {
        target.has_link("eth0")
    });
    must(Command::new("ip").args(["netns", "exec", &target.0, "ping", "-c1", "-W5", REMOTE4]));
    let start = Instant::now();
    must(Command::new("kill").args(["-TERM", &pid]));
    let mut status = None;
    wait_for(
        "pasta to exit after SIGTERM",
        Duration::from_secs(5),
        || {
            status = pasta.0.try_wait().ok().flatten();
            status.is_some()
        },
    );
    let took = start.elapsed();
    let mut stderr = String::new();
    pasta
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Ended {
        status: status.unwrap(),
        stderr,
        took,
        pid,
    }
}

/// Splits "S.ffff: rest" into the timestamp and the rest.
fn timestamp(line: &str) -> Option<(f64, &str)> {
    let (ts, rest) = line.split_once(": ")?;
    let (s, f) = ts.split_once('.')?;
    let ok = !s.is_empty()
        && f.len() == 4
        && s.bytes().all(|b| b.is_ascii_digit())
        && f.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| (ts.parse().unwrap(), rest))
}

#[test]
fn sigterm_ends_a_foreground_pasta_promptly_with_status_0() {
    let tb = Testbed::new();
    let e = attach_then_term(&tb, "term", &[]);
    assert_eq!(e.status.code(), Some(0), "{}", e.stderr);
    assert!(e.took < Duration::from_secs(2), "took {:?}", e.took);
}

#[test]
fn log_file_has_a_header_and_timestamped_lines() {
    let tb = Testbed::new();
    let log = tb.path("pasta.log");
    let log_s = log.display().to_string();
    let e = attach_then_term(&tb, "log", &["-d", "-l", &log_s]);
    assert_eq!(e.status.code(), Some(0), "{}", e.stderr);
    let text = std::fs::read_to_string(&log).expect("log file");
    let mut lines = text.lines();
    let header = lines.next().expect("header line");
    // pasta <version>: <exe> (<pid>)
    let (name_ver, rest) = header.split_once(": ").expect(header);
    let version = name_ver.strip_prefix("pasta ").expect(header);
    assert!(
        !version.is_empty() && version.chars().next().unwrap().is_ascii_digit(),
        "{header}"
    );
    let (exe, pid) = rest.rsplit_once(" (").expect(header);
    assert_eq!(exe, pasta(), "{header}");
    let pid = pid.strip_suffix(')').expect(header);
    assert_eq!(pid, e.pid, "{header}");

    let mut last = 0.0;
    let mut n = 0;
    for line in lines {
        let (ts, msg) = timestamp(line).unwrap_or_else(|| panic!("bad line {line:?} in\n{text}"));
        assert!(ts >= last, "timestamps go back: {line:?} in\n{text}");
        assert!(!msg.is_empty());
        last = ts;
        n += 1;
    }
    assert!(n >= 2, "too few lines:\n{text}");
    // Debugging was asked for: debug lines are there (the ping flow's forwarding decision), with
    // upstream's blank level prefix.
    assert!(
        text.lines().any(|l| timestamp(l)
            .is_some_and(|(_, m)| m.starts_with("         ") && m.contains("(ICMP"))),
        "{text}"
    );
}

#[test]
fn quiet_and_debug_on_stderr() {
    let tb = Testbed::new();
    let default = attach_then_term(&tb, "dflt", &[]);
    let quiet = attach_then_term(&tb, "quiet", &["-q"]);
    let debug = attach_then_term(&tb, "debug", &["-d"]);
    for e in [&default, &quiet, &debug] {
        assert_eq!(e.status.code(), Some(0), "{}", e.stderr);
    }
    // Default: info lines, without timestamps.
    assert!(
        default.stderr.contains("Template interface"),
        "{}",
        default.stderr
    );
    assert!(
        default.stderr.lines().all(|l| timestamp(l).is_none()),
        "{}",
        default.stderr
    );
    // -q: none of them.
    assert!(
        !quiet.stderr.contains("Template interface"),
        "{}",
        quiet.stderr
    );
    assert!(
        quiet.stderr.lines().count() < default.stderr.lines().count(),
        "quiet:\n{}\ndefault:\n{}",
        quiet.stderr,
        default.stderr
    );
    // -d: every line timestamped, more of them than by default, among them
    // the debug line about the ping flow.
    assert!(!default.stderr.contains("(ICMP"), "{}", default.stderr);
    assert!(debug.stderr.contains("(ICMP"), "{}", debug.stderr);
    let lines: Vec<&str> = debug.stderr.lines().collect();
    assert!(
        lines.iter().all(|l| timestamp(l).is_some()),
        "{}",
        debug.stderr
    );
    assert!(
        lines.len() > default.stderr.lines().count(),
        "debug:\n{}\ndefault:\n{}",
        debug.stderr,
        default.stderr
    );
}

#[test]
fn launcher_returns_after_the_tap_exists() {
    let tb = Testbed::new();
    let target = Netns::new(&tb, "ready");
    let pid_file = tb.path("pasta.pid");
    for _ in 0..3 {
        let _ = std::fs::remove_file(&pid_file);
        let o = run(tb
            .pasta(&[
                "--config-net",
                "-I",
                "tapready",
                "--netns",
                &target.0,
                "--pid",
            ])
            .arg(&pid_file)
            .stdin(Stdio::null()));
        assert!(o.status.success(), "{o:?}");
        // Immediately: no waiting here.
        assert!(
            target.has_link("tapready"),
            "no tap when the launcher exits"
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("PID file")
            .trim()
            .parse()
            .expect("PID");
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        must(Command::new("kill").args(["-TERM", &pid.to_string()]));
        wait_for("the daemon to exit", Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        });
        // The tap goes away with the daemon.
        wait_for("the tap to go", Duration::from_secs(5), || {
            !target.has_link("tapready")
        });
    }
}

#[test]
fn pid_file_in_a_missing_directory_is_an_error() {
    let tb = Testbed::new();
    let target = Netns::new(&tb, "nopid");
    let pid_file = tb.path("missing/dir/pasta.pid");
    let mut c = tb.in_host("timeout");
    c.arg("10")
        .arg(pasta())
        .args(["--config-net", "--netns", &target.0, "--pid"])
        .arg(&pid_file)
        .stdin(Stdio::null());
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("PID file") && err.contains("missing/dir/pasta.pid"),
        "{err}"
    );
    // Nothing keeps running in the target.
    let pids = must(Command::new("ip").args(["netns", "pids", &target.0]));
    assert!(pids.trim().is_empty(), "{pids}");
}
