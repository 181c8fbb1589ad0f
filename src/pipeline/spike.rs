//! `--trigger-output DIR`: the profile of one triggered capture (`--trigger-cpu`), from the
//! moment it began to the moment it ended, aggregated on its own (as a pull-mode scrape is) and
//! written to `DIR/<app>-<kind>-trigger-<UTC time>.pb.gz` when it ends.

use super::aggregate::Aggregator;
use super::output::{self, OutputFormat};
use spy::Stack;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub struct Spike {
    aggregator: Aggregator,
    start: SystemTime,
    kind: &'static str,
    dir: PathBuf,
    app_name: String,
}

impl Spike {
    /// A capture of `kind` begins at `now`; its file goes into `dir`, named after `app_name`.
    pub fn begin(
        kind: &'static str,
        sample_rate: u32,
        labels: bool,
        now: SystemTime,
        dir: &Path,
        app_name: &str,
    ) -> Spike {
        Spike {
            aggregator: Aggregator::new(sample_rate, now, false).with_labels(labels),
            start: now,
            kind,
            dir: dir.to_path_buf(),
            app_name: app_name.to_string(),
        }
    }

    pub fn add(&mut self, stack: &Stack, spy: &'static str, pid: u32) {
        self.aggregator.add(stack.clone(), spy, pid);
    }

    /// Writes the capture, up to `end`, into its directory; the file written, or `None` (logged)
    /// when it held no samples or could not be written.
    pub fn write(mut self, end: SystemTime) -> Option<PathBuf> {
        let (dir, app_name) = (self.dir.as_path(), self.app_name.as_str());
        let Some(profile) = self.aggregator.take_window(self.start, end) else {
            log::info!(
                "CPU trigger: the capture held no samples; no profile written to {}",
                dir.display()
            );
            return None;
        };
        let stem = format!(
            "{}-{}-trigger-{}",
            app_name.replace('/', "_"),
            self.kind,
            output::file_timestamp_at(self.start)
        );
        // Two captures in the same second (a short --trigger-duration without cool-down).
        let path = (1..)
            .map(|n| match n {
                1 => dir.join(format!("{stem}.pb.gz")),
                n => dir.join(format!("{stem}-{n}.pb.gz")),
            })
            .find(|p| !p.exists())
            .expect("a free name");
        let title = format!("{app_name} {} trigger", self.kind);
        match output::write_file(&path, OutputFormat::Pprof, &profile, &title) {
            Ok(()) => {
                log::info!(
                    "CPU trigger: the capture's profile ({} samples, {:.1} s) written to {}",
                    profile.total_samples(),
                    end.duration_since(self.start)
                        .unwrap_or_default()
                        .as_secs_f64(),
                    path.display()
                );
                Some(path)
            }
            Err(e) => {
                log::error!("CPU trigger: {e:#}");
                None
            }
        }
    }
}
