//! The sampling session: one thread that owns the targets, the schedule and the tracer.
//!
//! Loop: wait (ppoll on the signalfd, and the target's pidfd under `connect`) until the next
//! sample or window boundary → handle signals and ptrace events (new processes, execs, exits)
//! → sample every attached target → at each wall-clock multiple of 10 s hand the window to the
//! uploader. When the child (exec) or the target (connect) ends, or on SIGINT/SIGTERM (connect),
//! the final partial window is flushed, uploads are given a bounded time to finish, local
//! outputs are written, and the session returns how it ended.

use crate::config::Settings;
use crate::logging::RateLimit;
use crate::profile::{align_down, Aggregator};
use crate::signals::Signals;
use crate::tracer::{Event, Exit, Tracer, TracerPauser};
use crate::upload::{Labels, UploadStats, Uploader};
use nix::poll::{PollFd, PollFlags};
use nix::unistd::Pid;
use spy::{AttachError, AttachOptions, Pauser, Runtime, SampleError, Spy, Stack};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime};

pub const UPLOAD_INTERVAL: Duration = Duration::from_secs(10);
/// How long a process that looks like a runtime may take before its spy attaches.
const ATTACH_PATIENCE: Duration = Duration::from_secs(10);
/// After this many consecutive panics a spy is rebuilt.
const PANICS_BEFORE_REATTACH: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exec,
    Connect,
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The exec child ended so.
    Child(Exit),
    /// The connect target exited.
    TargetExited,
    /// pyroscope got SIGINT/SIGTERM (connect).
    Interrupted,
    /// The connect target can no longer be profiled (the reason was logged as an error).
    Failed,
}

enum TargetState {
    Attaching { next_try: Instant },
    Active(Box<dyn Spy>),
}

struct Target {
    pid: u32,
    runtime: &'static dyn Runtime,
    state: TargetState,
    /// When the process started running its current program (exec), or was found.
    since: Instant,
    /// Whether this process was recognised as the runtime (vs. only tried because of an
    /// explicit --spy-name).
    detected: bool,
    sampled: bool,
    consecutive_panics: u32,
    errors: RateLimit,
    /// Samples tried and failed since the last error message: a torn read now and then is
    /// normal without pausing the target; only a real error rate deserves a warning.
    tries: u64,
    failures: u64,
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
        }
    }
}

/// Processes not recognised (yet): re-checked a few times in case they load a runtime library
/// later (e.g. `uwsgi` dlopen-ing libpython).
struct Watch {
    since: Instant,
    checks: u32,
    next: Instant,
}

const WATCH_DELAYS_MS: [u64; 5] = [20, 100, 500, 2000, 5000];

pub struct Session {
    settings: Settings,
    mode: Mode,
    root: Pid,
    runtimes: Vec<&'static dyn Runtime>,
    explicit_spy: bool,
    tracer: Option<Tracer>,
    targets: BTreeMap<u32, Target>,
    watch: BTreeMap<u32, Watch>,
    aggregator: Aggregator,
    uploader: Option<Uploader>,
    window_start: SystemTime,
    stacks: Vec<Stack>,
    stats: Stats,
    ending: Option<Ending>,
    next_scan: Instant,
    panic_log: RateLimit,
    /// When the child entered a job-control stop (Ctrl-Z), and when pyroscope itself got a stop
    /// signal: when both happen, the whole job was stopped and pyroscope stops too, so the shell
    /// sees its job stop. A stop of the child alone (`kill -STOP child`) is not mirrored.
    child_job_stop: Option<Instant>,
    own_stop_signal: Option<Instant>,
}

#[derive(Default, Debug)]
struct Stats {
    ticks: u64,
    process_samples: u64,
    stacks: u64,
    errors: u64,
    panics: u64,
    late: u64,
    /// Reads done while the target was paused (blocking mode).
    paused_reads: u64,
    ever_attached: bool,
    /// A process was recognised but could not be profiled (already reported).
    attach_failed: bool,
}

impl Session {
    pub fn new(
        settings: Settings,
        mode: Mode,
        root: Pid,
        tracer: Option<Tracer>,
    ) -> anyhow::Result<Session> {
        let runtimes = crate::runtimes::selected(&settings.spy_name);
        let now = SystemTime::now();
        let uploader = match &settings.upload {
            Some(u) => Some(Uploader::start(
                u.clone(),
                Labels {
                    app_name: settings.app_name.clone(),
                    tags: settings.tags.clone(),
                    sample_rate: settings.sample_rate,
                },
            )?),
            None => None,
        };
        Ok(Session {
            explicit_spy: settings.spy_name != "auto",
            aggregator: Aggregator::new(settings.sample_rate, now, !settings.outputs.is_empty()),
            window_start: align_down(now, UPLOAD_INTERVAL),
            settings,
            mode,
            root,
            runtimes,
            tracer,
            targets: BTreeMap::new(),
            watch: BTreeMap::new(),
            uploader,
            stacks: Vec::new(),
            stats: Stats::default(),
            ending: None,
            next_scan: Instant::now(),
            panic_log: RateLimit::new(Duration::from_secs(10)),
            child_job_stop: None,
            own_stop_signal: None,
        })
    }

    /// `connect`: attaches to the target now, or fails with the reason.
    pub fn attach_first(&mut self, pid: u32) -> anyhow::Result<()> {
        let detected: Vec<&'static dyn Runtime> = self
            .runtimes
            .iter()
            .copied()
            .filter(|r| r.detect(pid))
            .collect();
        let runtime = match (detected.first(), self.explicit_spy) {
            (Some(r), _) => *r,
            (None, true) => self.runtimes[0],
            (None, false) => {
                let exe = spy::exe_name(pid).unwrap_or_else(|| "?".into());
                let names: Vec<&str> = self.runtimes.iter().map(|r| r.runtime_name()).collect();
                anyhow::bail!(
                    "process {pid} ({exe}) is not a {} process (judged from its executable and libraries); pass --spy-name to force a spy",
                    one_of(&names)
                );
            }
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.try_attach(runtime, pid) {
                Ok(spy) => {
                    log::info!("profiling process {pid} ({})", spy.describe());
                    self.add_active(pid, runtime, spy, !detected.is_empty());
                    return Ok(());
                }
                Err(AttachError::NotReady(m)) if Instant::now() < deadline => {
                    log::debug!("process {pid} not ready: {m}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(AttachError::NotReady(m)) | Err(AttachError::WrongRuntime(m)) => {
                    anyhow::bail!(
                        "process {pid} does not look like a {} process: {m}",
                        runtime.runtime_name()
                    )
                }
                Err(AttachError::Permission(m)) => {
                    anyhow::bail!(crate::errors::permission_message(pid, &m))
                }
                Err(AttachError::Denied(m)) => {
                    anyhow::bail!("no permission to profile process {pid}: {m}")
                }
                Err(AttachError::Unsupported(m)) => anyhow::bail!("process {pid}: {m}"),
                Err(AttachError::Gone) => anyhow::bail!("process {pid} exited"),
                Err(AttachError::Other(m)) => anyhow::bail!("cannot profile process {pid}: {m}"),
            }
        }
    }

    fn add_active(
        &mut self,
        pid: u32,
        runtime: &'static dyn Runtime,
        spy: Box<dyn Spy>,
        detected: bool,
    ) {
        self.stats.ever_attached = true;
        self.targets.insert(
            pid,
            Target::new(pid, runtime, TargetState::Active(spy), detected),
        );
    }

    fn try_attach(
        &self,
        runtime: &'static dyn Runtime,
        pid: u32,
    ) -> Result<Box<dyn Spy>, AttachError> {
        let options = AttachOptions {
            sample_rate: self.settings.sample_rate,
            blocking: self.settings.blocking.contains(&runtime.spy_name()),
            traced_by_agent: self
                .tracer
                .as_ref()
                .is_some_and(|t| t.traces(Pid::from_raw(pid as i32))),
            wall_clock: self.settings.wall_clock,
        };
        match in_spy(|| runtime.attach(pid, &options)) {
            Ok(r) => r,
            Err(msg) => Err(AttachError::Other(format!(
                "spy panicked while attaching: {msg}"
            ))),
        }
    }

    /// A process started a new program (or appeared): decide whether to profile it.
    fn consider(&mut self, pid: u32, from_exec: bool) {
        if !self.settings.detect_subprocesses && pid != self.root.as_raw() as u32 {
            return;
        }
        if from_exec {
            // Whatever ran there before is gone.
            self.targets.remove(&pid);
            self.watch.remove(&pid);
        }
        if self.targets.contains_key(&pid) {
            return;
        }
        let detected = self.runtimes.iter().copied().find(|r| r.detect(pid));
        let runtime = match detected {
            Some(r) => r,
            None if self.explicit_spy && pid == self.root.as_raw() as u32 => self.runtimes[0],
            None => {
                let now = Instant::now();
                self.watch.insert(
                    pid,
                    Watch {
                        since: now,
                        checks: 0,
                        next: now + Duration::from_millis(WATCH_DELAYS_MS[0]),
                    },
                );
                return;
            }
        };
        self.watch.remove(&pid);
        log::debug!(
            "process {pid} ({}) looks like {}",
            spy::exe_name(pid).unwrap_or_default(),
            runtime.runtime_name()
        );
        let attaching = TargetState::Attaching {
            next_try: Instant::now(),
        };
        self.targets.insert(
            pid,
            Target::new(pid, runtime, attaching, detected.is_some()),
        );
        // Try right away: the earlier the first sample, the better.
        self.attach_pending(Some(pid));
    }

    fn recheck_watched(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .watch
            .iter()
            .filter(|(_, w)| w.next <= now)
            .map(|(&p, _)| p)
            .collect();
        for pid in due {
            if !spy::process_alive(pid) {
                self.watch.remove(&pid);
                continue;
            }
            if self.runtimes.iter().any(|r| r.detect(pid)) {
                self.watch.remove(&pid);
                self.consider(pid, false);
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
    fn attach_pending(&mut self, only: Option<u32>) {
        let now = Instant::now();
        let pids: Vec<u32> = self
            .targets
            .values()
            .filter(|t| only.is_none_or(|p| p == t.pid))
            .filter(|t| matches!(t.state, TargetState::Attaching { next_try } if next_try <= now))
            .map(|t| t.pid)
            .collect();
        for pid in pids {
            let runtime = self.targets[&pid].runtime;
            let result = self.try_attach(runtime, pid);
            let root = self.root.as_raw() as u32;
            let target = self.targets.get_mut(&pid).expect("target exists");
            match result {
                Ok(spy) => {
                    log::info!(
                        "profiling process {pid} ({}), attached {} ms after it started",
                        spy.describe(),
                        target.since.elapsed().as_millis()
                    );
                    target.state = TargetState::Active(spy);
                    self.stats.ever_attached = true;
                    if runtime.release_from_tracer() && self.settings.release_ptrace {
                        if let Some(t) = self
                            .tracer
                            .as_mut()
                            .filter(|t| t.traces(Pid::from_raw(pid as i32)))
                        {
                            match t.release(Pid::from_raw(pid as i32)) {
                                Ok(()) => log::debug!(
                                    "process {pid} released from ptrace ({} samples itself)",
                                    runtime.runtime_name()
                                ),
                                Err(e) => log::debug!("process {pid} stays traced: {e}"),
                            }
                        }
                    }
                }
                Err(AttachError::NotReady(_)) if target.since.elapsed() < ATTACH_PATIENCE => {
                    // Every tick for the first second (interpreter start-up), then every 100 ms.
                    let wait = if target.since.elapsed() < Duration::from_secs(1) {
                        5
                    } else {
                        100
                    };
                    target.state = TargetState::Attaching {
                        next_try: now + Duration::from_millis(wait),
                    };
                }
                Err(AttachError::Gone) => {
                    self.targets.remove(&pid);
                }
                Err(e) => {
                    self.stats.attach_failed |= target.detected
                        || matches!(
                            e,
                            AttachError::Permission(_)
                                | AttachError::Denied(_)
                                | AttachError::Unsupported(_)
                        );
                    let quiet =
                        !target.detected && pid == root && matches!(e, AttachError::NotReady(_));
                    let name = runtime.runtime_name();
                    match &e {
                        AttachError::Permission(m) => {
                            log::error!("{}", crate::errors::permission_message(pid, m))
                        }
                        AttachError::Denied(m) => log::error!(
                            "no permission to profile process {pid}: {m}; it is not profiled"
                        ),
                        AttachError::Unsupported(m) => {
                            log::error!("process {pid}: {m}; it is not profiled")
                        }
                        _ if quiet || !target.detected => {
                            log::debug!("process {pid} is not {name}: {e}")
                        }
                        _ => log::warn!(
                            "process {pid} looks like {name} but no spy could attach: {e}"
                        ),
                    }
                    self.targets.remove(&pid);
                }
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Exec(pid) => self.consider(pid.as_raw() as u32, true),
            Event::NewProcess { pid, parent } => {
                log::debug!("new process {pid} (parent {parent})");
                self.consider(pid.as_raw() as u32, false);
            }
            Event::Exited(pid, exit) => {
                self.targets.remove(&(pid.as_raw() as u32));
                self.watch.remove(&(pid.as_raw() as u32));
                if pid == self.root {
                    self.ending = Some(Ending::Child(exit));
                }
            }
            Event::RootStopped(sig) => {
                if matches!(sig, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
                    self.child_job_stop = Some(Instant::now());
                }
            }
        }
    }

    /// Under `connect` (or an untraced exec child), new descendants are found by scanning /proc.
    fn scan_children(&mut self) {
        let now = Instant::now();
        if now < self.next_scan {
            return;
        }
        self.next_scan = now + Duration::from_secs(1);
        let mut tree: Vec<u32> = self
            .targets
            .keys()
            .copied()
            .chain(self.watch.keys().copied())
            .collect();
        tree.push(self.root.as_raw() as u32);
        let found: Vec<u32> = match children_of(&tree) {
            Some(children) => children,
            // Kernels without /proc/PID/task/TID/children: scan every process's parent.
            None => std::fs::read_dir("/proc")
                .map(|dir| {
                    dir.flatten()
                        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
                        .filter(|&pid| parent_of(pid).is_some_and(|pp| tree.contains(&pp)))
                        .collect()
                })
                .unwrap_or_default(),
        };
        for pid in found {
            if !self.targets.contains_key(&pid) && !self.watch.contains_key(&pid) {
                self.consider(pid, false);
            }
        }
    }

    fn sample_all(&mut self) {
        self.stats.ticks += 1;
        let pids: Vec<u32> = self
            .targets
            .values()
            .filter(|t| matches!(t.state, TargetState::Active(_)))
            .map(|t| t.pid)
            .collect();
        for pid in pids {
            let mut target = self.targets.remove(&pid).expect("target exists");
            let TargetState::Active(spy) = &mut target.state else {
                unreachable!()
            };
            let mut stacks = std::mem::take(&mut self.stacks);
            let blocking = self.settings.blocking.contains(&spy.name());
            let traced = self
                .tracer
                .as_ref()
                .is_some_and(|t| t.traces(Pid::from_raw(pid as i32)));
            let result = {
                let mut tracer_pauser;
                let mut lock_pauser = RemoteLockPauser;
                let inner: Option<&mut dyn Pauser> = match (blocking, traced) {
                    (false, _) => None,
                    (true, true) => {
                        tracer_pauser = TracerPauser(self.tracer.as_mut().expect("traced"));
                        Some(&mut tracer_pauser)
                    }
                    (true, false) => Some(&mut lock_pauser),
                };
                let mut counting = inner.map(|inner| CountingPauser { inner, reads: 0 });
                let result = in_spy(|| {
                    spy.sample(counting.as_mut().map(|c| c as &mut dyn Pauser), &mut stacks)
                });
                self.stats.paused_reads += counting.map_or(0, |c| c.reads);
                result
            };
            let mut keep = true;
            target.tries += 1;
            match result {
                Ok(Ok(())) => {
                    target.consecutive_panics = 0;
                    self.stats.process_samples += 1;
                    if !target.sampled {
                        target.sampled = true;
                        log::debug!(
                            "first sample of process {pid} {} ms after it started",
                            target.since.elapsed().as_millis()
                        );
                    }
                    let spy_name = spy.name();
                    for s in stacks.drain(..) {
                        self.stats.stacks += 1;
                        self.aggregator.add(s, spy_name);
                    }
                }
                Ok(Err(SampleError::Gone)) => keep = false,
                Ok(Err(SampleError::Fatal(m))) => {
                    log::error!("process {pid} is no longer profiled: {m}");
                    self.stats.attach_failed = true;
                    keep = false;
                    if self.mode == Mode::Connect && pid == self.root.as_raw() as u32 {
                        self.ending = Some(Ending::Failed);
                    }
                }
                Ok(Err(SampleError::Other(m))) => {
                    self.stats.errors += 1;
                    target.failures += 1;
                    if let Some(n) = target.errors.check() {
                        let more = if n > 0 {
                            format!(" ({n} more errors since the last message)")
                        } else {
                            String::new()
                        };
                        let (tries, failures) = (
                            std::mem::take(&mut target.tries),
                            std::mem::take(&mut target.failures),
                        );
                        if tries >= 50 && failures * 10 >= tries {
                            log::warn!("sampling process {pid} failed in {failures} of {tries} samples: {m}{more}");
                        } else {
                            log::debug!("sampling process {pid} failed: {m}{more}");
                        }
                    }
                }
                Err(panic) => {
                    self.stats.panics += 1;
                    target.consecutive_panics += 1;
                    if let Some(n) = self.panic_log.check() {
                        log::error!("spy for process {pid} panicked: {panic} ({n} more panics since the last message); sampling goes on");
                    }
                    if target.consecutive_panics >= PANICS_BEFORE_REATTACH {
                        log::warn!("rebuilding the spy of process {pid} after {PANICS_BEFORE_REATTACH} panics in a row");
                        target.state = TargetState::Attaching {
                            next_try: Instant::now(),
                        };
                        target.since = Instant::now();
                        target.consecutive_panics = 0;
                    }
                }
            }
            stacks.clear();
            self.stacks = stacks;
            if keep {
                self.targets.insert(pid, target);
            }
        }
    }

    fn rotate_window(&mut self, end: SystemTime) {
        let start = self.window_start;
        self.window_start = end;
        if let Some(profile) = self.aggregator.take_window(start, end) {
            log::debug!("window of {} samples ready", profile.total_samples());
            if let Some(u) = &mut self.uploader {
                u.send(profile);
            }
        }
    }

    /// Runs until the child/target ends or (connect) pyroscope is told to stop.
    pub fn run(mut self, signals: &mut Signals, pidfd: Option<OwnedFd>) -> Ending {
        let period = Duration::from_nanos(1_000_000_000 / u64::from(self.settings.sample_rate));
        let mut next_sample = Instant::now();
        let mut window_end = self.window_start + UPLOAD_INTERVAL;
        if self.mode == Mode::Exec && self.tracer.is_none() {
            self.consider(self.root.as_raw() as u32, true);
        }
        let ending = loop {
            if let Some(e) = self.ending {
                break e;
            }
            let now = Instant::now();
            let to_window = window_end
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let timeout = next_sample.saturating_duration_since(now).min(to_window);
            let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
            if let Some(fd) = &pidfd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            let ts = nix::sys::time::TimeSpec::from_duration(timeout);
            let _ = nix::poll::ppoll(&mut fds, Some(ts), None);
            let readable = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let signalled = readable(&fds[0]);
            let target_gone = fds.get(1).is_some_and(readable);
            drop(fds);

            if signalled {
                let mut chld = false;
                for sig in signals.read_all() {
                    if sig.signo == libc::SIGCHLD {
                        chld = true;
                    } else {
                        self.on_signal(sig);
                    }
                }
                if chld {
                    self.on_sigchld();
                }
            }
            if self.tracer.as_ref().is_some_and(Tracer::has_events) {
                // Events seen while pausing a process for a blocking sample.
                self.on_sigchld();
            }
            self.mirror_job_stop();
            if target_gone {
                log::info!("process {} exited", self.root);
                self.ending = Some(Ending::TargetExited);
            }
            if self.ending.is_some() {
                continue;
            }
            self.recheck_watched();
            self.attach_pending(None);
            if self.tracer.as_ref().is_none_or(|t| t.has_released())
                && self.settings.detect_subprocesses
            {
                self.scan_children();
            }
            let now = Instant::now();
            if now >= next_sample {
                self.sample_all();
                next_sample += period;
                if next_sample < now {
                    // Fell behind (the machine is busy): skip, don't burst.
                    self.stats.late += 1;
                    next_sample = now + period;
                }
            }
            let wall = SystemTime::now();
            if wall >= window_end {
                let aligned = align_down(wall, UPLOAD_INTERVAL);
                self.rotate_window(aligned);
                window_end = aligned + UPLOAD_INTERVAL;
            }
            let root = self.root.as_raw() as u32;
            if self.mode == Mode::Connect
                && !self.targets.contains_key(&root)
                && !spy::process_alive(root)
            {
                self.ending = Some(Ending::TargetExited);
            }
        };
        self.finish();
        ending
    }

    fn on_sigchld(&mut self) {
        match &mut self.tracer {
            Some(tracer) => {
                for event in tracer.drain() {
                    self.handle_event(event);
                }
            }
            None if self.mode == Mode::Exec => {
                // Untraced child: reap it (and any orphan when we are PID 1).
                loop {
                    use crate::tracer::{wait, Status};
                    match wait(None, libc::WNOHANG) {
                        Ok(Status::Exited(pid, code)) if pid == self.root => {
                            self.ending = Some(Ending::Child(Exit::Code(code)))
                        }
                        Ok(Status::Signaled(pid, sig)) if pid == self.root => {
                            self.ending = Some(Ending::Child(Exit::Signal(sig)))
                        }
                        Ok(Status::StillAlive) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            None => {}
        }
    }

    fn mirror_job_stop(&mut self) {
        let recent = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < Duration::from_secs(2));
        if recent(self.child_job_stop) && recent(self.own_stop_signal) {
            self.child_job_stop = None;
            self.own_stop_signal = None;
            log::debug!("the job was stopped (Ctrl-Z): stopping too, as the shell expects");
            crate::signals::stop_self();
        }
    }

    fn on_signal(&mut self, sig: crate::signals::Received) {
        if matches!(sig.signo, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
            self.own_stop_signal = Some(Instant::now());
        }
        match self.mode {
            Mode::Connect => {
                if matches!(
                    sig.signo,
                    libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
                ) {
                    log::info!("got signal {}: flushing and exiting", sig.signo);
                    self.ending = Some(Ending::Interrupted);
                }
            }
            Mode::Exec => self.relay(sig),
        }
    }

    /// Passes a signal on to the child, exactly once (see `signals`).
    fn relay(&mut self, sig: crate::signals::Received) {
        if sig.from_terminal() {
            log::debug!(
                "signal {} came from the terminal: the child got it directly",
                sig.signo
            );
            return;
        }
        let window = Duration::from_millis(300);
        let already = |s: &mut Self| match &mut s.tracer {
            Some(t) => {
                let events = t.drain();
                let got = t.root_got_signal(sig.signo, sig.sender, window);
                for e in events {
                    s.handle_event(e);
                }
                got
            }
            None => crate::tracer::signal_pending(s.root, sig.signo),
        };
        // A group-wide kill reaches both of us at once; give the child's copy a moment to show.
        if already(self) || {
            std::thread::sleep(Duration::from_millis(2));
            already(self)
        } {
            log::debug!(
                "signal {} was sent to the child's process group too: not relaying",
                sig.signo
            );
            return;
        }
        log::debug!("relaying signal {} to {}", sig.signo, self.root);
        unsafe {
            libc::kill(self.root.as_raw(), sig.signo);
        }
    }

    fn finish(&mut self) {
        let end = SystemTime::now();
        self.rotate_window(end);
        let usage = cpu_time();
        let per_sample = match self.stats.process_samples {
            0 => String::new(),
            n => format!(
                ", {:.1} µs per sample",
                usage.as_secs_f64() * 1e6 / n as f64
            ),
        };
        let paused = match self.stats.paused_reads {
            0 if self.settings.blocking.is_empty() => String::new(),
            n => format!(", {n} read with the target paused"),
        };
        log::info!(
            "{} samples of {} stacks taken ({} errors, {} spy panics, {} late ticks{paused}); agent CPU {:.1} ms{per_sample}",
            self.stats.process_samples,
            self.stats.stacks,
            self.stats.errors,
            self.stats.panics,
            self.stats.late,
            usage.as_secs_f64() * 1e3,
        );
        if !self.stats.ever_attached && !self.stats.attach_failed {
            let names: Vec<&str> = self.runtimes.iter().map(|r| r.runtime_name()).collect();
            log::warn!("no {} process was found to profile", one_of(&names));
        }
        if let Some(u) = self.uploader.take() {
            let budget = self
                .settings
                .upload
                .as_ref()
                .map(|u| u.timeout)
                .unwrap_or(Duration::from_secs(10));
            let stats: UploadStats = u.finish(Instant::now() + budget.min(Duration::from_secs(10)));
            log::info!("uploaded {} profiles", stats.uploaded);
            if stats.dropped + stats.rejected > 0 {
                log::warn!(
                    "{} profiles could not be uploaded ({} rejected by the server)",
                    stats.dropped + stats.rejected,
                    stats.rejected
                );
            }
        }
        if let Some(total) = self.aggregator.total(end) {
            let title = format!(
                "{} ({} samples)",
                self.settings.app_name,
                total.total_samples()
            );
            for (path, format) in &self.settings.outputs {
                match crate::output::write_file(path, *format, &total, &title) {
                    Ok(()) => {
                        if log::log_enabled!(target: "pyroscope", log::Level::Warn) {
                            eprintln!("[pyroscope] profile written to {}", path.display());
                        }
                    }
                    Err(e) => log::error!("{e:#}"),
                }
            }
        }
    }
}

/// "A", "A or B", "A, B or C".
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Counts the reads a spy did inside a pause (the end-of-run report shows that blocking mode
/// really paused).
struct CountingPauser<'a> {
    inner: &'a mut dyn Pauser,
    reads: u64,
}

impl Pauser for CountingPauser<'_> {
    fn paused(&mut self, pid: u32, read: &mut dyn FnMut()) -> Result<(), String> {
        let mut ran = false;
        let result = self.inner.paused(pid, &mut || {
            ran = true;
            read()
        });
        self.reads += u64::from(ran);
        result
    }
}

/// Pauses through remoteprocess (PTRACE_SEIZE per sample) when the agent is not the tracer.
struct RemoteLockPauser;

impl Pauser for RemoteLockPauser {
    fn paused(&mut self, pid: u32, read: &mut dyn FnMut()) -> Result<(), String> {
        let process =
            remoteprocess::Process::new(pid as remoteprocess::Pid).map_err(|e| e.to_string())?;
        let _lock = process
            .lock()
            .map_err(|e| format!("cannot pause process {pid}: {e}"))?;
        read();
        Ok(())
    }
}

thread_local! {
    static IN_SPY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Installs a panic hook that keeps panics inside spies off stderr (they are counted and logged,
/// rate-limited); other panics are printed as usual.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_SPY.with(|s| s.get()) {
            let msg = match (
                info.payload().downcast_ref::<&str>(),
                info.payload().downcast_ref::<String>(),
            ) {
                (Some(s), _) => s.to_string(),
                (_, Some(s)) => s.clone(),
                _ => "unknown panic".into(),
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = format!("{msg}{at}"));
        } else {
            default(info);
        }
    }));
}

/// Runs spy code, turning a panic into an error message.
fn in_spy<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    IN_SPY.with(|s| s.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_SPY.with(|s| s.set(false));
    r.map_err(|_| LAST_PANIC.with(|p| p.borrow().clone()))
}

/// Children of the given processes, from `/proc/PID/task/TID/children` (one file per thread).
fn children_of(pids: &[u32]) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for &pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            match std::fs::read_to_string(&path) {
                Ok(text) => out.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                ),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && path.parent().is_some_and(|p| p.exists()) =>
                {
                    return None
                }
                Err(_) => {}
            }
        }
    }
    Some(out)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) pyroscope has used so far.
pub fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
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
    fn panics_in_spies_are_caught() {
        install_panic_hook();
        let r: Result<(), String> = in_spy(|| panic!("index out of bounds"));
        assert!(r.unwrap_err().contains("index out of bounds"));
        assert_eq!(in_spy(|| 7).unwrap(), 7);
    }

    #[test]
    fn children_of_self() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = children_of(&[std::process::id()]).expect("kernel has task/children");
        child.kill().unwrap();
        let _ = child.wait();
        assert!(kids.contains(&child.id()), "{kids:?}");
    }

    #[test]
    fn parent_of_self() {
        assert_eq!(
            parent_of(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
    }
}
