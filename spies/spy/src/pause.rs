//! Which threads a blocking-mode pause must stop, and a check that the others stayed still.
//!
//! Stopping a thread (`PTRACE_INTERRUPT`, like `SIGSTOP`) that sleeps in the kernel breaks its
//! sleep: `epoll_wait`, `poll`, `select` and others are not restarted and return `EINTR`. A
//! program that retries with its full timeout then never times out while it is sampled. Ruby
//! 3.3's timer thread does exactly that: its time slices never expired under `--rbspy-blocking`
//! at 1,000 Hz, so a thread waiting for the GVL never got it (a new thread never ran its first
//! line, and rbspy read a half-made thread in nearly every sample).
//!
//! A thread asleep in the kernel does not change its memory, so it need not be stopped: only
//! runnable threads (`R`) are. To keep the read consistent, [`Asleep::stayed_asleep`] checks
//! after the read that none of the others was scheduled in the meantime (its `schedstat` run
//! count and CPU time unchanged, and it is not runnable); when one was, [`read_paused`] stops
//! the ones runnable then and reads again.

use crate::procfs::Schedstat;
use crate::PauseError;
use rustc_hash::FxHashMap as HashMap;
use std::os::unix::fs::FileExt;

/// How a pauser stops threads (through the agent's tracer, or by seizing them).
pub trait Stopper {
    /// The threads of `pid` not stopped yet.
    fn running(&mut self, pid: u32) -> Vec<u32>;
    /// Stops the threads of `pid` not stopped yet, but those `leave` names (and any thread born
    /// meanwhile); returns once they are stopped.
    fn stop(&mut self, pid: u32, leave: &dyn Fn(u32) -> bool) -> Result<(), PauseError>;
}

/// Rounds in which threads that woke are looked at again before every thread is stopped.
const ROUNDS: usize = 3;

/// Runs `read` with the runnable threads of `pid` stopped and the others asleep throughout.
/// When one of those woke during the read, the ones runnable then are stopped too and `read`
/// runs again, up to [`ROUNDS`] times; then every thread is stopped for a last read. The caller
/// resumes what `stopper` stopped.
pub fn read_paused(
    quiet: &mut Quiet,
    stopper: &mut dyn Stopper,
    pid: u32,
    read: &mut dyn FnMut(),
) -> Result<(), PauseError> {
    let running = stopper.running(pid);
    let mut asleep = quiet.asleep(pid, &running);
    for _ in 0..ROUNDS {
        stopper.stop(pid, &|tid| asleep.contains(tid))?;
        read();
        if asleep.is_empty() || quiet.stayed_asleep(&asleep) {
            return Ok(());
        }
        let running = stopper.running(pid);
        asleep = quiet.asleep(pid, &running);
    }
    stopper.stop(pid, &|_| false)?;
    read();
    Ok(())
}

/// Keeps each thread's `stat` and `schedstat` open, to re-read them in place.
#[derive(Default)]
pub struct Quiet {
    files: HashMap<(u32, u32), Files>,
    buf: Vec<u8>,
    calls: u64,
}

struct Files {
    stat: std::fs::File,
    schedstat: std::fs::File,
    /// The last call that listed this thread (to close the files of threads that ended).
    seen: u64,
}

/// The threads left running through a pause, with what `schedstat` said before it.
#[derive(Debug, Default)]
pub struct Asleep {
    pid: u32,
    threads: Vec<(u32, Schedstat)>,
}

/// What a thread was found doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Asleep(Schedstat),
    /// Runnable: stop it.
    Stop,
    /// Ended, or its files cannot be read: nothing is kept of it (the pause stops it if it
    /// exists).
    Gone,
}

impl Quiet {
    /// Of the threads `tids` of `pid`, those asleep in the kernel now (any state but `R`),
    /// which the pause may leave alone; every other one must be stopped.
    pub fn asleep(&mut self, pid: u32, tids: &[u32]) -> Asleep {
        self.calls += 1;
        let call = self.calls;
        let mut asleep = Asleep {
            pid,
            threads: Vec::new(),
        };
        for &tid in tids {
            match self.find(pid, tid, call) {
                Found::Asleep(s) => asleep.threads.push((tid, s)),
                Found::Gone => {
                    self.files.remove(&(pid, tid));
                }
                Found::Stop => {}
            }
        }
        self.files.retain(|&(p, _), f| p != pid || f.seen == call);
        asleep
    }

    fn find(&mut self, pid: u32, tid: u32, call: u64) -> Found {
        let files = match self.files.entry((pid, tid)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let base = format!("/proc/{pid}/task/{tid}");
                let (Ok(stat), Ok(schedstat)) = (
                    std::fs::File::open(format!("{base}/stat")),
                    std::fs::File::open(format!("{base}/schedstat")),
                ) else {
                    return Found::Gone;
                };
                e.insert(Files {
                    stat,
                    schedstat,
                    seen: call,
                })
            }
        };
        files.seen = call;
        if self.buf.len() < 1024 {
            self.buf.resize(1024, 0);
        }
        // The run count first, then the state: a thread asleep at the second read and not
        // scheduled in since the first has not run since then.
        let Some(sched) = read_sched(&files.schedstat, &mut self.buf) else {
            return Found::Gone;
        };
        match files.stat.read_at(&mut self.buf, 0) {
            Ok(0) | Err(_) => Found::Gone,
            Ok(n) => match crate::procfs::stat_state(&self.buf[..n]) {
                Some(b'R') | None => Found::Stop,
                Some(b'Z' | b'X') => Found::Gone,
                Some(_) => Found::Asleep(sched),
            },
        }
    }

    /// Whether the threads left running through the pause all stayed asleep since
    /// [`Self::asleep`] found them so (one that ended meanwhile ran, to end).
    pub fn stayed_asleep(&mut self, asleep: &Asleep) -> bool {
        asleep.threads.iter().all(|&(tid, before)| {
            let Some(files) = self.files.get(&(asleep.pid, tid)) else {
                return false;
            };
            read_sched(&files.schedstat, &mut self.buf) == Some(before)
                && matches!(files.stat.read_at(&mut self.buf, 0),
                Ok(n) if n > 0 && !matches!(
                    crate::procfs::stat_state(&self.buf[..n]),
                    Some(b'R' | b'Z' | b'X') | None
                ))
        })
    }
}

impl Asleep {
    /// Whether `tid` is left running through the pause.
    pub fn contains(&self, tid: u32) -> bool {
        self.threads.iter().any(|&(t, _)| t == tid)
    }

    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }
}

/// A thread's `schedstat`, re-read in place.
fn read_sched(file: &std::fs::File, buf: &mut [u8]) -> Option<Schedstat> {
    let n = file.read_at(buf, 0).ok().filter(|&n| n > 0)?;
    Schedstat::parse(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A thread blocked in the kernel is found asleep, a spinning one is not; the sleeper woken
    /// after the check fails the check, and one that slept on passes it.
    #[test]
    fn sleeping_threads_are_left_alone_and_a_wakeup_is_seen() {
        let me = std::process::id();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel::<u32>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let tx = tid_tx.clone();
        let sleeper = std::thread::spawn(move || {
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            go_rx.recv().unwrap();
            // Run a little once woken, then sleep again: it was scheduled in meanwhile.
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_millis(5) {}
            done_rx.recv().unwrap();
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let spinner = std::thread::spawn(move || {
            tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
            while !stop2.load(Ordering::Relaxed) {}
        });
        let (a, b) = (tid_rx.recv().unwrap(), tid_rx.recv().unwrap());
        std::thread::sleep(Duration::from_millis(100));
        let mut quiet = Quiet::default();
        let tids = [a, b];
        // The spinner may be waiting for a CPU (2 cores): still `R`, never asleep.
        let asleep = quiet.asleep(me, &tids);
        let (sleeper_tid, spinner_tid) = if asleep.contains(a) { (a, b) } else { (b, a) };
        assert!(asleep.contains(sleeper_tid), "{asleep:?}");
        assert!(!asleep.contains(spinner_tid), "{asleep:?}");
        assert_eq!(asleep.len(), 1);
        std::thread::sleep(Duration::from_millis(20));
        assert!(quiet.stayed_asleep(&asleep));
        go_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert!(!quiet.stayed_asleep(&asleep), "the sleeper ran");
        done_tx.send(()).unwrap();
        sleeper.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
        // Ended threads are forgotten at the next call.
        let asleep = quiet.asleep(me, &tids);
        assert!(asleep.is_empty());
        assert!(quiet.files.is_empty());
    }
}
