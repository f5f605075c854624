//! What a running passt or pasta can still reach, seen from outside in
//! /proc: its identity and capabilities, its namespaces, its root
//! directory, its descriptors; and that it still works once isolated (the
//! QEMU socket, the log file and `--fd` were opened before).
//!
//! Each process starts with an extra inherited descriptor (7, on a marker
//! file), as a careless launcher would leave it: it must be closed.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const NOBODY: u32 = 65534;

/// The capabilities pasta keeps: CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN
/// (12), CAP_SYS_ADMIN (21).
const PASTA_CAPS: u64 = (1 << 10) | (1 << 12) | (1 << 21);

/// One field of /proc/PID/status.
fn status(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in status of {pid}"))
        .trim()
        .to_string()
}

fn caps(pid: u32, set: &str) -> u64 {
    u64::from_str_radix(&status(pid, set), 16).expect("capability mask")
}

fn uid(pid: u32) -> u32 {
    status(pid, "Uid")
        .split_whitespace()
        .nth(1)
        .and_then(|u| u.parse().ok())
        .expect("effective uid")
}

fn ns(pid: &str, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap_or_else(|e| panic!("ns/{name} of {pid}: {e}"))
        .display()
        .to_string()
}

/// Its root directory is empty (or we may not even look).
fn root_is_empty(pid: u32) -> bool {
    match std::fs::read_dir(format!("/proc/{pid}/root")) {
        Ok(d) => d.count() == 0,
        Err(_) => true,
    }
}

/// Does it hold a descriptor on `path`?
fn holds(pid: u32, path: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|t| t == path)
}

/// The checks common to every mode: namespaces apart from ours (but the
/// network one, the given one), an empty root, the marker closed, the
/// capabilities (in a user namespace of its own, they reach nothing of
/// ours) within `allowed`.
fn check_isolated(pid: u32, netns: &str, marker: &Path, allowed: u64) {
    let p = pid.to_string();
    // Its mount namespace holds one mount: the empty tmpfs at its root
    // (`ip netns exec` alone would give it a namespace of its own, with
    // everything in it).
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let lines: Vec<&str> = mounts.lines().collect();
    assert_eq!(lines.len(), 1, "mounts left: {mounts}");
    assert!(
        lines[0].contains(" / / ro,") && lines[0].contains(" - tmpfs "),
        "root is not a read-only tmpfs: {mounts}"
    );
    for name in ["mnt", "ipc", "uts"] {
        assert_ne!(ns(&p, name), ns("self", name), "{name} namespace shared");
    }
    let net = std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap();
    let want = std::fs::metadata(netns).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        net.ino(),
        want.ino(),
        "not in the network namespace {netns}"
    );
    assert!(root_is_empty(pid), "root directory of {pid} not empty");
    assert!(!holds(pid, marker), "inherited descriptor still open");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let c = caps(pid, set);
        assert_eq!(c & !allowed, 0, "{set} {c:#x} beyond {allowed:#x}");
    }
    assert_eq!(caps(pid, "CapAmb"), 0);
    assert_eq!(caps(pid, "CapInh"), 0);
}

fn marker(tb: &Testbed) -> std::path::PathBuf {
    let m = tb.path("inherited-marker");
    std::fs::write(&m, "inherited\n").unwrap();
    m
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .expect("PID file")
        .trim()
        .parse()
        .expect("PID")
}

/// Sends an ARP request for the gateway over QEMU's stream framing and
/// waits for the reply.
fn arp_round_trip(s: &mut UnixStream) {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&GUEST_MAC);
    f[12..14].copy_from_slice(&[8, 6]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&GUEST_MAC);
    f[28..32].copy_from_slice(&HOST4.parse::<Ipv4Addr>().unwrap().octets());
    f[38..42].copy_from_slice(&REMOTE4.parse::<Ipv4Addr>().unwrap().octets());
    let mut rec = (f.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&f);
    s.write_all(&rec).expect("write to passt");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + T;
    let mut buf = Vec::new();
    while Instant::now() < end {
        let mut chunk = [0u8; 65536];
        match s.read(&mut chunk) {
            Ok(0) => panic!("passt closed the connection"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let fr: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
            if fr.len() >= 42 && fr[12..14] == [8, 6] && fr[20..22] == [0, 2] {
                assert_eq!(&fr[28..32], &REMOTE4.parse::<Ipv4Addr>().unwrap().octets());
                return;
            }
        }
    }
    panic!("no ARP reply from the isolated passt");
}

fn connect(path: &Path) -> UnixStream {
    common::connect_unix(path, T)
}

/// passt started as root, daemonized, with a socket path and a log file:
/// nobody, no capabilities at all, its own user (and mount, IPC, UTS, PID)
/// namespaces, an empty root; and it still serves frames and logs.
#[test]
fn passt_as_root_gives_up_everything_and_still_serves() {
    let tb = Testbed::new();
    let m = marker(&tb);
    let sock = tb.path("iso.socket");
    let pidf = tb.path("iso.pid");
    let log = tb.path("iso.log");
    let script = format!(
        "exec ip netns exec {} {} -d -s {} -P {} -l {} 7<{}",
        tb.host,
        passt(),
        sock.display(),
        pidf.display(),
        log.display(),
        m.display()
    );
    let o = run(Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null()));
    assert!(o.status.success(), "launcher: {o:?}");
    let pid = read_pid(&pidf);
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .output();
        }
    }
    let _k = Kill(pid);

    check_isolated(pid, &format!("/run/netns/{}", tb.host), &m, 0);
    assert_eq!(uid(pid), NOBODY);
    let p = pid.to_string();
    for name in ["user", "pid_for_children"] {
        assert_ne!(ns(&p, name), ns("self", name), "{name} namespace shared");
    }
    assert!(
        !status(pid, "NSpid").ends_with(&p),
        "not in a PID namespace"
    );

    let mut s = connect(&sock);
    arp_round_trip(&mut s);
    // The log file, opened before the filesystem went, still gets lines.
    wait_for("the connection in the log", T, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Guest socket buffers")
    });
    // PID 1 of its namespace, it still ends on SIGTERM.
    must(Command::new("kill").args(["-TERM", &p]));
    wait_for("passt to exit on SIGTERM", T, || !alive(pid));
}

/// passt in the foreground on `--fd 3`: the given descriptor survives the
/// closing of inherited ones, the others do not.
#[test]
fn passt_fd_3_kept_other_inherited_closed() {
    use std::os::fd::AsRawFd;
    let tb = Testbed::new();
    let m = marker(&tb);
    let (ours, theirs) = UnixStream::pair().unwrap();
    // The launcher's shell (bash: the number is 10 or above) inherits it.
    let theirs = inheritable_fd(theirs);
    let script = format!(
        "exec ip netns exec {} {} -f -q --fd 3 3<&{} 7<{} {}<&-",
        tb.host,
        passt(),
        theirs.as_raw_fd(),
        m.display(),
        theirs.as_raw_fd()
    );
    let child = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    drop(theirs);
    let g = Guard(child);
    let pid = g.0.id();
    let mut s = ours;
    arp_round_trip(&mut s);
    check_isolated(pid, &format!("/run/netns/{}", tb.host), &m, 0);
    assert_eq!(uid(pid), NOBODY);
    assert_ne!(ns(&pid.to_string(), "user"), ns("self", "user"));
}

/// A namespace made with `ip netns add`, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// pasta as root attached to a namespace of the initial user namespace:
/// nobody, with the three capabilities it documents, detached from the
/// filesystem.
#[test]
fn pasta_attach_as_root_keeps_only_documented_caps() {
    let tb = Testbed::new();
    let m = marker(&tb);
    let target = Netns(format!("{}-iso", tb.host));
    must(Command::new("ip").args(["netns", "add", &target.0]));
    let pidf = tb.path("pasta.pid");
    let script = format!(
        "exec ip netns exec {} {} --config-net -q --netns {} -P {} 7<{}",
        tb.host,
        pasta(),
        target.0,
        pidf.display(),
        m.display()
    );
    let o = run(Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null()));
    assert!(o.status.success(), "launcher: {o:?}");
    let pid = read_pid(&pidf);
    check_isolated(pid, &format!("/run/netns/{}", tb.host), &m, PASTA_CAPS);
    assert_eq!(uid(pid), NOBODY);
    // It still works: the namespace got its interface configured.
    let o = must(Command::new("ip").args(["-n", &target.0, "-j", "addr"]));
    assert!(o.contains(HOST4), "namespace not configured: {o}");
    drop(target);
    wait_for("pasta to quit with its namespace", T, || !alive(pid));
}

/// pasta spawn mode, as root and as nobody: its capabilities live in the
/// user namespace it created (none in ours), it is detached from the
/// filesystem, and the command runs.
fn pasta_spawn(tb: &Testbed, prefix: &str, prog: &str, want_uid: Option<u32>) {
    let m = marker(tb);
    let script = format!(
        "exec ip netns exec {} {prefix} {prog} --config-net -- sh -c 'echo ready; exec sleep 30' 7<{}",
        tb.host,
        m.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut g = Guard(child);
    let pid = g.0.id();
    let mut out = BufReader::new(g.0.stdout.take().unwrap());
    let mut line = String::new();
    // The command starts once pasta has isolated itself.
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // CAP_KILL too, over the namespace's processes: the command's
    // parent-death signal needs it.
    check_isolated(
        pid,
        &format!("/run/netns/{}", tb.host),
        &m,
        PASTA_CAPS | (1 << 5),
    );
    assert_ne!(
        ns(&pid.to_string(), "user"),
        ns("self", "user"),
        "capabilities in the initial user namespace"
    );
    if let Some(u) = want_uid {
        assert_eq!(uid(pid), u);
    }
}

#[test]
fn pasta_spawn_as_root_is_isolated() {
    let tb = Testbed::new();
    // Root of the namespace it spawned is the system's root: pasta itself
    // becomes nobody.
    pasta_spawn(&tb, "", pasta(), Some(NOBODY));
}

#[test]
fn pasta_spawn_as_nobody_is_isolated() {
    let tb = Testbed::new();
    let prog = tb.pasta_for_anyone();
    pasta_spawn(
        &tb,
        "setpriv --reuid=65534 --regid=65534 --clear-groups",
        &prog,
        Some(NOBODY),
    );
}
