//! `/proc`, read in one place: the agent and every spy ask here, so each file has one parser.
//!
//! Everything is best effort: a process can exit between two reads, so lookups return `None`
//! (or an empty list) rather than an error, except [`maps`], whose error tells a permission
//! problem apart from a gone process.

use std::io;

/// Where the command name of a `stat` line ends: it is in parentheses and may itself hold
/// spaces and `)`, so the fields start after the **last** `)`.
fn command_end(stat: &[u8]) -> Option<usize> {
    stat.iter().rposition(|&b| b == b')')
}

/// The fields of a `stat` line after the command name, field 3 of proc(5) (the state) first.
pub fn stat_fields(stat: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    Some(
        stat.get(command_end(stat)? + 1..)?
            .split(u8::is_ascii_whitespace)
            .filter(|f| !f.is_empty()),
    )
}

/// Field 3 alone, the state letter (`R`, `S`, ...): what is read of every thread at every
/// sample, so it skips splitting the line (and indexes rather than slices: this loop runs
/// over ~250 bytes per thread per sample).
pub fn stat_state(stat: &[u8]) -> Option<u8> {
    stat.get(command_end(stat)? + 2).copied()
}

/// OS thread names (`/proc/PID/task/TID/comm`) of one process, each read again at most once a
/// second (a program may rename a thread after it starts).
pub struct ThreadNames {
    pid: u32,
    names: std::collections::HashMap<u32, (std::sync::Arc<str>, std::time::Instant)>,
}

impl ThreadNames {
    pub fn new(pid: u32) -> Self {
        ThreadNames {
            pid,
            names: Default::default(),
        }
    }

    /// The name of thread `tid` when it has one of its own: `None` when it has the name of the
    /// process's main thread (a runtime that does not name its threads), or is gone.
    pub fn own(&mut self, tid: u32) -> Option<std::sync::Arc<str>> {
        let main = self.get(self.pid)?;
        self.get(tid).filter(|name| *name != main)
    }

    /// The name of thread `tid`; `None` when it is gone (or not of this process's view).
    pub fn get(&mut self, tid: u32) -> Option<std::sync::Arc<str>> {
        let fresh = std::time::Duration::from_secs(1);
        if let Some((name, at)) = self.names.get(&tid) {
            if at.elapsed() < fresh {
                return Some(name.clone());
            }
        }
        let read = std::fs::read(format!("/proc/{}/task/{tid}/comm", self.pid)).ok()?;
        let read = read.strip_suffix(b"\n").unwrap_or(&read);
        let name: std::sync::Arc<str> = match self.names.get(&tid) {
            Some((old, _)) if old.as_bytes() == read => old.clone(),
            _ => String::from_utf8_lossy(read).into(),
        };
        if self.names.len() >= 4096 {
            // Threads come and go: keep those seen within the last minute.
            self.names
                .retain(|_, (_, at)| at.elapsed() < std::time::Duration::from_secs(60));
        }
        self.names
            .insert(tid, (name.clone(), std::time::Instant::now()));
        Some(name)
    }
}

/// What the agent uses of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z`, `X`, ...
    pub state: u8,
    pub ppid: u32,
    /// Field 9: the kernel's `PF_*` flags of the task.
    pub flags: u32,
    /// Fields 14 and 15, `utime` + `stime`: the CPU time it used, in clock ticks (of a
    /// process: all its threads, those that ended included).
    pub cpu_ticks: u64,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

impl Stat {
    pub fn parse(stat: &[u8]) -> Option<Stat> {
        let mut fields = stat_fields(stat)?;
        let state = *fields.next()?.first()?;
        let ppid = number(fields.next()?)?;
        // Fields 5..=8 come between the parent (4) and the flags (9), 10..=13 before the CPU
        // times (14, 15), 16..=21 before the start time (22).
        let flags = number(fields.nth(9 - 5)?)?;
        let utime: u64 = number(fields.nth(14 - 10)?)?;
        let stime: u64 = number(fields.next()?)?;
        let start_time = number(fields.nth(22 - 16)?)?;
        Some(Stat {
            state,
            ppid,
            flags,
            cpu_ticks: utime + stime,
            start_time,
        })
    }
}

fn number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// `/proc/PID/stat` of a process (or, as `/proc/TID/stat`, of a thread).
pub fn stat(pid: u32) -> Option<Stat> {
    Stat::parse(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// Clock ticks per second (`_SC_CLK_TCK`, the unit of [`Stat::cpu_ticks`]).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as u64,
        _ => 100,
    }
}

/// How long ago `pid` started (its start time against the boot-time clock, which both count).
pub fn age(pid: u32) -> Option<std::time::Duration> {
    let start = stat(pid)?.start_time;
    // SAFETY: sysconf and clock_gettime only write the timespec given.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if ticks <= 0 || unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return None;
    }
    let now = std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
    let started = std::time::Duration::from_secs_f64(start as f64 / ticks as f64);
    Some(now.saturating_sub(started))
}

/// Whether `pid` exists and has not exited (a zombie, `Z`/`X`, has exited).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, b'Z' | b'X'))
}

/// Whether `pid` is exiting (the kernel's `PF_EXITING`, set before its memory is torn down): its
/// memory may already be unreadable although it is not a zombie yet.
pub fn exiting(pid: u32) -> bool {
    const PF_EXITING: u32 = 0x4;
    stat(pid).is_none_or(|s| s.flags & PF_EXITING != 0 || matches!(s.state, b'Z' | b'X'))
}

/// The parent of `pid`.
pub fn parent(pid: u32) -> Option<u32> {
    stat(pid).map(|s| s.ppid)
}

/// `/proc/PID/status`, for lookups by key.
pub struct Status(String);

impl Status {
    pub fn read(pid: u32) -> Option<Status> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .map(Status)
    }

    /// The value of a `Key:` line, trimmed (e.g. `Tgid`, `NSpid`, `SigPnd`).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.0.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }
}

/// One `Key:` value of `/proc/PID/status`.
pub fn status_field(pid: u32, key: &str) -> Option<String> {
    Status::read(pid)?.field(key).map(str::to_string)
}

/// The thread group (process) a thread belongs to.
pub fn tgid(tid: u32) -> Option<u32> {
    status_field(tid, "Tgid")?.parse().ok()
}

/// The pid of `pid` inside its own pid namespace (last value of `NSpid:`).
pub fn namespace_pid(pid: u32) -> Option<u32> {
    status_field(pid, "NSpid")?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Offset in the file of the first byte mapped.
    pub offset: u64,
    pub executable: bool,
    /// The mapped file (without a ` (deleted)` mark), or a pseudo-name (`[heap]`), or empty.
    pub path: String,
}

impl Mapping {
    /// The file name without its directory.
    pub fn basename(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    fn parse(line: &str) -> Option<Mapping> {
        // address perms offset dev inode [path, which may contain spaces]
        let mut rest = line;
        let mut field = || {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            let (f, r) = rest.split_at(end);
            rest = r;
            f
        };
        let (range, perms, offset) = (field(), field(), field());
        let _ = (field(), field());
        let (start, end) = range.split_once('-')?;
        let path = rest.trim();
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            offset: u64::from_str_radix(offset, 16).ok()?,
            executable: perms.contains('x'),
            path: path.strip_suffix(" (deleted)").unwrap_or(path).to_string(),
        })
    }
}

/// Every mapping of `pid`. The error is the OS's: `PermissionDenied` means no ptrace permission
/// over the process.
pub fn maps(pid: u32) -> io::Result<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(text.lines().filter_map(Mapping::parse).collect())
}

/// The full path of the first file mapped by `pid` whose basename satisfies `pred`.
pub fn mapped_file(pid: u32, pred: impl Fn(&str) -> bool) -> Option<String> {
    maps(pid)
        .ok()?
        .into_iter()
        .find(|m| !m.path.is_empty() && pred(m.basename()))
        .map(|m| m.path)
}

/// Whether `pid` maps a file whose basename satisfies `pred`.
pub fn maps_file(pid: u32, pred: impl Fn(&str) -> bool) -> bool {
    mapped_file(pid, pred).is_some()
}

/// The executable mappings of files whose basename satisfies `pred`: (start, end, basename).
pub fn executable_mappings(pid: u32, pred: impl Fn(&str) -> bool) -> Vec<(u64, u64, String)> {
    maps(pid)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.executable && !m.path.is_empty() && pred(m.basename()))
        .map(|m| (m.start, m.end, m.basename().to_string()))
        .collect()
}

/// The executable actually running in `pid`, as the kernel names it (a replaced binary ends
/// in ` (deleted)`).
pub fn exe(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The basename of the executable actually running in `pid`.
pub fn exe_name(pid: u32) -> Option<String> {
    let exe = exe(pid)?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    // A replaced binary shows as "name (deleted)".
    Some(name.trim_end_matches(" (deleted)").to_string())
}

/// The command line of `pid` (arguments decoded lossily; empty for a kernel thread or a zombie).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// One variable of the process's environment (as it was at exec).
pub fn env_var(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(name)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_string)
    })
}

/// The working directory of `pid`.
pub fn cwd(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// `path` as the process sees it: through its root directory, so inside its own mount
/// namespace (a container's files).
pub fn in_root(pid: u32, path: &str) -> std::path::PathBuf {
    std::path::Path::new(&format!("/proc/{pid}/root")).join(path.trim_start_matches('/'))
}

/// Children of the given processes, from `/proc/PID/task/TID/children` (one file per thread).
/// `None` when the kernel lacks those files (then see [`pids`] and [`parent`]).
pub fn children_of(pids: &[u32]) -> Option<Vec<u32>> {
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
                    if e.kind() == io::ErrorKind::NotFound
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

/// The thread ids of process `pid` (`/proc/PID/task`); empty when it is gone.
pub fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// What the agent uses of `/proc/PID/task/TID/schedstat` ("CPU-ns wait-ns times-run").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedstat {
    /// CPU time so far, in nanoseconds (advanced at scheduler ticks and switches).
    pub cpu_ns: u64,
    /// Times the thread was scheduled in.
    pub runs: u64,
}

impl Schedstat {
    pub fn parse(text: &[u8]) -> Option<Schedstat> {
        let text = std::str::from_utf8(text).ok()?;
        let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
        let cpu_ns = fields.next()??;
        let runs = fields.nth(1)??;
        Some(Schedstat { cpu_ns, runs })
    }
}

/// Every process id in `/proc`.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_of_self_and_of_init() {
        let own = age(std::process::id()).expect("own age");
        let init = age(1).expect("init's age");
        // Ticks are 10 ms: this process started at most a few minutes ago, and not before init.
        assert!(own < std::time::Duration::from_secs(3600), "{own:?}");
        assert!(
            init + std::time::Duration::from_millis(20) >= own,
            "{init:?} < {own:?}"
        );
    }

    #[test]
    fn stat_of_self() {
        let me = std::process::id();
        let s = stat(me).unwrap();
        assert_eq!(s.ppid, std::os::unix::process::parent_id());
        let thread = stat(unsafe { libc::gettid() } as u32).unwrap();
        assert_eq!(thread.state, b'R', "the reading thread runs");
        assert!(alive(me));
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id()));
        // The start time, counted independently: field 22.
        let text = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let after = &text[text.rfind(')').unwrap() + 1..];
        let field22: u64 = after
            .split_whitespace()
            .nth(22 - 3)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(s.start_time, field22);
        assert!(!alive(999_999_999));
    }

    #[test]
    fn stat_with_a_hostile_command_name() {
        let line = b"42 (a) b (c) S 7 42 42 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 123456 0 0\n";
        let s = Stat::parse(line).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.flags, s.cpu_ticks, s.start_time),
            (b'S', 7, 4194560, 5 + 6, 123456)
        );
        assert_eq!(stat_state(line), Some(b'S'));
        assert_eq!(stat_state(b"42 (cut)"), None);
        assert!(Stat::parse(b"42 (no close").is_none());
        assert!(Stat::parse(b"42 (cut) R").is_none());
    }

    #[test]
    fn status_fields() {
        let me = std::process::id();
        assert_eq!(tgid(me), Some(me));
        assert_eq!(
            namespace_pid(me),
            Some(me),
            "tests run in the root pid namespace"
        );
        let status = Status::read(me).unwrap();
        assert!(status.field("SigPnd").is_some());
        assert_eq!(status.field("Tgid"), Some(me.to_string().as_str()));
        assert_eq!(status.field("Tgi"), None, "whole keys only");
    }

    #[test]
    fn maps_lines() {
        let m =
            Mapping::parse("7f00-7f80 r-xp 00001000 fd:01 1234   /opt/my app/libx.so (deleted)")
                .unwrap();
        assert_eq!((m.start, m.end, m.executable), (0x7f00, 0x7f80, true));
        assert_eq!(m.offset, 0x1000);
        assert_eq!(m.path, "/opt/my app/libx.so");
        assert_eq!(m.basename(), "libx.so");
        let anon = Mapping::parse("1000-2000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!((anon.path.as_str(), anon.executable), ("", false));
    }

    #[test]
    fn own_executable_mappings() {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap().to_string();
        let maps = executable_mappings(std::process::id(), |b| b == name);
        assert!(!maps.is_empty());
        let here = own_executable_mappings as fn() as usize as u64;
        assert!(
            maps.iter().any(|&(a, b, _)| (a..b).contains(&here)),
            "{maps:x?} {here:#x}"
        );
        assert!(maps_file(std::process::id(), |b| b == name));
        assert!(!maps_file(std::process::id(), |n| n.starts_with("libpython")));
    }

    #[test]
    fn exe_cmdline_environ_cwd_of_self() {
        let me = std::process::id();
        assert!(exe_name(me).is_some());
        let argv: Vec<String> = std::env::args().collect();
        assert_eq!(cmdline(me), argv);
        assert_eq!(env_var(me, "PATH"), std::env::var("PATH").ok());
        assert_eq!(env_var(me, "PAT"), None);
        assert_eq!(
            cwd(me).unwrap(),
            std::env::current_dir().unwrap().to_string_lossy()
        );
        let exe = std::env::current_exe().unwrap();
        let seen = in_root(me, exe.to_str().unwrap());
        assert_eq!(
            seen,
            std::path::PathBuf::from(format!("/proc/{me}/root{}", exe.display()))
        );
        assert_eq!(
            std::fs::metadata(seen).unwrap().len(),
            std::fs::metadata(&exe).unwrap().len()
        );
    }

    #[test]
    fn children_of_self() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = children_of(&[std::process::id()]).expect("kernel has task/children");
        assert!(pids().contains(&child.id()));
        assert_eq!(parent(child.id()), Some(std::process::id()));
        child.kill().unwrap();
        let _ = child.wait();
        assert!(kids.contains(&child.id()), "{kids:?}");
    }
}
