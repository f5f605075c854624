//! The test bed shared by the integration tests: real network namespaces,
//! real tools, no mocks.
//!
//! A [`Testbed`] is two namespaces joined by a veth pair:
//!
//! ```text
//!   "remote" ns                       "host" ns  (pasta runs here)
//!   eth0 192.0.2.1/24  <── veth ──>   eth0 192.0.2.2/24, 2001:db8::2/64
//!        2001:db8::1/64                     default via 192.0.2.1 / 2001:db8::1
//!   lo   198.51.100.1/32, 2001:db8:1::1/128 ("beyond the host")
//! ```
//!
//! The host namespace gets its own `/etc/netns/NAME/resolv.conf`, which
//! `ip netns exec` mounts over `/etc/resolv.conf`. Names are unique per
//! process and test, so tests run in parallel; everything is removed on
//! drop, also when a test fails.

#![allow(dead_code)]

pub mod stream;
pub mod tcp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const REMOTE4: &str = "192.0.2.1";
pub const HOST4: &str = "192.0.2.2";
pub const BEYOND4: &str = "198.51.100.1";
pub const REMOTE6: &str = "2001:db8::1";
pub const HOST6: &str = "2001:db8::2";
pub const BEYOND6: &str = "2001:db8:1::1";
pub const HOST_MTU: u32 = 1500;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Path of our pasta binary.
pub fn pasta() -> &'static str {
    env!("CARGO_BIN_EXE_pasta")
}

/// Path of our passt binary.
pub fn passt() -> &'static str {
    env!("CARGO_BIN_EXE_passt")
}

/// Fails the test unless we run as root: these tests need namespaces.
pub fn require_root() {
    assert!(
        rustix_euid() == 0,
        "integration tests need root (network namespaces); run them through the README's test command"
    );
}

fn rustix_euid() -> u32 {
    // Read from /proc to avoid a dependency in tests.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|s| s.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Runs a command, panicking with its output if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns stdout.
pub fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(args: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(args);
    c
}

/// Connects to the UNIX socket at `path`, retrying until `timeout`
/// (the daemon may not have bound it yet).
pub fn connect_unix(path: &std::path::Path, timeout: Duration) -> std::os::unix::net::UnixStream {
    let end = std::time::Instant::now() + timeout;
    loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if std::time::Instant::now() > end => panic!("connect {}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Open descriptors of process `pid`.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// CPU time (user + system) of process `pid`, in seconds.
pub fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after
    // the command name; the clock ticks 100 times a second on Linux.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits for `cond` with a deadline; panics with `what` on timeout.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// A process killed on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Options for building a test bed.
#[derive(Clone, Copy)]
pub struct Setup {
    pub v4: bool,
    pub v6: bool,
    /// Install default routes in the host namespace.
    pub default_route: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            v4: true,
            v6: true,
            default_route: true,
        }
    }
}

pub struct Testbed {
    pub host: String,
    pub remote: String,
    etc_dir: PathBuf,
    pub tmp: PathBuf,
}

impl Testbed {
    pub fn new() -> Testbed {
        Self::with(Setup::default())
    }

    pub fn with(setup: Setup) -> Testbed {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}x{}", std::process::id(), n);
        let host = format!("prs-h-{id}");
        let remote = format!("prs-r-{id}");
        let tmp = std::env::temp_dir().join(format!("passt-rs-test-{id}"));
        let _ = std::fs::create_dir_all(&tmp);
        let tb = Testbed {
            etc_dir: PathBuf::from(format!("/etc/netns/{host}")),
            host,
            remote,
            tmp,
        };
        tb.build(setup, &id);
        tb
    }

    fn build(&self, setup: Setup, id: &str) {
        let (h, r) = (&self.host, &self.remote);
        must(Command::new("ip").args(["netns", "add", h]));
        must(Command::new("ip").args(["netns", "add", r]));
        let vh = format!("vh{id}");
        let vr = format!("vr{id}");
        // Interface names are at most 15 bytes.
        let vh = &vh[..vh.len().min(15)];
        let vr = &vr[..vr.len().min(15)];
        must(Command::new("ip").args(["link", "add", vh, "type", "veth", "peer", "name", vr]));
        must(Command::new("ip").args(["link", "set", vh, "netns", h]));
        must(Command::new("ip").args(["link", "set", vr, "netns", r]));
        let mut script = format!(
            "set -e
            ip -n {h} link set {vh} name eth0
            ip -n {r} link set {vr} name eth0
            ip -n {h} link set lo up
            ip -n {r} link set lo up
            ip -n {h} link set eth0 mtu {HOST_MTU} up
            ip -n {r} link set eth0 mtu {HOST_MTU} up
            ip netns exec {h} sysctl -qw net.ipv4.ping_group_range='0 2147483647'
            ip netns exec {r} sysctl -qw net.ipv4.ping_group_range='0 2147483647'
            "
        );
        if setup.v4 {
            script += &format!(
                "ip -n {h} addr add {HOST4}/24 dev eth0
                ip -n {r} addr add {REMOTE4}/24 dev eth0
                ip -n {r} addr add {BEYOND4}/32 dev lo
                "
            );
            if setup.default_route {
                script += &format!("ip -n {h} route add default via {REMOTE4}\n");
            }
        }
        if setup.v6 {
            script += &format!(
                "ip -n {h} addr add {HOST6}/64 dev eth0 nodad
                ip -n {r} addr add {REMOTE6}/64 dev eth0 nodad
                ip -n {r} addr add {BEYOND6}/128 dev lo
                ip netns exec {r} sysctl -qw net.ipv6.conf.all.forwarding=0
                "
            );
            if setup.default_route {
                script += &format!("ip -n {h} -6 route add default via {REMOTE6}\n");
                script += &format!("ip -n {r} -6 route add default via {HOST6}\n");
            }
        } else {
            script += &format!(
                "ip netns exec {h} sysctl -qw net.ipv6.conf.all.disable_ipv6=1
                "
            );
        }
        must(&mut sh(&script));
        std::fs::create_dir_all(&self.etc_dir).expect("create /etc/netns dir");
        std::fs::write(
            self.etc_dir.join("resolv.conf"),
            format!(
                "nameserver {REMOTE4}\nnameserver {REMOTE6}\nsearch example.org test.internal\n"
            ),
        )
        .expect("write resolv.conf");
    }

    /// A command run in the host namespace.
    pub fn in_host(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host, prog]);
        c
    }

    /// A command run in the remote namespace.
    pub fn in_remote(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.remote, prog]);
        c
    }

    /// `pasta ARGS...` run in the host namespace.
    pub fn pasta(&self, args: &[&str]) -> Command {
        let mut c = self.in_host(pasta());
        c.args(args);
        c
    }

    /// Runs pasta (spawn mode) with `args`, bounded by `timeout`, and
    /// returns its output.
    pub fn pasta_output(&self, args: &[&str], timeout: Duration) -> Output {
        let mut c = self.in_host("timeout");
        c.arg(format!("{}", timeout.as_secs().max(1)))
            .arg(pasta())
            .args(args)
            .stdin(Stdio::null());
        run(&mut c)
    }

    /// A copy of our pasta that an unprivileged user can run whatever the
    /// permissions of the checkout's directories (CI may clone under a
    /// private home).
    pub fn pasta_for_anyone(&self) -> String {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.tmp.join("bin");
        std::fs::create_dir_all(&dir).expect("bin dir");
        let _ = std::fs::set_permissions(&self.tmp, std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        let dst = dir.join("pasta");
        std::fs::copy(pasta(), &dst).expect("copy pasta");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dst.display().to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Kill whatever still runs in the namespaces, then remove them.
        for ns in [&self.host, &self.remote] {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("ip netns pids {ns} | xargs -r kill -9"))
                .output();
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.etc_dir);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Parses `ip -j` output.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON ({e}): {s}"))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Counter `name` from the `TAG counters: name=value ...` line pasta logs
/// at exit with `-d` (`TCP`, `tap`): the stable one-line format of the
/// stats structs' `Display`, not their `Debug` output.
pub fn counter(log: &str, tag: &str, name: &str) -> u64 {
    let head = format!("{tag} counters: ");
    let line = log
        .lines()
        .find_map(|l| l.find(&head).map(|i| &l[i + head.len()..]))
        .unwrap_or_else(|| panic!("no '{head}' line in pasta's output: {log}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in: {line}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name} in '{line}': {e}"))
}

/// A TCP counter (`spliced_*` for the splice path's) from pasta's exit log.
pub fn tcp_counter(log: &str, name: &str) -> u64 {
    counter(log, "TCP", name)
}

/// Whether process `pid` (a number, or its text from a PID file) runs:
/// exists and is not a zombie.
pub fn alive(pid: impl std::fmt::Display) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may
        // itself hold ") ".
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A `NAME=value` file (a DHCP client hook's `env` dump); empty if absent.
pub fn env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Bound of [`in_pasta`] runs.
const IN_PASTA_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `script` in a new namespace through `pasta --config-net` with
/// `args`; returns stdout, asserting success.
pub fn in_pasta(tb: &Testbed, args: &[&str], script: &str) -> String {
    in_pasta_env(tb, args, script, &[])
}

/// [`in_pasta`] with extra environment variables for pasta.
pub fn in_pasta_env(tb: &Testbed, args: &[&str], script: &str, env: &[(&str, &str)]) -> String {
    let mut c = tb.in_host("timeout");
    c.arg(IN_PASTA_TIMEOUT.as_secs().to_string())
        .arg(pasta())
        .arg("--config-net")
        .args(args)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = run(&mut c);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "pasta {args:?} -- {script} failed ({}):\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A copy of `fd` that a launched shell inherits, numbered 10 or above.
/// A launcher script that moves a descriptor into place (`3<&N N<&-`)
/// must not get N = 3 or the number of another redirection: with other
/// test threads opening and closing descriptors, the socket's own number
/// is anything from 3 up. Launch such scripts with bash: dash reads
/// only single-digit descriptors in redirections.
pub fn inheritable_fd(fd: impl std::os::fd::AsFd) -> std::os::fd::OwnedFd {
    let high = rustix::io::fcntl_dupfd_cloexec(fd, 10).expect("F_DUPFD_CLOEXEC");
    rustix::io::fcntl_setfd(&high, rustix::io::FdFlags::empty()).expect("F_SETFD");
    high
}
