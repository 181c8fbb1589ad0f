//! The agent's own CPython stack reader: what py-spy's `get_stack_trace` reads, read once.
//!
//! py-spy re-reads every frame, code object, name, file name and line table on every sample
//! (about nine `process_vm_readv` calls per frame). Most of that never changes. Per process this
//! reader keeps, for each code object, its names, its (shortened) file, its line table and the
//! lines already looked up; per sample it reads only what moves. It starts by reading, in one
//! call, the pages the previous sample used (when the stack stayed on them, the whole sample);
//! then, for what is not in them:
//!
//! 1. the thread-state list (one page read per thread state);
//! 2. the frame chain of each thread that is on CPU: on 3.11+ the thread's data-stack pages, where
//!    its frames live, in one call (generator frames elsewhere are read where they are); before
//!    3.11 each frame object (frames that share a page share the read);
//! 3. every code object the frames name, all in **one** call, to check that each is still the
//!    object cached under that address: a code object can be freed and another one made at the
//!    same address (`exec`, `compile`), so the cached entry is used only when the new copy has
//!    the same name, qualified name, file name, line table, local names, first line, local count
//!    and argument count (the pointers of five separately allocated objects, and three numbers).
//!    Anything else is a miss, and a miss reads the code object's strings and line table again.
//!
//! Struct layouts, frame and code-object rules and line-table decoders are py-spy's (its
//! per-version bindgen structs and traits, made public by `vendor/py-spy`); the reader is generic
//! over them, so it covers every version py-spy does (2.7, 3.3-3.15). It reproduces py-spy's
//! choices exactly (which frames are skipped as shims, qualified names on 3.11+, line numbers of
//! the last instruction), and the differential test holds it to them.

use crate::memory::{Memory, Pages};
use py_spy::python_data_access::{copy_bytes, copy_string};
use py_spy::python_interpreters::{CodeObject, FrameObject, InterpreterState, ThreadState};
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

/// Code objects cached per process before the cache is dropped and rebuilt.
const MAX_CODES: usize = 16_384;

/// A frame chain longer than this is a loop (torn read) or garbage: py-spy's limit.
const MAX_FRAMES: usize = 4096;

/// A thread-state list longer than this is garbage: py-spy's limit.
const MAX_THREADS: usize = 4096;

/// One thread as read: its ids and its frames, innermost first.
#[derive(Debug, Default)]
pub struct RawThread {
    /// The Python thread id (`pthread_t` on Linux).
    pub thread_id: u64,
    /// The OS thread id, where the thread state holds it (3.11+) or the caller found it.
    pub os_thread_id: Option<u32>,
    /// `(code object address, line)` per frame, innermost first.
    pub frames: Vec<(usize, i32)>,
}

/// Who decides which threads' frames are read: given the Python thread id and, on 3.11+, the
/// OS thread id from the thread state, returns the OS thread id (if known) and whether to read
/// the thread's frames.
pub type Select<'a> = dyn FnMut(&Memory, u64, Option<u64>) -> (Option<u32>, bool) + 'a;

/// A frame as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Shared with every sample's frames (no allocation per sample).
    pub function: Arc<str>,
    /// The file as CPython has it.
    pub filename: String,
    /// The file shortened as py-spy does (relative to the package root), if it can be.
    pub short: Option<String>,
    /// What a frame shows: `short`, else `filename`.
    pub shown: Arc<str>,
}

/// What the reader has done so far, for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReaderStats {
    pub samples: u64,
    pub code_hits: u64,
    pub code_misses: u64,
    pub cache_drops: u64,
}

/// A version-independent face of [`Reader`].
pub trait Frames: Send {
    /// Reads the selected threads' stacks; code objects are resolved (and cached) here, while
    /// the process may be paused.
    fn read(&mut self, select: &mut Select, out: &mut Vec<RawThread>) -> anyhow::Result<()>;
    /// Name and file of a code object resolved by the last [`read`](Self::read); `None` for
    /// frames py-spy leaves out (shims, unreadable names).
    fn named(&self, code: usize) -> Option<&Named>;
    /// `process_vm_readv` calls so far.
    fn calls(&self) -> u64;
    fn stats(&self) -> ReaderStats;
    /// The pages read so far, when the reader's memory records them.
    fn recorded(&self) -> crate::memory::PageMap;
}

/// The layout-dependent part of a thread state that py-spy's trait does not expose: where the
/// 3.11+ data stack (the frames of the thread) is.
pub trait DataStack {
    /// `(first chunk address, top)`: the frames lie between them.
    fn data_stack(&self) -> Option<(usize, usize)> {
        None
    }
}

macro_rules! no_data_stack {
    ($($v:ident),*) => { $(impl DataStack for py_spy::python_bindings::$v::PyThreadState {})* };
}
no_data_stack!(v2_7_15, v3_3_7, v3_5_5, v3_6_6, v3_7_0, v3_8_0, v3_9_5, v3_10_0);

macro_rules! data_stack {
    ($($v:ident),*) => { $(
        impl DataStack for py_spy::python_bindings::$v::PyThreadState {
            fn data_stack(&self) -> Option<(usize, usize)> {
                Some((self.datastack_chunk as usize, self.datastack_top as usize))
            }
        }
    )* };
}
data_stack!(v3_11_0, v3_12_0, v3_13_0, v3_13_0t, v3_14_0, v3_15_0);

/// CPython 3.12+'s `_gil_runtime_state` (the same from 3.12 to 3.15, as py-spy reads it).
type GilState = py_spy::python_bindings::v3_13_0::_gil_runtime_state;

/// What identifies a code object beyond its address (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    name: usize,
    qualname: usize,
    filename: usize,
    line_table: usize,
    varnames: usize,
    first_lineno: i32,
    nlocals: i32,
    argcount: i32,
}

fn key<C: CodeObject>(code: &C) -> Key {
    Key {
        name: code.name() as usize,
        qualname: code.qualname().map_or(0, |q| q as usize),
        filename: code.filename() as usize,
        line_table: code.line_table() as usize,
        varnames: code.varnames() as usize,
        first_lineno: code.first_lineno(),
        nlocals: code.nlocals(),
        argcount: code.argcount(),
    }
}

struct Code<C> {
    /// The code object as copied (its pointers are addresses in the target, never followed here).
    code: C,
    key: Key,
    /// None: a frame py-spy leaves out (a shim).
    named: Option<Named>,
    /// The line table; None when it could not be read (lines are then 0, as py-spy has them).
    table: Option<Vec<u8>>,
    /// Line per last-instruction offset, as looked up so far.
    lines: HashMap<i32, i32>,
}

// SAFETY: `Code` is plain data: the raw pointers in its copied struct are addresses in another
// process, only ever compared or passed back to `process_vm_readv`, never dereferenced.
unsafe impl<C> Send for Code<C> {}

/// Reads one CPython process whose interpreter state has layout `I`.
pub struct Reader<I: InterpreterState> {
    pid: u32,
    mem: Memory,
    pages: Pages,
    interpreter_address: usize,
    /// With `--gil-only`: where the GIL's holder is found (py-spy's `threadstate_address`).
    gil_address: Option<usize>,
    codes: HashMap<
        usize,
        Code<<<I::ThreadState as ThreadState>::FrameObject as FrameObject>::CodeObject>,
    >,
    /// File name → shortened file name (py-spy's rule), shared by all code objects of a file.
    short_names: HashMap<String, Option<String>>,
    /// Per sample: (thread index in `out`, code address, last instruction) of every frame.
    pending: Vec<(usize, usize, i32)>,
    /// Code objects whose line table could not be read last time: loaded again.
    retry: Vec<usize>,
    /// Frames of the chain being walked.
    chain: rustc_hash::FxHashSet<usize>,
    /// Address ranges to read, reused (no allocation per sample).
    ranges: Vec<(usize, usize)>,
    stats: ReaderStats,
}

impl<I: InterpreterState> Reader<I> {
    /// `gil_address`: read only the thread holding the GIL, found there.
    pub fn new(pid: u32, interpreter_address: usize, gil_address: Option<usize>) -> Self {
        Reader::with_memory(pid, Memory::new(pid), interpreter_address, gil_address)
    }

    /// A reader of `mem` (a live process, a recording one, or a recording replayed).
    pub fn with_memory(
        pid: u32,
        mem: Memory,
        interpreter_address: usize,
        gil_address: Option<usize>,
    ) -> Self {
        Reader {
            pid,
            mem,
            pages: Pages::default(),
            interpreter_address,
            gil_address,
            codes: HashMap::default(),
            short_names: HashMap::default(),
            pending: Vec::new(),
            retry: Vec::new(),
            chain: Default::default(),
            ranges: Vec::new(),
            stats: ReaderStats::default(),
        }
    }
}

type CodeOf<I> =
    <<<I as InterpreterState>::ThreadState as ThreadState>::FrameObject as FrameObject>::CodeObject;

impl<I> Frames for Reader<I>
where
    I: InterpreterState,
    I::ThreadState: DataStack,
{
    fn read(&mut self, select: &mut Select, out: &mut Vec<RawThread>) -> anyhow::Result<()> {
        self.pages.clear();
        self.pending.clear();
        self.stats.samples += 1;
        let mem = &self.mem;
        let pages = &mut self.pages;
        let head_ptr = I::threadstate_ptr_ptr(self.interpreter_address) as usize;
        pages.start_sample(mem, &[(head_ptr, 8)]);
        let gil_state = std::mem::size_of::<GilState>();
        let gil_holder = match self.gil_address {
            None => None,
            Some(addr) => {
                pages.prefetch(mem, &[(head_ptr, 8), (addr, gil_state)]);
                let holder = if I::HAS_GIL_RUNTIME_STATE {
                    let gil: GilState = pages.get(mem, addr)?;
                    if gil.locked != 0 {
                        gil.last_holder as usize
                    } else {
                        0
                    }
                } else {
                    pages.get::<usize>(mem, addr)?
                };
                Some(holder)
            }
        };
        let mut tstate: usize = pages
            .get(mem, head_ptr)
            .map_err(|e| anyhow::anyhow!("Failed to copy PyThreadState head pointer: {e}"))?;
        let mut seen = 0;
        while tstate != 0 {
            seen += 1;
            if seen > MAX_THREADS {
                anyhow::bail!("Max thread recursion depth reached");
            }
            let thread: I::ThreadState = pages
                .get(mem, tstate)
                .map_err(|e| anyhow::anyhow!("Failed to copy PyThreadState: {e}"))?;
            let this = std::mem::replace(&mut tstate, thread.next() as usize);
            // With --gil-only, only the GIL holder's frames are read.
            if gil_holder.is_some_and(|holder| holder != this) {
                continue;
            }
            let (os_thread_id, wanted) = select(mem, thread.thread_id(), thread.native_thread_id());
            if !wanted {
                continue;
            }
            let index = out.len();
            out.push(RawThread {
                thread_id: thread.thread_id(),
                os_thread_id,
                frames: Vec::new(),
            });
            // Where the frames are, read in one call: the data stack (3.11+) and, on 3.11 and
            // 3.12, the C frame that points at the current one.
            let ranges = &mut self.ranges;
            ranges.clear();
            if let Some((chunk, top)) = thread.data_stack() {
                if chunk != 0 && top > chunk && top - chunk <= 1 << 20 {
                    ranges.push((chunk, top - chunk));
                }
            }
            let frame_address = thread.frame_address();
            if let Some(addr) = frame_address {
                ranges.push((addr, std::mem::size_of::<usize>()));
            }
            pages.prefetch(mem, ranges);
            let frame_address = match frame_address {
                Some(addr) => Some(pages.get::<usize>(mem, addr)?),
                None => None,
            };
            let mut frame_ptr = thread.frame(frame_address) as usize;
            let mut visited = 0;
            self.chain.clear();
            while frame_ptr != 0 {
                visited += 1;
                if visited > MAX_FRAMES {
                    anyhow::bail!("Max frame recursion depth reached");
                }
                // A chain that comes back to a frame was read while it changed (a torn read).
                if !self.chain.insert(frame_ptr) {
                    anyhow::bail!("the frame chain loops (read while it changed)");
                }
                let frame: <I::ThreadState as ThreadState>::FrameObject = pages
                    .get(mem, frame_ptr)
                    .map_err(|e| anyhow::anyhow!("Failed to copy PyFrameObject: {e}"))?;
                if frame.is_python_frame() {
                    self.pending
                        .push((index, frame.code() as usize, frame.lasti()));
                }
                frame_ptr = frame.back() as usize;
            }
        }
        self.resolve(out)
    }

    fn named(&self, code: usize) -> Option<&Named> {
        self.codes.get(&code)?.named.as_ref()
    }

    fn calls(&self) -> u64 {
        self.mem.calls()
    }

    fn recorded(&self) -> crate::memory::PageMap {
        self.mem.recorded()
    }

    fn stats(&self) -> ReaderStats {
        self.stats
    }
}

impl<I> Reader<I>
where
    I: InterpreterState,
    I::ThreadState: DataStack,
{
    /// Checks every code object of this sample in one call, loads the ones not cached (or
    /// changed), and puts each frame's code and line into its thread.
    fn resolve(&mut self, out: &mut [RawThread]) -> anyhow::Result<()> {
        for addr in self.retry.drain(..) {
            self.codes.remove(&addr);
        }
        let size = std::mem::size_of::<CodeOf<I>>();
        let mut ranges = std::mem::take(&mut self.ranges);
        ranges.clear();
        ranges.extend(self.pending.iter().map(|p| (p.1, size)));
        ranges.sort_unstable();
        ranges.dedup();
        self.pages.prefetch(&self.mem, &ranges);
        if self.codes.len() > MAX_CODES {
            self.codes.clear();
            self.stats.cache_drops += 1;
        }
        for &(addr, _) in &ranges {
            let code: CodeOf<I> = self
                .pages
                .get(&self.mem, addr)
                .map_err(|e| anyhow::anyhow!("Failed to copy PyCodeObject: {e}"))?;
            let k = key(&code);
            if self.codes.get(&addr).is_some_and(|c| c.key == k) {
                self.stats.code_hits += 1;
                continue;
            }
            self.stats.code_misses += 1;
            match self.load(code, k) {
                Some(entry) => {
                    self.codes.insert(addr, entry);
                }
                // Unreadable names (a torn read): left out this time, tried again next time.
                None => {
                    self.codes.remove(&addr);
                }
            }
        }
        self.ranges = ranges;
        for &(thread, addr, lasti) in &self.pending {
            let Some(entry) = self.codes.get_mut(&addr) else {
                continue;
            };
            if entry.named.is_none() {
                continue;
            }
            let line = match &entry.table {
                None => 0,
                Some(table) => *entry
                    .lines
                    .entry(lasti)
                    .or_insert_with(|| entry.code.get_line_number(lasti, table)),
            };
            out[thread].frames.push((addr, line));
        }
        // A line table that could not be read (a torn read) is read again next time.
        for &(_, addr, _) in &self.pending {
            if self.codes.get(&addr).is_some_and(|c| c.table.is_none()) {
                self.retry.push(addr);
            }
        }
        Ok(())
    }

    /// Reads a code object's names and line table (py-spy's rules: the qualified name where
    /// there is one, else the name; a frame without a file name, or `<shim>`, is left out).
    fn load(&mut self, code: CodeOf<I>, key: Key) -> Option<Code<CodeOf<I>>> {
        let mem = &self.mem;
        let filename = copy_string(code.filename(), mem).ok()?;
        let function = match code.qualname() {
            Some(q) => copy_string(q, mem).or_else(|_| copy_string(code.name(), mem)),
            None => copy_string(code.name(), mem),
        }
        .ok()?;
        let named = if filename.is_empty() || filename == "<shim>" {
            None
        } else {
            let short = match self.short_names.get(&filename) {
                Some(s) => s.clone(),
                None => {
                    if self.short_names.len() > MAX_CODES {
                        self.short_names.clear();
                    }
                    let s = shorten_filename(self.pid, &filename);
                    self.short_names.insert(filename.clone(), s.clone());
                    s
                }
            };
            Some(Named {
                function: function.into(),
                shown: short.as_deref().unwrap_or(&filename).into(),
                filename,
                short,
            })
        };
        let table = copy_bytes(code.line_table(), mem).ok();
        Some(Code {
            code,
            key,
            named,
            table,
            lines: HashMap::default(),
        })
    }
}

/// py-spy's short file name: the path below the outermost directory holding an `__init__.py`
/// chain (`site-packages/requests/api.py` → `requests/api.py`), looked up in the process's own
/// root (it may run in a container).
pub fn shorten_filename(pid: u32, filename: &str) -> Option<String> {
    use std::path::Path;
    let inside = spy::procfs::in_root(pid, filename);
    let path_str = if filename.starts_with('/') && inside.exists() {
        inside.to_string_lossy().into_owned()
    } else {
        filename.to_string()
    };
    let mut path = Path::new(&path_str);
    while let Some(parent) = path.parent() {
        path = parent;
        if !parent.join("__init__.py").exists() {
            break;
        }
    }
    Path::new(&path_str)
        .strip_prefix(path)
        .ok()
        .map(|p| p.to_string_lossy().to_string())
}
