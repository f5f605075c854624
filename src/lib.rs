//! passt-rs: user-mode networking for virtual machines (passt) and network
//! namespaces (pasta), without a TCP/IP stack.
//!
//! Start reading at [`ctx`]: it follows a frame from the guest to a service
//! and back, and names the module for each step.

// `unsafe` lives in `sys` only, each block with its `// SAFETY:` comment
// (clippy's `undocumented_unsafe_blocks`); the compiler holds everything
// else to that.
#![deny(unsafe_code)]

pub mod arp;
pub mod conf;
pub mod ctx;
pub mod daemon;
pub mod dhcp;
pub mod dhcpv6;
pub mod dns_name;
pub mod event;
pub mod flow;
pub mod fwd;
pub mod icmp;
pub mod isolation;
pub mod log;
pub mod ndp;
pub mod netlink;
pub mod pasta;
pub mod pcap;
#[allow(unsafe_code)]
pub mod sys;
pub mod tap;
pub mod tcp;
pub mod udp;
pub mod wire;

use conf::cli::Parsed;
use conf::{Config, Mode};

/// The program: parse, discover, set up, loop. Returns the exit status.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("");
    let Some(mode) = Mode::from_argv0(argv0) else {
        eprintln!("Invoke as passt or pasta (program name: {argv0})");
        return 1;
    };
    log::init_early(mode.name());
    let opts = match conf::cli::parse(mode, args.get(1..).unwrap_or(&[])) {
        Ok(Parsed::Run(o)) => {
            isolation::close_inherited(o.fd);
            o
        }
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return 0;
        }
        Ok(Parsed::Version(text)) => {
            print!("{text}");
            return 0;
        }
        Ok(Parsed::PrintCapabilities) => {
            println!("{{\n  \"type\": \"net\"\n}}");
            return 0;
        }
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    // pasta's spawn mode is quiet unless debugging: the terminal is the
    // command's.
    let spawn = matches!(opts.target, Some(conf::NsTarget::Spawn { .. }));
    log::set_level(if spawn && opts.log_level < conf::LogLevel::Debug {
        conf::LogLevel::Quiet
    } else {
        opts.log_level
    });
    // -i names the template for both families; --outbound-if4/6 name it
    // for one, unless -i is given.
    let ifname4 = opts.ifname.clone().or_else(|| opts.ifname_out4.clone());
    let ifname6 = opts.ifname.clone().or_else(|| opts.ifname_out6.clone());
    let host = match conf::host::discover(ifname4.as_deref(), ifname6.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let conf = match conf::resolve::resolve(opts, &host) {
        Ok(mut c) => {
            c.test = conf::TestKnobs::from_env();
            c
        }
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    match mode {
        Mode::Pasta => match run_pasta(&conf) {
            Ok(code) => code,
            Err(e) => {
                ::log::error!("{e}");
                1
            }
        },
        Mode::Passt => match run_passt(&conf) {
            Ok(code) => code,
            Err(e) => {
                ::log::error!("{e}");
                1
            }
        },
    }
}

/// Logs what the guest will see, as upstream's start-up summary.
fn log_summary(conf: &Config) {
    if let Some(c) = &conf.ip4 {
        if c.ifname.is_empty() {
            ::log::info!("IPv4: no template interface, local mode");
        } else {
            ::log::info!("Template interface: {} (IPv4)", c.ifname);
        }
        ::log::info!(
            "DHCP: assign {}/{}, router {}{}",
            c.addr,
            c.prefix_len,
            c.gw,
            if conf.no_dhcp { " (disabled)" } else { "" }
        );
        if !c.dns.is_empty() {
            ::log::info!("DNS (IPv4): {:?}", c.dns);
        }
    }
    if let Some(c) = &conf.ip6 {
        if c.ifname.is_empty() {
            ::log::info!("IPv6: no template interface, local mode");
        } else {
            ::log::info!("Template interface: {} (IPv6)", c.ifname);
        }
        if let Some(a) = c.addr {
            ::log::info!(
                "NDP/DHCPv6: assign {a}, router {}, our link-local {}",
                c.gw,
                c.our_tap_ll
            );
        }
    }
    if !conf.search.is_empty() {
        ::log::info!("DNS search list: {}", conf.search.join(" "));
    }
}

/// The forwarding table, and TCP with the listening sockets of its inbound
/// rules (opened now, while we may still bind low ports).
fn tcp_with_listeners(
    conf: &Config,
) -> Result<(tcp::Tcp, fwd::rules::FwdTables), Box<dyn std::error::Error>> {
    let tables = fwd::rules::build(conf)?;
    for r in &tables.host.rules {
        ::log::info!("Inbound forwarding: {r}");
    }
    for r in &tables.splice.rules {
        ::log::info!("Outbound forwarding: {r}");
    }
    let mut listeners = Vec::new();
    if !conf.no_tcp {
        let opened = fwd::rules::open_listeners_in(
            &tables.host,
            conf::Proto::Tcp,
            conf.freebind,
            fwd::rules::Families::of(conf),
        )?;
        for l in opened {
            let Some(rule) = tables.host.rules.get(l.rule as usize) else {
                continue;
            };
            let Some(target_port) = rule.target(l.port) else {
                continue;
            };
            listeners.push(tcp::Listener {
                fd: l.fd,
                rule: l.rule,
                port: l.port,
                v6: l.v6,
                target_port,
            });
        }
    }
    Ok((tcp::Tcp::new(conf, listeners), tables))
}

/// pasta: the namespace side of forwarding: `-T` listeners opened inside
/// the namespace, the splice path's handle on it, the port scanner (whose
/// `/proc` files must be opened before the filesystem goes).
fn ns_forwarding(
    conf: &Config,
    tcp: &mut tcp::Tcp,
    tables: &fwd::rules::FwdTables,
    netns: &pasta::NetNs,
) -> Result<Option<fwd::scan::Scanner>, Box<dyn std::error::Error>> {
    if !conf.no_tcp {
        let families = fwd::rules::Families::of(conf);
        let table = &tables.splice;
        let opened = netns
            .run(|| fwd::rules::open_listeners_in(table, conf::Proto::Tcp, false, families))??;
        let listeners = opened
            .into_iter()
            .filter_map(|l| {
                let target_port = table.rules.get(l.rule as usize)?.target(l.port)?;
                Some(tcp::Listener {
                    fd: l.fd,
                    rule: l.rule,
                    port: l.port,
                    v6: l.v6,
                    target_port,
                })
            })
            .collect();
        tcp.add_ns_listeners(listeners);
    }
    tcp.splice.set_netns(netns.try_clone()?);
    Ok(fwd::scan::Scanner::new(tables, netns))
}

/// Raises the soft limit of open files to the hard limit, as upstream:
/// each spliced connection holds six descriptors.
fn raise_nofile() {
    let r = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if r.current != r.maximum {
        let new = rustix::process::Rlimit {
            current: r.maximum,
            maximum: r.maximum,
        };
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nofile, new) {
            ::log::debug!("Can't raise RLIMIT_NOFILE: {e}");
        }
    }
}

/// UDP listening sockets of the table of `-u` rules (on the host, when
/// `netns` is None) or of `-U` rules (inside the namespace).
fn udp_listeners(
    conf: &Config,
    netns: Option<&pasta::NetNs>,
) -> Result<Vec<udp::UdpListener>, Box<dyn std::error::Error>> {
    let tables = fwd::rules::build(conf)?;
    let table = if netns.is_some() {
        &tables.splice
    } else {
        &tables.host
    };
    udp::open_table(conf, table, netns)
}

/// What both modes open first: the log, the PID file, the pcap file and
/// the signal descriptor; then the configuration summary is logged.
#[allow(clippy::type_complexity)]
fn open_outputs(
    conf: &Config,
) -> Result<
    (
        Option<std::fs::File>,
        Option<pcap::Pcap>,
        std::os::fd::OwnedFd,
    ),
    Box<dyn std::error::Error>,
> {
    log::configure(conf.log_level, conf.log_file.as_deref(), conf.log_size)
        .map_err(|e| format!("Couldn't open log file: {e}"))?;
    let pid_file = match &conf.pid_file {
        Some(p) => Some(
            daemon::open_pid_file(p)
                .map_err(|e| format!("Couldn't open PID file {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let pcap = match &conf.pcap {
        Some(p) => Some(
            pcap::Pcap::open(p)
                .map_err(|e| format!("Couldn't open pcap file {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let signals = daemon::signals().map_err(|e| format!("signals: {e}"))?;
    log_summary(conf);
    Ok((pid_file, pcap, signals))
}

/// pasta: namespace, tap, privileges, daemon, loop.
fn run_pasta(conf: &Config) -> Result<i32, Box<dyn std::error::Error>> {
    let (pid_file, pcap, signals) = open_outputs(conf)?;

    raise_nofile();
    let (mut tcp, tables) = tcp_with_listeners(conf)?;
    let mut udp_listen = udp_listeners(conf, None)?;
    let routes = pasta::host_routes(conf)?;
    let ns = pasta::setup(conf)?;
    let splice_only = conf.pasta.as_ref().is_some_and(|p| p.splice_only);
    let tap = if splice_only {
        pasta::lo_setup(&ns.netns)?
    } else {
        let tap = pasta::tap_setup(conf, &ns.netns, routes)?;
        ::log::info!("Namespace interface: {}", tap.ifname);
        tap
    };
    udp_listen.extend(udp_listeners(conf, Some(&ns.netns))?);
    let scanner = ns_forwarding(conf, &mut tcp, &tables, &ns.netns)?;

    let devnull = daemon::open_devnull(conf.foreground)?;
    isolation::switch_user(conf);
    isolation::own_userns(conf);
    isolation::detach_filesystem(conf);
    isolation::drop_caps(conf);
    let epoll = event::Epoll::new()?;
    daemon::daemonize(conf.foreground, pid_file, devnull)?;
    isolation::lock_down();

    let configured = conf.pasta.as_ref().is_some_and(|p| p.config_net);
    let mut guest_link = tap::Tap::new(tap::Backend::Tun(tap.fd));
    guest_link.pcap = pcap;
    let mut ctx = ctx::Ctx::new(
        conf,
        epoll,
        guest_link,
        Some(tap.mac),
        signals,
        ns.spawned,
        ns.quit,
        tcp,
    )?;
    ctx.guest.addr6_ll_seen = tap.ll6;
    ctx.netns = Some(ns.netns);
    ctx.udp.add_listeners(&ctx.epoll, udp_listen)?;
    ctx.scan = scanner;
    ctx.scan_ports();
    if configured {
        ctx.probe_guest();
    }
    ctx.start_command();
    if matches!(
        conf.pasta.as_ref().map(|p| &p.target),
        Some(conf::NsTarget::Spawn { .. })
    ) {
        log::stop_stderr();
    }
    let code = ctx.run();
    log::sync();
    Ok(code)
}

/// passt: the QEMU socket (listening, or `--fd`), privileges, daemon, loop.
fn run_passt(conf: &Config) -> Result<i32, Box<dyn std::error::Error>> {
    if conf.passt.as_ref().is_some_and(|p| p.vhost_user) {
        return Err("vhost-user: not supported yet".into());
    }
    let (pid_file, pcap, signals) = open_outputs(conf)?;

    let (mut tcp, _tables) = tcp_with_listeners(conf)?;
    // A VM pays for every ACK: hold them briefly (see `Tcp::ack_delay`).
    tcp.ack_delay = Some(std::time::Duration::from_millis(10));
    let stream = match conf.fd {
        Some(fd) => {
            let fd = sys::adopt_fd(fd).map_err(|e| format!("--fd {fd}: {e}"))?;
            tap::stream::Stream::connected(fd)?
        }
        None => {
            let path = conf.passt.as_ref().and_then(|p| p.socket.as_deref());
            let (l, path) = tap::stream::listen(path)?;
            tap::stream::announce(&path);
            tap::stream::Stream::listening(l, path)
        }
    };
    let connected = stream.is_connected();

    let devnull = daemon::open_devnull(conf.foreground)?;
    isolation::switch_user(conf);
    isolation::own_userns(conf);
    isolation::detach_filesystem(conf);
    isolation::drop_caps(conf);
    let epoll = event::Epoll::new()?;
    daemon::daemonize(conf.foreground, pid_file, devnull)?;
    isolation::lock_down();

    let mut guest_link = tap::Tap::new(tap::Backend::Stream(stream));
    guest_link.pcap = pcap;
    let mut ctx = ctx::Ctx::new(conf, epoll, guest_link, None, signals, None, None, tcp)?;
    if connected {
        ctx.probe_guest();
    }
    let code = ctx.run();
    log::sync();
    Ok(code)
}
