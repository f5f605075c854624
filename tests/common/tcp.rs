//! The TCP tests' plumbing (`tcp`, `splice`, `auto_fwd`): background
//! processes (tagged pasta processes killed on drop), the python helper
//! script, commands bounded by `timeout`.

use super::*;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tcp_helper.py");

/// Seconds any single command may take.
pub const T: u64 = 60;

/// Seconds without progress after which a transfer gives up.
pub const STALL: &str = "20";

/// Seconds a bulk transfer may take.
pub const T_BULK: u64 = 150;

/// The python interpreter, resolved once: pasta and `ip netns exec` keep
/// the environment, but shims may not work in a new mount namespace.
pub fn python() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| {
        must(Command::new("python3").args(["-c", "import sys; print(sys.executable)"]))
            .trim()
            .to_string()
    })
}

/// `python3 tcp_helper.py MODE ARGS...` as words.
pub fn helper(mode: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec![python().to_string(), HELPER.to_string(), mode.to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// A shell command line from words (they contain no quotes).
pub fn shell(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The test bed, plus cleanup of what pasta leaves behind: processes in
/// the namespaces pasta created survive pasta being killed (after a
/// failure), so every pasta we start carries a tag in its environment,
/// inherited by the guest's processes, and those are killed on drop.
pub struct Tb(pub Testbed);

pub const TAG: &str = "PASST_RS_TCP_TEST_TAG";

impl Tb {
    pub fn new() -> Tb {
        Tb(Testbed::new())
    }

    pub fn tag(&self) -> String {
        self.0.tmp.display().to_string()
    }
}

impl std::ops::Deref for Tb {
    type Target = Testbed;
    fn deref(&self) -> &Testbed {
        &self.0
    }
}

impl Drop for Tb {
    fn drop(&mut self) {
        let want = format!("{TAG}={}", self.tag());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// A background process with its output in files.
pub struct Bg {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    what: String,
}

impl Bg {
    pub fn spawn(tb: &Testbed, name: &str, mut cmd: Command) -> Bg {
        let out = tb.path(&format!("{name}.out"));
        let err = tb.path(&format!("{name}.err"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        let what = format!("{cmd:?}");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Bg {
            child: Some(child),
            out,
            err,
            what,
        }
    }

    /// Waits for the process to exit; returns status, stdout, stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        let err = std::fs::read_to_string(&self.err).unwrap_or_default();
        let Some(status) = status else {
            panic!(
                "{} did not exit within {timeout:?}\nstdout: {out}\nstderr: {err}",
                self.what
            );
        };
        (status, out, err)
    }

    /// Like [`Bg::wait`], and the process must have succeeded: stdout.
    pub fn done(self, timeout: Duration) -> String {
        let what = self.what.clone();
        let (st, out, err) = self.wait(timeout);
        assert!(
            st.success(),
            "{what} failed ({st})\nstdout: {out}\nstderr: {err}"
        );
        out
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `timeout T python3 tcp_helper.py ...` in the host namespace.
pub fn host_helper(tb: &Testbed, mode: &str, args: &[&str]) -> Command {
    host_helper_t(tb, T, mode, args)
}

pub fn host_helper_t(tb: &Testbed, secs: u64, mode: &str, args: &[&str]) -> Command {
    let mut c = tb.in_host("timeout");
    c.arg(secs.to_string()).args(helper(mode, args));
    c
}

/// `timeout T python3 tcp_helper.py ...` in the remote namespace.
pub fn remote_helper(tb: &Testbed, mode: &str, args: &[&str]) -> Command {
    remote_helper_t(tb, T, mode, args)
}

pub fn remote_helper_t(tb: &Testbed, secs: u64, mode: &str, args: &[&str]) -> Command {
    let mut c = tb.in_remote("timeout");
    c.arg(secs.to_string()).args(helper(mode, args));
    c
}

/// `timeout T pasta ARGS -- sh -c SCRIPT` in the host namespace.
pub fn pasta_sh(tb: &Tb, args: &[&str], script: &str) -> Command {
    pasta_sh_t(tb, T, args, script)
}

pub fn pasta_sh_t(tb: &Tb, secs: u64, args: &[&str], script: &str) -> Command {
    let mut c = tb.in_host("timeout");
    c.env(TAG, tb.tag());
    c.arg(secs.to_string())
        .arg(pasta())
        .args(args)
        .args(["--", "sh", "-c", script]);
    c
}

pub fn wait_ready(f: &Path) {
    wait_for(
        &format!("{} to be listening", f.display()),
        Duration::from_secs(20),
        || f.exists(),
    );
}

/// Waits until something listens on TCP `port` in the namespace `ns`.
pub fn wait_listen(ns: &str, port: u16) {
    wait_for(
        &format!("a listener on port {port} in {ns}"),
        Duration::from_secs(20),
        || {
            let o = run(Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "ss",
                "-Hltn",
                &format!("sport = :{port}"),
            ]));
            !String::from_utf8_lossy(&o.stdout).trim().is_empty()
        },
    );
}

/// Runs `fg` in the foreground while `bg` runs; both must succeed, and a
/// failure shows the output of both. Returns (fg stdout, bg stdout, bg
/// stderr).
pub fn pair(mut fg: Command, bg: Bg, timeout: Duration) -> (String, String, String) {
    fg.stdin(Stdio::null());
    let o = run(&mut fg);
    let (st, out, err) = bg.wait(timeout);
    let fout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && st.success(),
        "{fg:?}: {}\nstdout: {fout}\nstderr: {}\n\nbackground ({st}):\nstdout: {out}\nstderr: {err}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    (fout, out, err)
}

/// [`pair`] without the background's stderr.
pub fn both(fg: Command, bg: Bg, timeout: Duration) -> (String, String) {
    let (fout, out, _) = pair(fg, bg, timeout);
    (fout, out)
}

/// Runs a command that must succeed within `T`; returns stdout.
pub fn ok(mut cmd: Command) -> String {
    cmd.stdin(Stdio::null());
    must(&mut cmd)
}

/// Words of the line starting with `tag` in `out`.
pub fn line<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(tag))
        .unwrap_or_else(|| panic!("no '{tag}' line in: {out}"))
        .split_whitespace()
        .collect()
}

pub fn sha256_file(p: &Path) -> String {
    must(Command::new("sha256sum").arg(p))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The guest address: another one than the host's, on the same link, so
/// that the host's own address is reached through the tap.
pub const GUEST4: &[&str] = &["--config-net", "-a", "192.0.2.3", "-n", "24", "-g", REMOTE4];

// ---------------------------------------------------------------------
// HTTP with curl
