//! `passt-repair`: the privileged helper that switches TCP sockets into
//! and out of repair mode (`TCP_REPAIR`) for passt's live migration.
//!
//! passt runs without privileges, and `TCP_REPAIR` needs
//! `CAP_NET_ADMIN`. The helper has it (run as root, or with that one
//! capability), does that one thing, and nothing else: after it
//! connects it installs its own seccomp list (receive, set the option,
//! close, answer, exit).
//!
//! # Protocol (upstream's)
//!
//! passt listens on a UNIX stream socket (`--repair-path`, by default
//! the vhost-user socket's path with `.repair` appended); the helper
//! connects: to the path given, or, given a directory, to the first
//! socket whose name ends in `.repair` that appears there (it waits for
//! one with inotify). Then, until passt closes:
//!
//! - passt sends one signed byte, the command: [`REPAIR_ON`] (1),
//!   [`REPAIR_OFF`] (0) or [`REPAIR_OFF_NO_WP`] (-1, off without a
//!   window probe), with 1 to [`SCM_MAX_FD`] TCP sockets attached
//!   (`SCM_RIGHTS`);
//! - the helper sets `TCP_REPAIR` to that value on each, closes its
//!   copies and echoes the byte.
//!
//! Any failure (an unknown command, no socket attached, a socket that
//! refuses) ends the helper with a message and status 1, which passt
//! sees as a closed connection. End of file is a normal end (status 0).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

/// Repair mode on.
pub const REPAIR_ON: i8 = 1;
/// Repair mode off.
pub const REPAIR_OFF: i8 = 0;
/// Repair mode off, without sending a window probe.
pub const REPAIR_OFF_NO_WP: i8 = -1;
/// Most descriptors in one message (the kernel's `SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;

/// How long the helper tries to connect to a socket that refuses (passt
/// not listening yet).
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

fn usage(name: &str) -> String {
    format!(
        "Usage: {name} PATH\n\nPATH: passt's repair socket, or a directory where it will appear\n"
    )
}

/// The helper's program: returns its exit status.
pub fn passt_repair_main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map_or("passt-repair", String::as_str);
    match args.get(1).map(String::as_str) {
        Some("-h" | "--help") => {
            print!("{}", usage(name));
            0
        }
        Some("--version") => {
            println!("passt-repair (passt-rs) {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(p) if args.len() == 2 => match run(Path::new(p)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("passt-repair: {e}");
                1
            }
        },
        _ => {
            eprint!("{}", usage(name));
            1
        }
    }
}

fn run(path: &Path) -> io::Result<()> {
    let sock = if path.is_dir() {
        wait_in_dir(path)?
    } else {
        connect(path)?
    };
    crate::seccomp::install_repair().map_err(|e| io::Error::other(format!("seccomp: {e}")))?;
    serve(&sock)
}

/// Connects to the socket at `path`, trying again while it refuses (passt
/// bound it but does not listen yet).
fn connect(path: &Path) -> io::Result<OwnedFd> {
    let addr = SocketAddrUnix::new(path)?;
    let deadline = Instant::now() + CONNECT_PATIENCE;
    loop {
        let s = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        match rustix::net::connect(&s, &addr) {
            Ok(()) => return Ok(s),
            Err(rustix::io::Errno::CONNREFUSED) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("can't connect to {}: {e}", path.display()),
                ))
            }
        }
    }
}

/// Waits for a socket named `*.repair` in `dir` and connects to it.
fn wait_in_dir(dir: &Path) -> io::Result<OwnedFd> {
    use rustix::fs::inotify;
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC)?;
    inotify::add_watch(&ino, dir, inotify::WatchFlags::CREATE)?;
    // One that is there already (created before we watched).
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_name().to_string_lossy().ends_with(".repair") {
            return connect(&e.path());
        }
    }
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    loop {
        let mut reader = inotify::Reader::new(&ino, &mut buf);
        let ev = reader.next()?;
        if let Some(name) = ev.file_name() {
            if name.to_string_lossy().ends_with(".repair") {
                let p = dir.join(std::ffi::OsStr::new(&*name.to_string_lossy()));
                return connect(&p);
            }
        }
    }
}

/// Answers passt's commands until it closes.
fn serve(sock: &OwnedFd) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
    loop {
        let mut cmd = [0u8; 1];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let r = rustix::net::recvmsg(
            sock,
            &mut [io::IoSliceMut::new(&mut cmd)],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for msg in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        if r.bytes == 0 {
            return Ok(());
        }
        let value = i8::from_ne_bytes(cmd);
        if ![REPAIR_ON, REPAIR_OFF, REPAIR_OFF_NO_WP].contains(&value) {
            return Err(io::Error::other(format!("unknown command {value}")));
        }
        if fds.is_empty() {
            return Err(io::Error::other(format!(
                "command {value} without a socket"
            )));
        }
        for fd in &fds {
            crate::sys::set_tcp_repair(fd, i32::from(value))
                .map_err(|e| io::Error::new(e.kind(), format!("TCP_REPAIR {value}: {e}")))?;
        }
        drop(fds);
        rustix::net::send(sock, &cmd, SendFlags::empty())?;
    }
}
