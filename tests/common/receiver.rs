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
