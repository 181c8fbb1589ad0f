//! How a process ended: wait statuses decoded by hand, reaping a child that is not traced, and
//! pidfds for noticing that a process we are not the parent of exited.

use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::{FromRawFd, OwnedFd};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// A wait status, with signals as plain numbers. (nix's `WaitStatus` cannot represent real-time
/// signals: its `waitpid` consumes such a stop and returns EINVAL, which would leave the tracee
/// stopped forever. CoreCLR suspends threads with SIGRTMIN, and any program may use them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(Pid, i32),
    Signaled(Pid, i32),
    /// Signal-delivery stop (or group stop without PTRACE_SEIZE).
    Stopped(Pid, i32),
    /// `PTRACE_EVENT_*` stop: the signal and the event.
    PtraceEvent(Pid, i32, i32),
    PtraceSyscall(Pid),
    Continued(Pid),
    /// WNOHANG and nothing to report.
    StillAlive,
}

/// `waitpid` (`pid` None: any child) decoding the status by hand.
pub fn wait(pid: Option<Pid>, flags: libc::c_int) -> Result<Status, Errno> {
    let mut status: libc::c_int = 0;
    let r = unsafe { libc::waitpid(pid.map_or(-1, Pid::as_raw), &mut status, flags) };
    if r < 0 {
        return Err(Errno::last());
    }
    if r == 0 {
        return Ok(Status::StillAlive);
    }
    let pid = Pid::from_raw(r);
    Ok(if libc::WIFEXITED(status) {
        Status::Exited(pid, libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Status::Signaled(pid, libc::WTERMSIG(status))
    } else if libc::WIFSTOPPED(status) {
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        if event != 0 {
            Status::PtraceEvent(pid, sig, event)
        } else if sig == libc::SIGTRAP | 0x80 {
            Status::PtraceSyscall(pid)
        } else {
            Status::Stopped(pid, sig)
        }
    } else {
        Status::Continued(pid)
    })
}

/// Reaps children nobody traces: how `root` ended, once it has; `Ok(None)` while it runs (only
/// with `nohang`). Any other child, e.g. an orphan re-parented to a pyroscope running as PID 1,
/// is reaped on the way. The error is waitpid's (ECHILD: nothing left to wait for).
pub fn reap_untraced(root: Pid, nohang: bool) -> Result<Option<Exit>, Errno> {
    let flags = if nohang {
        libc::WNOHANG | libc::__WALL
    } else {
        libc::__WALL
    };
    loop {
        match wait(None, flags) {
            Ok(Status::Exited(pid, code)) if pid == root => return Ok(Some(Exit::Code(code))),
            Ok(Status::Signaled(pid, sig)) if pid == root => return Ok(Some(Exit::Signal(sig))),
            Ok(Status::StillAlive) => return Ok(None),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A pidfd for `pid` (readable once it exits), when the kernel has pidfd_open.
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaps_an_untraced_child_with_its_status() {
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.2; exit 7"])
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let fd = pidfd_open(child.id()).expect("kernel has pidfd_open");
        assert_eq!(reap_untraced(pid, true), Ok(None), "still running");
        assert_eq!(reap_untraced(pid, false), Ok(Some(Exit::Code(7))));
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(
            nix::poll::poll(&mut fds, 0u16),
            Ok(1),
            "the pidfd says it exited"
        );
        std::mem::forget(child);
    }
}
