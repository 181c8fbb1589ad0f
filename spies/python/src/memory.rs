//! Reading the target's memory with as few `process_vm_readv` calls as the data allows.
//!
//! A call costs about 1.3-2.2 µs whatever it reads up to a few KiB, plus about 0.5 µs per extra
//! remote iovec; so the reader asks for whole 4 KiB pages, merges neighbouring pages into one
//! iovec, and asks for every page it already knows it needs (the 3.11+ data stack, every code
//! object of a sample) in one call. [`Pages`] holds what one sample read: a page is read at most
//! once per sample, and never kept across samples (everything in it may have changed); only the
//! list of pages a sample used is kept, for the next sample to read them all in its first call.

use remoteprocess::ProcessMemory;
use rustc_hash::FxHashMap;
use std::io;

pub const PAGE: usize = 4096;

/// End of the user address space on x86_64 (47-bit): a pointer at or past it is garbage (a torn
/// read), never read.
const USER_END: usize = 0x0000_8000_0000_0000;

/// The largest range one read may ask for (a data stack in use is far smaller).
const MAX_RANGE: usize = 4 << 20;

/// At most this many iovecs per call (the kernel's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Pages of a target's memory, by page address (each [`PAGE`] bytes): what a recording holds.
pub type PageMap = std::collections::BTreeMap<usize, Vec<u8>>;

/// The target's address space, and a count of the calls made on it. Or a recording of the
/// pages a read used, served instead of the live process ([`Memory::replaying`]): a recorded
/// fixture is read by the very same reader code.
pub struct Memory {
    pid: libc::pid_t,
    calls: std::cell::Cell<u64>,
    replay: Option<std::sync::Arc<PageMap>>,
    record: Option<std::cell::RefCell<PageMap>>,
}

impl Memory {
    pub fn new(pid: u32) -> Memory {
        Memory {
            pid: pid as libc::pid_t,
            calls: std::cell::Cell::new(0),
            replay: None,
            record: None,
        }
    }

    /// Reads `pid` and keeps a copy of every page read ([`Memory::recorded`]); the process
    /// should be stopped, so that the copies are what the reads saw.
    pub fn recording(pid: u32) -> Memory {
        Memory {
            record: Some(Default::default()),
            ..Memory::new(pid)
        }
    }

    /// Serves reads from recorded pages; a read of a page not recorded fails as an unmapped
    /// one does.
    pub fn replaying(pages: std::sync::Arc<PageMap>) -> Memory {
        Memory {
            replay: Some(pages),
            ..Memory::new(0)
        }
    }

    /// The pages recorded so far.
    pub fn recorded(&self) -> PageMap {
        self.record
            .as_ref()
            .map(|r| r.borrow().clone())
            .unwrap_or_default()
    }

    fn replay_ranges(pages: &PageMap, ranges: &[(usize, usize)], buf: &mut [u8]) -> usize {
        let mut done = 0;
        for &(addr, len) in ranges {
            let mut at = addr;
            while at < addr + len {
                let page = at & !(PAGE - 1);
                let Some(bytes) = pages.get(&page) else {
                    return done;
                };
                let n = (page + PAGE - at).min(addr + len - at);
                buf[done..done + n].copy_from_slice(&bytes[at - page..at - page + n]);
                done += n;
                at += n;
            }
        }
        done
    }

    /// Keeps a copy of every page of the ranges read (whole pages, read again now).
    fn record_pages(&self, ranges: &[(usize, usize)], read: usize) {
        let Some(record) = &self.record else { return };
        let mut left = read;
        for &(addr, len) in ranges {
            let len = len.min(left);
            left -= len;
            let mut page = addr & !(PAGE - 1);
            while page < addr + len {
                if !record.borrow().contains_key(&page) {
                    let mut bytes = vec![0u8; PAGE];
                    let local = libc::iovec {
                        iov_base: bytes.as_mut_ptr().cast(),
                        iov_len: PAGE,
                    };
                    let remote = libc::iovec {
                        iov_base: page as *mut libc::c_void,
                        iov_len: PAGE,
                    };
                    // SAFETY: the local iovec is `bytes`, alive for the call.
                    let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
                    if n == PAGE as isize {
                        record.borrow_mut().insert(page, bytes);
                    }
                }
                page += PAGE;
            }
        }
    }

    /// `process_vm_readv` calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.get()
    }

    /// Reads every `(address, length)` range into consecutive parts of `buf` (one call per
    /// [`IOV_MAX`] ranges); the number of bytes read. A short count means a range that was not
    /// mapped: the kernel stops at the first one.
    pub fn read_ranges(&self, ranges: &[(usize, usize)], buf: &mut [u8]) -> io::Result<usize> {
        if let Some(pages) = &self.replay {
            self.calls.set(self.calls.get() + 1);
            return Ok(Memory::replay_ranges(pages, ranges, buf));
        }
        let done = self.read_live(ranges, buf)?;
        self.record_pages(ranges, done);
        Ok(done)
    }

    fn read_live(&self, ranges: &[(usize, usize)], buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0usize;
        let mut local = Vec::with_capacity(ranges.len().min(IOV_MAX));
        let mut remote = Vec::with_capacity(ranges.len().min(IOV_MAX));
        for batch in ranges.chunks(IOV_MAX) {
            local.clear();
            remote.clear();
            let mut at = done;
            for &(addr, len) in batch {
                local.push(libc::iovec {
                    iov_base: buf[at..at + len].as_mut_ptr().cast(),
                    iov_len: len,
                });
                remote.push(libc::iovec {
                    iov_base: addr as *mut libc::c_void,
                    iov_len: len,
                });
                at += len;
            }
            self.calls.set(self.calls.get() + 1);
            // SAFETY: every local iovec lies inside `buf`, which outlives the call.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            done += n as usize;
            if done < at {
                return Ok(done);
            }
        }
        Ok(done)
    }
}

impl ProcessMemory for Memory {
    fn read(&self, addr: usize, buf: &mut [u8]) -> Result<(), remoteprocess::Error> {
        let n = self.read_ranges(&[(addr, buf.len())], buf)?;
        if n < buf.len() {
            return Err(remoteprocess::Error::IOError(io::Error::from_raw_os_error(
                libc::EFAULT,
            )));
        }
        Ok(())
    }
}

impl spy::tids::ReadMemory for Memory {
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> bool {
        ProcessMemory::read(self, addr, buf).is_ok()
    }
}

/// The pages one sample has read.
#[derive(Default)]
pub struct Pages {
    /// Page address → offset of its copy in `bytes`, and whether this sample used it.
    index: FxHashMap<usize, (usize, std::cell::Cell<bool>)>,
    /// The pages the previous sample used: the next one reads them first, in one call.
    last_used: Vec<usize>,
    /// Page copies; only `bytes[..used]` belong to this sample (the rest is kept, not zeroed).
    bytes: Vec<u8>,
    used: usize,
    /// Pages found unreadable during this sample.
    unreadable: Vec<usize>,
    /// Reused by every read (no allocation per sample): ranges, wanted pages, runs of pages.
    scratch_ranges: Vec<(usize, usize)>,
    scratch_pages: Vec<usize>,
    scratch_runs: Vec<(usize, usize)>,
}

impl Pages {
    /// Forgets everything (at the start of a sample); keeps the allocations.
    pub fn clear(&mut self) {
        self.last_used.clear();
        self.last_used.extend(
            self.index
                .iter()
                .filter(|(_, (_, u))| u.get())
                .map(|(&p, _)| p),
        );
        self.index.clear();
        self.used = 0;
        self.unreadable.clear();
    }

    /// Reads, in one call, the pages the previous sample used (a stack that did not change needs
    /// exactly those: the thread states, the frames, the code objects), and `ranges`.
    pub fn start_sample(&mut self, mem: &Memory, ranges: &[(usize, usize)]) {
        let mut all = std::mem::take(&mut self.scratch_ranges);
        all.clear();
        all.extend(self.last_used.iter().map(|&p| (p, PAGE)));
        all.extend_from_slice(ranges);
        self.prefetch(mem, &all);
        self.scratch_ranges = all;
    }

    /// Reads, in one call, every page that holds part of one of `ranges` and is not read yet.
    /// Pages that turn out unmapped are remembered as such; the others are kept.
    pub fn prefetch(&mut self, mem: &Memory, ranges: &[(usize, usize)]) {
        let mut wanted = std::mem::take(&mut self.scratch_pages);
        wanted.clear();
        for &(addr, len) in ranges {
            // Garbage (from a read that tore) is not read: it would be unmapped anyway, and an
            // end past the address space would wrap around.
            let end = addr.checked_add(len);
            if len == 0 || len > MAX_RANGE || addr < PAGE || end.is_none_or(|e| e > USER_END) {
                continue;
            }
            let first = addr & !(PAGE - 1);
            let last = (addr + len - 1) & !(PAGE - 1);
            let mut page = first;
            while page <= last {
                if !self.index.contains_key(&page) && !self.unreadable.contains(&page) {
                    wanted.push(page);
                }
                page += PAGE;
            }
        }
        if !wanted.is_empty() {
            wanted.sort_unstable();
            wanted.dedup();
            // Neighbouring pages become one iovec.
            let mut runs = std::mem::take(&mut self.scratch_runs);
            runs.clear();
            for &page in &wanted {
                match runs.last_mut() {
                    Some((start, len)) if *start + *len == page => *len += PAGE,
                    _ => runs.push((page, PAGE)),
                }
            }
            self.read_runs(mem, &runs);
            self.scratch_runs = runs;
        }
        self.scratch_pages = wanted;
    }

    fn read_runs(&mut self, mem: &Memory, runs: &[(usize, usize)]) {
        let base = self.used;
        let total: usize = runs.iter().map(|r| r.1).sum();
        if self.bytes.len() < base + total {
            self.bytes.resize(base + total, 0);
        }
        self.used = base + total;
        let got = mem
            .read_ranges(runs, &mut self.bytes[base..base + total])
            .unwrap_or(0);
        let mut at = 0usize;
        for (i, &(start, len)) in runs.iter().enumerate() {
            let good = got.saturating_sub(at).min(len) / PAGE;
            for k in 0..good {
                self.index
                    .insert(start + k * PAGE, (base + at + k * PAGE, Default::default()));
            }
            if good * PAGE == len {
                at += len;
                continue;
            }
            // This run stopped at page `good`; nothing after it was read.
            self.used = base + at + good * PAGE;
            let failed = start + good * PAGE;
            let mut rest: Vec<(usize, usize)> = Vec::new();
            if good > 0 || len == PAGE {
                // The kernel got that far, so the page it stopped at is the unmapped one.
                self.unreadable.push(failed);
                if failed + PAGE < start + len {
                    rest.push((failed + PAGE, start + len - failed - PAGE));
                }
            } else {
                // Nothing of a longer run: which of its pages is unmapped is found page by page.
                rest.extend((0..len / PAGE).map(|k| (start + k * PAGE, PAGE)));
            }
            rest.extend_from_slice(&runs[i + 1..]);
            if !rest.is_empty() {
                self.read_runs(mem, &rest);
            }
            return;
        }
    }

    /// Copies `buf.len()` bytes at `addr`, reading the pages not yet read (one call).
    pub fn read(&mut self, mem: &Memory, addr: usize, buf: &mut [u8]) -> io::Result<()> {
        if !self.copy(addr, buf) {
            self.prefetch(mem, &[(addr, buf.len())]);
            if !self.copy(addr, buf) {
                return Err(io::Error::from_raw_os_error(libc::EFAULT));
            }
        }
        Ok(())
    }

    /// A `T` at `addr` (a plain C struct: any bytes are a valid value).
    pub fn get<T: Copy>(&mut self, mem: &Memory, addr: usize) -> io::Result<T> {
        let mut value = std::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the bytes are all written by `read` before `assume_init`, and T is plain
        // old data (bindgen's structs of integers and raw pointers).
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                value.as_mut_ptr().cast::<u8>(),
                std::mem::size_of::<T>(),
            )
        };
        self.read(mem, addr, bytes)?;
        Ok(unsafe { value.assume_init() })
    }

    /// Copies from pages already read; false when one is missing.
    fn copy(&self, addr: usize, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let at = addr + done;
            let page = at & !(PAGE - 1);
            let Some((offset, used)) = self.index.get(&page) else {
                return false;
            };
            used.set(true);
            let offset = *offset;
            let within = at - page;
            let n = (PAGE - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&self.bytes[offset + within..offset + within + n]);
            done += n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_read_once_and_merged() {
        // Our own memory: three pages of a known pattern, the middle one unmapped.
        let len = 4 * PAGE;
        // SAFETY: a fresh anonymous mapping, unmapped at the end of the test.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as usize;
        for i in 0..len {
            unsafe { *((base + i) as *mut u8) = (i % 251) as u8 };
        }
        let mem = Memory::new(std::process::id());
        let mut pages = Pages::default();
        // Two neighbouring pages and one further away: one call.
        pages.prefetch(&mem, &[(base + 10, 2 * PAGE), (base + 3 * PAGE + 5, 8)]);
        assert_eq!(mem.calls(), 1);
        let mut buf = vec![0u8; PAGE + 100];
        pages.read(&mem, base + PAGE - 50, &mut buf).unwrap();
        assert_eq!(mem.calls(), 1, "already read");
        assert!(buf
            .iter()
            .enumerate()
            .all(|(i, &b)| b == ((PAGE - 50 + i) % 251) as u8));
        let v: u64 = pages.get(&mem, base + 3 * PAGE + 8).unwrap();
        assert_eq!(v.to_ne_bytes()[0], ((3 * PAGE + 8) % 251) as u8);
        assert_eq!(mem.calls(), 1);

        // An unmapped page in the middle of a run: the pages around it are still read.
        unsafe { libc::munmap((base + PAGE) as *mut libc::c_void, PAGE) };
        pages.clear();
        pages.prefetch(&mem, &[(base, 3 * PAGE)]);
        assert!(pages.read(&mem, base + 8, &mut [0u8; 8]).is_ok());
        assert!(pages.read(&mem, base + 2 * PAGE, &mut [0u8; 8]).is_ok());
        let calls = mem.calls();
        assert!(pages.read(&mem, base + PAGE, &mut [0u8; 8]).is_err());
        assert_eq!(mem.calls(), calls, "an unreadable page is not tried again");
        // Garbage pointers (torn reads): refused without a call, never a wrap-around.
        for addr in [
            0usize,
            8,
            usize::MAX - 3,
            0xffff_ffff_ffff_f000,
            USER_END - 8,
        ] {
            assert!(pages.read(&mem, addr, &mut [0u8; 16]).is_err(), "{addr:#x}");
        }
        assert_eq!(mem.calls(), calls);
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
    }
}
