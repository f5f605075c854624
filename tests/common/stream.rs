//! The guest's end of passt's stream socket, as QEMU's `-netdev stream`
//! uses it: each frame preceded by its length, 32 bits big-endian.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A guest on passt's socket: frames out, frames in.
pub struct StreamGuest {
    pub s: UnixStream,
    buf: Vec<u8>,
}

impl StreamGuest {
    pub fn new(s: UnixStream) -> StreamGuest {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        StreamGuest { s, buf: Vec::new() }
    }

    /// Connects to passt's socket at `path`, retrying until `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> StreamGuest {
        StreamGuest::new(super::connect_unix(path, timeout))
    }

    /// Sends one frame.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut rec = (frame.len() as u32).to_be_bytes().to_vec();
        rec.extend_from_slice(frame);
        self.s.write_all(&rec)
    }

    /// Sends raw bytes (bad records).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    /// The next frame within `timeout`: `Ok(None)` on timeout, an error
    /// (`UnexpectedEof` when passt closed the connection) otherwise.
    /// Panics on a record length no frame can have.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let end = Instant::now() + timeout;
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                assert!((14..=65535).contains(&len), "bad record length {len}");
                if self.buf.len() >= 4 + len {
                    let f = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Ok(Some(f));
                }
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // A signal (SIGCHLD of another test's child) interrupts
                // the read: try again.
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// True once passt has closed this connection (end of file).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }
}
