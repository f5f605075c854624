//! passt-rs

pub mod arp;
pub mod conf;
pub mod dhcp;
pub mod dhcpv6;
pub mod dns_name;
pub mod ndp;
pub mod netlink;
pub mod wire;
