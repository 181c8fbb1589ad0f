//! Local output: the whole run's profile written at exit, one [`Outputter`] per format
//! (after rbspy's `ui/output.rs`). The format comes from the file extension.

use super::aggregate::{frame_label, Profile};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes a profile in one format.
pub trait Outputter {
    fn write(&self, profile: &Profile, title: &str, out: &mut dyn Write) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `.svg`: interactive flamegraph (inferno).
    Flamegraph,
    /// `.pb.gz` / `.pprof`: gzip-compressed pprof, opens in `go tool pprof`.
    Pprof,
    /// `.txt`: collapsed stacks, `frame;frame;frame count` per line.
    Collapsed,
    /// `.json`: speedscope.
    Speedscope,
}

impl OutputFormat {
    pub fn from_path(path: &Path) -> Result<OutputFormat> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Ok(if name.ends_with(".svg") {
            OutputFormat::Flamegraph
        } else if name.ends_with(".pb.gz") || name.ends_with(".pprof") || name.ends_with(".pb") {
            OutputFormat::Pprof
        } else if name.ends_with(".txt")
            || name.ends_with(".folded")
            || name.ends_with(".collapsed")
        {
            OutputFormat::Collapsed
        } else if name.ends_with(".json") {
            OutputFormat::Speedscope
        } else {
            bail!(
                "cannot tell the format of --output {:?} from its extension: use .svg, .pb.gz, .pprof, .txt or .json",
                path.display()
            )
        })
    }

    pub fn outputter(self) -> Box<dyn Outputter> {
        match self {
            OutputFormat::Flamegraph => Box::new(Flamegraph),
            OutputFormat::Pprof => Box::new(Pprof),
            OutputFormat::Collapsed => Box::new(Collapsed),
            OutputFormat::Speedscope => Box::new(Speedscope),
        }
    }
}

/// Checks at start that `path` can be written (an existing file is left as it is; a new one is
/// created and removed again), so a bad `--output` is an error before the program runs, not
/// after it.
pub fn check_writable(path: &Path) -> Result<()> {
    let shown = path.display();
    if path.is_dir() {
        bail!("cannot write --output {shown}: it is a directory");
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write --output {shown}: {e}"))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// `YYYYMMDD-HHMMSS` (UTC) of now, for default file names.
pub fn file_timestamp() -> String {
    file_timestamp_at(std::time::SystemTime::now())
}

/// `YYYYMMDD-HHMMSS` (UTC) of `t`.
pub fn file_timestamp_at(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn collapsed_lines(p: &Profile) -> Vec<String> {
    p.stacks
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                p.stack_text(&c.stack, frame_label),
                c.weight.samples
            )
        })
        .collect()
}

struct Collapsed;

impl Outputter for Collapsed {
    fn write(&self, p: &Profile, _title: &str, out: &mut dyn Write) -> Result<()> {
        for line in collapsed_lines(p) {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

struct Flamegraph;

impl Outputter for Flamegraph {
    fn write(&self, p: &Profile, title: &str, out: &mut dyn Write) -> Result<()> {
        let lines = collapsed_lines(p);
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = title.to_string();
        opts.count_name = "samples".into();
        if lines.is_empty() {
            // inferno refuses empty input; an empty flamegraph still tells the user "no samples".
            let svg = format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"60\"><text x=\"10\" y=\"30\">{}: no samples</text></svg>\n",
                title.replace('&', "&amp;").replace('<', "&lt;")
            );
            out.write_all(svg.as_bytes())?;
            return Ok(());
        }
        inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
            .context("rendering the flamegraph")?;
        Ok(())
    }
}

struct Pprof;

impl Outputter for Pprof {
    fn write(&self, p: &Profile, _title: &str, out: &mut dyn Write) -> Result<()> {
        out.write_all(&super::pprof::to_pprof_gz(p))?;
        Ok(())
    }
}

struct Speedscope;

impl Outputter for Speedscope {
    fn write(&self, p: &Profile, title: &str, out: &mut dyn Write) -> Result<()> {
        let frames: Vec<_> = p
            .frames
            .iter()
            .map(|f| serde_json::json!({ "name": f.function, "file": f.file, "line": f.line }))
            .collect();
        let samples: Vec<&Vec<u32>> = p.stacks.iter().map(|c| &c.stack).collect();
        let weights: Vec<u64> = p.stacks.iter().map(|c| c.weight.cpu_ns).collect();
        let total: u64 = weights.iter().sum();
        let doc = serde_json::json!({
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "name": title,
            "exporter": concat!("pyroscope-spy ", env!("CARGO_PKG_VERSION")),
            "activeProfileIndex": 0,
            "shared": { "frames": frames },
            "profiles": [{
                "type": "sampled",
                "name": title,
                "unit": "nanoseconds",
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            }],
        });
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)?;
        Ok(())
    }
}

/// Writes `profile` to `path` in `format` (through a temp file, so a reader never sees half).
pub fn write_file(path: &Path, format: OutputFormat, profile: &Profile, title: &str) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        format.outputter().write(profile, title, &mut f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::aggregate::{Counted, Weight};
    use spy::Frame;
    use std::time::{Duration, UNIX_EPOCH};

    fn profile() -> Profile {
        let f = |n: &str| Frame {
            function: n.into(),
            file: "app.py".into(),
            line: 3,
        };
        Profile {
            frames: vec![f("main"), f("slow")],
            stacks: vec![
                Counted::unlabelled(
                    vec![0, 1],
                    Weight {
                        samples: 2,
                        cpu_ns: 20_000_000,
                    },
                ),
                Counted::unlabelled(
                    vec![0],
                    Weight {
                        samples: 1,
                        cpu_ns: 10_000_000,
                    },
                ),
            ],
            labels: Vec::new(),
            start: UNIX_EPOCH,
            end: UNIX_EPOCH + Duration::from_secs(1),
            period_ns: 10_000_000,
            spy_name: "pyspy",
        }
    }

    #[test]
    fn formats_from_extension() {
        assert_eq!(
            OutputFormat::from_path(Path::new("a/p.svg")).unwrap(),
            OutputFormat::Flamegraph
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("p.pb.gz")).unwrap(),
            OutputFormat::Pprof
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("p.pprof")).unwrap(),
            OutputFormat::Pprof
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("p.txt")).unwrap(),
            OutputFormat::Collapsed
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("p.json")).unwrap(),
            OutputFormat::Speedscope
        );
        assert!(OutputFormat::from_path(Path::new("p.png")).is_err());
    }

    #[test]
    fn collapsed_and_speedscope() {
        let mut out = Vec::new();
        Collapsed.write(&profile(), "t", &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("main (app.py:3);slow (app.py:3) 2\n"),
            "{text}"
        );
        let mut out = Vec::new();
        Speedscope.write(&profile(), "t", &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["profiles"][0]["weights"][0], 20_000_000);
        assert_eq!(v["shared"]["frames"][1]["name"], "slow");
    }

    #[test]
    fn svg_renders() {
        let mut out = Vec::new();
        Flamegraph.write(&profile(), "t", &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("<svg") && s.contains("slow (app.py:3)"));
    }

    #[test]
    fn timestamp_shape() {
        let t = file_timestamp();
        assert_eq!(t.len(), 15);
        assert!(t.starts_with("20"));
    }
}
