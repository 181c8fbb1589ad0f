//! When the runtime's sampler runs: always, or in bursts at random times (see [`Sampling`]).

use crate::nettrace::Reader;
use crate::session::{Locked, Publisher, Shared};
use crate::{events, ipc};
use std::sync::{Arc, Mutex};

/// The runtime's sampling interval on .NET Core 3.1 to 10 by default (fixed before 10).
const RUNTIME_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// Sets the sampler's interval (ms) of .NET 10 and later, read at process start.
pub(crate) const SAMPLING_RATE_ENV: &str = "DOTNET_EventPipeThreadSamplingRate";

/// The interval (ms) closest to `sample_rate` Hz that the runtime accepts (whole ms, ≥ 1).
pub(crate) fn sampling_rate_ms(sample_rate: u32) -> u32 {
    let rate = sample_rate.max(1);
    ((1000 + rate / 2) / rate).max(1)
}

/// The sampler's interval in a runtime of `version` whose environment sets `setting` for
/// [`SAMPLING_RATE_ENV`]: that many ms on .NET 10 and later, 10 ms by default from .NET 11,
/// else 1 ms.
fn runtime_interval(version: Option<&str>, setting: Option<&str>) -> std::time::Duration {
    let major = version
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .unwrap_or(0);
    if major < 10 {
        return RUNTIME_INTERVAL;
    }
    match setting.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(ms) if ms > 0 => std::time::Duration::from_millis(ms),
        _ if major >= 11 => std::time::Duration::from_millis(10),
        _ => RUNTIME_INTERVAL,
    }
}

/// The burst length by default: see [`Sampling`].
const BURST: std::time::Duration = std::time::Duration::from_millis(100);

/// How the runtime's sampler runs.
///
/// It samples every managed thread once per millisecond (fixed from .NET Core 3.1 to 9),
/// suspending them all each time: about 9% of a CPU-bound program's speed. The agent needs far
/// fewer samples (100 a second by default), so the sampler runs in bursts: a session with only
/// the sample profiler, started at random times and stopped after [`BURST`], for the share of
/// time that gives the samples `--sample-rate` asks for (1 ms × 100 Hz = 10%). A sample then
/// stands for its time divided by that share, so the units stay CPU time. The method events
/// that name frames keep coming in one long session.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sampling {
    /// One session with the sampler always on (rates of 500 Hz and more, or
    /// `PYROSCOPE_DOTNET_SAMPLING=always`).
    Always,
    /// Bursts of `length`, covering `share` of the time.
    Bursts {
        length: std::time::Duration,
        share: f64,
    },
}

impl Sampling {
    pub(crate) fn for_process(pid: u32, version: Option<&str>, rate: u32) -> Sampling {
        let setting = spy::procfs::env_var(pid, SAMPLING_RATE_ENV);
        Self::for_runtime(version, setting.as_deref(), rate)
    }

    fn for_runtime(version: Option<&str>, setting: Option<&str>, rate: u32) -> Sampling {
        let share = runtime_interval(version, setting).as_secs_f64() * f64::from(rate);
        let length = std::env::var("PYROSCOPE_DOTNET_BURST_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(BURST, std::time::Duration::from_millis);
        if share >= 0.5 || std::env::var("PYROSCOPE_DOTNET_SAMPLING").as_deref() == Ok("always") {
            Sampling::Always
        } else {
            Sampling::Bursts { length, share }
        }
    }
}

/// Runs the sampler in bursts of `length` at random times, for `share` of the time (see
/// [`Sampling`]), until the spy closes or the runtime goes away.
pub(crate) fn run_bursts(
    pid: u32,
    socket: &std::path::Path,
    length: std::time::Duration,
    share: f64,
    publisher: &Arc<Mutex<Publisher>>,
    shared: &Arc<Mutex<Shared>>,
) {
    let mut rng = fastrand::Rng::new();
    // Time is cut in cycles of `length / share` (1 s for 100 ms at 10%), and each cycle has one
    // burst starting at a random point of it: bursts start at random times, so that nothing
    // periodic in the program lines up with them, and every window of time gets its share.
    let cycle = length.div_f64(share);
    let mut cycle_start = std::time::Instant::now();
    let closing = || {
        let s = shared.lock().expect("not poisoned");
        s.closing || s.ended.is_some()
    };
    loop {
        // A cycle missed (the machine was too busy) is skipped, not caught up with bursts back
        // to back, which would sample more than the share.
        let now = std::time::Instant::now();
        if cycle_start + cycle <= now {
            cycle_start = now;
        }
        let start = cycle_start + (cycle - length).mul_f64(rng.f64());
        cycle_start += cycle;
        while std::time::Instant::now() < start {
            if closing() {
                return;
            }
            std::thread::sleep((start - std::time::Instant::now()).min(BURST));
        }
        if closing() {
            return;
        }
        let asked = std::time::Instant::now();
        let (stream, session) =
            match ipc::collect_tracing(socket, 16, false, &events::SAMPLER_PROVIDERS) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("process {pid}: a sampling burst could not start: {e}");
                    if !spy::procfs::alive(pid) {
                        return;
                    }
                    continue;
                }
            };
        // The long session carries no samples in this mode: what the collector counts from here
        // on is this burst's.
        let samples_before = {
            let mut p = publisher.lock().expect("not poisoned");
            p.collector.begin_burst(1.0 / share);
            p.collector.stats.samples
        };
        {
            let mut s = shared.lock().expect("not poisoned");
            s.burst_session = Some(session);
            s.burst_start += asked.elapsed();
        }
        let stop_socket = socket.to_path_buf();
        let stopper = std::thread::Builder::new()
            .name(format!("dotnet-{pid}-stop"))
            .spawn(move || {
                std::thread::sleep(length);
                let asked = std::time::Instant::now();
                ipc::stop_tracing(&stop_socket, session).map(|()| asked.elapsed())
            });
        let result = Reader::new(std::io::BufReader::new(stream)).run(&mut Locked(publisher));
        let samples = publisher
            .lock()
            .expect("not poisoned")
            .collector
            .stats
            .samples;
        log::debug!(
            "process {pid}: a burst brought {} samples",
            samples - samples_before
        );
        let stopped = match stopper.map(|s| s.join()) {
            Ok(Ok(Ok(took))) => took,
            Ok(Ok(Err(e))) => {
                log::debug!("process {pid}: StopTracing of a burst: {e}");
                std::time::Duration::ZERO
            }
            _ => std::time::Duration::ZERO,
        };
        let mut s = shared.lock().expect("not poisoned");
        s.burst_stop += stopped;
        s.burst_session = None;
        s.bursts += 1;
        if let Err(e) = result {
            log::debug!("process {pid}: a sampling burst ended with {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3.1 to 9 sample every millisecond: bursts at 100 Hz. .NET 10 given the agent's rate, and
    /// .NET 11 by default, sample every 10 ms: the sampler stays on.
    #[test]
    fn sampling_follows_the_runtimes_interval() {
        assert_eq!(sampling_rate_ms(100), 10);
        assert_eq!(sampling_rate_ms(250), 4);
        assert_eq!(sampling_rate_ms(3), 333);
        assert_eq!(sampling_rate_ms(5000), 1);
        let bursts = |v, s, r| matches!(Sampling::for_runtime(v, s, r), Sampling::Bursts { .. });
        let share = |v, s, r| match Sampling::for_runtime(v, s, r) {
            Sampling::Bursts { share, .. } => share,
            Sampling::Always => 1.0,
        };
        assert!((share(Some("3.1.23"), None, 100) - 0.1).abs() < 1e-9);
        assert!(
            (share(Some("9.0.1"), Some("10"), 100) - 0.1).abs() < 1e-9,
            "ignored before 10"
        );
        assert!(!bursts(Some("3.1.23"), None, 500));
        assert!(!bursts(Some("10.0.2"), Some("10"), 100));
        assert!(bursts(Some("10.0.2"), None, 100));
        assert!(!bursts(Some("11.0.0"), None, 100));
        assert!(bursts(Some("11.0.0"), Some("1"), 100));
        assert!(bursts(None, None, 100));
    }
}
