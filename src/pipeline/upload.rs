//! Upload to a Pyroscope server, on its own thread so sampling never waits for the network.
//!
//! * Default route: the push API, `POST /push.v1.PusherService/Push` (protobuf `PushRequest`,
//!   gzip-compressed pprof inside). When the server answers 404 there (an older server), fall back
//!   to `POST /ingest?...&format=pprof` and keep using it.
//! * Auth: bearer token, basic auth, `X-Scope-OrgID`, extra headers. Secrets are never logged.
//! * A bounded queue (oldest dropped first, with a warning) and retries with exponential backoff
//!   on connection errors, 408, 429 and 5xx. Other 4xx are final and logged once with the
//!   server's message.
//! * [`Uploader::finish`] flushes what is queued, bounded by a deadline.

use super::aggregate::Profile;
use super::push::{self, Labels};
use crate::config::{Auth, UploadSettings};
use crate::logging::RateLimit;
use std::collections::{HashSet, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Windows waiting in the uploader (60 = 10 minutes of data).
const MAX_QUEUE: usize = 60;
/// The server rejects profiles older than an hour; stop retrying well before.
const MAX_AGE: Duration = Duration::from_secs(50 * 60);
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

enum Msg {
    Profile(Profile),
    Finish(Instant),
}

/// Counts reported when the uploader stops.
#[derive(Debug, Default, Clone, Copy)]
pub struct UploadStats {
    pub uploaded: u64,
    pub rejected: u64,
    pub dropped: u64,
}

pub struct Uploader {
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<UploadStats>>,
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
        let (tx, rx) = mpsc::sync_channel(16);
        let worker = Worker {
            client,
            settings,
            labels,
            route: Route::Push,
            queue: VecDeque::new(),
            stats: UploadStats::default(),
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
            full_warning: RateLimit::new(Duration::from_secs(60)),
        })
    }

    /// Queues a window for upload; never blocks.
    pub fn send(&mut self, profile: Profile) {
        match self.tx.try_send(Msg::Profile(profile)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if let Some(n) = self.full_warning.check() {
                    log::warn!("upload queue is full (server slow or unreachable): dropping a profile ({n} more dropped before)");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                log::error!("upload thread is gone: dropping a profile")
            }
        }
    }

    /// Uploads what is queued (retrying until `deadline`), then stops the thread.
    pub fn finish(mut self, deadline: Instant) -> UploadStats {
        let _ = self.tx.send(Msg::Finish(deadline));
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Push,
    Ingest,
}

struct Job {
    profile: Profile,
    body: Option<Vec<u8>>,
    attempts: u32,
    not_before: Instant,
    queued: Instant,
}

enum Outcome {
    Done,
    Retry(String),
    Rejected,
}

struct Worker {
    client: reqwest::blocking::Client,
    settings: UploadSettings,
    labels: Labels,
    route: Route,
    queue: VecDeque<Job>,
    stats: UploadStats,
    logged_rejections: HashSet<u16>,
    unreachable: RateLimit,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) -> UploadStats {
        let mut deadline: Option<Instant> = None;
        loop {
            // Take in new work; wait for it only as long as nothing is due.
            let now = Instant::now();
            let wait = match (self.queue.front(), deadline) {
                (Some(j), _) => j.not_before.saturating_duration_since(now),
                (None, Some(_)) => break,
                (None, None) => Duration::from_secs(3600),
            };
            let wait = match deadline {
                Some(d) => wait.min(d.saturating_duration_since(now)),
                None => wait,
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Profile(p)) => self.enqueue(p),
                Ok(Msg::Finish(d)) => deadline = Some(d),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    deadline.get_or_insert_with(Instant::now);
                }
            }
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Profile(p) => self.enqueue(p),
                    Msg::Finish(d) => deadline = Some(d),
                }
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    break;
                }
            }
            let Some(job) = self.queue.front_mut() else {
                continue;
            };
            if job.not_before > Instant::now() {
                continue;
            }
            if job.queued.elapsed() > MAX_AGE {
                log::warn!(
                    "dropping a profile that could not be uploaded for {} minutes",
                    MAX_AGE.as_secs() / 60
                );
                self.queue.pop_front();
                self.stats.dropped += 1;
                continue;
            }
            let mut job = self.queue.pop_front().expect("front exists");
            match self.attempt(&mut job, deadline) {
                Outcome::Done => self.stats.uploaded += 1,
                Outcome::Rejected => self.stats.rejected += 1,
                Outcome::Retry(why) => {
                    job.attempts += 1;
                    let backoff = BACKOFF_START
                        .saturating_mul(1 << job.attempts.min(8))
                        .min(BACKOFF_MAX);
                    job.not_before = Instant::now() + backoff;
                    if let Some(n) = self.unreachable.check() {
                        let more = if n > 0 {
                            format!(" ({n} similar errors before)")
                        } else {
                            String::new()
                        };
                        log::warn!(
                            "upload failed: {why}; retrying in {:.1}s{more}",
                            backoff.as_secs_f64()
                        );
                    }
                    self.queue.push_front(job);
                }
            }
        }
        self.stats.dropped += self.queue.len() as u64;
        self.stats
    }

    fn enqueue(&mut self, profile: Profile) {
        if self.queue.len() >= MAX_QUEUE {
            self.queue.pop_front();
            self.stats.dropped += 1;
            log::warn!("upload queue holds {MAX_QUEUE} profiles: dropping the oldest");
        }
        let now = Instant::now();
        self.queue.push_back(Job {
            profile,
            body: None,
            attempts: 0,
            not_before: now,
            queued: now,
        });
    }

    /// One upload try. After shutdown began (`deadline`), a request may not outlast it.
    fn attempt(&mut self, job: &mut Job, deadline: Option<Instant>) -> Outcome {
        let pprof = job
            .body
            .get_or_insert_with(|| super::pprof::to_pprof_gz(&job.profile))
            .clone();
        loop {
            let route = self.route;
            let request = match route {
                Route::Push => self.push_request(job.profile.spy_name, pprof.clone()),
                Route::Ingest => self.ingest_request(&job.profile, pprof.clone()),
            };
            let request = match deadline {
                Some(d) => request.timeout(
                    d.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(100)),
                ),
                None => request,
            };
            let response = match self.authorize(request).send() {
                Ok(r) => r,
                Err(e) => return Outcome::Retry(describe_send_error(&e)),
            };
            let status = response.status();
            if status.is_success() {
                log::debug!(
                    "uploaded {} samples via {route:?}",
                    job.profile.total_samples()
                );
                return Outcome::Done;
            }
            if status.as_u16() == 404 && route == Route::Push {
                log::info!("server has no push API (404 on /push.v1.PusherService/Push): using /ingest from now on");
                self.route = Route::Ingest;
                continue;
            }
            let body = response.text().unwrap_or_default();
            let body = body.trim();
            let body: String = body.chars().take(300).collect();
            if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
                return Outcome::Retry(format!("server answered {status}: {body}"));
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

    fn push_request(&self, spy_name: &str, pprof_gz: Vec<u8>) -> reqwest::blocking::RequestBuilder {
        self.client
            .post(self.endpoint(push::PUSH_PATH))
            .header("Content-Type", "application/proto")
            .body(push::push_body(&self.labels, spy_name, pprof_gz))
    }

    fn ingest_request(&self, p: &Profile, pprof_gz: Vec<u8>) -> reqwest::blocking::RequestBuilder {
        let mut url = self.endpoint(push::INGEST_PATH);
        url.query_pairs_mut()
            .extend_pairs(push::ingest_query(&self.labels, p));
        self.client
            .post(url)
            .header("Content-Type", "application/octet-stream")
            .body(pprof_gz)
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
