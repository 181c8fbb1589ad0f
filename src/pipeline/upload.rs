//! Upload to a Pyroscope server, on its own thread so sampling never waits for the network.
//!
//! * One request, its route (push API, or `/ingest` after a 404), auth and the answer:
//!   [`super::http`].
//! * A window is encoded once, into parts that fit the server's limits (see
//!   [`super::pprof::to_pprof_parts_gz`]), each a [`Job`] with one ID for all its attempts.
//! * Jobs wait in a bounded queue ([`super::queue`]): in memory (`--upload-queue`, oldest
//!   dropped first, each drop reported with its window), or on disk with `--spool-dir`.
//! * Retries: connection errors, 408, 429 and 5xx, with exponential backoff for the server as a
//!   whole (1 s doubling to 30 s), or what its `Retry-After` asks (seconds or HTTP date, at most
//!   30 s). Other 4xx are final and logged once with the server's message.
//! * [`Uploader::finish`]: at exit what is queued is tried again at once, retried within a budget
//!   (10 s), and a second SIGINT/SIGTERM ends it at once; a request that outlasts the budget is
//!   abandoned (its window stays in the spool, or is counted as dropped).

use super::aggregate::Profile;
use super::http::{Outcome, Server};
use super::push::Labels;
use super::queue::{Job, Queue, Window};
use super::window::describe_window;
use crate::config::UploadSettings;
use crate::logging::RateLimit;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The server rejects profiles older than an hour (`validation.reject-older-than`): a window
/// older than this is dropped rather than sent to be refused.
const MAX_AGE: Duration = Duration::from_secs(55 * 60);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Between retries once shutdown began (the budget is short).
const SHUTDOWN_RETRY: Duration = Duration::from_millis(500);

enum Msg {
    /// A window, and the trigger it was captured under (`--trigger-cpu`: the value of its
    /// `trigger` series label).
    Profile(Profile, Option<&'static str>),
    Finish(Instant),
}

/// Counts reported when the uploader stops.
#[derive(Debug, Default, Clone)]
pub struct UploadStats {
    pub uploaded: u64,
    pub rejected: u64,
    /// Windows (parts) lost: queue or spool over its bound, too old, or not delivered by exit.
    pub dropped: u64,
    /// The time ranges of the dropped ones.
    pub dropped_windows: Vec<Window>,
    /// Left in the spool directory for the next run.
    pub spooled: u64,
    /// The final flush ran out of time or was interrupted.
    pub cut_short: Option<&'static str>,
}

impl UploadStats {
    fn drop_window(&mut self, w: Window) {
        self.dropped += 1;
        self.dropped_windows.push(w);
    }
}

/// What both threads see: the worker's counts, the windows `send` could not hand over, and
/// what is still waiting (for an abandoned flush).
#[derive(Default)]
struct Shared {
    stats: UploadStats,
    sender_dropped: Vec<Window>,
    pending: Vec<Window>,
    spooled: bool,
}

pub struct Uploader {
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    full_warning: RateLimit,
}

impl Uploader {
    pub fn start(settings: UploadSettings, labels: Labels) -> anyhow::Result<Uploader> {
        let queue = Queue::new(&settings)?;
        let shared = Arc::new(Mutex::new(Shared {
            spooled: queue.on_disk(),
            ..Shared::default()
        }));
        let (tx, rx) = mpsc::sync_channel(16);
        let worker = Worker {
            server: Server::new(settings)?,
            labels: Arc::new(labels),
            queue,
            stats: UploadStats::default(),
            shared: shared.clone(),
            failures: 0,
            next_try: Instant::now(),
            unreachable: RateLimit::new(Duration::from_secs(30)),
        };
        let thread = std::thread::Builder::new()
            .name("upload".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| anyhow::anyhow!("cannot start the upload thread: {e}"))?;
        Ok(Uploader {
            tx,
            thread: Some(thread),
            shared,
            full_warning: RateLimit::new(Duration::from_secs(60)),
        })
    }

    /// Queues a window for upload (labelled `trigger=<kind>` when captured under a trigger);
    /// never blocks.
    pub fn send(&mut self, profile: Profile, trigger: Option<&'static str>) {
        let window = (profile.start, profile.end);
        match self.tx.try_send(Msg::Profile(profile, trigger)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.lock().unwrap().sender_dropped.push(window);
                if let Some(n) = self.full_warning.check() {
                    log::warn!("the upload thread is behind: dropping the window {} ({n} more dropped before)", describe_window(window));
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.lock().unwrap().sender_dropped.push(window);
                log::error!("upload thread is gone: dropping a profile")
            }
        }
    }

    /// Uploads what is queued, retrying until `deadline`, then stops the thread. Waits no
    /// longer than the deadline whatever a request's timeout, and gives up at once when
    /// `interrupted` (called with how long it may wait) says so.
    pub fn finish(
        mut self,
        deadline: Instant,
        interrupted: &mut dyn FnMut(Duration) -> bool,
    ) -> UploadStats {
        let _ = self.tx.send(Msg::Finish(deadline));
        let thread = self.thread.take().expect("finish is called once");
        // A little beyond the deadline: the worker stops there by itself unless a request is
        // in flight.
        let until = deadline + Duration::from_millis(200);
        let mut cut = None;
        while !thread.is_finished() {
            let now = Instant::now();
            if now >= until {
                cut = Some("out of time");
                break;
            }
            if interrupted((until - now).min(Duration::from_millis(50))) {
                cut = Some("interrupted");
                break;
            }
        }
        if cut.is_none() {
            let _ = thread.join();
        }
        let mut shared = self.shared.lock().unwrap();
        let mut stats = shared.stats.clone();
        for w in std::mem::take(&mut shared.sender_dropped) {
            stats.drop_window(w);
        }
        if let Some(why) = cut {
            // The worker is left behind (in a request); what it still held is lost, or stays
            // in the spool for the next run.
            stats.cut_short = Some(why);
            let pending = std::mem::take(&mut shared.pending);
            if shared.spooled {
                stats.spooled = pending.len() as u64;
            } else {
                for w in pending {
                    stats.drop_window(w);
                }
            }
        }
        stats
    }
}

struct Worker {
    server: Server,
    labels: Arc<Labels>,
    queue: Queue,
    stats: UploadStats,
    shared: Arc<Mutex<Shared>>,
    /// Failed attempts in a row (the backoff is the server's, not a window's).
    failures: u32,
    next_try: Instant,
    unreachable: RateLimit,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut deadline: Option<Instant> = None;
        self.publish();
        loop {
            // Take in new work; wait for it only as long as nothing is due.
            let now = Instant::now();
            let wait = if !self.queue.is_empty() {
                self.next_try.saturating_duration_since(now)
            } else if deadline.is_some() {
                break;
            } else {
                Duration::from_secs(3600)
            };
            let wait = match deadline {
                Some(d) => wait.min(d.saturating_duration_since(now)),
                None => wait,
            };
            let mut msgs = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(m) => msgs.push(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    deadline.get_or_insert_with(Instant::now);
                }
            }
            msgs.extend(rx.try_iter());
            for msg in msgs {
                match msg {
                    Msg::Profile(p, trigger) => self.enqueue(p, trigger),
                    Msg::Finish(d) => {
                        deadline = Some(d);
                        // Whatever waits out a backoff gets another try now: the server may
                        // be back, and there is no later.
                        self.next_try = Instant::now();
                    }
                }
            }
            self.publish();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if self.queue.is_empty() || self.next_try > Instant::now() {
                continue;
            }
            self.try_front(deadline);
            self.publish();
        }
        let left = self.queue.leave();
        if self.queue.on_disk() {
            self.stats.spooled = left.len() as u64;
        } else {
            for w in left {
                self.stats.drop_window(w);
            }
        }
        self.publish();
    }

    /// Copies the counts and what is pending to where [`Uploader::finish`] reads them.
    fn publish(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.stats = self.stats.clone();
        shared.pending = self.queue.windows();
    }

    /// One attempt at the oldest job, and what follows from its outcome.
    fn try_front(&mut self, deadline: Option<Instant>) {
        let Some(job) = self.queue.front() else {
            return;
        };
        let job = match job {
            Ok(j) => j,
            Err(why) => {
                log::warn!("dropping an unreadable spooled window: {why}");
                self.queue.pop_front();
                return;
            }
        };
        if SystemTime::now()
            .duration_since(job.start)
            .is_ok_and(|age| age > MAX_AGE)
        {
            log::warn!(
                "dropping the window {}: it is older than the server accepts (1 h)",
                describe_window(job.window())
            );
            self.stats.drop_window(job.window());
            self.queue.pop_front();
            return;
        }
        match self.server.attempt(&job, deadline) {
            Outcome::Done => {
                self.stats.uploaded += 1;
                self.failures = 0;
                self.queue.pop_front();
            }
            Outcome::Rejected => {
                self.stats.rejected += 1;
                self.failures = 0;
                self.queue.pop_front();
            }
            Outcome::Retry { why, after } => {
                self.failures += 1;
                let backoff = BACKOFF_START
                    .saturating_mul(1 << (self.failures - 1).min(8))
                    .min(BACKOFF_MAX);
                let mut delay = after.unwrap_or(backoff).min(BACKOFF_MAX);
                if deadline.is_some() {
                    delay = delay.min(SHUTDOWN_RETRY);
                }
                self.next_try = Instant::now() + delay;
                if let Some(n) = self.unreachable.check() {
                    let more = if n > 0 {
                        format!(" ({n} similar errors before)")
                    } else {
                        String::new()
                    };
                    let asked = if after.is_some() {
                        " (as the server's Retry-After asks)"
                    } else {
                        ""
                    };
                    log::warn!(
                        "upload failed: {why}; retrying in {:.1}s{asked}{more}",
                        delay.as_secs_f64()
                    );
                }
            }
        }
    }

    /// Encodes a window into jobs (parts within the server's limits) and queues them.
    fn enqueue(&mut self, profile: Profile, trigger: Option<&'static str>) {
        let labels = window_labels(&self.labels, trigger, profile.period_ns);
        let parts = super::pprof::to_pprof_parts_gz(&profile);
        if parts.len() > 1 {
            log::info!(
                "the window {} holds {} distinct stacks: sent in {} parts (the server takes at most {} samples or {} MiB per profile)",
                describe_window((profile.start, profile.end)),
                profile.stacks.len(),
                parts.len(),
                super::pprof::MAX_SAMPLES,
                super::pprof::MAX_BYTES >> 20
            );
        }
        for pprof_gz in parts {
            let job = Job {
                id: uuid::Uuid::new_v4().to_string(),
                labels: labels.clone(),
                spy_name: profile.spy_name.to_string(),
                start: profile.start,
                end: profile.end,
                pprof_gz,
            };
            for w in self.queue.push(job) {
                self.stats.drop_window(w);
            }
        }
    }
}

/// The labels of a window's jobs: the run's, or for a window of a triggered capture the run's
/// tags plus `trigger=<kind>` and its faster rate (`/ingest`'s sampleRate). The spool stores
/// them with each job, so a triggered window keeps its label across a restart.
fn window_labels(run: &Arc<Labels>, trigger: Option<&'static str>, period_ns: u64) -> Arc<Labels> {
    match trigger {
        None => run.clone(),
        Some(kind) => {
            let mut l = (**run).clone();
            l.tags
                .insert(crate::config::trigger::TRIGGER_LABEL.into(), kind.into());
            l.sample_rate = (1_000_000_000 / period_ns.max(1)) as u32;
            Arc::new(l)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triggered_window_carries_its_label_and_rate_through_the_spool() {
        let run = Arc::new(Labels {
            app_name: "shop".into(),
            tags: [("env".to_string(), "prod".to_string())].into(),
            sample_rate: 100,
        });
        assert!(Arc::ptr_eq(&window_labels(&run, None, 10_000_000), &run));
        let hot = window_labels(&run, Some("cpu"), 2_500_000);
        assert_eq!(hot.sample_rate, 400);
        assert_eq!(
            hot.tags.iter().collect::<Vec<_>>(),
            [
                (&"env".into(), &"prod".into()),
                (&"trigger".into(), &"cpu".into())
            ]
        );
        // Through the spool (a restart) and into both routes.
        let dir =
            std::env::temp_dir().join(format!("pyroscope-trigger-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut spool = super::super::spool::Spool::open(&dir, 1 << 20).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let job = super::super::queue::Job {
            id: "0b7c2ad4-7d6f-4a43-9d0e-4ad2a1f6c2d1".into(),
            labels: hot,
            spy_name: "pyspy".into(),
            start: t,
            end: t + Duration::from_secs(10),
            pprof_gz: vec![1, 2, 3],
        };
        spool.push(&job).unwrap();
        drop(spool);
        let back = super::super::spool::Spool::open(&dir, 1 << 20)
            .unwrap()
            .front()
            .unwrap()
            .unwrap();
        assert_eq!(back.labels.tags["trigger"], "cpu");
        assert_eq!(back.labels.sample_rate, 400);
        let q = super::super::push::ingest_query(&back.labels, back.start, back.end, "pyspy");
        assert!(
            q.contains(&("name", "shop{env=prod,trigger=cpu}".into())),
            "{q:?}"
        );
        assert!(q.contains(&("sampleRate", "400".into())), "{q:?}");
        let body = super::super::push::push_body(&back.labels, "pyspy", &[1], &back.id);
        let req = <super::super::push::PushRequest as prost::Message>::decode(&body[..]).unwrap();
        assert!(req.series[0]
            .labels
            .iter()
            .any(|l| l.name == "trigger" && l.value == "cpu"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
