//! Recorded-memory fixtures: one read of a live CPython, kept as the memory pages it used plus
//! the stacks it gave, and read again later through the very same reader code with the
//! recorded pages in place of the process ([`crate::memory::Memory::replaying`]).
//!
//! So an interpreter that cannot be installed where the tests run (a CPython built by hand, a
//! user's field report) still tests the reader: record where it runs
//! (`cargo run --release -p spy-python --example record_python -- PID FILE`, with the process
//! stopped), commit the file under `tests/data/python/`, and `tests/fixtures.rs` replays it.
//!
//! File: gzip of a text header (`key value` lines, then one `thread ID N` line followed by N
//! `function\tfile\tline` lines per thread, then `pages N`), followed by N records of an 8-byte
//! little-endian page address and the page's 4096 bytes.

use crate::memory::{Memory, PageMap, PAGE};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// One thread's stack as the reader named it: (function, file as CPython has it, line),
/// innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub thread_id: u64,
    pub frames: Vec<(String, String, i32)>,
}

#[derive(Debug, Clone)]
pub struct Fixture {
    /// The interpreter's full version (`3.13.15`), and what selects the layout.
    pub version: String,
    pub major: u64,
    pub minor: u64,
    /// A free-threaded build (`layout 3.13t` in the file).
    pub free_threaded: bool,
    pub interpreter_address: usize,
    /// What the live read gave.
    pub threads: Vec<Thread>,
    pub pages: Arc<PageMap>,
}

fn read_once(frames: &mut dyn crate::reader::Frames) -> Result<Vec<Thread>> {
    let mut raw = Vec::new();
    frames.read(&mut |_, _, _| (None, true), &mut raw)?;
    Ok(raw
        .iter()
        .map(|t| Thread {
            thread_id: t.thread_id,
            frames: t
                .frames
                .iter()
                .filter_map(|&(code, line)| {
                    frames
                        .named(code)
                        .map(|n| (n.function.to_string(), n.filename.clone(), line))
                })
                .collect(),
        })
        .collect())
}

impl Fixture {
    /// Reads process `pid` once (it should be stopped), recording every page the read used.
    pub fn record(
        pid: u32,
        version: &str,
        (major, minor, free_threaded): (u64, u64, bool),
        interpreter_address: usize,
    ) -> Result<Fixture> {
        let mut frames = crate::frames_with_memory(
            pid,
            Memory::recording(pid),
            major,
            minor,
            free_threaded,
            interpreter_address,
            None,
        )
        .with_context(|| format!("no layout for CPython {version}"))?;
        let threads = read_once(frames.as_mut())?;
        Ok(Fixture {
            version: version.to_string(),
            major,
            minor,
            free_threaded,
            interpreter_address,
            threads,
            pages: Arc::new(frames.recorded()),
        })
    }

    /// Reads the recording with a fresh reader: the stacks the reader code gives now.
    pub fn replay(&self) -> Result<Vec<Thread>> {
        let mut frames = crate::frames_with_memory(
            0,
            Memory::replaying(self.pages.clone()),
            self.major,
            self.minor,
            self.free_threaded,
            self.interpreter_address,
            None,
        )
        .with_context(|| format!("no layout for CPython {}", self.version))?;
        read_once(frames.as_mut())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        writeln!(gz, "version {}", self.version)?;
        let t = if self.free_threaded { "t" } else { "" };
        writeln!(gz, "layout {}.{}{t}", self.major, self.minor)?;
        writeln!(gz, "interpreter {:#x}", self.interpreter_address)?;
        for t in &self.threads {
            writeln!(gz, "thread {} {}", t.thread_id, t.frames.len())?;
            for (function, file, line) in &t.frames {
                writeln!(gz, "{function}\t{file}\t{line}")?;
            }
        }
        writeln!(gz, "pages {}", self.pages.len())?;
        for (addr, bytes) in self.pages.iter() {
            gz.write_all(&(*addr as u64).to_le_bytes())?;
            gz.write_all(bytes)?;
        }
        gz.finish()?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Fixture> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut r = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
        let mut line = String::new();
        let mut next = |r: &mut dyn BufRead| -> Result<String> {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                bail!("{}: ends early", path.display());
            }
            Ok(line.trim_end_matches('\n').to_string())
        };
        let field = |l: &str, key: &str| -> Result<String> {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_string)
                .with_context(|| format!("{}: expected {key:?}, found {l:?}", path.display()))
        };
        let version = field(&next(&mut r)?, "version")?;
        let layout = field(&next(&mut r)?, "layout")?;
        let free_threaded = layout.ends_with('t');
        let (major, minor) = layout
            .trim_end_matches('t')
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .with_context(|| format!("bad layout {layout:?}"))?;
        let interp = field(&next(&mut r)?, "interpreter")?;
        let interpreter_address = usize::from_str_radix(interp.trim_start_matches("0x"), 16)?;
        let mut threads = Vec::new();
        let pages_line = loop {
            let l = next(&mut r)?;
            let Ok(t) = field(&l, "thread") else {
                break l;
            };
            let (id, n) = t.split_once(' ').context("bad thread line")?;
            let mut frames = Vec::new();
            for _ in 0..n.parse::<usize>()? {
                let f = next(&mut r)?;
                let mut parts = f.splitn(3, '\t');
                let (Some(function), Some(file), Some(line)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    bail!("bad frame line {f:?}");
                };
                frames.push((function.to_string(), file.to_string(), line.parse()?));
            }
            threads.push(Thread {
                thread_id: id.parse()?,
                frames,
            });
        };
        let n: usize = field(&pages_line, "pages")?.parse()?;
        let mut pages = PageMap::new();
        for _ in 0..n {
            let mut addr = [0u8; 8];
            r.read_exact(&mut addr)?;
            let mut bytes = vec![0u8; PAGE];
            r.read_exact(&mut bytes)?;
            pages.insert(u64::from_le_bytes(addr) as usize, bytes);
        }
        Ok(Fixture {
            version,
            major,
            minor,
            free_threaded,
            interpreter_address,
            threads,
            pages: Arc::new(pages),
        })
    }
}
