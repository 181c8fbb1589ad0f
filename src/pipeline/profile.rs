//! A finished aggregate ([`Profile`]): frames, stacks with their labels and weights, the time
//! range; what the encoders (pprof, the local formats) and the uploader take.

use spy::Frame;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// The labels a sample carries into pprof (`Sample.label`): which process and which thread
/// it was taken in, so that one worker or one thread can be picked out in Grafana.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleLabels {
    pub pid: u32,
    pub thread_name: Option<Arc<str>>,
    /// The thread's id, for a thread without a name.
    pub thread_id: Option<u64>,
}

/// One stack of a [`Profile`]: frame indexes, **root first**; its labels (an index into
/// [`Profile::labels`], `None` when samples carry none); what it weighs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Counted {
    pub stack: Vec<u32>,
    pub labels: Option<u32>,
    pub weight: Weight,
}

impl Counted {
    /// A stack whose samples carry no labels.
    pub fn unlabelled(stack: Vec<u32>, weight: Weight) -> Counted {
        Counted {
            stack,
            labels: None,
            weight,
        }
    }
}

/// A finished aggregate, self-contained (only the frames its stacks use), ready to encode.
#[derive(Debug, Clone)]
pub struct Profile {
    pub frames: Vec<Frame>,
    /// The stacks with their labels and weights; a stack shows up once per label set.
    pub stacks: Vec<Counted>,
    /// The label sets the stacks refer to.
    pub labels: Vec<SampleLabels>,
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
        self.stacks.iter().map(|c| c.weight.samples).sum()
    }

    pub fn total_cpu_ns(&self) -> u64 {
        self.stacks.iter().map(|c| c.weight.cpu_ns).sum()
    }

    /// The profile of some of its stacks (same window), carrying only the frames they use.
    pub fn subset(&self, stacks: &[Counted]) -> Profile {
        let (frames, stacks) = reindex(&self.frames, stacks.iter());
        Profile {
            frames,
            stacks,
            labels: self.labels.clone(),
            start: self.start,
            end: self.end,
            period_ns: self.period_ns,
            spy_name: self.spy_name,
        }
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

/// Stacks renumbered over only the frames they use (of `all`), and those frames.
pub(super) fn reindex<'a>(
    all: &[Frame],
    stacks: impl Iterator<Item = &'a Counted>,
) -> (Vec<Frame>, Vec<Counted>) {
    let mut remap: HashMap<u32, u32> = HashMap::new();
    let mut frames = Vec::new();
    let stacks = stacks
        .map(|c| {
            let s = c
                .stack
                .iter()
                .map(|&id| {
                    *remap.entry(id).or_insert_with(|| {
                        frames.push(all[id as usize].clone());
                        (frames.len() - 1) as u32
                    })
                })
                .collect();
            Counted {
                stack: s,
                labels: c.labels,
                weight: c.weight,
            }
        })
        .collect();
    (frames, stacks)
}
