//! The EventPipe sessions of one .NET process, read on their own threads: the long session
//! (method events, and the sampler's stacks when it is always on), the rundown at attach, and the
//! stacks handed to the spy.

use crate::collector::{self, Collector, Weighting};
use crate::ipc::{self, IpcError, Provider};
use crate::nettrace::{self, End, Handler, Reader};
use crate::sampling::{run_bursts, Sampling};
use crate::{events, is_managed_image};
use spy::{AttachError, Stack};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// EventPipe buffer in the target (MB): what the runtime may hold while the agent is behind.
const BUFFER_MB: u32 = 64;

/// What the reader thread hands over.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) ready: Vec<Stack>,
    /// The session, once the runtime accepted it: its id and a handle on its stream.
    pub(crate) session: Option<(u64, std::os::unix::net::UnixStream)>,
    /// Set when the reader ended: how.
    pub(crate) ended: Option<Result<End, String>>,
    pub(crate) stats: collector::CollectorStats,
    pub(crate) symbols: usize,
    pub(crate) names: usize,
    pub(crate) threads: usize,
    /// The sampling burst under way, if any.
    pub(crate) burst_session: Option<u64>,
    pub(crate) bursts: u64,
    /// Time the runtime took to answer the start and the stop of the bursts, in all.
    pub(crate) burst_start: std::time::Duration,
    pub(crate) burst_stop: std::time::Duration,
    /// The spy is being dropped: no more bursts.
    pub(crate) closing: bool,
}

/// The long-lived EventPipe session of one process, started and read by its own thread. No IPC
/// happens on the agent's main thread: under `exec` that thread is the ptrace tracer, and the
/// runtime, to answer, may need to signal its threads, which stop until the tracer resumes them.
pub(crate) struct SessionReader {
    pub(crate) socket: PathBuf,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

impl SessionReader {
    pub(crate) fn start(
        pid: u32,
        socket: PathBuf,
        period_ns: i64,
        wall_clock: bool,
        sampling: Sampling,
    ) -> Result<SessionReader, AttachError> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (thread_shared, thread_socket) = (shared.clone(), socket.clone());
        std::thread::Builder::new()
            .name(format!("dotnet-{pid}"))
            .spawn(move || {
                let result = read_session(
                    pid,
                    &thread_socket,
                    period_ns,
                    wall_clock,
                    sampling,
                    &thread_shared,
                );
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
    sampling: Sampling,
    shared: &Arc<Mutex<Shared>>,
) -> Result<End, String> {
    // The long session first: methods compiled from now on arrive in it (MethodLoadVerbose).
    let providers: &[Provider] = match sampling {
        Sampling::Always => &events::SESSION_PROVIDERS,
        Sampling::Bursts { .. } => &events::METHOD_PROVIDERS,
    };
    let (stream, session) =
        ipc::collect_tracing(socket, BUFFER_MB, false, providers).map_err(|e| match e {
            IpcError::Permission(m) | IpcError::Denied(m) => {
                format!("{m}: run pyroscope as the user of process {pid}, or as root")
            }
            e => format!("starting an EventPipe session: {e}"),
        })?;
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
    let publisher = Arc::new(Mutex::new(Publisher {
        collector,
        shared: shared.clone(),
    }));
    if let Sampling::Bursts { length, share } = sampling {
        let (socket, publisher, shared) = (socket.to_path_buf(), publisher.clone(), shared.clone());
        std::thread::Builder::new()
            .name(format!("dotnet-{pid}-bursts"))
            .spawn(move || run_bursts(pid, &socket, length, share, &publisher, &shared))
            .map_err(|e| format!("cannot start the sampling thread: {e}"))?;
    }
    let result = Reader::new(std::io::BufReader::with_capacity(256 << 10, read_half))
        .run(&mut Locked(&publisher));
    let mut publisher = publisher.lock().expect("not poisoned");
    publisher.collector.resolve_pending(true);
    publisher.publish();
    result.map_err(|e| e.to_string())
}

/// Feeds one stream's events to the publisher both streams share.
pub(crate) struct Locked<'a>(pub(crate) &'a Mutex<Publisher>);

impl Handler for Locked<'_> {
    fn header(&mut self, h: &nettrace::TraceHeader) {
        self.0.lock().expect("not poisoned").header(h);
    }
    fn event(&mut self, e: &nettrace::Event<'_>) {
        self.0.lock().expect("not poisoned").event(e);
    }
    fn sequence_point(&mut self) {
        self.0.lock().expect("not poisoned").sequence_point();
    }
    fn block_done(&mut self) {
        self.0.lock().expect("not poisoned").block_done();
    }
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
pub(crate) struct Publisher {
    pub(crate) collector: Collector,
    pub(crate) shared: Arc<Mutex<Shared>>,
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

impl Drop for SessionReader {
    fn drop(&mut self) {
        let mut s = self.shared.lock().expect("not poisoned");
        log::debug!(
            "dotnet session: {} samples ({} managed, {} external), {} stacks, {} of {} frames unresolved, {} method events, \
             {} ReadyToRun entry points, {} sampling bursts (start answered in {:.2} ms, stop in {:.2} ms, on average); \
             held at the end: {} code ranges, {} names, {} threads",
            s.stats.samples,
            s.stats.managed,
            s.stats.external,
            s.stats.stacks_emitted,
            s.stats.unresolved_frames,
            s.stats.frames,
            s.stats.methods_loaded,
            s.stats.entry_points,
            s.bursts,
            s.burst_start.as_secs_f64() * 1e3 / s.bursts.max(1) as f64,
            s.burst_stop.as_secs_f64() * 1e3 / s.bursts.max(1) as f64,
            s.symbols,
            s.names,
            s.threads
        );
        // Stop the runtime's sampling, then unblock the reader thread; off this thread, for the
        // reason given on SessionReader.
        s.closing = true;
        let burst = s.burst_session.take();
        if let Some((session, stream)) = s.session.take() {
            let socket = self.socket.clone();
            let _ = std::thread::Builder::new()
                .name("dotnet-stop".into())
                .spawn(move || {
                    for session in burst.into_iter().chain([session]) {
                        if let Err(e) = ipc::stop_tracing(&socket, session) {
                            log::debug!("StopTracing: {e}");
                        }
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                });
        }
    }
}
