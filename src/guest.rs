//! What we learn about the guest from its frames.
//!
//! The event loop ([`crate::ctx`]) updates it from every frame the guest
//! sends; the forwarding decisions ([`crate::fwd`]) and the protocols read
//! it (the guest's MAC for the frames we build, the addresses it uses as
//! the destination of inbound flows). It sits below both so that neither
//! has to import the loop.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::Mac;

/// What we learned about the guest from its frames.
#[derive(Clone, Debug)]
pub(crate) struct GuestState {
    /// The guest's MAC address (broadcast until learned).
    pub(crate) mac: Mac,
    /// Last IPv4 source address the guest used.
    pub(crate) addr4_seen: Option<Ipv4Addr>,
    /// Last global IPv6 source address the guest used.
    pub(crate) addr6_seen: Option<Ipv6Addr>,
    /// Last link-local IPv6 source address the guest used.
    pub(crate) addr6_ll_seen: Option<Ipv6Addr>,
}
