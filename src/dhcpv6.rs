//! Built-in DHCPv6 server (work in progress).
