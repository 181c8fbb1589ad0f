//! What the session counts, and the end-of-run summary it prints.

use crate::pipeline::upload::UploadStats;
use crate::pipeline::window::describe_window;
use std::time::Duration;

/// Counts over the whole run.
#[derive(Default, Debug)]
pub(super) struct Stats {
    pub ticks: u64,
    /// Samples taken of one process.
    pub process_samples: u64,
    /// Stacks those samples held (one per on-CPU thread).
    pub stacks: u64,
    pub errors: u64,
    pub panics: u64,
    /// Ticks that came too late (the machine was busy) and were skipped.
    pub late: u64,
    /// Reads done while the target was paused (blocking mode).
    pub paused_reads: u64,
    /// `process_vm_readv` calls of the samples whose spy counts them, and those samples.
    pub memory_reads: u64,
    pub counted_samples: u64,
}

/// The summary line: samples, stacks, errors, and what the agent's CPU time came to.
pub(super) fn summary(stats: &Stats, blocking: bool) {
    let usage = cpu_time();
    let per_sample = match stats.process_samples {
        0 => String::new(),
        n => format!(
            ", {:.1} µs per sample",
            usage.as_secs_f64() * 1e6 / n as f64
        ),
    };
    let paused = match stats.paused_reads {
        0 if !blocking => String::new(),
        n => format!(", {n} read with the target paused"),
    };
    let reads = match stats.counted_samples {
        0 => String::new(),
        n => format!(
            ", {:.1} process_vm_readv per sample",
            stats.memory_reads as f64 / n as f64
        ),
    };
    log::info!(
        "{} samples of {} stacks taken ({} errors, {} spy panics, {} late ticks{paused}); agent CPU {:.1} ms{per_sample}{reads}",
        stats.process_samples,
        stats.stacks,
        stats.errors,
        stats.panics,
        stats.late,
        usage.as_secs_f64() * 1e3,
    );
}

/// `--trigger-cpu`: how many captures, how long in all, and the sampling rate reached in
/// them and out of them: process samples per second, and the stacks they gave (threads on
/// CPU; a busy thread gives at most the kernel's tick rate, see the README).
pub(super) fn trigger(t: &super::trigger::Trigger) {
    let per_second = |n: u64, d: Duration| match d.as_secs_f64() {
        s if s > 0.0 => format!("{:.0}", n as f64 / s),
        _ => "-".into(),
    };
    let out = t.run_time().saturating_sub(t.captured);
    log::info!(
        "CPU trigger: {} capture{}, {:.1} s in all, {} samples per second in them, {} out of them; stacks per second {} in them, {} out of them",
        t.captures,
        if t.captures == 1 { "" } else { "s" },
        t.captured.as_secs_f64(),
        per_second(t.samples_in, t.captured),
        per_second(t.samples_out, out),
        per_second(t.stacks_in, t.captured),
        per_second(t.stacks_out, out),
    );
}

/// Nothing was profiled, and no error said why: say so (`runtimes`: "Python, Ruby or .NET").
pub(super) fn nothing_found(runtimes: &str) {
    log::warn!("no {runtimes} process was found to profile");
}

/// How the uploads went: what was sent, and exactly what was lost or left for the next run.
pub(super) fn uploads(stats: &UploadStats) {
    log::info!("uploaded {} profiles", stats.uploaded);
    if let Some(why) = stats.cut_short {
        log::warn!(
            "the final upload was cut short ({why}, budget {} s)",
            crate::pipeline::FINAL_UPLOAD_BUDGET.as_secs()
        );
    }
    if stats.rejected > 0 {
        log::warn!("{} profiles were rejected by the server", stats.rejected);
    }
    if stats.dropped > 0 {
        let mut windows = stats.dropped_windows.clone();
        windows.sort();
        let shown: Vec<String> = windows
            .iter()
            .take(5)
            .map(|w| describe_window(*w))
            .collect();
        let more = if windows.len() > 5 {
            format!(" and {} more", windows.len() - 5)
        } else {
            String::new()
        };
        log::warn!(
            "{} profiles were dropped, not uploaded: {}{more}",
            stats.dropped,
            shown.join(", ")
        );
    }
    if stats.spooled > 0 {
        log::info!(
            "{} profiles wait in --spool-dir for the next run",
            stats.spooled
        );
    }
}

/// CPU time (user + system) pyroscope has used so far.
pub fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
