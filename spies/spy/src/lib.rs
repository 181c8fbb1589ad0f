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
    /// out). With `pauser`, the process is stopped while its memory is read (thread states must
    /// then be read before the pause: a paused thread always looks idle).
    fn sample(
        &mut self,
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
    /// Pause the target while reading it. Spies driven by the agent get a [`Pauser`] in
    /// [`Spy::sample`]; spies with their own schedule must pause by themselves.
    pub blocking: bool,
    /// The agent is the target's ptrace tracer (exec), so nobody else can ptrace it.
    pub traced_by_agent: bool,
    /// Count threads that are not on CPU too (spies whose runtime reports thread states, .NET).
    pub wall_clock: bool,
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
    fn attach(&self, pid: u32, options: &AttachOptions) -> Result<Box<dyn Spy>, AttachError>;
    /// Whether, under `exec`, the agent should stop ptrace-tracing this runtime's processes once
    /// a spy is attached: for a runtime that samples itself and suspends its threads with
    /// signals, tracing only costs (every signal to a traced thread is a round trip through the
    /// tracer). Its new subprocesses are then found by scanning `/proc`.
    fn release_from_tracer(&self) -> bool {
        false
    }
}

/// Tells which threads of a process are on CPU, cheaply, sample after sample.
///
/// A thread is on CPU when it is runnable (`R` in `/proc/PID/task/TID/stat`) **and** it has run
/// since the previous read (its CPU time in `schedstat` grew). The second test keeps out threads
/// that were just woken but are still waiting for a CPU, which on a busy machine would otherwise
/// show up in a CPU profile. The `/proc/PID/task` directory and each thread's files stay open and
/// are re-read in place (one `getdents` pass plus two `pread`s per thread).
pub struct ThreadStates {
    pid: u32,
    dir: Option<std::fs::File>,
    threads: HashMap<u32, ThreadFiles>,
    buf: Vec<u8>,
    activity: ThreadActivity,
}

struct ThreadFiles {
    stat: std::fs::File,
    schedstat: Option<std::fs::File>,
    cpu_ns: Option<u64>,
}

impl ThreadStates {
    pub fn new(pid: u32) -> Self {
        ThreadStates {
            pid,
            dir: None,
            threads: HashMap::new(),
            buf: vec![0; 1024],
            activity: HashMap::new(),
        }
    }

    /// Current state of every thread; an error means the process is gone.
    pub fn read(&mut self) -> std::io::Result<&ThreadActivity> {
        use std::os::unix::fs::FileExt;
        let tids = self.list()?;
        self.threads.retain(|tid, _| tids.contains(tid));
        self.activity.clear();
        for tid in tids {
            if !self.threads.contains_key(&tid) {
                let base = format!("/proc/{}/task/{tid}", self.pid);
                let Ok(stat) = std::fs::File::open(format!("{base}/stat")) else {
                    continue;
                };
                let schedstat = std::fs::File::open(format!("{base}/schedstat")).ok();
                self.threads.insert(
                    tid,
                    ThreadFiles {
                        stat,
                        schedstat,
                        cpu_ns: None,
                    },
                );
            }
            let files = self.threads.get_mut(&tid).expect("inserted");
            let Ok(n) = files.stat.read_at(&mut self.buf, 0) else {
                self.threads.remove(&tid);
                continue;
            };
            let Some(runnable) = parse_running(&self.buf[..n]) else {
                continue;
            };
            // CPU time so far (first field of schedstat, ns); None where the kernel lacks it.
            let cpu_ns = files.schedstat.as_ref().and_then(|f| {
                let n = f.read_at(&mut self.buf, 0).ok()?;
                std::str::from_utf8(&self.buf[..n])
                    .ok()?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            });
            let ran = match (files.cpu_ns, cpu_ns) {
                (Some(before), Some(now)) => now > before,
                _ => true,
            };
            files.cpu_ns = cpu_ns;
            self.activity.insert(tid, runnable && ran);
        }
        if self.activity.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no threads",
            ));
        }
        Ok(&self.activity)
    }

    fn list(&mut self) -> std::io::Result<Vec<u32>> {
        use std::os::fd::AsRawFd;
        if self.dir.is_none() {
            self.dir = Some(std::fs::File::open(format!("/proc/{}/task", self.pid))?);
        }
        let fd = self.dir.as_ref().expect("opened").as_raw_fd();
        // Rewind and read the directory again (getdents64 on the kept-open fd).
        if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut tids = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
            let mut off = 0usize;
            while off < n as usize {
                // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                let name = &buf[off + 19..off + reclen];
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                if let Some(tid) = std::str::from_utf8(&name[..end])
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    tids.push(tid);
                }
                off += reclen;
            }
        }
        if tids.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "process exited",
            ));
        }
        Ok(tids)
    }
}

fn parse_running(stat: &[u8]) -> Option<bool> {
    // The state follows the last ')' (the command name may contain ')').
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).map(|&s| s == b'R')
}

/// Whether `pid` exists and has not exited (a zombie, `Z`/`X` in its stat, has exited).
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
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
    mapped_library(pid, pred).is_some()
}

/// The full path of the first file mapped by `pid` whose basename satisfies `pred`.
pub fn mapped_library(pid: u32, pred: impl Fn(&str) -> bool) -> Option<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.rsplit('/').next().is_some_and(&pred))
        .map(str::to_string)
}

/// The executable mappings of files whose basename satisfies `pred`: (start, end, basename).
pub fn executable_mappings(pid: u32, pred: impl Fn(&str) -> bool) -> Vec<(u64, u64, String)> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let path = f.nth(3)?;
            let base = path.rsplit('/').next()?;
            if !perms.contains('x') || !pred(base) {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
                base.to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_mappings() {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap().to_string();
        let maps = executable_mappings(std::process::id(), |b| b == name);
        assert!(!maps.is_empty());
        let here = own_executable_mappings as fn() as usize as u64;
        assert!(
            maps.iter().any(|&(a, b, _)| (a..b).contains(&here)),
            "{maps:x?} {here:#x}"
        );
    }

    #[test]
    fn thread_states_are_reread_in_place() {
        let me = std::process::id();
        let reader = unsafe { libc::gettid() } as u32;
        let mut states = ThreadStates::new(me);
        // The thread reading its own state is running.
        assert_eq!(states.read().unwrap().get(&reader), Some(&true));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel::<u32>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
            go_rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let act = states.read().unwrap().clone();
        assert_eq!(
            act.get(&tid),
            Some(&false),
            "a new, blocked thread is picked up as idle: {act:?}"
        );
        go_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(
            !states.read().unwrap().contains_key(&tid),
            "an exited thread is dropped"
        );
        assert!(ThreadStates::new(999_999_999).read().is_err());
    }

    #[test]
    fn exe_and_maps_of_self() {
        let me = std::process::id();
        assert!(exe_name(me).is_some());
        assert!(!maps_library(me, |n| n.starts_with("libpython")));
    }
}
