//! Retransmission of part of a super-frame toward the guest (issue 12,
//! section 1): a guest that speaks TCP by hand on an AF_PACKET socket in
//! pasta's namespace (tests/tso_retransmit.py) connects to a server in
//! the remote namespace, which sends 256 KiB of a known pattern. pasta
//! sends them as super-frames (segmentation offload, segments of the
//! guest's MSS); the guest acknowledges a sequence number strictly inside
//! one of them, then duplicates that ACK: pasta must resend from exactly
//! that byte (not from the super-frame's start), with the pattern's bytes,
//! and in the end deliver the whole pattern. Every frame pasta writes must
//! have the length its IP header states.
//!
//! pasta runs without `--config-net`: the script brings the tap up with
//! no address and IPv6 off, so the namespace's kernel never answers (or
//! resets) the connection it does not know. Every step has a deadline.
//! pasta traces (`--trace`), so that the log shows which rewind resent
//! the bytes: the duplicate ACKs' fast retransmit.

mod common;

use common::tcp::*;
use common::*;
use std::time::Duration;

/// Bytes the server sends.
const SIZE: usize = 256 << 10;
const SEED: &str = "12";
const PORT: &str = "47312";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tso_retransmit.py");

/// A server on `addr`:[`PORT`] in the remote namespace that sends the
/// pattern, half-closes, and waits for the peer to close.
fn server(tb: &Tb, addr: &str) -> Bg {
    let ready = tb.path("server.ready");
    let code = format!(
        "import random,socket
s=socket.socket(socket.AF_INET6 if ':' in '{addr}' else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(('{addr}',{PORT})); s.listen(1)
open('{r}','w').close()
c,_=s.accept()
c.sendall(random.Random({SEED}).randbytes({SIZE}))
c.shutdown(socket.SHUT_WR)
while c.recv(65536): pass
print('sent',{SIZE})",
        r = ready.display()
    );
    let mut cmd = tb.in_remote("timeout");
    cmd.args([&T.to_string(), python(), "-c", &code]);
    let bg = Bg::spawn(tb, "server", cmd);
    wait_ready(&ready);
    bg
}

/// The whole exchange for one address family: `me` is the guest's
/// address (pasta's default, the host's), `dst` the server's.
fn partial_ack_inside_super_frame(family: &str, me: &str, dst: &str) {
    let tb = Tb::new();
    let srv = server(&tb, dst);
    let log = tb.path("pasta.log");
    let log_s = log.display().to_string();
    let script = format!(
        "sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 && ip link set eth0 up && \
         {py} {SCRIPT} {family} {me} {dst} {PORT} {SIZE} {SEED}",
        py = python()
    );
    let o = tb.pasta_output(
        &[
            "--trace",
            "-l",
            &log_s,
            "--log-size",
            "8388608",
            "--",
            "sh",
            "-c",
            &script,
        ],
        Duration::from_secs(T),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        o.status.success(),
        "{}:\n{out}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        &text[text.len().saturating_sub(4000)..]
    );
    let sent = srv.done(Duration::from_secs(T));
    assert_eq!(sent.trim(), format!("sent {SIZE}"));
    let r = line(&out, "retransmit");
    // The script checked the retransmitted bytes against the pattern.
    assert!(r[2].parse::<usize>().unwrap() > 0, "{out}");
    // And the duplicate ACKs, not the retransmission timer, rewound.
    assert!(
        text.contains(&format!("fast retransmit from {}", r[3])),
        "no fast retransmit from {}: {}",
        r[3],
        &text[text.len().saturating_sub(4000)..]
    );
    assert_eq!(line(&out, "recv")[1], SIZE.to_string(), "{out}");
    let max_frame: usize = line(&out, "max_frame")[1].parse().unwrap();
    assert!(max_frame > 1514, "no frame longer than the MTU: {out}");
    assert!(counter(&text, "tap", "tx_gso_frames") > 0, "{text}");
    assert!(tcp_counter(&text, "retransmits") > 0, "{text}");
    eprintln!(
        "IPv{family}: {} tx_gso_frames={} retransmits={}",
        out.replace('\n', "; "),
        counter(&text, "tap", "tx_gso_frames"),
        tcp_counter(&text, "retransmits")
    );
}

#[test]
fn partial_ack_inside_super_frame_ipv4() {
    partial_ack_inside_super_frame("4", HOST4, BEYOND4);
}

#[test]
fn partial_ack_inside_super_frame_ipv6() {
    partial_ack_inside_super_frame("6", HOST6, BEYOND6);
}
