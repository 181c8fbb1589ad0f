//! CPython spy on the `py-spy` crate, used as a library.
//!
//! py-spy's `PythonSpy` does the hard part (finding the interpreter, per-version struct layouts,
//! reading frames). This crate adds what an always-on agent needs on top of it:
//! * the agent's scheduler drives it (no py-spy `Sampler` thread);
//! * pausing goes through the agent's [`Pauser`] (`LockingStrategy::AlreadyLocked`), because under
//!   `exec` the agent is already the target's ptrace tracer;
//! * idle threads are judged from thread states read **before** the pause, and, on CPython < 3.11
//!   where py-spy (without libunwind) does not know a thread's OS id, from the pthread → tid map
//!   read out of the target's memory ([`tids::TidMap`]).

mod tids;

use py_spy::config::{LineNo, LockingStrategy};
use py_spy::{Config, PythonSpy};
use spy::{
    AttachError, AttachOptions, Frame, Pauser, Runtime, SampleError, Spy, Stack, ThreadStates,
};

/// The Python runtime: detection and attaching.
pub struct Python;

pub const SPY_NAME: &str = "pyspy";

/// Whether an executable basename names a CPython interpreter (`python`, `python3`,
/// `python3.11`, `python2.7`, `python3.13d`, ...).
pub fn is_python_exe(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("python") else {
        return false;
    };
    let rest = rest.trim_end_matches(['d', 'm', 'u']);
    rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Whether a library basename is libpython (`libpython3.11.so.1.0`, `libpython2.7.so`).
pub fn is_libpython(name: &str) -> bool {
    name.starts_with("libpython") && name.contains(".so")
}

impl Runtime for Python {
    fn spy_name(&self) -> &'static str {
        SPY_NAME
    }

    fn runtime_name(&self) -> &'static str {
        "Python"
    }

    fn detect(&self, pid: u32) -> bool {
        spy::exe_name(pid).is_some_and(|n| is_python_exe(&n))
            || spy::maps_library(pid, is_libpython)
    }

    fn attach(&self, pid: u32, _options: &AttachOptions) -> Result<Box<dyn Spy>, AttachError> {
        let config = Config {
            blocking: LockingStrategy::NonBlocking,
            lineno: LineNo::LastInstruction,
            // Thread names cost a dict walk every second; stacks don't carry them.
            collect_thread_names: false,
            ..Config::default()
        };
        let inner = PythonSpy::new(pid as py_spy::Pid, &config).map_err(|e| classify(pid, &e))?;
        let version = inner.version.to_string();
        let mut spy = PythonProcessSpy {
            pid,
            inner,
            version,
            states: ThreadStates::new(pid),
            gil_fast_path: GilFastPath::default(),
            tids: tids::TidMap::default(),
        };
        // The interpreter may exist before its first thread state does: only call the spy ready
        // once a read succeeds.
        read_traces(&mut spy.inner, false, false).map_err(|e| classify(pid, &e))?;
        Ok(Box::new(spy))
    }
}

/// Sorts a py-spy error into what the agent does next.
fn classify(pid: u32, err: &anyhow::Error) -> AttachError {
    if !spy::process_alive(pid) {
        return AttachError::Gone;
    }
    let text = format!("{err:#}");
    for cause in err.chain() {
        let io = cause
            .downcast_ref::<std::io::Error>()
            .map(|e| e.kind())
            .or_else(|| match cause.downcast_ref::<remoteprocess::Error>() {
                Some(remoteprocess::Error::IOError(e)) => Some(e.kind()),
                _ => None,
            });
        if io == Some(std::io::ErrorKind::PermissionDenied) {
            return AttachError::Permission(text);
        }
    }
    if text.contains("Operation not permitted") || text.contains("Permission denied") {
        return AttachError::Permission(text);
    }
    if text.contains("Unsupported version of Python") {
        return AttachError::Unsupported(text);
    }
    AttachError::NotReady(text)
}

struct PythonProcessSpy {
    pid: u32,
    inner: PythonSpy,
    version: String,
    states: ThreadStates,
    gil_fast_path: GilFastPath,
    tids: tids::TidMap,
}

/// Reads thread stacks (only the GIL holder's with `gil_only`); `locked` when the caller has
/// paused the process.
fn read_traces(
    inner: &mut PythonSpy,
    locked: bool,
    gil_only: bool,
) -> anyhow::Result<Vec<py_spy::StackTrace>> {
    inner.config.blocking = if locked {
        LockingStrategy::AlreadyLocked
    } else {
        LockingStrategy::NonBlocking
    };
    inner.config.gil_only = gil_only;
    inner.get_stack_traces()
}

impl Spy for PythonProcessSpy {
    fn name(&self) -> &'static str {
        SPY_NAME
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn describe(&self) -> String {
        format!("CPython {}", self.version)
    }

    fn sample(
        &mut self,
        pauser: Option<&mut dyn Pauser>,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError> {
        // Thread states first (a paused thread always looks idle). They also decide how much
        // memory must be read: a CPU profile only wants the threads that are running.
        let activity = self.states.read().map_err(|_| SampleError::Gone)?;
        let mut running = activity.iter().filter(|(_, &r)| r).map(|(&t, _)| t);
        let (first, second) = (running.next(), running.next());
        let Some(only_running) = first else {
            // Nothing on CPU: nothing to read.
            return Ok(());
        };
        let try_gil_only = second.is_none() && self.gil_fast_path.enabled();
        let (inner, tids, pid) = (&mut self.inner, &mut self.tids, self.pid);
        let mut fast_hit = None;
        let mut read = |locked: bool| -> anyhow::Result<Vec<py_spy::StackTrace>> {
            if try_gil_only {
                // One running thread: if it holds the GIL, its stack is the whole sample, and
                // py-spy skips its own /proc scan and every idle thread's stack.
                let traces = read_traces(inner, locked, true)?;
                let hit = traces.len() == 1 && {
                    let t = &traces[0];
                    t.os_thread_id
                        .map(|t| t as u32)
                        .or_else(|| tids.lookup(&inner.process, t.thread_id, activity))
                        == Some(only_running)
                };
                fast_hit = Some(hit);
                if hit {
                    return Ok(traces);
                }
            }
            read_traces(inner, locked, false)
        };
        let traces = match pauser {
            Some(p) => {
                let mut result = None;
                p.paused(pid, &mut || result = Some(read(true)))
                    .map_err(SampleError::Other)?;
                result.unwrap_or_else(|| Err(anyhow::anyhow!("process could not be paused")))
            }
            None => read(false),
        };
        if let Some(hit) = fast_hit {
            self.gil_fast_path.record(hit, self.pid);
        }
        let traces = traces.map_err(|e| {
            let text = format!("{e:#}");
            if text.contains("No such process") || !spy::process_alive(self.pid) {
                SampleError::Gone
            } else {
                SampleError::Other(text)
            }
        })?;
        for trace in traces {
            let tid = trace.os_thread_id.map(|t| t as u32).or_else(|| {
                self.tids
                    .lookup(&self.inner.process, trace.thread_id, activity)
            });
            let on_cpu = match tid.and_then(|t| activity.get(&t)) {
                Some(&running) => running && !looks_idle(&trace),
                // Unknown thread: trust py-spy's own judgement (its idle heuristic).
                None => trace.active,
            };
            if !on_cpu || trace.frames.is_empty() {
                continue;
            }
            let frames = trace
                .frames
                .into_iter()
                .rev()
                .map(|f| Frame {
                    file: f.short_filename.unwrap_or(f.filename),
                    function: f.name,
                    line: f.line.max(0) as u32,
                })
                .collect();
            out.push(Stack {
                thread_id: tid.map(u64::from).unwrap_or(trace.thread_id),
                frames,
            });
        }
        Ok(())
    }
}

/// Whether reading only the GIL holder works for this process (it does not where py-spy cannot
/// find the GIL holder): switched off after many misses without a hit.
#[derive(Default)]
struct GilFastPath {
    hits: u64,
    misses: u64,
}

impl GilFastPath {
    fn enabled(&self) -> bool {
        self.hits > 0 || self.misses < 20
    }

    fn record(&mut self, hit: bool, pid: u32) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
            if !self.enabled() {
                log::debug!("process {pid}: reading only the GIL holder does not work here; reading every thread");
            }
        }
    }
}

/// py-spy's heuristic for threads that are "running" in the OS's eyes but only waiting in a
/// well-known poll/wait call (same rules as `PythonSpy::_heuristic_is_thread_idle`).
fn looks_idle(trace: &py_spy::StackTrace) -> bool {
    let Some(frame) = trace.frames.first() else {
        return false;
    };
    (frame.name == "wait" && frame.filename.ends_with("threading.py"))
        || (frame.name == "select" && frame.filename.ends_with("selectors.py"))
        || (frame.name == "poll"
            && (frame.filename.ends_with("asyncore.py")
                || frame.filename.contains("zmq")
                || frame.filename.contains("gevent")
                || frame.filename.contains("tornado")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_exe_names() {
        for yes in [
            "python",
            "python3",
            "python3.11",
            "python2.7",
            "python3.13d",
            "python3.7m",
        ] {
            assert!(is_python_exe(yes), "{yes}");
        }
        for no in [
            "pythonw.exe",
            "ruby",
            "python-config",
            "ipython",
            "bash",
            "python3.11-config",
        ] {
            assert!(!is_python_exe(no), "{no}");
        }
        assert!(is_libpython("libpython3.11.so.1.0"));
        assert!(!is_libpython("libc.so.6"));
    }
}
