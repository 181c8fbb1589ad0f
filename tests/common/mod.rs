//! Shared test helpers: the real binary, real interpreters, an HTTP receiver that records what
//! the agent uploads, and decoders for the push protobuf and pprof.
#![allow(dead_code)]

use flate2::read::GzDecoder;
use prost::Message;
use pyroscope::pprof::{PprofProfile, PushRequest};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pyroscope"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example_app() -> PathBuf {
    repo().join("examples/python/app.py")
}

pub fn test_app(name: &str) -> PathBuf {
    repo().join("tests/apps").join(name)
}

/// A pyenv CPython, e.g. `python("3.11")`. Missing interpreters fail the test: CI must have them.
pub fn python(version: &str) -> PathBuf {
    let root = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or("/root".into())).join(".pyenv")
        });
    let versions = root.join("versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
        .unwrap_or_else(|e| {
            panic!(
                "no pyenv at {}: {e}; the tests need CPython {version} (see README)",
                versions.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n == version || n.starts_with(&format!("{version}."))
        })
        .collect();
    found.sort();
    let dir = found.pop().unwrap_or_else(|| {
        panic!(
            "CPython {version} is not installed under {}",
            versions.display()
        )
    });
    let major = &version[..1];
    let exe = dir.join("bin").join(format!("python{major}"));
    assert!(exe.exists(), "{} missing", exe.display());
    exe
}

/// One recorded HTTP request.
#[derive(Debug, Clone)]
pub struct Req {
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub at: SystemTime,
    pub status: u16,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// An HTTP server on 127.0.0.1 that records every request and answers with the status the
/// `respond` function picks (from the request and the index of the request).
pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Req>>>,
    server: Arc<tiny_http::Server>,
}

impl Receiver {
    pub fn start(respond: impl Fn(&Req, usize) -> u16 + Send + 'static) -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (server.clone(), requests.clone());
        std::thread::spawn(move || {
            for mut rq in s.incoming_requests() {
                let (path, query) = match rq.url().split_once('?') {
                    Some((p, q)) => (p.to_string(), q.to_string()),
                    None => (rq.url().to_string(), String::new()),
                };
                let query = url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                let headers = rq
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_ascii_lowercase(),
                            h.value.as_str().to_string(),
                        )
                    })
                    .collect();
                let mut body = Vec::new();
                let _ = rq.as_reader().read_to_end(&mut body);
                let mut req = Req {
                    path,
                    query,
                    headers,
                    body,
                    at: SystemTime::now(),
                    status: 0,
                };
                let idx = r.lock().unwrap().len();
                req.status = respond(&req, idx);
                r.lock().unwrap().push(req.clone());
                let msg = if req.status >= 400 {
                    "rejected by test receiver"
                } else {
                    ""
                };
                let _ =
                    rq.respond(tiny_http::Response::from_string(msg).with_status_code(req.status));
            }
        });
        Receiver {
            url,
            requests,
            server,
        }
    }

    /// Answers 200 to everything.
    pub fn ok() -> Receiver {
        Receiver::start(|_, _| 200)
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    /// Successful uploads to `path`.
    pub fn accepted(&self, path: &str) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path && r.status == 200)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

pub const PUSH_PATH: &str = "/push.v1.PusherService/Push";

pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(b).read_to_end(&mut out).expect("gzip");
    out
}

/// Decodes a push request: its labels and its pprof profile.
pub fn decode_push(req: &Req) -> (BTreeMap<String, String>, PprofProfile) {
    assert_eq!(req.header("content-type"), Some("application/proto"));
    let push = PushRequest::decode(&req.body[..]).expect("PushRequest");
    assert_eq!(push.series.len(), 1);
    let series = &push.series[0];
    let labels = series
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    assert_eq!(series.samples.len(), 1);
    assert_eq!(series.samples[0].id.len(), 36, "sample ID is a UUID");
    (labels, decode_pprof_gz(&series.samples[0].raw_profile))
}

pub fn decode_pprof_gz(b: &[u8]) -> PprofProfile {
    PprofProfile::decode(&gunzip(b)[..]).expect("pprof")
}

/// A pprof sample: frames root first as (function, file, line), and its value.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub frames: Vec<(String, String, i64)>,
    pub value: i64,
}

impl Sampled {
    pub fn has(&self, function: &str) -> bool {
        self.frames.iter().any(|f| f.0 == function)
    }
}

pub fn samples(p: &PprofProfile) -> Vec<Sampled> {
    let s = |i: i64| p.string_table[i as usize].clone();
    p.sample
        .iter()
        .map(|smp| {
            let frames = smp
                .location_id
                .iter()
                .rev()
                .map(|&id| {
                    let loc = p.location.iter().find(|l| l.id == id).expect("location");
                    let line = &loc.line[0];
                    let f = p
                        .function
                        .iter()
                        .find(|f| f.id == line.function_id)
                        .expect("function");
                    (s(f.name), s(f.filename), line.line)
                })
                .collect();
            Sampled {
                frames,
                value: smp.value[0],
            }
        })
        .collect()
}

/// Every push the receiver accepted, decoded: each must carry `labels` (and `period`, when
/// given); their samples together. Fails if nothing was pushed (`context`: what to show then).
#[allow(dead_code)]
pub fn pushed_samples(
    server: &Receiver,
    labels: &[(&str, &str)],
    period: Option<i64>,
    context: &str,
) -> Vec<Sampled> {
    let pushes = server.accepted(PUSH_PATH);
    assert!(!pushes.is_empty(), "no push: {context}");
    let mut all = Vec::new();
    for p in &pushes {
        let (got, prof) = decode_push(p);
        for (k, v) in labels {
            assert_eq!(got.get(*k).map(String::as_str), Some(*v), "label {k}");
        }
        if let Some(period) = period {
            assert_eq!(prof.period, period);
        }
        all.extend(samples(&prof));
    }
    all
}

/// Sum of values of samples whose stack holds `a`, and of those holding `b`.
pub fn split(samples: &[Sampled], a: &str, b: &str) -> (i64, i64) {
    let sum = |name: &str| {
        samples
            .iter()
            .filter(|s| s.has(name))
            .map(|s| s.value)
            .sum::<i64>()
    };
    (sum(a), sum(b))
}

/// The example's slow:fast split is 3:1; "within 25%" means a measured ratio in [2.25, 3.75].
pub fn assert_split(slow: i64, fast: i64) {
    assert!(slow > 0 && fast > 0, "slow={slow} fast={fast}");
    let ratio = slow as f64 / fast as f64;
    assert!(
        (2.25..=3.75).contains(&ratio),
        "slow:fast = {ratio:.2} ({slow}/{fast}), expected 3 ± 25%"
    );
}

/// Collapsed-stack lines (`frame;frame count`) → (stack, count).
pub fn collapsed(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(s, n)| (s.to_string(), n.parse().unwrap()))
        .collect()
}

/// A collapsed-stacks file (`--output x.txt`), read.
#[allow(dead_code)]
pub fn collapsed_file(path: impl AsRef<Path>) -> Vec<(String, u64)> {
    collapsed(&std::fs::read_to_string(path).unwrap())
}

pub fn collapsed_split(lines: &[(String, u64)], a: &str, b: &str) -> (i64, i64) {
    let sum = |name: &str| {
        lines
            .iter()
            .filter(|(s, _)| s.contains(name))
            .map(|(_, n)| *n as i64)
            .sum::<i64>()
    };
    (sum(a), sum(b))
}

/// `pyroscope` with the given arguments, output captured.
pub fn pyroscope(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Tests decide everything with flags; the environment must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("PYROSCOPE_") {
            c.env_remove(k);
        }
    }
    c
}

pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs to completion, with a timeout that fails the test instead of hanging it.
pub fn run(mut cmd: Command, timeout: Duration) -> Run {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn pyroscope");
    let out = std::thread::spawn({
        let mut o = child.stdout.take().unwrap();
        move || {
            let mut s = String::new();
            let _ = o.read_to_string(&mut s);
            s
        }
    });
    let err = std::thread::spawn({
        let mut e = child.stderr.take().unwrap();
        move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        }
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "pyroscope did not finish within {timeout:?}; stderr: {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        signal: status.signal(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        took: start.elapsed(),
    }
}

pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pyroscope-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// File offset of an ELF symbol's bytes (binutils' readelf: symbol value → containing section →
/// offset), for tests that patch a copy of a runtime library.
pub fn elf_symbol_file_offset(file: &Path, symbol: &str) -> usize {
    let readelf = |flag: &str| {
        String::from_utf8(
            Command::new("readelf")
                .arg(flag)
                .arg(file)
                .output()
                .expect("readelf (binutils)")
                .stdout,
        )
        .unwrap()
    };
    let addr = readelf("-sW")
        .lines()
        .find(|l| l.split_whitespace().last() == Some(symbol))
        .and_then(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .unwrap_or_else(|| panic!("symbol {symbol} in {}", file.display()));
    readelf("-SW")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(']').nth(1)?.split_whitespace().collect();
            let (a, o, size) = (
                u64::from_str_radix(f.get(2)?, 16).ok()?,
                u64::from_str_radix(f.get(3)?, 16).ok()?,
                u64::from_str_radix(f.get(4)?, 16).ok()?,
            );
            (a <= addr && addr < a + size).then(|| (addr - a + o) as usize)
        })
        .next()
        .unwrap_or_else(|| panic!("section of {symbol} in {}", file.display()))
}

/// The one error line pyroscope printed; fails if there is not exactly one, or on a panic.
#[allow(dead_code)]
pub fn error_line(r: &Run) -> String {
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("[pyroscope] error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one error line, got: {}",
        r.stderr
    );
    errors[0].to_string()
}
