//! pyroscope's own log lines, on stderr (the child's stdout stays untouched), and a rate limiter
//! for errors that could repeat at the sampling rate.

use crate::cli::LogLevel;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct StderrLogger;

/// The crates whose lines are shown (see [`crate::runtimes::log_targets`]).
static OURS: OnceLock<Vec<&'static str>> = OnceLock::new();

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
            && ours(OURS.get().map_or(&[][..], Vec::as_slice), metadata.target())
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        // One write per line so lines from several threads don't interleave.
        let line = format!("[pyroscope] {level}: {}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Only our crates log; libraries (py-spy, rbspy, spytools, reqwest...) would flood stderr.
fn ours(crates: &[&str], target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    crates.contains(&krate)
}

/// Installs the logger. `--no-logging` silences everything; fatal errors are printed by `main`.
pub fn init(level: LogLevel, no_logging: bool) {
    let _ = OURS.set(crate::runtimes::log_targets());
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if no_logging {
        log::LevelFilter::Off
    } else {
        match level {
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Error => log::LevelFilter::Error,
        }
    });
}

/// Lets a message through at most once per `every`, and says how many were held back.
pub struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(every: Duration) -> Self {
        RateLimit {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a message may be logged now, with `n` messages suppressed since the last.
    pub fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_crates_log() {
        let crates = crate::runtimes::log_targets();
        let ours = |t: &str| ours(&crates, t);
        assert!(ours(module_path!()));
        assert!(ours("pyroscope::session"));
        assert!(ours("spy::procfs"));
        // Every spy's lines, whatever the runtime: the registry names their crates.
        for runtime in crate::runtimes::all() {
            assert!(ours(runtime.log_target()), "{}", runtime.spy_name());
            assert!(ours(&format!("{}::module", runtime.log_target())));
        }
        // Libraries the spies and the uploader use.
        for library in [
            "spytools::process",
            "remoteprocess::linux",
            "goblin::elf",
            "reqwest::connect",
        ] {
            assert!(!ours(library), "{library}");
        }
    }

    #[test]
    fn rate_limit_counts_suppressed() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.check(), Some(0));
        assert_eq!(r.check(), None);
        assert_eq!(r.check(), None);
        r.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(r.check(), Some(2));
    }
}
