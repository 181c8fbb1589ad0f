//! Streaming reader of EventPipe's nettrace format (FastSerialization, NetTrace V4/V5).
//!
//! The stream is read one object at a time: the trace header, then blocks (metadata, stack,
//! event, sequence point), each read whole into one reused buffer and handed to a [`Handler`]
//! event by event. Nothing else is kept but the event metadata (a few hundred entries) and the
//! stacks of the current sequence-point window, which the runtime restarts at id 1 after every
//! sequence point: memory stays bounded however long the stream runs.
//!
//! Layout reference: perfview `src/TraceEvent/EventPipe/NetTraceFormat_v5.md`; the runtime still
//! writes the Trace object as version 4. A V6 stream (a different container, not emitted by any
//! runtime yet) is recognised and refused.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

/// Largest block accepted (the runtime writes blocks of at most ~100 KB).
const MAX_BLOCK: usize = 64 << 20;

#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    /// The stream ended inside an object.
    Truncated(&'static str),
    /// Bytes that do not follow the format.
    Malformed(String),
    /// A stream in a format version this reader does not know.
    Unsupported(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "reading the trace stream: {e}"),
            Error::Truncated(what) => write!(f, "the trace stream was cut off inside {what}"),
            Error::Malformed(m) => write!(f, "malformed trace stream: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported trace stream: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// The Trace object at the start of the stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceHeader {
    pub sync_time_qpc: i64,
    pub qpc_frequency: i64,
    pub pointer_size: u32,
    pub process_id: u32,
    pub processors: u32,
    /// The runtime's sampling interval (ns), 1 ms on .NET Core 3.1.
    pub expected_sampling_interval_ns: u32,
}

impl TraceHeader {
    /// QPC ticks → nanoseconds.
    pub fn ticks_to_ns(&self, ticks: i64) -> i64 {
        if self.qpc_frequency == 1_000_000_000 || self.qpc_frequency <= 0 {
            ticks
        } else {
            (ticks as i128 * 1_000_000_000 / self.qpc_frequency as i128) as i64
        }
    }
}

/// What an event's metadata says about it.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub provider: Arc<str>,
    pub event_id: u32,
    pub event_name: String,
    pub version: u32,
}

/// One event, borrowed from the block being read.
#[derive(Debug)]
pub struct Event<'a> {
    pub metadata: &'a Metadata,
    /// OS thread id of the thread the event is about (for samples: the sampled thread).
    pub thread_id: u64,
    /// QPC ticks.
    pub timestamp: i64,
    /// Instruction pointers, **leaf first**; empty when the event has no stack.
    pub stack: &'a [u64],
    pub payload: &'a [u8],
}

/// Receives what the reader finds.
pub trait Handler {
    fn header(&mut self, _header: &TraceHeader) {}
    fn event(&mut self, event: &Event<'_>);
    /// A sequence point: the stacks seen so far are forgotten after it.
    fn sequence_point(&mut self) {}
    /// A block was handled completely (a good moment to publish results).
    fn block_done(&mut self) {}
}

/// How the stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The closing NullReference tag: the runtime ended the session cleanly.
    Clean,
    /// End of input between two objects, without the closing tag (session dropped).
    Abrupt,
}

/// Counts of what was read, for tests and logs.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub blocks: u64,
    pub events: u64,
    pub metadata: u64,
    pub stacks: u64,
    pub sequence_points: u64,
    /// Events whose stack id was not in the current window.
    pub missing_stacks: u64,
}

/// Byte source that knows its absolute offset (blocks are padded to 4-byte stream offsets).
struct Source<R> {
    r: R,
    pos: u64,
}

impl<R: Read> Source<R> {
    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => return Err(Error::Truncated(what)),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// One byte, or None at a clean end of input.
    fn byte_or_eof(&mut self) -> Result<Option<u8>> {
        let mut b = [0u8];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.pos += 1;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        let mut b = [0u8];
        self.fill(&mut b, what)?;
        Ok(b[0])
    }

    fn i32(&mut self, what: &'static str) -> Result<i32> {
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        Ok(i32::from_le_bytes(b))
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<()> {
        let b = self.u8(what)?;
        if b != tag {
            return Err(Error::Malformed(format!(
                "expected tag {tag} in {what} at offset {}, found {b}",
                self.pos - 1
            )));
        }
        Ok(())
    }
}

const TAG_NULL_REFERENCE: u8 = 1;
const TAG_BEGIN_PRIVATE_OBJECT: u8 = 5;
const TAG_END_OBJECT: u8 = 6;

/// Reads a whole nettrace stream, calling `handler` as it goes. Returns at the end of the stream.
pub struct Reader<R> {
    src: Source<R>,
    header: Option<TraceHeader>,
    metadata: HashMap<u32, Metadata>,
    /// Stacks of the current sequence-point window, by id.
    stacks: HashMap<u32, Vec<u64>>,
    block: Vec<u8>,
    pub stats: Stats,
}

impl<R: Read> Reader<R> {
    pub fn new(r: R) -> Self {
        Reader {
            src: Source { r, pos: 0 },
            header: None,
            metadata: HashMap::new(),
            stacks: HashMap::new(),
            block: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn header(&self) -> Option<&TraceHeader> {
        self.header.as_ref()
    }

    /// Reads the stream to its end.
    pub fn run(&mut self, handler: &mut dyn Handler) -> Result<End> {
        self.read_preamble()?;
        loop {
            match self.src.byte_or_eof()? {
                None => return Ok(End::Abrupt),
                Some(TAG_NULL_REFERENCE) => return Ok(End::Clean),
                Some(TAG_BEGIN_PRIVATE_OBJECT) => self.read_object(handler)?,
                Some(t) => {
                    return Err(Error::Malformed(format!(
                        "unexpected tag {t} at offset {}",
                        self.src.pos - 1
                    )));
                }
            }
        }
    }

    fn read_preamble(&mut self) -> Result<()> {
        let mut magic = [0u8; 8];
        self.src.fill(&mut magic, "the stream header")?;
        if &magic != b"Nettrace" {
            return Err(Error::Malformed(
                "not a nettrace stream (no \"Nettrace\" magic)".into(),
            ));
        }
        let len = self.src.i32("the stream header")?;
        if len == 0 {
            // NetTrace V6: `StreamHeader { u32 0, u32 major, u32 minor }` instead of FastSerialization.
            let major = self.src.i32("the V6 stream header").unwrap_or(0);
            return Err(Error::Unsupported(format!(
                "nettrace format version {major} (a V6 stream); this reader knows V4 and V5 (FastSerialization)"
            )));
        }
        if len != 20 {
            return Err(Error::Malformed(format!("serializer name of length {len}")));
        }
        let mut name = [0u8; 20];
        self.src.fill(&mut name, "the stream header")?;
        if &name != b"!FastSerialization.1" {
            return Err(Error::Unsupported(format!(
                "serializer {:?}",
                String::from_utf8_lossy(&name)
            )));
        }
        Ok(())
    }

    /// After BeginPrivateObject: the type, the payload, EndObject.
    fn read_object(&mut self, handler: &mut dyn Handler) -> Result<()> {
        self.src
            .expect(TAG_BEGIN_PRIVATE_OBJECT, "an object type")?;
        self.src.expect(TAG_NULL_REFERENCE, "an object type")?;
        let version = self.src.i32("an object type")?;
        let _min_reader = self.src.i32("an object type")?;
        let len = self.src.i32("an object type")?;
        if !(1..=64).contains(&len) {
            return Err(Error::Malformed(format!(
                "object type name of length {len}"
            )));
        }
        let mut name = vec![0u8; len as usize];
        self.src.fill(&mut name, "an object type")?;
        self.src.expect(TAG_END_OBJECT, "an object type")?;
        match &name[..] {
            b"Trace" => {
                if version < 3 {
                    return Err(Error::Unsupported(format!(
                        "Trace object version {version} (NetPerf)"
                    )));
                }
                self.read_trace_header()?;
                handler.header(self.header.as_ref().expect("just read"));
            }
            b"EventBlock" => {
                self.read_block()?;
                self.event_block(handler, false)?;
            }
            b"MetadataBlock" => {
                self.read_block()?;
                self.event_block(handler, true)?;
            }
            b"StackBlock" => {
                self.read_block()?;
                self.stack_block()?;
            }
            b"SPBlock" => {
                self.read_block()?;
                self.sequence_point_block(handler)?;
            }
            // A block type from a newer runtime: every block is size-prefixed, so skip it.
            _ => self.read_block()?,
        }
        self.src.expect(TAG_END_OBJECT, "the end of an object")?;
        self.stats.blocks += 1;
        handler.block_done();
        Ok(())
    }

    fn read_trace_header(&mut self) -> Result<()> {
        let mut b = [0u8; 48];
        self.src.fill(&mut b, "the trace header")?;
        let i64_at = |o: usize| i64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        // 16 bytes of SYSTEMTIME first.
        self.header = Some(TraceHeader {
            sync_time_qpc: i64_at(16),
            qpc_frequency: i64_at(24),
            pointer_size: u32_at(32),
            process_id: u32_at(36),
            processors: u32_at(40),
            expected_sampling_interval_ns: u32_at(44),
        });
        Ok(())
    }

    /// `i32 size`, padding to a 4-byte stream offset, then the block into `self.block`.
    fn read_block(&mut self) -> Result<()> {
        let size = self.src.i32("a block size")?;
        if size < 0 || size as usize > MAX_BLOCK {
            return Err(Error::Malformed(format!("block of {size} bytes")));
        }
        let pad = ((4 - self.src.pos % 4) % 4) as usize;
        let mut zeros = [0u8; 3];
        self.src.fill(&mut zeros[..pad], "block padding")?;
        self.block.resize(size as usize, 0);
        let mut block = std::mem::take(&mut self.block);
        let r = self.src.fill(&mut block, "a block");
        self.block = block;
        r
    }

    fn pointer_size(&self) -> usize {
        match self.header.map(|h| h.pointer_size) {
            Some(4) => 4,
            _ => 8,
        }
    }

    fn stack_block(&mut self) -> Result<()> {
        let mut c = Cursor::new(&self.block);
        let first = c.u32()?;
        let count = c.u32()?;
        let ptr = self.pointer_size();
        for i in 0..count {
            let size = c.u32()? as usize;
            let bytes = c.take(size)?;
            if !size.is_multiple_of(ptr) {
                return Err(Error::Malformed(format!("stack of {size} bytes")));
            }
            let ips = bytes
                .chunks_exact(ptr)
                .map(|b| {
                    if ptr == 8 {
                        u64::from_le_bytes(b.try_into().expect("8"))
                    } else {
                        u32::from_le_bytes(b.try_into().expect("4")) as u64
                    }
                })
                .collect();
            self.stacks.insert(first.wrapping_add(i), ips);
            self.stats.stacks += 1;
        }
        Ok(())
    }

    fn sequence_point_block(&mut self, handler: &mut dyn Handler) -> Result<()> {
        // i64 timestamp, i32 thread count, (i64 tid, i32 seq) × count: nothing in it is needed
        // beyond the barrier itself.
        let mut c = Cursor::new(&self.block);
        let _timestamp = c.i64()?;
        let threads = c.u32()? as usize;
        c.take(
            threads
                .checked_mul(12)
                .ok_or_else(|| Error::Malformed("sequence point".into()))?,
        )?;
        self.stacks.clear();
        self.stats.sequence_points += 1;
        handler.sequence_point();
        Ok(())
    }

    fn event_block(&mut self, handler: &mut dyn Handler, is_metadata: bool) -> Result<()> {
        let block = std::mem::take(&mut self.block);
        let result = self.event_blobs(&block, handler, is_metadata);
        self.block = block;
        result
    }

    fn event_blobs(
        &mut self,
        block: &[u8],
        handler: &mut dyn Handler,
        is_metadata: bool,
    ) -> Result<()> {
        let mut c = Cursor::new(block);
        let header_size = c.u16()? as usize;
        let flags = c.u16()?;
        if header_size < 4 {
            return Err(Error::Malformed(format!(
                "event block header of {header_size} bytes"
            )));
        }
        c.take(header_size - 4)?;
        let compressed = flags & 1 != 0;
        let mut h = BlobHeader::default();
        while !c.is_empty() {
            if compressed {
                h.read_compressed(&mut c)?;
            } else {
                h.read_uncompressed(&mut c)?;
            }
            let payload = c.take(h.payload_size as usize)?;
            if !compressed {
                // Uncompressed blobs are padded to 4 bytes (relative to the block start).
                let pad = (4 - c.pos % 4) % 4;
                c.take(pad.min(c.remaining()))?;
            }
            if is_metadata {
                self.add_metadata(payload)?;
                continue;
            }
            self.stats.events += 1;
            let Some(metadata) = self.metadata.get(&h.metadata_id) else {
                return Err(Error::Malformed(format!(
                    "event with unknown metadata id {}",
                    h.metadata_id
                )));
            };
            let stack: &[u64] = match h.stack_id {
                0 => &[],
                id => match self.stacks.get(&id) {
                    Some(s) => s,
                    None => {
                        self.stats.missing_stacks += 1;
                        &[]
                    }
                },
            };
            handler.event(&Event {
                metadata,
                thread_id: h.thread_id,
                timestamp: h.timestamp,
                stack,
                payload,
            });
        }
        Ok(())
    }

    fn add_metadata(&mut self, payload: &[u8]) -> Result<()> {
        let mut c = Cursor::new(payload);
        let id = c.u32()?;
        let provider = c.utf16z()?;
        let event_id = c.u32()?;
        let event_name = c.utf16z()?;
        let _keywords = c.i64()?;
        let version = c.u32()?;
        // Level, field descriptions and V5 tags follow; native runtime events have none of use.
        let provider: Arc<str> = match self.metadata.values().find(|m| *m.provider == *provider) {
            Some(m) => m.provider.clone(),
            None => provider.into(),
        };
        self.metadata.insert(
            id,
            Metadata {
                provider,
                event_id,
                event_name,
                version,
            },
        );
        self.stats.metadata += 1;
        Ok(())
    }
}

/// The state carried from one compressed blob header to the next (reset at each block).
#[derive(Default)]
struct BlobHeader {
    metadata_id: u32,
    sequence: u32,
    capture_thread_id: u64,
    processor: u32,
    thread_id: u64,
    stack_id: u32,
    timestamp: i64,
    payload_size: u32,
}

impl BlobHeader {
    fn read_compressed(&mut self, c: &mut Cursor<'_>) -> Result<()> {
        let flags = c.u8()?;
        if flags & 1 != 0 {
            self.metadata_id = c.varu32()?;
        }
        if flags & 2 != 0 {
            self.sequence = self.sequence.wrapping_add(c.varu32()?.wrapping_add(1));
            self.capture_thread_id = c.varu64()?;
            self.processor = c.varu32()?;
        } else if self.metadata_id != 0 {
            self.sequence = self.sequence.wrapping_add(1);
        }
        if flags & 4 != 0 {
            self.thread_id = c.varu64()?;
        }
        if flags & 8 != 0 {
            self.stack_id = c.varu32()?;
        }
        self.timestamp = self.timestamp.wrapping_add(c.varu64()? as i64);
        if flags & 16 != 0 {
            c.take(16)?;
        }
        if flags & 32 != 0 {
            c.take(16)?;
        }
        if flags & 128 != 0 {
            self.payload_size = c.varu32()?;
        }
        Ok(())
    }

    fn read_uncompressed(&mut self, c: &mut Cursor<'_>) -> Result<()> {
        let _size = c.u32()?;
        self.metadata_id = c.u32()? & 0x7FFF_FFFF;
        self.sequence = c.u32()?;
        self.thread_id = c.i64()? as u64;
        self.capture_thread_id = c.i64()? as u64;
        self.processor = c.u32()?;
        self.stack_id = c.u32()?;
        self.timestamp = c.i64()?;
        c.take(32)?;
        self.payload_size = c.u32()?;
        Ok(())
    }
}

/// Little-endian reads from a byte slice, failing (never panicking) past its end.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Malformed(format!(
                "{n} bytes wanted at {} of a {}-byte record",
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    pub fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(self.u64()? as i64)
    }

    pub fn varu64(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Malformed("varint longer than 10 bytes".into()))
    }

    pub fn varu32(&mut self) -> Result<u32> {
        let v = self.varu64()?;
        u32::try_from(v).map_err(|_| Error::Malformed(format!("varint {v} does not fit 32 bits")))
    }

    /// A NUL-terminated UTF-16LE string.
    pub fn utf16z(&mut self) -> Result<String> {
        let mut units = Vec::new();
        loop {
            let u = self.u16()?;
            if u == 0 {
                break;
            }
            units.push(u);
        }
        Ok(String::from_utf16_lossy(&units))
    }
}
