//! One tick: every attached spy is asked for its stacks, paused through the right [`Pauser`]
//! in blocking mode; the stacks go down the pipeline; errors and panics are counted, logged at
//! a bounded rate, and never stop sampling.

use super::isolation::in_spy;
use super::report::Stats;
use super::targets::{TargetState, Targets};
use crate::logging::RateLimit;
use crate::pipeline::Pipeline;
use crate::process::tracer::{Tracer, TracerPauser};
use nix::unistd::Pid;
use spy::{PauseError, Pauser, SampleError, Stack};
use std::time::{Duration, Instant};

/// After this many consecutive panics a spy is rebuilt.
const PANICS_BEFORE_REATTACH: u32 = 5;

pub(super) struct Sampler {
    /// Spies (by name) whose targets are paused while read.
    blocking: Vec<&'static str>,
    /// Reused from sample to sample.
    stacks: Vec<Stack>,
    panic_log: RateLimit,
    pub stats: Stats,
}

impl Sampler {
    pub fn new(blocking: Vec<&'static str>) -> Sampler {
        Sampler {
            blocking,
            stacks: Vec::new(),
            panic_log: RateLimit::new(Duration::from_secs(10)),
            stats: Stats::default(),
        }
    }

    /// Whether blocking mode is on for some spy.
    pub fn blocking(&self) -> bool {
        !self.blocking.is_empty()
    }

    /// Samples every attached target once. Returns the processes whose spy gave up for good
    /// (already reported); they are no longer targets.
    pub fn tick(
        &mut self,
        targets: &mut Targets,
        mut tracer: Option<&mut Tracer>,
        pipeline: &mut Pipeline,
    ) -> Vec<u32> {
        self.stats.ticks += 1;
        let mut failed = Vec::new();
        let pids: Vec<u32> = targets
            .map
            .values()
            .filter(|t| matches!(t.state, TargetState::Active(_)))
            .map(|t| t.pid)
            .collect();
        for pid in pids {
            let mut target = targets.map.remove(&pid).expect("target exists");
            let TargetState::Active(spy) = &mut target.state else {
                unreachable!()
            };
            let spy_name = target.runtime.spy_name();
            let mut stacks = std::mem::take(&mut self.stacks);
            let blocking = self.blocking.contains(&spy_name);
            let traced = tracer
                .as_ref()
                .is_some_and(|t| t.traces(Pid::from_raw(pid as i32)));
            let result = {
                let mut tracer_pauser;
                let mut lock_pauser = RemoteLockPauser;
                let inner: Option<&mut dyn Pauser> = match (blocking, traced) {
                    (false, _) => None,
                    (true, true) => {
                        tracer_pauser = TracerPauser(tracer.as_deref_mut().expect("traced"));
                        Some(&mut tracer_pauser)
                    }
                    (true, false) => Some(&mut lock_pauser),
                };
                let mut counting = inner.map(|inner| CountingPauser { inner, reads: 0 });
                let reads_before = spy.memory_reads();
                let result = in_spy(|| {
                    spy.sample(counting.as_mut().map(|c| c as &mut dyn Pauser), &mut stacks)
                });
                if let (Some(before), Some(after)) = (reads_before, spy.memory_reads()) {
                    self.stats.memory_reads += after.saturating_sub(before);
                    self.stats.counted_samples += 1;
                }
                self.stats.paused_reads += counting.map_or(0, |c| c.reads);
                result
            };
            let mut keep = true;
            target.tries += 1;
            match result {
                Ok(Ok(())) => {
                    target.consecutive_panics = 0;
                    self.stats.process_samples += 1;
                    if !target.sampled {
                        target.sampled = true;
                        log::debug!(
                            "first sample of process {pid} {} ms after it started",
                            target.since.elapsed().as_millis()
                        );
                    }
                    for s in stacks.drain(..) {
                        self.stats.stacks += 1;
                        pipeline.add(s, spy_name);
                    }
                }
                Ok(Err(SampleError::Gone)) => keep = false,
                Ok(Err(SampleError::Fatal(m))) => {
                    log::error!("process {pid} is no longer profiled: {m}");
                    targets.attach_failed = true;
                    keep = false;
                    failed.push(pid);
                }
                Ok(Err(SampleError::Other(m))) => {
                    self.stats.errors += 1;
                    target.failures += 1;
                    if let Some(n) = target.errors.check() {
                        let more = if n > 0 {
                            format!(" ({n} more errors since the last message)")
                        } else {
                            String::new()
                        };
                        let (tries, failures) = (
                            std::mem::take(&mut target.tries),
                            std::mem::take(&mut target.failures),
                        );
                        if tries >= 50 && failures * 10 >= tries {
                            log::warn!("sampling process {pid} failed in {failures} of {tries} samples: {m}{more}");
                        } else {
                            log::debug!("sampling process {pid} failed: {m}{more}");
                        }
                    }
                }
                Err(panic) => {
                    self.stats.panics += 1;
                    target.consecutive_panics += 1;
                    if let Some(n) = self.panic_log.check() {
                        log::error!("spy for process {pid} panicked: {panic} ({n} more panics since the last message); sampling goes on");
                    }
                    if target.consecutive_panics >= PANICS_BEFORE_REATTACH {
                        log::warn!("rebuilding the spy of process {pid} after {PANICS_BEFORE_REATTACH} panics in a row");
                        target.reattach();
                    }
                }
            }
            stacks.clear();
            self.stacks = stacks;
            if keep {
                targets.map.insert(pid, target);
            }
        }
        failed
    }
}

/// Counts the reads a spy did inside a pause (the end-of-run report shows that blocking mode
/// really paused).
struct CountingPauser<'a> {
    inner: &'a mut dyn Pauser,
    reads: u64,
}

impl Pauser for CountingPauser<'_> {
    fn paused(&mut self, pid: u32, read: &mut dyn FnMut()) -> Result<(), PauseError> {
        let mut ran = false;
        let result = self.inner.paused(pid, &mut || {
            ran = true;
            read()
        });
        self.reads += u64::from(ran);
        result
    }
}

/// Pauses through remoteprocess (PTRACE_SEIZE per sample) when the agent is not the tracer.
struct RemoteLockPauser;

impl Pauser for RemoteLockPauser {
    fn paused(&mut self, pid: u32, read: &mut dyn FnMut()) -> Result<(), PauseError> {
        let process = remoteprocess::Process::new(pid as remoteprocess::Pid)
            .map_err(|e| PauseError::Failed(e.to_string()))?;
        let _lock = process
            .lock()
            .map_err(|e| PauseError::Failed(format!("cannot pause process {pid}: {e}")))?;
        read();
        Ok(())
    }
}

/// When to sample. The rate is kept on a grid of slots one period long, and each sample is taken
/// at a random point of its slot. A sampler with a fixed period aliases with work that repeats at
/// a rate near its own: a 5.3 ms loop sampled every 4 ms is only ever seen at four phases, and the
/// split of its CPU between its parts came out anywhere from 2.2:1 to 4.2:1 for a true 3:1. At a
/// random point of each slot every phase is as likely as its share of the time. The CPU a sample
/// carries is its thread's CPU since the previous sample, so uneven gaps change no total.
pub(super) struct Ticks {
    slot: Instant,
    at: Instant,
    period: Duration,
    rng: fastrand::Rng,
}

impl Ticks {
    /// The first sample is taken at once.
    pub(super) fn new(period: Duration, now: Instant) -> Self {
        Ticks {
            slot: now,
            at: now,
            period,
            rng: fastrand::Rng::new(),
        }
    }

    /// When the next sample is due.
    pub(super) fn due(&self) -> Instant {
        self.at
    }

    /// Schedules the sample after the one taken at `now`, at a random point of the next slot, or
    /// (when the machine was too busy and a whole slot passed without a sample) of the slot that
    /// starts now: never a burst to catch up. `true`: this one came late.
    pub(super) fn advance(&mut self, now: Instant) -> bool {
        let mut next = self.slot + self.period;
        let late = next + self.period <= now;
        if late {
            next = now;
        }
        self.slot = next;
        let nanos = self.period.as_nanos() as u64;
        self.at = next + Duration::from_nanos(self.rng.u64(0..nanos.max(1)));
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_slot_at_a_random_point_of_it() {
        let period = Duration::from_millis(4);
        let start = Instant::now();
        let mut ticks = Ticks::new(period, start);
        assert_eq!(ticks.due(), start);
        let mut offsets = Vec::new();
        for k in 1..=2000u32 {
            let now = ticks.due();
            assert!(!ticks.advance(now));
            let slot = start + period * k;
            assert!(ticks.due() >= slot && ticks.due() < slot + period);
            offsets.push((ticks.due() - slot).as_secs_f64() / period.as_secs_f64());
        }
        // Spread over the slot: each quarter holds about a quarter of the samples.
        for q in 0..4 {
            let n = offsets
                .iter()
                .filter(|&&o| o >= q as f64 / 4.0 && o < (q + 1) as f64 / 4.0)
                .count();
            assert!((400..=600).contains(&n), "quarter {q}: {n} of 2000");
        }
    }

    #[test]
    fn a_missed_slot_is_late_and_not_caught_up() {
        let period = Duration::from_millis(10);
        let start = Instant::now();
        let mut ticks = Ticks::new(period, start);
        // Taken 5 periods after it was due: late, and the next comes within a period of now.
        let now = start + period * 5;
        assert!(ticks.advance(now));
        assert!(ticks.due() >= now && ticks.due() < now + period);
        // Taken within the slot after its own: not late.
        let mut ticks = Ticks::new(period, start);
        assert!(!ticks.advance(start + period + period / 2));
    }
}
