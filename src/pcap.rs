//! `--pcap FILE`: a capture of every frame between us and the guest, both
//! directions, in the classic pcap format (version 2.4, Ethernet link
//! type, microsecond timestamps, snapshot length 65535), readable by
//! tcpdump and Wireshark. The file is opened at start, before privileges
//! are dropped; a write error stops the capture, never the traffic.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

const MAGIC: u32 = 0xa1b2_c3d4;
const SNAPLEN: u32 = 65535;
const LINKTYPE_ETHERNET: u32 = 1;

/// An open capture file.
pub(crate) struct Pcap {
    file: Option<File>,
}

impl Pcap {
    /// Creates (truncates) the capture file and writes its header.
    pub(crate) fn open(path: &Path) -> io::Result<Pcap> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
        h[4..6].copy_from_slice(&2u16.to_ne_bytes());
        h[6..8].copy_from_slice(&4u16.to_ne_bytes());
        h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        file.write_all(&h)?;
        Ok(Pcap { file: Some(file) })
    }

    /// Appends one frame.
    pub(crate) fn record(&mut self, frame: &[u8]) {
        let Some(f) = self.file.as_mut() else { return };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let len = frame.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(now.as_secs() as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&now.subsec_micros().to_ne_bytes());
        h[8..12].copy_from_slice(&(len as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        let bufs = [IoSlice::new(&h), IoSlice::new(&frame[..len])];
        match f.write_vectored(&bufs) {
            Ok(n) if n == h.len() + len => {}
            r => {
                log::warn!("pcap: capture stopped: {r:?}");
                self.file = None;
            }
        }
    }
}
