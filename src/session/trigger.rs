//! Triggered capture (`--trigger-cpu`): every [`CHECK_EVERY`] the CPU time the profiled
//! processes used is read from `/proc/PID/stat` (one read per process); when their use over the
//! last [`CPU_WINDOW`] is above the threshold, a capture begins: the session samples at the
//! raised rate and the pipeline labels its windows `trigger=cpu`. It ends when the use falls
//! below the threshold again or after `--trigger-duration`; then none begins for
//! `--trigger-cooldown`.
//!
//! The decisions ([`Trigger::observe`]) take the readings as numbers, so they are tested
//! without a process.

use crate::config::trigger::{TriggerSettings, CHECK_EVERY, CPU_WINDOW};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What the session does after a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Change {
    /// Sample at this rate, and label the windows.
    Begin { rate: u32 },
    /// Back to the normal rate; windows unlabelled.
    End { rate: u32 },
}

impl Change {
    /// The rate to sample at from now on.
    pub fn rate(self) -> u32 {
        match self {
            Change::Begin { rate } | Change::End { rate } => rate,
        }
    }

    /// The value of the windows' `trigger` label from now on.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Change::Begin { .. } => Some("cpu"),
            Change::End { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Idle,
    Capturing { since: Instant },
    Cooling { until: Instant },
}

pub(super) struct Trigger {
    settings: TriggerSettings,
    base_rate: u32,
    next_check: Instant,
    /// CPU ns of each process at the last check.
    last: HashMap<u32, u64>,
    last_check: Option<Instant>,
    /// (wall time, CPU ns used in it) of the checks within the last [`CPU_WINDOW`].
    readings: VecDeque<(Duration, u64)>,
    state: State,
    ns_per_tick: u64,
    /// Captures so far and their total length, and process samples taken in them and out of
    /// them (for the summary).
    pub captures: u32,
    pub captured: Duration,
    pub samples_in: u64,
    pub samples_out: u64,
    /// Stacks those samples gave (threads found on CPU).
    pub stacks_in: u64,
    pub stacks_out: u64,
    started: Instant,
    ended: Option<Instant>,
}

impl Trigger {
    pub fn new(settings: TriggerSettings, base_rate: u32, now: Instant) -> Trigger {
        Trigger {
            settings,
            base_rate,
            next_check: now,
            last: HashMap::new(),
            last_check: None,
            readings: VecDeque::new(),
            state: State::Idle,
            ns_per_tick: 1_000_000_000 / spy::procfs::clock_ticks_per_second(),
            captures: 0,
            captured: Duration::ZERO,
            samples_in: 0,
            samples_out: 0,
            stacks_in: 0,
            stacks_out: 0,
            started: now,
            ended: None,
        }
    }

    /// `samples` process samples were just taken, giving `stacks` stacks.
    pub fn sampled(&mut self, samples: u64, stacks: u64) {
        match self.state {
            State::Capturing { .. } => {
                self.samples_in += samples;
                self.stacks_in += stacks;
            }
            _ => {
                self.samples_out += samples;
                self.stacks_out += stacks;
            }
        }
    }

    /// From the start to [`Trigger::finish`] (or now).
    pub fn run_time(&self) -> Duration {
        self.ended
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(self.started)
    }

    /// When the next check is due.
    pub fn due(&self) -> Instant {
        self.next_check
    }

    /// Reads the CPU time of `pids` (the profiled processes) and decides. A process seen for
    /// the first time counts from this check on; one that is gone stops counting.
    pub fn check(&mut self, now: Instant, pids: impl Iterator<Item = u32>) -> Option<Change> {
        self.next_check = now + CHECK_EVERY;
        let mut used = 0;
        let mut seen = HashMap::with_capacity(self.last.len());
        for pid in pids {
            let Some(stat) = spy::procfs::stat(pid) else {
                continue;
            };
            let ns = stat.cpu_ticks * self.ns_per_tick;
            if let Some(&before) = self.last.get(&pid) {
                used += ns.saturating_sub(before);
            }
            seen.insert(pid, ns);
        }
        self.last = seen;
        let wall = self.last_check.map(|t| now.saturating_duration_since(t));
        self.last_check = Some(now);
        self.observe(now, wall?, used)
    }

    /// One reading: `cpu_ns` used in the `wall` time since the one before.
    fn observe(&mut self, now: Instant, wall: Duration, cpu_ns: u64) -> Option<Change> {
        self.readings.push_back((wall, cpu_ns));
        let span = |r: &VecDeque<(Duration, u64)>| r.iter().map(|x| x.0).sum::<Duration>();
        while self.readings.len() > 1 && span(&self.readings) - self.readings[0].0 >= CPU_WINDOW {
            self.readings.pop_front();
        }
        let wall = span(&self.readings);
        // Not enough history yet (a program's start-up burst is not a spike).
        if wall < CPU_WINDOW.mul_f64(0.9) {
            return None;
        }
        let cpu: u64 = self.readings.iter().map(|x| x.1).sum();
        let percent = cpu as f64 / wall.as_nanos() as f64 * 100.0;
        let limit = self.settings.percent;
        match self.state {
            State::Cooling { until } if now >= until => {
                self.state = State::Idle;
                log::debug!("CPU trigger: cool-down over");
                self.observe_idle(now, percent)
            }
            State::Cooling { .. } => None,
            State::Idle => self.observe_idle(now, percent),
            State::Capturing { since } => {
                let took = now.saturating_duration_since(since);
                let why = if percent < limit {
                    format!("CPU use fell to {percent:.0}% of one core")
                } else if took >= self.settings.duration {
                    format!("CPU use still {percent:.0}%, --trigger-duration reached")
                } else {
                    return None;
                };
                self.state = State::Cooling {
                    until: now + self.settings.cooldown,
                };
                self.captured += took;
                log::info!(
                    "CPU trigger: capture ended after {:.1} s ({why}); sampling at {} Hz again, no new capture for {}",
                    took.as_secs_f64(),
                    self.base_rate,
                    describe(self.settings.cooldown)
                );
                Some(Change::End {
                    rate: self.base_rate,
                })
            }
        }
    }

    fn observe_idle(&mut self, now: Instant, percent: f64) -> Option<Change> {
        if percent <= self.settings.percent {
            return None;
        }
        self.state = State::Capturing { since: now };
        self.captures += 1;
        log::info!(
            "CPU trigger: the profiled processes use {percent:.0}% of one core (over the last {} s; --trigger-cpu {}%): sampling at {} Hz for up to {}, windows labelled trigger=cpu",
            CPU_WINDOW.as_secs(),
            self.settings.percent,
            self.settings.sample_rate,
            describe(self.settings.duration)
        );
        Some(Change::Begin {
            rate: self.settings.sample_rate,
        })
    }

    /// The run ended: a capture under way ends with it (the pipeline writes its profile).
    pub fn finish(&mut self, now: Instant) {
        self.ended = Some(now);
        if let State::Capturing { since } = self.state {
            self.captured += now.saturating_duration_since(since);
            self.state = State::Idle;
        }
    }
}

/// `60 s`, `5 min`, `90 s`.
fn describe(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{} min", s / 60.0)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(percent: f64, duration: u64, cooldown: u64) -> Trigger {
        Trigger::new(
            TriggerSettings {
                percent,
                duration: Duration::from_secs(duration),
                cooldown: Duration::from_secs(cooldown),
                sample_rate: 400,
                output: None,
            },
            100,
            Instant::now(),
        )
    }

    /// Feeds one reading per half second at `percent` of one core; the changes, by half second.
    fn feed(t: &mut Trigger, start: Instant, from: u32, percents: &[f64]) -> Vec<(u32, Change)> {
        let half = Duration::from_millis(500);
        let mut out = Vec::new();
        for (i, p) in percents.iter().enumerate() {
            let step = from + i as u32;
            let cpu = (half.as_nanos() as f64 * p / 100.0) as u64;
            if let Some(c) = t.observe(start + half * step, half, cpu) {
                out.push((step, c));
            }
        }
        out
    }

    #[test]
    fn a_spike_is_captured_until_it_ends_then_cools_down() {
        let start = Instant::now();
        let mut t = trigger(50.0, 60, 10);
        // 3 s at 5%, 4 s at 100%, 3 s at 5%, 100% again within the cool-down.
        let mut p = vec![5.0; 6];
        p.extend([100.0; 8]);
        p.extend([5.0; 6]);
        p.extend([100.0; 8]);
        let changes = feed(&mut t, start, 1, &p);
        // The 2 s average crosses 50% 1 s into the spike, and falls below 1.5 s after it.
        assert_eq!(
            changes,
            [
                (8, Change::Begin { rate: 400 }),
                (17, Change::End { rate: 100 })
            ]
        );
        assert_eq!((t.captures, t.captured), (1, Duration::from_millis(4500)));
        // After the cool-down (10 s from the end), the next reading above it begins one.
        let changes = feed(&mut t, start, 37, &[100.0; 4]);
        assert_eq!(changes, [(37, Change::Begin { rate: 400 })]);
    }

    #[test]
    fn a_long_spike_ends_at_the_duration() {
        let start = Instant::now();
        let mut t = trigger(50.0, 3, 0);
        let changes = feed(&mut t, start, 1, &[100.0; 20]);
        // Begins once 2 s are known, ends 3 s later, begins again at once (no cool-down).
        assert_eq!(
            changes,
            [
                (4, Change::Begin { rate: 400 }),
                (10, Change::End { rate: 100 }),
                (11, Change::Begin { rate: 400 }),
                (17, Change::End { rate: 100 }),
                (18, Change::Begin { rate: 400 }),
            ]
        );
    }

    #[test]
    fn light_load_and_start_up_bursts_do_not_trigger() {
        let start = Instant::now();
        let mut t = trigger(50.0, 60, 0);
        // A start-up burst of 0.5 s at 100%, then 20% for a minute; 45% for a minute: never
        // above 50% over 2 s.
        let mut p = vec![100.0];
        p.extend([20.0; 120]);
        p.extend([45.0; 120]);
        assert_eq!(feed(&mut t, start, 1, &p), []);
        // Several cores: 150% against a limit of 200% does not trigger, 250% does.
        let mut t = trigger(200.0, 60, 0);
        assert_eq!(feed(&mut t, start, 1, &[150.0; 10]), []);
        assert_eq!(feed(&mut t, start, 11, &[250.0; 4]).len(), 1);
    }

    #[test]
    fn the_cpu_time_of_real_processes_is_read() {
        // This test's own process: busy for a while between two checks.
        let start = Instant::now();
        let mut t = trigger(50.0, 60, 0);
        let me = std::process::id();
        assert_eq!(t.check(start, [me].into_iter()), None);
        let until = Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        t.check(
            start + Duration::from_millis(300),
            [me, 999_999_999].into_iter(),
        );
        let (_, cpu) = t.readings[0];
        assert!(
            (200_000_000..=2_000_000_000).contains(&cpu),
            "{cpu} ns in 300 ms of a busy loop"
        );
    }
}
