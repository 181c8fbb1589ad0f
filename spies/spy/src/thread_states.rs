//! Which threads of a process are on CPU, cheaply, sample after sample.

use rustc_hash::FxHashMap as HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Running/idle state of each OS thread of a process, read from `/proc` **before** the process
/// is paused (a paused thread always looks idle).
pub type ThreadActivity = HashMap<u32, bool>;

/// The one thread on CPU, when exactly one is.
pub fn only_running(activity: &ThreadActivity) -> Option<u32> {
    let mut running = activity.iter().filter(|(_, &r)| r).map(|(&t, _)| t);
    match (running.next(), running.next()) {
        (Some(t), None) => Some(t),
        _ => None,
    }
}

/// Tells which threads of a process are on CPU.
///
/// A thread counts as on CPU when it has run since the previous read: its CPU time in
/// `schedstat` grew. Its sample then carries that CPU time, whether it is still running or has
/// blocked since (two threads taking turns at a GIL each run half of the time and are as often
/// waiting as running at a tick; counting only those runnable at the tick gave the profile half
/// of the CPU the kernel counted). A thread woken but still waiting for a CPU has not run and
/// does not count. A thread that ran less than a quarter of a period (one that woke for a moment,
/// or that a blocking-mode pause woke) counts only if it is runnable now, as does a thread at
/// its first read when there is nothing to compare with: its state in `/proc/PID/task/TID/stat`
/// decides (`R`: on CPU). The `/proc/PID/task` directory and each
/// thread's files stay open and are re-read in place: one `fstat` of the directory (listed again
/// only when its thread count changed; skipped when the stack reader vouches for the list, see
/// [`ThreadStates::list_is_current`]) and one `pread` per thread.
pub struct ThreadStates {
    pid: u32,
    dir: Option<std::fs::File>,
    threads: HashMap<u32, ThreadFiles>,
    buf: Vec<u8>,
    activity: ThreadActivity,
    /// CPU time each thread used between the two latest reads, where both were known.
    cpu_delta: HashMap<u32, u64>,
    /// The sampling period (see [`Self::set_period`]).
    period_ns: Option<u64>,
    /// The thread list as last read from the directory, the directory's link count then (2 +
    /// the number of threads), and whether a thread of it is known to have exited since.
    listed: Vec<u32>,
    listed_nlink: u64,
    stale: bool,
    /// The stack reader saw only listed threads at the last sample: the next read trusts the
    /// list without an `fstat` (see [`Self::list_is_current`]).
    current: bool,
    /// When the directory was last listed, and the time between that listing and the one
    /// before it: a thread first seen in a listing was born within that time (`None`: the first
    /// listing, whose threads may be of any age).
    listed_at: Option<std::time::Instant>,
    born_within_ns: Option<u64>,
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
            threads: HashMap::default(),
            buf: vec![0; 1024],
            activity: HashMap::default(),
            cpu_delta: HashMap::default(),
            period_ns: None,
            listed: Vec::new(),
            listed_nlink: 0,
            stale: true,
            current: false,
            listed_at: None,
            born_within_ns: None,
        }
    }

    /// Samples come every `ns`. At the first read of a thread of the first listing its CPU
    /// time since it started stands for its first interval, up to one period (a process just
    /// forked gets what it used, one that ran long before it was first seen one period); and a
    /// thread that ran less than a quarter of a period counts only if it is runnable.
    pub fn set_period(&mut self, ns: u64) {
        self.period_ns = Some(ns);
    }

    /// Current state of every thread; an error means the process is gone.
    pub fn read(&mut self) -> std::io::Result<&ThreadActivity> {
        let relisted = self.list()?;
        // Borrowed out of `self` for the loop (no copy per read), put back after it.
        let tids = std::mem::take(&mut self.listed);
        if relisted {
            self.threads.retain(|tid, _| tids.contains(tid));
        }
        self.activity.clear();
        self.cpu_delta.clear();
        for &tid in &tids {
            if !self.threads.contains_key(&tid) {
                let base = format!("/proc/{}/task/{tid}", self.pid);
                let Ok(stat) = std::fs::File::open(format!("{base}/stat")) else {
                    // It exited: the list is read again at the next read.
                    self.stale = true;
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
            // CPU time so far (first field of schedstat, ns) first: a thread whose CPU time did
            // not grow is not on CPU, whatever its state, and its `stat` is not read.
            let cpu_ns = match &files.schedstat {
                Some(f) => match f.read_at(&mut self.buf, 0) {
                    Ok(n) => crate::procfs::Schedstat::parse(&self.buf[..n]).map(|s| s.cpu_ns),
                    Err(_) => {
                        self.threads.remove(&tid);
                        // It exited: the list is read again at the next read.
                        self.stale = true;
                        continue;
                    }
                },
                // A kernel without schedstat.
                None => None,
            };
            let before = files.cpu_ns;
            files.cpu_ns = cpu_ns;
            let used = match (before, cpu_ns, self.born_within_ns) {
                (Some(before), Some(now), _) => Some(now.saturating_sub(before)),
                // A thread born since the previous listing: all its CPU time is of this interval.
                (None, Some(now), Some(born_within)) => Some(now.min(born_within)),
                _ => None,
            };
            if let Some(used) = used {
                self.cpu_delta.insert(tid, used);
                // A sliver of CPU time is a thread that woke for a moment (or was woken by a
                // pause of the process in blocking mode) and most likely sleeps again: it counts
                // only if it is runnable now.
                if used == 0 || used >= self.period_ns.map_or(0, |period| period / 4) {
                    self.activity.insert(tid, used > 0);
                    continue;
                }
            }
            // A thread of the first listing (or a kernel without schedstat): on CPU if runnable
            // now, for at most one period.
            if let (None, Some(now), Some(period)) = (used, cpu_ns, self.period_ns) {
                self.cpu_delta.insert(tid, now.min(period));
            }
            let Ok(n) = files.stat.read_at(&mut self.buf, 0) else {
                self.threads.remove(&tid);
                self.stale = true;
                continue;
            };
            let Some(state) = crate::procfs::stat_state(&self.buf[..n]) else {
                continue;
            };
            self.activity.insert(tid, state == b'R');
        }
        self.listed = tids;
        if self.activity.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no threads",
            ));
        }
        Ok(&self.activity)
    }

    /// Tells that the thread list is still current: the stack reader has just seen every thread
    /// of the runtime and each was listed. The next [`read`](Self::read) then skips the `fstat`
    /// of the task directory (one system call of about six per sample). A new thread shows up
    /// in the runtime's own thread list, so the reader reports it and the check is made again;
    /// so is it after a sample with no thread on CPU (nothing was read) and after a thread's
    /// files failed to read (it exited).
    pub fn list_is_current(&mut self) {
        self.current = true;
    }

    /// The CPU time (ns) thread `tid` used between the last two [`read`](Self::read)s; `None`
    /// when not known (its first read, or a kernel without `schedstat`).
    pub fn cpu_since_last(&self, tid: u32) -> Option<u64> {
        self.cpu_delta.get(&tid).copied()
    }

    /// The thread states of the last [`read`](Self::read).
    pub fn activity(&self) -> &ThreadActivity {
        &self.activity
    }

    /// The process's threads. The directory is listed again only when its link count (2 + the
    /// number of threads, one `fstat`) changed or a listed thread exited; a listing shorter than
    /// that count (the kernel's listing stops early when the thread it is positioned on exits)
    /// is read again once.
    /// Brings `listed` up to date; whether the directory was listed again.
    fn list(&mut self) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        if self.dir.is_none() {
            self.dir = Some(std::fs::File::open(format!("/proc/{}/task", self.pid))?);
        }
        if std::mem::take(&mut self.current) && !self.stale && !self.listed.is_empty() {
            return Ok(false);
        }
        let fd = self.dir.as_ref().expect("opened").as_raw_fd();
        let nlink = self.dir.as_ref().expect("opened").metadata()?.nlink();
        if !self.stale && nlink == self.listed_nlink && !self.listed.is_empty() {
            return Ok(false);
        }
        let mut tids = self.list_directory(fd)?;
        if (tids.len() as u64) < nlink.saturating_sub(2) {
            tids = self.list_directory(fd)?;
        }
        self.listed_nlink = nlink;
        let now = std::time::Instant::now();
        self.born_within_ns = self.listed_at.map(|t| (now - t).as_nanos() as u64);
        self.listed_at = Some(now);
        // Still short: listed again at the next read.
        self.stale = (tids.len() as u64) < nlink.saturating_sub(2);
        self.listed = tids;
        Ok(true)
    }

    fn list_directory(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<Vec<u32>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads until `want` holds: the kernel's listing of `/proc/PID/task` stops early when the
    /// thread it is positioned on exits meanwhile (other tests' threads do), so one read may
    /// miss a live thread.
    fn read_until(
        states: &mut ThreadStates,
        want: impl Fn(&ThreadActivity) -> bool,
    ) -> ThreadActivity {
        for _ in 0..100 {
            let act = states.read().unwrap().clone();
            if want(&act) {
                return act;
            }
        }
        let now = states.read().unwrap().clone();
        panic!(
            "{now:?}; listed {:?} at nlink {}, stale {}, nlink now {:?}",
            states.listed,
            states.listed_nlink,
            states.stale,
            std::fs::metadata(format!("/proc/{}/task", states.pid)).map(|m| m.nlink())
        )
    }

    #[test]
    fn thread_states_are_reread_in_place() {
        let me = std::process::id();
        let reader = unsafe { libc::gettid() } as u32;
        let mut states = ThreadStates::new(me);
        // The thread reading its own state is running (the first read of a thread has no CPU
        // time to compare with).
        let first = read_until(&mut states, |a| a.contains_key(&reader));
        assert_eq!(first.get(&reader), Some(&true));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel::<u32>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
            go_rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Born since the first listing: at its first read it counts as on CPU when it has run
        // at all (it did, to send its id), with all of its CPU time.
        let act = read_until(&mut states, |a| a.contains_key(&tid));
        if act.get(&tid) == Some(&true) {
            assert!(states.cpu_since_last(tid).is_some_and(|ns| ns > 0));
        }
        // Blocked, it does not run again: idle from then on.
        let act = read_until(&mut states, |a| a.get(&tid) == Some(&false));
        assert_eq!(states.cpu_since_last(tid), Some(0), "{act:?}");
        go_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(
            !states.read().unwrap().contains_key(&tid),
            "an exited thread is dropped"
        );
        assert!(ThreadStates::new(999_999_999).read().is_err());
    }
}
