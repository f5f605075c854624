//! Fuzz entry points for the data path: frames in, frames and socket data out.
