//! passt-rs

pub mod conf;
pub mod dhcp;
pub mod dhcpv6;
pub mod dns_name;
pub mod netlink;
