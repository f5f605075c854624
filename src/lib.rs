//! passt-rs: user-mode networking for virtual machines (passt) and network
//! namespaces (pasta), without a TCP/IP stack.
//!
//! Start reading at [`ctx`]: it follows a frame from the guest to a service
//! and back, and names the module for each step.

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
        Ok(Parsed::Run(o)) => o,
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
        Mode::Passt => {
            eprintln!("passt mode (QEMU socket, --fd, vhost-user): not supported yet");
            1
        }
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
fn tcp_with_listeners(conf: &Config) -> Result<tcp::Tcp, Box<dyn std::error::Error>> {
    let tables = fwd::rules::build(conf)?;
    for r in &tables.host.rules {
        ::log::info!("Inbound forwarding: {r}");
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
                target_port,
            });
        }
    }
    Ok(tcp::Tcp::new(conf, listeners))
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

/// pasta: namespace, tap, privileges, daemon, loop.
fn run_pasta(conf: &Config) -> Result<i32, Box<dyn std::error::Error>> {
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

    let tcp = tcp_with_listeners(conf)?;
    let mut udp_listen = udp_listeners(conf, None)?;
    let routes = pasta::host_routes(conf)?;
    let ns = pasta::setup(conf)?;
    let tap = pasta::tap_setup(conf, &ns.netns, routes)?;
    ::log::info!("Namespace interface: {}", tap.ifname);
    udp_listen.extend(udp_listeners(conf, Some(&ns.netns))?);

    isolation::switch_user(conf);
    isolation::drop_caps(conf);
    let epoll = event::Epoll::new()?;
    daemon::daemonize(conf.foreground, pid_file)?;
    isolation::detach_filesystem();
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
