//! Maps a Python thread id (the `pthread_t`, which on glibc and musl is the address of the
//! thread's `struct pthread`) to its OS thread id, by reading the `tid` field of that struct in
//! the target's memory.
//!
//! py-spy knows the OS thread id directly only on CPython 3.11+ (`PyThreadState.native_thread_id`)
//! or with libunwind (register inspection, blocking mode only). Without it every thread of an
//! older CPython would count as running. The offset of `tid` inside `struct pthread` depends on
//! the C library, so it is found once per process: the offset at which every Python thread's
//! struct holds one of the process's live tids, distinct per thread (glibc x86_64 uses 0x2d0).

use remoteprocess::ProcessMemory;
use spy::ThreadActivity;
use std::collections::HashMap;

const SCAN_BYTES: usize = 0x800;
const GLIBC_X86_64_TID_OFFSET: usize = 0x2d0;

#[derive(Default)]
pub struct TidMap {
    offset: Option<usize>,
    cache: HashMap<u64, u32>,
}

impl TidMap {
    /// The OS tid of the thread whose `pthread_t` is `pthread`, if it can be read.
    pub fn lookup<P: ProcessMemory>(
        &mut self,
        mem: &P,
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
        mem.read(pthread as usize + offset, &mut buf).ok()?;
        let tid = u32::from_ne_bytes(buf);
        if !live.contains_key(&tid) {
            return None;
        }
        self.cache.insert(pthread, tid);
        Some(tid)
    }
}

/// Finds the offset of `tid` in `struct pthread` from one thread's struct.
fn find_offset<P: ProcessMemory>(mem: &P, pthread: u64, live: &ThreadActivity) -> Option<usize> {
    if pthread == 0 {
        return None;
    }
    let mut buf = vec![0u8; SCAN_BYTES];
    mem.read(pthread as usize, &mut buf).ok()?;
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

    impl ProcessMemory for Mem {
        fn read(&self, addr: usize, buf: &mut [u8]) -> Result<(), remoteprocess::Error> {
            let start = addr
                .checked_sub(self.base)
                .ok_or_else(|| remoteprocess::Error::Other("oob".into()))?;
            let src = self
                .bytes
                .get(start..start + buf.len())
                .ok_or_else(|| remoteprocess::Error::Other("oob".into()))?;
            buf.copy_from_slice(src);
            Ok(())
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
