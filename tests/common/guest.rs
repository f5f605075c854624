//! A real guest for the tests: the tiny Linux VM of `tests/guest/`
//! (`mkguest.sh` builds it, `run-guest.sh` boots it under QEMU) attached
//! to our passt, running a busybox script whose console the test reads.
//! Shared by tests/passt_vm.rs and tests/vm_flood.rs; include it with
//! `#[path = "common/guest.rs"] mod guest;` next to `mod common;`.
//!
//! Boots are serialised per test binary ([`VM_LOCK`]): a TCG guest takes
//! a core, and the test hosts have two. (cargo runs test binaries one
//! after the other, so two binaries never boot at once.)

#![allow(dead_code)]

use crate::common::{wait_for, Guard, Testbed};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Held for each VM run: one guest at a time.
pub static VM_LOCK: Mutex<()> = Mutex::new(());

/// tests/guest/ in the source tree.
pub fn guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest")
}

/// How QEMU attaches the guest's virtio-net to passt.
#[derive(Clone, Copy, Debug)]
pub enum Link {
    /// `-netdev stream` on passt's socket (length-prefixed frames).
    Stream,
    /// `passt --vhost-user`: `-netdev vhost-user` with `queues` pairs (and
    /// as many vCPUs, so that the guest uses them all).
    VhostUser { queues: u32 },
}

impl Link {
    /// passt's options for this link, before `--socket`.
    pub fn passt_args(self) -> &'static [&'static str] {
        match self {
            Link::Stream => &[],
            Link::VhostUser { .. } => &["--vhost-user"],
        }
    }

    /// run-guest.sh's options for this link on socket `sock`.
    pub fn guest_args(self, sock: &Path) -> Vec<String> {
        let sock = sock.display().to_string();
        match self {
            Link::Stream => vec!["--socket".into(), sock],
            Link::VhostUser { queues } => vec![
                "--vhost-user".into(),
                sock,
                "--queues".into(),
                queues.to_string(),
            ],
        }
    }

    pub fn queues(self) -> u32 {
        match self {
            Link::Stream => 1,
            Link::VhostUser { queues } => queues,
        }
    }
}

/// Boots the guest over `link` on `sock` with `script`; calls `on_line`
/// for each console line. Returns the exit status and the console
/// (run-guest.sh's own messages, from its stderr, at the end).
pub fn boot(
    tb: &Testbed,
    link: Link,
    sock: &Path,
    script: &str,
    env: &[(&str, &str)],
    on_line: impl FnMut(&str),
) -> (i32, String) {
    boot_with(tb, link, sock, script, env, &[], on_line)
}

/// [`boot`] with more options for run-guest.sh (`--add FILE`, a shorter
/// `--timeout SECONDS`: the later one counts).
pub fn boot_with(
    tb: &Testbed,
    link: Link,
    sock: &Path,
    script: &str,
    env: &[(&str, &str)],
    extra: &[&str],
    mut on_line: impl FnMut(&str),
) -> (i32, String) {
    let _serial = VM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let script_path = tb.path("guest-test.sh");
    std::fs::write(&script_path, script).unwrap();
    let mut c = Command::new(guest_dir().join("run-guest.sh"));
    c.args(link.guest_args(sock))
        .arg("--script")
        .arg(&script_path)
        .args(["--timeout", "400"]);
    for (k, v) in env {
        c.arg("--env").arg(format!("{k}={v}"));
    }
    c.args(extra);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = c.spawn().expect("run-guest.sh");
    let out = child.stdout.take().unwrap();
    let mut console = String::new();
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        on_line(&line);
        console.push_str(&line);
        console.push('\n');
    }
    let st = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    console.push_str(&err);
    eprintln!(
        "{link:?}: guest run took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (st.code().unwrap_or(-1), console)
}

pub fn check_passed(console: &str, name: &str) -> bool {
    console
        .lines()
        .any(|l| l.trim() == format!("CHECK {name}: PASS"))
}

/// A directory served over HTTP by python3 in namespace `ns` on port 8000
/// (both families).
pub fn http_server(ns: &str, dir: &Path) -> Guard {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "python3", "-m", "http.server", "8000"])
        .args(["--bind", "::", "--directory"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let g = Guard(c.spawn().expect("python3 http.server"));
    wait_for("the HTTP server", Duration::from_secs(10), || {
        Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sf", "-o", "/dev/null"])
            .arg("http://127.0.0.1:8000/index.html")
            .status()
            .is_ok_and(|s| s.success())
    });
    g
}

/// Compiles `tests/guest/NAME.c` into a static binary `NAME` in the test
/// bed's directory, for the guest (`--add`): gcc is one of test.sh's
/// packages, the guest has no C library.
pub fn build_static(tb: &Testbed, name: &str) -> PathBuf {
    let out = tb.path(name);
    crate::common::must(
        Command::new("gcc")
            .args(["-O2", "-static", "-o"])
            .arg(&out)
            .arg(guest_dir().join(format!("{name}.c"))),
    );
    out
}
