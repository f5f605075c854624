//! passt-rs: user-mode networking for virtual machines (passt) and network
//! namespaces (pasta), without a TCP/IP stack.

pub mod conf;
pub mod dhcp;
pub mod dhcpv6;
pub mod dns_name;
