//! From a stack to an upload: stacks are aggregated ([`aggregate`]) into windows cut on
//! wall-clock boundaries ([`window`]), each window is encoded as pprof ([`pprof`]) and handed
//! to the uploader thread ([`upload`]), which sends it over the push API or `/ingest`
//! ([`push`]), keeping them on disk meanwhile with `--spool-dir` ([`spool`]); at exit the whole
//! run can be written to local files ([`output`]). Scrapers can pull profiles too ([`pull`]).
//!
//! [`Pipeline`] is what the session sees of all this.

pub mod aggregate;
pub mod http;
pub mod output;
pub mod pprof;
pub mod profile;
pub mod pull;
pub mod push;
pub mod queue;
pub mod spike;
pub mod spool;
pub mod upload;
pub mod window;

use crate::config::Settings;
use aggregate::Aggregator;
use output::OutputFormat;
use spy::Stack;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use upload::{UploadStats, Uploader};
use window::Windows;

/// The longest the final flush may take at exit, whatever the request timeout.
pub const FINAL_UPLOAD_BUDGET: Duration = Duration::from_secs(10);

pub struct Pipeline {
    aggregator: Aggregator,
    windows: Windows,
    uploader: Option<Uploader>,
    outputs: Vec<(PathBuf, OutputFormat)>,
    app_name: String,
    pull: Option<pull::Pull>,
    /// `--trigger-cpu`: the capture under way (its series label value, e.g. `cpu`), and with
    /// `--trigger-output` its own profile.
    trigger: Option<&'static str>,
    spike: Option<spike::Spike>,
    spike_dir: Option<PathBuf>,
    sample_labels: bool,
}

impl Pipeline {
    /// Starts the uploader thread when a server is configured.
    pub fn new(settings: &Settings, now: SystemTime) -> anyhow::Result<Pipeline> {
        let uploader = match &settings.upload {
            Some(u) => Some(Uploader::start(
                u.clone(),
                push::Labels {
                    app_name: settings.app_name.clone(),
                    tags: settings.tags.clone(),
                    sample_rate: settings.sample_rate,
                },
            )?),
            None => None,
        };
        Ok(Pipeline {
            aggregator: Aggregator::new(settings.sample_rate, now, !settings.outputs.is_empty())
                .with_labels(settings.sample_labels),
            windows: Windows::new(now),
            uploader,
            outputs: settings.outputs.clone(),
            app_name: settings.app_name.clone(),
            pull: match &settings.listen {
                Some(l) => Some(pull::Pull::start(
                    l,
                    settings.sample_rate,
                    settings.sample_labels,
                )?),
                None => None,
            },
            trigger: None,
            spike: None,
            spike_dir: settings.trigger.as_ref().and_then(|t| t.output.clone()),
            sample_labels: settings.sample_labels,
        })
    }

    /// One sample of one thread of process `pid`, taken by the spy named `spy`.
    pub fn add(&mut self, stack: Stack, spy: &'static str, pid: u32) {
        if let Some(p) = &mut self.pull {
            p.add(&stack, spy, pid);
        }
        if let Some(s) = &mut self.spike {
            s.add(&stack, spy, pid);
        }
        self.aggregator.add(stack, spy, pid);
    }

    /// A triggered capture begins (`Some(kind)`, its label value) or ends (`None`) at `now`,
    /// and samples come at `sample_rate` from now on. The open window is cut here, so that each
    /// uploaded window is wholly in a capture (labelled `trigger=<kind>`) or wholly out of one.
    pub fn set_trigger(
        &mut self,
        trigger: Option<&'static str>,
        sample_rate: u32,
        now: SystemTime,
    ) {
        let (start, end) = self.windows.close_at(now);
        self.ship(start, end);
        self.trigger = trigger;
        self.aggregator.set_sample_rate(sample_rate);
        if let Some(p) = &mut self.pull {
            p.set_sample_rate(sample_rate);
        }
        if let Some(s) = self.spike.take() {
            s.write(now);
        }
        if let (Some(kind), Some(dir)) = (trigger, &self.spike_dir) {
            self.spike = Some(spike::Spike::begin(
                kind,
                sample_rate,
                self.sample_labels,
                now,
                dir,
                &self.app_name,
            ));
        }
    }

    /// How long until the open window ends.
    pub fn until_window_end(&self, now: SystemTime) -> Duration {
        self.windows.until_end(now)
    }

    /// Hands the open window to the uploader once `now` has crossed its end.
    pub fn rotate_if_due(&mut self, now: SystemTime) {
        if let Some(p) = &mut self.pull {
            p.poll(now);
        }
        if let Some((start, end)) = self.windows.close_if_due(now) {
            self.ship(start, end);
        }
    }

    fn ship(&mut self, start: SystemTime, end: SystemTime) {
        if let Some(profile) = self.aggregator.take_window(start, end) {
            log::debug!("window of {} samples ready", profile.total_samples());
            if let Some(u) = &mut self.uploader {
                u.send(profile, self.trigger);
            }
        }
    }

    /// Closes the last, partial window at `end`.
    pub fn close(&mut self, end: SystemTime) {
        if let Some(p) = &mut self.pull {
            p.finish(end);
        }
        let (start, end) = self.windows.close_at(end);
        self.ship(start, end);
        if let Some(s) = self.spike.take() {
            s.write(end);
        }
    }

    /// Gives the queued uploads a bounded time ([`FINAL_UPLOAD_BUDGET`], whatever the request
    /// timeout), then stops the uploader; `interrupted` (asked with how long it may wait) ends
    /// it at once. `None` without a server.
    pub fn finish_uploads(
        &mut self,
        interrupted: &mut dyn FnMut(Duration) -> bool,
    ) -> Option<UploadStats> {
        let deadline = Instant::now() + FINAL_UPLOAD_BUDGET;
        self.uploader
            .take()
            .map(|u| u.finish(deadline, interrupted))
    }

    /// Frames the aggregator holds now (memory follows this).
    pub fn interned_frames(&self) -> usize {
        self.aggregator.interned_frames()
    }

    /// Writes the whole run, up to `end`, to the local outputs.
    pub fn write_outputs(&self, end: SystemTime) {
        let Some(total) = self.aggregator.total(end) else {
            return;
        };
        let title = format!("{} ({} samples)", self.app_name, total.total_samples());
        if self.aggregator.folds > 0 {
            log::info!(
                "the whole-run profile was bounded: {} rare stacks were folded into their callers ({} times)",
                self.aggregator.folded_stacks,
                self.aggregator.folds
            );
        }
        for (path, format) in &self.outputs {
            match output::write_file(path, *format, &total, &title) {
                Ok(()) => {
                    if log::log_enabled!(target: "pyroscope", log::Level::Warn) {
                        eprintln!("[pyroscope] profile written to {}", path.display());
                    }
                }
                Err(e) => log::error!("{e:#}"),
            }
        }
    }
}
