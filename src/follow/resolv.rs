//! The host's `/etc/resolv.conf`, watched with inotify and read again
//! through directory descriptors opened at start.
//!
//! Resolvers change the file in three ways, each seen here:
//!
//! * written in place (or a file bind-mounted over it, as `ip netns exec`
//!   does, written through its own path): the watch on the file itself
//!   (`IN_CLOSE_WRITE`: not `IN_MODIFY`, which the truncation before the
//!   write raises already, when the file would be read empty);
//! * a new file renamed over it (NetworkManager, resolvconf): the watch on
//!   its directory, for that name (`IN_MOVED_TO`, `IN_CREATE`,
//!   `IN_CLOSE_WRITE`, `IN_DELETE`);
//! * a symlink whose target is rewritten (systemd-resolved's
//!   `stub-resolv.conf`): the watch on the directory of the target,
//!   resolved at start, for the target's name.
//!
//! After isolation the process has an empty root: paths mean nothing. The
//! file is read with `readlinkat` and `openat` relative to the descriptors
//! of those directories (`O_PATH`, opened at start; the seccomp lists allow
//! both calls only relative to a descriptor, read-only). A symlink that
//! now points into another directory cannot be read: that is logged, and
//! the nameservers stay.
//!
//! A file mounted over resolv.conf (`ip netns exec`, containers) is
//! different: it cannot be renamed over, and once the old root is detached
//! a lookup through the directory finds the file underneath, not the mount.
//! It is read through a descriptor of the file itself, opened at start
//! (`lseek` to 0, `read`).

use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::inotify::{self, WatchFlags};
use rustix::fs::{Mode, OFlags};

use super::Changed;
use crate::conf::host::{parse_resolv_conf, ResolvConf};
use crate::conf::resolve::{nameservers_v4, nameservers_v6, resolv_dns};
use crate::conf::Config;
use crate::live::Live;

/// Largest resolv.conf read (the resolver itself reads far less).
const MAX_LEN: usize = 64 * 1024;

/// A directory watched for one name in it.
struct WatchedDir {
    /// The directory (`O_PATH`).
    dir: OwnedFd,
    /// Its path at start (to resolve a symlink's new target against).
    path: PathBuf,
    /// The inotify watch.
    wd: i32,
    /// The name that matters in it.
    name: OsString,
}

/// inotify on resolv.conf, its directory and its symlink target's.
pub(crate) struct ResolvWatch {
    inotify: OwnedFd,
    /// The directory of resolv.conf, watched for its name.
    etc: WatchedDir,
    /// The watch on the file (what it pointed to at start), if it existed.
    file_wd: Option<i32>,
    /// resolv.conf was a symlink at start: its text then, and the
    /// directory of its final target, watched for the target's name.
    link: Option<(PathBuf, WatchedDir)>,
    /// resolv.conf was a mount point at start: the file, read in place.
    pinned: Option<OwnedFd>,
    /// What was read last.
    last: ResolvConf,
    /// inotify events, and the file's contents.
    buf: Vec<u8>,
}

/// Events of the directories that mean the watched name changed.
fn dir_flags() -> WatchFlags {
    WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_TO
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::ONLYDIR
}

fn watch_dir(inotify: &OwnedFd, path: &Path, name: OsString) -> io::Result<WatchedDir> {
    let dir = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let wd = inotify::add_watch(inotify, path, dir_flags())?;
    Ok(WatchedDir {
        dir,
        path: path.to_path_buf(),
        wd,
        name,
    })
}

/// `path` without `.` and with `..` applied, lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The parent directory and file name of `path`.
fn split(path: &Path) -> io::Result<(&Path, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p, n.to_os_string())),
        _ => Err(io::Error::other(format!(
            "{}: no file name",
            path.display()
        ))),
    }
}

impl ResolvWatch {
    /// Watches `path` (`/etc/resolv.conf`) and reads it once.
    pub(crate) fn open(path: &str) -> io::Result<ResolvWatch> {
        let inotify =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        let path = Path::new(path);
        let (parent, name) = split(path)?;
        let etc = watch_dir(&inotify, parent, name)?;
        // Follows a symlink: the target's inode, written in place.
        let file_wd = inotify::add_watch(&inotify, path, WatchFlags::CLOSE_WRITE).ok();
        // A symlink whose target can't be watched (dangling, say) leaves
        // the rest watched: a new file renamed over it is still seen.
        let link = std::fs::read_link(path).ok().and_then(|text| {
            let watched = std::fs::canonicalize(path).and_then(|target| {
                let (tdir, tname) = split(&target)?;
                watch_dir(&inotify, tdir, tname)
            });
            match watched {
                Ok(d) => Some((text, d)),
                Err(e) => {
                    log::warn!(
                        "Can't watch the target of {} ({}): {e}",
                        path.display(),
                        text.display()
                    );
                    None
                }
            }
        });
        let pinned = if is_mount_root(path) {
            Some(rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        } else {
            None
        };
        let mut w = ResolvWatch {
            inotify,
            etc,
            file_wd,
            link,
            pinned,
            last: ResolvConf::default(),
            buf: vec![0; MAX_LEN],
        };
        w.last = w.read().unwrap_or_default();
        Ok(w)
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.inotify
    }

    /// Drains the inotify events; if one was about resolv.conf, reads it:
    /// the new contents if they differ from the last ones read.
    pub(crate) fn changed(&mut self) -> Option<ResolvConf> {
        if !self.drain() {
            return None;
        }
        let new = match self.read() {
            Ok(r) => r,
            Err(e) => {
                log::info!("resolv.conf changed but can't be read ({e}): nameservers unchanged");
                return None;
            }
        };
        if new == self.last {
            return None;
        }
        self.last = new.clone();
        Some(new)
    }

    /// Reads every pending event: whether any concerns resolv.conf.
    fn drain(&mut self) -> bool {
        let mut relevant = false;
        // Room for many events (each is 16 bytes and a name).
        let mut events = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.inotify, &mut events);
        loop {
            match reader.next() {
                Ok(ev) => {
                    let wd = ev.wd();
                    let name = ev.file_name().map(|n| n.to_bytes().to_vec());
                    let about = |d: &WatchedDir| {
                        d.wd == wd
                            && name
                                .as_deref()
                                .is_some_and(|n| n == d.name.as_encoded_bytes())
                    };
                    relevant |= Some(wd) == self.file_wd
                        || about(&self.etc)
                        || self.link.as_ref().is_some_and(|(_, d)| about(d))
                        || ev.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW);
                }
                Err(e) if e == rustix::io::Errno::INTR => {}
                Err(_) => return relevant,
            }
        }
    }

    /// Reads resolv.conf through the directory descriptors (or the file's,
    /// if a file is mounted over it).
    fn read(&mut self) -> io::Result<ResolvConf> {
        if let Some(fd) = &self.pinned {
            rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(0))?;
            let text = read_fd(fd, &mut self.buf)?;
            return Ok(parse_resolv_conf(&String::from_utf8_lossy(text)));
        }
        let (dir, name) = match rustix::fs::readlinkat(&self.etc.dir, &self.etc.name, Vec::new()) {
            Err(rustix::io::Errno::INVAL) => (&self.etc.dir, self.etc.name.clone()),
            Err(e) => return Err(e.into()),
            Ok(text) => {
                let text = PathBuf::from(OsString::from_vec(text.into_bytes()));
                let Some((start_text, target)) = &self.link else {
                    return Err(io::Error::other(format!(
                        "a symlink now (to {}), not watched since start",
                        text.display()
                    )));
                };
                if text == *start_text {
                    (&target.dir, target.name.clone())
                } else {
                    // Another target: readable if in the same directory.
                    let full = normalize(&self.etc.path.join(&text));
                    match split(&full) {
                        Ok((parent, name)) if parent == target.path => (&target.dir, name),
                        _ => {
                            return Err(io::Error::other(format!(
                                "it points to {} now, outside the directories watched since start",
                                text.display()
                            )))
                        }
                    }
                }
            }
        };
        let text = read_at(dir, &name, &mut self.buf)?;
        Ok(parse_resolv_conf(&String::from_utf8_lossy(text)))
    }
}

/// Whether `path` (its target, if a symlink) is the root of a mount: a
/// file mounted over it. False where the kernel cannot tell.
fn is_mount_root(path: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags, CWD};
    match rustix::fs::statx(CWD, path, AtFlags::NO_AUTOMOUNT, StatxFlags::empty()) {
        Ok(s) => s.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
        Err(_) => false,
    }
}

/// Reads the file `name` in `dir` (not following a symlink) into `buf`.
fn read_at<'b>(dir: &OwnedFd, name: &OsString, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    let fd = rustix::fs::openat(
        dir.as_fd(),
        name.as_os_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    read_fd(&fd, buf)
}

/// Reads `fd` from where it is to its end (or `buf`'s) into `buf`.
fn read_fd<'b>(fd: &OwnedFd, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(&buf[..len])
}

/// The nameservers of `resolv` into `live`, computed as at start-up, for
/// the families whose nameservers came from resolv.conf. A file without
/// any nameserver (a resolver writing it anew) changes nothing.
pub(crate) fn apply(conf: &Config, live: &mut Live, resolv: &ResolvConf) -> Changed {
    let mut changed = Changed::default();
    if resolv.nameservers.is_empty() {
        log::info!("resolv.conf changed and lists no nameserver: keeping the ones of before");
        return changed;
    }
    if let (Some(c), Some(l)) = (&conf.ip4, live.ip4.as_mut()) {
        if c.follow.dns {
            let f = &c.follow;
            let d = resolv_dns(
                f.dns_forward,
                f.dns_host,
                c.map_host_loopback,
                Ipv4Addr::is_loopback,
                nameservers_v4(resolv),
            );
            if (&d.dns, d.dns_match, d.dns_host) != (&l.dns, l.dns_match, l.dns_host) {
                log::info!(
                    "resolv.conf changed: IPv4 nameservers announced {:?} (were {:?}), DNS forwarded to {} (was {}){}",
                    d.dns,
                    l.dns,
                    show(d.dns_host),
                    show(l.dns_host),
                    if f.dns_host.is_some() { " as --dns-host says" } else { "" },
                );
                (l.dns, l.dns_match, l.dns_host) = (d.dns, d.dns_match, d.dns_host);
            }
        }
    }
    if let (Some(c), Some(l)) = (&conf.ip6, live.ip6.as_mut()) {
        if c.follow.dns {
            let f = &c.follow;
            let d = resolv_dns(
                f.dns_forward,
                f.dns_host,
                c.map_host_loopback,
                Ipv6Addr::is_loopback,
                nameservers_v6(resolv),
            );
            if (&d.dns, d.dns_match, d.dns_host) != (&l.dns, l.dns_match, l.dns_host) {
                log::info!(
                    "resolv.conf changed: IPv6 nameservers announced {:?} (were {:?}), DNS forwarded to {} (was {}){}",
                    d.dns,
                    l.dns,
                    show(d.dns_host),
                    show(l.dns_host),
                    if f.dns_host.is_some() { " as --dns-host says" } else { "" },
                );
                changed.ra = d.dns != l.dns;
                (l.dns, l.dns_match, l.dns_host) = (d.dns, d.dns_match, d.dns_host);
            }
        }
    }
    changed
}

/// An optional address for the log.
fn show<A: std::fmt::Display>(a: Option<A>) -> String {
    a.map_or_else(|| "nowhere".to_string(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_nameservers_follow_unless_given() {
        let mut conf = crate::arp::tests::test_config();
        let c4 = conf.ip4.as_mut().unwrap();
        c4.follow.dns = true;
        c4.dns_match = Some("192.168.1.3".parse().unwrap());
        c4.follow.dns_forward = c4.dns_match;
        let c6 = conf.ip6.as_mut().unwrap();
        c6.follow.dns = true;
        c6.follow.dns_host = Some("2001:db8::5353".parse().unwrap());
        c6.dns_host = c6.follow.dns_host;
        let mut live = Live::new(&conf);
        let r = parse_resolv_conf("nameserver 198.51.100.7\nnameserver 2001:db8::99\n");
        let changed = apply(&conf, &mut live, &r);
        let l4 = live.ip4.as_ref().unwrap();
        assert_eq!(l4.dns, ["198.51.100.7".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(l4.dns_host, Some("198.51.100.7".parse().unwrap()));
        let l6 = live.ip6.as_ref().unwrap();
        assert_eq!(l6.dns, ["2001:db8::99".parse::<Ipv6Addr>().unwrap()]);
        // --dns-host stays.
        assert_eq!(l6.dns_host, Some("2001:db8::5353".parse().unwrap()));
        assert!(changed.ra);

        // No nameserver at all: nothing changes.
        let before = live.clone();
        assert_eq!(
            apply(&conf, &mut live, &ResolvConf::default()),
            Changed::default()
        );
        assert_eq!(live, before);

        // -D (no following): nothing changes.
        conf.ip4.as_mut().unwrap().follow.dns = false;
        let r = parse_resolv_conf("nameserver 203.0.113.1\n");
        apply(&conf, &mut live, &r);
        assert_eq!(live.ip4, before.ip4);
    }

    #[test]
    fn paths() {
        assert_eq!(
            normalize(Path::new("/etc/../run/systemd/./resolve/stub-resolv.conf")),
            PathBuf::from("/run/systemd/resolve/stub-resolv.conf")
        );
        let (d, n) = split(Path::new("/etc/resolv.conf")).unwrap();
        assert_eq!(
            (d, n.as_os_str()),
            (Path::new("/etc"), "resolv.conf".as_ref())
        );
    }
}
