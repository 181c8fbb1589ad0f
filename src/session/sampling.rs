//! One tick: every attached spy is asked for its stacks, paused through the right [`Pauser`]
//! in blocking mode; the stacks go down the pipeline; errors and panics are counted, logged at
//! a bounded rate, and never stop sampling.

use super::isolation::in_spy;
use super::report::Stats;
use super::targets::{TargetState, Targets};
use crate::logging::RateLimit;
use crate::pipeline::Pipeline;
use crate::process::pause::{AttachPauser, TracerPauser};
use crate::process::tracer::Tracer;
use nix::unistd::Pid;
use spy::pause::Quiet;
use spy::{PauseError, Pauser, SampleError, Stack};
use std::time::{Duration, Instant};

/// After this many consecutive panics a spy is rebuilt.
const PANICS_BEFORE_REATTACH: u32 = 5;

pub(super) struct Sampler {
    /// Spies (by name) whose targets are paused while read.
    blocking: Vec<&'static str>,
    /// Reused from sample to sample.
    stacks: Vec<Stack>,
    /// Which threads a pause may leave running (blocking mode).
    quiet: Quiet,
    panic_log: RateLimit,
    pub stats: Stats,
}

impl Sampler {
    pub fn new(blocking: Vec<&'static str>) -> Sampler {
        Sampler {
            blocking,
            stacks: Vec::new(),
            quiet: Quiet::default(),
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
        let pids: Vec<u32> = targets.active().collect();
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
                let mut attach_pauser;
                let inner: Option<&mut dyn Pauser> = match (blocking, traced) {
                    (false, _) => None,
                    (true, true) => {
                        tracer_pauser = TracerPauser {
                            tracer: tracer.as_deref_mut().expect("traced"),
                            quiet: &mut self.quiet,
                        };
                        Some(&mut tracer_pauser)
                    }
                    (true, false) => {
                        attach_pauser = AttachPauser(&mut self.quiet);
                        Some(&mut attach_pauser)
                    }
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
                        pipeline.add(s, spy_name, pid);
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

/// When to sample: each sample a random time after the one before, between half a period and
/// one and a half (a mean of one period). A sampler with a fixed period aliases with work that
/// repeats at a related rate: a loop of 3 ms in one function and 1 ms in another every 4 ms,
/// sampled at 250 Hz, was given wholly to one of them. Random points on a fixed grid are not
/// enough once a sample weighs the CPU time since the sample before: the gap before a sample
/// late in its slot is longer, so the parts of such a loop that come later in the period weigh
/// more (that loop came out 1.9:1, not 3:1). With independent random gaps, where a sample falls
/// in the loop does not depend on the gap before it, and both counts and CPU time are fair.
pub(super) struct Ticks {
    at: Instant,
    period: Duration,
    rng: fastrand::Rng,
}

impl Ticks {
    /// The first sample is taken at once.
    pub(super) fn new(period: Duration, now: Instant) -> Self {
        Ticks {
            at: now,
            period,
            rng: fastrand::Rng::new(),
        }
    }

    /// Samples at a new rate from `now` on (`--trigger-cpu`): the next sample is due within
    /// the new period when it was due later.
    pub(super) fn set_period(&mut self, period: Duration, now: Instant) {
        self.period = period;
        let soon = now + self.gap();
        self.at = self.at.min(soon);
    }

    /// When the next sample is due.
    pub(super) fn due(&self) -> Instant {
        self.at
    }

    /// Schedules the sample after the one taken at `now`: a random gap after the time this one
    /// was due, or (when the machine was too busy and it came a whole period late) after now:
    /// never a burst to catch up. `true`: this one came late.
    pub(super) fn advance(&mut self, now: Instant) -> bool {
        let late = self.at + self.period <= now;
        let from = if late { now } else { self.at };
        self.at = from + self.gap();
        late
    }

    /// A random gap between half a period and one and a half.
    fn gap(&mut self) -> Duration {
        let nanos = self.period.as_nanos() as u64;
        Duration::from_nanos(nanos / 2 + self.rng.u64(0..nanos.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_random_between_half_and_one_and_a_half_periods() {
        let period = Duration::from_millis(4);
        let start = Instant::now();
        let mut ticks = Ticks::new(period, start);
        assert_eq!(ticks.due(), start);
        let mut gaps = Vec::new();
        for _ in 0..4000 {
            let now = ticks.due();
            assert!(!ticks.advance(now));
            gaps.push((ticks.due() - now).as_secs_f64() / period.as_secs_f64());
        }
        assert!(gaps.iter().all(|&g| (0.5..1.5).contains(&g)), "{gaps:?}");
        // The rate holds: a mean gap of one period.
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((0.98..1.02).contains(&mean), "mean gap {mean} periods");
        // Spread over the range: each quarter holds about a quarter of the gaps.
        for q in 0..4 {
            let lo = 0.5 + q as f64 / 4.0;
            let n = gaps.iter().filter(|&&g| g >= lo && g < lo + 0.25).count();
            assert!(
                (800..=1200).contains(&n),
                "gaps in [{lo}, {}): {n} of 4000",
                lo + 0.25
            );
        }
    }

    #[test]
    fn a_new_period_applies_from_the_next_sample() {
        let start = Instant::now();
        let mut ticks = Ticks::new(Duration::from_millis(10), start);
        ticks.advance(start);
        // Four times the rate: the sample due up to 15 ms away comes within 1.25-3.75 ms.
        ticks.set_period(Duration::from_micros(2500), start);
        let gap = ticks.due() - start;
        assert!(gap >= Duration::from_micros(1250) && gap < Duration::from_micros(3750));
        // Back to the slower rate: the next sample stays where it was.
        let due = ticks.due();
        ticks.set_period(Duration::from_millis(10), start);
        assert_eq!(ticks.due(), due);
        ticks.advance(due);
        let gap = ticks.due() - due;
        assert!(gap >= Duration::from_millis(5) && gap < Duration::from_millis(15));
    }

    #[test]
    fn a_late_sample_is_counted_and_not_caught_up() {
        let period = Duration::from_millis(10);
        let start = Instant::now();
        let mut ticks = Ticks::new(period, start);
        // Taken 5 periods after it was due: late, and the next is a gap after now.
        let now = start + period * 5;
        assert!(ticks.advance(now));
        assert!(ticks.due() >= now + period / 2 && ticks.due() < now + period * 3 / 2);
        // Taken less than a period after it was due: not late, and the next gap counts from
        // when it was due.
        let mut ticks = Ticks::new(period, start);
        assert!(!ticks.advance(start + period / 2));
        assert!(ticks.due() >= start + period / 2 && ticks.due() < start + period * 3 / 2);
    }
}
