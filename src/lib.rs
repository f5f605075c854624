//! passt-rs: user-mode networking for virtual machines (passt) and network
//! namespaces (pasta), without a TCP/IP stack.
//!
//! Start reading at [`ctx`]: it follows a frame from the guest to a service
//! and back, and names the module for each step.
//!
//! # Layers
//!
//! Each module imports only modules of its own layer or the layers below
//! (`python3 /work/shared/tools/modgraph.py src` checks there is no
//! circle):
//!
//! 1. [`wire`], [`sys`], [`event`], [`pcap`], [`dns_name`]: headers,
//!    system calls, epoll;
//! 2. [`netlink`], [`conf`], [`log`]: the configuration, read-only
//!    afterwards, and logging;
//! 3. [`pasta`] (namespaces), [`tap`] (the guest's link), [`daemon`],
//!    [`isolation`], [`seccomp`] (the allowlist installed before the loop),
//!    [`repair`] (the `passt-repair` helper binary, beside the daemon);
//! 4. [`flow`] (the generic flow table, naming no protocol), [`guest`]
//!    (what we learnt about the guest) and [`live`] (what the guest is
//!    told now: the values that follow the host);
//! 5. [`fwd`]: where each flow goes, the forwarding tables and their
//!    listening sockets;
//! 6. services and protocols: [`arp`], [`ndp`], [`dhcp`], [`dhcpv6`],
//!    [`icmp`], [`tcp`], [`udp`]; [`follow`] (the watchers that make the
//!    guest's view follow the host); [`ctl`] (the configuration socket,
//!    changing [`fwd`]'s tables);
//! 7. [`ctx`]: the loop, the `Flow` enum of every protocol's flow, and
//!    dispatch; this file's `main` on top;
//! 8. [`pesto`]: the client of the configuration socket (the `pesto`
//!    binary), beside the daemon: it uses [`wire`], [`conf`] and [`fwd`]
//!    only.

// `unsafe` lives in `sys` only, each block with its `// SAFETY:` comment
// (clippy's `undocumented_unsafe_blocks`); the compiler holds everything
// else to that.
#![deny(unsafe_code)]

mod arp;
pub mod conf;
mod ctl;
mod ctx;
mod daemon;
mod dhcp;
mod dhcpv6;
mod dns_name;
mod event;
mod flow;
mod follow;
/// Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod fwd;
mod guest;
mod icmp;
mod isolation;
mod live;
mod log;
mod ndp;
pub mod netlink;
mod pasta;
mod pcap;
mod repair;
pub use repair::passt_repair_main;
mod pesto;
mod seccomp;
#[allow(unsafe_code)]
mod sys;
/// The binaries' allocator (see `sys::alloc`).
pub use sys::alloc::Counting as CountingAlloc;
mod tap;
mod tcp;
mod udp;
pub mod wire;

use conf::cli::Parsed;
use conf::{Config, Mode};

/// Ends the process with `code` once [`main`] returned: flushes stdout and
/// calls `_exit(2)` (one `exit_group`). `std::process::exit` would first
/// run the runtime's clean-up, which frees the main thread's signal stack
/// (`sigaltstack`, `munmap`): calls the seccomp lists need not allow.
pub fn exit(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    sys::exit_now(code)
}

/// The `pesto` binary (see [`pesto`]): shows or changes the forwarding
/// tables of a running passt or pasta. Returns the exit status.
pub fn pesto_main() -> i32 {
    pesto::main()
}

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

/// `-c`: the configuration socket, created now (before we change user
/// and lose the filesystem).
fn open_control(conf: &Config) -> Result<Option<ctl::Control>, Box<dyn std::error::Error>> {
    match &conf.conf_path {
        Some(p) => Ok(Some(ctl::Control::open(p).map_err(|e| {
            format!("Couldn't open configuration socket {}: {e}", p.display())
        })?)),
        None => Ok(None),
    }
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
    // Built once; the host's sockets are opened now, while we may still
    // bind low ports, the namespace's once it exists.
    let mut fwd = fwd::Fwd::build(conf)?;
    fwd.open_host(conf, true)?;
    let control = open_control(conf)?;
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
    fwd.open_ns(conf, &ns.netns)?;
    fwd.start_scan(&ns.netns);
    // Before isolation: inotify and netlink sockets, in both namespaces.
    let configured = conf.pasta.as_ref().is_some_and(|p| p.config_net);
    let follow = follow::Follower::open(
        conf,
        (configured && !splice_only).then_some((&ns.netns, tap.ifname.as_str())),
    );
    let mut tcp = tcp::Tcp::new(conf);
    tcp.splice.set_netns(ns.netns.try_clone()?);

    let devnull = daemon::open_devnull(conf.foreground)?;
    isolation::switch_user(conf);
    isolation::own_userns(conf);
    isolation::detach_filesystem(conf);
    isolation::drop_caps(conf);
    let epoll = event::Epoll::new()?;
    daemon::daemonize(conf.foreground, pid_file, devnull)?;
    isolation::lock_down();

    let mut guest_link = tap::Tap::new(tap::Backend::Tun(tap.fd));
    guest_link.tun_tso = tap.tso;
    if !tap.tso {
        ::log::debug!("tap: no TCP segmentation offload on the tun device");
    }
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
        fwd,
    )?;
    ctx.guest.addr6_ll_seen = tap.ll6;
    ctx.netns = Some(ns.netns);
    ctx.set_control(control)?;
    ctx.set_follow(follow)?;
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
    seccomp::install(seccomp::Profile::Pasta)?;
    let code = ctx.run();
    log::sync();
    Ok(code)
}

/// passt: the QEMU socket (listening, or `--fd`), privileges, daemon, loop.
fn run_passt(conf: &Config) -> Result<i32, Box<dyn std::error::Error>> {
    let vhost_user = conf.passt.as_ref().is_some_and(|p| p.vhost_user);
    let (pid_file, pcap, signals) = open_outputs(conf)?;

    // TCP only: passt has no `-u` listeners (yet).
    let mut fwd = fwd::Fwd::build(conf)?;
    fwd.open_host(conf, false)?;
    let control = open_control(conf)?;
    let mut tcp = tcp::Tcp::new(conf);
    // A VM pays for every ACK: hold them briefly (see `Tcp::ack_delay`).
    tcp.ack_delay = Some(std::time::Duration::from_millis(10));
    let backend = match (conf.fd, vhost_user) {
        (Some(fd), false) => {
            let fd = sys::adopt_fd(fd).map_err(|e| format!("--fd {fd}: {e}"))?;
            tap::Backend::Stream(tap::stream::Stream::connected(fd)?)
        }
        (Some(fd), true) => {
            let fd = sys::adopt_fd(fd).map_err(|e| format!("--fd {fd}: {e}"))?;
            tap::Backend::VhostUser(tap::vhost_user::VhostUser::connected(fd)?)
        }
        (None, _) => {
            let path = conf.passt.as_ref().and_then(|p| p.socket.as_deref());
            let (l, path) = tap::stream::listen(path)?;
            if vhost_user {
                tap::vhost_user::announce(&path);
                tap::Backend::VhostUser(tap::vhost_user::VhostUser::listening(l))
            } else {
                tap::stream::announce(&path);
                tap::Backend::Stream(tap::stream::Stream::listening(l))
            }
        }
    };
    // The stream socket's guest hears our probes at once; a vhost-user
    // guest once its first receive ring starts.
    let connected = matches!(&backend, tap::Backend::Stream(s) if s.is_connected());
    // Before isolation: inotify and the netlink socket.
    let follow = follow::Follower::open(conf, None);

    let devnull = daemon::open_devnull(conf.foreground)?;
    isolation::switch_user(conf);
    isolation::own_userns(conf);
    isolation::detach_filesystem(conf);
    isolation::drop_caps(conf);
    let epoll = event::Epoll::new()?;
    daemon::daemonize(conf.foreground, pid_file, devnull)?;
    isolation::lock_down();

    let mut guest_link = tap::Tap::new(backend);
    guest_link.pcap = pcap;
    let mut ctx = ctx::Ctx::new(conf, epoll, guest_link, None, signals, None, None, tcp, fwd)?;
    ctx.set_control(control)?;
    ctx.set_follow(follow)?;
    if connected {
        ctx.probe_guest();
    }
    seccomp::install(if vhost_user {
        seccomp::Profile::PasstVhostUser
    } else {
        seccomp::Profile::PasstStream
    })?;
    let code = ctx.run();
    log::sync();
    Ok(code)
}
