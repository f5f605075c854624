//! The real flow table full: 131071 flows (`FLOW_MAX`) from real clients
//! in pasta's namespace, not the small table of `PASST_RS_TEST_FLOW_MAX`
//! that `tests/flood.rs` fills. New flows are refused (the client sees a
//! refusal at once), a transfer opened before keeps going byte-exact,
//! pasta's resident memory stays bounded, and once the clients close the
//! table drains and new flows work.
//!
//! A TCP flow through the tap costs pasta one socket, so 131071 flows
//! need more descriptors than most hosts give a process: the test raises
//! the limit of pasta (and of the clients it starts, which inherit it) to
//! 400000 with `prlimit`. Where it cannot (no `CAP_SYS_RESOURCE`: on the
//! machines this was written on every process is held to 20000, soft and
//! hard, and root cannot raise it), the real table cannot be filled by
//! flows; the test then fills a table as large as the descriptor limit
//! allows (`PASST_RS_TEST_FLOW_MAX`, the hard limit less 1000), the same
//! code at a smaller count, and says so in its output.
//!
//! Everything else beyond the defaults is in the test's own namespaces:
//! the clients' namespace gets the whole local port range, the servers'
//! a larger listen backlog. Both ends are `flood_table.py`: servers that
//! accept, shut down their sending side and keep each socket (so nothing
//! is orphaned: the kernel's orphan limit is machine-wide and about the
//! table's size), and a driver that the test steps through phases, as in
//! `tests/flood.rs`.

mod common;

use common::tcp::*;
use common::*;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flood_table.py");
const SERVERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flood_servers.py");

/// `crate::flow::FLOW_MAX`.
const FLOW_MAX: u64 = 131071;
const SINK: u16 = 5001;
/// Ports of the holding servers: 16 of them, so that the four-tuples of
/// 131071 connections need 8192 source ports toward each.
const HOLD_BASE: u16 = 6000;
const HOLD_PORTS: u16 = 16;
/// Descriptors for pasta and its clients: the flows, and room.
const NOFILE: u64 = 400_000;
/// Descriptors left for pasta's own sockets (listeners, tap, epoll...)
/// and the transfers when the table is sized to the limit.
const FD_MARGIN: u64 = 1000;

/// Whether this process may raise a descriptor limit to `n`.
fn can_raise_nofile(n: u64) -> bool {
    std::process::Command::new("prlimit")
        .arg(format!("--nofile={n}:{n}"))
        .arg("true")
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// This process's hard descriptor limit.
fn nofile_hard() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap()
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// Waits for the driver to print `PHASE name`.
fn at(tb: &Tb, pid: u32, name: &str) {
    let line = format!("PHASE {name}\n");
    let out = tb.path("pasta.out");
    let end = Instant::now() + Duration::from_secs(150);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains(&line)
    {
        if Instant::now() > end || !alive(pid) {
            let err = std::fs::read_to_string(tb.path("pasta.err")).unwrap_or_default();
            let tail = &err[err.len().saturating_sub(4000)..];
            panic!(
                "driver never reached {name}\nstdout: {}\nstderr: {tail}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn go(tb: &Tb, name: &str) {
    std::fs::write(tb.path(&format!("go-{name}")), "").unwrap();
}

/// Fills the whole flow table with held connections, checks refusals, a
/// transfer and memory while full, and the drain.
#[test]
fn full_flow_table_refuses_and_recovers() {
    let tb = Tb::new();
    // The sink (count and SHA-256 of what it got) of the running
    // transfer; its accept-and-close port is unused here.
    let sink_ready = tb.path("sink.ready");
    let mut c = tb.in_remote("timeout");
    c.env(TAG, tb.tag()).args([
        "300",
        python(),
        SERVERS,
        BEYOND4,
        &SINK.to_string(),
        "5002",
        &sink_ready.display().to_string(),
    ]);
    let _sink = Bg::spawn(&tb, "sink", c);
    let hold_ready = tb.path("holders.ready");
    let mut c = tb.in_remote("timeout");
    c.env(TAG, tb.tag()).args([
        "300",
        python(),
        SCRIPT,
        "holders",
        BEYOND4,
        &HOLD_BASE.to_string(),
        &HOLD_PORTS.to_string(),
        &hold_ready.display().to_string(),
    ]);
    let _holders = Bg::spawn(&tb, "holders", c);
    wait_ready(&sink_ready);
    wait_ready(&hold_ready);

    // The real table where descriptors allow, else the largest that
    // they do.
    let (table, limit) = if can_raise_nofile(NOFILE) {
        (FLOW_MAX, NOFILE)
    } else {
        let hard = nofile_hard();
        (FLOW_MAX.min(hard - FD_MARGIN), hard)
    };
    let table_s = table.to_string();
    let mut env = Vec::new();
    if table < FLOW_MAX {
        eprintln!(
            "descriptors limited to {limit} (cannot raise to {NOFILE}): filling a \
             table of {table} flows, not {FLOW_MAX}"
        );
        env.push(("PASST_RS_TEST_FLOW_MAX", table_s.as_str()));
    }
    let pid_file = tb.path("pasta.pid");
    let words = [
        python().to_string(),
        SCRIPT.to_string(),
        "driver".to_string(),
        BEYOND4.to_string(),
        SINK.to_string(),
        HOLD_BASE.to_string(),
        HOLD_PORTS.to_string(),
        // Client processes: each holds a quarter of the table.
        "4".to_string(),
        (1u64 << 30).to_string(),
        table.to_string(),
        tb.tmp.display().to_string(),
    ];
    let pid_s = pid_file.display().to_string();
    let nofile = format!("--nofile={limit}:{limit}");
    let mut cmd = tb.in_host("prlimit");
    cmd.env(TAG, tb.tag())
        .args([&nofile, "timeout", "300", pasta()])
        .args(["-d", "--config-net", "-P", &pid_s])
        .args(["--", "sh", "-c", &shell(&words)]);
    cmd.envs(env.iter().copied());
    let pasta_bg = Bg::spawn(&tb, "pasta", cmd);
    let end = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.trim().is_empty()) {
        assert!(
            Instant::now() < end,
            "no PID file from pasta: {}",
            std::fs::read_to_string(tb.path("pasta.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    at(&tb, pid, "start");
    let base = fds(pid);
    let rss0 = rss_kib(pid);
    let t0 = Instant::now();
    go(&tb, "start");
    at(&tb, pid, "full");
    let fill = t0.elapsed();
    let full_fds = fds(pid);
    let rss = rss_kib(pid);
    go(&tb, "full");
    at(&tb, pid, "release");
    go(&tb, "release");
    let t1 = Instant::now();
    let c1 = cpu(pid);
    wait_for(
        &format!("pasta's descriptors back near {base}"),
        Duration::from_secs(60),
        || fds(pid) <= base + 8,
    );
    let drain = t1.elapsed();
    let drain_cpu = (cpu(pid) - c1) / drain.as_secs_f64();
    at(&tb, pid, "drained");
    go(&tb, "drained");
    let (st, out, err) = pasta_bg.wait(Duration::from_secs(120));
    let tail = &err[err.len().saturating_sub(4000)..];
    assert!(st.success(), "pasta: {st}\nstdout: {out}\nstderr: {tail}");
    let res = json(
        out.lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no result: {out}\n{tail}")),
    );
    let refused = tcp_counter(&err, "refused_table_full");
    eprintln!(
        "full table of {table}: {res}\nfilled in {fill:?}; pasta's descriptors {base} before, {full_fds} \
         with the table full, back in {drain:?} (pasta's CPU meanwhile {:.0} %); RSS {rss0} KiB before, {rss} KiB with the \
         table full; refused_table_full={refused}",
        drain_cpu * 100.0
    );
    for l in err.lines().filter(|l| l.contains("counters: ")) {
        eprintln!("{l}");
    }
    let held = res["held"].as_u64().unwrap();
    // The table holds the clients' connections and the transfer's; a
    // few slots may still be the flooders' last half-open attempts when
    // they stop.
    assert!(
        held + 1 >= table - 64 && held < table,
        "{held} connections held, the table has {table} slots"
    );
    assert!(
        full_fds as u64 >= held,
        "pasta holds {full_fds} descriptors for {held} flows"
    );
    // Every new flow while full refused at once.
    assert_eq!(res["probes"]["refused"], 20, "{res}");
    assert!(refused >= 64, "refused_table_full={refused}");
    let timeouts = res["outcomes"]["timeout"].as_u64().unwrap();
    assert!(timeouts <= 16, "{timeouts} connection attempts hung: {res}");
    // Bounded memory: the table and its index are reserved at start and
    // touched as used, each flow's state is a few hundred bytes (about
    // 260 measured, with the kernel's socket buffers not counted): 1 KiB
    // a flow and 64 MiB leave a large margin (192 MiB for 131071 flows).
    let bound = 64 * 1024 + table;
    assert!(
        rss < bound,
        "pasta's RSS {rss} KiB with {table} flows, more than {bound} KiB"
    );
    // The transfers opened before the flood went on while it filled the
    // table and while the table was full, byte-exact (the driver checks
    // count and hash at both ends).
    assert!(f(&res, "filling_transfer") > 0.0, "{res}");
    assert!(f(&res, "full_transfer") > 0.0, "{res}");
    assert!(f(&res, "after") > 0.0, "{res}");
    assert_eq!(res["after_conns"], 1000, "{res}");
    // Closed at the pace pasta acknowledges, the clients' FINs are not
    // lost on the way (a loaded machine may lose a few).
    let resent = res["retransmits_in_drain"].as_u64().unwrap();
    assert!(resent < held / 4, "{resent} FINs sent again: {res}");
}
