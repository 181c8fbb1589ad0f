//! Pausing a process for a blocking-mode read, in both modes. Only runnable threads are stopped;
//! threads asleep in the kernel are left alone (see [`spy::pause`] for why and how that stays
//! consistent).
//! * Under `exec` the agent is the tracer: [`TracerPauser`] stops threads through it.
//! * Under `connect` ([`AttachPauser`]) each runnable thread is seized and stopped for the read
//!   (remoteprocess's [`ThreadLock`]: `PTRACE_SEIZE`, `PTRACE_INTERRUPT`, detached when dropped).

use super::tracer::Tracer;
use nix::unistd::Pid;
use remoteprocess::ThreadLock;
use spy::pause::{Quiet, Stopper};
use spy::{PauseError, Pauser};
use std::time::Duration;

/// [`spy::Pauser`] that pauses through the tracer. Threads asleep in the kernel are left alone
/// (stopping one breaks its sleep with `EINTR`, see [`spy::pause`]).
pub struct TracerPauser<'a> {
    pub tracer: &'a mut Tracer,
    pub quiet: &'a mut Quiet,
}

impl Stopper for Tracer {
    fn running(&mut self, pid: u32) -> Vec<u32> {
        self.running_threads(Pid::from_raw(pid as i32))
    }

    fn stop(&mut self, pid: u32, leave: &dyn Fn(u32) -> bool) -> Result<(), PauseError> {
        self.pause_threads(Pid::from_raw(pid as i32), leave, Duration::from_millis(200))
    }
}

impl Pauser for TracerPauser<'_> {
    fn paused(&mut self, pid: u32, read: &mut dyn FnMut()) -> Result<(), PauseError> {
        let result = spy::pause::read_paused(self.quiet, self.tracer, pid, read);
        // Also after a failed round: the threads an earlier round stopped run again.
        self.tracer.resume(Pid::from_raw(pid as i32));
        result
    }
}

/// [`Pauser`] for processes the agent does not trace.
pub struct AttachPauser<'a>(pub &'a mut Quiet);

impl Pauser for AttachPauser<'_> {
    fn paused(&mut self, pid: u32, read: &mut dyn FnMut()) -> Result<(), PauseError> {
        // The locks detach (resume) their threads when dropped, on every path.
        let mut locks = Locks(Vec::new());
        spy::pause::read_paused(self.0, &mut locks, pid, read)
    }
}

/// The threads stopped so far.
struct Locks(Vec<(u32, ThreadLock)>);

impl Stopper for Locks {
    fn running(&mut self, pid: u32) -> Vec<u32> {
        let mut tids = spy::procfs::threads(pid);
        tids.retain(|&tid| !self.0.iter().any(|&(t, _)| t == tid));
        tids
    }

    /// Again and again until no new thread appeared (one may be born while the others are
    /// being stopped).
    fn stop(&mut self, pid: u32, leave: &dyn Fn(u32) -> bool) -> Result<(), PauseError> {
        loop {
            let mut more = false;
            for tid in self.running(pid) {
                if leave(tid) {
                    continue;
                }
                match remoteprocess::Thread::new(tid as i32).and_then(|t| t.lock()) {
                    Ok(lock) => {
                        self.0.push((tid, lock));
                        more = true;
                    }
                    // The thread ended before it could be stopped (an exiting one answers
                    // EPERM).
                    Err(remoteprocess::Error::NixError(e))
                        if e as i32 == libc::ESRCH
                            || (e as i32 == libc::EPERM && spy::procfs::tgid(tid).is_none()) => {}
                    Err(e) => {
                        return Err(if spy::procfs::alive(pid) {
                            PauseError::Failed(format!("cannot pause process {pid}: {e}"))
                        } else {
                            PauseError::Gone
                        })
                    }
                }
            }
            if !more {
                return if spy::procfs::alive(pid) {
                    Ok(())
                } else {
                    Err(PauseError::Gone)
                };
            }
        }
    }
}
