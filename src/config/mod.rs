//! Turns parsed flags into validated settings: application name and tags, server URL, auth,
//! headers, outputs. Every problem becomes one clear error line before anything starts.

pub mod trigger;
mod upload;

pub use upload::{parse_header, parse_server_url, Auth, SpoolSettings, UploadSettings};

use crate::cli::CommonArgs;
use crate::pipeline::output::OutputFormat;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Grafana Pyroscope's default label limits (`validation.max-label-names-per-series`,
/// `max-label-name-length`, `max-label-value-length`): a series over any of them is rejected,
/// so every window would be.
pub const MAX_LABELS: usize = 30;
/// Labels each sample adds to its series in the server: `pid`, and `thread_name` or `thread_id`.
pub const SAMPLE_LABELS: usize = 2;
pub const MAX_LABEL_NAME: usize = 1024;
pub const MAX_LABEL_VALUE: usize = 2048;
/// The highest sample rate; higher rates are lowered to it (with a warning).
pub const MAX_SAMPLE_RATE: u32 = 10_000;

/// Everything the session needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub app_name: String,
    /// Tags from the `{}` part of the name and from `--tag`, the latter winning; sorted by key.
    pub tags: BTreeMap<String, String>,
    pub sample_rate: u32,
    pub spy_name: String,
    pub detect_subprocesses: bool,
    /// Spies (by name) whose targets are paused while read.
    pub blocking: Vec<&'static str>,
    /// .NET threads outside managed code count too.
    pub wall_clock: bool,
    /// Python: only the GIL holder counts.
    pub gil_only: bool,
    /// Each sample carries the labels `pid` and `thread_name` (off: `--no-sample-labels`).
    pub sample_labels: bool,
    /// Under exec, stop tracing processes of runtimes that sample themselves (.NET).
    pub release_ptrace: bool,
    pub upload: Option<UploadSettings>,
    /// Files written at exit: `--output`, or the default files when no server is given (and
    /// no `--listen-address`).
    pub outputs: Vec<(PathBuf, OutputFormat)>,
    /// Pull mode: the socket scrapers ask on, bound before the program starts.
    pub listen: Option<crate::pipeline::pull::Listener>,
    /// `--trigger-cpu`: sample faster while the program is busy.
    pub trigger: Option<trigger::TriggerSettings>,
}

/// Splits `app{k=v,k2=v2}` into the name and its tags.
pub fn parse_app_name(full: &str) -> Result<(String, BTreeMap<String, String>)> {
    let full = full.trim();
    let mut tags = BTreeMap::new();
    let Some(open) = full.find('{') else {
        return Ok((full.to_string(), tags));
    };
    let name = full[..open].trim().to_string();
    let rest = &full[open + 1..];
    let Some(body) = rest.strip_suffix('}') else {
        bail!("invalid application name {full:?}: missing closing '}}'");
    };
    for pair in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) =
            parse_tag(pair).with_context(|| format!("invalid application name {full:?}"))?;
        tags.insert(k, v);
    }
    Ok((name, tags))
}

/// Parses one `key=value` tag and validates the key as the server does.
pub fn parse_tag(s: &str) -> Result<(String, String)> {
    let parts: Vec<&str> = s.split('=').collect();
    if parts.len() != 2 {
        bail!("invalid tag {s:?}: should be in key=value format");
    }
    let (k, v) = (parts[0].trim(), parts[1].trim());
    if k.is_empty() {
        bail!("invalid tag {s:?}: the key is empty");
    }
    if let Some(c) = k
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
    {
        bail!("invalid tag key {k:?}: character {c:?} is not allowed (use letters, digits, '_' and '.')");
    }
    if k.starts_with("__") {
        bail!("invalid tag key {k:?}: keys starting with '__' are reserved");
    }
    if k == "service_name" {
        bail!("invalid tag key {k:?}: the service name is set with --application-name");
    }
    if k.len() > MAX_LABEL_NAME {
        bail!(
            "invalid tag key {}...: {} characters, the server accepts at most {MAX_LABEL_NAME}",
            k.chars().take(20).collect::<String>(),
            k.len()
        );
    }
    if v.len() > MAX_LABEL_VALUE {
        bail!(
            "invalid value of tag {k:?}: {} characters, the server accepts at most {MAX_LABEL_VALUE}",
            v.len()
        );
    }
    // These would change the meaning of the `/ingest` name, `app{k=v,k2=v2}`.
    if let Some(c) = v.chars().find(|c| matches!(c, '{' | '}' | ',')) {
        bail!("invalid value of tag {k:?}: character {c:?} is not allowed");
    }
    Ok((k.to_string(), v.to_string()))
}

fn validate_app_name(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("invalid application name: it is empty");
    }
    if name.len() > MAX_LABEL_VALUE {
        bail!(
            "invalid application name: {} characters, the server accepts at most {MAX_LABEL_VALUE}",
            name.len()
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        bail!("invalid application name {name:?}: character {c:?} is not allowed (use letters, digits, '_', '.', '-' and '/')");
    }
    Ok(())
}

/// The name used when none is given: the script or program being run (`app` for
/// `python app.py`, as each runtime's launcher says), else the executable's name; through
/// `env` (`/usr/bin/env python3 app.py`) to the program it starts.
pub fn default_app_name(command: &[std::ffi::OsString], pid_exe: Option<String>) -> String {
    let mut args: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args
        .first()
        .is_some_and(|a| a.rsplit('/').next() == Some("env"))
    {
        // env's own options and VAR=value assignments come before the program.
        let skip = args[1..]
            .iter()
            .take_while(|a| a.starts_with('-') || a.contains('='))
            .count();
        if 1 + skip < args.len() {
            args.drain(..1 + skip);
        }
    }
    let name = crate::runtimes::app_name(&args)
        .or_else(|| args.first().map(|p| spy::program_name(p)))
        .or_else(|| pid_exe.map(|e| spy::program_name(&e)))
        .unwrap_or_else(|| "app".into());
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "app".into()
    } else {
        cleaned
    }
}

impl Settings {
    pub fn from_args(args: &CommonArgs, default_name: impl FnOnce() -> String) -> Result<Settings> {
        let (app_name, mut tags) = match &args.application_name {
            Some(n) if !n.trim().is_empty() => parse_app_name(n)?,
            _ => {
                let name = default_name();
                log::info!("no application name given (--application-name or PYROSCOPE_APPLICATION_NAME): using {name:?}");
                (name, BTreeMap::new())
            }
        };
        validate_app_name(&app_name)?;
        for t in &args.tags {
            if t.trim().is_empty() {
                continue;
            }
            let (k, v) = parse_tag(t)?;
            tags.insert(k, v);
        }
        // The server counts the sample labels (`pid`, and `thread_name` or `thread_id`) as
        // series labels too.
        let (ours, which) = if args.no_sample_labels {
            (
                crate::pipeline::push::FIXED_LABELS,
                "__name__, service_name and pyroscope_spy",
            )
        } else {
            (
                crate::pipeline::push::FIXED_LABELS + SAMPLE_LABELS,
                "__name__, service_name, pyroscope_spy and the sample labels pid and thread_name (--no-sample-labels frees those two)",
            )
        };
        // --trigger-cpu labels the windows it captures with one more.
        let (ours, which) = match args.trigger_cpu {
            Some(_) => (ours + 1, format!("{which}, and trigger (--trigger-cpu)")),
            None => (ours, which.to_string()),
        };
        let labels = tags.len() + ours;
        if labels > MAX_LABELS {
            bail!(
                "too many tags: {} tags make {labels} labels per series with {which}, and Pyroscope accepts at most {MAX_LABELS} (give at most {})",
                tags.len(),
                MAX_LABELS - ours
            );
        }
        // Validated by the commands before anything else; normalised here.
        let spy_name = args.spy_name.trim().to_ascii_lowercase();

        let upload = UploadSettings::from_args(args)?;
        let mut outputs = Vec::new();
        if let Some(path) = &args.output {
            outputs.push((path.clone(), OutputFormat::from_path(path)?));
            crate::pipeline::output::check_writable(path)?;
        }
        let listen = match &args.listen_address {
            Some(a) if !a.trim().is_empty() => {
                Some(crate::pipeline::pull::Listener::bind(a.trim())?)
            }
            _ => None,
        };
        if upload.is_none() && outputs.is_empty() && listen.is_none() {
            let stamp = crate::pipeline::output::file_timestamp();
            for (ext, fmt) in [
                ("svg", OutputFormat::Flamegraph),
                ("pb.gz", OutputFormat::Pprof),
            ] {
                outputs.push((
                    PathBuf::from(format!("{app_name}-{stamp}.{ext}").replace('/', "_")),
                    fmt,
                ));
            }
        }
        let sample_rate = match args.sample_rate {
            0 => 100,
            r if r > MAX_SAMPLE_RATE => {
                log::warn!("--sample-rate {r} is more than the highest rate: sampling at {MAX_SAMPLE_RATE} Hz");
                MAX_SAMPLE_RATE
            }
            r => r,
        };
        let trigger = trigger::TriggerSettings::from_args(args, sample_rate, &tags)?;
        Ok(Settings {
            app_name,
            tags,
            sample_rate,
            spy_name,
            detect_subprocesses: args.detect_subprocesses,
            blocking: args.blocking.clone(),
            wall_clock: args.dotnet_wall_clock,
            gil_only: args.gil_only,
            sample_labels: !args.no_sample_labels,
            release_ptrace: args.dotnet_release_ptrace,
            upload,
            outputs,
            listen,
            trigger,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_name_with_tags() {
        let (n, t) = parse_app_name("shop.api{env=prod, region=eu}").unwrap();
        assert_eq!(n, "shop.api");
        assert_eq!(t.get("env").unwrap(), "prod");
        assert_eq!(t.get("region").unwrap(), "eu");
        assert!(parse_app_name("x{env=prod").is_err());
        assert!(parse_app_name("x{env}").is_err());
    }

    #[test]
    fn tags_are_validated() {
        assert!(parse_tag("a=b=c").is_err());
        assert!(parse_tag("a b=c").is_err());
        assert!(parse_tag("__name__=x").is_err());
        assert!(parse_tag("k=a}b").is_err(), "breaks the /ingest name");
        assert!(parse_tag("k=a,b").is_err());
        assert!(parse_tag(&format!("k={}", "v".repeat(2049))).is_err());
        assert!(parse_tag(&format!("k={}", "v".repeat(2048))).is_ok());
        assert!(parse_tag(&format!("{}=v", "k".repeat(1025))).is_err());
        assert_eq!(parse_tag("k.x=v").unwrap(), ("k.x".into(), "v".into()));
    }

    #[test]
    fn default_names() {
        let c = |v: &[&str]| default_app_name(&v.iter().map(Into::into).collect::<Vec<_>>(), None);
        assert_eq!(c(&["python3", "app.py"]), "app");
        assert_eq!(c(&["python", "-u", "/srv/web/server.py"]), "server");
        assert_eq!(c(&["python", "-m", "http.server"]), "http.server");
        assert_eq!(c(&["gunicorn", "app:wsgi"]), "gunicorn");
        assert_eq!(c(&["python3", "-c", "import x; x.run()"]), "python3");
        assert_eq!(c(&["ruby", "worker.rb"]), "worker");
        assert_eq!(c(&["/usr/bin/env", "python3", "x.py"]), "x");
        assert_eq!(c(&["env", "-i", "A=1", "ruby", "job.rb"]), "job");
        assert_eq!(c(&["dotnet", "bin/shop.api.dll"]), "shop");
        assert_eq!(c(&["env"]), "env");
        assert_eq!(c(&["/opt/app/server"]), "server");
        assert_eq!(default_app_name(&[], Some("uwsgi".into())), "uwsgi");
    }
}
