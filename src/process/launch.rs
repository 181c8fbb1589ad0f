//! Starting the child of `exec` under ptrace.
//!
//! fork → (child) restore the signal mask, reset SIGPIPE, drop privileges, wait for the go-ahead →
//! (parent) `PTRACE_SEIZE` with fork/vfork/clone/exec tracing → go-ahead → (child) `execve`.
//! Seizing before `execve` means the agent sees the first exec and every process and thread the
//! child ever creates. The child keeps our stdin/stdout/stderr, environment, working directory and
//! **process group** (so it stays in the terminal's foreground group: it can read the TTY and gets
//! Ctrl-C straight from the terminal). An exec failure comes back through a close-on-exec pipe.

use nix::sys::ptrace;
use nix::unistd::Pid;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The user and groups the child runs as.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub describe: String,
}

#[derive(Debug)]
pub enum LaunchError {
    /// Exit status 127.
    NotFound(String),
    /// Exit status 126.
    NotExecutable(String),
    Other(String),
}

impl LaunchError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::NotFound(_) => 127,
            LaunchError::NotExecutable(_) => 126,
            LaunchError::Other(_) => 126,
        }
    }
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchError::NotFound(m) | LaunchError::NotExecutable(m) | LaunchError::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

pub struct Launched {
    pub pid: Pid,
    /// Why `PTRACE_SEIZE` was refused, when it was: the child runs anyway, the agent falls back
    /// to scanning `/proc`.
    pub untraced: Option<nix::errno::Errno>,
}

/// Finds the program like `execvp` would (PATH search when it has no slash).
pub fn resolve_program(prog: &OsStr) -> Result<PathBuf, LaunchError> {
    let shown = prog.to_string_lossy();
    let check = |p: &Path| -> Result<(), LaunchError> {
        let meta = std::fs::metadata(p)
            .map_err(|_| LaunchError::NotFound(format!("{shown}: no such file")))?;
        if meta.is_dir() {
            return Err(LaunchError::NotExecutable(format!(
                "{shown}: is a directory"
            )));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(LaunchError::NotExecutable(format!(
                "{shown}: permission denied (not executable)"
            )));
        }
        Ok(())
    };
    if prog.as_bytes().contains(&b'/') {
        let p = PathBuf::from(prog);
        check(&p)?;
        return Ok(p);
    }
    if prog.is_empty() {
        return Err(LaunchError::NotFound("empty command".into()));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut not_exec = None;
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(prog);
        match check(&cand) {
            Ok(()) => return Ok(cand),
            Err(e @ LaunchError::NotExecutable(_)) => not_exec = not_exec.or(Some(e)),
            Err(_) => {}
        }
    }
    Err(not_exec.unwrap_or_else(|| LaunchError::NotFound(format!("{shown}: command not found"))))
}

/// Looks up `--user-name` / `--group-name` (names or numeric ids) and the sudo root drop.
pub fn credentials(
    user: Option<&str>,
    group: Option<&str>,
    no_root_drop: bool,
) -> anyhow::Result<Option<Credentials>> {
    use super::users;
    let mut uid_gid: Option<(u32, u32, String)> = None;
    if nix::unistd::Uid::effective().is_root() && !no_root_drop {
        if let (Ok(u), Ok(g)) = (std::env::var("SUDO_UID"), std::env::var("SUDO_GID")) {
            if let (Ok(u), Ok(g)) = (u.parse::<u32>(), g.parse::<u32>()) {
                uid_gid = Some((u, g, format!("sudo user {u}/{g}")));
            }
        }
    }
    let mut user_name = None;
    if let Some(u) = user.filter(|s| !s.is_empty()) {
        match (users::user(u), u.parse::<u32>()) {
            (Some(pw), _) => {
                uid_gid = Some((pw.uid, pw.gid, format!("user {}", pw.name)));
                user_name = Some(pw.name);
            }
            // A numeric id with no passwd entry is fine (common in containers).
            (None, Ok(id)) => {
                uid_gid = Some((id, uid_gid.map(|x| x.1).unwrap_or(id), format!("uid {id}")))
            }
            (None, Err(_)) => anyhow::bail!(
                "unknown user {u:?} (--user-name): not in /etc/passwd; a numeric uid works too"
            ),
        }
    }
    if let Some(g) = group.filter(|s| !s.is_empty()) {
        let gid = users::group(g).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown group {g:?} (--group-name): not in /etc/group; a numeric gid works too"
            )
        })?;
        let (uid, desc) = match &uid_gid {
            Some((u, _, d)) => (*u, d.clone()),
            None => (
                nix::unistd::Uid::effective().as_raw(),
                "current user".into(),
            ),
        };
        uid_gid = Some((uid, gid, format!("{desc}, group {g}")));
    }
    let Some((uid, gid, describe)) = uid_gid else {
        return Ok(None);
    };
    let groups = match &user_name {
        Some(n) => users::groups_of(n, gid),
        None => vec![gid],
    };
    Ok(Some(Credentials {
        uid,
        gid,
        groups,
        describe,
    }))
}

/// ptrace options for the child: exec always, threads (clone) always, processes when
/// subprocesses are followed.
pub fn trace_options(follow_forks: bool) -> ptrace::Options {
    let mut o = ptrace::Options::PTRACE_O_TRACEEXEC | ptrace::Options::PTRACE_O_TRACECLONE;
    if follow_forks {
        o |= ptrace::Options::PTRACE_O_TRACEFORK | ptrace::Options::PTRACE_O_TRACEVFORK;
    }
    o
}

fn cstring(s: &OsStr) -> Result<CString, LaunchError> {
    CString::new(s.as_bytes()).map_err(|_| {
        LaunchError::Other(format!(
            "{}: argument contains a NUL byte",
            s.to_string_lossy()
        ))
    })
}

/// Starts `argv` as a traced child. `child_mask` is the signal mask the child gets (the one
/// pyroscope was started with).
pub fn spawn(
    program: &Path,
    argv: &[OsString],
    extra_env: &[(&str, String)],
    creds: Option<&Credentials>,
    options: ptrace::Options,
    child_mask: &libc::sigset_t,
) -> Result<Launched, LaunchError> {
    // Everything the child needs is prepared before fork: after fork only async-signal-safe
    // calls are allowed.
    let path = cstring(program.as_os_str())?;
    let args: Vec<CString> = argv.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    // Our environment, plus what the runtimes ask for where the user did not set it.
    let added = extra_env
        .iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    let env: Vec<CString> = std::env::vars_os()
        .chain(added)
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec_bytes();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let groups: Vec<libc::gid_t> = creds.map(|c| c.groups.clone()).unwrap_or_default();
    let creds_raw = creds.map(|c| (c.uid, c.gid));
    let mask = *child_mask;

    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;

    // SAFETY: the child only calls async-signal-safe functions before execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Other(format!(
            "fork failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        unsafe {
            libc::close(go_w);
            libc::close(err_r);
            libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
            // Rust ignores SIGPIPE; a program run directly would have the default.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if let Some((uid, gid)) = creds_raw {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    report_and_exit(err_w, 1, 126);
                }
            }
            let mut b = 0u8;
            while libc::read(go_r, &mut b as *mut u8 as *mut libc::c_void, 1) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
            libc::execve(path.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
            report_and_exit(err_w, 2, 127);
        }
    }
    let child = Pid::from_raw(pid);
    unsafe {
        libc::close(go_r);
        libc::close(err_w);
    }
    let untraced = ptrace::seize(child, options).err();
    unsafe {
        libc::write(go_w, [1u8].as_ptr() as *const libc::c_void, 1);
        libc::close(go_w);
    }
    // EOF means execve succeeded (the pipe is close-on-exec); otherwise stage + errno.
    let mut buf = [0u8; 5];
    let mut got = 0;
    while got < buf.len() {
        let n = unsafe {
            libc::read(
                err_r,
                buf[got..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - got,
            )
        };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    unsafe { libc::close(err_r) };
    if got == 0 {
        return Ok(Launched {
            pid: child,
            untraced,
        });
    }
    // The child failed and exits: reap it so it does not linger.
    let _ = nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::__WALL));
    let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
    let err = std::io::Error::from_raw_os_error(errno);
    let shown = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    Err(match (buf[0], errno) {
        (1, _) => LaunchError::Other(format!(
            "cannot run {shown} as {}: {err}",
            creds
                .map(|c| c.describe.as_str())
                .unwrap_or("the requested user")
        )),
        (_, libc::ENOENT) => LaunchError::NotFound(format!("{shown}: {err}")),
        _ => LaunchError::NotExecutable(format!("cannot execute {shown}: {err}")),
    })
}

unsafe fn report_and_exit(fd: libc::c_int, stage: u8, code: libc::c_int) -> ! {
    let errno = *libc::__errno_location();
    let mut msg = [stage, 0, 0, 0, 0];
    msg[1..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(fd, msg.as_ptr() as *const libc::c_void, msg.len());
    libc::_exit(code)
}

fn pipe() -> Result<(libc::c_int, libc::c_int), LaunchError> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(LaunchError::Other(format!(
            "pipe failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok((fds[0], fds[1]))
}

trait IntoVecBytes {
    fn into_vec_bytes(self) -> Vec<u8>;
}

impl IntoVecBytes for OsString {
    fn into_vec_bytes(self) -> Vec<u8> {
        use std::os::unix::ffi::OsStringExt;
        self.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_programs() {
        assert!(resolve_program(OsStr::new("sh")).unwrap().is_absolute());
        assert!(matches!(
            resolve_program(OsStr::new("no-such-program-xyz")),
            Err(LaunchError::NotFound(_))
        ));
        assert!(matches!(
            resolve_program(OsStr::new("/etc/passwd")),
            Err(LaunchError::NotExecutable(_))
        ));
        assert!(matches!(
            resolve_program(OsStr::new("/tmp")),
            Err(LaunchError::NotExecutable(_))
        ));
    }

    #[test]
    fn unknown_user_is_an_error() {
        assert!(credentials(Some("no-such-user-xyz"), None, true).is_err());
        assert!(credentials(None, Some("no-such-group-xyz"), true).is_err());
        let c = credentials(Some("nobody"), None, true).unwrap().unwrap();
        assert_eq!(c.uid, 65534);
    }
}
