//! Fuzz entry points for the parsers a guest or a peer reaches.
