//! The triggered capture's settings (`--trigger-cpu` and the flags that shape it), validated.

use super::MAX_SAMPLE_RATE;
use crate::cli::CommonArgs;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The series label a triggered window carries: `trigger=cpu`.
pub const TRIGGER_LABEL: &str = "trigger";
/// The longest a capture lasts, and the pause after one, unless set.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);
/// A capture's own profile (`--trigger-output`) holds every stack it saw: its length bounds its
/// memory, as a pull-mode scrape's does (at most an hour too).
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The raised rate, unless set: this many times `--sample-rate`, at most [`MAX_TRIGGER_RATE`].
pub const DEFAULT_FACTOR: u32 = 4;
pub const MAX_TRIGGER_RATE: u32 = 1000;
/// The CPU use is checked this often, over the last [`CPU_WINDOW`]; a capture is at least one
/// check long.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);
pub const CPU_WINDOW: Duration = Duration::from_secs(2);

/// `--trigger-cpu PERCENT`: when the profiled processes use more than `percent` of one core
/// over [`CPU_WINDOW`], sample at `sample_rate` for up to `duration` (until the CPU use falls
/// below it again), then not again for `cooldown`.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerSettings {
    pub percent: f64,
    pub duration: Duration,
    pub cooldown: Duration,
    pub sample_rate: u32,
    /// `--trigger-output DIR`: each capture's profile is written there.
    pub output: Option<PathBuf>,
}

impl TriggerSettings {
    /// `None` without `--trigger-cpu`; an error when another trigger flag comes without it, or a
    /// value is out of range. `sample_rate` is the (validated) `--sample-rate`.
    pub fn from_args(
        args: &CommonArgs,
        sample_rate: u32,
        tags: &BTreeMap<String, String>,
    ) -> Result<Option<TriggerSettings>> {
        let Some(percent) = args.trigger_cpu else {
            let others = [
                ("--trigger-duration", args.trigger_duration.is_some()),
                ("--trigger-cooldown", args.trigger_cooldown.is_some()),
                ("--trigger-sample-rate", args.trigger_sample_rate.is_some()),
                ("--trigger-output", args.trigger_output.is_some()),
            ];
            if let Some((flag, _)) = others.iter().find(|(_, given)| *given) {
                bail!("{flag} needs --trigger-cpu PERCENT (the CPU use that starts a capture)");
            }
            return Ok(None);
        };
        if tags.contains_key(TRIGGER_LABEL) {
            bail!("the tag {TRIGGER_LABEL:?} is set by --trigger-cpu on the windows it captures: rename the tag");
        }
        let duration = args.trigger_duration.unwrap_or(DEFAULT_DURATION);
        if duration < Duration::from_secs(1) || duration > MAX_DURATION {
            bail!("invalid --trigger-duration {duration:?}: a capture lasts from 1s to 1h");
        }
        let sample_rate = match args.trigger_sample_rate {
            None => sample_rate
                .saturating_mul(DEFAULT_FACTOR)
                .min(MAX_TRIGGER_RATE)
                .max(sample_rate),
            Some(r) if r < sample_rate || r > MAX_SAMPLE_RATE => bail!(
                "invalid --trigger-sample-rate {r}: give a rate from --sample-rate ({sample_rate}) to {MAX_SAMPLE_RATE} Hz"
            ),
            Some(r) => r,
        };
        let output = match &args.trigger_output {
            Some(dir) if !dir.as_os_str().is_empty() => {
                check_dir(dir)?;
                Some(dir.clone())
            }
            _ => None,
        };
        Ok(Some(TriggerSettings {
            percent,
            duration,
            cooldown: args.trigger_cooldown.unwrap_or(DEFAULT_COOLDOWN),
            sample_rate,
            output,
        }))
    }
}

/// `--trigger-cpu`'s value: a percentage of one core, `80` or `80%` (`250` is two and a half
/// cores).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let n = t.strip_suffix('%').unwrap_or(t).trim();
    match n.parse::<f64>() {
        Ok(p) if p.is_finite() && p > 0.0 && p <= 100_000.0 => Ok(p),
        _ => Err(format!(
            "invalid percentage {s:?}: the CPU use of one core, more than 0 (e.g. 80, or 250 for two and a half cores)"
        )),
    }
}

/// Creates `dir` if missing and checks that files can be written in it, so a bad directory is
/// an error before the program starts.
fn check_dir(dir: &std::path::Path) -> Result<()> {
    let shown = dir.display();
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot use --trigger-output {shown}: {e}"))?;
    if !dir.is_dir() {
        bail!("cannot use --trigger-output {shown}: not a directory");
    }
    let probe = dir.join(format!(".pyroscope-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| anyhow::anyhow!("cannot write in --trigger-output {shown}: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn with_rate(base: u32, flags: &[&str]) -> Result<Option<TriggerSettings>> {
        let mut argv = vec!["x"];
        argv.extend_from_slice(flags);
        let w = Wrap::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
        TriggerSettings::from_args(&w.common, base, &BTreeMap::new())
    }

    fn settings(flags: &[&str]) -> Result<Option<TriggerSettings>> {
        with_rate(100, flags)
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(settings(&[]).unwrap(), None);
        let t = settings(&["--trigger-cpu", "80%"]).unwrap().unwrap();
        assert_eq!(
            (t.percent, t.duration, t.cooldown, t.sample_rate, t.output),
            (80.0, DEFAULT_DURATION, DEFAULT_COOLDOWN, 400, None)
        );
        let t = settings(&["--trigger-cpu", "250", "--trigger-sample-rate", "100"]);
        assert_eq!(t.unwrap().unwrap().sample_rate, 100);
        for bad in ["0", "-5", "abc", "nan", ""] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
        assert!(settings(&["--trigger-cpu", "50", "--trigger-sample-rate", "99"]).is_err());
        assert!(settings(&["--trigger-cpu", "50", "--trigger-duration", "500ms"]).is_err());
        assert!(settings(&["--trigger-cpu", "50", "--trigger-duration", "61m"]).is_err());
        assert!(settings(&["--trigger-cpu", "50", "--trigger-duration", "1h"]).is_ok());
        let e = settings(&["--trigger-output", "/tmp"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--trigger-output needs --trigger-cpu"), "{e}");
    }

    #[test]
    fn the_raised_rate_is_bounded() {
        let rate = |base| {
            with_rate(base, &["--trigger-cpu", "50"])
                .unwrap()
                .unwrap()
                .sample_rate
        };
        assert_eq!(rate(100), 400);
        assert_eq!(rate(400), 1000);
        assert_eq!(rate(2000), 2000, "never below --sample-rate");
    }

    #[test]
    fn the_trigger_label_is_ours() {
        let w = Wrap::try_parse_from(["x", "--trigger-cpu", "50"]).unwrap();
        let tags = [("trigger".to_string(), "x".to_string())].into();
        let e = TriggerSettings::from_args(&w.common, 100, &tags).unwrap_err();
        assert!(e.to_string().contains("rename the tag"), "{e}");
    }
}
