//! Error texts shared by several places, and the exit codes of pyroscope's own failures.

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
