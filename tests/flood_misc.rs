//! Floods and forbidden frames from the guest (issue 11, part 4, all but
//! TCP connection floods, which are tests/flood.rs's).
//!
//! - Frames the guest must not get through (unspecified, broadcast and
//!   multicast destinations, spoofed sources) never reach a server on the
//!   host's loopback, and the drop counters say why.
//! - While the guest floods (UDP from tens of thousands of source ports,
//!   ICMP echo, ARP, NDP, DHCP, DHCPv6 requests, malformed frames), an
//!   established TCP transfer's rate is measured before, during and after
//!   the flood, back to back in the same run: it keeps at least half of
//!   its undisturbed rate during the flood and after it. The frames are
//!   counted, and the log stays short (drop lines are rate-limited).

mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
/// Frames per second of the floods that pasta turns into system calls on
/// the host (UDP datagrams to new flows, ICMP echo requests through ping
/// sockets): that is the guest's legitimate data path, a `sendto` per
/// datagram, which costs pasta more than the flooder's `send` costs the
/// guest, so at the guest's full rate pasta would fall behind, the
/// kernel's tap queue would overflow and the transfer's segments would
/// be lost there, before pasta reads them. At 20,000 frames a second (a
/// heavy user, 10 µs apart) what is measured is what pasta does with the
/// frames. Floods that cost pasta no more than a read (requests to the
/// built-in services, over their rate limit, and malformed frames) run
/// at the guest's full rate.
const SYSCALL_FLOOD_RATE: u32 = 20_000;
/// Frames of each of those floods, per try: 2.5 s at that rate.
const SYSCALL_FLOOD_FRAMES: u32 = 50_000;
/// Frames of each full-rate flood, per try.
const FULL_RATE_FRAMES: u32 = 1_000_000;
/// Serialises the floods of this file.
static FLOOD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flood_misc.py");

/// Runs `script` in pasta's namespace with debug logging to a file;
/// returns (stdout, log).
fn pasta_run(tb: &Testbed, extra: &[&str], script: &str) -> (String, String) {
    let log = tb.path("pasta.log");
    let log_s = log.display().to_string();
    let mut args = vec!["--config-net", "-d", "-l", &log_s, "--log-size", "8388608"];
    args.extend_from_slice(extra);
    args.extend(["--", "sh", "-c", script]);
    let o = tb.pasta_output(&args, T);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        o.status.success(),
        "{}:\n{out}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        &text[text.len().saturating_sub(4000)..]
    );
    (out, text)
}

/// Destinations 0.0.0.0, ::, broadcast (limited and subnet), multicast
/// and spoofed sources (another address of the subnet, another prefix,
/// 0.0.0.0 outside DHCP, :: outside NDP), all toward the mapped gateway
/// or pointing at the host: none reaches a UDP server on the host's
/// loopback, while a good datagram sent right after them does, and every
/// drop is counted under its reason.
#[test]
fn forbidden_frames_never_reach_the_host_loopback() {
    let tb = Testbed::new();
    let port = 47301u16;
    let got = tb.path("got");
    // A server on 127.0.0.1 and ::1 that records what it receives.
    let server = format!(
        "import socket,select,time
s4=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s4.bind(('127.0.0.1',{port}))
s6=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM); s6.bind(('::1',{port}))
open('{g}.ready','w').close()
end=time.time()+40
with open('{g}','a') as f:
    while time.time()<end:
        r,_,_=select.select([s4,s6],[],[],0.2)
        for s in r:
            f.write(s.recv(2000).decode()+'\\n'); f.flush()",
        g = got.display()
    );
    let mut srv = tb.in_host("python3");
    srv.args(["-c", &server]);
    let _srv = Guard(srv.spawn().expect("server"));
    wait_for("the loopback server", T, || exists(&tb.path("got.ready")));
    let g = got.display().to_string();
    let cmd = format!(
        "echo sent $(python3 {SCRIPT} forbidden {port} {REMOTE4} {HOST4} {REMOTE6} {HOST6}) || exit 3
        i=0; while ! grep -q ok {g} 2>/dev/null; do i=$((i+1)); [ $i -gt 250 ] && exit 4; sleep 0.02; done"
    );
    let (out, log) = pasta_run(&tb, &[], &cmd);
    assert!(out.contains("sent 10"), "{out}");
    let seen = std::fs::read_to_string(&got).unwrap_or_default();
    assert_eq!(
        seen.trim(),
        "ok",
        "frames the guest must not send reached the host's loopback"
    );
    let drop = |name| counter(&log, "drop", name);
    assert_eq!(drop("unspecified"), 2, "{log}");
    // Limited and subnet broadcast, IPv4 and IPv6 multicast.
    assert_eq!(drop("broadcast"), 4, "{log}");
    // Another address of the subnet, another prefix, 0.0.0.0 and :: as
    // sources outside DHCP and NDP.
    assert_eq!(drop("spoofed"), 4, "{log}");
}

/// The undisturbed and disturbed rates of a TCP transfer through pasta
/// while the guest sends `frames` frames of `kind` at `fps` frames a
/// second (0: as fast as it can), twice: (stdout, pasta's log).
fn measure(kind: &str, fps: u32, frames: u32) -> (String, String) {
    // One flood at a time: the test threads would otherwise run several
    // (two CPUs, niced flooders that each get a sliver of them), and a
    // million frames would take minutes instead of seconds.
    let _one = FLOOD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::new();
    let port = 47302u16;
    let mut sink = tb.in_remote("socat");
    sink.args([
        "-u",
        &format!("TCP-LISTEN:{port},reuseaddr,fork"),
        "OPEN:/dev/null",
    ]);
    let _sink = Guard(sink.spawn().expect("sink"));
    wait_for("the sink", T, || {
        let o = run(tb
            .in_remote("ss")
            .args(["-Htln", &format!("sport = :{port}")]));
        !o.stdout.is_empty()
    });
    // Two tries: the machine is shared, a noisy neighbour can spoil one
    // window. The tap's queue is longer than the default 1000 frames:
    // pasta is descheduled for tens of milliseconds at a time on the
    // shared test hosts, and a full-rate flood fills 1000 frames in a
    // few milliseconds.
    let cmd = format!(
        "ip link set eth0 txqueuelen 20000 || exit 2
        for i in 1 2; do python3 {SCRIPT} measure {kind} 2 {BEYOND4} {port} {REMOTE4} {HOST4} {REMOTE6} {HOST6} {fps} {frames} || exit 3; done"
    );
    pasta_run(&tb, &[], &cmd)
}

/// One `rates` line: bytes per second before, during and after the flood,
/// and the frames flooded.
type Try = (f64, f64, f64, u64);

/// Parses the `rates BEFORE DURING AFTER frames N` lines and asserts
/// that one try at least kept half of its undisturbed rate during the
/// flood and after it, and that each try flooded `frames` frames.
/// Returns the total frames flooded.
fn check_rates(kind: &str, out: &str, log: &str, frames: u32) -> u64 {
    let tries: Vec<Try> = out
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["rates", b, d, a, "frames", n] => Some((
                    b.parse().ok()?,
                    d.parse().ok()?,
                    a.parse().ok()?,
                    n.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect();
    assert_eq!(tries.len(), 2, "{out}");
    let best = |f: &dyn Fn(&Try) -> f64| tries.iter().map(f).fold(0.0, f64::max);
    let ratio_during = best(&|t| t.1 / t.0.max(1.0));
    let ratio_after = best(&|t| t.2 / t.0.max(1.0));
    eprintln!("{kind}: {tries:?}, best ratios: during {ratio_during:.2}, after {ratio_after:.2}");
    let tail = &log[log.len().saturating_sub(3000)..];
    assert!(
        ratio_after >= 0.5,
        "{kind} flood: the transfer did not recover ({ratio_after:.2}): {tries:?}\n{tail}"
    );
    assert!(
        ratio_during >= 0.5,
        "{kind} flood: the transfer fell to {ratio_during:.2} of its rate: {tries:?}\n{tail}"
    );
    for t in &tries {
        assert_eq!(
            t.3,
            u64::from(frames),
            "{kind}: the flooder ran out of time"
        );
    }
    let frames: u64 = tries.iter().map(|t| t.3).sum();
    // Rate-limited: at most six lines per second and reason (five, then
    // a summary), not one per frame. Log lines start with the seconds
    // since pasta started; a flood meets at most seven reasons.
    let lines = log.lines().filter(|l| l.contains("dropp")).count() as u64;
    let secs = log
        .lines()
        .filter_map(|l| l.split(':').next()?.trim().parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(
        lines as f64 <= 6.0 * 7.0 * (secs + 1.0) && lines < frames / 1000,
        "{lines} drop lines in {secs:.0} s for {frames} frames"
    );
    frames
}

/// UDP from tens of thousands of source ports (each a new flow, a socket
/// unless over the budget): the transfer keeps its rate, and the flows
/// that found no socket are counted.
#[test]
fn udp_port_flood() {
    let (out, log) = measure("udp_ports", SYSCALL_FLOOD_RATE, SYSCALL_FLOOD_FRAMES);
    check_rates("udp_ports", &out, &log, SYSCALL_FLOOD_FRAMES);
    let opened = counter(&log, "UDP", "flows_opened");
    assert!(opened > 1000, "{opened} UDP flows");
}

#[test]
fn icmp_echo_flood() {
    let (out, log) = measure("icmp_echo", SYSCALL_FLOOD_RATE, SYSCALL_FLOOD_FRAMES);
    check_rates("icmp_echo", &out, &log, SYSCALL_FLOOD_FRAMES);
}

/// A full-rate flood of requests to a built-in service: the first ones
/// of each second are answered (`replies`, a counter of the `frames`
/// line), the others dropped as `rate_limited`, and the transfer keeps
/// its rate.
fn service_flood(kind: &str, replies: &str) {
    let (out, log) = measure(kind, 0, FULL_RATE_FRAMES);
    let frames = check_rates(kind, &out, &log, FULL_RATE_FRAMES);
    let answered = counter(&log, "frames", replies);
    let limited = counter(&log, "drop", "rate_limited");
    assert!(answered >= 1000, "{kind}: {answered} answered\n{log}");
    // At most the budget of each second the floods lasted (a minute at
    // most, the bound of the whole run).
    assert!(answered <= 60_000, "{kind}: {answered} answered");
    // What a full tap queue lost on the way is neither.
    assert!(
        answered + limited <= frames && answered + limited > frames / 2,
        "{kind}: {answered} answered, {limited} rate-limited, of {frames}"
    );
}

#[test]
fn arp_flood() {
    service_flood("arp", "arp_replies");
}

#[test]
fn ndp_flood() {
    service_flood("ndp", "ndp_replies");
}

#[test]
fn dhcp_flood() {
    service_flood("dhcp", "dhcp_replies");
}

#[test]
fn dhcpv6_flood() {
    service_flood("dhcpv6", "dhcpv6_replies");
}

/// A million malformed frames at full rate: each reason is counted
/// exactly (every frame the flood sent is in a counter), the log stays
/// short.
#[test]
fn malformed_flood() {
    let (out, log) = measure("malformed", 0, FULL_RATE_FRAMES);
    let frames = check_rates("malformed", &out, &log, FULL_RATE_FRAMES);
    let drop = |name| counter(&log, "drop", name);
    let kinds = [
        "ipv4_options",
        "ipv4_bad_checksum",
        "unknown_ether_type",
        "ipv4_truncated",
        "ipv4_bad_version",
        "ipv6_truncated",
    ];
    for name in kinds {
        assert!(drop(name) > 1000, "{name}: {}", drop(name));
    }
    // The six kinds in turn: their counters add up to what was sent, but
    // for frames a full tap queue lost on the way.
    let total: u64 = kinds.iter().map(|k| drop(k)).sum();
    assert!(total <= frames && total > frames / 2, "{total} of {frames}");
}
