//! The one small interface every runtime spy implements.
//!
//! A spy reads the call stacks of one process from outside it. The sampling session owns the
//! schedule (when to sample), the process tree (which processes exist) and the pausing of a
//! target (through the agent's own ptrace tracer); a spy only turns "read this process now"
//! into stacks. That split is what lets one scheduler drive Python, Ruby and .NET targets alike.

use std::collections::HashMap;
use std::fmt;

/// One stack frame as a spy read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Function (or method) name, e.g. `handle_request`.
    pub function: String,
    /// Source file as shown to users (shortened where the runtime allows, e.g. relative to
    /// `site-packages`).
    pub file: String,
    /// Line number; 0 when unknown.
    pub line: u32,
}

/// One thread's stack at one instant. Frames are ordered **root first**.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    /// OS thread id when the spy knows it, else the runtime's own id.
    pub thread_id: u64,
    pub frames: Vec<Frame>,
}

/// Running/idle state of each OS thread of a process, read from `/proc` **before** the process
/// is paused (a paused thread always looks idle).
pub type ThreadActivity = HashMap<u32, bool>;

/// Pauses every thread of a process around a read, for consistent stacks ("blocking" mode).
///
/// The session provides the implementation: under `exec` the agent is already the ptrace tracer
/// of the target, so only it can stop the threads (a second `PTRACE_SEIZE` by the spy library
/// would fail with EPERM).
pub trait Pauser {
    /// Stops all threads of `pid`, runs `read`, resumes them.
    fn paused(&mut self, pid: u32, read: &mut dyn FnMut()) -> Result<(), String>;
}

/// Reads the stacks of one process.
pub trait Spy {
    /// The spy's name as sent to the server (`pyspy`, `rbspy`, `dotnetspy`).
    fn name(&self) -> &'static str;
    /// The process this spy reads.
    fn pid(&self) -> u32;
    /// A short description for logs, e.g. `CPython 3.11.7`.
    fn describe(&self) -> String;
    /// Takes one sample: pushes one [`Stack`] per thread that is on CPU (idle threads are left
    /// out). With `pauser`, the process is stopped while its memory is read.
    fn sample(
        &mut self,
        activity: &ThreadActivity,
        pauser: Option<&mut dyn Pauser>,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError>;
}

/// Why a sample could not be taken.
#[derive(Debug)]
pub enum SampleError {
    /// The process (or the thread being read) is gone.
    Gone,
    /// Anything else; the message is for logs. Sampling goes on.
    Other(String),
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleError::Gone => write!(f, "process exited"),
            SampleError::Other(m) => f.write_str(m),
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
    /// The OS refused to let us read the process.
    Permission(String),
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
            | AttachError::Other(m) => f.write_str(m),
            AttachError::Gone => write!(f, "process exited"),
        }
    }
}

/// Options shared by all spies.
#[derive(Debug, Clone, Default)]
pub struct SpyOptions {
    /// Pause the target while reading it (consistent stacks, small cost to the target).
    pub blocking: bool,
}

/// A runtime the agent knows how to profile: recognises its processes and attaches spies.
pub trait Runtime: Sync {
    /// Spy name, as given to `--spy-name` and sent to the server.
    fn spy_name(&self) -> &'static str;
    /// Human name of the runtime, for messages ("Python").
    fn runtime_name(&self) -> &'static str;
    /// Whether `pid` runs this runtime, judged from the executable actually running
    /// (`/proc/PID/exe`) and the libraries it maps (`/proc/PID/maps`), never from argv.
    fn detect(&self, pid: u32) -> bool;
    /// Attaches a spy to `pid`.
    fn attach(&self, pid: u32, options: &SpyOptions) -> Result<Box<dyn Spy>, AttachError>;
}

/// Reads which threads of `pid` are running (`R` in `/proc/PID/task/TID/stat`).
pub fn thread_activity(pid: u32) -> std::io::Result<ThreadActivity> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(running) = thread_running(pid, tid) {
            out.insert(tid, running);
        }
    }
    Ok(out)
}

fn thread_running(pid: u32, tid: u32) -> Option<bool> {
    let stat = std::fs::read(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // The state follows the last ')' (the command name may contain ')').
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).map(|&s| s == b'R')
}

/// Whether `pid` exists and has not exited (a zombie, `Z`/`X` in its stat, has exited).
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else { return false };
    let Some(close) = stat.iter().rposition(|&b| b == b')') else { return false };
    !matches!(stat.get(close + 2), Some(b'Z') | Some(b'X') | None)
}

/// The basename of the executable actually running in `pid`.
pub fn exe_name(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    // A replaced binary shows as "name (deleted)".
    Some(name.trim_end_matches(" (deleted)").to_string())
}

/// Whether `pid` maps a file whose basename satisfies `pred`.
pub fn maps_library(pid: u32, pred: impl Fn(&str) -> bool) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return false;
    };
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|p| p.rsplit('/').next())
        .any(pred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_threads_are_listed() {
        let me = std::process::id();
        let act = thread_activity(me).unwrap();
        // The main thread is reading its own stat, so it is running.
        assert_eq!(act.get(&me), Some(&true));
    }

    #[test]
    fn exe_and_maps_of_self() {
        let me = std::process::id();
        assert!(exe_name(me).is_some());
        assert!(!maps_library(me, |n| n.starts_with("libpython")));
    }
}
