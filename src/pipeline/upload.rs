//! Upload to a Pyroscope server, on its own thread so sampling never waits for the network.
//!
//! * Default route: the push API, `POST /push.v1.PusherService/Push` (protobuf `PushRequest`,
//!   gzip-compressed pprof inside). When the server answers 404 there (an older server), fall back
//!   to `POST /ingest?...&format=pprof` and keep using it.
//! * Auth: bearer token, basic auth, `X-Scope-OrgID`, extra headers. Secrets are never logged.
//! * A window is encoded once, into parts that fit the server's limits (see
//!   [`super::pprof::to_pprof_parts_gz`]), each a [`Job`] with one ID for all its attempts.
//! * Jobs wait in a bounded queue: in memory (`--upload-queue`, oldest dropped first, each drop
//!   reported with its window), or on disk with `--spool-dir` ([`super::spool`]).
//! * Retries: connection errors, 408, 429 and 5xx, with exponential backoff for the server as a
//!   whole (1 s doubling to 30 s), or what its `Retry-After` asks (seconds or HTTP date, at most
//!   30 s). Other 4xx are final and logged once with the server's message.
//! * [`Uploader::finish`]: at exit what is queued is tried again at once, retried within a budget
//!   (10 s), and a second SIGINT/SIGTERM ends it at once; a request that outlasts the budget is
//!   abandoned (its window stays in the spool, or is counted as dropped).

use super::aggregate::Profile;
use super::push::{self, Labels};
use super::spool::Spool;
use crate::config::{Auth, UploadSettings};
use crate::logging::RateLimit;
use std::collections::{HashSet, VecDeque};
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
    Profile(Profile),
    Finish(Instant),
}

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

/// Counts reported when the uploader stops.
#[derive(Debug, Default, Clone)]
pub struct UploadStats {
    pub uploaded: u64,
    pub rejected: u64,
    /// Windows (parts) lost: queue or spool over its bound, too old, or not delivered by exit.
    pub dropped: u64,
    /// The time ranges of the dropped ones.
    pub dropped_windows: Vec<(SystemTime, SystemTime)>,
    /// Left in the spool directory for the next run.
    pub spooled: u64,
    /// The final flush ran out of time or was interrupted.
    pub cut_short: Option<&'static str>,
}

impl UploadStats {
    fn drop_window(&mut self, w: (SystemTime, SystemTime)) {
        self.dropped += 1;
        self.dropped_windows.push(w);
    }
}

/// What both threads see: the worker's counts, the windows `send` could not hand over, and
/// what is still waiting (for an abandoned flush).
#[derive(Default)]
struct Shared {
    stats: UploadStats,
    sender_dropped: Vec<(SystemTime, SystemTime)>,
    pending: Vec<(SystemTime, SystemTime)>,
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
        let client = reqwest::blocking::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("pyroscope-spy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        let queue = match &settings.spool {
            Some(s) => {
                let spool = Spool::open(&s.dir, s.max_bytes)?;
                if !spool.is_empty() {
                    log::info!(
                        "{} windows ({} KiB) from an earlier run wait in {}: sending them first",
                        spool.len(),
                        spool.bytes() / 1024,
                        spool.dir().display()
                    );
                }
                Queue::Disk(spool)
            }
            None => Queue::Memory {
                jobs: VecDeque::new(),
                cap: settings.queue_windows.max(1),
            },
        };
        let shared = Arc::new(Mutex::new(Shared {
            spooled: matches!(queue, Queue::Disk(_)),
            ..Shared::default()
        }));
        let (tx, rx) = mpsc::sync_channel(16);
        let worker = Worker {
            client,
            settings,
            labels: Arc::new(labels),
            route: Route::Push,
            queue,
            stats: UploadStats::default(),
            shared: shared.clone(),
            failures: 0,
            next_try: Instant::now(),
            logged_rejections: HashSet::new(),
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

    /// Queues a window for upload; never blocks.
    pub fn send(&mut self, profile: Profile) {
        let window = (profile.start, profile.end);
        match self.tx.try_send(Msg::Profile(profile)) {
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Push,
    Ingest,
}

/// Jobs waiting, oldest first.
enum Queue {
    Memory { jobs: VecDeque<Job>, cap: usize },
    Disk(Spool),
}

impl Queue {
    fn is_empty(&self) -> bool {
        match self {
            Queue::Memory { jobs, .. } => jobs.is_empty(),
            Queue::Disk(s) => s.is_empty(),
        }
    }

    fn windows(&self) -> Vec<(SystemTime, SystemTime)> {
        match self {
            Queue::Memory { jobs, .. } => jobs.iter().map(|j| (j.start, j.end)).collect(),
            Queue::Disk(s) => s.windows(),
        }
    }
}

enum Outcome {
    Done,
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Rejected,
}

struct Worker {
    client: reqwest::blocking::Client,
    settings: UploadSettings,
    labels: Arc<Labels>,
    route: Route,
    queue: Queue,
    stats: UploadStats,
    shared: Arc<Mutex<Shared>>,
    /// Failed attempts in a row (the backoff is the server's, not a window's).
    failures: u32,
    next_try: Instant,
    logged_rejections: HashSet<u16>,
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
                    Msg::Profile(p) => self.enqueue(p),
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
        let left = self.queue.windows();
        match &self.queue {
            Queue::Disk(_) => self.stats.spooled = left.len() as u64,
            Queue::Memory { .. } => {
                for w in left {
                    self.stats.drop_window(w);
                }
            }
        }
        if let Queue::Memory { jobs, .. } = &mut self.queue {
            jobs.clear();
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
        let job = match &self.queue {
            Queue::Memory { jobs, .. } => jobs.front().cloned().map(Ok),
            Queue::Disk(s) => s.front(),
        };
        let Some(job) = job else { return };
        let job = match job {
            Ok(j) => j,
            Err(why) => {
                log::warn!("dropping an unreadable spooled window: {why}");
                self.pop_front();
                return;
            }
        };
        if SystemTime::now()
            .duration_since(job.start)
            .is_ok_and(|age| age > MAX_AGE)
        {
            log::warn!(
                "dropping the window {}: it is older than the server accepts (1 h)",
                describe_window((job.start, job.end))
            );
            self.stats.drop_window((job.start, job.end));
            self.pop_front();
            return;
        }
        match self.attempt(&job, deadline) {
            Outcome::Done => {
                self.stats.uploaded += 1;
                self.failures = 0;
                self.pop_front();
            }
            Outcome::Rejected => {
                self.stats.rejected += 1;
                self.failures = 0;
                self.pop_front();
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

    fn pop_front(&mut self) {
        match &mut self.queue {
            Queue::Memory { jobs, .. } => {
                jobs.pop_front();
            }
            Queue::Disk(s) => s.pop_front(),
        }
    }

    /// Encodes a window into jobs (parts within the server's limits) and queues them.
    fn enqueue(&mut self, profile: Profile) {
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
                labels: self.labels.clone(),
                spy_name: profile.spy_name.to_string(),
                start: profile.start,
                end: profile.end,
                pprof_gz,
            };
            match &mut self.queue {
                Queue::Memory { jobs, cap } => {
                    if jobs.len() >= *cap {
                        let old = jobs.pop_front().expect("cap >= 1");
                        log::warn!(
                            "upload queue holds {cap} windows ({}): dropping the oldest, {}",
                            describe_duration(*cap),
                            describe_window((old.start, old.end))
                        );
                        self.stats.drop_window((old.start, old.end));
                    }
                    jobs.push_back(job);
                }
                Queue::Disk(spool) => match spool.push(&job) {
                    Ok(dropped) => {
                        for w in dropped {
                            log::warn!(
                                "--spool-dir {} is over --spool-max-size: dropping the oldest window, {}",
                                spool.dir().display(),
                                describe_window(w)
                            );
                            self.stats.drop_window(w);
                        }
                    }
                    Err(e) => {
                        log::warn!(
                            "{e:#}: the window {} is lost",
                            describe_window((job.start, job.end))
                        );
                        self.stats.drop_window((job.start, job.end));
                    }
                },
            }
        }
    }

    /// One upload try. After shutdown began (`deadline`), a request may not outlast it.
    fn attempt(&mut self, job: &Job, deadline: Option<Instant>) -> Outcome {
        loop {
            let route = self.route;
            let request = match route {
                Route::Push => self.push_request(job),
                Route::Ingest => self.ingest_request(job),
            };
            let request = match deadline {
                Some(d) => request.timeout(
                    d.saturating_duration_since(Instant::now())
                        .min(self.settings.timeout)
                        .max(Duration::from_millis(100)),
                ),
                None => request,
            };
            let response = match self.authorize(request).send() {
                Ok(r) => r,
                Err(e) => {
                    return Outcome::Retry {
                        why: describe_send_error(&e),
                        after: None,
                    }
                }
            };
            let status = response.status();
            if status.is_success() {
                log::debug!("uploaded a window via {route:?}");
                return Outcome::Done;
            }
            if status.as_u16() == 404 && route == Route::Push {
                log::info!("server has no push API (404 on /push.v1.PusherService/Push): using /ingest from now on");
                self.route = Route::Ingest;
                continue;
            }
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, SystemTime::now()));
            let body = response.text().unwrap_or_default();
            let body = body.trim();
            let body: String = body.chars().take(300).collect();
            if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
                return Outcome::Retry {
                    why: format!("server answered {status}: {body}"),
                    after,
                };
            }
            if self.logged_rejections.insert(status.as_u16()) {
                log::error!("server rejected the profile with {status}: {body} (further {} errors are not logged)", status.as_u16());
            }
            return Outcome::Rejected;
        }
    }

    fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.settings.url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{path}"));
        url
    }

    fn push_request(&self, job: &Job) -> reqwest::blocking::RequestBuilder {
        self.client
            .post(self.endpoint(push::PUSH_PATH))
            .header("Content-Type", "application/proto")
            .body(push::push_body(
                &job.labels,
                &job.spy_name,
                &job.pprof_gz,
                &job.id,
            ))
    }

    fn ingest_request(&self, job: &Job) -> reqwest::blocking::RequestBuilder {
        let mut url = self.endpoint(push::INGEST_PATH);
        url.query_pairs_mut().extend_pairs(push::ingest_query(
            &job.labels,
            job.start,
            job.end,
            &job.spy_name,
        ));
        self.client
            .post(url)
            .header("Content-Type", "application/octet-stream")
            .body(job.pprof_gz.clone())
    }

    fn authorize(
        &self,
        mut req: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.settings.auth {
            Auth::None => {}
            Auth::Bearer(token) => req = req.bearer_auth(token),
            Auth::Basic { user, password } => req = req.basic_auth(user, Some(password)),
        }
        if let Some(t) = &self.settings.tenant_id {
            req = req.header("X-Scope-OrgID", t);
        }
        for (k, v) in &self.settings.headers {
            req = req.header(k, v);
        }
        req
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the
/// past is no wait.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// `12:00:10-12:00:20 UTC` (the window's wall-clock time).
pub fn describe_window((start, end): (SystemTime, SystemTime)) -> String {
    let hms = |t: SystemTime| {
        let s = t
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            % 86_400;
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    };
    format!("{}-{} UTC", hms(start), hms(end))
}

fn describe_duration(windows: usize) -> String {
    let secs = windows as u64 * super::window::UPLOAD_INTERVAL.as_secs();
    match (secs / 60, secs % 60) {
        (min, 0) => format!("{min} min"),
        _ => format!("{secs} s"),
    }
}

/// A transport error in one line, without request details.
fn describe_send_error(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "cannot connect to the server".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(l) = last {
        msg.push_str(": ");
        msg.push_str(&l);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("20", now), Some(Duration::from_secs(20)));
        assert_eq!(retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }

    #[test]
    fn windows_are_described_in_utc() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            describe_window((t, t + Duration::from_secs(10))),
            "22:13:20-22:13:30 UTC"
        );
    }
}
