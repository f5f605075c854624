//! TCP connection floods and exhaustion from pasta's namespace, with real
//! clients: a flood must not starve established connections, running out
//! of descriptors or of flow table entries must refuse new connections
//! (the client sees a refusal or a reset, never a hang) without a busy
//! loop, and pasta must recover by itself once the flood stops.
//!
//! The namespace side is `flood_driver.py`, which the test steps through
//! phases (it prints `PHASE name` and waits for a `go-name` file) so that
//! pasta's descriptors (`/proc/PID/fd`) and CPU time (`/proc/PID/stat`)
//! are read at known points. The servers (`flood_servers.py`) are a sink
//! that answers with the count and SHA-256 of what it got (transfers are
//! checked byte-exact at both ends) and a flood target that accepts and
//! closes at once.

mod common;

use common::tcp::*;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flood_driver.py");
const SERVERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flood_servers.py");

const SINK: u16 = 5001;
const FLOOD: u16 = 5002;
/// Nothing listens there: the remote's kernel refuses.
const CLOSED: u16 = 5003;
/// Servers on the host's loopback, reached from the namespace through
/// pasta's automatic `-T` forwarding (spliced).
const LO_SINK: u16 = 5011;
const LO_FLOOD: u16 = 5012;

/// The flood's pasta and its driver, stepped through the driver's phases.
struct Run<'a> {
    tb: &'a Tb,
    pasta: Option<Bg>,
    pid: u32,
    out: std::path::PathBuf,
}

struct Opts<'a> {
    target: &'a str,
    size: u64,
    procs: u32,
    attempts: u32,
    /// Connected sockets each flood process keeps open until released.
    hold: u32,
    /// A spliced port to probe while exhausted (0: none).
    splice_port: u16,
    env: &'a [(&'a str, &'a str)],
}

impl<'a> Run<'a> {
    fn start(tb: &'a Tb, o: &Opts<'_>) -> Run<'a> {
        let pid_file = tb.path("pasta.pid");
        let words = [
            python().to_string(),
            DRIVER.to_string(),
            o.target.to_string(),
            SINK.to_string(),
            FLOOD.to_string(),
            CLOSED.to_string(),
            o.size.to_string(),
            o.procs.to_string(),
            o.attempts.to_string(),
            o.hold.to_string(),
            o.splice_port.to_string(),
            tb.tmp.display().to_string(),
        ];
        let pid_s = pid_file.display().to_string();
        let mut cmd = pasta_sh_t(
            tb,
            240,
            &["-d", "--config-net", "-P", &pid_s],
            &shell(&words),
        );
        for (k, v) in o.env {
            cmd.env(k, v);
        }
        let pasta = Bg::spawn(tb, "pasta", cmd);
        wait_for("pasta's PID file", Duration::from_secs(20), || {
            std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.trim().is_empty())
        });
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Run {
            tb,
            pasta: Some(pasta),
            pid,
            out: tb.path("pasta.out"),
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for the driver to reach `name`.
    fn at(&self, name: &str) {
        let line = format!("PHASE {name}\n");
        let end = Instant::now() + Duration::from_secs(120);
        while !self.output().contains(&line) {
            if Instant::now() > end || !alive(self.pid) {
                let err = std::fs::read_to_string(self.tb.path("pasta.err")).unwrap_or_default();
                let tail = &err[err.len().saturating_sub(4000)..];
                panic!(
                    "driver never reached {name}\nstdout: {}\nstderr: {tail}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the driver go on from `name`.
    fn go(&self, name: &str) {
        std::fs::write(self.tb.path(&format!("go-{name}")), "").unwrap();
    }

    /// The driver's results, and pasta's stderr (its counters), once it
    /// is done.
    fn finish(mut self) -> (serde_json::Value, String) {
        let (st, out, err) = self.pasta.take().unwrap().wait(Duration::from_secs(120));
        let tail = &err[err.len().saturating_sub(4000)..];
        assert!(st.success(), "pasta: {st}\nstdout: {out}\nstderr: {tail}");
        let res = out
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no result: {out}\n{tail}"));
        (json(res), err)
    }

    /// Waits until pasta's descriptors are back within `margin` of
    /// `base`; returns how long that took.
    fn drained(&self, base: usize, margin: usize, deadline: Duration) -> Duration {
        let t = Instant::now();
        wait_for(
            &format!(
                "pasta's descriptors back near {base} (now {})",
                fds(self.pid)
            ),
            deadline,
            || fds(self.pid) <= base + margin,
        );
        t.elapsed()
    }
}

/// The servers: in the remote namespace on [`BEYOND4`] (through the tap)
/// and on the host's loopback (spliced).
fn servers(tb: &Tb) -> (Bg, Bg) {
    let mut ready = Vec::new();
    let mut bgs = Vec::new();
    for (n, (remote, addr, sink, flood)) in [
        (true, BEYOND4, SINK, FLOOD),
        (false, "127.0.0.1", LO_SINK, LO_FLOOD),
    ]
    .into_iter()
    .enumerate()
    {
        let r = tb.path(&format!("servers{n}.ready"));
        let mut c = if remote {
            tb.in_remote("timeout")
        } else {
            tb.in_host("timeout")
        };
        c.env(TAG, tb.tag()).args([
            "300",
            python(),
            SERVERS,
            addr,
            &sink.to_string(),
            &flood.to_string(),
            &r.display().to_string(),
        ]);
        bgs.push(Bg::spawn(tb, &format!("servers{n}"), c));
        ready.push(r);
    }
    for r in &ready {
        wait_ready(r);
    }
    let lo = bgs.pop().unwrap();
    (bgs.pop().unwrap(), lo)
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// (a) From the namespace, 8 clients keep ~64 connection attempts each in
/// flight (half to a server, half to a closed port) while a byte-exact
/// transfer runs (4 s, or 2 GiB): the transfer stays byte-exact and keeps
/// moving (its rate is printed, see below), pasta's descriptors go back
/// to where they were, and a new connection works afterwards.
#[test]
fn flood_keeps_established_transfer_moving() {
    let tb = Tb::new();
    let _servers = servers(&tb);
    let run = Run::start(
        &tb,
        &Opts {
            target: BEYOND4,
            size: 1 << 31,
            procs: 8,
            // The flood goes on until the transfer is done.
            attempts: 2_000_000,
            hold: 0,
            splice_port: 0,
            env: &[],
        },
    );
    run.at("start");
    let base = fds(run.pid);
    run.go("start");
    run.at("flood");
    let flood_fds = fds(run.pid);
    let t0 = Instant::now();
    let c0 = cpu(run.pid);
    run.go("flood");
    run.at("flood_end");
    let flood_cpu = (cpu(run.pid) - c0) / t0.elapsed().as_secs_f64();
    // Flows whose handshake never finishes go after 10 s.
    let drain = run.drained(base, 8, Duration::from_secs(25));
    run.go("flood_end");
    let (res, err) = run.finish();
    let (alone, flooded) = (f(&res, "undisturbed"), f(&res, "disturbed"));
    eprintln!(
        "flood: {res}\nbase fds {base}, during flood {flood_fds}, drained in {drain:?}, \
         pasta CPU during the flood {:.0} %, ratio {:.2}",
        flood_cpu * 100.0,
        flooded / alone
    );
    let attempts = res["attempts"].as_u64().unwrap();
    assert!(attempts >= 10_000, "only {attempts} connection attempts");
    // On an idle 2-CPU machine the transfer keeps 0.33–0.49 of its rate
    // here: the flooders' own CPU time (Python, niced) and the kernel's
    // work for 10,000 handshakes a second come out of the same two CPUs
    // as the transfer's endpoints. It kept 0.03 while flows whose peer
    // had closed woke every epoll_wait (RDHUP, fixed in 2e1227a): a
    // tenth, with margin for a loaded test host, catches that again.
    assert!(
        flooded / alone >= 0.1,
        "the transfer fell to {:.2} of its rate under the flood",
        flooded / alone
    );
    assert!(f(&res, "after") > 0.0);
    let opened = tcp_counter(&err, "opened_from_tap");
    assert!(
        opened >= attempts / 4,
        "{opened} flows for {attempts} attempts"
    );
}

/// (b) pasta limited to 512 descriptors, and a flood that keeps its
/// connections open, well beyond that: new connections through the tap
/// are refused, a new spliced connection is reset (both at once, not
/// after a timeout), an established transfer keeps moving, pasta does not
/// spin while exhausted, and once the clients go it frees its descriptors
/// and takes new connections.
#[test]
fn descriptor_exhaustion_refuses_and_recovers() {
    let tb = Tb::new();
    let _servers = servers(&tb);
    let run = Run::start(
        &tb,
        &Opts {
            target: BEYOND4,
            size: 1 << 28,
            procs: 8,
            attempts: 8_000,
            hold: 150,
            splice_port: LO_SINK,
            env: &[],
        },
    );
    run.at("start");
    let base = fds(run.pid);
    must(Command::new("prlimit").args(["--pid", &run.pid.to_string(), "--nofile=512:512"]));
    run.go("start");
    run.at("flood");
    run.go("flood");
    run.at("exhausted");
    let at_limit = fds(run.pid);
    run.go("exhausted");
    run.at("quiet");
    // No busy loop: with the limit reached, and a connection waiting on
    // a listening socket it cannot accept, pasta sleeps.
    let c0 = cpu(run.pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let idle_cpu = (cpu(run.pid) - c0) / t0.elapsed().as_secs_f64();
    run.go("quiet");
    run.at("flood_end");
    let drain = run.drained(base, 8, Duration::from_secs(25));
    run.go("flood_end");
    let (res, err) = run.finish();
    eprintln!(
        "exhaustion: {res}\nbase fds {base}, at the limit {at_limit}, drained in {drain:?}, \
         pasta CPU while exhausted {:.0} %",
        idle_cpu * 100.0
    );
    assert!(at_limit >= 480, "never reached the limit: {at_limit}");
    // A spinning loop takes a whole core; on a loaded machine it gets
    // less, so the bound is loose.
    assert!(
        idle_cpu < 0.6,
        "pasta busy while exhausted: {:.0} % CPU",
        idle_cpu * 100.0
    );
    assert_eq!(res["probe_tap"], "refused", "{res}");
    let spliced = res["probe_splice"].as_str().unwrap();
    assert!(
        spliced == "reset" || spliced == "refused",
        "spliced connection while exhausted: {spliced}"
    );
    assert!(f(&res, "exhausted_transfer") > 0.0);
    assert!(f(&res, "after") > 0.0);
    assert!(tcp_counter(&err, "refused_no_fd") > 0, "{err}");
    few_timeouts(&res);
}

/// (c) The flow table full (a small one, through the test-only
/// `PASST_RS_TEST_FLOW_MAX`): new connections are refused at once, old
/// ones keep moving, the table drains once the clients go. Reports pasta's
/// resident memory with the table full.
#[test]
fn flow_table_full_refuses_and_recovers() {
    let tb = Tb::new();
    let _servers = servers(&tb);
    let run = Run::start(
        &tb,
        &Opts {
            target: BEYOND4,
            size: 1 << 28,
            procs: 4,
            attempts: 4_000,
            hold: 100,
            splice_port: 0,
            env: &[("PASST_RS_TEST_FLOW_MAX", "256")],
        },
    );
    run.at("start");
    let base = fds(run.pid);
    run.go("start");
    run.at("flood");
    run.go("flood");
    run.at("exhausted");
    let rss = rss_kib(run.pid);
    run.go("exhausted");
    run.at("quiet");
    run.go("quiet");
    run.at("flood_end");
    let drain = run.drained(base, 8, Duration::from_secs(25));
    run.go("flood_end");
    let (res, err) = run.finish();
    eprintln!("table full: {res}\nRSS with the table full {rss} KiB, drained in {drain:?}");
    assert_eq!(res["probe_tap"], "refused", "{res}");
    assert!(f(&res, "exhausted_transfer") > 0.0);
    assert!(f(&res, "after") > 0.0);
    assert!(tcp_counter(&err, "refused_table_full") > 0, "{err}");
    few_timeouts(&res);
}

/// Connection attempts that neither connected nor were refused within 3 s
/// are hangs: a few may come from the flood server's own backlog, not
/// from pasta.
fn few_timeouts(res: &serde_json::Value) {
    let attempts = res["attempts"].as_u64().unwrap();
    let timeouts = res["outcomes"]["timeout"].as_u64().unwrap();
    assert!(timeouts <= attempts / 100, "{timeouts} hangs: {res}");
}
