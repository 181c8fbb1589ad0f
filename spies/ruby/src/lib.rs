//! MRI Ruby spy on the `rbspy` crate, used as a library.
//!
//! The agent drives rbspy's reader (`RubySpy`, made public by the one-line patch in
//! `vendor/rbspy`, see its `PATCHED.md`) from its own scheduler, exactly as it drives py-spy:
//! * on-CPU only (a CPU profile): the process's thread states are read from `/proc` first (kept
//!   open, see [`spy::ThreadStates`]); when no thread is running nothing else is read;
//! * blocking (`--rbspy-blocking`): the session's [`Pauser`] stops the process (through the
//!   agent's own tracer under `exec`, where rbspy's own per-thread ptrace lock would fail) and
//!   rbspy reads inside the pause without locking;
//! * only the thread holding the GVL is read (one stack per sample at most), as rbspy does.
//!
//! rbspy's `sampler::Sampler` is not used: it runs its own thread per process on its own clock,
//! cannot read only while the agent holds the process paused, and panics when its result
//! receiver is dropped early.

mod version;

use rbspy::RubySpy;
use spy::{
    AttachError, AttachOptions, Frame, OnCpuSpy, Runtime, SampleError, Spy, Stack, StackReader,
    ThreadActivity,
};

pub struct Ruby;

/// Whether an executable basename names an MRI interpreter (`ruby`, `ruby3.1`, `ruby2.7`).
pub fn is_ruby_exe(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("ruby") else {
        return false;
    };
    rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Whether a library basename is libruby (`libruby-3.1.so.3.1`, `libruby.so.3.3`).
pub fn is_libruby(name: &str) -> bool {
    name.starts_with("libruby") && name.contains(".so")
}

impl Runtime for Ruby {
    fn spy_name(&self) -> &'static str {
        "rbspy"
    }

    fn runtime_name(&self) -> &'static str {
        "Ruby"
    }

    fn detect(&self, pid: u32) -> bool {
        spy::procfs::exe_name(pid).is_some_and(|n| is_ruby_exe(&n))
            || spy::procfs::maps_file(pid, is_libruby)
    }

    fn can_pause(&self) -> bool {
        true
    }

    /// `worker` for `ruby worker.rb`; none for `ruby -e code`.
    fn app_name(&self, argv: &[String]) -> Option<String> {
        spy::launched_program(argv, is_ruby_exe, "-e", None)
    }

    fn attach(&self, pid: u32, options: &AttachOptions) -> Result<Box<dyn Spy>, AttachError> {
        if !spy::procfs::alive(pid) {
            return Err(AttachError::Gone);
        }
        if !self.detect(pid) {
            let exe = spy::procfs::exe_name(pid).unwrap_or_default();
            return Err(AttachError::WrongRuntime(format!(
                "{exe} neither is ruby nor maps libruby"
            )));
        }
        // Fails (not ready) until libruby, or a static ruby's own symbols, can be read.
        let running = version::read(pid).map_err(AttachError::NotReady)?;
        let forced = match version::fallback(&running) {
            None => None,
            Some(Some(known)) => Some(known),
            Some(None) => {
                return Err(AttachError::Unsupported(format!(
                    "Ruby {running} is not supported (rbspy 0.55 knows no release of that minor version)"
                )))
            }
        };
        // on_cpu_only is off in rbspy: the on-CPU test is ours (thread states read before any
        // pause; rbspy's own test inside a pause would see every thread stopped).
        let inner = RubySpy::new(pid as rbspy::Pid, forced.map(str::to_string), false).map_err(|e| match forced {
            _ if !spy::procfs::alive(pid) => AttachError::Gone,
            // libruby is loaded as soon as the version can be read, before `ruby_setup` has made
            // the VM and its main thread: a process that just started may simply not be there yet.
            Some(_) if spy::procfs::age(pid).is_some_and(|age| age < VM_SETUP_TIME) => {
                AttachError::NotReady(format!("{e:#}"))
            }
            // An older process has its VM: another release's layout that finds none does not fit.
            Some(known) => AttachError::Unsupported(format!(
                "Ruby {running} is not supported: read with Ruby {known}'s layout, the nearest known release, it fails ({e:#})"
            )),
            None => AttachError::NotReady(format!("{e:#}")),
        })?;
        if let Some(known) = forced {
            log::warn!(
                "process {pid} runs Ruby {running}, which rbspy 0.55 does not know: reading it as Ruby {known}, \
                 the nearest known release of the same minor version (its first stacks are checked)"
            );
        }
        let unverified = forced.map(|known| Unverified {
            running: running.clone(),
            known,
            sane: 0,
            inconclusive: 0,
            failed: 0,
        });
        Ok(Box::new(
            OnCpuSpy::new(
                pid,
                RubyReader {
                    pid,
                    inner,
                    cwd: spy::procfs::cwd(pid),
                    version: running,
                    unverified,
                    tids: spy::tids::TidMap::default(),
                },
            )
            .with_period(spy::period_ns(options.sample_rate)),
        ))
    }
}

/// How long after its start a Ruby whose fallback layout finds no VM is given to make one (the
/// VM is made in the first milliseconds; this is ample on a loaded machine).
const VM_SETUP_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads one MRI process with rbspy's `RubySpy`.
struct RubyReader {
    pid: u32,
    inner: RubySpy,
    cwd: Option<String>,
    version: String,
    /// Set while a version fallback is on trial.
    unverified: Option<Unverified>,
    tids: spy::tids::TidMap,
}

/// A process read with another release's layout, until enough of its stacks looked sane.
struct Unverified {
    running: String,
    known: &'static str,
    sane: u32,
    inconclusive: u32,
    failed: u32,
}

/// Stacks that must look right before a fallback layout is trusted.
const SANE_STACKS_NEEDED: u32 = 5;

/// Failed reads, with no sane stack yet, after which a fallback layout is given up (about a
/// second at the default rate: a Ruby that is still starting can fail a few reads).
const FAILED_READS_ALLOWED: u32 = 100;

/// Whether a trace looks like real Ruby: every frame has a printable, non-empty name and path
/// (else the layout is wrong), and some frame is Ruby code (`.rb`) or the main script (else
/// nothing is proven either way: a Ruby still starting runs only internal and C frames).
fn looks_sane(trace: &rbspy::StackTrace) -> Result<bool, String> {
    let printable = |s: &str| !s.is_empty() && s.len() < 4096 && s.chars().all(|c| !c.is_control());
    for f in &trace.trace {
        if !printable(&f.name) || !printable(&f.relative_path) {
            return Err(format!(
                "unreadable frame {:?} in {:?}",
                f.name, f.relative_path
            ));
        }
    }
    Ok(trace
        .trace
        .iter()
        .any(|f| f.relative_path.ends_with(".rb") || f.name == "<main>"))
}

/// Stacks with no Ruby code at all after which a fallback layout is given up.
const INCONCLUSIVE_STACKS_ALLOWED: u32 = 200;

impl StackReader for RubyReader {
    type Raw = anyhow::Result<Option<rbspy::StackTrace>>;

    fn describe(&self) -> String {
        match &self.unverified {
            Some(u) => format!("MRI Ruby {} read as {}", u.running, u.known),
            None => format!("MRI Ruby {}", self.version),
        }
    }

    /// The stack of the thread holding the GVL (rbspy reads that one only).
    fn read(&mut self, _: &ThreadActivity, _paused: bool) -> Self::Raw {
        // Never rbspy's own lock: under a pause the agent already holds the process.
        self.inner.get_stack_trace(false)
    }

    fn stacks(
        &mut self,
        result: Self::Raw,
        activity: &ThreadActivity,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError> {
        let pid = self.pid;
        let trace = match result {
            Ok(Some(trace)) if !trace.trace.is_empty() => trace,
            Ok(_) => return Ok(()),
            Err(e) => {
                if matches!(e.downcast_ref(), Some(rbspy::MemoryCopyError::ProcessEnded))
                    || !spy::procfs::alive(pid)
                {
                    return Err(SampleError::Gone);
                }
                if let Some(u) = &mut self.unverified {
                    u.failed += 1;
                    if u.failed >= FAILED_READS_ALLOWED {
                        return Err(SampleError::Fatal(format!(
                            "reading Ruby {} with Ruby {}'s layout keeps failing ({e:#}): Ruby {} is not supported",
                            u.running, u.known, u.running
                        )));
                    }
                }
                return Err(SampleError::Other(format!("{e:#}")));
            }
        };
        if let Some(u) = &mut self.unverified {
            match looks_sane(&trace) {
                Err(why) => {
                    return Err(SampleError::Fatal(format!(
                        "stacks read with Ruby {}'s layout look wrong ({why}): Ruby {} is not supported",
                        u.known, u.running
                    )))
                }
                // Not proof either way: not trusted, not shown.
                Ok(false) => {
                    u.inconclusive += 1;
                    if u.inconclusive >= INCONCLUSIVE_STACKS_ALLOWED {
                        return Err(SampleError::Fatal(format!(
                            "{} stacks read with Ruby {}'s layout show no Ruby code: Ruby {} is not supported",
                            u.inconclusive, u.known, u.running
                        )));
                    }
                    return Ok(());
                }
                Ok(true) => {}
            }
            u.sane += 1;
            if u.sane >= SANE_STACKS_NEEDED {
                log::info!(
                    "process {}: Ruby {}'s layout reads Ruby {} correctly",
                    self.pid,
                    u.known,
                    u.running
                );
                self.unverified = None;
            }
        }
        let mut stack = convert(&trace, self.cwd.as_deref());
        // rbspy gives the `pthread_t` before Ruby 3.2: the OS id is what weights the stack by
        // its thread's CPU time.
        let id = stack.thread_id;
        stack.thread_id = self
            .tids
            .resolve(&spy::tids::ProcessVm(pid), Some(id), id, activity)
            .map_or(id, u64::from);
        out.push(stack);
        Ok(())
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
            function: f.name.as_str().into(),
            file: shorten(f.absolute_path.as_deref().unwrap_or(&f.relative_path), cwd).into(),
            line: f.lineno.unwrap_or(0) as u32,
        })
        .collect();
    Stack {
        thread_id: trace.thread_id.unwrap_or(0) as u64,
        frames,
        cpu_ns: None,
        thread_name: None,
    }
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
        assert_eq!(
            shorten("/srv/app/lib/work.rb", Some("/srv/app")),
            "lib/work.rb"
        );
        assert_eq!(
            shorten("/usr/lib/ruby/gems/3.1.0/gems/rack-2.2/lib/rack.rb", None),
            "gems/3.1.0/gems/rack-2.2/lib/rack.rb"
        );
        assert_eq!(shorten("/usr/lib/ruby/3.1.0/set.rb", None), "set.rb");
        assert_eq!(shorten("-e", Some("/")), "-e");
    }
}
