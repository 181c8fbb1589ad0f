//! What waits for the server: [`Job`]s, oldest first, in memory (at most `--upload-queue`, the
//! oldest dropped first) or on disk with `--spool-dir` ([`super::spool`]). Every window dropped
//! is logged here with why and its time, and handed back to be counted.

use super::push::Labels;
use super::spool::Spool;
use super::window::{describe_window, UPLOAD_INTERVAL};
use crate::config::UploadSettings;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

/// A window's time range.
pub type Window = (SystemTime, SystemTime);

/// One part of one window, encoded, ready to send (also read back from the spool, so it carries
/// its own labels).
#[derive(Clone, Debug)]
pub struct Job {
    /// Sent as the push sample's ID, the same on every attempt.
    pub id: String,
    pub labels: Arc<Labels>,
    pub spy_name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub pprof_gz: Vec<u8>,
}

impl Job {
    pub fn window(&self) -> Window {
        (self.start, self.end)
    }
}

pub enum Queue {
    Memory { jobs: VecDeque<Job>, cap: usize },
    Disk(Spool),
}

impl Queue {
    /// The spool when `--spool-dir` is given (saying what an earlier run left there), else
    /// memory.
    pub fn new(settings: &UploadSettings) -> anyhow::Result<Queue> {
        let Some(s) = &settings.spool else {
            return Ok(Queue::Memory {
                jobs: VecDeque::new(),
                cap: settings.queue_windows.max(1),
            });
        };
        let spool = Spool::open(&s.dir, s.max_bytes)?;
        if !spool.is_empty() {
            log::info!(
                "{} windows ({} KiB) from an earlier run wait in {}: sending them first",
                spool.len(),
                spool.bytes() / 1024,
                spool.dir().display()
            );
        }
        Ok(Queue::Disk(spool))
    }

    pub fn on_disk(&self) -> bool {
        matches!(self, Queue::Disk(_))
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Queue::Memory { jobs, .. } => jobs.is_empty(),
            Queue::Disk(s) => s.is_empty(),
        }
    }

    /// The time range of every job waiting.
    pub fn windows(&self) -> Vec<Window> {
        match self {
            Queue::Memory { jobs, .. } => jobs.iter().map(Job::window).collect(),
            Queue::Disk(s) => s.windows(),
        }
    }

    /// The oldest job; `Err` (with the reason) for a spooled file that cannot be read, which
    /// the caller drops with [`Queue::pop_front`].
    pub fn front(&self) -> Option<Result<Job, String>> {
        match self {
            Queue::Memory { jobs, .. } => jobs.front().cloned().map(Ok),
            Queue::Disk(s) => s.front(),
        }
    }

    /// Removes the oldest job (sent, refused for good, or dropped).
    pub fn pop_front(&mut self) {
        match self {
            Queue::Memory { jobs, .. } => {
                jobs.pop_front();
            }
            Queue::Disk(s) => s.pop_front(),
        }
    }

    /// Queues a job; returns the windows dropped for it (the oldest, over the bound; or the job
    /// itself when the spool cannot take it), each logged.
    pub fn push(&mut self, job: Job) -> Vec<Window> {
        match self {
            Queue::Memory { jobs, cap } => {
                let mut dropped = Vec::new();
                if jobs.len() >= *cap {
                    let old = jobs.pop_front().expect("cap >= 1");
                    log::warn!(
                        "upload queue holds {cap} windows ({}): dropping the oldest, {}",
                        describe_windows(*cap),
                        describe_window(old.window())
                    );
                    dropped.push(old.window());
                }
                jobs.push_back(job);
                dropped
            }
            Queue::Disk(spool) => match spool.push(&job) {
                Ok(dropped) => {
                    for &w in &dropped {
                        log::warn!(
                            "--spool-dir {} is over --spool-max-size: dropping the oldest window, {}",
                            spool.dir().display(),
                            describe_window(w)
                        );
                    }
                    dropped
                }
                Err(e) => {
                    log::warn!(
                        "{e:#}: the window {} is lost",
                        describe_window(job.window())
                    );
                    vec![job.window()]
                }
            },
        }
    }

    /// At exit: what is still waiting. Jobs in memory are gone with the process (the queue is
    /// left empty); a spool keeps its files for the next run.
    pub fn leave(&mut self) -> Vec<Window> {
        let left = self.windows();
        if let Queue::Memory { jobs, .. } = self {
            jobs.clear();
        }
        left
    }
}

/// `N min` (or `N s`) of windows.
fn describe_windows(windows: usize) -> String {
    let secs = windows as u64 * UPLOAD_INTERVAL.as_secs();
    match (secs / 60, secs % 60) {
        (min, 0) => format!("{min} min"),
        _ => format!("{secs} s"),
    }
}
