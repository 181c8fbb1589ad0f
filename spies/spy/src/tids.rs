//! Maps a Python thread id (the `pthread_t`, which on glibc and musl is the address of the
//! thread's `struct pthread`) to its OS thread id, by reading the `tid` field of that struct in
//! the target's memory.
//!
//! CPython before 3.11 and Ruby before 3.2 keep only the `pthread_t` of a thread (CPython 3.11+
//! has `PyThreadState.native_thread_id`). Without the OS id a thread's state and CPU time cannot be
//! looked up: every thread of an older CPython would count as running, and no stack could be
//! weighted by its thread's CPU time. The offset of `tid` inside `struct pthread` depends on
//! the C library, so it is found once per process: the offset at which every Python thread's
//! struct holds one of the process's live tids, distinct per thread (glibc x86_64 uses 0x2d0).

use crate::ThreadActivity;
use std::collections::HashMap;

/// Another process's memory, as [`TidMap`] reads it.
pub trait ReadMemory {
    /// Fills `buf` from `addr`; false when that memory cannot be read.
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> bool;
}

/// A process's memory read with `process_vm_readv`.
pub struct ProcessVm(pub u32);

impl ReadMemory for ProcessVm {
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> bool {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: the local iovec is `buf`.
        let n = unsafe { libc::process_vm_readv(self.0 as libc::pid_t, &local, 1, &remote, 1, 0) };
        n == buf.len() as isize
    }
}

const SCAN_BYTES: usize = 0x800;
const GLIBC_X86_64_TID_OFFSET: usize = 0x2d0;

#[derive(Default)]
pub struct TidMap {
    offset: Option<usize>,
    cache: HashMap<u64, u32>,
}

impl TidMap {
    /// The OS tid of a thread the runtime knows by `tid` (an OS id, where it keeps one) and
    /// `pthread`: `tid` when it is one of the process's threads (a forked child's runtime may
    /// still hold its parent's), else the tid read through `pthread`.
    pub fn resolve(
        &mut self,
        mem: &dyn ReadMemory,
        tid: Option<u64>,
        pthread: u64,
        live: &ThreadActivity,
    ) -> Option<u32> {
        tid.and_then(|t| u32::try_from(t).ok())
            .filter(|t| live.contains_key(t))
            .or_else(|| self.lookup(mem, pthread, live))
    }

    /// The OS tid of the thread whose `pthread_t` is `pthread`, if it can be read.
    pub fn lookup(
        &mut self,
        mem: &dyn ReadMemory,
        pthread: u64,
        live: &ThreadActivity,
    ) -> Option<u32> {
        if let Some(&tid) = self.cache.get(&pthread) {
            if live.contains_key(&tid) {
                return Some(tid);
            }
            // pthread structs are recycled for new threads: re-read.
            self.cache.remove(&pthread);
        }
        let offset = match self.offset {
            Some(o) => o,
            None => {
                let o = find_offset(mem, pthread, live)?;
                self.offset = Some(o);
                o
            }
        };
        let mut buf = [0u8; 4];
        if !mem.read_bytes(pthread as usize + offset, &mut buf) {
            return None;
        }
        let tid = u32::from_ne_bytes(buf);
        if !live.contains_key(&tid) {
            return None;
        }
        self.cache.insert(pthread, tid);
        Some(tid)
    }
}

/// Finds the offset of `tid` in `struct pthread` from one thread's struct.
fn find_offset(mem: &dyn ReadMemory, pthread: u64, live: &ThreadActivity) -> Option<usize> {
    if pthread == 0 {
        return None;
    }
    let mut buf = vec![0u8; SCAN_BYTES];
    if !mem.read_bytes(pthread as usize, &mut buf) {
        return None;
    }
    let at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
    let candidates: Vec<usize> = (0..SCAN_BYTES)
        .step_by(4)
        .filter(|&o| {
            let v = at(o);
            v > 0 && live.contains_key(&v)
        })
        .collect();
    if candidates.contains(&GLIBC_X86_64_TID_OFFSET) {
        return Some(GLIBC_X86_64_TID_OFFSET);
    }
    candidates.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake address space: one page holding a `struct pthread` lookalike.
    struct Mem {
        base: usize,
        bytes: Vec<u8>,
    }

    impl ReadMemory for Mem {
        fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> bool {
            let Some(start) = addr.checked_sub(self.base) else {
                return false;
            };
            let Some(src) = self.bytes.get(start..start + buf.len()) else {
                return false;
            };
            buf.copy_from_slice(src);
            true
        }
    }

    #[test]
    fn finds_tid_at_glibc_offset_and_caches() {
        let mut bytes = vec![0u8; 0x1000];
        bytes[0x2d0..0x2d4].copy_from_slice(&4242u32.to_ne_bytes());
        let mem = Mem {
            base: 0x10000,
            bytes,
        };
        let live: ThreadActivity = [(4242, true), (4243, false)].into_iter().collect();
        let mut map = TidMap::default();
        assert_eq!(map.lookup(&mem, 0x10000, &live), Some(4242));
        assert_eq!(map.offset, Some(0x2d0));
        // A dead tid is not returned.
        let gone: ThreadActivity = [(1, true)].into_iter().collect();
        assert_eq!(map.lookup(&mem, 0x10000, &gone), None);
    }

    #[test]
    fn finds_other_libc_offsets() {
        let mut bytes = vec![0u8; 0x1000];
        bytes[0x30..0x34].copy_from_slice(&777u32.to_ne_bytes());
        let mem = Mem {
            base: 0x2000,
            bytes,
        };
        let live: ThreadActivity = [(777, true)].into_iter().collect();
        let mut map = TidMap::default();
        assert_eq!(map.lookup(&mem, 0x2000, &live), Some(777));
    }
}
