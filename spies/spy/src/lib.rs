//! The one small interface every runtime spy implements.
//!
//! A spy reads the call stacks of one process from outside it. The sampling session owns the
//! schedule (when to sample), the process tree (which processes exist) and the pausing of a
//! target (through the agent's own ptrace tracer); a spy only turns "read this process now"
//! into stacks. That split is what lets one scheduler drive Python, Ruby and .NET targets alike.
//!
//! * [`Runtime`]: what the agent's registry knows of a runtime (detection, names, flags) and
//!   how a spy is attached; [`Spy`]: one attached process.
//! * [`OnCpuSpy`]: the steps every spy that reads process memory takes (thread states first,
//!   nothing read when nothing runs, the read inside the agent's pause); such a spy writes only
//!   its [`StackReader`].
//! * [`procfs`]: every `/proc` file the agent and the spies read; [`ThreadStates`]: which
//!   threads are on CPU, sample after sample.

pub mod elf;
pub mod on_cpu;
pub mod pause;
pub mod procfs;
mod thread_states;

pub use on_cpu::{with_pauser, OnCpuSpy, StackReader};
pub use thread_states::{only_running, ThreadActivity, ThreadStates};
pub mod tids;

use std::fmt;
use std::sync::Arc;

/// One stack frame as a spy read it. The strings are shared: a spy that caches names hands out
/// the same ones on every sample without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Function (or method) name, e.g. `handle_request`.
    pub function: Arc<str>,
    /// Source file as shown to users (shortened where the runtime allows, e.g. relative to
    /// `site-packages`).
    pub file: Arc<str>,
    /// Line number; 0 when unknown.
    pub line: u32,
}

/// One thread's stack at one instant. Frames are ordered **root first**.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    /// OS thread id when the spy knows it, else the runtime's own id.
    pub thread_id: u64,
    pub frames: Vec<Frame>,
    /// The CPU time this sample stands for, in nanoseconds: what the kernel counted for the
    /// thread since the previous tick ([`OnCpuSpy`] fills it in from `schedstat`). `None`: one
    /// sampling period (when the thread's CPU time is not known, e.g. its first sample).
    pub cpu_ns: Option<u64>,
    /// The thread's name, when the runtime knows it cheaply (Python's `threading` names) or
    /// else the OS thread name (`/proc/PID/task/TID/comm`, which Ruby's `Thread#name=`, .NET's
    /// `Thread.Name` and CPython 3.14's `threading` set). `None`: not known.
    pub thread_name: Option<Arc<str>>,
}

/// Why a process could not be paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseError {
    /// The process exited.
    Gone,
    /// Its threads could not be stopped; the message says why.
    Failed(String),
}

impl fmt::Display for PauseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseError::Gone => write!(f, "process exited"),
            PauseError::Failed(m) => f.write_str(m),
        }
    }
}

/// Pauses every thread of a process around a read, for consistent stacks ("blocking" mode).
///
/// The session provides the implementation: under `exec` the agent is already the ptrace tracer
/// of the target, so only it can stop the threads (a second `PTRACE_SEIZE` by the spy library
/// would fail with EPERM).
pub trait Pauser {
    /// Stops the threads of `pid` that can change its memory, runs `read`, resumes them. A
    /// pauser that leaves threads asleep in the kernel running ([`pause`]) runs `read` again,
    /// with every thread stopped, when one of them woke meanwhile: the last read counts.
    fn paused(&mut self, pid: u32, read: &mut dyn FnMut()) -> Result<(), PauseError>;
}

/// Reads the stacks of one process.
pub trait Spy {
    /// A short description for logs, e.g. `CPython 3.11.7`.
    fn describe(&self) -> String;
    /// Takes one sample: pushes one [`Stack`] per thread that is on CPU (idle threads are left
    /// out). With `pauser`, the process is stopped while its memory is read (thread states must
    /// then be read before the pause: a paused thread always looks idle).
    fn sample(
        &mut self,
        pauser: Option<&mut dyn Pauser>,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError>;
    /// `process_vm_readv` calls made so far, where the spy counts them (for the summary).
    fn memory_reads(&self) -> Option<u64> {
        None
    }
}

/// Why a sample could not be taken.
#[derive(Debug)]
pub enum SampleError {
    /// The process (or the thread being read) is gone.
    Gone,
    /// Anything else; the message is for logs. Sampling goes on.
    Other(String),
    /// The spy cannot go on (e.g. the runtime's version turned out unsupported): the process is
    /// no longer profiled, and the message says why.
    Fatal(String),
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleError::Gone => write!(f, "process exited"),
            SampleError::Other(m) | SampleError::Fatal(m) => f.write_str(m),
        }
    }
}

impl From<PauseError> for SampleError {
    fn from(e: PauseError) -> Self {
        match e {
            PauseError::Gone => SampleError::Gone,
            PauseError::Failed(m) => SampleError::Other(m),
        }
    }
}

/// Why a spy could not be attached to a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// The runtime may still be starting (libraries not mapped, interpreter not initialised):
    /// try again shortly.
    NotReady(String),
    /// The process does not run this spy's runtime.
    WrongRuntime(String),
    /// The runtime's version is not supported.
    Unsupported(String),
    /// The OS refused to let us read the process (ptrace permission).
    Permission(String),
    /// The runtime's own access control refused us (e.g. the file mode of .NET's diagnostics
    /// socket); the message says what is needed.
    Denied(String),
    /// The process exited.
    Gone,
    Other(String),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::NotReady(m)
            | AttachError::WrongRuntime(m)
            | AttachError::Unsupported(m)
            | AttachError::Permission(m)
            | AttachError::Denied(m)
            | AttachError::Other(m) => f.write_str(m),
            AttachError::Gone => write!(f, "process exited"),
        }
    }
}

/// How a spy is attached.
#[derive(Debug, Clone, Copy)]
pub struct AttachOptions {
    /// Samples per second, for spies that keep their own schedule.
    pub sample_rate: u32,
    /// Count threads that are not on CPU too (spies whose runtime reports thread states, .NET).
    pub wall_clock: bool,
    /// Count only the thread holding the interpreter lock (Python's GIL).
    pub gil_only: bool,
    /// Name the threads of stacks ([`Stack::thread_name`]) where that costs reads of the
    /// target's memory beyond the stacks (Python's `threading` names); off with
    /// `--no-sample-labels`.
    pub thread_names: bool,
}

/// The sampling period at `sample_rate` Hz, in nanoseconds.
pub fn period_ns(sample_rate: u32) -> u64 {
    1_000_000_000 / u64::from(sample_rate.max(1))
}

/// A runtime the agent knows how to profile: recognises its processes and attaches spies.
///
/// Everything the agent needs to know about a runtime comes from here, so adding one is its
/// crate plus one line in the agent's registry (`src/runtimes.rs`).
pub trait Runtime: Sync {
    /// Spy name, as given to `--spy-name` and sent to the server (`pyspy`).
    fn spy_name(&self) -> &'static str;
    /// Human name of the runtime, for messages ("Python").
    fn runtime_name(&self) -> &'static str;
    /// Whether `pid` runs this runtime, judged from the executable actually running
    /// (`/proc/PID/exe`) and the libraries it maps (`/proc/PID/maps`), never from argv.
    fn detect(&self, pid: u32) -> bool;
    /// Attaches a spy to `pid`.
    fn attach(&self, pid: u32, options: &AttachOptions) -> Result<Box<dyn Spy>, AttachError>;
    /// Whether the spy can read with the process paused: the agent then offers
    /// `--<spy name>-blocking` and hands such targets a [`Pauser`].
    fn can_pause(&self) -> bool {
        false
    }
    /// Whether, under `exec`, the agent should stop ptrace-tracing this runtime's processes once
    /// a spy is attached: for a runtime that samples itself and suspends its threads with
    /// signals, tracing only costs (every signal to a traced thread is a round trip through the
    /// tracer). Its new subprocesses are then found by scanning `/proc`.
    fn release_from_tracer(&self) -> bool {
        false
    }
    /// The application name a command line of this runtime's launcher implies, when no name is
    /// given: `app` for `python app.py`. `None`: not this runtime's launcher, or it names no
    /// program (the executable's name is used then).
    fn app_name(&self, _argv: &[String]) -> Option<String> {
        None
    }
    /// Environment variables a program started by `exec` is given (unless the user set them):
    /// settings read at start-up that make the runtime cheaper to profile at `sample_rate`.
    fn child_env(&self, _sample_rate: u32) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// The log target prefix of the runtime's crate: its log lines are shown (a library's are
    /// not). The crate the implementing type is defined in, e.g. `spy_python`.
    fn log_target(&self) -> &'static str {
        let path = std::any::type_name::<Self>();
        path.split("::").next().unwrap_or(path)
    }
}

/// The application name a launcher's command line implies, when `argv[0]` is a launcher
/// (`is_launcher` of its basename): the first argument that is not an option, without directory
/// or extension (`app` for `python -u /srv/app.py`); after `module_flag`, the module named there
/// (`-m http.server`); `None` for inline code (`inline_flag`, e.g. `-c`) or no program.
pub fn launched_program(
    argv: &[String],
    is_launcher: impl Fn(&str) -> bool,
    inline_flag: &str,
    module_flag: Option<&str>,
) -> Option<String> {
    let mut it = launcher_args(argv, is_launcher)?.iter();
    while let Some(a) = it.next() {
        if a == inline_flag {
            return None;
        }
        if Some(a.as_str()) == module_flag {
            return it.next().cloned();
        }
        if !a.starts_with('-') {
            return Some(program_name(a));
        }
    }
    None
}

/// The arguments after the executable, when `argv[0]` is a launcher (`is_launcher` of its
/// basename, e.g. `python3` for `/usr/bin/python3`).
pub fn launcher_args(argv: &[String], is_launcher: impl Fn(&str) -> bool) -> Option<&[String]> {
    let exe = argv.first()?;
    is_launcher(exe.rsplit('/').next().unwrap_or(exe)).then(|| &argv[1..])
}

/// `app` for `/srv/app.py`: the file name up to its first dot.
pub fn program_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split('.').next().unwrap_or(base).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_arguments() {
        let py = |v: &[&str]| {
            let argv: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            launched_program(&argv, |e| e.starts_with("py"), "-c", Some("-m"))
        };
        assert_eq!(
            py(&["/usr/bin/py", "-u", "/srv/web/server.py"]),
            Some("server".into())
        );
        assert_eq!(
            py(&["py", "-m", "http.server", "8000"]),
            Some("http.server".into())
        );
        assert_eq!(py(&["py", "-c", "x.run()"]), None);
        assert_eq!(py(&["py", "-v"]), None);
        assert_eq!(py(&["gunicorn", "app.py"]), None, "not the launcher");
        assert_eq!(py(&[]), None);
        assert_eq!(program_name("lib.tar.gz"), "lib");
    }

    struct Local;
    impl Runtime for Local {
        fn spy_name(&self) -> &'static str {
            "local"
        }
        fn runtime_name(&self) -> &'static str {
            "Local"
        }
        fn detect(&self, _: u32) -> bool {
            false
        }
        fn attach(&self, _: u32, _: &AttachOptions) -> Result<Box<dyn Spy>, AttachError> {
            Err(AttachError::Gone)
        }
    }

    #[test]
    fn log_target_is_the_implementing_crate() {
        let r: &dyn Runtime = &Local;
        assert_eq!(r.log_target(), module_path!().split("::").next().unwrap());
    }
}
