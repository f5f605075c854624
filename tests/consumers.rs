//! The exact command lines of pasta's consumers, end to end: Podman's
//! (attach to an `ip netns add` namespace by path, daemonize, PID file) and
//! RootlessKit's (attach to a process, fixed addresses on `tap0`).

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn has_addr(iface: &Value, addr: &str, len: u64) -> bool {
    iface["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["local"] == addr && a["prefixlen"] == len)
}

fn default_via(routes: &Value) -> Option<&str> {
    routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "default")
        .and_then(|r| r["gateway"].as_str())
}

/// A namespace made with `ip netns add`, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn podman_command_line() {
    let tb = Testbed::new();
    let ns = Netns(format!("{}-pod", tb.host));
    must(Command::new("ip").args(["netns", "add", &ns.0]));
    let pid_file = tb.path("pasta.pid");
    let pid_s = pid_file.display().to_string();
    let ns_path = format!("/run/netns/{}", ns.0);
    let o = run(tb
        .pasta(&[
            "--config-net",
            "--dns-forward",
            "169.254.1.1",
            "-t",
            "none",
            "-u",
            "none",
            "-T",
            "none",
            "-U",
            "none",
            "--no-map-gw",
            "--quiet",
            "--map-guest-addr",
            "169.254.1.2",
            "--pid",
            &pid_s,
            "--netns",
            &ns_path,
        ])
        .stdin(Stdio::null()));
    assert!(o.status.success(), "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    let pid = std::fs::read_to_string(&pid_file).expect("PID file");
    let pid = pid.trim().to_string();
    assert!(pid.parse::<u32>().is_ok(), "{pid:?}");
    assert!(alive(&pid), "the PID file names a live process");

    let addrs = json(&must(
        Command::new("ip").args(["-n", &ns.0, "-j", "addr", "show", "eth0"]),
    ));
    let eth0 = &addrs[0];
    assert_eq!(eth0["mtu"], 65520, "{eth0}");
    assert!(has_addr(eth0, HOST4, 24), "{eth0}");
    assert!(has_addr(eth0, HOST6, 64), "{eth0}");
    let routes4 = json(&must(
        Command::new("ip").args(["-n", &ns.0, "-j", "-4", "route", "show"]),
    ));
    assert_eq!(default_via(&routes4), Some(REMOTE4), "{routes4}");

    must(Command::new("ip").args(["netns", "del", &ns.0]));
    wait_for("pasta to exit", Duration::from_secs(5), || !alive(&pid));
}

#[test]
fn rootlesskit_command_line() {
    let tb = Testbed::new();
    let mut holder = Guard(
        Command::new("ip")
            .args([
                "netns", "exec", &tb.host, "unshare", "--net", "--", "sleep", "60",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare"),
    );
    let target = holder.0.id().to_string();
    wait_for("the namespace holder", Duration::from_secs(5), || {
        let link = std::fs::read_link(format!("/proc/{target}/ns/net")).ok();
        let host = std::fs::read_link(format!("/run/netns/{}", tb.host)).ok();
        let exe = std::fs::read_link(format!("/proc/{target}/exe")).ok();
        link.is_some() && link != host && exe.is_some_and(|e| e.ends_with("sleep"))
    });
    let o = run(tb
        .pasta(&[
            "--stderr",
            "--ns-ifname=tap0",
            "--mtu=65520",
            "--config-net",
            "--address=10.0.2.100",
            "--netmask=24",
            "--gateway=10.0.2.2",
            "--dns-forward=10.0.2.3",
            "--no-map-gw",
            "--ipv4-only",
            "--tcp-ports=none",
            "--udp-ports=none",
            "--host-lo-to-ns-lo",
            &target,
        ])
        .stdin(Stdio::null()));
    assert!(o.status.success(), "{o:?}");

    let in_target = |args: &[&str]| {
        let mut c = Command::new("nsenter");
        c.args(["-t", &target, "-n", "ip", "-j"]).args(args);
        json(&must(&mut c))
    };
    let addrs = in_target(&["addr", "show", "tap0"]);
    let tap0 = &addrs[0];
    assert_eq!(tap0["mtu"], 65520, "{tap0}");
    assert!(has_addr(tap0, "10.0.2.100", 24), "{tap0}");
    assert!(!has_addr(tap0, HOST4, 24), "{tap0}");
    // --ipv4-only: no global IPv6 address.
    assert!(
        tap0["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["family"] != "inet6" || a["scope"] == "link"),
        "{tap0}"
    );
    let routes4 = in_target(&["-4", "route", "show"]);
    assert_eq!(default_via(&routes4), Some("10.0.2.2"), "{routes4}");

    // The daemon goes with the process holding the namespace.
    let daemon = must(Command::new("pgrep").args(["-f", &format!("host-lo-to-ns-lo {target}$")]));
    let daemon = daemon.trim().to_string();
    assert!(!daemon.is_empty() && alive(&daemon));
    let _ = holder.0.kill();
    let _ = holder.0.wait();
    wait_for("pasta to exit", Duration::from_secs(5), || !alive(&daemon));
}
