//! Where and how profiles are uploaded: the server address, auth (never logged), headers,
//! timeouts, the queue and the spool, validated from the flags.

use crate::cli::CommonArgs;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Where and how profiles are uploaded.
#[derive(Clone)]
pub struct UploadSettings {
    /// Server base URL without credentials (safe to log).
    pub url: url::Url,
    pub auth: Auth,
    pub tenant_id: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Windows the in-memory queue holds (`--upload-queue` / 10 s).
    pub queue_windows: usize,
    pub spool: Option<SpoolSettings>,
}

#[derive(Clone, Debug)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

#[derive(Clone)]
pub enum Auth {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

// Secrets never reach logs: Debug prints the URL and which kind of auth is set, never header
// values (they may carry credentials too).
impl std::fmt::Debug for UploadSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} auth={:?}", self.url, self.auth)
    }
}

// Secrets never reach logs: Debug prints only which kind of auth is set.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => write!(f, "none"),
            Auth::Bearer(_) => write!(f, "bearer <redacted>"),
            Auth::Basic { user, .. } => write!(f, "basic {user}:<redacted>"),
        }
    }
}

/// Parses `--header 'Name: value'`.
pub fn parse_header(s: &str) -> Result<(String, String)> {
    let Some((name, value)) = s.split_once(':') else {
        bail!("invalid header {s:?}: expected 'Name: value'");
    };
    let name = name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        bail!("invalid header name {name:?}");
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        bail!("invalid value for header {name:?}: it contains a line break");
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses and checks the server address; credentials in the URL become basic auth.
pub fn parse_server_url(s: &str) -> Result<(url::Url, Option<(String, String)>)> {
    let mut url = url::Url::parse(s.trim()).map_err(|e| {
        anyhow::anyhow!(
            "invalid server address {:?}: {e} (expected e.g. http://pyroscope:4040)",
            redact_url_text(s)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "invalid server address {:?}: the scheme must be http or https",
            redact_url_text(s)
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("invalid server address {:?}: no host", redact_url_text(s));
    }
    let creds = if !url.username().is_empty() {
        let user = percent_decode(url.username());
        let pass = percent_decode(url.password().unwrap_or(""));
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some((user, pass))
    } else {
        None
    };
    Ok((url, creds))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Removes anything that may be credentials (`user:password@`) from a URL-looking string.
fn redact_url_text(s: &str) -> String {
    match s.rfind('@') {
        Some(at) => format!("<redacted>@{}", &s[at + 1..]),
        None => s.to_string(),
    }
}

impl UploadSettings {
    /// `None` without `--server-address` (`--spool-dir` is then ignored, with a warning); an
    /// error for any bad upload flag (headers are checked either way).
    pub fn from_args(args: &CommonArgs) -> Result<Option<UploadSettings>> {
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>>>()?;
        let upload = match args
            .server_address
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(addr) => {
                let (url, url_creds) = parse_server_url(addr)?;
                let token = args.auth_token.as_deref().is_some_and(|t| !t.is_empty());
                let basic = args
                    .basic_auth_user
                    .as_deref()
                    .is_some_and(|u| !u.is_empty())
                    || args
                        .basic_auth_password
                        .as_deref()
                        .is_some_and(|p| !p.is_empty())
                    || url_creds.is_some();
                if token && basic {
                    bail!("both --auth-token and basic auth (--basic-auth-user/--basic-auth-password or credentials in --server-address) are set: give one of them");
                }
                if args.upstream_request_timeout.is_zero() {
                    bail!("invalid --upstream-request-timeout: it must be more than 0 (e.g. 10s)");
                }
                let interval = crate::pipeline::window::UPLOAD_INTERVAL;
                let queue_windows = args.upload_queue.as_nanos().div_ceil(interval.as_nanos());
                if queue_windows == 0 {
                    bail!("invalid --upload-queue: it must be at least one window (10s)");
                }
                let spool = match &args.spool_dir {
                    Some(dir) if !dir.as_os_str().is_empty() => {
                        crate::pipeline::spool::check(dir)?;
                        Some(SpoolSettings {
                            dir: dir.clone(),
                            max_bytes: args.spool_max_size,
                        })
                    }
                    _ => None,
                };
                let auth = match (&args.auth_token, &args.basic_auth_user, url_creds) {
                    (Some(t), _, _) if !t.is_empty() => Auth::Bearer(t.clone()),
                    (_, Some(u), _) if !u.is_empty() => Auth::Basic {
                        user: u.clone(),
                        password: args.basic_auth_password.clone().unwrap_or_default(),
                    },
                    (_, _, Some((user, password))) => Auth::Basic { user, password },
                    _ => Auth::None,
                };
                Some(UploadSettings {
                    url,
                    auth,
                    tenant_id: args.tenant_id.clone().filter(|t| !t.is_empty()),
                    headers,
                    timeout: args.upstream_request_timeout,
                    queue_windows: queue_windows.min(1 << 20) as usize,
                    spool,
                })
            }
        };
        if upload.is_none() && args.spool_dir.is_some() {
            log::warn!("--spool-dir is ignored without --server-address");
        }
        Ok(upload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("X-Foo: bar: baz").unwrap(),
            ("X-Foo".into(), "bar: baz".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
    }

    #[test]
    fn urls() {
        assert!(parse_server_url("pyroscope:4040").is_err());
        assert!(parse_server_url("ftp://x").is_err());
        assert!(parse_server_url("http://").is_err());
        let (u, c) = parse_server_url("https://123:s3cr%40t@host/prefix").unwrap();
        assert_eq!(u.as_str(), "https://host/prefix");
        assert_eq!(c.unwrap(), ("123".into(), "s3cr@t".into()));
        for bad in [
            "htp//user:secret@x",
            "htp:/user:secret@host",
            "ftp://user:secret@host",
        ] {
            let err = parse_server_url(bad).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
