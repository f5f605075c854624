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
    if let Some(path) = file {
        let mut f = File::options()
            .create(true)
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

fn rotate(f: &mut File, limit: u64) -> std::io::Result<()> {
    use std::io::Read;
    let len = f.seek(SeekFrom::End(0))?;
    let cut = len.saturating_sub(limit * 7 / 10);
    let mut rest = Vec::new();
    f.seek(SeekFrom::Start(cut))?;
    f.read_to_end(&mut rest)?;
    let start = rest
        .iter()
        .position(|&b| b == b'\n')
        .map_or(rest.len(), |p| p + 1);
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    writeln!(f, "log truncated at {len} bytes")?;
    f.write_all(&rest[start..])?;
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
                let msg = format!(
                    "<{pri}>{}[{}]: {}",
                    self.ident,
                    std::process::id(),
                    record.args()
                );
                let _ = s.send(msg.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
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
