//! Which processes are profiled: discovery (execs and new processes the tracer reports, or a
//! `/proc` scan), recognising their runtime through the registry, attaching spies (retried
//! while a runtime starts) and the attach policy: what failure means what, worded by
//! [`crate::errors::attach_failure`].

use super::isolation::in_spy;
use crate::config::Settings;
use crate::errors::{attach_failure, Attempt};
use crate::logging::RateLimit;
use crate::process::tracer::Tracer;
use nix::unistd::Pid;
use spy::{AttachError, AttachOptions, Runtime, Spy};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a process that looks like a runtime may take before its spy attaches.
const ATTACH_PATIENCE: Duration = Duration::from_secs(10);
/// How long `connect` waits for the named process's runtime to be readable.
const CONNECT_PATIENCE: Duration = Duration::from_secs(3);
/// The wait before the next attach try of a process that was not ready `age` after it started
/// (its `n`th such try, which took `took`): every 5 ms for its first 50 ms (an interpreter is
/// readable 10-25 ms after it starts, and the first sample should follow at once), then 10 ms
/// doubling to 100 ms up to its first second, then 500 ms; past the first 50 ms never less than
/// 4 times what a try costs. A process that looks like a runtime but never becomes readable (a
/// layout this build does not know: each try searches the interpreter's memory, ~7 ms) so costs
/// the agent ~95 ms of CPU in its first 3 s, not the 600 ms that retrying every 5 ms cost.
fn retry_wait(n: u32, age: Duration, took: Duration) -> Duration {
    let ms = Duration::from_millis;
    if age < ms(50) {
        return ms(5);
    }
    let schedule = if age < Duration::from_secs(1) {
        (ms(10) * (1 << n.saturating_sub(1).min(4))).min(ms(100))
    } else {
        ms(500)
    };
    schedule.max(took * 4)
}

/// When a process not recognised (yet) is looked at again, after it started: in case it loads
/// a runtime library later (e.g. `uwsgi` dlopen-ing libpython).
const WATCH_DELAYS_MS: [u64; 5] = [20, 100, 500, 2000, 5000];

pub(super) enum TargetState {
    Attaching { next_try: Instant },
    Active(Box<dyn Spy>),
}

/// A process being profiled, or about to be.
pub(super) struct Target {
    pub pid: u32,
    pub runtime: &'static dyn Runtime,
    pub state: TargetState,
    /// When the process started running its current program (exec), or was found.
    pub since: Instant,
    /// Whether this process was recognised as the runtime (vs. only tried because of an
    /// explicit --spy-name).
    pub detected: bool,
    pub sampled: bool,
    pub consecutive_panics: u32,
    pub errors: RateLimit,
    /// Samples tried and failed since the last error message: a torn read now and then is
    /// normal without pausing the target; only a real error rate deserves a warning.
    pub tries: u64,
    pub failures: u64,
    /// Why the last attach try said "not ready" (reported if it never attaches).
    pub not_ready: Option<String>,
    /// Attach tries that found it not ready yet (they back off, see [`retry_wait`]).
    pub attach_tries: u32,
    /// It was profiled already, and then ran `exec` (a forked copy of a Python process that
    /// runs a new program: said so, not as if it were a new process).
    pub after_exec: bool,
}

impl Target {
    fn new(pid: u32, runtime: &'static dyn Runtime, state: TargetState, detected: bool) -> Target {
        Target {
            pid,
            runtime,
            state,
            since: Instant::now(),
            detected,
            sampled: false,
            consecutive_panics: 0,
            errors: RateLimit::new(Duration::from_secs(10)),
            tries: 0,
            failures: 0,
            not_ready: None,
            attach_tries: 0,
            after_exec: false,
        }
    }

    /// Builds the spy again (after repeated panics), from now on.
    pub fn reattach(&mut self) {
        self.state = TargetState::Attaching {
            next_try: Instant::now(),
        };
        self.since = Instant::now();
        self.consecutive_panics = 0;
    }
}

/// A process not recognised (yet), looked at again at [`WATCH_DELAYS_MS`].
struct Watch {
    since: Instant,
    checks: u32,
    next: Instant,
}

/// The processes of the session and what is known of each.
pub(super) struct Targets {
    runtimes: Vec<&'static dyn Runtime>,
    /// `--spy-name` named one spy: the program itself is tried with it even if not recognised.
    explicit_spy: bool,
    root: u32,
    detect_subprocesses: bool,
    options: AttachOptions,
    /// Under exec, release processes of runtimes that sample themselves from ptrace.
    release_ptrace: bool,
    pub map: BTreeMap<u32, Target>,
    watch: BTreeMap<u32, Watch>,
    next_scan: Instant,
    /// Some spy was attached during the run.
    pub ever_attached: bool,
    /// A process was recognised but could not be profiled (already reported).
    pub attach_failed: bool,
}

impl Targets {
    /// The processes being profiled (attached).
    pub fn active(&self) -> impl Iterator<Item = u32> + '_ {
        self.map
            .values()
            .filter(|t| matches!(t.state, TargetState::Active(_)))
            .map(|t| t.pid)
    }

    pub fn new(settings: &Settings, root: Pid) -> Targets {
        Targets {
            runtimes: crate::runtimes::selected(&settings.spy_name),
            explicit_spy: settings.spy_name != "auto",
            root: root.as_raw() as u32,
            detect_subprocesses: settings.detect_subprocesses,
            options: AttachOptions {
                sample_rate: settings.sample_rate,
                wall_clock: settings.wall_clock,
                gil_only: settings.gil_only,
                thread_names: settings.sample_labels,
            },
            release_ptrace: settings.release_ptrace,
            map: BTreeMap::new(),
            watch: BTreeMap::new(),
            next_scan: Instant::now(),
            ever_attached: false,
            attach_failed: false,
        }
    }

    /// The runtimes looked for, for messages: "Python, Ruby or .NET".
    pub fn runtime_names(&self) -> String {
        crate::runtimes::names(&self.runtimes, false)
    }

    /// `connect`: attaches to the named process now, or fails with the reason.
    pub fn attach_first(&mut self, pid: u32) -> anyhow::Result<()> {
        let detected = self.runtimes.iter().copied().find(|r| r.detect(pid));
        let runtime = match (detected, self.explicit_spy) {
            (Some(r), _) => r,
            (None, true) => self.runtimes[0],
            (None, false) => {
                let exe = spy::procfs::exe_name(pid).unwrap_or_else(|| "?".into());
                anyhow::bail!(
                    "process {pid} ({exe}) is not a {} process (judged from its executable and libraries); pass --spy-name to force a spy",
                    self.runtime_names()
                );
            }
        };
        let deadline = Instant::now() + CONNECT_PATIENCE;
        loop {
            match self.try_attach(runtime, pid) {
                Ok(spy) => {
                    log::info!("profiling process {pid} ({})", spy.describe());
                    self.ever_attached = true;
                    let state = TargetState::Active(spy);
                    let target = Target::new(pid, runtime, state, detected.is_some());
                    self.map.insert(pid, target);
                    return Ok(());
                }
                Err(AttachError::NotReady(m)) if Instant::now() < deadline => {
                    log::debug!("process {pid} not ready: {m}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    let attempt = Attempt::Named;
                    anyhow::bail!(attach_failure(pid, runtime.runtime_name(), &e, attempt).1)
                }
            }
        }
    }

    fn try_attach(
        &self,
        runtime: &'static dyn Runtime,
        pid: u32,
    ) -> Result<Box<dyn Spy>, AttachError> {
        match in_spy(|| runtime.attach(pid, &self.options)) {
            Ok(r) => r,
            Err(msg) => Err(AttachError::Other(format!(
                "spy panicked while attaching: {msg}"
            ))),
        }
    }

    /// A process started a new program (`from_exec`) or appeared: decides whether to profile it.
    pub fn consider(&mut self, pid: u32, from_exec: bool, tracer: Option<&mut Tracer>) {
        if !self.detect_subprocesses && pid != self.root {
            return;
        }
        let mut after_exec = false;
        if from_exec {
            // Whatever ran there before is gone.
            after_exec = self
                .map
                .remove(&pid)
                .is_some_and(|t| matches!(t.state, TargetState::Active(_)));
            self.watch.remove(&pid);
        }
        if self.map.contains_key(&pid) {
            return;
        }
        let detected = self.runtimes.iter().copied().find(|r| r.detect(pid));
        let runtime = match detected {
            Some(r) => r,
            None if self.explicit_spy && pid == self.root => self.runtimes[0],
            None => {
                let now = Instant::now();
                let next = now + Duration::from_millis(WATCH_DELAYS_MS[0]);
                let watch = Watch {
                    since: now,
                    checks: 0,
                    next,
                };
                self.watch.insert(pid, watch);
                return;
            }
        };
        self.watch.remove(&pid);
        log::debug!(
            "process {pid} ({}) looks like {}",
            spy::procfs::exe_name(pid).unwrap_or_default(),
            runtime.runtime_name()
        );
        let attaching = TargetState::Attaching {
            next_try: Instant::now(),
        };
        let mut target = Target::new(pid, runtime, attaching, detected.is_some());
        target.after_exec = after_exec;
        self.map.insert(pid, target);
        // Try right away: the earlier the first sample, the better.
        self.attach_pending(Some(pid), tracer);
    }

    /// Looks again at processes not recognised yet, when due.
    pub fn recheck_watched(&mut self, mut tracer: Option<&mut Tracer>) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .watch
            .iter()
            .filter(|(_, w)| w.next <= now)
            .map(|(&p, _)| p)
            .collect();
        for pid in due {
            if !spy::procfs::alive(pid) {
                self.watch.remove(&pid);
                continue;
            }
            if self.runtimes.iter().any(|r| r.detect(pid)) {
                self.watch.remove(&pid);
                self.consider(pid, false, tracer.as_deref_mut());
                continue;
            }
            let w = self.watch.get_mut(&pid).expect("due entry exists");
            w.checks += 1;
            match WATCH_DELAYS_MS.get(w.checks as usize) {
                Some(&ms) => w.next = w.since + Duration::from_millis(ms),
                None => {
                    self.watch.remove(&pid);
                }
            }
        }
    }

    /// Tries to attach spies to targets that are waiting (or just `only`).
    pub fn attach_pending(&mut self, only: Option<u32>, mut tracer: Option<&mut Tracer>) {
        let now = Instant::now();
        let pids: Vec<u32> = self
            .map
            .values()
            .filter(|t| only.is_none_or(|p| p == t.pid))
            .filter(|t| matches!(t.state, TargetState::Attaching { next_try } if next_try <= now))
            .map(|t| t.pid)
            .collect();
        for pid in pids {
            let runtime = self.map[&pid].runtime;
            let started = Instant::now();
            let result = self.try_attach(runtime, pid);
            let took = started.elapsed();
            let target = self.map.get_mut(&pid).expect("target exists");
            match result {
                Ok(spy) => {
                    let what = if target.after_exec {
                        "the new program of process"
                    } else {
                        "process"
                    };
                    log::info!(
                        "profiling {what} {pid} ({}), attached {} ms after it started",
                        spy.describe(),
                        target.since.elapsed().as_millis()
                    );
                    target.state = TargetState::Active(spy);
                    self.ever_attached = true;
                    if runtime.release_from_tracer() && self.release_ptrace {
                        release(tracer.as_deref_mut(), pid, runtime);
                    }
                }
                Err(AttachError::NotReady(why)) if target.since.elapsed() < ATTACH_PATIENCE => {
                    target.not_ready = Some(why);
                    target.attach_tries += 1;
                    target.state = TargetState::Attaching {
                        next_try: Instant::now()
                            + retry_wait(target.attach_tries, target.since.elapsed(), took),
                    };
                }
                Err(AttachError::Gone) => {
                    self.map.remove(&pid);
                }
                Err(e) => {
                    self.attach_failed |= target.detected
                        || matches!(
                            e,
                            AttachError::Permission(_)
                                | AttachError::Denied(_)
                                | AttachError::Unsupported(_)
                        );
                    let attempt = Attempt::Found {
                        detected: target.detected,
                    };
                    let (level, line) = attach_failure(pid, runtime.runtime_name(), &e, attempt);
                    log::log!(level, "{line}");
                    self.map.remove(&pid);
                }
            }
        }
    }

    /// At the end: the recognised processes that never got a spy (the run ended within the
    /// attach patience) are said, with the last reason, rather than left to "nothing found".
    pub fn report_unattached(&mut self) {
        let unattached: Vec<u32> = self.map.keys().copied().collect();
        for pid in unattached {
            self.never_attached(pid);
        }
    }

    /// Says why a recognised process that is leaving (or that the run leaves) never got a spy.
    fn never_attached(&mut self, pid: u32) {
        let Some(t) = self.map.get(&pid) else { return };
        if let (TargetState::Attaching { .. }, true, Some(why)) =
            (&t.state, t.detected, &t.not_ready)
        {
            // A process gone within a second of starting may just have been quicker than its
            // interpreter's start-up: not worth a warning.
            if t.since.elapsed() < Duration::from_secs(1) {
                log::debug!("process {pid} ended before a spy could attach: {why}");
                return;
            }
            log::debug!(
                "process {pid}: {} attach tries in {:.1} s, none found it ready",
                t.attach_tries,
                t.since.elapsed().as_secs_f64()
            );
            let err = AttachError::NotReady(why.clone());
            let attempt = Attempt::Found { detected: true };
            let (level, line) = attach_failure(pid, t.runtime.runtime_name(), &err, attempt);
            log::log!(level, "{line}");
            self.attach_failed = true;
        }
    }

    /// A traced process ended.
    pub fn exited(&mut self, pid: u32) {
        self.never_attached(pid);
        self.map.remove(&pid);
        self.watch.remove(&pid);
    }

    /// Under `connect` (or when the exec child is not traced), finds new descendants by scanning
    /// `/proc`, at most once a second (never with `--detect-subprocesses=false`).
    pub fn scan_children(&mut self, mut tracer: Option<&mut Tracer>) {
        let now = Instant::now();
        if !self.detect_subprocesses || now < self.next_scan {
            return;
        }
        self.next_scan = now + Duration::from_secs(1);
        let mut tree: Vec<u32> = self.map.keys().chain(self.watch.keys()).copied().collect();
        tree.push(self.root);
        tree.sort_unstable();
        tree.dedup();
        let found: Vec<u32> = match spy::procfs::children_of(&tree) {
            Some(children) => children,
            // Kernels without /proc/PID/task/TID/children: scan every process's parent.
            None => spy::procfs::pids()
                .into_iter()
                .filter(|&pid| spy::procfs::parent(pid).is_some_and(|pp| tree.contains(&pp)))
                .collect(),
        };
        for pid in found {
            if !self.map.contains_key(&pid) && !self.watch.contains_key(&pid) {
                self.consider(pid, false, tracer.as_deref_mut());
            }
        }
    }
}

/// Stops tracing a process whose runtime samples itself (see [`Runtime::release_from_tracer`]).
fn release(tracer: Option<&mut Tracer>, pid: u32, runtime: &dyn Runtime) {
    let pid = Pid::from_raw(pid as i32);
    let Some(tracer) = tracer.filter(|t| t.traces(pid)) else {
        return;
    };
    match tracer.release(pid) {
        Ok(()) => log::debug!(
            "process {pid} released from ptrace ({} samples itself)",
            runtime.runtime_name()
        ),
        Err(e) => log::debug!("process {pid} stays traced: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_retries_back_off() {
        let ms = Duration::from_millis;
        let quick = ms(1);
        // The first 50 ms: every 5 ms, whatever a try costs.
        assert_eq!(retry_wait(6, ms(40), ms(7)), ms(5));
        let waits: Vec<u64> = (1..=7)
            .map(|n| retry_wait(n, ms(60), quick).as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 100, 100, 100]);
        assert_eq!(retry_wait(3, Duration::from_secs(2), quick), ms(500));
        // A costly try waits 4 times its cost.
        assert_eq!(retry_wait(1, ms(60), ms(7)), ms(28));
    }
}
