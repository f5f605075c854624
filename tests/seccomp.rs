//! The seccomp allowlist is on in every mode, seen from outside in
//! /proc/PID/status (`Seccomp: 2`, filter mode), and the daemon still
//! serves with it: pasta (spawn mode, a TCP exchange through the tap), passt on the stream socket (ARP),
//! passt on vhost-user (the device set up, an ARP reply on the RX ring).
//! The whole test suite runs with the filter on too: any call outside a
//! list kills the daemon there.

mod common;
#[path = "common/vhost.rs"]
mod vu;

use common::stream::StreamGuest;
use common::*;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use vu::{NetHdr, Opts, VhostDriver};

const T: Duration = Duration::from_secs(20);
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// One field of /proc/PID/status, if the process is still there.
fn status(pid: u32, field: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// Waits until `pid` runs under a seccomp filter (mode 2) with at least
/// `filters` filters installed.
fn wait_filtered(pid: u32, filters: u32) {
    wait_for("the seccomp filter", T, || {
        status(pid, "Seccomp").as_deref() == Some("2")
    });
    let n: u32 = status(pid, "Seccomp_filters")
        .expect("Seccomp_filters")
        .parse()
        .unwrap();
    assert!(
        n >= filters,
        "{n} seccomp filters, expected {filters} or more"
    );
    assert_eq!(status(pid, "NoNewPrivs").as_deref(), Some("1"));
}

/// An ARP request for the gateway (`REMOTE4`) from the guest.
fn arp_request() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&GUEST_MAC);
    f[12..14].copy_from_slice(&[8, 6]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&GUEST_MAC);
    f[28..32].copy_from_slice(&HOST4.parse::<Ipv4Addr>().unwrap().octets());
    f[38..42].copy_from_slice(&REMOTE4.parse::<Ipv4Addr>().unwrap().octets());
    f
}

fn is_arp_reply(fr: &[u8]) -> bool {
    fr.len() >= 42
        && fr[12..14] == [8, 6]
        && fr[20..22] == [0, 2]
        && fr[28..32] == REMOTE4.parse::<Ipv4Addr>().unwrap().octets()
}

/// passt on the stream socket: filtered once the client is there, and it
/// answers ARP; a second client after the first one went is served too
/// (accept inside the loop).
#[test]
fn passt_stream_is_filtered_and_serves() {
    let tb = Testbed::new();
    let sock = tb.path("seccomp.socket");
    let log = tb.path("passt.log");
    let mut c = tb.in_host(passt());
    c.args(["-f", "-d", "-s"])
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut g = Guard(c.spawn().unwrap());
    let pid = g.0.id();
    wait_filtered(pid, 1);
    for _ in 0..2 {
        // A client that comes right after the previous one left may find
        // passt not done with that one yet: refused (closed at once), it
        // connects again.
        let end = Instant::now() + T;
        let mut got = false;
        while !got && Instant::now() < end {
            let mut g = StreamGuest::connect(&sock, T);
            if g.send(&arp_request()).is_ok() {
                while !got && Instant::now() < end {
                    match g.recv(Duration::from_millis(200)) {
                        Ok(Some(fr)) => got = is_arp_reply(&fr),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            }
            if !got {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        assert!(got, "no ARP reply from the filtered passt");
    }
    assert!(matches!(g.0.try_wait(), Ok(None)), "passt died");
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(
        l.contains("seccomp: PasstStream allowlist installed"),
        "{l}"
    );
}

/// A panic under the filter is loud, as upstream's abort(): its message
/// reaches the log first, then abort()'s first signal call
/// (`rt_sigprocmask`, in no list) kills passt with SIGSYS.
#[test]
fn a_panic_under_the_filter_is_logged_then_killed() {
    use std::os::unix::process::ExitStatusExt;
    let tb = Testbed::new();
    let sock = tb.path("panic.socket");
    let log = tb.path("passt.log");
    let mut c = tb.in_host(passt());
    c.args(["-f", "-d", "-s"])
        .arg(&sock)
        .env("PASST_RS_TEST_PANIC_FILTERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut g = Guard(c.spawn().unwrap());
    wait_for("passt to end", T, || matches!(g.0.try_wait(), Ok(Some(_))));
    let st = g.0.wait().unwrap();
    const SIGSYS: i32 = 31;
    assert_eq!(st.signal(), Some(SIGSYS), "{st:?}");
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(
        l.contains("panic under the seccomp filter (PASST_RS_TEST_PANIC_FILTERED)"),
        "{l}"
    );
}

/// passt on vhost-user: filtered, and it maps the guest's memory, takes the
/// rings and answers ARP after the filter is in.
#[test]
fn passt_vhost_user_is_filtered_and_serves() {
    let tb = Testbed::new();
    let sock = tb.path("vu.socket");
    let log = tb.path("passt.log");
    let mut c = tb.in_host(passt());
    c.args(["-f", "-d", "--vhost-user", "-s"])
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut g = Guard(c.spawn().unwrap());
    let pid = g.0.id();
    wait_filtered(pid, 1);
    // The whole set-up (memory table, rings, kick and call descriptors)
    // happens under the filter.
    let mut d = VhostDriver::connect(&sock, Opts::default());
    d.post_rx_buffers(0, 8, 4096);
    d.send(0, NetHdr::default(), &arp_request());
    let end = Instant::now() + T;
    let mut got = false;
    while !got && Instant::now() < end {
        match d.recv(0, end) {
            Some(fr) => got = is_arp_reply(&fr.frame),
            None => break,
        }
    }
    assert!(got, "no ARP reply from the filtered vhost-user passt");
    assert!(matches!(g.0.try_wait(), Ok(None)), "passt died");
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(
        l.contains("seccomp: PasstVhostUser allowlist installed"),
        "{l}"
    );
}

/// pasta, spawn mode: filtered (one filter, the allowlist: namespace
/// tasks are clones, not threads, so no `clone3` filter), and a TCP
/// exchange with the remote
/// namespace through the tap after the filter is in (the spliced path is
/// covered by tests/splice.rs, which runs filtered too).
#[test]
fn pasta_is_filtered_and_serves() {
    let tb = Testbed::new();
    let py = "python3";
    let echo = "import socket,sys\n\
        s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n\
        s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
        s.bind((sys.argv[1],int(sys.argv[2])));s.listen(4)\n\
        open(sys.argv[3],'w').close()\n\
        for _ in range(2):\n\
        \x20c,_=s.accept();d=c.recv(100);c.sendall(d);c.close()\n";
    let client = "import socket,sys\n\
        c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=10)\n\
        c.sendall(b'seccomp');print(c.recv(100).decode())\n";
    let ready_r = tb.path("remote.ready");
    let mut remote = tb.in_remote(py);
    remote.args(["-c", echo, BEYOND4, "5111"]).arg(&ready_r);
    let _r = Guard(remote.stdin(Stdio::null()).spawn().unwrap());
    wait_for("the echo server", T, || ready_r.exists());

    let gate = tb.path("gate");
    let script = format!(
        "echo up; while [ ! -e {g} ]; do sleep 0.05; done; \
         {py} -c \"$1\" {BEYOND4} 5111; exec sleep 30",
        g = gate.display()
    );
    let mut c = tb.in_host(pasta());
    c.args(["--config-net", "--", "sh", "-c", &script, "sh", client])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut g = Guard(c.spawn().unwrap());
    let pid = g.0.id();
    let mut out = BufReader::new(g.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "up");
    wait_filtered(pid, 1);
    std::fs::write(&gate, "").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "seccomp", "echo through the tap");
    assert!(matches!(g.0.try_wait(), Ok(None)), "pasta died");
    assert_eq!(status(pid, "Seccomp").as_deref(), Some("2"));
}
