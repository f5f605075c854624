//! Logging sink for the `log` facade: stderr, a log file, or syslog.
//!
//! Before the configuration is known everything goes to stderr. Then:
//! - `-d`/`--trace`: debug (trace) level on stderr, each line prefixed with
//!   the time since start as `S.ffff`;
//! - default: info and above to syslog (`/dev/log`, facility daemon, ident
//!   passt/pasta), and to stderr while we are in the foreground;
//! - `-q`: warnings and errors only;
//! - `-l FILE`: only to the file, lines `S.ffff: LEVEL: message`, opened at
//!   start with a header line; `--log-size` bounds it by cutting the oldest
//!   part (the whole file is rewritten from its newer half).
//!
//! The `log` crate needs one process-wide logger, the only global in
//! passt-rs; it holds its mutable parts (file, syslog socket, whether stderr
//! is still ours) behind a mutex that only logging takes.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::conf::LogLevel;

struct Sink {
    stderr: bool,
    file: Option<File>,
    file_size: u64,
    file_limit: u64,
    syslog: Option<UnixDatagram>,
    /// Our PID for syslog lines, read when configured and after
    /// daemonizing, not per line (`getpid` is not in the seccomp lists).
    pid: u32,
}

struct Logger {
    start: Instant,
    ident: &'static str,
    sink: Mutex<Sink>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger, logging to stderr at info level, for the time
/// before the command line is parsed.
pub(crate) fn init_early(ident: &'static str) {
    let logger = LOGGER.get_or_init(|| Logger {
        start: Instant::now(),
        ident,
        sink: Mutex::new(Sink {
            stderr: true,
            file: None,
            file_size: 0,
            file_limit: 0,
            syslog: None,
            pid: 0,
        }),
    });
    let _ = log::set_logger(logger);
    log::set_max_level(LevelFilter::Info);
}

/// Sets the level alone (before the destinations are known).
pub(crate) fn set_level(level: LogLevel) {
    log::set_max_level(filter(level));
}

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Quiet => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

/// Applies the configured level and destinations.
pub(crate) fn configure(level: LogLevel, file: Option<&Path>, size: u64) -> std::io::Result<()> {
    log::set_max_level(filter(level));
    let Some(logger) = LOGGER.get() else {
        return Ok(());
    };
    let mut sink = logger.sink.lock().unwrap_or_else(|e| e.into_inner());
    sink.pid = std::process::id();
    if let Some(path) = file {
        // Read too: rotation moves the newest lines to the front.
        let mut f = File::options()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let header = format!(
            "{} {}: {} ({})\n",
            logger.ident,
            crate::conf::VERSION,
            exe,
            std::process::id()
        );
        f.write_all(header.as_bytes())?;
        sink.file_size = header.len() as u64;
        sink.file_limit = size.max(64 * 1024);
        sink.file = Some(f);
        sink.stderr = false;
    } else if level < LogLevel::Debug {
        if let Ok(s) = UnixDatagram::unbound() {
            if s.connect("/dev/log").is_ok() {
                sink.syslog = Some(s);
            }
        }
    }
    Ok(())
}

/// Stops writing to stderr (after daemonizing, or once pasta's command owns
/// the terminal), unless debugging.
pub(crate) fn stop_stderr() {
    if log::max_level() >= LevelFilter::Debug {
        return;
    }
    if let Some(logger) = LOGGER.get() {
        logger.sink.lock().unwrap_or_else(|e| e.into_inner()).stderr = false;
    }
}

/// Our PID changed (the daemonized child): syslog lines carry the new one.
pub(crate) fn forked() {
    if let Some(logger) = LOGGER.get() {
        logger.sink.lock().unwrap_or_else(|e| e.into_inner()).pid = std::process::id();
    }
}

/// Flushes the log file to disk (at exit).
pub(crate) fn sync() {
    if let Some(logger) = LOGGER.get() {
        let sink = logger.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &sink.file {
            let _ = f.sync_all();
        }
    }
}

fn tag(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR:   ",
        Level::Warn => "WARNING: ",
        Level::Info => "info:    ",
        Level::Debug | Level::Trace => "         ",
    }
}

impl Sink {
    fn write_file(&mut self, line: &str) {
        let Some(f) = self.file.as_mut() else { return };
        if self.file_size + line.len() as u64 > self.file_limit {
            // Keep the newest ~70 %, starting at a line boundary.
            let _ = rotate(f, self.file_limit);
            self.file_size = f.seek(SeekFrom::End(0)).unwrap_or(0);
        }
        if f.write_all(line.as_bytes()).is_ok() {
            self.file_size += line.len() as u64;
        }
    }
}

/// Cuts the oldest part of the log file: keeps the newest ~70 % of `limit`,
/// from a line boundary, moved to the front after a header line. Copies
/// through a fixed buffer: no allocation, and no `statx` (which sizing a
/// `read_to_end` buffer would make), as this runs in the filtered loop.
fn rotate(f: &mut File, limit: u64) -> std::io::Result<()> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let len = f.seek(SeekFrom::End(0))?;
    let mut from = len.saturating_sub(limit * 7 / 10);
    // Skip the partial line at the cut.
    f.seek(SeekFrom::Start(from))?;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(p) = buf[..n].iter().position(|&b| b == b'\n') {
            from += p as u64 + 1;
            break;
        }
        from += n as u64;
    }
    let mut header = [0u8; 64];
    let header_len = {
        let mut w = &mut header[..];
        writeln!(w, "log truncated at {len} bytes")?;
        64 - w.len()
    };
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&header[..header_len])?;
    // Writing at `to` never overtakes reading at `from`: the header is
    // much shorter than the part cut (30 % of `limit`, 64 KiB or more),
    // and a cut inside the header would only lose its first bytes.
    let mut to = header_len as u64;
    from = from.max(to);
    while from < len {
        f.seek(SeekFrom::Start(from))?;
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        f.seek(SeekFrom::Start(to))?;
        f.write_all(&buf[..n])?;
        from += n as u64;
        to += n as u64;
    }
    f.set_len(to)?;
    Ok(())
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let t = self.start.elapsed();
        let stamp = format!("{}.{:04}", t.as_secs(), t.subsec_micros() / 100);
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if sink.file.is_some() {
            let line = format!("{stamp}: {}{}\n", tag(record.level()), record.args());
            sink.write_file(&line);
            return;
        }
        let debug = log::max_level() >= LevelFilter::Debug;
        if sink.stderr {
            let line = if debug {
                format!("{stamp}: {}\n", record.args())
            } else {
                format!("{}\n", record.args())
            };
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some(s) = &sink.syslog {
            if record.level() <= Level::Info {
                let pri = match record.level() {
                    Level::Error => 3,
                    Level::Warn => 4,
                    _ => 6,
                } + 3 * 8; // LOG_DAEMON
                let msg = format!("<{pri}>{}[{}]: {}", self.ident, sink.pid, record.args());
                let _ = s.send(msg.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Rate limit for log lines that a guest or a peer can trigger once per
/// frame (a dropped frame, a flow that could not be opened).
///
/// Per kind of line (an index below `N`): the first [`RateLimit::BURST`]
/// lines of each period go out, the rest are only counted, and
/// [`RateLimit::tick`], called once a second from the loop's timer, hands
/// back how many were suppressed, for one summary line per kind. A flood
/// therefore costs at most `BURST + 1` lines per kind and second.
///
/// Plain data owned by a worker's context (no global state), and nothing
/// on its path allocates. Counters of what happened are kept elsewhere,
/// exact; this only decides what is worth a line.
#[derive(Clone, Debug)]
pub(crate) struct RateLimit<const N: usize> {
    logged: [u32; N],
    suppressed: [u64; N],
}

impl<const N: usize> Default for RateLimit<N> {
    fn default() -> Self {
        RateLimit {
            logged: [0; N],
            suppressed: [0; N],
        }
    }
}

impl<const N: usize> RateLimit<N> {
    /// Lines per kind and period before suppression.
    pub(crate) const BURST: u32 = 5;

    /// Whether a line of kind `i` may go out now; if not, it is counted
    /// as suppressed. Kinds out of range are always suppressed.
    pub(crate) fn allow(&mut self, i: usize) -> bool {
        let (Some(logged), Some(suppressed)) = (self.logged.get_mut(i), self.suppressed.get_mut(i))
        else {
            return false;
        };
        if *logged < Self::BURST {
            *logged += 1;
            true
        } else {
            *suppressed += 1;
            false
        }
    }

    /// Ends a period: `report(kind, n)` for each kind with `n` suppressed
    /// lines, then every kind may log again.
    pub(crate) fn tick(&mut self, mut report: impl FnMut(usize, u64)) {
        for (i, n) in self.suppressed.iter_mut().enumerate() {
            if *n > 0 {
                report(i, *n);
                *n = 0;
            }
        }
        self.logged = [0; N];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_bursts_then_summarises() {
        let mut r = RateLimit::<3>::default();
        let allowed = (0..1000).filter(|_| r.allow(1)).count();
        assert_eq!(allowed, RateLimit::<3>::BURST as usize);
        assert!(r.allow(0));
        assert!(!r.allow(3), "out of range");
        let mut reports = Vec::new();
        r.tick(|i, n| reports.push((i, n)));
        assert_eq!(reports, [(1, 1000 - u64::from(RateLimit::<3>::BURST))]);
        // A new period: lines go out again, nothing left to report.
        assert!(r.allow(1));
        reports.clear();
        r.tick(|i, n| reports.push((i, n)));
        assert!(reports.is_empty());
    }
    use std::io::Read;

    #[test]
    fn rotation_keeps_the_newest_whole_lines() {
        let path = std::env::temp_dir().join(format!("passt-rs-log-{}", std::process::id()));
        let mut f = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        for i in 0..1000 {
            writeln!(f, "{i:04}: a line of the log").unwrap();
        }
        let before = f.seek(SeekFrom::End(0)).unwrap();
        rotate(&mut f, 10_000).unwrap();
        let mut text = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut text).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            format!("log truncated at {before} bytes")
        );
        let rest: Vec<&str> = lines.collect();
        assert!(text.len() <= 7_100, "{} bytes kept", text.len());
        assert!(rest.iter().all(|l| l.ends_with(": a line of the log")));
        assert_eq!(*rest.last().unwrap(), "0999: a line of the log");
        let _ = std::fs::remove_file(&path);
    }
}
