//! What the user is told when profiling cannot start, and the exit codes of pyroscope's own
//! failures. Every attach failure is worded here, once.

use spy::AttachError;

/// Exit status when pyroscope itself fails (bad flags, no such pid, ...), as the Go CLI did.
pub const EXIT_AGENT_ERROR: i32 = 1;

/// How to get the permission ptrace needs.
pub const PTRACE_HINT: &str = "To profile, pyroscope needs ptrace permission over the target: run it as root or as the \
target's user; in Docker add `--cap-add SYS_PTRACE`, in Kubernetes add `SYS_PTRACE` to the container's \
securityContext.capabilities.add; and check `kernel.yama.ptrace_scope` (1 allows only descendants, 3 forbids ptrace)";

/// One line for "the OS refused": the cause plus what to do.
pub fn permission_message(pid: u32, cause: &str) -> String {
    format!("no permission to read process {pid} ({cause}). {PTRACE_HINT}")
}

/// Which process a spy failed to attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The process the user named (`connect --pid`): any failure ends the run.
    Named,
    /// A process found in the profiled tree; `detected`: it was recognised as the runtime
    /// (rather than only tried because `--spy-name` forced a spy on the program).
    Found { detected: bool },
}

/// What to say when a spy for `runtime` ("Python") cannot attach to `pid`: the level and the
/// line. Under [`Attempt::Named`] the line is the run's error.
pub fn attach_failure(
    pid: u32,
    runtime: &str,
    err: &AttachError,
    attempt: Attempt,
) -> (log::Level, String) {
    use log::Level;
    let line = match err {
        AttachError::Permission(m) => permission_message(pid, m),
        AttachError::Denied(m) => format!("no permission to profile process {pid}: {m}"),
        AttachError::Unsupported(m) => format!("process {pid}: {m}"),
        AttachError::Gone => format!("process {pid} exited"),
        AttachError::NotReady(m) | AttachError::WrongRuntime(m) => {
            format!("process {pid} does not look like a {runtime} process: {m}")
        }
        AttachError::Other(m) => format!("cannot profile process {pid}: {m}"),
    };
    let Attempt::Found { detected } = attempt else {
        return (Level::Error, line);
    };
    // The program runs on: say what happens to it.
    match err {
        AttachError::Permission(_) => (Level::Error, line),
        AttachError::Denied(_) | AttachError::Unsupported(_) => {
            (Level::Error, format!("{line}; it is not profiled"))
        }
        // Only tried because a spy was forced, or exited: nothing the user must hear.
        _ if !detected || *err == AttachError::Gone => (
            Level::Debug,
            format!("process {pid} is not {runtime}: {err}"),
        ),
        _ => (
            Level::Warn,
            format!("process {pid} looks like {runtime} but no spy could attach: {err}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    #[test]
    fn attach_failures_are_worded_once() {
        let named = |e: AttachError| attach_failure(7, "Ruby", &e, Attempt::Named);
        let found =
            |e: AttachError, detected| attach_failure(7, "Ruby", &e, Attempt::Found { detected });
        let wrong = AttachError::WrongRuntime("sleep neither is ruby nor maps libruby".into());
        assert_eq!(
            named(wrong.clone()),
            (
                Level::Error,
                "process 7 does not look like a Ruby process: sleep neither is ruby nor maps libruby"
                    .into()
            )
        );
        let old = AttachError::Unsupported("Ruby 9.9 is not supported".into());
        assert_eq!(named(old.clone()).1, "process 7: Ruby 9.9 is not supported");
        assert_eq!(
            found(old, true),
            (
                Level::Error,
                "process 7: Ruby 9.9 is not supported; it is not profiled".into()
            )
        );
        let denied = AttachError::Denied("socket mode 0600".into());
        assert_eq!(
            found(denied.clone(), true).1,
            "no permission to profile process 7: socket mode 0600; it is not profiled"
        );
        assert_eq!(
            named(denied).1,
            "no permission to profile process 7: socket mode 0600"
        );
        for attempt in [Attempt::Named, Attempt::Found { detected: true }] {
            let (level, line) =
                attach_failure(7, "Ruby", &AttachError::Permission("EPERM".into()), attempt);
            assert_eq!(level, Level::Error);
            assert!(
                line.starts_with("no permission to read process 7 (EPERM).")
                    && line.contains("SYS_PTRACE")
            );
        }
        assert_eq!(named(AttachError::Gone).1, "process 7 exited");
        assert_eq!(
            named(AttachError::Other("boom".into())).1,
            "cannot profile process 7: boom"
        );
        assert_eq!(
            found(AttachError::NotReady("no libruby yet".into()), true),
            (
                Level::Warn,
                "process 7 looks like Ruby but no spy could attach: no libruby yet".into()
            )
        );
        assert_eq!(found(wrong, false).0, Level::Debug);
        assert_eq!(found(AttachError::Gone, true).0, Level::Debug);
    }
}
