//! A small neper-like TCP request/response benchmark (there is no neper in
//! Debian). Standard library only, one thread per connection.
//!
//! ```text
//! tcp_rr server --port P [--bind ADDR] [--seconds S]
//! tcp_rr client --host H --port P --mode rr|crr [--size N] [--seconds S] [--conns N]
//! ```
//!
//! The server echoes whatever it reads until the peer closes. The client
//! runs `--conns` workers until `--seconds` have passed:
//!
//! * `rr`: one persistent connection per worker; a transaction writes
//!   `--size` bytes and reads `--size` bytes back.
//! * `crr`: a transaction connects, writes, reads the echo and closes.
//!
//! Errors (refused, reset, timeouts) are counted, never fatal; a worker
//! backs off briefly after one so that a dead path does not spin. The client
//! prints one machine-readable line and exits 0 if at least one transaction
//! completed, 1 otherwise:
//!
//! ```text
//! mode=rr conns=1 size=1 seconds=3.000 transactions=47000 errors=0 transactions_per_sec=15666 latency_us=63.8
//! ```

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Connect, read and write timeout of one operation: bounds every call.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after an error before the worker tries again.
const BACKOFF: Duration = Duration::from_millis(50);
/// Largest request accepted on the command line.
const MAX_SIZE: usize = 1 << 20;

const USAGE: &str = "usage:
  tcp_rr server --port P [--bind ADDR] [--seconds S]
  tcp_rr client --host H --port P --mode rr|crr [--size N] [--seconds S] [--conns N]";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Rr,
    Crr,
}

#[derive(Debug)]
struct Args {
    server: bool,
    host: Option<String>,
    bind: Option<IpAddr>,
    port: Option<u16>,
    mode: Mode,
    size: usize,
    seconds: Option<f64>,
    conns: usize,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let (role, rest) = argv.split_first().ok_or("missing role: server or client")?;
    let server = match role.as_str() {
        "server" => true,
        "client" => false,
        r => return Err(format!("unknown role {r:?}")),
    };
    let mut a = Args {
        server,
        host: None,
        bind: None,
        port: None,
        mode: Mode::Rr,
        size: 1,
        seconds: None,
        conns: 1,
    };
    let mut it = rest.iter();
    while let Some(opt) = it.next() {
        let val = it
            .next()
            .ok_or_else(|| format!("{opt} needs a value"))?
            .as_str();
        let bad = |e: &dyn std::fmt::Display| format!("{opt} {val}: {e}");
        match opt.as_str() {
            "--host" | "-H" => a.host = Some(val.to_string()),
            "--bind" => a.bind = Some(val.parse().map_err(|e| bad(&e))?),
            "--port" | "-p" => a.port = Some(val.parse().map_err(|e| bad(&e))?),
            "--mode" | "-m" => {
                a.mode = match val {
                    "rr" => Mode::Rr,
                    "crr" => Mode::Crr,
                    _ => return Err(bad(&"expected rr or crr")),
                }
            }
            "--size" | "-s" => a.size = val.parse().map_err(|e| bad(&e))?,
            "--seconds" | "-l" => a.seconds = Some(val.parse().map_err(|e| bad(&e))?),
            "--conns" | "-c" => a.conns = val.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {opt}")),
        }
    }
    if a.port.is_none() {
        return Err("--port is required".into());
    }
    if !server && a.host.is_none() {
        return Err("--host is required".into());
    }
    if a.size == 0 || a.size > MAX_SIZE {
        return Err(format!("--size must be 1..={MAX_SIZE}"));
    }
    if a.conns == 0 || a.conns > 1024 {
        return Err("--conns must be 1..=1024".into());
    }
    if let Some(s) = a.seconds {
        if !(s > 0.0 && s <= 86_400.0) {
            return Err("--seconds must be in (0, 86400]".into());
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tcp_rr: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = if args.server {
        server(&args)
    } else {
        client(&args)
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tcp_rr: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Echo server: a thread per connection, until killed or `--seconds`.
fn server(a: &Args) -> io::Result<ExitCode> {
    let port = a.port.unwrap_or_default();
    let listener = match a.bind {
        Some(ip) => TcpListener::bind((ip, port))?,
        // Dual-stack where IPv6 exists, IPv4 only otherwise.
        None => {
            TcpListener::bind(("::", port)).or_else(|_| TcpListener::bind(("0.0.0.0", port)))?
        }
    };
    if let Some(s) = a.seconds {
        thread::spawn(move || {
            thread::sleep(Duration::from_secs_f64(s));
            std::process::exit(0);
        });
    }
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                // Thread creation can fail under pressure: drop the
                // connection (the client counts it), go on. A broken
                // connection only ends its own thread.
                let _ = thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || echo(s));
            }
            // EMFILE and friends: do not spin.
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn echo(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    errors: AtomicU64,
}

fn client(a: &Args) -> io::Result<ExitCode> {
    let host = a.host.as_deref().unwrap_or_default();
    let port = a.port.unwrap_or_default();
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{host}: no address")))?;
    let seconds = a.seconds.unwrap_or(3.0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let counters = Arc::new(Counters::default());

    let workers: Vec<_> = (0..a.conns)
        .map(|_| {
            let counters = Arc::clone(&counters);
            let (mode, size) = (a.mode, a.size);
            thread::spawn(move || worker(addr, mode, size, deadline, &counters))
        })
        .collect();
    for w in workers {
        // A panicking worker is a bug, but still report what others did.
        if w.join().is_err() {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let t = counters.transactions.load(Ordering::Relaxed);
    let e = counters.errors.load(Ordering::Relaxed);
    let rate = t as f64 / elapsed;
    let latency_us = if t > 0 {
        elapsed * a.conns as f64 / t as f64 * 1e6
    } else {
        0.0
    };
    let mode = match a.mode {
        Mode::Rr => "rr",
        Mode::Crr => "crr",
    };
    println!(
        "mode={mode} conns={} size={} seconds={elapsed:.3} transactions={t} errors={e} \
         transactions_per_sec={rate:.0} latency_us={latency_us:.1}",
        a.conns, a.size
    );
    Ok(if t > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// One request and its complete echo.
fn transact(s: &mut TcpStream, req: &[u8], resp: &mut [u8]) -> io::Result<()> {
    s.write_all(req)?;
    s.read_exact(resp)
}

fn worker(addr: SocketAddr, mode: Mode, size: usize, deadline: Instant, c: &Counters) {
    let req = vec![b'x'; size];
    let mut resp = vec![0u8; size];
    let mut conn: Option<TcpStream> = None;
    while Instant::now() < deadline {
        let r = match mode {
            Mode::Rr => {
                let s = match conn.take() {
                    Some(s) => Ok(s),
                    None => connect(addr),
                };
                s.and_then(|mut s| {
                    transact(&mut s, &req, &mut resp)?;
                    conn = Some(s);
                    Ok(())
                })
            }
            Mode::Crr => connect(addr).and_then(|mut s| {
                transact(&mut s, &req, &mut resp)?;
                // Close right away, as neper's crr does.
                let _ = s.shutdown(Shutdown::Both);
                Ok(())
            }),
        };
        match r {
            Ok(()) => {
                c.transactions.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                let left = deadline.saturating_duration_since(Instant::now());
                thread::sleep(BACKOFF.min(left));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses() {
        let a = args("client --host 127.0.0.1 --port 9 --mode crr --size 4 --conns 2").unwrap();
        assert!(!a.server);
        assert_eq!((a.mode, a.size, a.conns), (Mode::Crr, 4, 2));
        assert!(args("client --port 9").is_err());
        assert!(args("server").is_err());
        assert!(args("server --port 9 --size 0").is_err());
        assert!(args("client --host h --port 9 --mode x").is_err());
    }

    #[test]
    fn loopback_rr_and_crr() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                thread::spawn(move || echo(s));
            }
        });
        for mode in [Mode::Rr, Mode::Crr] {
            let c = Counters::default();
            let deadline = Instant::now() + Duration::from_millis(200);
            worker(addr, mode, 3, deadline, &c);
            assert!(c.transactions.load(Ordering::Relaxed) > 0);
            assert_eq!(c.errors.load(Ordering::Relaxed), 0);
        }
    }
}
