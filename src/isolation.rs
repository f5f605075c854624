//! Giving up what we do not need, once set up.
//!
//! By the time the event loop starts, everything that needs privileges or
//! the filesystem is open: the tap (or QEMU socket), the PID and log files,
//! the namespace descriptors. Then:
//!
//! 1. identity: started as root in the initial user namespace (attach mode
//!    or passt), we switch to `--runas` or `nobody`, as upstream does;
//!    otherwise the identity stays (in pasta spawn mode we already live in
//!    the new user namespace, where our capabilities reach nothing else);
//! 2. capabilities: pasta keeps only `CAP_NET_ADMIN`, `CAP_SYS_ADMIN` (to
//!    enter the namespace again for later work) and `CAP_NET_BIND_SERVICE`;
//!    passt keeps none; the bounding, inheritable and ambient sets are
//!    emptied;
//! 3. filesystem: a new mount namespace whose root is an empty, read-only
//!    tmpfs, when we have the capability for it;
//! 4. `PR_SET_NO_NEW_PRIVS` and not dumpable.
//!
//! Each step that fails for lack of privilege is logged at debug level and
//! skipped: an unprivileged passt has nothing to give up.

use caps::{CapSet, Capability, CapsHashSet};
use rustix::thread::UnshareFlags;

use crate::conf::{Config, Mode};
use crate::sys;

/// True if we are in the initial user namespace, which has the fixed
/// inode number PROC_USER_INIT_INO.
fn in_init_userns() -> bool {
    rustix::fs::stat("/proc/self/ns/user")
        .map(|s| s.st_ino == 0xEFFF_FFFD)
        .unwrap_or(false)
}

/// Switches identity if we run as root in the initial user namespace.
pub fn switch_user(conf: &Config) {
    let euid = rustix::process::geteuid().as_raw();
    if let Some((uid, gid)) = conf.runas {
        apply_ids(conf, uid, gid);
        return;
    }
    if euid != 0 || !in_init_userns() {
        return;
    }
    let (uid, gid) = sys::lookup_user("nobody").unwrap_or((65534, 65534));
    log::info!("Started as root, will change to nobody.");
    apply_ids(conf, uid, gid);
}

fn apply_ids(conf: &Config, uid: u32, gid: u32) {
    let keep = kept_caps(conf);
    // Keep permitted capabilities across the uid change.
    let _ = rustix::thread::set_keep_capabilities(true);
    let _ = sys::clear_groups();
    if let Err(e) = sys::set_ids(uid, gid) {
        log::warn!("Can't switch to uid {uid}, gid {gid}: {e}");
        return;
    }
    let _ = rustix::thread::set_keep_capabilities(false);
    let _ = caps::set(None, CapSet::Effective, &keep);
}

fn kept_caps(conf: &Config) -> CapsHashSet {
    let mut set = CapsHashSet::new();
    if conf.mode == Mode::Pasta {
        set.insert(Capability::CAP_NET_ADMIN);
        set.insert(Capability::CAP_SYS_ADMIN);
        set.insert(Capability::CAP_NET_BIND_SERVICE);
    }
    set
}

/// Drops capabilities to what the mode needs at run time.
pub fn drop_caps(conf: &Config) {
    let keep = kept_caps(conf);
    for cap in caps::all() {
        if !keep.contains(&cap) {
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    let _ = caps::clear(None, CapSet::Ambient);
    let _ = caps::clear(None, CapSet::Inheritable);
    let permitted = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let keep: CapsHashSet = keep.intersection(&permitted).copied().collect();
    if let Err(e) = caps::set(None, CapSet::Effective, &keep) {
        log::debug!("Can't set effective capabilities: {e}");
    }
    if let Err(e) = caps::set(None, CapSet::Permitted, &keep) {
        log::debug!("Can't set permitted capabilities: {e}");
    }
}

/// Detaches from the filesystem: a new mount namespace rooted in an empty
/// read-only tmpfs. Only while single-threaded.
pub fn detach_filesystem() {
    use rustix::mount::{
        mount, mount_change, unmount, MountFlags, MountPropagationFlags, UnmountFlags,
    };
    if let Err(e) = sys::unshare(UnshareFlags::NEWNS) {
        log::debug!("Can't detach the filesystem (mount namespace): {e}");
        return;
    }
    let r = (|| -> rustix::io::Result<()> {
        mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?;
        mount(
            "",
            "/tmp",
            "tmpfs",
            MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::NOSUID | MountFlags::RDONLY,
            Some(c"nr_inodes=2,nr_blocks=0"),
        )?;
        rustix::process::chdir("/tmp")?;
        rustix::process::pivot_root(".", ".")?;
        unmount(".", UnmountFlags::DETACH)?;
        Ok(())
    })();
    if let Err(e) = r {
        log::debug!("Can't detach the filesystem: {e}");
    }
}

/// Last step before the loop: no new privileges, not dumpable.
pub fn lock_down() {
    let _ = rustix::thread::set_no_new_privs(true);
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}
