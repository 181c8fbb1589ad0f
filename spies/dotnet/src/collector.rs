//! Turns a nettrace stream into CPU stacks: samples weighted by time, frames named.
//!
//! The runtime samples every managed thread at its own fixed interval (1 ms on 3.1; slower
//! when the machine is busy) and marks each sample Managed (running managed code) or External
//! (native code, waits, sleeps). A thread's sample stands for the time since that thread's
//! previous sample. To give the same units as the other spies (one stack per `1/--sample-rate`
//! seconds of CPU), each thread's Managed time is accumulated and a stack is emitted for every
//! whole period; with `include_external`, External time counts too (a wall-clock view).
//! A thread starts with a random part of a period already accumulated (a random phase), so that
//! a thread that lives for less than a period still counts with the right probability: without
//! it, a program that runs its work on many short-lived threads would show none of it.
//!
//! Frames are named when the block that carried the sample is done; a frame whose method event
//! has not arrived yet (events of different threads are not ordered within a sequence-point
//! window) is retried for a short grace time, then shown as `[unknown]`.

use crate::events::{self, Known, SampleKind};
use crate::nettrace::{Event, Handler, TraceHeader};
use crate::symbols::Symbols;
use spy::{Frame, Stack};
use std::collections::HashMap;

/// How long (trace time) an unresolved sample waits for its method events, by default.
pub const GRACE_NS: i64 = 500_000_000;
/// A thread not sampled for this long (trace time) is forgotten, so that a program that keeps
/// starting threads does not grow the map. Its next sample, if any, counts one interval, which
/// the 4-interval clamp would nearly have given it anyway.
const THREAD_IDLE_NS: i64 = 2_000_000_000;

/// How samples become stacks.
#[derive(Debug, Clone, Copy)]
pub enum Weighting {
    /// One stack per included sample (tests, fixtures).
    PerSample,
    /// One stack per `period_ns` of included thread time.
    Period { period_ns: i64 },
}

#[derive(Debug, Default, Clone)]
pub struct CollectorStats {
    pub samples: u64,
    pub managed: u64,
    pub external: u64,
    pub stacks_emitted: u64,
    pub frames: u64,
    pub unresolved_frames: u64,
    pub methods_loaded: u64,
    /// ReadyToRun methods announced by their entry point.
    pub entry_points: u64,
}

struct ThreadClock {
    last_ns: i64,
    carry_ns: i64,
    /// The burst of its last sample ([`Collector::begin_burst`]).
    burst: u64,
}

struct Pending {
    thread_id: u64,
    ips: Vec<u64>,
    copies: u32,
    ns: i64,
}

/// Where the code mappings of the process's managed images come from (its /proc/PID/maps).
pub type ImageSource = Box<dyn FnMut() -> Vec<(u64, u64, String)> + Send>;

pub struct Collector {
    header: TraceHeader,
    /// Re-read when a ReadyToRun entry point lies outside every known image (a new assembly),
    /// at most once a second.
    images: Option<ImageSource>,
    images_read: Option<std::time::Instant>,
    pub symbols: Symbols,
    weighting: Weighting,
    include_external: bool,
    threads: HashMap<u64, ThreadClock>,
    /// splitmix64 state for the threads' random phases (fixed seed: runs are reproducible).
    phase_rng: u64,
    pending: Vec<Pending>,
    latest_ns: i64,
    /// When (trace time) idle threads were last forgotten.
    pruned_ns: i64,
    /// Sampling bursts begun so far, and what a sample of the current one stands for: its
    /// thread's time since its previous sample times `scale` (1 / the share of time sampled).
    burst: u64,
    scale: f64,
    /// How long (trace time) an unresolved sample waits for its method events; a capture
    /// whose rundown comes at the end is read with `i64::MAX`.
    pub grace_ns: i64,
    /// Finished stacks, root first, waiting to be taken.
    pub ready: Vec<Stack>,
    pub stats: CollectorStats,
}

impl Collector {
    /// Names ReadyToRun frames after the image mapped at their address, read from `source`.
    pub fn with_images(mut self, source: ImageSource) -> Self {
        self.images = Some(source);
        self.refresh_images();
        self
    }

    fn refresh_images(&mut self) {
        if let Some(source) = &mut self.images {
            if self
                .images_read
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1))
            {
                self.symbols.set_images(source());
                self.images_read = Some(std::time::Instant::now());
            }
        }
    }

    /// A sampling burst begins: the runtime samples for a while, then not, and its samples
    /// stand for `scale` times their own time (scale = 1 / the share of time sampled).
    pub fn begin_burst(&mut self, scale: f64) {
        self.burst += 1;
        self.scale = scale.max(1.0);
    }

    /// Threads currently remembered (for tests of bounded memory).
    pub fn threads_tracked(&self) -> usize {
        self.threads.len()
    }

    pub fn new(weighting: Weighting, include_external: bool) -> Self {
        Collector {
            header: TraceHeader::default(),
            images: None,
            images_read: None,
            symbols: Symbols::default(),
            weighting,
            include_external,
            threads: HashMap::new(),
            phase_rng: 0x05ee_d0fd_07e7,
            pending: Vec::new(),
            latest_ns: 0,
            pruned_ns: 0,
            burst: 0,
            scale: 1.0,
            grace_ns: GRACE_NS,
            ready: Vec::new(),
            stats: CollectorStats::default(),
        }
    }

    /// The runtime's sampling interval, ns (1 ms when the header does not say; kept within
    /// 0.1–100 ms whatever it says).
    fn interval_ns(&self) -> i64 {
        match self.header.expected_sampling_interval_ns {
            0 => 1_000_000,
            n => (n as i64).clamp(100_000, 100_000_000),
        }
    }

    fn sample(&mut self, e: &Event<'_>, kind: SampleKind) {
        self.stats.samples += 1;
        match kind {
            SampleKind::Managed => self.stats.managed += 1,
            SampleKind::External => self.stats.external += 1,
            SampleKind::Error => {}
        }
        let ns = self.header.ticks_to_ns(e.timestamp);
        self.latest_ns = self.latest_ns.max(ns);
        let interval = self.interval_ns();
        let clock = match self.threads.entry(e.thread_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let phase = match self.weighting {
                    Weighting::Period { period_ns } => {
                        (splitmix64(&mut self.phase_rng) % period_ns.max(1) as u64) as i64
                    }
                    Weighting::PerSample => 0,
                };
                v.insert(ThreadClock {
                    last_ns: ns.saturating_sub(interval),
                    carry_ns: phase,
                    burst: self.burst,
                })
            }
        };
        // The time this sample stands for: since the thread's previous sample, bounded so that
        // a gap (the thread was not managed for a while, the session started) is not charged;
        // one interval for its first sample of a burst. Scaled up by the share of time sampled.
        let mut delta = ns.saturating_sub(clock.last_ns).clamp(0, 4 * interval);
        if clock.burst != self.burst {
            clock.burst = self.burst;
            delta = interval;
        }
        let delta = (delta as f64 * self.scale) as i64;
        clock.last_ns = ns;
        let included =
            kind == SampleKind::Managed || (self.include_external && kind == SampleKind::External);
        if !included || e.stack.is_empty() {
            return;
        }
        let copies = match self.weighting {
            Weighting::PerSample => 1,
            Weighting::Period { period_ns } => {
                let period = period_ns.max(1);
                clock.carry_ns = clock.carry_ns.saturating_add(delta);
                let n = clock.carry_ns / period;
                clock.carry_ns -= n * period;
                n.min(10_000) as u32
            }
        };
        if copies > 0 {
            self.pending.push(Pending {
                thread_id: e.thread_id,
                ips: e.stack.to_vec(),
                copies,
                ns,
            });
        }
    }

    /// Names the frames of pending samples; `all` also gives up on unresolved ones.
    pub fn resolve_pending(&mut self, all: bool) {
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            let resolved: Vec<_> = p.ips.iter().map(|&ip| self.symbols.resolve(ip)).collect();
            if resolved.iter().any(Option::is_none)
                && !all
                && self.latest_ns.saturating_sub(p.ns) < self.grace_ns
            {
                self.pending.push(p);
                continue;
            }
            self.stats.frames += resolved.len() as u64;
            let frames: Vec<Frame> = resolved
                .into_iter()
                .rev()
                .map(|r| match r {
                    Some(r) => Frame {
                        function: r.name.to_string().into(),
                        file: r.module.map(|m| m.to_string()).unwrap_or_default().into(),
                        line: 0,
                    },
                    None => {
                        self.stats.unresolved_frames += 1;
                        Frame {
                            function: "[unknown]".into(),
                            file: "".into(),
                            line: 0,
                        }
                    }
                })
                .collect();
            // Each copy stands for one period of its thread's time, said explicitly: the agent's
            // own period may differ by then (`--trigger-cpu` raises its rate for a while).
            let cpu_ns = match self.weighting {
                Weighting::Period { period_ns } => Some(period_ns.max(1) as u64),
                Weighting::PerSample => None,
            };
            for _ in 1..p.copies {
                self.ready.push(Stack {
                    thread_id: p.thread_id,
                    frames: frames.clone(),
                    cpu_ns,
                    thread_name: None,
                });
            }
            self.ready.push(Stack {
                thread_id: p.thread_id,
                frames,
                cpu_ns,
                thread_name: None,
            });
            self.stats.stacks_emitted += p.copies as u64;
        }
    }
}

/// One step of splitmix64 (Steele, Lea, Flood 2014): enough randomness for sampling phases.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Handler for Collector {
    fn header(&mut self, header: &TraceHeader) {
        self.header = *header;
    }

    fn event(&mut self, e: &Event<'_>) {
        // A payload shorter than its layout is skipped, not fatal: one odd event must not end
        // the session.
        match events::classify(e) {
            Ok(Known::Sample(kind)) => self.sample(e, kind),
            Ok(Known::MethodLoad(m)) => {
                self.stats.methods_loaded += 1;
                let name = m.full_name();
                self.symbols.add_method(m.start, m.size, name, m.module_id);
            }
            Ok(Known::MethodUnload { start }) => self.symbols.remove_method(start),
            Ok(Known::EntryPoint { start, name }) => {
                self.stats.entry_points += 1;
                if self.symbols.image(start).is_none() {
                    self.refresh_images();
                }
                self.symbols.add_entry_point(start, name);
            }
            Ok(Known::Module { id, path }) => self.symbols.add_module(id, &path),
            Ok(Known::Other) | Err(_) => {}
        }
    }

    fn sequence_point(&mut self) {}

    fn block_done(&mut self) {
        if !self.pending.is_empty() {
            self.resolve_pending(false);
        }
        if self.latest_ns.saturating_sub(self.pruned_ns) > THREAD_IDLE_NS {
            let latest = self.latest_ns;
            self.threads
                .retain(|_, c| latest.saturating_sub(c.last_ns) <= THREAD_IDLE_NS);
            self.pruned_ns = latest;
        }
    }
}
