//! Giving up what we do not need, once set up.
//!
//! At start, before anything is opened, every inherited descriptor above
//! the standard streams is closed, but the `--fd` one ([`close_inherited`]).
//! By the time the event loop starts, everything that needs privileges or
//! the filesystem is open: the tap (or QEMU socket), the PID and log files,
//! `/dev/null` for daemonizing, the namespace descriptors. Then:
//!
//! 1. identity: started as root in the initial user namespace, we switch
//!    to `--runas` or `nobody`, as upstream does: in pasta spawn mode too,
//!    where the user namespace maps every id to itself, so that its root
//!    is the system's root (which could signal or trace root's processes
//!    with no capability at all); otherwise the identity stays;
//! 2. user namespace (passt only, [`own_userns`]): a new one, whose maps
//!    send our own uid and gid to themselves. It gives us every capability
//!    over namespaces it owns and none over anything else: what we need
//!    for the next step, root or not. pasta already lives in the user
//!    namespace of the one it serves (or, root attaching to a namespace of
//!    the initial one, keeps the capabilities listed below);
//! 3. namespaces and filesystem ([`detach_filesystem`]): new mount, IPC
//!    and UTS namespaces, and a new PID namespace for the daemon (passt,
//!    and pasta when it forks to the background: a foreground pasta still
//!    creates threads, which must stay in their PID namespace); the new
//!    root is an empty, read-only tmpfs (`pivot_root`, the old root
//!    detached). Never the network namespace: our sockets are the host's;
//! 4. capabilities: pasta keeps only `CAP_NET_ADMIN`, `CAP_SYS_ADMIN` (to
//!    enter the namespace again for later work) and `CAP_NET_BIND_SERVICE`,
//!    plus, in spawn mode (in the user namespace it created), `CAP_KILL`
//!    (the parent-death signal of the spawned command is checked against
//!    it);
//!    passt keeps none; the bounding, inheritable and ambient sets are
//!    emptied;
//! 5. `PR_SET_NO_NEW_PRIVS` and not dumpable.
//!
//! Each step that fails is logged at debug level and skipped: where no
//! user namespace can be created, an unprivileged passt stays attached to
//! the filesystem, with nothing to give up.

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

/// True if our uid 0 is uid 0 of the parent user namespace too: pasta,
/// started as root, in the namespace it spawned (identity maps).
fn root_of_parent() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| {
            m.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 3 && f[0] == "0" && f[1] == "0"
            })
        })
        .unwrap_or(false)
}

/// Switches identity if we run as root in the initial user namespace, or
/// as a root that is also the initial one's (in the user namespace pasta
/// spawned): root there could still signal or trace root's processes.
pub(crate) fn switch_user(conf: &Config) {
    let euid = rustix::process::geteuid().as_raw();
    if let Some((uid, gid)) = conf.runas {
        apply_ids(conf, uid, gid);
        return;
    }
    if euid != 0 || !(in_init_userns() || root_of_parent()) {
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
        let spawned_userns = conf.pasta.as_ref().is_some_and(|p| {
            !p.netns_only && matches!(p.target, crate::conf::NsTarget::Spawn { .. })
        });
        if spawned_userns {
            // Over the processes of the user namespace we serve, only: the
            // command's parent-death signal checks it, once we are no
            // longer its uid.
            set.insert(Capability::CAP_KILL);
        }
    }
    set
}

/// Drops capabilities to what the mode needs at run time.
pub(crate) fn drop_caps(conf: &Config) {
    let keep = kept_caps(conf);
    let permitted = caps::read(None, CapSet::Permitted).unwrap_or_default();
    // Dropping from the bounding set needs CAP_SETPCAP in effect.
    let _ = caps::set(None, CapSet::Effective, &permitted);
    for cap in caps::all() {
        if !keep.contains(&cap) {
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    let _ = caps::clear(None, CapSet::Ambient);
    let _ = caps::clear(None, CapSet::Inheritable);
    let keep: CapsHashSet = keep.intersection(&permitted).copied().collect();
    if let Err(e) = caps::set(None, CapSet::Effective, &keep) {
        log::debug!("Can't set effective capabilities: {e}");
    }
    if let Err(e) = caps::set(None, CapSet::Permitted, &keep) {
        log::debug!("Can't set permitted capabilities: {e}");
    }
}

/// Closes inherited descriptors above the standard streams, but `keep`
/// (`--fd`). Must run first, before we open anything.
pub(crate) fn close_inherited(keep: Option<i32>) {
    let keep = keep.and_then(|k| u32::try_from(k).ok());
    if let Err(e) = sys::close_from(3, keep) {
        log::debug!("Can't close inherited files: {e}");
    }
}

/// passt: moves into a new user namespace mapping our ids to themselves.
/// Only while single-threaded.
pub(crate) fn own_userns(conf: &Config) {
    if conf.mode != Mode::Passt {
        return;
    }
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    if let Err(e) = sys::unshare(UnshareFlags::NEWUSER) {
        log::debug!("Can't create a user namespace: {e}");
        return;
    }
    // A uid change left us not dumpable, and /proc/self then belongs to
    // root: become dumpable to write the maps (lock_down undoes it).
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable);
    let maps = [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("{uid} {uid} 1")),
        ("/proc/self/gid_map", format!("{gid} {gid} 1")),
    ];
    for (path, data) in maps {
        if let Err(e) = std::fs::write(path, data) {
            log::debug!("Can't write {path}: {e}");
        }
    }
}

/// Detaches from everything but the network: new mount, IPC, UTS (and,
/// unless a foreground pasta, PID) namespaces, the root an empty read-only
/// tmpfs. Only while single-threaded, before daemonizing.
pub(crate) fn detach_filesystem(conf: &Config) {
    use rustix::mount::{
        mount, mount_change, unmount, MountFlags, MountPropagationFlags, UnmountFlags,
    };
    let mut flags = UnshareFlags::NEWNS | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    if conf.mode == Mode::Passt || !conf.foreground {
        flags |= UnshareFlags::NEWPID;
    }
    if let Err(e) = sys::unshare(flags) {
        log::debug!("Can't detach the filesystem (namespaces): {e}");
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
pub(crate) fn lock_down() {
    let _ = rustix::thread::set_no_new_privs(true);
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}
