//! passt with a real guest: a tiny Linux VM under QEMU (`-netdev stream`)
//! booted by `tests/guest/run-guest.sh` against our passt in the test
//! bed's host namespace. The guest runs busybox checks and reports each as
//! `CHECK name: PASS|FAIL` on its serial console.
//!
//! VM boots take several seconds under TCG: checks are grouped into few
//! runs, and runs are serialised (two cores).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static VM_LOCK: Mutex<()> = Mutex::new(());

fn guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest")
}

/// Boots the guest against `sock` with `script`; calls `on_line` for each
/// console line. Returns the exit status and the console.
fn boot(
    tb: &Testbed,
    sock: &Path,
    script: &str,
    env: &[(&str, &str)],
    mut on_line: impl FnMut(&str),
) -> (i32, String) {
    let _serial = VM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let script_path = tb.path("guest-test.sh");
    std::fs::write(&script_path, script).unwrap();
    let mut c = Command::new(guest_dir().join("run-guest.sh"));
    c.arg("--socket")
        .arg(sock)
        .arg("--script")
        .arg(&script_path)
        .args(["--timeout", "300"]);
    for (k, v) in env {
        c.arg("--env").arg(format!("{k}={v}"));
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run-guest.sh");
    let out = child.stdout.take().unwrap();
    let mut console = String::new();
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        on_line(&line);
        console.push_str(&line);
        console.push('\n');
    }
    let st = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    console.push_str(&err);
    (st.code().unwrap_or(-1), console)
}

fn check_passed(console: &str, name: &str) -> bool {
    console
        .lines()
        .any(|l| l.trim() == format!("CHECK {name}: PASS"))
}

/// A directory served over HTTP by python3 in namespace `ns` on port 8000
/// (both families).
fn http_server(ns: &str, dir: &Path) -> Guard {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "python3", "-m", "http.server", "8000"])
        .args(["--bind", "::", "--directory"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let g = Guard(c.spawn().expect("python3 http.server"));
    wait_for("the HTTP server", Duration::from_secs(10), || {
        Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sf", "-o", "/dev/null"])
            .arg("http://127.0.0.1:8000/index.html")
            .status()
            .is_ok_and(|s| s.success())
    });
    g
}

const CHECK_FN: &str = r#"
fail=0
check() {
	n=$1; shift
	if "$@" >/tmp/out 2>&1; then echo "CHECK $n: PASS"
	else echo "CHECK $n: FAIL"; sed 's/^/    /' /tmp/out; fail=1; fi
}
get() { timeout 20 wget -q -O- "$1" | grep -q "$2"; }
"#;

const MAIN_SCRIPT: &str = r#"
check dhcp4-hosts-address [ "$ADDR4" = "$EXPECT4" ]
check slaac6 sh -c 'case "$ADDR6" in 2001:db8::*) true ;; *) false ;; esac'
check ping4-gw ping -c1 -W5 $GW4
check ping4-beyond ping -c1 -W5 $BEYOND4
check ping6-beyond ping6 -c1 -W5 $BEYOND6
check ping6-router ping6 -c1 -W5 -I eth0 $GW6
check http6-router get "http://[$GW6%eth0]:8000/" hello-from-host
check http4-gw get http://$GW4:8000/ hello-from-host
check http4-beyond get http://$BEYOND4:8000/ hello-from-remote
check http6-beyond get "http://[$BEYOND6]:8000/" hello-from-remote
t0=$(cut -d. -f1 /proc/uptime)
check bulk-100MiB sh -c "timeout 240 wget -q -O- http://$GW4:8000/big | sha256sum | grep -q $BIGSUM"
t1=$(cut -d. -f1 /proc/uptime)
echo "BULK-SECONDS $((t1 - t0))"
mkdir -p /www && echo hello-from-guest > /www/index.html
httpd -p 8080 -h /www
echo READY-INBOUND
check tcp-in sh -c "printf 'HTTP/1.0 200 OK\r\n\r\nbye\n' | timeout 120 nc -l -p 8081 > /tmp/req; grep -q GET /tmp/req"
exit $fail
"#;

/// Everything but UDP in one boot, with passt started as libvirt does
/// (`--one-off --socket PATH --pid FILE`, daemonized): it must exit once
/// the guest is gone.
#[test]
fn guest_dhcp_slaac_ping_http_bulk_inbound_libvirt_style() {
    let tb = Testbed::new();
    let host_www = tb.path("www-host");
    let remote_www = tb.path("www-remote");
    std::fs::create_dir_all(&host_www).unwrap();
    std::fs::create_dir_all(&remote_www).unwrap();
    std::fs::write(host_www.join("index.html"), "hello-from-host\n").unwrap();
    std::fs::write(remote_www.join("index.html"), "hello-from-remote\n").unwrap();
    let big = host_www.join("big");
    must(Command::new("sh").arg("-c").arg(format!(
        "head -c 104857600 /dev/urandom > {}",
        big.display()
    )));
    let sum = must(Command::new("sha256sum").arg(&big));
    let sum = sum.split_whitespace().next().unwrap().to_string();
    let _h = http_server(&tb.host, &host_www);
    let _r = http_server(&tb.remote, &remote_www);

    let sock = tb.path("libvirt-passt.socket");
    let pidf = tb.path("passt.pid");
    let log = tb.path("passt.log");
    must(
        tb.in_host(passt())
            .args(["--one-off", "--socket"])
            .arg(&sock)
            .arg("--pid")
            .arg(&pidf)
            .arg("--log-file")
            .arg(&log)
            .args(["--mac-addr", "52:54:00:12:34:56", "-t", "8080,8081"])
            .stdin(Stdio::null()),
    );
    let pid: i32 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let inbound = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut helper = None;
    let script = format!("{CHECK_FN}{MAIN_SCRIPT}");
    let (rc, console) = boot(
        &tb,
        &sock,
        &script,
        &[
            ("EXPECT4", HOST4),
            ("BEYOND4", BEYOND4),
            ("BEYOND6", BEYOND6),
            ("BIGSUM", &sum),
        ],
        |line| {
            if line.contains("READY-INBOUND") && helper.is_none() {
                let inbound = inbound.clone();
                let remote = tb.remote.clone();
                helper = Some(std::thread::spawn(move || {
                    let tb2 = RemoteCurl(remote);
                    let mut r = inbound.lock().unwrap();
                    for (name, url, want) in [
                        (
                            "http4-in",
                            format!("http://{HOST4}:8080/"),
                            "hello-from-guest",
                        ),
                        (
                            "http6-in",
                            format!("http://[{HOST6}]:8080/"),
                            "hello-from-guest",
                        ),
                        ("close-in", format!("http://{HOST4}:8081/"), "bye"),
                    ] {
                        if tb2.until(&url, want, Duration::from_secs(60)) {
                            r.push(name.to_string());
                        }
                    }
                }));
            }
        },
    );
    if let Some(h) = helper {
        let _ = h.join();
    }
    let passt_log = std::fs::read_to_string(&log).unwrap_or_default();
    let ctx = format!("console:\n{console}\npasst log:\n{passt_log}");
    for name in [
        "dhcp4-hosts-address",
        "slaac6",
        "ping4-gw",
        "ping4-beyond",
        "ping6-beyond",
        "ping6-router",
        "http6-router",
        "http4-gw",
        "http4-beyond",
        "http6-beyond",
        "bulk-100MiB",
        "tcp-in",
    ] {
        assert!(check_passed(&console, name), "{name} failed\n{ctx}");
    }
    let inbound = inbound.lock().unwrap().clone();
    assert_eq!(
        inbound,
        ["http4-in", "http6-in", "close-in"],
        "inbound HTTP through -t\n{ctx}"
    );
    assert_eq!(rc, 0, "{ctx}");
    if let Some(l) = console.lines().find(|l| l.contains("BULK-SECONDS")) {
        eprintln!("100 MiB download in the guest: {l}");
    }
    // --one-off: passt is gone with the guest.
    wait_for(
        "passt to exit after the guest",
        Duration::from_secs(10),
        || {
            !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z"))
        },
    );
}

/// curl from the remote namespace, usable from a helper thread.
struct RemoteCurl(String);

impl RemoteCurl {
    fn until(&self, url: &str, want: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.0, "curl", "-s", "-m", "5", "-g", url])
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(want)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

/// A tiny DNS responder (python3): answers every A query with 10.200.0.3.
const DNSD: &str = r#"
import socket, sys, struct, select, time
deadline = time.time() + 280; socks = []
for fam, addr in [(socket.AF_INET, a) for a in sys.argv[1].split(",")] + \
                 [(socket.AF_INET6, a) for a in sys.argv[2].split(",")]:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((addr, 5353)); socks.append(s)
print("ready", flush=True)
while time.time() < deadline:
    for s in select.select(socks, [], [], 1)[0]:
        q, a = s.recvfrom(2048); i = 12
        while q[i] != 0: i += 1 + q[i]
        ans = b'\xc0\x0c' + struct.pack('>HHIH', 1, 1, 60, 4) + socket.inet_aton('10.200.0.3')
        s.sendto(q[:2] + b'\x81\x80' + struct.pack('>HHHH', 1, 1, 0, 0) + q[12:i+5] + ans, a)
"#;

fn dns_server(ns: &str, v4: &str, v6: &str) -> Guard {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "python3", "-c", DNSD, v4, v6])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Guard(child)
}

/// UDP: DNS queries from the guest (busybox nslookup) to a responder on
/// the host (through the gateway) and beyond it, over IPv4 and IPv6.
#[test]
fn guest_udp_dns_queries() {
    let tb = Testbed::new();
    let _h = dns_server(&tb.host, "127.0.0.1", "::1");
    let _r = dns_server(&tb.remote, BEYOND4, BEYOND6);
    let sock = tb.path("passt.socket");
    let mut c = tb.in_host(passt());
    c.args(["-f", "-1", "-s"])
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tb.path("passt.log")).unwrap());
    let _p = Guard(c.spawn().unwrap());
    let s = sock.clone();
    wait_for("the passt socket", Duration::from_secs(10), || s.exists());
    let script = format!(
        "{CHECK_FN}
q() {{ timeout 10 nslookup -type=a probe.test \"$1\" | grep -q 10.200.0.3; }}
check udp4-gw q $GW4:5353
check udp4-beyond q $BEYOND4:5353
check udp6-beyond q [$BEYOND6]:5353
exit $fail
"
    );
    let (rc, console) = boot(
        &tb,
        &sock,
        &script,
        &[("BEYOND4", BEYOND4), ("BEYOND6", BEYOND6)],
        |_| {},
    );
    let log = std::fs::read_to_string(tb.path("passt.log")).unwrap_or_default();
    for name in ["udp4-gw", "udp4-beyond", "udp6-beyond"] {
        assert!(
            check_passed(&console, name),
            "{name} failed\nconsole:\n{console}\npasst log:\n{log}"
        );
    }
    assert_eq!(rc, 0);
}
