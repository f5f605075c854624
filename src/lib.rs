//! passt-rs: user-mode networking for virtual machines (passt) and network
//! namespaces (pasta), without a TCP/IP stack.

pub mod arp;
pub mod conf;
pub mod ndp;
pub mod wire;
