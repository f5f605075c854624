//! The thin system-call layer: every `unsafe` block of passt-rs lives here.
//!
//! Most system calls go through `rustix`, which is safe. What it does not
//! wrap (the tun ioctl, `fork`, `execvp`, signal masks and `signalfd`,
//! `_exit`) is wrapped here in small functions, each `unsafe` block with a
//! `// SAFETY:` comment naming the invariant it relies on. Callers get safe
//! functions returning `std::io::Result`.

pub mod net;
pub mod process;
pub mod splice;
pub mod tcp;
pub mod tun;
pub mod udp;

pub use net::*;
pub use process::*;
pub use splice::*;
pub use tcp::*;
pub use tun::*;
