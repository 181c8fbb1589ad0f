//! An HTTP server in the test that records what the agent uploads and answers as told.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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

/// How the receiver answers one request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering (each request is answered on its own thread).
    pub delay: std::time::Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: std::time::Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// An HTTP server on 127.0.0.1 that records every request and answers with the status the
/// `respond` function picks (from the request and the index of the request).
pub struct Receiver {
    pub url: String,
    pub port: u16,
    requests: Arc<Mutex<Vec<Req>>>,
    server: Arc<tiny_http::Server>,
}

/// A loopback port nothing listens on now (for a server that starts later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Receiver {
    pub fn start(respond: impl Fn(&Req, usize) -> u16 + Send + 'static) -> Receiver {
        Receiver::start_with(0, move |r, i| Reply::status(respond(r, i)))
    }

    /// On `port` (0: any free one), answering with what `respond` says.
    pub fn start_with(
        port: u16,
        respond: impl Fn(&Req, usize) -> Reply + Send + 'static,
    ) -> Receiver {
        let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let url = format!("http://{addr}");
        let port = addr.port();
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
                let reply = respond(&req, idx);
                req.status = reply.status;
                r.lock().unwrap().push(req.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(reply.delay);
                    let msg = if reply.status >= 400 {
                        "rejected by test receiver"
                    } else {
                        ""
                    };
                    let mut response =
                        tiny_http::Response::from_string(msg).with_status_code(reply.status);
                    for (k, v) in &reply.headers {
                        response.add_header(
                            tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                        );
                    }
                    let _ = rq.respond(response);
                });
            }
        });
        Receiver {
            url,
            port,
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
