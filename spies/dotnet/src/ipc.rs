//! Client of the .NET diagnostics IPC protocol (dotnet/diagnostics
//! `documentation/design-docs/ipc-protocol.md`): finding a process's socket, and the commands
//! this spy needs (CollectTracing2 / CollectTracing, StopTracing, ProcessInfo2 / ProcessInfo).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

const MAGIC: &[u8; 14] = b"DOTNET_IPC_V1\0";
const HEADER_LEN: usize = 20;
/// How long a command may take to be answered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

pub const HR_UNKNOWN_COMMAND: u32 = 0x8013_1385;

#[derive(Debug)]
pub enum IpcError {
    /// No `dotnet-diagnostic-*` socket for the process (yet).
    NoSocket(String),
    /// The socket's directory may not be read: no ptrace permission over the process.
    Permission(String),
    /// The socket exists but its owner and mode do not let us open it.
    Denied(String),
    /// The runtime answered with an error HRESULT.
    Command {
        hresult: u32,
        what: &'static str,
    },
    Io(String),
}

impl std::fmt::Display for IpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpcError::NoSocket(m)
            | IpcError::Permission(m)
            | IpcError::Denied(m)
            | IpcError::Io(m) => f.write_str(m),
            IpcError::Command { hresult, what } => {
                let name = match *hresult {
                    0x8013_1384 => " (bad encoding)",
                    HR_UNKNOWN_COMMAND => " (unknown command)",
                    0x8013_1386 => " (unknown magic)",
                    _ => "",
                };
                write!(
                    f,
                    "the runtime refused {what}: HRESULT {hresult:#010x}{name}"
                )
            }
        }
    }
}

fn io(what: &str, e: std::io::Error) -> IpcError {
    IpcError::Io(format!("{what}: {e}"))
}

/// Where the diagnostics socket of `pid` is, seen from here: the runtime creates
/// `$TMPDIR/dotnet-diagnostic-{pid}-{starttime}-socket` with its own TMPDIR, its own pid (the
/// one in its pid namespace) and its own file system (reached through `/proc/PID/root`).
pub fn find_socket(pid: u32) -> Result<PathBuf, IpcError> {
    let nspid = spy::procfs::namespace_pid(pid).unwrap_or(pid);
    let tmpdir = spy::procfs::env_var(pid, "TMPDIR")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "/tmp".into());
    let dir = spy::procfs::in_root(pid, &tmpdir);
    let prefix = format!("dotnet-diagnostic-{nspid}-");
    let entries = std::fs::read_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            IpcError::Permission(format!("cannot list {}: {e}", dir.display()))
        }
        _ => IpcError::NoSocket(format!("cannot list {}: {e}", dir.display())),
    })?;
    let start_time = spy::procfs::stat(pid).map(|s| s.start_time.to_string());
    let mut found: Vec<(bool, std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(key) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("-socket"))
        else {
            continue;
        };
        let exact = start_time.as_deref() == Some(key);
        let mtime = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        found.push((exact, mtime, entry.path()));
    }
    // The one whose key is this process's start time; else (a pid reused in a container) the newest.
    found.sort();
    let socket = found.pop().map(|(_, _, p)| p).ok_or_else(|| {
        IpcError::NoSocket(format!(
            "no diagnostics socket {}{prefix}*-socket",
            dir.display().to_string() + "/"
        ))
    })?;
    check_access(&socket)?;
    Ok(socket)
}

/// Connecting to a Unix socket needs write permission on it, and the runtime creates it with
/// mode 0600: only its own user (or root) may connect. Said up front, with the owner, instead of
/// as a failed connect later.
fn check_access(socket: &std::path::Path) -> Result<(), IpcError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = std::ffi::CString::new(socket.as_os_str().as_bytes()) else {
        return Ok(());
    };
    // SAFETY: a valid C string; faccessat only reads it.
    let ok = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::R_OK | libc::W_OK,
            libc::AT_EACCESS,
        )
    } == 0;
    if ok || std::io::Error::last_os_error().raw_os_error() != Some(libc::EACCES) {
        return Ok(());
    }
    let (owner, mode) = std::fs::metadata(socket)
        .map(|m| (m.uid(), m.mode() & 0o777))
        .unwrap_or((u32::MAX, 0));
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    Err(IpcError::Denied(format!(
        "its .NET diagnostics socket {} belongs to uid {owner} with mode {mode:04o}, and pyroscope runs as uid {me}: \
         run pyroscope as uid {owner} (the process's user) or as root",
        socket.display()
    )))
}

/// A growing IPC payload.
#[derive(Default)]
pub struct Payload(pub Vec<u8>);

impl Payload {
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(mut self, v: bool) -> Self {
        self.0.push(v as u8);
        self
    }
    /// u32 length in UTF-16 units including the NUL, then the units; an empty string is `u32 0`
    /// (never the 2-byte form, which mis-frames what follows).
    pub fn string(mut self, s: &str) -> Self {
        if s.is_empty() {
            return self.u32(0);
        }
        let units: Vec<u16> = s.encode_utf16().chain(std::iter::once(0)).collect();
        self.0
            .extend_from_slice(&(units.len() as u32).to_le_bytes());
        for u in units {
            self.0.extend_from_slice(&u.to_le_bytes());
        }
        self
    }
}

/// An EventPipe provider to enable.
#[derive(Debug, Clone, Copy)]
pub struct Provider<'a> {
    pub name: &'a str,
    pub keywords: u64,
    pub level: u32,
}

fn providers(mut p: Payload, list: &[Provider<'_>]) -> Payload {
    p = p.u32(list.len() as u32);
    for pr in list {
        p = p.u64(pr.keywords).u32(pr.level).string(pr.name).string("");
    }
    p
}

/// Sends one command on a new connection; returns the connection (for a stream that follows)
/// and the reply's payload.
pub fn command(
    socket: &std::path::Path,
    set: u8,
    id: u8,
    payload: &[u8],
    what: &'static str,
) -> Result<(UnixStream, Vec<u8>), IpcError> {
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            IpcError::Denied(format!("cannot connect to {}: {e}", socket.display()))
        }
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            IpcError::NoSocket(format!("cannot connect to {}: {e}", socket.display()))
        }
        _ => io("connecting to the diagnostics socket", e),
    })?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(|e| io("socket", e))?;
    s.set_write_timeout(Some(REPLY_TIMEOUT))
        .map_err(|e| io("socket", e))?;
    let size = u16::try_from(HEADER_LEN + payload.len())
        .map_err(|_| IpcError::Io(format!("{what}: request too large")))?;
    let mut msg = Vec::with_capacity(size as usize);
    msg.extend_from_slice(MAGIC);
    msg.extend_from_slice(&size.to_le_bytes());
    msg.extend_from_slice(&[set, id, 0, 0]);
    msg.extend_from_slice(payload);
    s.write_all(&msg).map_err(|e| io(what, e))?;
    let mut header = [0u8; HEADER_LEN];
    s.read_exact(&mut header)
        .map_err(|e| io(&format!("reading the reply to {what}"), e))?;
    if &header[..14] != MAGIC {
        return Err(IpcError::Io(format!(
            "{what}: the reply is not a diagnostics IPC message"
        )));
    }
    let size = u16::from_le_bytes([header[14], header[15]]) as usize;
    let mut body = vec![0u8; size.saturating_sub(HEADER_LEN)];
    s.read_exact(&mut body)
        .map_err(|e| io(&format!("reading the reply to {what}"), e))?;
    match (header[16], header[17]) {
        (0xFF, 0x00) => Ok((s, body)),
        (0xFF, 0xFF) => {
            let hresult = body
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
                .unwrap_or(0);
            Err(IpcError::Command { hresult, what })
        }
        (a, b) => Err(IpcError::Io(format!(
            "{what}: unexpected reply {a:#04x} {b:#04x}"
        ))),
    }
}

/// Starts an EventPipe session streaming nettrace on the returned connection. CollectTracing2
/// (rundown on or off) where the runtime has it, else CollectTracing (rundown always on).
pub fn collect_tracing(
    socket: &std::path::Path,
    buffer_mb: u32,
    rundown: bool,
    list: &[Provider<'_>],
) -> Result<(UnixStream, u64), IpcError> {
    let v2 = providers(Payload::default().u32(buffer_mb).u32(1).bool(rundown), list);
    let reply = match command(socket, 0x02, 0x03, &v2.0, "CollectTracing2") {
        Err(IpcError::Command {
            hresult: HR_UNKNOWN_COMMAND,
            ..
        }) => {
            let v1 = providers(Payload::default().u32(buffer_mb).u32(1), list);
            command(socket, 0x02, 0x02, &v1.0, "CollectTracing")
        }
        r => r,
    };
    let (s, body) = reply?;
    let id = body
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
        .ok_or_else(|| IpcError::Io("CollectTracing: short reply".into()))?;
    // The stream that follows is read without a deadline (the reader blocks until data).
    s.set_read_timeout(None).map_err(|e| io("socket", e))?;
    Ok((s, id))
}

/// Ends a session (on a new connection); the runtime then sends the rundown, if requested, and
/// closes the stream.
pub fn stop_tracing(socket: &std::path::Path, session: u64) -> Result<(), IpcError> {
    command(
        socket,
        0x02,
        0x01,
        &Payload::default().u64(session).0,
        "StopTracing",
    )
    .map(|_| ())
}

/// What ProcessInfo2 (.NET 6+) or ProcessInfo (.NET 5) says; None on 3.1, which has neither.
#[derive(Debug, Default, Clone)]
pub struct ProcessInfo {
    pub command_line: String,
    pub runtime_version: Option<String>,
}

pub fn process_info(socket: &std::path::Path) -> Option<ProcessInfo> {
    let (body, v2) = match command(socket, 0x04, 0x04, &[], "ProcessInfo2") {
        Ok((_, b)) => (b, true),
        Err(_) => (
            command(socket, 0x04, 0x00, &[], "ProcessInfo").ok()?.1,
            false,
        ),
    };
    parse_process_info(&body, v2)
}

/// ProcessInfo: `u64 pid, GUID cookie, string command line, string OS, string arch`;
/// ProcessInfo2 adds `string managed entry point assembly, string CLR product version`.
fn parse_process_info(body: &[u8], v2: bool) -> Option<ProcessInfo> {
    let mut c = crate::nettrace::Cursor::new(body);
    let _pid = c.u64().ok()?;
    c.take(16).ok()?;
    let mut string = || -> Option<String> {
        let n = c.u32().ok()? as usize;
        let bytes = c.take(n.checked_mul(2)?).ok()?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Some(String::from_utf16_lossy(&units))
    };
    let command_line = string()?;
    let _os = string();
    let _arch = string();
    let runtime_version = if v2 {
        let _entry = string();
        string()
    } else {
        None
    };
    Some(ProcessInfo {
        command_line,
        runtime_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_info_replies_parse() {
        let common = Payload::default()
            .u64(4242)
            .u64(1)
            .u64(2)
            .string("dotnet app.dll --port 80")
            .string("Linux")
            .string("x64");
        let v1 = parse_process_info(&common.0, false).unwrap();
        assert_eq!(
            (v1.command_line.as_str(), v1.runtime_version),
            ("dotnet app.dll --port 80", None)
        );
        let v2 = common.string("app").string("8.0.1");
        let v2 = parse_process_info(&v2.0, true).unwrap();
        assert_eq!(v2.runtime_version.as_deref(), Some("8.0.1"));
        // Cut anywhere: no answer, no panic.
        let full = Payload::default()
            .u64(1)
            .u64(1)
            .u64(2)
            .string("x")
            .string("Linux")
            .string("x64")
            .string("a")
            .string("8.0.1")
            .0;
        for n in 0..full.len() {
            let _ = parse_process_info(&full[..n], true);
        }
        assert!(parse_process_info(&full[..20], true).is_none());
    }

    #[test]
    fn strings_are_counted_utf16_with_nul() {
        let p = Payload::default().string("ab").string("");
        assert_eq!(p.0, [3, 0, 0, 0, b'a', 0, b'b', 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn collect_tracing2_payload() {
        let p = providers(
            Payload::default().u32(256).u32(1).bool(false),
            &[Provider {
                name: "P",
                keywords: 0x18,
                level: 5,
            }],
        );
        let mut want = vec![0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0];
        want.extend_from_slice(&0x18u64.to_le_bytes());
        want.extend_from_slice(&5u32.to_le_bytes());
        want.extend_from_slice(&[2, 0, 0, 0, b'P', 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(p.0, want);
    }
}
