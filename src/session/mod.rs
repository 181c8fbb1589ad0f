//! The sampling session: one thread that owns the targets, the schedule and the tracer.
//!
//! Loop: wait (ppoll on the signalfd, and the target's pidfd under `connect`) until the next
//! sample or window boundary → handle signals and ptrace events (new processes, execs, exits)
//! → sample every attached target → at each wall-clock multiple of 10 s hand the window to the
//! uploader. When the child (exec) or the target (connect) ends, or on SIGINT/SIGTERM (connect),
//! the final partial window is flushed, uploads are given a bounded time to finish, local
//! outputs are written, and the session returns how it ended.
//!
//! Who does what: [`targets`] (which processes, attaching), [`sampling`] (one tick),
//! [`isolation`] (spy panics), [`report`] (counts and the end-of-run summary); the signals'
//! relay is [`crate::process::signals`]'s, the data path after a stack [`crate::pipeline`]'s.

mod isolation;
mod report;
mod sampling;
mod targets;
mod trigger;

pub use isolation::install_panic_hook;
pub use report::cpu_time;

use crate::config::Settings;
use crate::pipeline::Pipeline;
use crate::process::signals::{self, Received, Relay, Signals};
use crate::process::tracer::{Event, Tracer};
use crate::process::Exit;
use nix::poll::{PollFd, PollFlags};
use nix::unistd::Pid;
use sampling::Sampler;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};
use targets::Targets;

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

pub struct Session {
    mode: Mode,
    root: Pid,
    period: Duration,
    tracer: Option<Tracer>,
    targets: Targets,
    sampler: Sampler,
    pipeline: Pipeline,
    relay: Relay,
    ending: Option<Ending>,
    /// `--trigger-cpu`.
    trigger: Option<trigger::Trigger>,
}

impl Session {
    pub fn new(
        settings: Settings,
        mode: Mode,
        root: Pid,
        tracer: Option<Tracer>,
    ) -> anyhow::Result<Session> {
        let pipeline = Pipeline::new(&settings, SystemTime::now())?;
        Ok(Session {
            mode,
            root,
            period: Duration::from_nanos(spy::period_ns(settings.sample_rate)),
            tracer,
            targets: Targets::new(&settings, root),
            sampler: Sampler::new(settings.blocking.clone()),
            pipeline,
            relay: Relay::new(root),
            ending: None,
            trigger: settings
                .trigger
                .clone()
                .map(|t| trigger::Trigger::new(t, settings.sample_rate, Instant::now())),
        })
    }

    /// `connect`: attaches to the target now, or fails with the reason.
    pub fn attach_first(&mut self, pid: u32) -> anyhow::Result<()> {
        self.targets.attach_first(pid)
    }

    /// Runs until the child/target ends or (connect) pyroscope is told to stop.
    pub fn run(mut self, signals: &mut Signals, pidfd: Option<OwnedFd>) -> Ending {
        let root = self.root.as_raw() as u32;
        raise_priority();
        let mut ticks = sampling::Ticks::new(self.period, Instant::now());
        if self.mode == Mode::Exec && self.tracer.is_none() {
            self.targets.consider(root, true, None);
        }
        let ending = loop {
            if let Some(e) = self.ending {
                break e;
            }
            let next = match &self.trigger {
                Some(t) => ticks.due().min(t.due()),
                None => ticks.due(),
            };
            let timeout = next
                .saturating_duration_since(Instant::now())
                .min(self.pipeline.until_window_end(SystemTime::now()));
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
                // Events seen while pausing a process for a blocking sample, or while relaying.
                self.on_sigchld();
            }
            self.relay.mirror_job_stop();
            if target_gone {
                log::info!("process {} exited", self.root);
                self.ending = Some(Ending::TargetExited);
            }
            if self.ending.is_some() {
                continue;
            }
            self.targets.recheck_watched(self.tracer.as_mut());
            self.targets.attach_pending(None, self.tracer.as_mut());
            // New processes the tracer does not report are found by scanning /proc.
            if self.tracer.as_ref().is_none_or(|t| t.has_released()) {
                self.targets.scan_children(self.tracer.as_mut());
            }
            let now = Instant::now();
            if now >= ticks.due() {
                let before = (
                    self.sampler.stats.process_samples,
                    self.sampler.stats.stacks,
                );
                let failed =
                    self.sampler
                        .tick(&mut self.targets, self.tracer.as_mut(), &mut self.pipeline);
                if let Some(t) = &mut self.trigger {
                    t.sampled(
                        self.sampler.stats.process_samples - before.0,
                        self.sampler.stats.stacks - before.1,
                    );
                }
                if self.mode == Mode::Connect && failed.contains(&root) {
                    self.ending = Some(Ending::Failed);
                }
                self.sampler.stats.late += u64::from(ticks.advance(now));
            }
            if let Some(t) = self.trigger.as_mut().filter(|t| now >= t.due()) {
                if let Some(change) = t.check(now, self.targets.active()) {
                    let rate = change.rate();
                    ticks.set_period(Duration::from_nanos(spy::period_ns(rate)), now);
                    self.pipeline
                        .set_trigger(change.label(), rate, SystemTime::now());
                }
            }
            self.pipeline.rotate_if_due(SystemTime::now());
            if self.mode == Mode::Connect
                && !self.targets.map.contains_key(&root)
                && !spy::procfs::alive(root)
            {
                self.ending = Some(Ending::TargetExited);
            }
        };
        self.finish(signals);
        ending
    }

    fn on_sigchld(&mut self) {
        match &mut self.tracer {
            Some(tracer) => {
                for event in tracer.drain() {
                    self.handle_event(event);
                }
            }
            // Untraced child: reap it (and any orphan when we are PID 1).
            None if self.mode == Mode::Exec => {
                if let Ok(Some(exit)) = crate::process::exit::reap_untraced(self.root, true) {
                    self.ending = Some(Ending::Child(exit));
                }
            }
            None => {}
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Exec(pid) => {
                self.targets
                    .consider(pid.as_raw() as u32, true, self.tracer.as_mut())
            }
            Event::NewProcess { pid, parent } => {
                log::debug!("new process {pid} (parent {parent})");
                self.targets
                    .consider(pid.as_raw() as u32, false, self.tracer.as_mut());
            }
            Event::Exited(pid, exit) => {
                self.targets.exited(pid.as_raw() as u32);
                if pid == self.root {
                    self.ending = Some(Ending::Child(exit));
                }
            }
            Event::RootStopped(sig) => self.relay.child_stopped(sig),
        }
    }

    fn on_signal(&mut self, sig: Received) {
        self.relay.received(sig);
        match self.mode {
            Mode::Connect => {
                if signals::ends_connect(sig.signo) {
                    log::info!("got signal {}: flushing and exiting", sig.signo);
                    self.ending = Some(Ending::Interrupted);
                }
            }
            Mode::Exec => self.relay.relay(sig, self.tracer.as_mut()),
        }
    }

    fn finish(&mut self, signals: &mut Signals) {
        let end = SystemTime::now();
        self.pipeline.close(end);
        report::summary(&self.sampler.stats, self.sampler.blocking());
        if let Some(t) = &mut self.trigger {
            t.finish(Instant::now());
            report::trigger(t);
        }
        self.targets.report_unattached();
        if !self.targets.ever_attached && !self.targets.attach_failed {
            report::nothing_found(&self.targets.runtime_names());
        }
        let mut interrupted = second_signal(signals);
        if let Some(stats) = self.pipeline.finish_uploads(&mut interrupted) {
            report::uploads(&stats);
        }
        self.pipeline.write_outputs(end);
    }
}

/// While the final uploads run: waits up to the given time for SIGINT or SIGTERM, which end
/// them at once (other signals are passed on as usual, or ignored when the program is gone).
fn second_signal(signals: &mut Signals) -> impl FnMut(Duration) -> bool + '_ {
    move |wait| {
        let mut fds = [PollFd::new(signals.fd(), PollFlags::POLLIN)];
        let ts = nix::sys::time::TimeSpec::from_duration(wait);
        if nix::poll::ppoll(&mut fds, Some(ts), None).unwrap_or(0) == 0 {
            return false;
        }
        let stop = signals
            .read_all()
            .iter()
            .any(|s| matches!(s.signo, libc::SIGINT | libc::SIGTERM));
        if stop {
            log::warn!("got SIGINT/SIGTERM while uploading the last profiles: exiting now");
        }
        stop
    }
}

/// The nice value of the session thread when it may not use a real-time policy.
const SESSION_NICE: i32 = -10;

/// Lets the session thread (only it: scheduling is per thread on Linux, and the child was forked
/// before) run when its tick is due. Among many busy processes a thread of default priority
/// waits for a CPU past its next tick: with 32 busy processes on 2 cores, 28% of the ticks came
/// late and were skipped; at nice -10, 0.2%, but with 64 still 5%; as a real-time thread
/// (`SCHED_FIFO` at the lowest priority, 1), 0.2% with 64. The agent uses a few percent of a core
/// either way: what changes is when, not how much (and the kernel caps real-time threads at 95%
/// of each second). `SCHED_RESET_ON_FORK`: threads this one starts (a .NET spy's reader) run at
/// the normal policy. Without the permission (root or `CAP_SYS_NICE`), nice -10 is tried, and
/// without that nothing changes.
fn raise_priority() {
    // SAFETY: plain syscalls on this thread.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
    let param = libc::sched_param { sched_priority: 1 };
    if unsafe {
        libc::sched_setscheduler(tid, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    } == 0
    {
        log::debug!("sampling thread: SCHED_FIFO priority 1");
        return;
    }
    let fifo = std::io::Error::last_os_error();
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, SESSION_NICE) } != 0 {
        log::debug!(
            "sampling at the default priority: {fifo}; {}",
            std::io::Error::last_os_error()
        );
    }
}
