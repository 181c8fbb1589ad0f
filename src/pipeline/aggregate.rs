//! Aggregation: samples → interned frames and stacks → one [`Profile`] per window (cut by
//! [`super::window`]), plus (when a local output is wanted) the whole run's totals.

use rustc_hash::FxHashMap;
use spy::{Frame, Stack};
use std::collections::HashMap;
use std::time::SystemTime;

/// A finished aggregate, self-contained (only the frames its stacks use), ready to encode.
#[derive(Debug, Clone)]
pub struct Profile {
    pub frames: Vec<Frame>,
    /// Stacks as indexes into `frames`, **root first**, with what they weigh.
    pub stacks: Vec<(Vec<u32>, Weight)>,
    pub start: SystemTime,
    pub end: SystemTime,
    /// The sampling period (1e9 / sample rate), in nanoseconds.
    pub period_ns: u64,
    /// The spy that took most of the samples (`pyspy`, `rbspy`).
    pub spy_name: &'static str,
}

/// What a stack weighs: how many samples found it, and the CPU time they stand for (each
/// sample its thread's CPU time since the previous tick, see [`spy::Stack::cpu_ns`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weight {
    pub samples: u64,
    pub cpu_ns: u64,
}

impl Profile {
    pub fn total_samples(&self) -> u64 {
        self.stacks.iter().map(|(_, w)| w.samples).sum()
    }

    pub fn total_cpu_ns(&self) -> u64 {
        self.stacks.iter().map(|(_, w)| w.cpu_ns).sum()
    }

    /// A stack as `;`-joined text, root first, with `name` rendering each frame.
    pub fn stack_text(&self, stack: &[u32], name: impl Fn(&Frame) -> String) -> String {
        stack
            .iter()
            .map(|&i| name(&self.frames[i as usize]))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// `function (file:line)`, as py-spy names frames in flamegraphs; `function` alone when the
/// file is not known (e.g. an unresolved `[unknown]` frame).
pub fn frame_label(f: &Frame) -> String {
    if f.file.is_empty() {
        f.function.to_string()
    } else if f.line > 0 {
        format!("{} ({}:{})", f.function, f.file, f.line)
    } else {
        format!("{} ({})", f.function, f.file)
    }
}

// Fx rather than SipHash: every sample hashes each of its frames (names and files) and its
// stack. The names come from the user's own program; hash flooding is not a concern here.
type Counts = FxHashMap<Vec<u32>, Weight>;

/// Collects samples. Frames are interned once for the whole run; stacks per window.
pub struct Aggregator {
    frame_ids: FxHashMap<Frame, u32>,
    frames: Vec<Frame>,
    window: Counts,
    window_spies: HashMap<&'static str, u64>,
    total_spies: HashMap<&'static str, u64>,
    total: Option<Counts>,
    run_start: SystemTime,
    period_ns: u64,
    scratch: Vec<u32>,
}

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
            scratch: Vec::new(),
        }
    }

    /// Adds one sample of one thread, taken by `spy`.
    pub fn add(&mut self, stack: Stack, spy: &'static str) {
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
        bump(&mut self.window, &self.scratch, cpu_ns);
        if let Some(total) = &mut self.total {
            bump(total, &self.scratch, cpu_ns);
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
        Some(self.build(counts.into_iter(), start, end, main_spy(&spies)))
    }

    /// The whole run so far (when totals are kept).
    pub fn total(&self, end: SystemTime) -> Option<Profile> {
        let total = self.total.as_ref()?;
        Some(self.build(
            total.iter().map(|(k, v)| (k.clone(), *v)),
            self.run_start,
            end,
            main_spy(&self.total_spies),
        ))
    }

    fn build(
        &self,
        counts: impl Iterator<Item = (Vec<u32>, Weight)>,
        start: SystemTime,
        end: SystemTime,
        spy_name: &'static str,
    ) -> Profile {
        // Re-index so the profile carries only the frames it uses.
        let mut remap: HashMap<u32, u32> = HashMap::new();
        let mut frames = Vec::new();
        let mut stacks: Vec<(Vec<u32>, Weight)> = counts
            .map(|(stack, n)| {
                let s = stack
                    .iter()
                    .map(|&id| {
                        *remap.entry(id).or_insert_with(|| {
                            frames.push(self.frames[id as usize].clone());
                            (frames.len() - 1) as u32
                        })
                    })
                    .collect();
                (s, n)
            })
            .collect();
        stacks.sort();
        Profile {
            frames,
            stacks,
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

    #[test]
    fn windows_and_totals() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut a = Aggregator::new(100, t0, true);
        for ns in [None, Some(4_000_000), Some(25_000_000)] {
            a.add(
                Stack {
                    thread_id: 1,
                    frames: vec![f("main"), f("slow")],
                    cpu_ns: ns,
                },
                "pyspy",
            );
        }
        a.add(
            Stack {
                thread_id: 1,
                frames: vec![f("main"), f("fast")],
                cpu_ns: None,
            },
            "pyspy",
        );
        let w = a.take_window(t0, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(w.total_samples(), 4);
        assert_eq!(w.frames.len(), 3);
        assert_eq!(w.period_ns, 10_000_000);
        assert_eq!(w.spy_name, "pyspy");
        let texts: Vec<_> = w
            .stacks
            .iter()
            .map(|(s, n)| (w.stack_text(s, |f| f.function.to_string()), *n))
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
        a.add(
            Stack {
                thread_id: 1,
                frames: vec![f("other")],
                cpu_ns: None,
            },
            "rbspy",
        );
        let w2 = a.take_window(t0, t0).unwrap();
        assert_eq!(w2.frames.len(), 1, "a window carries only its own frames");
        assert_eq!(w2.spy_name, "rbspy");
        assert_eq!(a.total(t0).unwrap().total_samples(), 5);
    }
}
