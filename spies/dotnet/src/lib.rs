//! .NET (CoreCLR 3.1 and later) spy: the runtime samples itself through EventPipe
//! (`Microsoft-DotNETCore-SampleProfiler`); this crate asks for that stream over the
//! diagnostics IPC socket, reads it ([`nettrace`]) and names the frames from the runtime's own
//! method events ([`collector`], [`symbols`]).

pub mod collector;
pub mod events;
pub mod ipc;
pub mod nettrace;
pub mod symbols;

use collector::{Collector, Weighting};
use ipc::{IpcError, Provider};
use nettrace::{End, Handler, Reader};
use spy::{AttachError, AttachOptions, Pauser, Runtime, SampleError, Spy, Stack};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// EventPipe buffer in the target (MB): what the runtime may hold while the agent is behind.
const BUFFER_MB: u32 = 64;

pub struct DotNet;

/// Whether a library basename is CoreCLR's.
pub fn is_coreclr(name: &str) -> bool {
    name == "libcoreclr.so"
}

/// A managed assembly file (its ReadyToRun code is mapped from it).
fn is_managed_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".dll") || lower.ends_with(".exe")
}

/// The runtime version, from the directory libcoreclr.so is mapped from
/// (`…/shared/Microsoft.NETCore.App/3.1.23/libcoreclr.so`).
pub fn runtime_version(coreclr_path: &str) -> Option<String> {
    let dir = std::path::Path::new(coreclr_path)
        .parent()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    dir.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit())
        .then_some(dir)
}

fn disabled_by_environment(pid: u32) -> Option<String> {
    ["COMPlus_EnableDiagnostics", "DOTNET_EnableDiagnostics"]
        .into_iter()
        .find(|v| spy::procfs::env_var(pid, v).as_deref() == Some("0"))
        .map(|v| format!("{v}=0"))
}

impl Runtime for DotNet {
    fn spy_name(&self) -> &'static str {
        "dotnetspy"
    }

    fn runtime_name(&self) -> &'static str {
        ".NET"
    }

    fn detect(&self, pid: u32) -> bool {
        spy::procfs::maps_file(pid, is_coreclr)
    }

    fn release_from_tracer(&self) -> bool {
        true
    }

    /// `shop` for `dotnet shop.dll` (also `dotnet exec shop.dll`, `dotnet --roll-forward Major
    /// shop.dll`): the managed assembly being run.
    fn app_name(&self, argv: &[String]) -> Option<String> {
        spy::launcher_args(argv, |exe| exe == "dotnet")?
            .iter()
            .find(|a| !a.starts_with('-') && is_managed_image(a))
            .map(|a| spy::program_name(a))
    }

    fn attach(&self, pid: u32, options: &AttachOptions) -> Result<Box<dyn Spy>, AttachError> {
        if !spy::procfs::alive(pid) {
            return Err(AttachError::Gone);
        }
        let Some(coreclr) = spy::procfs::mapped_file(pid, is_coreclr) else {
            let exe = spy::procfs::exe_name(pid).unwrap_or_default();
            return Err(AttachError::WrongRuntime(format!(
                "{exe} does not map libcoreclr.so"
            )));
        };
        let version = runtime_version(&coreclr);
        if let Some(major) = version
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        {
            if major < 3 {
                return Err(AttachError::Unsupported(format!(
                    ".NET Core {} has no diagnostics server: .NET Core 3.0 or later is needed",
                    version.as_deref().unwrap_or("?")
                )));
            }
        }
        let socket = match ipc::find_socket(pid) {
            Ok(s) => s,
            Err(IpcError::Permission(m)) => return Err(AttachError::Permission(m)),
            Err(IpcError::Denied(m)) => return Err(AttachError::Denied(m)),
            Err(e) => {
                if let Some(setting) = disabled_by_environment(pid) {
                    return Err(AttachError::Unsupported(format!(
                        "the .NET diagnostics server is disabled in this process ({setting} in its environment)"
                    )));
                }
                // The runtime creates its socket early in start-up: retried until then.
                return Err(AttachError::NotReady(format!("{e}")));
            }
        };
        let period_ns = spy::period_ns(options.sample_rate) as i64;
        let reader = SessionReader::start(pid, socket, period_ns, options.wall_clock)?;
        Ok(Box::new(DotNetProcessSpy {
            pid,
            version,
            reader,
            ended_seen: None,
        }))
    }
}

/// What the reader thread hands over.
#[derive(Default)]
struct Shared {
    ready: Vec<Stack>,
    /// The session, once the runtime accepted it: its id and a handle on its stream.
    session: Option<(u64, std::os::unix::net::UnixStream)>,
    /// Set when the reader ended: how.
    ended: Option<Result<End, String>>,
    stats: collector::CollectorStats,
    symbols: usize,
    names: usize,
    threads: usize,
}

/// The long-lived EventPipe session of one process, started and read by its own thread. No IPC
/// happens on the agent's main thread: under `exec` that thread is the ptrace tracer, and the
/// runtime, to answer, may need to signal its threads, which stop until the tracer resumes them.
struct SessionReader {
    socket: PathBuf,
    shared: Arc<Mutex<Shared>>,
}

impl SessionReader {
    fn start(
        pid: u32,
        socket: PathBuf,
        period_ns: i64,
        wall_clock: bool,
    ) -> Result<SessionReader, AttachError> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (thread_shared, thread_socket) = (shared.clone(), socket.clone());
        std::thread::Builder::new()
            .name(format!("dotnet-{pid}"))
            .spawn(move || {
                let result =
                    read_session(pid, &thread_socket, period_ns, wall_clock, &thread_shared);
                thread_shared.lock().expect("not poisoned").ended = Some(result);
            })
            .map_err(|e| AttachError::Other(format!("cannot start the reader thread: {e}")))?;
        Ok(SessionReader { socket, shared })
    }
}

fn read_session(
    pid: u32,
    socket: &std::path::Path,
    period_ns: i64,
    wall_clock: bool,
    shared: &Arc<Mutex<Shared>>,
) -> Result<End, String> {
    // The long session first: methods compiled from now on arrive in it (MethodLoadVerbose).
    let (stream, session) =
        ipc::collect_tracing(socket, BUFFER_MB, false, &events::SESSION_PROVIDERS).map_err(
            |e| match e {
                IpcError::Permission(m) | IpcError::Denied(m) => {
                    format!("{m}: run pyroscope as the user of process {pid}, or as root")
                }
                e => format!("starting an EventPipe session: {e}"),
            },
        )?;
    let read_half = stream.try_clone().map_err(|e| format!("socket: {e}"))?;
    // .NET 5+ describe themselves; 3.1 answers "unknown command" and /proc said it all.
    if let Some(info) = ipc::process_info(socket) {
        log::debug!(
            "process {pid}: {:?}, runtime {}",
            info.command_line,
            info.runtime_version.as_deref().unwrap_or("?")
        );
    }
    shared.lock().expect("not poisoned").session = Some((session, stream));
    let mut collector = Collector::new(Weighting::Period { period_ns }, wall_clock).with_images(
        Box::new(move || spy::procfs::executable_mappings(pid, is_managed_image)),
    );
    // Then one rundown: the methods that existed before the session started.
    if let Err(e) = rundown(socket, &mut collector) {
        log::warn!("process {pid}: the list of already compiled methods could not be read ({e}); their frames show as [unknown]");
    }
    log::debug!(
        "process {pid}: {} methods known after rundown",
        collector.symbols.len()
    );
    let mut publisher = Publisher {
        collector,
        shared: shared.clone(),
    };
    let result =
        Reader::new(std::io::BufReader::with_capacity(256 << 10, read_half)).run(&mut publisher);
    publisher.collector.resolve_pending(true);
    publisher.publish();
    result.map_err(|e| e.to_string())
}

/// A short session with rundown only: start, stop, read the method and module events to the end.
fn rundown(socket: &std::path::Path, collector: &mut Collector) -> Result<(), String> {
    // A provider that sends nothing (level 0 events only); the rundown comes with the stop.
    let quiet = [Provider {
        name: events::RUNTIME,
        keywords: 0,
        level: 1,
    }];
    let (stream, session) =
        ipc::collect_tracing(socket, 16, true, &quiet).map_err(|e| e.to_string())?;
    ipc::stop_tracing(socket, session).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    Reader::new(std::io::BufReader::new(stream))
        .run(collector)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Moves finished stacks to the spy after each block.
struct Publisher {
    collector: Collector,
    shared: Arc<Mutex<Shared>>,
}

impl Publisher {
    fn publish(&mut self) {
        let mut s = self.shared.lock().expect("not poisoned");
        s.ready.append(&mut self.collector.ready);
        s.stats = self.collector.stats.clone();
        s.symbols = self.collector.symbols.len();
        s.names = self.collector.symbols.names();
        s.threads = self.collector.threads_tracked();
    }
}

impl Handler for Publisher {
    fn header(&mut self, h: &nettrace::TraceHeader) {
        self.collector.header(h);
    }
    fn event(&mut self, e: &nettrace::Event<'_>) {
        self.collector.event(e);
    }
    fn sequence_point(&mut self) {
        self.collector.sequence_point();
    }
    fn block_done(&mut self) {
        self.collector.block_done();
        if !self.collector.ready.is_empty() {
            self.publish();
        }
    }
}

struct DotNetProcessSpy {
    pid: u32,
    version: Option<String>,
    reader: SessionReader,
    /// When the end of the stream was first seen.
    ended_seen: Option<std::time::Instant>,
}

impl Spy for DotNetProcessSpy {
    fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!(".NET {v} (CoreCLR)"),
            None => ".NET (CoreCLR)".into(),
        }
    }

    fn sample(
        &mut self,
        _pauser: Option<&mut dyn Pauser>,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError> {
        let mut s = self.reader.shared.lock().expect("not poisoned");
        out.append(&mut s.ready);
        let Some(ended) = &s.ended else { return Ok(()) };
        if !spy::procfs::alive(self.pid) {
            return Err(SampleError::Gone);
        }
        // A runtime that shuts down ends its sessions first and exits a moment later: give it
        // that moment before calling the end a failure.
        let since = *self.ended_seen.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < std::time::Duration::from_secs(3) {
            return Ok(());
        }
        Err(SampleError::Fatal(match ended {
            Ok(_) => "the runtime ended the EventPipe session while the process goes on".into(),
            Err(e) => e.clone(),
        }))
    }
}

impl Drop for SessionReader {
    fn drop(&mut self) {
        let mut s = self.shared.lock().expect("not poisoned");
        log::debug!(
            "dotnet session: {} samples ({} managed, {} external), {} stacks, {} of {} frames unresolved, {} method events, \
             {} ReadyToRun entry points; held at the end: {} code ranges, {} names, {} threads",
            s.stats.samples,
            s.stats.managed,
            s.stats.external,
            s.stats.stacks_emitted,
            s.stats.unresolved_frames,
            s.stats.frames,
            s.stats.methods_loaded,
            s.stats.entry_points,
            s.symbols,
            s.names,
            s.threads
        );
        // Stop the runtime's sampling, then unblock the reader thread; off this thread, for the
        // reason given on SessionReader.
        if let Some((session, stream)) = s.session.take() {
            let socket = self.socket.clone();
            let _ = std::thread::Builder::new()
                .name("dotnet-stop".into())
                .spawn(move || {
                    if let Err(e) = ipc::stop_tracing(&socket, session) {
                        log::debug!("StopTracing: {e}");
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                });
        }
    }
}
