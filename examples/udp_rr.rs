//! A small UDP request/response benchmark. Standard library only.
//!
//! ```text
//! udp_rr server --port P [--bind ADDR] [--seconds S]
//! udp_rr client --host H --port P [--size N] [--seconds S]
//! ```
//!
//! The server echoes every datagram to its sender. The client sends one
//! datagram of `--size` bytes on a connected socket, waits for its echo
//! (a lost datagram is counted as an error after a 200 ms timeout and the
//! client sends again), until `--seconds` have passed, and prints:
//!
//! ```text
//! mode=udp_rr size=1 seconds=3.000 transactions=47000 errors=0 transactions_per_sec=15666 latency_us=63.8
//! ```
//!
//! It exits 0 if at least one transaction completed, 1 otherwise.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: udp_rr server --port P [--bind ADDR] [--seconds S]\n       \
                     udp_rr client --host H --port P [--size N] [--seconds S]";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(port) = arg(&args, "--port").and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let seconds: f64 = arg(&args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    match args.get(1).map(String::as_str) {
        Some("server") => {
            let bind = arg(&args, "--bind").unwrap_or_else(|| "0.0.0.0".into());
            let s = match UdpSocket::bind((bind.as_str(), port)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("bind: {e}");
                    return ExitCode::from(1);
                }
            };
            let end = Instant::now() + Duration::from_secs_f64(seconds.max(1.0) + 60.0);
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = vec![0u8; 65536];
            while Instant::now() < end {
                if let Ok((n, peer)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], peer);
                }
            }
            ExitCode::SUCCESS
        }
        Some("client") => {
            let Some(host) = arg(&args, "--host") else {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            };
            let size: usize = arg(&args, "--size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1)
                .clamp(1, 65000);
            let Some(addr): Option<SocketAddr> = (host.as_str(), port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
            else {
                eprintln!("bad address {host}");
                return ExitCode::from(2);
            };
            let any = if addr.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let s = match UdpSocket::bind(any).and_then(|s| s.connect(addr).map(|_| s)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("socket: {e}");
                    return ExitCode::from(1);
                }
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let req = vec![0x5au8; size];
            let mut buf = vec![0u8; 65536];
            let (mut done, mut errors) = (0u64, 0u64);
            let start = Instant::now();
            let limit = Duration::from_secs_f64(seconds);
            while start.elapsed() < limit {
                if s.send(&req).is_err() {
                    errors += 1;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                match s.recv(&mut buf) {
                    Ok(n) if n == size => done += 1,
                    _ => errors += 1,
                }
            }
            let secs = start.elapsed().as_secs_f64();
            let tps = done as f64 / secs;
            let lat = if done > 0 {
                secs * 1e6 / done as f64
            } else {
                0.0
            };
            println!(
                "mode=udp_rr size={size} seconds={secs:.3} transactions={done} errors={errors} \
                 transactions_per_sec={tps:.0} latency_us={lat:.1}"
            );
            if done > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
