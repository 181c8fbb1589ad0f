//! What every spy that reads a process's memory on the agent's schedule does around the read.

use crate::{PauseError, Pauser, SampleError, Spy, Stack, ThreadActivity, ThreadStates};

/// The runtime-specific part of a spy that reads stacks out of process memory (Python, Ruby).
/// [`OnCpuSpy`] does the rest.
pub trait StackReader {
    /// What [`read`](Self::read) brings back, turned into stacks by [`stacks`](Self::stacks).
    type Raw;
    /// A short description for logs, e.g. `CPython 3.11.7`.
    fn describe(&self) -> String;
    /// Reads what this sample needs, and nothing else: with a pauser this runs while the
    /// process is stopped (`paused`). `activity` tells which threads are on CPU; at least one is.
    fn read(&mut self, activity: &ThreadActivity, paused: bool) -> Self::Raw;
    /// `process_vm_readv` calls made so far, where the reader counts them.
    fn memory_reads(&self) -> Option<u64> {
        None
    }
    /// Whether the last [`read`](Self::read) found a thread whose OS id is not among the
    /// process's listed threads (`activity`): `Some(false)` from a reader that sees every thread
    /// of its runtime each read tells that the thread list is still current, so the next sample
    /// need not check it. `None` (the default): the reader cannot tell.
    fn unlisted_thread_seen(&mut self) -> Option<bool> {
        None
    }
    /// After the process runs again: one [`Stack`] per on-CPU thread into `out`, or why not.
    fn stacks(
        &mut self,
        raw: Self::Raw,
        activity: &ThreadActivity,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError>;
}

/// A [`Spy`] for a CPU profile read from memory: thread states first (before any pause: a
/// paused thread always looks idle), nothing read when no thread runs, the read inside the
/// pause when there is a pauser, the stacks made after it.
pub struct OnCpuSpy<R> {
    pid: u32,
    states: ThreadStates,
    /// OS thread names, for stacks whose runtime did not name their thread.
    names: crate::procfs::ThreadNames,
    reader: R,
}

impl<R: StackReader> OnCpuSpy<R> {
    pub fn new(pid: u32, reader: R) -> Self {
        OnCpuSpy {
            pid,
            states: ThreadStates::new(pid),
            names: crate::procfs::ThreadNames::new(pid),
            reader,
        }
    }

    /// Samples come every `period_ns` (see [`ThreadStates::set_period`]).
    pub fn with_period(mut self, period_ns: u64) -> Self {
        self.states.set_period(period_ns);
        self
    }
}

impl<R: StackReader> Spy for OnCpuSpy<R> {
    fn describe(&self) -> String {
        self.reader.describe()
    }

    fn memory_reads(&self) -> Option<u64> {
        self.reader.memory_reads()
    }

    fn sample(
        &mut self,
        pauser: Option<&mut dyn Pauser>,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError> {
        self.states.read().map_err(|_| SampleError::Gone)?;
        let activity = self.states.activity();
        if !activity.values().any(|&running| running) {
            return Ok(());
        }
        let reader = &mut self.reader;
        let raw = with_pauser(pauser, self.pid, |paused| reader.read(activity, paused))?;
        let first = out.len();
        let only_running = crate::only_running(activity);
        let result = self.reader.stacks(raw, activity, out);
        // Each stack stands for the CPU time its thread really got since the previous tick:
        // with CPUs shared or a cgroup quota, less than a period; after a late tick, more.
        let listed = |s: &Stack| {
            u32::try_from(s.thread_id)
                .ok()
                .filter(|t| activity.contains_key(t))
        };
        let mut claimed =
            only_running.is_some_and(|t| out[first..].iter().any(|s| listed(s) == Some(t)));
        // Only this sample's stacks (`out[first..]`) are looked at.
        let mut index = 0;
        out.retain_mut(|stack| {
            index += 1;
            if index <= first || stack.cpu_ns.is_some() {
                return true;
            }
            match (listed(stack), only_running) {
                (Some(tid), _) => stack.cpu_ns = self.states.cpu_since_last(tid),
                // A thread the runtime named by an id that is not one of the process's OS
                // threads (e.g. a forked child whose runtime still has its parent's): when
                // one thread runs and no other stack is that thread's, it is that one.
                (None, Some(tid)) if !claimed => {
                    stack.thread_id = u64::from(tid);
                    stack.cpu_ns = self.states.cpu_since_last(tid);
                    claimed = true;
                }
                // The one running thread has its own stack, so this is another thread, not
                // listed yet (just born): giving it that thread's CPU time would count it twice.
                // Its next sample, once listed, carries what it used.
                (None, Some(_)) => return false,
                // Several threads run and this one's OS id is not known: one period.
                (None, None) => {}
            }
            true
        });
        // A stack whose runtime did not name its thread gets the OS thread name, when the
        // thread has one of its own (not the process's, which unnamed threads inherit: those
        // are told apart by their id).
        let from = first.min(out.len());
        for stack in &mut out[from..] {
            if stack.thread_name.is_none() {
                if let Ok(tid) = u32::try_from(stack.thread_id) {
                    stack.thread_name = self.names.own(tid);
                }
            }
        }
        if self.reader.unlisted_thread_seen() == Some(false) {
            self.states.list_is_current();
        }
        result
    }
}

/// Runs `read` inside `pauser`'s pause of `pid` (as `read(true)`; the last read counts when the
/// pauser reads again), or at once without a pauser (`read(false)`).
pub fn with_pauser<T>(
    pauser: Option<&mut dyn Pauser>,
    pid: u32,
    mut read: impl FnMut(bool) -> T,
) -> Result<T, PauseError> {
    let Some(pauser) = pauser else {
        return Ok(read(false));
    };
    let mut result = None;
    pauser.paused(pid, &mut || result = Some(read(true)))?;
    result.ok_or_else(|| PauseError::Failed("process could not be paused".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;

    /// Reads "stacks" of the test process itself and records how it was called.
    struct Recorder {
        reads: Vec<bool>,
    }

    impl StackReader for Recorder {
        type Raw = usize;
        fn describe(&self) -> String {
            "recorder".into()
        }
        fn read(&mut self, activity: &ThreadActivity, paused: bool) -> usize {
            self.reads.push(paused);
            activity.values().filter(|&&r| r).count()
        }
        fn stacks(
            &mut self,
            running: usize,
            _: &ThreadActivity,
            out: &mut Vec<Stack>,
        ) -> Result<(), SampleError> {
            out.extend((0..running).map(|i| Stack {
                thread_id: i as u64,
                cpu_ns: None,
                thread_name: None,
                frames: vec![Frame {
                    function: "f".into(),
                    file: "f.x".into(),
                    line: 1,
                }],
            }));
            Ok(())
        }
    }

    struct Pauses {
        ran: u32,
        run_read: bool,
        fail: Option<PauseError>,
    }

    impl Pauser for Pauses {
        fn paused(&mut self, _: u32, read: &mut dyn FnMut()) -> Result<(), PauseError> {
            if let Some(e) = self.fail.take() {
                return Err(e);
            }
            self.ran += 1;
            if self.run_read {
                read();
            }
            Ok(())
        }
    }

    /// Keeps this thread on CPU until the kernel has counted more CPU time for it (it does so
    /// at scheduler ticks), so that the next sample sees it running.
    fn burn() {
        let tid = unsafe { libc::gettid() };
        let cpu = || {
            let text = std::fs::read(format!("/proc/self/task/{tid}/schedstat")).unwrap();
            crate::procfs::Schedstat::parse(&text).unwrap().cpu_ns
        };
        let start = cpu();
        while cpu() == start {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn reads_inside_the_pause_and_makes_stacks_after() {
        let mut spy = OnCpuSpy::new(std::process::id(), Recorder { reads: vec![] });
        let mut out = Vec::new();
        // This thread runs while it samples itself: at least one stack.
        spy.sample(None, &mut out).unwrap();
        assert!(!out.is_empty());
        let mut pauses = Pauses {
            ran: 0,
            run_read: true,
            fail: None,
        };
        // Until a sample sees this thread run (see `burn`, and the note on listing threads in
        // thread_states.rs: one listing may miss a thread while other tests' threads exit).
        for _ in 0..100 {
            burn();
            spy.sample(Some(&mut pauses), &mut out).unwrap();
            if pauses.ran > 0 {
                break;
            }
        }
        assert_eq!(pauses.ran, 1);
        assert_eq!(spy.reader.reads, [false, true]);
        assert_eq!(spy.describe(), "recorder");
    }

    #[test]
    fn nothing_is_read_when_nothing_runs() {
        let mut spy = OnCpuSpy::new(std::process::id(), Recorder { reads: vec![] });
        let mut out = Vec::new();
        spy.sample(None, &mut out).unwrap();
        // No CPU time counted since the last sample: no thread ran, nothing is read or paused.
        let mut pauses = Pauses {
            ran: 0,
            run_read: true,
            fail: None,
        };
        let mut idle_samples = 0;
        for _ in 0..100 {
            let before = spy.reader.reads.len();
            spy.sample(Some(&mut pauses), &mut out).unwrap();
            idle_samples += usize::from(spy.reader.reads.len() == before);
        }
        assert!(
            idle_samples > 0,
            "back-to-back samples within one scheduler tick"
        );
        assert_eq!(pauses.ran as usize, 100 - idle_samples);
    }

    #[test]
    fn pause_failures_are_typed() {
        let mut spy = OnCpuSpy::new(std::process::id(), Recorder { reads: vec![] });
        let mut out = Vec::new();
        let mut gone = Pauses {
            ran: 0,
            run_read: true,
            fail: Some(PauseError::Gone),
        };
        spy.sample(None, &mut out).unwrap();
        spy.reader.reads.clear();
        let mut result = Ok(());
        for _ in 0..100 {
            burn();
            result = spy.sample(Some(&mut gone), &mut out);
            if gone.fail.is_none() {
                break;
            }
        }
        assert!(matches!(result, Err(SampleError::Gone)), "{result:?}");
        let mut lazy = Pauses {
            ran: 0,
            run_read: false,
            fail: None,
        };
        let mut result = Ok(());
        for _ in 0..100 {
            burn();
            result = spy.sample(Some(&mut lazy), &mut out);
            if lazy.ran > 0 {
                break;
            }
        }
        match result {
            Err(SampleError::Other(m)) => assert_eq!(m, "process could not be paused"),
            other => panic!("{other:?}"),
        }
        assert!(
            spy.reader.reads.is_empty(),
            "no read happened outside a pause"
        );
        assert!(matches!(
            OnCpuSpy::new(999_999_999, Recorder { reads: vec![] }).sample(None, &mut out),
            Err(SampleError::Gone)
        ));
    }
}
