//! `--spool-dir`: windows waiting for the server, kept on disk so that neither a long outage nor
//! a restart loses them.
//!
//! Every window is written here when it is queued (one file, written to a temporary name and
//! renamed, so a file is whole or absent) and deleted once the server took it (or refused it
//! for good). So what a killed agent had not sent is still here for the next run with the same
//! directory, which sends it first, in order, with the labels it was recorded with. The files
//! are ordered by window start; past `--spool-max-size` the oldest are deleted, with a warning.
//! One agent uses a directory at a time (an exclusive `flock` on `DIR/.lock`).

use super::push::{LabelPair, Labels};
use super::queue::Job;
use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use prost::Message;
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SUFFIX: &str = ".window";
const MAGIC: &[u8; 8] = b"PYSPOOL1";

/// One window on disk: everything needed to send it again, from any run.
#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    app_name: String,
    #[prost(message, repeated, tag = "3")]
    tags: Vec<LabelPair>,
    #[prost(uint32, tag = "4")]
    sample_rate: u32,
    #[prost(string, tag = "5")]
    spy_name: String,
    #[prost(int64, tag = "6")]
    start_ns: i64,
    #[prost(int64, tag = "7")]
    end_ns: i64,
    #[prost(bytes = "vec", tag = "8")]
    pprof_gz: Vec<u8>,
}

struct Stored {
    path: PathBuf,
    size: u64,
    start: SystemTime,
    end: SystemTime,
}

pub struct Spool {
    dir: PathBuf,
    files: VecDeque<Stored>,
    bytes: u64,
    max_bytes: u64,
    seq: u64,
    _lock: Flock<File>,
}

/// Checks at start that `dir` can be used (created if missing, writable, not in use by another
/// agent), so a bad directory is one error before the program runs.
pub fn check(dir: &Path) -> Result<()> {
    Spool::open(dir, u64::MAX).map(|_| ())
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool> {
        let shown = dir.display();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot use --spool-dir {shown}: cannot create it"))?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot use --spool-dir {shown}: cannot write in it"))?;
        let lock = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                bail!("cannot use --spool-dir {shown}: another pyroscope is using it (give each agent its own directory)")
            }
            Err((_, e)) => bail!("cannot use --spool-dir {shown}: cannot lock it: {e}"),
        };
        let mut files = Vec::new();
        let mut bytes = 0;
        for entry in std::fs::read_dir(dir)
            .with_context(|| format!("cannot use --spool-dir {shown}: cannot list it"))?
        {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write cut short by a kill: never renamed, so never complete.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(stem) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            let Some((start, end)) = parse_name(stem) else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            bytes += size;
            files.push(Stored {
                path: entry.path(),
                size,
                start,
                end,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let seq = files.len() as u64;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            files: files.into(),
            bytes,
            max_bytes,
            seq,
            _lock: lock,
        };
        spool.trim();
        Ok(spool)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a window; returns the windows (start, end) deleted to stay under the size bound.
    pub fn push(&mut self, job: &Job) -> Result<Vec<(SystemTime, SystemTime)>> {
        let entry = Entry {
            id: job.id.clone(),
            app_name: job.labels.app_name.clone(),
            tags: job
                .labels
                .tags
                .iter()
                .map(|(k, v)| LabelPair {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            sample_rate: job.labels.sample_rate,
            spy_name: job.spy_name.clone(),
            start_ns: unix_ns(job.start),
            end_ns: unix_ns(job.end),
            pprof_gz: job.pprof_gz.clone(),
        };
        let mut bytes = MAGIC.to_vec();
        entry.encode(&mut bytes).expect("encoding to memory");
        self.seq += 1;
        let name = format!(
            "{:020}-{:020}-{:08}-{}{SUFFIX}",
            entry.start_ns.max(0),
            entry.end_ns.max(0),
            self.seq % 100_000_000,
            job.id
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                anyhow::anyhow!("cannot write to --spool-dir {}: {e}", self.dir.display())
            })?;
        self.bytes += bytes.len() as u64;
        self.files.push_back(Stored {
            path,
            size: bytes.len() as u64,
            start: job.start,
            end: job.end,
        });
        Ok(self.trim())
    }

    /// Deletes the oldest files while over the size bound (never the newest one).
    fn trim(&mut self) -> Vec<(SystemTime, SystemTime)> {
        let mut dropped = Vec::new();
        while self.bytes > self.max_bytes && self.files.len() > 1 {
            let f = self.files.pop_front().expect("len > 1");
            let _ = std::fs::remove_file(&f.path);
            self.bytes -= f.size;
            dropped.push((f.start, f.end));
        }
        dropped
    }

    /// The oldest window, read back; `Err` (with the reason) when its file is unreadable, which
    /// the caller drops with [`Spool::pop_front`].
    pub fn front(&self) -> Option<Result<Job, String>> {
        let f = self.files.front()?;
        Some(read(&f.path).map_err(|e| format!("{}: {e}", f.path.display())))
    }

    /// The oldest window's time range.
    pub fn front_window(&self) -> Option<(SystemTime, SystemTime)> {
        self.files.front().map(|f| (f.start, f.end))
    }

    /// Deletes the oldest window (sent, refused for good, or unreadable).
    pub fn pop_front(&mut self) {
        if let Some(f) = self.files.pop_front() {
            let _ = std::fs::remove_file(&f.path);
            self.bytes -= f.size;
        }
    }

    /// The time range of every window still on disk.
    pub fn windows(&self) -> Vec<(SystemTime, SystemTime)> {
        self.files.iter().map(|f| (f.start, f.end)).collect()
    }
}

fn read(path: &Path) -> std::result::Result<Job, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a spooled window")?;
    let e = Entry::decode(body).map_err(|e| format!("corrupt: {e}"))?;
    Ok(Job {
        id: e.id,
        labels: Arc::new(Labels {
            app_name: e.app_name,
            tags: e.tags.into_iter().map(|l| (l.name, l.value)).collect(),
            sample_rate: e.sample_rate,
        }),
        spy_name: e.spy_name,
        start: from_unix_ns(e.start_ns),
        end: from_unix_ns(e.end_ns),
        pprof_gz: e.pprof_gz,
    })
}

/// `START-END-SEQ-ID` → (start, end).
fn parse_name(stem: &str) -> Option<(SystemTime, SystemTime)> {
    let mut it = stem.splitn(4, '-');
    let start: i64 = it.next()?.parse().ok()?;
    let end: i64 = it.next()?.parse().ok()?;
    Some((from_unix_ns(start), from_unix_ns(end)))
}

fn unix_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn from_unix_ns(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(i: u64) -> Job {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 10 * i);
        Job {
            id: format!("id-{i}"),
            labels: Arc::new(Labels {
                app_name: "shop".into(),
                tags: [("env".to_string(), "prod".to_string())].into(),
                sample_rate: 100,
            }),
            spy_name: "pyspy".into(),
            start,
            end: start + Duration::from_secs(10),
            pprof_gz: vec![i as u8; 1000],
        }
    }

    #[test]
    fn windows_survive_a_restart_in_order_and_the_size_is_bounded() {
        let dir = std::env::temp_dir().join(format!("spool-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut s = Spool::open(&dir, 3_500).unwrap();
            assert!(
                Spool::open(&dir, 3_500).is_err(),
                "a second agent is refused"
            );
            for i in 0..3 {
                assert!(s.push(&job(i)).unwrap().is_empty());
            }
            // The fourth pushes the oldest out.
            let dropped = s.push(&job(3)).unwrap();
            assert_eq!(dropped, vec![(job(0).start, job(0).end)]);
            assert_eq!(s.len(), 3);
        }
        // A write cut short leaves a .tmp file: ignored and removed.
        std::fs::write(dir.join("x.window.tmp"), b"partial").unwrap();
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(s.len(), 3);
        for i in 1..4 {
            let j = s.front().unwrap().unwrap();
            assert_eq!(j.id, format!("id-{i}"));
            assert_eq!(j.labels.tags["env"], "prod");
            assert_eq!(j.start, job(i).start);
            assert_eq!(j.pprof_gz, job(i).pprof_gz);
            s.pop_front();
        }
        assert!(s.is_empty());
        assert!(!dir.join("x.window.tmp").exists());
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
