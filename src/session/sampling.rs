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

/// When the next tick is due: one period after the last, or (when the machine was too busy to
/// keep up) one period from now, never a burst to catch up. `true`: that tick came late.
pub(super) fn next_tick(scheduled: Instant, period: Duration, now: Instant) -> (Instant, bool) {
    let next = scheduled + period;
    if next < now {
        (now + period, true)
    } else {
        (next, false)
    }
}
