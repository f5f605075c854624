//! pasta brings a network namespace online: `--config-net` copies the
//! host's addresses and routes, exit statuses come back, attach modes work,
//! unprivileged users can run it, and the daemon contract holds.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check_config_net_output(text: &str) {
    let mut parts = text.split("---\n");
    let addrs = json(parts.next().unwrap());
    let routes4 = json(parts.next().expect("routes4"));
    let routes6 = json(parts.next().expect("routes6"));
    let eth0 = addrs
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ifname"] == "eth0")
        .unwrap_or_else(|| panic!("no eth0 in {addrs}"));
    assert_eq!(eth0["mtu"], 65520, "MTU: {eth0}");
    assert!(eth0["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let infos = eth0["addr_info"].as_array().unwrap();
    assert!(
        infos
            .iter()
            .any(|a| a["local"] == HOST4 && a["prefixlen"] == 24),
        "IPv4 address: {eth0}"
    );
    assert!(
        infos
            .iter()
            .any(|a| a["local"] == HOST6 && a["prefixlen"] == 64),
        "IPv6 address: {eth0}"
    );
    let lo = addrs
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ifname"] == "lo")
        .expect("lo");
    assert!(lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert!(
        routes4
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == REMOTE4 && r["dev"] == "eth0"),
        "IPv4 default route: {routes4}"
    );
    assert!(
        routes6
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == REMOTE6 && r["dev"] == "eth0"),
        "IPv6 default route: {routes6}"
    );
}

const SHOW: &str = "ip -j addr show; echo ---; ip -j -4 route show; echo ---; ip -j -6 route show";

#[test]
fn config_net_copies_addresses_routes_and_sets_mtu() {
    let tb = Testbed::new();
    let o = tb.pasta_output(&["--config-net", "--", "sh", "-c", SHOW], T);
    assert!(
        o.status.success(),
        "pasta failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    check_config_net_output(&stdout_of(&o));
}

#[test]
fn exit_status_of_the_command_comes_back() {
    let tb = Testbed::new();
    let o = tb.pasta_output(&["--", "sh", "-c", "exit 7"], T);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    let o = tb.pasta_output(&["true"], T);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // Killed by a signal: 128 + signal number. The command is PID 1 of its
    // PID namespace, so the signal comes from outside.
    let child = tb
        .pasta(&["sleep", "31.25"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pasta");
    let mut child = Guard(child);
    let mut sleeper = String::new();
    wait_for("the command", Duration::from_secs(10), || {
        let o = run(Command::new("pgrep").args(["-f", "^sleep 31.25$"]));
        sleeper = String::from_utf8_lossy(&o.stdout).trim().to_string();
        !sleeper.is_empty()
    });
    must(Command::new("kill").args(["-KILL", &sleeper]));
    let mut status = None;
    wait_for("pasta to exit", Duration::from_secs(5), || {
        status = child.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(128 + 9));
    // A command that does not exist.
    let o = tb.pasta_output(&["/nonexistent/command"], T);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
}

#[test]
fn spawned_namespace_is_separate_and_named() {
    let tb = Testbed::new();
    let o = tb.pasta_output(&["--config-net", "sh", "-c", "hostname; echo $$; id -u"], T);
    assert!(o.status.success(), "{o:?}");
    let text = stdout_of(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("pasta-"), "hostname: {text}");
    assert_eq!(lines[1], "1", "the command is PID 1 of its PID namespace");
    assert_eq!(lines[2], "0", "the command is root in its user namespace");
}

#[test]
fn spawn_mode_works_unprivileged() {
    let tb = Testbed::new();
    // Distributions ship /dev/net/tun as 0666; this machine has 0600.
    must(Command::new("chmod").args(["0666", "/dev/net/tun"]));
    let unprivileged_pasta = tb.pasta_for_anyone();
    let mut c = tb.in_host("timeout");
    c.args(["30", "runuser", "-u", "nobody", "--", &unprivileged_pasta])
        .args(["--config-net", "--", "sh", "-c", SHOW])
        .stdin(Stdio::null());
    let o = run(&mut c);
    assert!(
        o.status.success(),
        "unprivileged pasta failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    check_config_net_output(&stdout_of(&o));
    let mut c = tb.in_host("timeout");
    c.args(["30", "runuser", "-u", "nobody", "--", &unprivileged_pasta])
        .args(["--", "sh", "-c", "exit 3"])
        .stdin(Stdio::null());
    assert_eq!(run(&mut c).status.code(), Some(3));
}

#[test]
fn attach_by_netns_name_daemonizes_writes_pid_and_quits_when_deleted() {
    let tb = Testbed::new();
    let target = format!("{}-t", tb.host);
    must(Command::new("ip").args(["netns", "add", &target]));
    let pid_file = tb.path("pasta.pid");
    // The launcher returns once the daemon is ready.
    let o = run(tb
        .pasta(&["--config-net", "--netns", &target, "--pid"])
        .arg(&pid_file)
        .stdin(Stdio::null()));
    assert!(o.status.success(), "{o:?}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("PID file")
        .trim()
        .parse()
        .expect("PID");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the PID file names a live process"
    );
    let addrs = json(&must(
        Command::new("ip").args(["-n", &target, "-j", "addr", "show", "eth0"]),
    ));
    assert_eq!(addrs[0]["mtu"], 65520);
    // Deleting the namespace ends pasta.
    must(Command::new("ip").args(["netns", "del", &target]));
    wait_for("pasta to exit", Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    });
}

#[test]
fn attach_by_pid_and_quit_when_the_process_is_gone() {
    let tb = Testbed::new();
    // A process in its own network namespace (inside the host namespace);
    // `unshare` execs `sleep` in place, so the child's PID is the target.
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
    let mut pasta = Guard(
        tb.pasta(&["--config-net", "-f", &target])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn pasta"),
    );
    let show = || {
        run(Command::new("nsenter").args(["-t", &target, "-n", "ip", "-j", "addr", "show", "eth0"]))
    };
    wait_for("the tap in the target", Duration::from_secs(10), || {
        let o = show();
        o.status.success() && json(&String::from_utf8_lossy(&o.stdout))[0]["mtu"] == 65520
    });
    // Ending the holder ends pasta, with status 0.
    let _ = holder.0.kill();
    let _ = holder.0.wait();
    let mut status = None;
    wait_for("pasta to exit", Duration::from_secs(5), || {
        status = pasta.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
}

#[test]
fn killing_pasta_ends_the_spawned_command() {
    let tb = Testbed::new();
    let pasta = tb
        .pasta(&["sleep", "41.75"])
        .stdin(Stdio::null())
        .spawn()
        .expect("pasta");
    let mut pasta = Guard(pasta);
    let running = || {
        !run(Command::new("pgrep").args(["-f", "^sleep 41.75$"]))
            .stdout
            .is_empty()
    };
    wait_for("the command", Duration::from_secs(10), running);
    // `ip netns exec` execs pasta in place: the child is pasta.
    let _ = pasta.0.kill();
    let _ = pasta.0.wait();
    wait_for(
        "the command to die with pasta",
        Duration::from_secs(5),
        || !running(),
    );
}

#[test]
fn without_a_command_the_users_shell_runs_as_a_login_shell() {
    use std::io::Write;
    let tb = Testbed::new();
    let mut child = tb
        .in_host("timeout")
        .args(["20", pasta()])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pasta");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo \"argv0=$0\"; exit 5\n")
        .unwrap();
    let o = child.wait_with_output().expect("pasta output");
    assert_eq!(o.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("argv0=-sh"),
        "{o:?}"
    );
}
