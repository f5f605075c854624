//! passt with a real guest: a tiny Linux VM under QEMU booted by
//! `tests/guest/run-guest.sh` against our passt in the test bed's host
//! namespace. The guest runs busybox checks and reports each as
//! `CHECK name: PASS|FAIL` on its serial console.
//!
//! One check list, three links (each a [`Link`]):
//! - QEMU's `-netdev stream` on passt's socket;
//! - `passt --vhost-user` with one queue pair (`-netdev vhost-user`, guest
//!   memory in a shared memfd);
//! - `passt --vhost-user` with 4 queue pairs and 4 vCPUs: the guest must
//!   use all of them (`GUEST-QUEUES: rx=4 tx=4`) and fetch over HTTP from
//!   each vCPU, which virtio_net's XPS maps to that vCPU's TX queue.
//!
//! passt is started as libvirt does (`--one-off [--vhost-user] --socket
//! PATH --pid FILE`, daemonized) and must exit once the guest is gone.
//! VM boots take 10–40 s under TCG: each link is one boot, and boots are
//! serialised (two cores). `PASST_RS_VM_DEBUG=1` runs passt with `-d`
//! (its log is printed when a check fails).

mod common;
#[path = "common/guest.rs"]
mod guest;

use common::*;
use guest::{boot, check_passed, http_server, Link};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHECK_FN: &str = r#"
fail=0
check() {
	n=$1; shift
	if "$@" >/tmp/out 2>&1; then echo "CHECK $n: PASS"
	else echo "CHECK $n: FAIL"; sed 's/^/    /' /tmp/out; fail=1; fi
}
get() { timeout 20 wget -q -O- "$1" | grep -q "$2"; }
q() { timeout 10 nslookup -type=a probe.test "$1" | grep -q 10.200.0.3; }
"#;

/// The guest's checks, in one boot. `GUEST_QUEUES` (exported by
/// run-guest.sh's `--queues N` wrapper for N > 1) adds the multi-queue
/// ones; `tcp-in` comes last: it waits for the host's connection.
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
check udp4-gw q $GW4:5353
check udp4-beyond q $BEYOND4:5353
check udp6-beyond q [$BEYOND6]:5353
if [ -n "${GUEST_QUEUES:-}" ]; then
	check queues [ "$GUEST_RXQ" = "$GUEST_QUEUES" -a "$GUEST_TXQ" = "$GUEST_QUEUES" ]
	i=0
	while [ $i -lt "$(nproc)" ]; do
		check http4-cpu$i sh -c "timeout 20 taskset -c $i wget -q -O- http://$BEYOND4:8000/ | grep -q hello-from-remote"
		i=$((i + 1))
	done
fi
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

/// The checks every link must pass.
const CHECKS: &[&str] = &[
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
    "udp4-gw",
    "udp4-beyond",
    "udp6-beyond",
    "bulk-100MiB",
    "tcp-in",
];

#[test]
fn stream_socket_libvirt_style() {
    guest_run(Link::Stream);
}

#[test]
fn vhost_user_one_queue_libvirt_style() {
    guest_run(Link::VhostUser { queues: 1 });
}

#[test]
fn vhost_user_four_queues_libvirt_style() {
    guest_run(Link::VhostUser { queues: 4 });
}

/// One boot over `link` with every check: servers on the host (HTTP with
/// a random 100 MiB file, DNS) and beyond it, passt started libvirt-style,
/// inbound HTTP through `-t` once the guest is ready.
fn guest_run(link: Link) {
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
    let _hd = dns_server(&tb.host, "127.0.0.1", "::1");
    let _rd = dns_server(&tb.remote, BEYOND4, BEYOND6);

    let sock = tb.path("libvirt-passt.socket");
    let pidf = tb.path("passt.pid");
    let log = tb.path("passt.log");
    let mut c = tb.in_host(passt());
    c.arg("--one-off")
        .args(link.passt_args())
        .arg("--socket")
        .arg(&sock)
        .arg("--pid")
        .arg(&pidf)
        .arg("--log-file")
        .arg(&log)
        .args(["--mac-addr", "52:54:00:12:34:56", "-t", "8080,8081"])
        .stdin(Stdio::null());
    if std::env::var_os("PASST_RS_VM_DEBUG").is_some() {
        c.arg("-d");
    }
    must(&mut c);
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
        link,
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
    let ctx = format!("{link:?}\nconsole:\n{console}\npasst log:\n{passt_log}");
    let failed: Vec<&str> = CHECKS
        .iter()
        .copied()
        .filter(|name| !check_passed(&console, name))
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}\n{ctx}");
    let inbound = inbound.lock().unwrap().clone();
    assert_eq!(
        inbound,
        ["http4-in", "http6-in", "close-in"],
        "inbound HTTP through -t\n{ctx}"
    );
    if let Link::VhostUser { queues } = link {
        // QEMU 7.2 segfaults starting a vhost-user NIC with MSI-X under
        // TCG: run-guest.sh must have asked for legacy interrupts.
        let hdr = console
            .lines()
            .find(|l| l.starts_with("run-guest: accel="))
            .unwrap_or_else(|| panic!("no run-guest header\n{ctx}"));
        assert!(
            hdr.contains("accel=kvm") || hdr.contains("nic-opts=vectors=0"),
            "{hdr}"
        );
        if queues > 1 {
            let want = format!("GUEST-QUEUES: rx={queues} tx={queues} cpus={queues}");
            assert!(
                console.lines().any(|l| l.starts_with(&want)),
                "want '{want}'\n{ctx}"
            );
            let mut multi = vec!["queues".to_string()];
            multi.extend((0..queues).map(|i| format!("http4-cpu{i}")));
            let failed: Vec<&String> = multi
                .iter()
                .filter(|name| !check_passed(&console, name))
                .collect();
            assert!(failed.is_empty(), "failed: {failed:?}\n{ctx}");
        }
    }
    assert_eq!(
        link.queues() > 1,
        console.contains("GUEST-QUEUES:"),
        "{ctx}"
    );
    assert_eq!(rc, 0, "{ctx}");
    for l in console.lines().filter(|l| {
        l.contains("BULK-SECONDS") || l.starts_with("GUEST-QUEUES:") || l.starts_with("run-guest:")
    }) {
        eprintln!("{link:?}: {l}");
    }
    // --one-off: passt is gone with the guest.
    wait_for(
        "passt to exit after the guest",
        Duration::from_secs(10),
        || !alive(pid),
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

/// A tiny DNS responder (python3): answers every A query with 10.200.0.3,
/// for at most 10 minutes.
const DNSD: &str = r#"
import socket, sys, struct, select, time
deadline = time.time() + 600; socks = []
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
