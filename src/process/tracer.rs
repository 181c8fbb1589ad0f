//! The ptrace tracer of `exec`: follows every thread and process the child creates, reports execs
//! and exits, re-injects signals so the child sees exactly what it would see untraced, keeps
//! job-control stops intact (`PTRACE_LISTEN`), and pauses a process for blocking-mode samples.
//!
//! All ptrace calls happen on the thread that seized the child (the session's thread): the kernel
//! accepts ptrace requests only from the tracing thread.

use super::exit::{wait, Exit, Status};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::unistd::Pid;
use spy::PauseError;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The process finished an `execve`: its runtime must be judged again.
    Exec(Pid),
    /// A new process (fork/vfork/clone without CLONE_THREAD).
    NewProcess { pid: Pid, parent: Pid },
    /// A traced process (thread group) ended.
    Exited(Pid, Exit),
    /// The root process entered a job-control stop (Ctrl-Z, SIGSTOP); the signal number.
    RootStopped(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Auto-attached, its first (attach) stop not seen yet.
    AwaitingFirstStop,
    /// In a job-control stop, held with PTRACE_LISTEN.
    Listening,
    PauseRequested,
    /// Paused by us; the signal to deliver when resuming.
    Paused(Option<i32>),
}

#[derive(Debug)]
struct Tracee {
    tgid: Pid,
    state: State,
}

/// A signal the child received, remembered briefly so one that was also sent to pyroscope (a
/// process-group kill) is not relayed a second time.
#[derive(Debug, Clone, Copy)]
struct Received {
    sig: i32,
    sender: i32,
    at: Instant,
}

pub struct Tracer {
    root: Pid,
    tracees: HashMap<Pid, Tracee>,
    processes: HashSet<Pid>,
    events: Vec<Event>,
    received: VecDeque<Received>,
    /// Processes no longer traced (see [`Tracer::release`]); their exit is still reported.
    released: HashSet<Pid>,
}

const STOP_SIGNALS: [i32; 4] = [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// `PTRACE_CONT` delivering `sig` (any number, real-time ones included).
fn ptrace_cont(tid: Pid, sig: Option<i32>) -> Result<(), Errno> {
    resume_request(libc::PTRACE_CONT, tid, sig)
}

/// `PTRACE_DETACH` delivering `sig`.
fn ptrace_detach(tid: Pid, sig: Option<i32>) -> Result<(), Errno> {
    resume_request(libc::PTRACE_DETACH, tid, sig)
}

/// A ptrace request whose data is the signal to deliver (nix's take only `Signal`, which has no
/// real-time signals).
fn resume_request(request: libc::c_uint, tid: Pid, sig: Option<i32>) -> Result<(), Errno> {
    let r = unsafe {
        libc::ptrace(
            request,
            tid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            sig.unwrap_or(0) as libc::c_long,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

impl Tracer {
    pub fn new(root: Pid) -> Tracer {
        let mut tracees = HashMap::new();
        tracees.insert(
            root,
            Tracee {
                tgid: root,
                state: State::Running,
            },
        );
        Tracer {
            root,
            tracees,
            processes: HashSet::from([root]),
            events: Vec::new(),
            received: VecDeque::new(),
            released: HashSet::new(),
        }
    }

    /// Whether every thread of `pid` is traced by us (so we can pause it).
    pub fn traces(&self, pid: Pid) -> bool {
        self.processes.contains(&pid)
    }

    /// Events recorded but not yet returned (e.g. while pausing a process).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Handles every pending wait status; returns the events that matter to the session.
    pub fn drain(&mut self) -> Vec<Event> {
        self.poll();
        std::mem::take(&mut self.events)
    }

    /// Handles every pending wait status, keeping the events for the next [`drain`](Self::drain).
    pub fn poll(&mut self) {
        loop {
            match wait(None, libc::WNOHANG | libc::__WALL) {
                Ok(Status::StillAlive) => break,
                Ok(status) => self.handle(status),
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    fn tgid_of(&self, tid: Pid) -> Pid {
        if let Some(t) = self.tracees.get(&tid) {
            return t.tgid;
        }
        read_tgid(tid).unwrap_or(tid)
    }

    fn cont(&mut self, tid: Pid, sig: Option<i32>) {
        // ESRCH: the tracee died meanwhile; its exit is reported separately.
        let _ = ptrace_cont(tid, sig);
        if let Some(t) = self.tracees.get_mut(&tid) {
            t.state = State::Running;
        }
    }

    fn handle(&mut self, status: Status) {
        if let Status::Stopped(tid, _)
        | Status::PtraceEvent(tid, _, _)
        | Status::PtraceSyscall(tid) = status
        {
            // A thread of a released process that was still being attached (a clone under way
            // during the release): let it go too.
            if !self.released.is_empty()
                && !self.tracees.contains_key(&tid)
                && self.released.contains(&self.tgid_of(tid))
            {
                let sig = match status {
                    Status::Stopped(_, sig) => Some(sig),
                    _ => None,
                };
                let _ = ptrace_detach(tid, sig);
                return;
            }
        }
        match status {
            Status::Exited(pid, code) => self.gone(pid, Exit::Code(code)),
            Status::Signaled(pid, sig) => self.gone(pid, Exit::Signal(sig)),
            Status::PtraceEvent(tid, sig, event) => self.ptrace_event(tid, sig, event),
            Status::Stopped(tid, sig) => self.signal_stop(tid, sig),
            Status::PtraceSyscall(tid) => self.cont(tid, None),
            Status::Continued(_) | Status::StillAlive => {}
        }
    }

    fn gone(&mut self, pid: Pid, exit: Exit) {
        self.tracees.remove(&pid);
        if self.processes.remove(&pid) | self.released.remove(&pid) {
            self.events.push(Event::Exited(pid, exit));
        }
    }

    fn ptrace_event(&mut self, tid: Pid, sig: i32, event: i32) {
        match event {
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                let parent_tgid = self.tgid_of(tid);
                if let Ok(msg) = ptrace::getevent(tid) {
                    let new = Pid::from_raw(msg as i32);
                    let is_thread =
                        event == libc::PTRACE_EVENT_CLONE && read_tgid(new) == Some(parent_tgid);
                    let tgid = if is_thread { parent_tgid } else { new };
                    match self.tracees.get_mut(&new) {
                        // Its attach stop came first and was already handled.
                        Some(t) => t.tgid = tgid,
                        None => {
                            self.tracees.insert(
                                new,
                                Tracee {
                                    tgid,
                                    state: State::AwaitingFirstStop,
                                },
                            );
                        }
                    }
                    if !is_thread {
                        self.processes.insert(new);
                        self.events.push(Event::NewProcess {
                            pid: new,
                            parent: parent_tgid,
                        });
                    }
                }
                self.resume_after_event(tid);
            }
            libc::PTRACE_EVENT_EXEC => {
                // A non-leader thread that execs takes over the leader's pid.
                if let Ok(former) = ptrace::getevent(tid) {
                    let former = Pid::from_raw(former as i32);
                    if former != tid {
                        self.tracees.remove(&former);
                    }
                }
                let tgid = self.tgid_of(tid);
                self.tracees.entry(tid).or_insert(Tracee {
                    tgid,
                    state: State::Running,
                });
                self.events.push(Event::Exec(tgid));
                self.resume_after_event(tid);
            }
            libc::PTRACE_EVENT_STOP => self.event_stop(tid, sig),
            _ => self.resume_after_event(tid),
        }
    }

    /// After a fork/exec event the tracee is stopped; resume it unless a pause wants it held.
    fn resume_after_event(&mut self, tid: Pid) {
        match self.tracees.get(&tid).map(|t| t.state) {
            Some(State::PauseRequested) => {
                // The interrupt we sent will stop it again right away: just let it run to that.
                let _ = ptrace_cont(tid, None);
            }
            _ => self.cont(tid, None),
        }
    }

    fn event_stop(&mut self, tid: Pid, sig: i32) {
        let state = self.tracees.get(&tid).map(|t| t.state);
        match state {
            None | Some(State::AwaitingFirstStop) => {
                // First stop of an auto-attached thread or process.
                let tgid = self.tgid_of(tid);
                self.tracees.entry(tid).or_insert(Tracee {
                    tgid,
                    state: State::Running,
                });
                self.cont(tid, None);
            }
            Some(State::PauseRequested) => {
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.state = State::Paused(None);
                }
            }
            _ if STOP_SIGNALS.contains(&sig) => {
                // Job-control stop: keep it stopped, but keep getting events (SIGCONT, SIGKILL).
                unsafe {
                    libc::ptrace(
                        libc::PTRACE_LISTEN,
                        tid.as_raw(),
                        std::ptr::null_mut::<libc::c_void>(),
                        0,
                    );
                }
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.state = State::Listening;
                }
                if tid == self.root {
                    self.events.push(Event::RootStopped(sig));
                }
            }
            _ => self.cont(tid, None),
        }
    }

    fn signal_stop(&mut self, tid: Pid, sig: i32) {
        let tgid = self.tgid_of(tid);
        if tgid == self.root {
            let sender = ptrace::getsiginfo(tid)
                .map(|i| unsafe { i.si_pid() })
                .unwrap_or(0);
            self.received.push_back(Received {
                sig,
                sender,
                at: Instant::now(),
            });
            while self.received.len() > 64 {
                self.received.pop_front();
            }
        }
        match self.tracees.get(&tid).map(|t| t.state) {
            Some(State::PauseRequested) => {
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.state = State::Paused(Some(sig));
                }
            }
            None => {
                self.tracees.insert(
                    tid,
                    Tracee {
                        tgid,
                        state: State::Running,
                    },
                );
                self.cont(tid, Some(sig));
            }
            _ => self.cont(tid, Some(sig)),
        }
    }

    /// Whether the root process received `sig` from `sender` within `within`, or has it pending.
    pub fn root_got_signal(&self, sig: i32, sender: i32, within: Duration) -> bool {
        let now = Instant::now();
        self.received
            .iter()
            .any(|r| r.sig == sig && r.sender == sender && now.duration_since(r.at) <= within)
            || signal_pending(self.root, sig)
    }

    /// Stops every thread of `pid` (for a consistent read) and returns once all are stopped.
    pub fn pause(&mut self, pid: Pid, timeout: Duration) -> Result<(), PauseError> {
        self.pause_threads(pid, &|_| false, timeout)
    }

    /// The threads of `pid` that run (not stopped by the tracer).
    pub fn running_threads(&self, pid: Pid) -> Vec<u32> {
        self.tracees
            .iter()
            .filter(|(_, t)| t.tgid == pid && t.state == State::Running)
            .map(|(&tid, _)| tid.as_raw() as u32)
            .collect()
    }

    /// Stops the threads of `pid` but those `leave` names, and returns once they are stopped.
    pub fn pause_threads(
        &mut self,
        pid: Pid,
        leave: &dyn Fn(u32) -> bool,
        timeout: Duration,
    ) -> Result<(), PauseError> {
        let tids: Vec<Pid> = self
            .running_threads(pid)
            .into_iter()
            .filter(|&tid| !leave(tid))
            .map(|tid| Pid::from_raw(tid as i32))
            .collect();
        for tid in tids {
            if ptrace::interrupt(tid).is_ok() {
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.state = State::PauseRequested;
                }
            }
        }
        let deadline = Instant::now() + timeout;
        let pending = |t: &Tracer| {
            t.tracees
                .values()
                .any(|x| x.tgid == pid && x.state == State::PauseRequested)
        };
        while pending(self) {
            match wait(None, libc::WNOHANG | libc::__WALL) {
                Ok(Status::StillAlive) => {
                    if Instant::now() >= deadline {
                        // Late stops will be seen as plain stops and resumed.
                        for t in self
                            .tracees
                            .values_mut()
                            .filter(|x| x.tgid == pid && x.state == State::PauseRequested)
                        {
                            t.state = State::Running;
                        }
                        self.resume(pid);
                        return Err(PauseError::Failed("threads did not stop in time".into()));
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
                Ok(status) => self.handle(status),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(PauseError::Failed(format!("waitpid: {e}"))),
            }
        }
        if self.processes.contains(&pid) {
            Ok(())
        } else {
            Err(PauseError::Gone)
        }
    }

    /// Whether some process was released.
    pub fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// Stops tracing `pid` (all its threads), delivering any signal that arrived meanwhile. Its
    /// exit is still reported when it is our child; its new subprocesses are not seen anymore.
    pub fn release(&mut self, pid: Pid) -> Result<(), PauseError> {
        self.pause(pid, Duration::from_millis(500))?;
        let threads: Vec<(Pid, Option<i32>)> = self
            .tracees
            .iter()
            .filter(|(_, t)| t.tgid == pid)
            .map(|(&tid, t)| {
                (
                    tid,
                    if let State::Paused(sig) = t.state {
                        sig
                    } else {
                        None
                    },
                )
            })
            .collect();
        for (tid, sig) in threads {
            // Paused threads are in a ptrace stop, as PTRACE_DETACH requires; a thread in
            // another state (just created) is let go when its first stop arrives.
            let _ = ptrace_detach(tid, sig);
            self.tracees.remove(&tid);
        }
        self.processes.remove(&pid);
        self.released.insert(pid);
        Ok(())
    }

    /// Resumes the threads of `pid` that [`pause`](Self::pause) stopped, delivering any signal
    /// that arrived meanwhile.
    pub fn resume(&mut self, pid: Pid) {
        let paused: Vec<(Pid, Option<i32>)> = self
            .tracees
            .iter()
            .filter_map(|(&tid, t)| match t.state {
                State::Paused(sig) if t.tgid == pid => Some((tid, sig)),
                _ => None,
            })
            .collect();
        for (tid, sig) in paused {
            self.cont(tid, sig);
        }
    }
}

fn read_tgid(tid: Pid) -> Option<Pid> {
    spy::procfs::tgid(tid.as_raw() as u32).map(|t| Pid::from_raw(t as i32))
}

/// Whether `sig` is pending for process `pid` (shared or main-thread pending set).
pub fn signal_pending(pid: Pid, sig: i32) -> bool {
    let Some(status) = spy::procfs::Status::read(pid.as_raw() as u32) else {
        return false;
    };
    let bit = 1u64 << (sig - 1);
    ["ShdPnd", "SigPnd"]
        .into_iter()
        .filter_map(|key| u64::from_str_radix(status.field(key)?, 16).ok())
        .any(|mask| mask & bit != 0)
}
