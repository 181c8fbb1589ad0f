//! `exec` and `connect`: set-up around a [`Session`], and how pyroscope exits.

use crate::cli::{CommonArgs, ConnectArgs, ExecArgs};
use crate::config::{default_app_name, Settings};
use crate::errors::EXIT_AGENT_ERROR;
use crate::launch;
use crate::session::{Ending, Mode, Session};
use crate::signals::Signals;
use crate::tracer::{Exit, Tracer};
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
    let launched = match launch::spawn(
        &program,
        &args.command,
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
    let tracer = launched.traced.then(|| Tracer::new(launched.pid));
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
    use crate::tracer::{wait, Status};
    let _ = nix::sys::ptrace::detach(pid, None);
    loop {
        match wait(Some(pid), libc::__WALL) {
            Ok(Status::Exited(_, c)) => return Outcome::Exit(c),
            Ok(Status::Signaled(_, s)) => return Outcome::DieBySignal(s),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Outcome::Exit(EXIT_AGENT_ERROR),
        }
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
    if !spy::process_alive(pid) {
        anyhow::bail!("no such process: {pid}");
    }
    // Reading another user's maps needs ptrace permission: say so before anything else.
    if let Err(e) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow::bail!(crate::errors::permission_message(pid, &e.to_string()));
        }
    }
    let settings = Settings::from_args(&args.common, || {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv: Vec<std::ffi::OsString> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| std::ffi::OsString::from(String::from_utf8_lossy(a).into_owned()))
            .collect();
        default_app_name(&argv, spy::exe_name(pid))
    })?;
    let pidfd = crate::session::pidfd_open(pid);
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
