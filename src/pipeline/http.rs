//! One upload request: to the push route (or, after a 404 there, `/ingest` from then on), with
//! auth and extra headers, and the server's answer sorted into done, retry (with what its
//! `Retry-After` asks) or rejected (logged once per status with the server's message). Secrets
//! are never logged.

use super::push;
use super::queue::Job;
use crate::config::{Auth, UploadSettings};
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Push,
    Ingest,
}

pub enum Outcome {
    Done,
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Rejected,
}

pub struct Server {
    client: reqwest::blocking::Client,
    settings: UploadSettings,
    route: Route,
    logged_rejections: HashSet<u16>,
}

impl Server {
    pub fn new(settings: UploadSettings) -> anyhow::Result<Server> {
        let client = reqwest::blocking::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("pyroscope-spy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        Ok(Server {
            client,
            settings,
            route: Route::Push,
            logged_rejections: HashSet::new(),
        })
    }

    /// One upload try. After shutdown began (`deadline`), a request may not outlast it.
    pub fn attempt(&mut self, job: &Job, deadline: Option<Instant>) -> Outcome {
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
}
