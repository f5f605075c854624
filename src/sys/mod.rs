//! The thin system-call layer: every `unsafe` block of passt-rs lives here.
//!
//! Most system calls go through `rustix`, which is safe. What it does not
//! wrap (the tun ioctl, `fork`, `execvp`, signal masks and `signalfd`,
//! `_exit`) is wrapped here in small functions, each `unsafe` block with a
//! `// SAFETY:` comment naming the invariant it relies on. Callers get safe
//! functions returning `std::io::Result`.

pub mod alloc;
pub(crate) mod net;
pub(crate) mod process;
pub(crate) mod splice;
pub(crate) mod tcp;
pub(crate) mod tun;
pub(crate) mod udp;

pub(crate) use net::*;
pub(crate) use process::*;
pub(crate) use splice::*;
pub(crate) use tcp::*;
pub(crate) use tun::*;
