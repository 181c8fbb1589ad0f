//! `exec` and `connect`: set-up around a [`Session`], and how pyroscope exits.

use crate::cli::{CommonArgs, ConnectArgs, ExecArgs};
use crate::config::{default_app_name, Settings};
use crate::errors::{EXIT_AGENT_ERROR, PTRACE_HINT};
use crate::process::exit::{pidfd_open, reap_untraced};
use crate::process::launch;
use crate::process::signals::Signals;
use crate::process::tracer::Tracer;
use crate::process::Exit;
use crate::session::{Ending, Mode, Session};
use nix::unistd::Pid;

/// What `main` should do at the end.
pub enum Outcome {
    Exit(i32),
    DieBySignal(i32),
}

/// What both commands do first: logging, the spy name (validated before anything else so a
/// typo is the error reported), and, before any thread exists so every thread inherits the
/// blocked mask, the signal fd and the panic hook.
fn prepare(common: &CommonArgs) -> anyhow::Result<Signals> {
    crate::logging::init(common.log_level, common.no_logging);
    crate::runtimes::check_spy_name(&common.spy_name.trim().to_ascii_lowercase())?;
    let signals = Signals::install()?;
    crate::session::install_panic_hook();
    Ok(signals)
}

pub fn exec(args: ExecArgs) -> anyhow::Result<Outcome> {
    let mut signals = prepare(&args.common)?;
    let settings = Settings::from_args(&args.common, || default_app_name(&args.command, None))?;
    log::debug!("settings: {settings:?}");
    let creds = launch::credentials(
        args.user_name.as_deref(),
        args.group_name.as_deref(),
        args.no_root_drop,
    )?;
    if let Some(c) = &creds {
        log::info!(
            "dropping permissions: running the command as {} (uid {}, gid {})",
            c.describe,
            c.uid,
            c.gid
        );
    }
    let program = match launch::resolve_program(&args.command[0]) {
        Ok(p) => p,
        Err(e) => {
            log_fatal(&format!("{e}"));
            return Ok(Outcome::Exit(e.exit_code()));
        }
    };
    let options = launch::trace_options(settings.detect_subprocesses);
    let extra_env: Vec<(&str, String)> = crate::runtimes::all()
        .iter()
        .flat_map(|r| r.child_env(settings.sample_rate))
        .collect();
    let launched = match launch::spawn(
        &program,
        &args.command,
        &extra_env,
        creds.as_ref(),
        options,
        &signals.original_mask,
    ) {
        Ok(l) => l,
        Err(e) => {
            log_fatal(&format!("{e}"));
            return Ok(Outcome::Exit(e.exit_code()));
        }
    };
    if let Some(e) = launched.untraced {
        let flags: Vec<String> = crate::runtimes::pausable()
            .map(|r| format!("--{}-blocking", r.spy_name()))
            .collect();
        log::warn!(
            "cannot trace the child (ptrace: {e}): it runs unprofiled until its runtime is recognised, subprocesses are found by scanning /proc, and {} cannot pause it. {PTRACE_HINT}",
            flags.join(" / ")
        );
    }
    let tracer = launched
        .untraced
        .is_none()
        .then(|| Tracer::new(launched.pid));
    let session = match Session::new(settings, Mode::Exec, launched.pid, tracer) {
        Ok(s) => s,
        Err(e) => {
            // The child is already running: never take it down with us.
            log::error!("{e:#}; the command runs unprofiled");
            return Ok(wait_unprofiled(launched.pid));
        }
    };
    Ok(match session.run(&mut signals, None) {
        Ending::Child(Exit::Code(c)) => Outcome::Exit(c),
        Ending::Child(Exit::Signal(s)) => Outcome::DieBySignal(s),
        Ending::TargetExited | Ending::Interrupted | Ending::Failed => Outcome::Exit(0),
    })
}

/// Fallback when profiling could not start after the child did: relay nothing fancy, just wait.
fn wait_unprofiled(pid: Pid) -> Outcome {
    let _ = nix::sys::ptrace::detach(pid, None);
    match reap_untraced(pid, false) {
        Ok(Some(Exit::Code(c))) => Outcome::Exit(c),
        Ok(Some(Exit::Signal(s))) => Outcome::DieBySignal(s),
        Ok(None) | Err(_) => Outcome::Exit(EXIT_AGENT_ERROR),
    }
}

pub fn connect(args: ConnectArgs) -> anyhow::Result<Outcome> {
    let mut signals = prepare(&args.common)?;
    if args.pid <= 0 || args.pid > i64::from(i32::MAX) {
        anyhow::bail!(
            "invalid --pid {}: give the id of a running process",
            args.pid
        );
    }
    let pid = args.pid as u32;
    if !spy::procfs::alive(pid) {
        anyhow::bail!("no such process: {pid}");
    }
    // Reading another user's maps needs ptrace permission: say so before anything else.
    if let Err(e) = spy::procfs::maps(pid) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow::bail!(crate::errors::permission_message(pid, &e.to_string()));
        }
    }
    let settings = Settings::from_args(&args.common, || {
        let argv: Vec<std::ffi::OsString> = spy::procfs::cmdline(pid)
            .into_iter()
            .map(Into::into)
            .collect();
        default_app_name(&argv, spy::procfs::exe_name(pid))
    })?;
    let pidfd = pidfd_open(pid);
    let mut session = Session::new(settings, Mode::Connect, Pid::from_raw(pid as i32), None)?;
    session.attach_first(pid)?;
    Ok(match session.run(&mut signals, pidfd) {
        Ending::Failed => Outcome::Exit(EXIT_AGENT_ERROR),
        _ => Outcome::Exit(0),
    })
}

/// Prints a fatal error even with --no-logging (the user must learn why nothing happened).
pub fn log_fatal(msg: &str) {
    eprintln!("[pyroscope] error: {msg}");
}
