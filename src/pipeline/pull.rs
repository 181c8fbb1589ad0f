//! Pull mode (`--listen-address`): scrapers ask for a profile instead of the agent pushing one.
//!
//! `GET /debug/pprof/profile?seconds=N` answers, N seconds later, with a gzip pprof of the samples
//! taken in those N seconds (CPU nanoseconds, as the pushed profiles), as Go's `net/http/pprof`
//! does, so `go tool pprof http://HOST:PORT/debug/pprof/profile?seconds=5` and Grafana Alloy's
//! `pyroscope.scrape` (`process_cpu`) read it. Each request is served on its own thread and gets
//! its own aggregate ([`Capture`]), fed by the session's thread while it is open: concurrent
//! scrapes see the same samples and do not disturb each other or the sampling.

use super::aggregate::{Aggregator, Profile};
use spy::Stack;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The path served, and the longest capture asked for.
pub const PROFILE_PATH: &str = "/debug/pprof/profile";
const MAX_SECONDS: f64 = 3600.0;
/// `seconds` when a request gives none (Go's default).
const DEFAULT_SECONDS: f64 = 30.0;

/// A socket bound at start (so that a port in use is an error before the program starts),
/// served once the session runs.
#[derive(Clone, Debug)]
pub struct Listener(pub Arc<TcpListener>);

impl Listener {
    /// Binds `address`: `HOST:PORT`, or `:PORT` for every interface.
    pub fn bind(address: &str) -> anyhow::Result<Listener> {
        let full = if address.starts_with(':') {
            format!("0.0.0.0{address}")
        } else {
            address.to_string()
        };
        let listener = TcpListener::bind(&full)
            .map_err(|e| anyhow::anyhow!("cannot listen on --listen-address {address}: {e}"))?;
        Ok(Listener(Arc::new(listener)))
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.local_addr().ok()
    }
}

/// A scrape waiting for its profile.
struct Request {
    seconds: Duration,
    reply: Sender<Vec<u8>>,
}

/// The samples of one scrape so far.
struct Capture {
    aggregator: Aggregator,
    start: SystemTime,
    end: SystemTime,
    reply: Sender<Vec<u8>>,
}

/// The session's side of pull mode.
pub struct Pull {
    requests: Receiver<Request>,
    captures: Vec<Capture>,
    sample_rate: u32,
    /// Samples carry their labels (pid, thread_name).
    labels: bool,
    /// Requests being served (their answer not written yet).
    in_flight: Arc<AtomicUsize>,
}

/// How long the end of the run waits for the answers to open scrapes to be written.
const ANSWER_BUDGET: Duration = Duration::from_secs(2);

impl Pull {
    /// Serves `listener` on a thread of its own (a thread per request).
    pub fn start(listener: &Listener, sample_rate: u32, labels: bool) -> anyhow::Result<Pull> {
        let socket = listener.0.try_clone()?;
        let server = tiny_http::Server::from_listener(socket, None)
            .map_err(|e| anyhow::anyhow!("cannot serve --listen-address: {e}"))?;
        let (tx, requests) = mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counter = in_flight.clone();
        std::thread::Builder::new()
            .name("pull-http".into())
            .spawn(move || {
                for rq in server.incoming_requests() {
                    let (tx, mine) = (tx.clone(), counter.clone());
                    counter.fetch_add(1, Ordering::SeqCst);
                    let spawned = std::thread::Builder::new()
                        .name("pull-request".into())
                        .spawn(move || {
                            serve(rq, &tx);
                            mine.fetch_sub(1, Ordering::SeqCst);
                        });
                    if spawned.is_err() {
                        counter.fetch_sub(1, Ordering::SeqCst);
                        log::warn!("pull: cannot start a thread for a request");
                    }
                }
            })?;
        if let Some(addr) = listener.local_addr() {
            log::info!("serving profiles on http://{addr}{PROFILE_PATH}?seconds=N (pull mode)");
        }
        Ok(Pull {
            requests,
            captures: Vec::new(),
            sample_rate,
            labels,
            in_flight,
        })
    }

    /// The rate changed (`--trigger-cpu`): open and later captures count with its period.
    pub fn set_sample_rate(&mut self, sample_rate: u32) {
        self.sample_rate = sample_rate;
        for c in &mut self.captures {
            c.aggregator.set_sample_rate(sample_rate);
        }
    }

    /// A sample, for every open capture.
    pub fn add(&mut self, stack: &Stack, spy: &'static str, pid: u32) {
        for c in &mut self.captures {
            c.aggregator.add(stack.clone(), spy, pid);
        }
    }

    /// Opens the captures asked for since the last call and answers those that are done.
    pub fn poll(&mut self, now: SystemTime) {
        while let Ok(rq) = self.requests.try_recv() {
            self.captures.push(Capture {
                aggregator: Aggregator::new(self.sample_rate, now, false).with_labels(self.labels),
                start: now,
                end: now + rq.seconds,
                reply: rq.reply,
            });
        }
        let (done, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.captures)
            .into_iter()
            .partition(|c| c.end <= now);
        self.captures = open;
        for c in done {
            let end = c.end;
            answer(c, end);
        }
    }

    /// The program ended: every open capture is answered with what it holds, up to `end`.
    pub fn finish(&mut self, end: SystemTime) {
        // The answers are written by the request threads: give them a moment before exit. A
        // request that arrives meanwhile gets an empty profile at `end`.
        let deadline = std::time::Instant::now() + ANSWER_BUDGET;
        loop {
            self.poll(end);
            for c in std::mem::take(&mut self.captures) {
                answer(c, end);
            }
            if self.in_flight.load(Ordering::SeqCst) == 0 || std::time::Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn answer(mut c: Capture, end: SystemTime) {
    let profile = c
        .aggregator
        .take_window(c.start, end)
        .unwrap_or_else(|| Profile {
            frames: Vec::new(),
            stacks: Vec::new(),
            labels: Vec::new(),
            start: c.start,
            end,
            period_ns: spy::period_ns(1),
            spy_name: "",
        });
    log::debug!(
        "pull: a profile of {} samples served",
        profile.total_samples()
    );
    let _ = c.reply.send(super::pprof::to_pprof_gz(&profile));
}

/// Answers one HTTP request.
fn serve(rq: tiny_http::Request, captures: &Sender<Request>) {
    let text = |status: u16, body: String| {
        tiny_http::Response::from_string(body + "\n")
            .with_status_code(status)
            .with_header(header("Content-Type", "text/plain; charset=utf-8"))
    };
    if !matches!(
        rq.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    ) {
        let m = rq.method().to_string();
        let _ = rq.respond(text(405, format!("method {m} not allowed: use GET")));
        return;
    }
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    if path != PROFILE_PATH {
        let _ = rq.respond(text(
            404,
            format!("not found: {path} (served: {PROFILE_PATH}?seconds=N)"),
        ));
        return;
    }
    let seconds = match parse_seconds(query) {
        Ok(s) => s,
        Err(e) => {
            let _ = rq.respond(text(400, e));
            return;
        }
    };
    let (reply, answer) = mpsc::channel();
    if captures.send(Request { seconds, reply }).is_err() {
        let _ = rq.respond(text(503, "the profiled program has ended".into()));
        return;
    }
    match answer.recv_timeout(seconds + Duration::from_secs(60)) {
        Ok(pprof) => {
            let _ = rq.respond(
                tiny_http::Response::from_data(pprof)
                    .with_header(header("Content-Type", "application/octet-stream"))
                    .with_header(header(
                        "Content-Disposition",
                        "attachment; filename=\"profile\"",
                    )),
            );
        }
        Err(_) => {
            let _ = rq.respond(text(503, "the profiled program has ended".into()));
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

/// `seconds` of a query string (Go's default when absent).
fn parse_seconds(query: &str) -> Result<Duration, String> {
    let Some(value) = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == "seconds")
        .map(|(_, v)| v)
    else {
        return Ok(Duration::from_secs_f64(DEFAULT_SECONDS));
    };
    match value.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= MAX_SECONDS => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "invalid seconds={value:?}: expected a number of seconds, more than 0 and at most {MAX_SECONDS}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_parsed_like_go() {
        assert_eq!(parse_seconds(""), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds("seconds=5"), Ok(Duration::from_secs(5)));
        assert_eq!(
            parse_seconds("x=1&seconds=0.5"),
            Ok(Duration::from_millis(500))
        );
        for bad in [
            "seconds=",
            "seconds=abc",
            "seconds=0",
            "seconds=-1",
            "seconds=3601",
            "seconds=nan",
        ] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
