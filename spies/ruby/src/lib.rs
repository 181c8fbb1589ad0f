//! MRI Ruby spy on the `rbspy` crate, used as a library.
//!
//! rbspy's reader (`RubySpy`) is private; its public `sampler::Sampler` runs one thread per
//! process on its own fixed schedule and sends traces over a channel. This spy starts one
//! `Sampler` per process (subprocesses are found by the agent's own process tracking, not by
//! rbspy), and each [`Spy::sample`] call hands over the traces that arrived since the previous one.
//! Pitfalls of rbspy's code handled here:
//! * `Sampler::start` unwraps the send of its final result: the result receiver must outlive the
//!   sampler thread, so on drop both receivers move to a short-lived reaper thread;
//! * only the thread holding the GVL is sampled (one trace per sample at most);
//! * on-CPU only (`on_cpu_only`): a process whose threads all sleep yields no trace.

mod version;

use rbspy::sampler::Sampler;
use spy::{AttachError, AttachOptions, Frame, Pauser, Runtime, SampleError, Spy, Stack};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

pub const SPY_NAME: &str = "rbspy";

pub struct Ruby;

/// Whether an executable basename names an MRI interpreter (`ruby`, `ruby3.1`, `ruby2.7`).
pub fn is_ruby_exe(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("ruby") else { return false };
    rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Whether a library basename is libruby (`libruby-3.1.so.3.1`, `libruby.so.3.3`).
pub fn is_libruby(name: &str) -> bool {
    name.starts_with("libruby") && name.contains(".so")
}

impl Runtime for Ruby {
    fn spy_name(&self) -> &'static str {
        SPY_NAME
    }

    fn runtime_name(&self) -> &'static str {
        "Ruby"
    }

    fn detect(&self, pid: u32) -> bool {
        spy::exe_name(pid).is_some_and(|n| is_ruby_exe(&n)) || spy::maps_library(pid, is_libruby)
    }

    fn attach(&self, pid: u32, options: &AttachOptions) -> Result<Box<dyn Spy>, AttachError> {
        let sample_rate = options.sample_rate;
        if !spy::process_alive(pid) {
            return Err(AttachError::Gone);
        }
        if !self.detect(pid) {
            let exe = spy::exe_name(pid).unwrap_or_default();
            return Err(AttachError::WrongRuntime(format!("{exe} neither is ruby nor maps libruby")));
        }
        // Fails (not ready) until libruby, or a static ruby's own symbols, can be read.
        let running = version::read(pid).map_err(AttachError::NotReady)?;
        let forced = match version::fallback(&running) {
            None => None,
            Some(Some(known)) => {
                log::warn!(
                    "process {pid} runs Ruby {running}, which rbspy 0.55 does not know: reading it as Ruby {known}, \
                     the nearest known release of the same minor version (its first stacks are checked)"
                );
                Some(known)
            }
            Some(None) => {
                return Err(AttachError::Unsupported(format!(
                    "Ruby {running} is not supported (rbspy 0.55 knows no release of that minor version)"
                )))
            }
        };
        // Blocking: rbspy's sampler pauses the process itself (PTRACE_SEIZE per sample), which only
        // works when the agent is not already its tracer. On-CPU only: a CPU profile.
        let lock = options.blocking && !options.traced_by_agent;
        if options.blocking && options.traced_by_agent {
            log::warn!(
                "--rbspy-blocking does not work under exec: rbspy pauses a process by ptrace-attaching to it, \
                 and pyroscope already traces process {pid}; sampling it without pausing (use `pyroscope connect` \
                 for blocking mode)"
            );
        }
        let sampler = Sampler::new(
            pid as rbspy::Pid,
            sample_rate.max(1),
            lock,
            None,
            false,
            forced.map(str::to_string),
            true,
        );
        let (trace_tx, traces) = mpsc::sync_channel(sample_rate.max(1) as usize * 2);
        let (result_tx, results) = mpsc::channel();
        sampler
            .start(trace_tx, result_tx)
            .map_err(|e| AttachError::Other(format!("cannot start the rbspy sampler: {e:#}")))?;
        let unverified = forced.map(|known| Unverified { running: running.clone(), known, sane: 0 });
        Ok(Box::new(RubyProcessSpy {
            pid,
            sampler,
            traces: Some(traces),
            results: Some(results),
            cwd: cwd_of(pid),
            version: running,
            unverified,
        }))
    }
}

fn cwd_of(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok().map(|p| p.to_string_lossy().into_owned())
}

struct RubyProcessSpy {
    pid: u32,
    sampler: Sampler,
    traces: Option<Receiver<rbspy::StackTrace>>,
    results: Option<Receiver<anyhow::Result<()>>>,
    cwd: Option<String>,
    version: String,
    /// Set while a version fallback is on trial.
    unverified: Option<Unverified>,
}

/// A process read with another release's layout, until enough of its stacks looked sane.
struct Unverified {
    running: String,
    known: &'static str,
    sane: u32,
}

/// Stacks that must look right before a fallback layout is trusted.
const SANE_STACKS_NEEDED: u32 = 5;

/// Whether a trace looks like real Ruby: every frame has a printable, non-empty name and path,
/// and some frame is Ruby code (`.rb`) or the main script.
fn looks_sane(trace: &rbspy::StackTrace) -> Result<(), String> {
    let printable = |s: &str| !s.is_empty() && s.len() < 4096 && s.chars().all(|c| !c.is_control());
    for f in &trace.trace {
        if !printable(&f.name) || !printable(&f.relative_path) {
            return Err(format!("unreadable frame {:?} in {:?}", f.name, f.relative_path));
        }
    }
    let rubyish = trace.trace.iter().any(|f| f.relative_path.ends_with(".rb") || f.name == "<main>");
    if !rubyish {
        return Err("no Ruby code in the stack".into());
    }
    Ok(())
}

impl Spy for RubyProcessSpy {
    fn name(&self) -> &'static str {
        SPY_NAME
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn describe(&self) -> String {
        match &self.unverified {
            Some(u) => format!("MRI Ruby {} read as {}", u.running, u.known),
            None => format!("MRI Ruby {}", self.version),
        }
    }

    fn sample(&mut self, _pauser: Option<&mut dyn Pauser>, out: &mut Vec<Stack>) -> Result<(), SampleError> {
        let traces = self.traces.as_ref().expect("receivers live until drop");
        loop {
            match traces.try_recv() {
                Ok(trace) => {
                    if trace.on_cpu == Some(false) || trace.trace.is_empty() {
                        continue;
                    }
                    if let Some(u) = &mut self.unverified {
                        if let Err(why) = looks_sane(&trace) {
                            return Err(SampleError::Fatal(format!(
                                "stacks read with Ruby {}'s layout look wrong ({why}): Ruby {} is not supported",
                                u.known, u.running
                            )));
                        }
                        u.sane += 1;
                        if u.sane >= SANE_STACKS_NEEDED {
                            log::info!("process {}: Ruby {}'s layout reads Ruby {} correctly", self.pid, u.known, u.running);
                            self.unverified = None;
                        }
                    }
                    out.push(convert(&trace, self.cwd.as_deref()));
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        // The sampler thread ends only when the process ended or rbspy gave up.
        match self.results.as_ref().expect("receivers live until drop").try_recv() {
            Ok(Ok(())) => Err(SampleError::Gone),
            Ok(Err(e)) if !spy::process_alive(self.pid) => {
                log::debug!("rbspy sampler of {} ended: {e:#}", self.pid);
                Err(SampleError::Gone)
            }
            Ok(Err(e)) => Err(SampleError::Fatal(match &self.unverified {
                Some(u) => format!("reading Ruby {} with Ruby {}'s layout failed: {e:#}", u.running, u.known),
                None => format!("{e:#}"),
            })),
            Err(_) => Ok(()),
        }
    }
}

impl Drop for RubyProcessSpy {
    fn drop(&mut self) {
        self.sampler.stop();
        let (traces, results) = (self.traces.take(), self.results.take());
        // rbspy's thread unwraps the send of its result: keep the receiver alive until it has
        // sent, and drain traces so it is never stuck on a full channel.
        let _ = std::thread::Builder::new().name("rbspy-reaper".into()).spawn(move || {
            let (Some(traces), Some(results)) = (traces, results) else { return };
            for _ in 0..100 {
                while traces.try_recv().is_ok() {}
                if results.recv_timeout(Duration::from_millis(50)).is_ok() {
                    return;
                }
            }
        });
    }
}

/// rbspy frames (leaf first) → our frames (root first), paths shortened as Pyroscope's rbspy
/// integration does: relative to the working directory, else from `gems/`, else after
/// `/ruby/<version>/`.
fn convert(trace: &rbspy::StackTrace, cwd: Option<&str>) -> Stack {
    let frames = trace
        .trace
        .iter()
        .rev()
        .map(|f| Frame {
            function: f.name.clone(),
            file: shorten(f.absolute_path.as_deref().unwrap_or(&f.relative_path), cwd),
            line: f.lineno.unwrap_or(0) as u32,
        })
        .collect();
    Stack { thread_id: trace.thread_id.unwrap_or(0) as u64, frames }
}

pub fn shorten(path: &str, cwd: Option<&str>) -> String {
    if let Some(cwd) = cwd.filter(|c| c.len() > 1) {
        if let Some(rest) = path.strip_prefix(cwd).and_then(|r| r.strip_prefix('/')) {
            return rest.to_string();
        }
    }
    if let Some(i) = path.find("/gems/") {
        return path[i + 1..].to_string();
    }
    if let Some(i) = path.find("/ruby/") {
        let rest = &path[i + "/ruby/".len()..];
        // Skip the version directory ("3.1.0/").
        if let Some((version, tail)) = rest.split_once('/') {
            if version.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                return tail.to_string();
            }
        }
    }
    path.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_names() {
        for yes in ["ruby", "ruby3.1", "ruby2.7", "ruby3.3.0"] {
            assert!(is_ruby_exe(yes), "{yes}");
        }
        for no in ["rubocop", "jruby", "ruby-build", "irb"] {
            assert!(!is_ruby_exe(no), "{no}");
        }
        assert!(is_libruby("libruby-3.1.so.3.1"));
        assert!(!is_libruby("libc.so.6"));
    }

    #[test]
    fn paths_are_shortened() {
        assert_eq!(shorten("/srv/app/lib/work.rb", Some("/srv/app")), "lib/work.rb");
        assert_eq!(shorten("/usr/lib/ruby/gems/3.1.0/gems/rack-2.2/lib/rack.rb", None), "gems/3.1.0/gems/rack-2.2/lib/rack.rb");
        assert_eq!(shorten("/usr/lib/ruby/3.1.0/set.rb", None), "set.rb");
        assert_eq!(shorten("-e", Some("/")), "-e");
    }
}
