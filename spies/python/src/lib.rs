//! CPython spy: py-spy finds the interpreter, our [`reader`] reads the stacks.
//!
//! py-spy's `PythonSpy` finds the interpreter and its version, and its per-version layouts are
//! what [`reader`] reads with (py-spy's own frame reader stays as fallback, and as the reference
//! of the differential test). This crate adds what an always-on agent needs on top of it:
//! * the agent's scheduler drives it (no py-spy `Sampler` thread);
//! * pausing goes through the agent's [`Pauser`] (`LockingStrategy::AlreadyLocked`), because under
//!   `exec` the agent is already the target's ptrace tracer;
//! * idle threads are judged from thread states read **before** the pause, and, on CPython < 3.11
//!   where the thread state holds no OS thread id, from the pthread → tid map
//!   read out of the target's memory ([`spy::tids::TidMap`]).

pub mod fixture;
pub mod memory;
mod names;
pub mod reader;
mod release;

/// py-spy itself, for tests and tools that compare with its reader.
pub use py_spy;

use py_spy::config::{LineNo, LockingStrategy};
use py_spy::{Config, PythonSpy};
use spy::{
    AttachError, AttachOptions, Frame, OnCpuSpy, Runtime, SampleError, Spy, Stack, StackReader,
    ThreadActivity,
};

/// The Python runtime: detection and attaching.
pub struct Python;

/// Whether an executable basename names a CPython interpreter (`python`, `python3`,
/// `python3.11`, `python2.7`, `python3.13d`, the free-threaded `python3.14t`, ...).
pub fn is_python_exe(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("python") else {
        return false;
    };
    let rest = rest.trim_end_matches(['d', 'm', 'u', 't']);
    rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The version of a free-threaded build (`--disable-gil`) from an executable or libpython
/// basename: `python3.14t`, `python3.13td`, `libpython3.14t.so.1.0` give `3.14t`.
pub fn free_threaded_name(name: &str) -> Option<String> {
    let rest = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))?;
    let digits = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (version, flags) = rest.split_at(digits);
    let flags = flags.split(".so").next().unwrap_or(flags);
    (!version.is_empty() && flags.contains('t') && flags.chars().all(|c| "tdmu".contains(c)))
        .then(|| format!("{version}t"))
}

/// Whether process `pid` runs a free-threaded CPython (see [`free_threaded_build`]).
pub fn is_free_threaded(pid: u32) -> bool {
    free_threaded_build(pid).is_some()
}

/// Whether process `pid` runs a free-threaded CPython: its executable or a mapped libpython
/// says so (the build's names carry the `t` ABI flag).
fn free_threaded_build(pid: u32) -> Option<String> {
    if let Some(v) = spy::procfs::exe_name(pid).and_then(|n| free_threaded_name(&n)) {
        return Some(v);
    }
    let maps = spy::procfs::maps(pid).ok()?;
    maps.iter()
        .filter_map(|m| m.path.rsplit('/').next())
        .filter(|n| is_libpython(n))
        .find_map(free_threaded_name)
}

/// Whether a library basename is libpython (`libpython3.11.so.1.0`, `libpython2.7.so`).
pub fn is_libpython(name: &str) -> bool {
    name.starts_with("libpython") && name.contains(".so")
}

impl Runtime for Python {
    fn spy_name(&self) -> &'static str {
        "pyspy"
    }

    fn runtime_name(&self) -> &'static str {
        "Python"
    }

    fn detect(&self, pid: u32) -> bool {
        spy::procfs::exe_name(pid).is_some_and(|n| is_python_exe(&n))
            || spy::procfs::maps_file(pid, is_libpython)
    }

    fn can_pause(&self) -> bool {
        true
    }

    /// `app` for `python app.py`, the module for `python -m module`, none for `python -c code`.
    fn app_name(&self, argv: &[String]) -> Option<String> {
        spy::launched_program(argv, is_python_exe, "-c", Some("-m"))
    }

    fn attach(&self, pid: u32, options: &AttachOptions) -> Result<Box<dyn Spy>, AttachError> {
        if let Some(build) = free_threaded_build(pid) {
            return attach_free_threaded(pid, &build, options);
        }
        if let Some((frames, layout)) = inherited(pid, options.gil_only) {
            log::debug!("process {pid}: same interpreter layout as its parent (forked)");
            return Ok(python_spy(pid, &layout, Engine::Own(frames), options));
        }
        let config = Config {
            blocking: LockingStrategy::NonBlocking,
            lineno: LineNo::LastInstruction,
            // Thread names cost a dict walk every second; stacks don't carry them.
            collect_thread_names: false,
            ..Config::default()
        };
        let mut inner =
            PythonSpy::new(pid as py_spy::Pid, &config).map_err(|e| classify(pid, &e))?;
        // The interpreter may exist before its first thread state does: only call the spy ready
        // once a read succeeds.
        read_traces(&mut inner, false, false).map_err(|e| classify(pid, &e))?;
        let layout = Layout {
            key: maps_key(pid),
            major: inner.version.major,
            minor: inner.version.minor,
            version: inner.version.to_string(),
            interpreter_address: inner.addresses.interpreter_address,
            threadstate_address: inner.addresses.threadstate_address,
            free_threaded: false,
            names: Some(names::Where {
                layout: inner.addresses.clone(),
                version: inner.version.clone(),
            }),
        };
        let engine = match own_reader(pid, &layout, options.gil_only) {
            Ok(frames) => {
                remember(pid, layout.clone());
                Engine::Own(frames)
            }
            Err(why) => {
                log::warn!("process {pid}: reading stacks with py-spy's reader ({why})");
                Engine::PySpy {
                    inner: Box::new(inner),
                    fast: GilFastPath::default(),
                    gil_only: options.gil_only,
                }
            }
        };
        Ok(python_spy(pid, &layout, engine, options))
    }
}

/// Free-threaded CPython (`--disable-gil`): read with our reader only, over the build's own
/// layout (py-spy's reader has none: its reads would be garbage), and found without py-spy,
/// whose search does not know these builds ([`locate_free_threaded`]).
fn attach_free_threaded(
    pid: u32,
    build: &str,
    options: &AttachOptions,
) -> Result<Box<dyn Spy>, AttachError> {
    const KNOWN_FREE_THREADED: &[&str] = &["3.13t"];
    if !KNOWN_FREE_THREADED.contains(&build) {
        return Err(AttachError::Unsupported(format!(
            "free-threaded CPython {build} (built with --disable-gil) is not supported yet: its object layout is not known to this reader (free-threaded builds read: {})",
            KNOWN_FREE_THREADED.join(", ")
        )));
    }
    if std::env::var(READER_ENV).as_deref() == Ok("pyspy") {
        return Err(AttachError::Unsupported(format!(
            "free-threaded CPython {build} can only be read with our reader, and {READER_ENV}=pyspy asks for py-spy's"
        )));
    }
    if let Some((frames, layout)) = inherited(pid, false) {
        return Ok(python_spy(pid, &layout, Engine::Own(frames), options));
    }
    let (major, minor, version, interpreter_address) =
        locate_free_threaded(pid).map_err(AttachError::NotReady)?;
    let layout = Layout {
        key: maps_key(pid),
        major,
        minor,
        version: format!("{version}t"),
        interpreter_address,
        threadstate_address: 0,
        free_threaded: true,
        // py-spy's walk of `threading._active` does not know this build's object header.
        names: None,
    };
    if options.gil_only {
        log::warn!("process {pid}: --gil-only has no meaning for free-threaded CPython (it has no GIL): every running thread counts");
    }
    // The interpreter may exist before its first thread state does: not ready until a read
    // works.
    let frames = own_reader(pid, &layout, false).map_err(AttachError::NotReady)?;
    remember(pid, layout.clone());
    Ok(python_spy(pid, &layout, Engine::Own(frames), options))
}

/// Version and interpreter address of a free-threaded 3.13+ CPython, from its own symbols:
/// `Py_Version` (the packed version) and `_PyRuntime`, which starts with the debug offsets
/// CPython keeps for out-of-process readers (`_Py_DebugOffsets`, cookie `xdebugpy`).
pub fn locate_free_threaded(pid: u32) -> Result<(u64, u64, String, usize), String> {
    use remoteprocess::ProcessMemory;
    let process = remoteprocess::Process::new(pid as remoteprocess::Pid)
        .map_err(|e| format!("process {pid}: {e}"))?;
    let at = |symbol| spy::elf::symbol_address(pid, is_libpython, symbol);
    let packed: u32 = process
        .copy_struct(at("Py_Version")? as usize)
        .map_err(|e| format!("reading Py_Version: {e}"))?;
    let (major, minor, patch) = (
        u64::from(packed >> 24),
        u64::from((packed >> 16) & 0xff),
        u64::from((packed >> 8) & 0xff),
    );
    let runtime = at("_PyRuntime")? as usize;
    let interpreters_head = match (major, minor) {
        (3, 13) => {
            let offsets: py_spy::python_bindings::v3_13_0::_Py_DebugOffsets = process
                .copy_struct(runtime)
                .map_err(|e| format!("reading _PyRuntime: {e}"))?;
            if offsets.cookie.map(|c| c as u8) != *b"xdebugpy" {
                return Err("_PyRuntime does not start with CPython's debug offsets".into());
            }
            offsets.runtime_state.interpreters_head as usize
        }
        _ => {
            return Err(format!(
                "free-threaded CPython {major}.{minor}t is not known to this reader"
            ))
        }
    };
    let interpreter: usize = process
        .copy_struct(runtime + interpreters_head)
        .map_err(|e| format!("reading the interpreter list: {e}"))?;
    if interpreter == 0 {
        return Err("no interpreter yet".into());
    }
    Ok((
        major,
        minor,
        format!("{major}.{minor}.{patch}"),
        interpreter,
    ))
}

fn python_spy(pid: u32, layout: &Layout, engine: Engine, options: &AttachOptions) -> Box<dyn Spy> {
    let version = layout.version.clone();
    let reader = PythonReader {
        pid,
        unverified: release::unverified(pid, &version),
        version,
        names: if options.thread_names {
            layout
                .names
                .clone()
                .and_then(|at| names::ThreadNames::new(pid, at))
        } else {
            None
        },
        engine,
        tids: spy::tids::TidMap::default(),
        unlisted: None,
    };
    Box::new(OnCpuSpy::new(pid, reader).with_period(spy::period_ns(options.sample_rate)))
}

/// Which stack reader `PYROSCOPE_PYTHON_READER` asks for: `own` (the default) or `pyspy`.
pub const READER_ENV: &str = "PYROSCOPE_PYTHON_READER";

/// Where a process's interpreter is, as py-spy found it.
#[derive(Clone, Debug)]
struct Layout {
    /// Start addresses of the python executable's and libpython's code mappings: a forked
    /// child has the same ones (and the same interpreter address); another process, with
    /// address-space randomisation, does not.
    key: Vec<(String, u64)>,
    major: u64,
    minor: u64,
    version: String,
    interpreter_address: usize,
    /// Where the GIL holder is found.
    threadstate_address: usize,
    /// A free-threaded build (no GIL; its own object layout).
    free_threaded: bool,
    /// Where Python's thread names are (`None`: not read, OS thread names are used).
    names: Option<names::Where>,
}

/// The layouts of the processes read with our reader, by pid (children are attached from
/// their parent's).
static KNOWN: std::sync::Mutex<Option<std::collections::HashMap<u32, Layout>>> =
    std::sync::Mutex::new(None);

/// Bound on [`KNOWN`]: past it, entries of processes that ended are dropped.
const KNOWN_MAX: usize = 4096;

fn maps_key(pid: u32) -> Vec<(String, u64)> {
    spy::procfs::maps(pid)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.executable && (is_python_exe(m.basename()) || is_libpython(m.basename())))
        .map(|m| (m.path, m.start))
        .collect()
}

fn remember(pid: u32, layout: Layout) {
    if layout.key.is_empty() {
        return;
    }
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let map = known.get_or_insert_with(Default::default);
    if map.len() >= KNOWN_MAX {
        map.retain(|&p, _| spy::procfs::alive(p));
    }
    map.insert(pid, layout);
}

/// Our reader for a forked child of a process read with it, without py-spy's search for the
/// interpreter (parsing the binary's symbols costs milliseconds per process: with
/// `multiprocessing.Pool(maxtasksperchild=1)`, most of the agent's CPU): same code mappings at
/// the same addresses as the parent, and a first read that works.
fn inherited(pid: u32, gil_only: bool) -> Option<(Box<dyn reader::Frames>, Layout)> {
    let parent = spy::procfs::parent(pid)?;
    let layout = KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()?
        .get(&parent)?
        .clone();
    if maps_key(pid) != layout.key {
        return None;
    }
    let frames = own_reader(pid, &layout, gil_only).ok()?;
    remember(pid, layout.clone());
    Some((frames, layout))
}

/// Our reader for the process py-spy found, checked with one read; why not, when it cannot be
/// used (then py-spy's reader is).
fn own_reader(
    pid: u32,
    layout: &Layout,
    gil_only: bool,
) -> Result<Box<dyn reader::Frames>, String> {
    match std::env::var(READER_ENV).as_deref() {
        Ok("pyspy") => return Err(format!("{READER_ENV}=pyspy")),
        Ok("own") | Err(_) => {}
        Ok(other) => return Err(format!("{READER_ENV}={other} is neither own nor pyspy")),
    }
    // A free-threaded build has no GIL: every running thread counts.
    let gil = (gil_only && !layout.free_threaded).then_some(layout.threadstate_address);
    let mut frames = frames_with_memory(
        pid,
        memory::Memory::new(pid),
        layout.major,
        layout.minor,
        layout.free_threaded,
        layout.interpreter_address,
        gil,
    )
    // A free-threaded build's version carries its `t` already (`3.14.0t`).
    .ok_or_else(|| format!("our reader does not know CPython {}", layout.version))?;
    // Read while the program runs, a read can tear (a frame freed under it): one success of a
    // few tries is the check.
    let mut last = None;
    for _ in 0..5 {
        let mut threads = Vec::new();
        match frames.read(&mut |_, _, _| (None, true), &mut threads) {
            Ok(()) => return Ok(frames),
            Err(e) => last = Some(e),
        }
    }
    Err(format!(
        "our reader failed: {:#}",
        last.expect("tried at least once")
    ))
}

/// Our reader with py-spy's layout for CPython `major.minor` (py-spy's own choice of layouts).
/// `gil_address`: read only the GIL holder, found there (py-spy's `threadstate_address`).
pub fn frames_for(
    pid: u32,
    major: u64,
    minor: u64,
    interpreter_address: usize,
    gil_address: Option<usize>,
) -> Option<Box<dyn reader::Frames>> {
    frames_with_memory(
        pid,
        memory::Memory::new(pid),
        major,
        minor,
        false,
        interpreter_address,
        gil_address,
    )
}

/// [`frames_for`] over the given memory: a live process, one being recorded, or a recording
/// replayed (see [`fixture`]).
pub fn frames_with_memory(
    pid: u32,
    mem: memory::Memory,
    major: u64,
    minor: u64,
    free_threaded: bool,
    interpreter_address: usize,
    gil_address: Option<usize>,
) -> Option<Box<dyn reader::Frames>> {
    use py_spy::python_bindings::*;
    use reader::Reader;
    let a = interpreter_address;
    let g = gil_address;
    if free_threaded {
        return match (major, minor) {
            (3, 13) => Some(Box::new(Reader::<v3_13_0t::_is>::with_memory(
                pid, mem, a, None,
            ))),
            _ => None,
        };
    }
    Some(match (major, minor) {
        (2, 3..=7) => Box::new(Reader::<v2_7_15::_is>::with_memory(pid, mem, a, g)),
        (3, 3) => Box::new(Reader::<v3_3_7::_is>::with_memory(pid, mem, a, g)),
        (3, 4..=5) => Box::new(Reader::<v3_5_5::_is>::with_memory(pid, mem, a, g)),
        (3, 6) => Box::new(Reader::<v3_6_6::_is>::with_memory(pid, mem, a, g)),
        (3, 7) => Box::new(Reader::<v3_7_0::_is>::with_memory(pid, mem, a, g)),
        (3, 8) => Box::new(Reader::<v3_8_0::_is>::with_memory(pid, mem, a, g)),
        (3, 9) => Box::new(Reader::<v3_9_5::_is>::with_memory(pid, mem, a, g)),
        (3, 10) => Box::new(Reader::<v3_10_0::_is>::with_memory(pid, mem, a, g)),
        (3, 11) => Box::new(Reader::<v3_11_0::_is>::with_memory(pid, mem, a, g)),
        (3, 12) => Box::new(Reader::<v3_12_0::_is>::with_memory(pid, mem, a, g)),
        (3, 13) => Box::new(Reader::<v3_13_0::_is>::with_memory(pid, mem, a, g)),
        (3, 14) => Box::new(Reader::<v3_14_0::_is>::with_memory(pid, mem, a, g)),
        (3, 15) => Box::new(Reader::<v3_15_0::_is>::with_memory(pid, mem, a, g)),
        _ => return None,
    })
}

/// py-spy's process handle as [`spy::tids::ReadMemory`].
struct Pm<'a>(&'a remoteprocess::Process);

impl spy::tids::ReadMemory for Pm<'_> {
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> bool {
        use remoteprocess::ProcessMemory;
        self.0.read(addr, buf).is_ok()
    }
}

/// The reader a process is read with.
enum Engine {
    Own(Box<dyn reader::Frames>),
    /// py-spy's `get_stack_traces`, with the GIL-holder shortcut.
    PySpy {
        inner: Box<PythonSpy>,
        fast: GilFastPath,
        /// `--gil-only`: the GIL holder only, always.
        gil_only: bool,
    },
}

/// The OS error at the root of a py-spy error, where py-spy kept it typed (an `io::Error`, or
/// remoteprocess's wrapping of one or of a nix errno).
fn os_error(err: &anyhow::Error) -> Option<i32> {
    err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            return e.raw_os_error();
        }
        match cause.downcast_ref::<remoteprocess::Error>()? {
            remoteprocess::Error::IOError(e) => e.raw_os_error(),
            remoteprocess::Error::NixError(e) => Some(*e as i32),
            _ => None,
        }
    })
}

/// Sorts a py-spy attach error into what the agent does next.
fn classify(pid: u32, err: &anyhow::Error) -> AttachError {
    if !spy::procfs::alive(pid) {
        return AttachError::Gone;
    }
    let text = format!("{err:#}");
    if matches!(os_error(err), Some(libc::EPERM | libc::EACCES)) {
        return AttachError::Permission(text);
    }
    // py-spy has no error type for this one: its message is all there is.
    if text.contains("Unsupported version of Python") {
        return AttachError::Unsupported(text);
    }
    AttachError::NotReady(text)
}

/// Reads one CPython process.
struct PythonReader {
    pid: u32,
    version: String,
    /// Set while a release newer than the checked ones is on trial ([`release`]).
    unverified: Option<release::Unverified>,
    engine: Engine,
    tids: spy::tids::TidMap,
    /// Whether the last read met a thread state whose OS thread is not listed (own reader only:
    /// it reads every thread state each sample).
    unlisted: Option<bool>,
    /// Python's thread names (`None`: OS thread names are used).
    names: Option<names::ThreadNames>,
}

/// Reads thread stacks (only the GIL holder's with `gil_only`); `locked` when the caller has
/// paused the process.
fn read_traces(
    inner: &mut PythonSpy,
    locked: bool,
    gil_only: bool,
) -> anyhow::Result<Vec<py_spy::StackTrace>> {
    inner.config.blocking = if locked {
        LockingStrategy::AlreadyLocked
    } else {
        LockingStrategy::NonBlocking
    };
    inner.config.gil_only = gil_only;
    inner.get_stack_traces()
}

/// What one read brought back.
enum Raw {
    Own(anyhow::Result<Vec<reader::RawThread>>),
    /// And whether reading only the GIL holder was tried and worked.
    PySpy {
        traces: anyhow::Result<Vec<py_spy::StackTrace>>,
        fast_hit: Option<bool>,
    },
}

impl StackReader for PythonReader {
    type Raw = Raw;

    fn describe(&self) -> String {
        format!("CPython {}", self.version)
    }

    fn memory_reads(&self) -> Option<u64> {
        match &self.engine {
            Engine::Own(frames) => Some(frames.calls()),
            Engine::PySpy { .. } => None,
        }
    }

    fn unlisted_thread_seen(&mut self) -> Option<bool> {
        self.unlisted.take()
    }

    fn read(&mut self, activity: &ThreadActivity, locked: bool) -> Raw {
        match &mut self.engine {
            Engine::Own(frames) => {
                let tids = &mut self.tids;
                let mut unlisted = false;
                // Only the threads on CPU are read; a thread whose OS id is unknown is read.
                let mut select = |mem: &memory::Memory, pthread: u64, native: Option<u64>| {
                    // A forked child's thread state keeps its parent's native id until CPython
                    // updates it after the fork: only an id of this process is taken as is.
                    let tid = tids.resolve(mem, native, pthread, activity);
                    unlisted |= tid.is_none();
                    let wanted = tid.and_then(|t| activity.get(&t)).copied().unwrap_or(true);
                    (tid, wanted)
                };
                let mut threads = Vec::new();
                let mut result = frames.read(&mut select, &mut threads);
                if result.is_err() && !locked {
                    // Most failures of a read while the program runs are torn reads (a frame
                    // freed under it): once more at once, rather than lose the sample.
                    threads.clear();
                    result = frames.read(&mut select, &mut threads);
                }
                // A failed read may have stopped before some thread states: no verdict.
                self.unlisted = result.is_ok().then_some(unlisted);
                Raw::Own(result.map(|()| threads))
            }
            Engine::PySpy {
                inner,
                fast: _,
                gil_only: true,
            } => Raw::PySpy {
                traces: read_traces(inner, locked, true),
                fast_hit: None,
            },
            Engine::PySpy { inner, fast, .. } => {
                let (traces, fast_hit) =
                    read_with_pyspy(inner, &mut self.tids, fast, activity, locked);
                Raw::PySpy { traces, fast_hit }
            }
        }
    }

    fn stacks(
        &mut self,
        raw: Raw,
        activity: &ThreadActivity,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError> {
        let first = out.len();
        let result = self.make_stacks(raw, activity, out);
        if let Some(u) = &mut self.unverified {
            if u.check(out, first, result.is_err())? {
                self.unverified = None;
            }
        }
        result
    }
}

impl PythonReader {
    fn make_stacks(
        &mut self,
        raw: Raw,
        activity: &ThreadActivity,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError> {
        let pid = self.pid;
        let failed = |e: anyhow::Error| {
            if os_error(&e) == Some(libc::ESRCH) || spy::procfs::exiting(pid) {
                SampleError::Gone
            } else {
                SampleError::Other(format!("{e:#}"))
            }
        };
        match raw {
            Raw::Own(threads) => {
                let Engine::Own(frames) = &self.engine else {
                    unreachable!("an own read comes from the own reader")
                };
                for thread in threads.map_err(failed)? {
                    let innermost = thread.frames.first().and_then(|f| frames.named(f.0));
                    if thread.frames.is_empty()
                        || innermost.is_some_and(|n| looks_idle(&n.function, &n.filename))
                    {
                        continue;
                    }
                    let frames = thread
                        .frames
                        .iter()
                        .rev()
                        .filter_map(|&(code, line)| {
                            let n = frames.named(code)?;
                            Some(Frame {
                                file: n.shown.clone(),
                                function: n.function.clone(),
                                line: line.max(0) as u32,
                            })
                        })
                        .collect();
                    out.push(Stack {
                        thread_id: thread
                            .os_thread_id
                            .map(u64::from)
                            .unwrap_or(thread.thread_id),
                        frames,
                        cpu_ns: None,
                        thread_name: self.names.as_mut().and_then(|n| n.get(thread.thread_id)),
                    });
                }
                Ok(())
            }
            Raw::PySpy { traces, fast_hit } => {
                let Engine::PySpy { inner, fast, .. } = &mut self.engine else {
                    unreachable!("a py-spy read comes from py-spy's reader")
                };
                if let Some(hit) = fast_hit {
                    fast.record(hit, pid);
                }
                for trace in traces.map_err(failed)? {
                    let tid = trace.os_thread_id.map(|t| t as u32).or_else(|| {
                        self.tids
                            .lookup(&Pm(&inner.process), trace.thread_id, activity)
                    });
                    let idle = trace
                        .frames
                        .first()
                        .is_some_and(|f| looks_idle(&f.name, &f.filename));
                    let on_cpu = match tid.and_then(|t| activity.get(&t)) {
                        Some(&running) => running && !idle,
                        // Unknown thread: trust py-spy's own judgement (its idle heuristic).
                        None => trace.active,
                    };
                    if !on_cpu || trace.frames.is_empty() {
                        continue;
                    }
                    let frames = trace
                        .frames
                        .into_iter()
                        .rev()
                        .map(|f| Frame {
                            file: f.short_filename.unwrap_or(f.filename).into(),
                            function: f.name.into(),
                            line: f.line.max(0) as u32,
                        })
                        .collect();
                    out.push(Stack {
                        thread_id: tid.map(u64::from).unwrap_or(trace.thread_id),
                        frames,
                        cpu_ns: None,
                        thread_name: self.names.as_mut().and_then(|n| n.get(trace.thread_id)),
                    });
                }
                Ok(())
            }
        }
    }
}

/// Reads with py-spy's reader: every thread, or only the GIL holder when exactly one thread
/// runs and that works here.
fn read_with_pyspy(
    inner: &mut PythonSpy,
    tids: &mut spy::tids::TidMap,
    fast: &GilFastPath,
    activity: &ThreadActivity,
    locked: bool,
) -> (anyhow::Result<Vec<py_spy::StackTrace>>, Option<bool>) {
    // A CPU profile only wants the threads that are running.
    let only_running = match spy::only_running(activity) {
        Some(tid) if fast.enabled() => tid,
        _ => return (read_traces(inner, locked, false), None),
    };
    // One running thread: if it holds the GIL, its stack is the whole sample, and py-spy
    // skips its own /proc scan and every idle thread's stack.
    let traces = match read_traces(inner, locked, true) {
        Ok(traces) => traces,
        Err(e) => return (Err(e), None),
    };
    let hit = traces.len() == 1 && {
        let t = &traces[0];
        t.os_thread_id
            .map(|t| t as u32)
            .or_else(|| tids.lookup(&Pm(&inner.process), t.thread_id, activity))
            == Some(only_running)
    };
    if hit {
        (Ok(traces), Some(true))
    } else {
        (read_traces(inner, locked, false), Some(false))
    }
}

/// Whether reading only the GIL holder works for this process (it does not where py-spy cannot
/// find the GIL holder): switched off after many misses without a hit.
#[derive(Default)]
struct GilFastPath {
    hits: u64,
    misses: u64,
}

impl GilFastPath {
    fn enabled(&self) -> bool {
        self.hits > 0 || self.misses < 20
    }

    fn record(&mut self, hit: bool, pid: u32) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
            if !self.enabled() {
                log::debug!("process {pid}: reading only the GIL holder does not work here; reading every thread");
            }
        }
    }
}

/// py-spy's heuristic for threads that are "running" in the OS's eyes but only waiting in a
/// well-known poll/wait call, judged by the innermost frame (same rules as
/// `PythonSpy::_heuristic_is_thread_idle`).
fn looks_idle(name: &str, filename: &str) -> bool {
    (name == "wait" && filename.ends_with("threading.py"))
        || (name == "select" && filename.ends_with("selectors.py"))
        || (name == "poll"
            && (filename.ends_with("asyncore.py")
                || filename.contains("zmq")
                || filename.contains("gevent")
                || filename.contains("tornado")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_type() {
        let me = std::process::id();
        let os = |errno| {
            anyhow::Error::new(remoteprocess::Error::IOError(
                std::io::Error::from_raw_os_error(errno),
            ))
            .context("Failed to copy PyThreadState head pointer")
        };
        assert!(matches!(
            classify(me, &os(libc::EPERM)),
            AttachError::Permission(m) if m.contains("Failed to copy")
        ));
        assert!(matches!(
            classify(
                me,
                &anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES))
            ),
            AttachError::Permission(_)
        ));
        let nix = anyhow::Error::new(remoteprocess::Error::NixError(nix::errno::Errno::EPERM));
        assert!(matches!(classify(me, &nix), AttachError::Permission(_)));
        assert!(matches!(
            classify(
                me,
                &anyhow::anyhow!("Unsupported version of Python: 3.99.7")
            ),
            AttachError::Unsupported(_)
        ));
        // Interpreter not initialised yet: tried again.
        assert!(matches!(
            classify(me, &os(libc::EFAULT)),
            AttachError::NotReady(_)
        ));
        assert_eq!(classify(999_999_999, &os(libc::EPERM)), AttachError::Gone);
        assert_eq!(os_error(&os(libc::ESRCH)), Some(libc::ESRCH));
    }

    /// The free-threaded 3.13 layout is the one CPython 3.13.15t's headers give (`offsetof`,
    /// measured with gcc against `--disable-gil` and default builds): the object header grows
    /// from 16 to 32 bytes, and every object struct moves with it; interpreter, thread and frame
    /// structs stay where they are.
    #[test]
    fn free_threaded_3_13_layout() {
        use py_spy::python_bindings::{v3_13_0 as d, v3_13_0t as t};
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<t::PyObject>(), 32);
        assert_eq!(offset_of!(t::PyObject, ob_type), 24);
        assert_eq!(offset_of!(t::PyCodeObject, co_firstlineno), 84);
        assert_eq!(offset_of!(t::PyCodeObject, co_filename), 128);
        assert_eq!(offset_of!(t::PyCodeObject, co_name), 136);
        assert_eq!(offset_of!(t::PyCodeObject, co_qualname), 144);
        assert_eq!(offset_of!(t::PyCodeObject, co_linetable), 152);
        assert_eq!(offset_of!(t::PyCodeObject, co_code_adaptive), 216);
        assert_eq!(offset_of!(t::PyASCIIObject, length), 32);
        assert_eq!(size_of::<t::PyASCIIObject>(), 56);
        assert_eq!(offset_of!(t::PyBytesObject, ob_sval), 48);
        // The same in both builds.
        assert_eq!(
            offset_of!(t::PyInterpreterState, threads.head),
            offset_of!(d::PyInterpreterState, threads.head)
        );
        assert_eq!(
            offset_of!(t::PyThreadState, current_frame),
            offset_of!(d::PyThreadState, current_frame)
        );
        assert_eq!(
            offset_of!(t::PyThreadState, native_thread_id),
            offset_of!(d::PyThreadState, native_thread_id)
        );
        assert_eq!(
            offset_of!(t::_PyInterpreterFrame, instr_ptr),
            offset_of!(d::_PyInterpreterFrame, instr_ptr)
        );
    }

    #[test]
    fn free_threaded_names() {
        assert_eq!(free_threaded_name("python3.14t").as_deref(), Some("3.14t"));
        assert_eq!(free_threaded_name("python3.13td").as_deref(), Some("3.13t"));
        assert_eq!(
            free_threaded_name("libpython3.14t.so.1.0").as_deref(),
            Some("3.14t")
        );
        assert_eq!(free_threaded_name("python3.14"), None);
        assert_eq!(free_threaded_name("libpython3.11.so.1.0"), None);
        assert_eq!(free_threaded_name("python3.7m"), None);
        assert_eq!(free_threaded_name("python"), None);
        assert_eq!(free_threaded_name("pythonista"), None);
    }

    #[test]
    fn python_exe_names() {
        for yes in [
            "python",
            "python3",
            "python3.11",
            "python2.7",
            "python3.13d",
            "python3.7m",
            "python3.14t",
        ] {
            assert!(is_python_exe(yes), "{yes}");
        }
        for no in [
            "pythonw.exe",
            "ruby",
            "python-config",
            "ipython",
            "bash",
            "python3.11-config",
        ] {
            assert!(!is_python_exe(no), "{no}");
        }
        assert!(is_libpython("libpython3.11.so.1.0"));
        assert!(!is_libpython("libc.so.6"));
    }
}
