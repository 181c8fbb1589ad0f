//! Aggregation: samples → interned frames and stacks → one [`Profile`] per window (cut by
//! [`super::window`]), plus (when a local output is wanted) the whole run's totals.

use super::profile::reindex;
pub use super::profile::{frame_label, Counted, Profile, SampleLabels, Weight};
use rustc_hash::FxHashMap;
use spy::{Frame, Stack};
use std::collections::HashMap;
use std::time::SystemTime;

// Fx rather than SipHash: every sample hashes each of its frames (names and files) and its
// stack. The names come from the user's own program; hash flooding is not a concern here.
type Counts = FxHashMap<Vec<u32>, Weight>;

/// The whole-run profile (kept for `--output`) is bounded: past this many distinct stacks, or
/// [`MAX_TOTAL_FRAMES`] distinct frames, its rarest stacks are folded into their callers.
const MAX_TOTAL_STACKS: usize = 20_000;
const MAX_TOTAL_FRAMES: usize = 50_000;
/// The leaf that stands for folded stacks: their time stays, under their caller.
const FOLDED: &str = "[rare stacks folded]";

/// Collects samples. Frames are interned for as long as something holds them: the open window
/// only, or (with `--output`) also the whole-run profile, which is bounded (see
/// [`MAX_TOTAL_STACKS`]). So memory follows what one window holds, not how long the run is.
pub struct Aggregator {
    frame_ids: FxHashMap<Frame, u32>,
    frames: Vec<Frame>,
    window: Counts,
    window_spies: HashMap<&'static str, u64>,
    total_spies: HashMap<&'static str, u64>,
    total: Option<Counts>,
    run_start: SystemTime,
    period_ns: u64,
    /// The rate's period at the start: the whole-run profile's (a capture changes `period_ns`
    /// for a while).
    run_period_ns: u64,
    scratch: Vec<u32>,
    /// Whether window samples carry [`SampleLabels`]; the window's label sets, interned.
    labelled: bool,
    label_ids: FxHashMap<SampleLabels, u32>,
    label_sets: Vec<SampleLabels>,
    /// How often the whole-run profile was folded, and how many stacks went into callers.
    pub folds: u64,
    pub folded_stacks: u64,
}

/// A window's counts are keyed by the stack's frame ids followed by one more element, the id of
/// its label set ([`NO_LABELS`] when none); the whole-run counts by the frame ids alone.
const NO_LABELS: u32 = u32::MAX;

impl Aggregator {
    pub fn new(sample_rate: u32, start: SystemTime, keep_total: bool) -> Self {
        Aggregator {
            frame_ids: FxHashMap::default(),
            frames: Vec::new(),
            window: FxHashMap::default(),
            window_spies: HashMap::new(),
            total_spies: HashMap::new(),
            total: keep_total.then(FxHashMap::default),
            run_start: start,
            period_ns: spy::period_ns(sample_rate),
            run_period_ns: spy::period_ns(sample_rate),
            scratch: Vec::new(),
            labelled: false,
            label_ids: FxHashMap::default(),
            label_sets: Vec::new(),
            folds: 0,
            folded_stacks: 0,
        }
    }

    /// Window samples carry their [`SampleLabels`] (the whole-run profile, for local files,
    /// does not).
    pub fn with_labels(mut self, on: bool) -> Self {
        self.labelled = on;
        self
    }

    /// From now on a sample whose CPU time is not known counts one period of this rate, and
    /// profiles give this period (`--trigger-cpu` changes the rate while running).
    pub fn set_sample_rate(&mut self, sample_rate: u32) {
        self.period_ns = spy::period_ns(sample_rate);
    }

    /// Adds one sample of one thread of process `pid`, taken by `spy`.
    pub fn add(&mut self, stack: Stack, spy: &'static str, pid: u32) {
        *self.window_spies.entry(spy).or_default() += 1;
        *self.total_spies.entry(spy).or_default() += 1;
        let cpu_ns = stack.cpu_ns.unwrap_or(self.period_ns);
        self.scratch.clear();
        for frame in stack.frames {
            let id = match self.frame_ids.get(&frame) {
                Some(&id) => id,
                None => {
                    let id = self.frames.len() as u32;
                    self.frames.push(frame.clone());
                    self.frame_ids.insert(frame, id);
                    id
                }
            };
            self.scratch.push(id);
        }
        if let Some(total) = &mut self.total {
            bump(total, &self.scratch, cpu_ns);
        }
        let label = if self.labelled {
            let labels = SampleLabels {
                pid,
                thread_id: stack.thread_name.is_none().then_some(stack.thread_id),
                thread_name: stack.thread_name,
            };
            match self.label_ids.get(&labels) {
                Some(&id) => id,
                None => {
                    let id = self.label_sets.len() as u32;
                    self.label_sets.push(labels.clone());
                    self.label_ids.insert(labels, id);
                    id
                }
            }
        } else {
            NO_LABELS
        };
        self.scratch.push(label);
        bump(&mut self.window, &self.scratch, cpu_ns);
        if let Some(total) = &self.total {
            if total.len() > MAX_TOTAL_STACKS || self.frames.len() > MAX_TOTAL_FRAMES {
                self.bound_total();
            }
        }
    }

    /// The samples added since the last call, as the profile of the window `start..end`; the
    /// next window starts empty. `None` when the window holds no samples (empty profiles are
    /// not uploaded).
    pub fn take_window(&mut self, start: SystemTime, end: SystemTime) -> Option<Profile> {
        let counts = std::mem::take(&mut self.window);
        let spies = std::mem::take(&mut self.window_spies);
        if counts.is_empty() {
            return None;
        }
        let labels = std::mem::take(&mut self.label_sets);
        self.label_ids.clear();
        let counts = counts.into_iter().map(|(mut key, w)| {
            let label = key.pop().filter(|&l| l != NO_LABELS);
            (key, label, w)
        });
        let profile = self.build(counts, labels, start, end, main_spy(&spies));
        if self.total.is_none() {
            // Nothing else holds these frames: the next window interns its own. The table
            // keeps room for about what this window needed, not for the largest one ever.
            let used = profile.frames.len();
            self.frames.clear();
            self.frames.shrink_to(used);
            self.frame_ids.clear();
            self.frame_ids.shrink_to(used);
        }
        Some(profile)
    }

    /// Frames interned now (what memory grows with).
    pub fn interned_frames(&self) -> usize {
        self.frames.len()
    }

    /// Folds the rarest fifth of the whole-run stacks into their callers (under a
    /// [`FOLDED`] leaf), as often as needed to get back under 80% of both bounds, then drops
    /// the frames nothing uses any more.
    fn bound_total(&mut self) {
        let Some(mut total) = self.total.take() else {
            return;
        };
        let before = total.len();
        if self.folds == 0 {
            log::warn!(
                "the whole-run profile for --output reached {} distinct stacks and {} frames: from now on its rarest stacks are folded into their callers (their CPU time is kept, under a {FOLDED:?} frame) so memory stays bounded",
                total.len(),
                self.frames.len()
            );
        }
        self.folds += 1;
        let folded_frame = Frame {
            function: FOLDED.into(),
            file: "".into(),
            line: 0,
        };
        for _ in 0..64 {
            // Ids change with every compaction: look the leaf up each time.
            let folded_id = self.intern(&folded_frame);
            let mut entries: Vec<(Vec<u32>, Weight)> = total.drain().collect();
            entries.sort_by_key(|(_, w)| (w.cpu_ns, w.samples));
            let rare = (entries.len() / 5).max(1);
            for (i, (mut stack, w)) in entries.into_iter().enumerate() {
                if i < rare {
                    if stack.last() == Some(&folded_id) {
                        stack.pop();
                    }
                    stack.pop();
                    stack.push(folded_id);
                    self.folded_stacks += 1;
                }
                let e = total.entry(stack).or_default();
                e.samples += w.samples;
                e.cpu_ns += w.cpu_ns;
            }
            let used = compact(
                &mut self.frames,
                &mut self.frame_ids,
                &mut total,
                &mut self.window,
            );
            if total.len() <= MAX_TOTAL_STACKS * 4 / 5 && used <= MAX_TOTAL_FRAMES * 4 / 5 {
                break;
            }
        }
        log::debug!(
            "whole-run profile folded from {before} to {} stacks, {} frames",
            total.len(),
            self.frames.len()
        );
        self.total = Some(total);
    }

    fn intern(&mut self, frame: &Frame) -> u32 {
        match self.frame_ids.get(frame) {
            Some(&id) => id,
            None => {
                let id = self.frames.len() as u32;
                self.frames.push(frame.clone());
                self.frame_ids.insert(frame.clone(), id);
                id
            }
        }
    }

    /// The whole run so far (when totals are kept).
    pub fn total(&self, end: SystemTime) -> Option<Profile> {
        let total = self.total.as_ref()?;
        let mut profile = self.build(
            total.iter().map(|(k, v)| (k.clone(), None, *v)),
            Vec::new(),
            self.run_start,
            end,
            main_spy(&self.total_spies),
        );
        profile.period_ns = self.run_period_ns;
        Some(profile)
    }

    fn build(
        &self,
        counts: impl Iterator<Item = (Vec<u32>, Option<u32>, Weight)>,
        labels: Vec<SampleLabels>,
        start: SystemTime,
        end: SystemTime,
        spy_name: &'static str,
    ) -> Profile {
        let counts: Vec<Counted> = counts
            .map(|(stack, labels, weight)| Counted {
                stack,
                labels,
                weight,
            })
            .collect();
        let (frames, mut stacks) = reindex(&self.frames, counts.iter());
        stacks.sort();
        Profile {
            frames,
            stacks,
            labels,
            start,
            end,
            period_ns: self.period_ns,
            spy_name,
        }
    }
}

/// The spy with the most samples (a process tree rarely mixes runtimes).
fn main_spy(counts: &HashMap<&'static str, u64>) -> &'static str {
    counts
        .iter()
        .max_by_key(|(name, n)| (**n, std::cmp::Reverse(**name)))
        .map(|(name, _)| *name)
        .unwrap_or("")
}

/// Keeps only the frames `total` and `window` use, renumbered; returns how many. (The last
/// element of a window key is its label set, not a frame: it stays.)
fn compact(
    frames: &mut Vec<Frame>,
    ids: &mut FxHashMap<Frame, u32>,
    total: &mut Counts,
    window: &mut Counts,
) -> usize {
    let mut remap: FxHashMap<u32, u32> = FxHashMap::default();
    let mut kept: Vec<Frame> = Vec::new();
    for (counts, tagged) in [(total, false), (window, true)] {
        let old = std::mem::take(counts);
        for (stack, w) in old {
            let frame_count = stack.len() - usize::from(tagged);
            let stack: Vec<u32> = stack
                .iter()
                .enumerate()
                .map(|(i, &id)| {
                    if i >= frame_count {
                        return id;
                    }
                    *remap.entry(id).or_insert_with(|| {
                        kept.push(frames[id as usize].clone());
                        (kept.len() - 1) as u32
                    })
                })
                .collect();
            counts.insert(stack, w);
        }
    }
    *frames = kept;
    ids.clear();
    ids.shrink_to(frames.len());
    for (i, f) in frames.iter().enumerate() {
        ids.insert(f.clone(), i as u32);
    }
    frames.len()
}

fn bump(counts: &mut Counts, stack: &[u32], cpu_ns: u64) {
    let one = Weight { samples: 1, cpu_ns };
    match counts.get_mut(stack) {
        Some(w) => {
            w.samples += 1;
            w.cpu_ns += cpu_ns;
        }
        None => {
            counts.insert(stack.to_vec(), one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn f(name: &str) -> Frame {
        Frame {
            function: name.into(),
            file: "x.py".into(),
            line: 1,
        }
    }

    /// A stack of thread 1 through the functions `names` (root first).
    fn stack(names: &[&str], cpu_ns: Option<u64>) -> Stack {
        Stack {
            thread_id: 1,
            frames: names.iter().map(|n| f(n)).collect(),
            cpu_ns,
            thread_name: None,
        }
    }

    /// A run that keeps making new functions: the window's frames are dropped when it is
    /// taken; the whole-run profile stays under its bounds, keeps every nanosecond, and the
    /// open window is untouched by the folding.
    #[test]
    fn memory_is_bounded_and_folding_keeps_the_time() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for keep_total in [false, true] {
            let mut a = Aggregator::new(100, t0, keep_total);
            let mut cpu = 0;
            for w in 0..12u64 {
                for i in 0..5_000u64 {
                    let n = w * 5_000 + i;
                    a.add(
                        Stack {
                            thread_id: 1,
                            frames: vec![
                                f("main"),
                                f(&format!("gen{n}_0")),
                                f(&format!("gen{n}_1")),
                            ],
                            cpu_ns: Some(1 + n % 7),
                            thread_name: None,
                        },
                        "pyspy",
                        7,
                    );
                    cpu += 1 + n % 7;
                    assert!(a.interned_frames() <= MAX_TOTAL_FRAMES + 3);
                }
                let window = a.take_window(t0, t0).unwrap();
                assert_eq!(window.stacks.len(), 5_000, "the window is whole");
                if !keep_total {
                    assert_eq!(a.interned_frames(), 0);
                }
            }
            if keep_total {
                let total = a.total(t0).unwrap();
                assert!(total.stacks.len() <= MAX_TOTAL_STACKS);
                assert_eq!(total.total_cpu_ns(), cpu, "folding keeps every nanosecond");
                assert_eq!(total.total_samples(), 60_000);
                assert!(a.folds > 0);
                assert!(total.frames.iter().any(|f| &*f.function == FOLDED));
                // The newest functions are still there as they were.
                assert!(total.frames.iter().any(|f| &*f.function == "gen59999_1"));
            }
        }
    }

    #[test]
    fn windows_and_totals() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut a = Aggregator::new(100, t0, true);
        for ns in [None, Some(4_000_000), Some(25_000_000)] {
            a.add(stack(&["main", "slow"], ns), "pyspy", 7);
        }
        a.add(stack(&["main", "fast"], None), "pyspy", 7);
        let w = a.take_window(t0, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(w.total_samples(), 4);
        assert_eq!(w.frames.len(), 3);
        assert_eq!(w.period_ns, 10_000_000);
        assert_eq!(w.spy_name, "pyspy");
        let texts: Vec<_> = w
            .stacks
            .iter()
            .map(|c| (w.stack_text(&c.stack, |f| f.function.to_string()), c.weight))
            .collect();
        // A sample without a measured CPU time stands for one period (10 ms at 100 Hz).
        let slow = Weight {
            samples: 3,
            cpu_ns: 10_000_000 + 4_000_000 + 25_000_000,
        };
        let fast = Weight {
            samples: 1,
            cpu_ns: 10_000_000,
        };
        assert!(texts.contains(&("main;slow".into(), slow)));
        assert!(texts.contains(&("main;fast".into(), fast)));
        assert_eq!(w.total_cpu_ns(), 49_000_000);
        assert!(a.take_window(t0, t0).is_none());
        a.add(stack(&["other"], None), "rbspy", 7);
        let w2 = a.take_window(t0, t0).unwrap();
        assert_eq!(w2.frames.len(), 1, "a window carries only its own frames");
        assert_eq!(w2.spy_name, "rbspy");
        assert_eq!(a.total(t0).unwrap().total_samples(), 5);
        // A capture's rate (400 Hz): a sample without a measured CPU time counts its period,
        // and the window says it; the whole run keeps the rate it started with.
        a.set_sample_rate(400);
        a.add(stack(&["other"], None), "rbspy", 7);
        let w3 = a.take_window(t0, t0).unwrap();
        assert_eq!((w3.period_ns, w3.total_cpu_ns()), (2_500_000, 2_500_000));
        assert_eq!(a.total(t0).unwrap().period_ns, 10_000_000);
    }
}
