//! A real Grafana Pyroscope, started on free loopback ports with a temporary storage directory
//! (as a user runs it locally), and its query API.
//!
//! The binary: `$PYROSCOPE_SERVER_BIN`, else `~/.cache/pyroscope-server/bin/pyroscope`, where
//! scripts/test.sh builds it when the Go module proxy serves `github.com/grafana/pyroscope`
//! (see the README: it answers 403 today, so the tests that need it are run by hand where a
//! server was built). Missing, the tests that need it fail; they never skip.

use prost::Message;
use pyroscope::pipeline::pprof::PprofProfile;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

pub fn server_binary() -> PathBuf {
    let path = std::env::var_os("PYROSCOPE_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/pyroscope-server/bin/pyroscope")
        });
    assert!(
        path.exists(),
        "Grafana Pyroscope is missing at {} (scripts/test.sh builds it when the Go module proxy serves it; or set PYROSCOPE_SERVER_BIN)",
        path.display()
    );
    path
}

pub struct RealServer {
    pub url: String,
    child: Child,
    dir: PathBuf,
    client: reqwest::blocking::Client,
}

fn free_ports<const N: usize>() -> [u16; N] {
    // Held together so no two are the same, then released for the server.
    let listeners: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

impl RealServer {
    /// Starts the server and waits until it is ready (at most a minute).
    pub fn start(name: &str) -> RealServer {
        let bin = server_binary();
        let dir = super::tempdir(&format!("server-{name}"));
        let [http, grpc, memberlist, raft] = free_ports::<4>();
        let a = |s: &str| s.to_string();
        let args = vec![
            a("-target=all"),
            a("-architecture.storage=v2"),
            a("-server.http-listen-address=127.0.0.1"),
            format!("-server.http-listen-port={http}"),
            a("-server.grpc-listen-address=127.0.0.1"),
            format!("-server.grpc-listen-port={grpc}"),
            a("-server.graceful-shutdown-timeout=1s"),
            a("-memberlist.bind-addr=127.0.0.1"),
            format!("-memberlist.bind-port={memberlist}"),
            a("-memberlist.advertise-addr=127.0.0.1"),
            format!("-metastore.address=127.0.0.1:{grpc}"),
            format!("-query-backend.address=127.0.0.1:{grpc}"),
            format!("-metastore.raft.bind-address=127.0.0.1:{raft}"),
            format!("-metastore.raft.advertise-address=127.0.0.1:{raft}"),
            a("-distributor.ring.instance-addr=127.0.0.1"),
            a("-compactor.ring.instance-addr=127.0.0.1"),
            a("-overrides-exporter.ring.instance-addr=127.0.0.1"),
            a("-query-frontend.instance-addr=127.0.0.1"),
            a("-query-scheduler.ring.instance-addr=127.0.0.1"),
            a("-store-gateway.sharding-ring.instance-addr=127.0.0.1"),
            a("-ingester.lifecycler.addr=127.0.0.1"),
            a("-segment-writer.lifecycler.addr=127.0.0.1"),
            a("-ingester.min-ready-duration=0s"),
            a("-segment-writer.min-ready-duration=0s"),
            a("-metastore.min-ready-duration=0s"),
            a("-storage.backend=filesystem"),
            format!(
                "-storage.filesystem.dir={}",
                dir.join("data/v2/shared").display()
            ),
            a("-self-profiling.disable-push=true"),
            a("-usage-stats.enabled=false"),
        ];
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(&bin)
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = RealServer {
            url: format!("http://127.0.0.1:{http}"),
            child,
            dir,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        let t0 = Instant::now();
        loop {
            if let Ok(r) = server.client.get(format!("{}/ready", server.url)).send() {
                if r.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(s)) = server.child.try_wait() {
                panic!("Grafana Pyroscope exited ({s}): {}", server.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "Grafana Pyroscope not ready after 60 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A connect-protocol call with a JSON body.
    pub fn call(&self, method: &str, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}/{method}", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let status = r.status();
        let text = r.text().unwrap();
        assert!(status.is_success(), "{method}: {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub fn label_values(&self, name: &str, range: (i64, i64)) -> Vec<String> {
        let v = self.call(
            "querier.v1.QuerierService/LabelValues",
            json!({"name": name, "start": range.0, "end": range.1}),
        );
        strings(&v["names"])
    }

    pub fn label_names(&self, selector: &str, range: (i64, i64)) -> Vec<String> {
        let v = self.call(
            "querier.v1.QuerierService/LabelNames",
            json!({"matchers": [selector], "start": range.0, "end": range.1}),
        );
        strings(&v["names"])
    }

    pub fn profile_types(&self, range: (i64, i64)) -> Vec<String> {
        let v = self.call(
            "querier.v1.QuerierService/ProfileTypes",
            json!({"start": range.0, "end": range.1}),
        );
        v["profileTypes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["ID"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The CPU series of `selector` in 10 s steps: (timestamp ms, value) per point.
    pub fn series(&self, selector: &str, range: (i64, i64)) -> Vec<(i64, f64)> {
        let v = self.call(
            "querier.v1.QuerierService/SelectSeries",
            json!({"profileTypeID": CPU, "labelSelector": selector,
                   "start": range.0, "end": range.1, "step": 10.0}),
        );
        let mut points = Vec::new();
        for s in v["series"].as_array().into_iter().flatten() {
            for p in s["points"].as_array().into_iter().flatten() {
                let ts = match &p["timestamp"] {
                    Value::String(s) => s.parse().unwrap(),
                    n => n.as_i64().unwrap(),
                };
                points.push((ts, p["value"].as_f64().unwrap_or(0.0)));
            }
        }
        points
    }

    /// The merged CPU profile of `selector` over `range` (`SelectMergeProfile`, protobuf).
    pub fn merged_profile(&self, selector: &str, range: (i64, i64)) -> PprofProfile {
        let req = SelectMergeProfileRequest {
            profile_type_id: CPU.into(),
            label_selector: selector.into(),
            start: range.0,
            end: range.1,
        };
        let r = self
            .client
            .post(format!(
                "{}/querier.v1.QuerierService/SelectMergeProfile",
                self.url
            ))
            .header("Content-Type", "application/proto")
            .body(req.encode_to_vec())
            .send()
            .unwrap();
        let status = r.status();
        let bytes = r.bytes().unwrap();
        assert!(
            status.is_success(),
            "SelectMergeProfile: {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        PprofProfile::decode(&bytes[..]).expect("a pprof Profile")
    }

    /// Waits (at most 30 s) until the server answers `selector` with CPU time of at least
    /// `min_ns`, and returns the merged profile (data is queryable shortly after it is taken).
    pub fn wait_for_profile(&self, selector: &str, range: (i64, i64), min_ns: i64) -> PprofProfile {
        let t0 = Instant::now();
        loop {
            let p = self.merged_profile(selector, range);
            let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
            if total >= min_ns {
                return p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{selector}: {total} ns after 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct SelectMergeProfileRequest {
    #[prost(string, tag = "1")]
    profile_type_id: String,
    #[prost(string, tag = "2")]
    label_selector: String,
    #[prost(int64, tag = "3")]
    start: i64,
    #[prost(int64, tag = "4")]
    end: i64,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Milliseconds since the epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One request through the [`Proxy`]: its path and query, body, and the status given back.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub path: String,
    pub body: Vec<u8>,
    pub status: u16,
}

/// A proxy in front of the real server that records what passes, and (when `push_404`)
/// answers 404 on the push route, as a server without the push API would.
pub struct Proxy {
    pub url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Forwarded>>>,
    server: std::sync::Arc<tiny_http::Server>,
}

impl Proxy {
    pub fn start(upstream: &str, push_404: bool) -> Proxy {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, log, upstream) = (server.clone(), seen.clone(), upstream.to_string());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            for mut rq in s.incoming_requests() {
                let path = rq.url().to_string();
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(rq.as_reader(), &mut body);
                let (status, answer) = if push_404 && path.starts_with("/push.v1.") {
                    (404, b"404 page not found".to_vec())
                } else {
                    let mut fwd = client.post(format!("{upstream}{path}")).body(body.clone());
                    for h in rq.headers() {
                        let name = h.field.as_str().as_str();
                        if !matches!(
                            name.to_ascii_lowercase().as_str(),
                            "host" | "content-length"
                        ) {
                            fwd = fwd.header(name, h.value.as_str());
                        }
                    }
                    match fwd.send() {
                        Ok(r) => (r.status().as_u16(), r.bytes().unwrap_or_default().to_vec()),
                        Err(e) => (502, e.to_string().into_bytes()),
                    }
                };
                log.lock().unwrap().push(Forwarded { path, body, status });
                let _ = rq.respond(tiny_http::Response::from_data(answer).with_status_code(status));
            }
        });
        Proxy { url, seen, server }
    }

    pub fn seen(&self) -> Vec<Forwarded> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
