//! Python thread names (`threading.Thread.name`), for the `thread_name` label of each sample.
//!
//! CPython keeps them in `threading._active` (ident → `Thread`), a dict walk that py-spy's
//! `thread_names_from_interpreter` does: about a millisecond and a few hundred reads. So it is
//! made only when a stack shows a thread whose name is not known yet (at most every [`RETRY`]),
//! and every [`REFRESH`] to catch renames; between walks the names are kept. A thread
//! `threading` does not list (the main thread before `threading` is imported, a thread started
//! with `_thread`) has no Python name: its OS name is used, and it is looked for again only at
//! the next refresh.

use py_spy::python_process_info::PythonProcessLayout;
use py_spy::python_threading::thread_names_from_interpreter;
use py_spy::version::Version;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the names are: py-spy's layout of the process (`sys.modules`' address) and its version.
/// A forked child has its parent's.
#[derive(Clone, Debug)]
pub struct Where {
    pub layout: PythonProcessLayout,
    pub version: Version,
}

/// No walk sooner than this after the last one for a thread not met before (a new thread has
/// its name within a few samples; at most 10 walks a second, ~1% of a core, while threads are
/// being born).
const RETRY: Duration = Duration::from_millis(100);
/// Names are walked again this often (threads can be renamed).
const REFRESH: Duration = Duration::from_secs(10);

pub struct ThreadNames {
    pid: u32,
    process: remoteprocess::Process,
    at: Where,
    by_ident: HashMap<u64, Arc<str>>,
    /// Threads a walk did not find: not looked for again before the next refresh.
    unlisted: std::collections::HashSet<u64>,
    walked: Option<Instant>,
    /// Walks that failed in a row; past a few, the process's names are given up (e.g. a
    /// `threading` module this walk cannot read).
    failures: u32,
}

impl ThreadNames {
    pub fn new(pid: u32, at: Where) -> Option<ThreadNames> {
        let process = remoteprocess::Process::new(pid as remoteprocess::Pid).ok()?;
        Some(ThreadNames {
            pid,
            process,
            at,
            by_ident: HashMap::new(),
            unlisted: Default::default(),
            walked: None,
            failures: 0,
        })
    }

    /// The Python name of the thread whose `threading.get_ident()` is `ident`.
    pub fn get(&mut self, ident: u64) -> Option<Arc<str>> {
        if self.failures >= 5 {
            return None;
        }
        let new = !self.by_ident.contains_key(&ident) && !self.unlisted.contains(&ident);
        let due = match self.walked {
            None => true,
            Some(at) => {
                let since = at.elapsed();
                since >= REFRESH || (since >= RETRY && new)
            }
        };
        if due {
            self.walk();
            if new && !self.by_ident.contains_key(&ident) {
                self.unlisted.insert(ident);
            }
        }
        self.by_ident.get(&ident).cloned()
    }

    fn walk(&mut self) {
        let start = Instant::now();
        let first = self.walked.is_none();
        self.walked = Some(start);
        match walk(&self.process, &self.at) {
            Ok(names) => {
                if first {
                    log::debug!(
                        "process {}: {} Python thread names read in {} µs",
                        self.pid,
                        names.len(),
                        start.elapsed().as_micros()
                    );
                }
                self.failures = 0;
                self.unlisted.clear();
                // Unchanged names keep their allocation.
                let old = std::mem::take(&mut self.by_ident);
                self.by_ident = names
                    .into_iter()
                    .map(|(ident, name)| {
                        let kept = old.get(&ident).filter(|o| ***o == *name).cloned();
                        (ident, kept.unwrap_or_else(|| name.into()))
                    })
                    .collect();
            }
            Err(e) => {
                self.failures += 1;
                if self.failures == 5 {
                    log::debug!(
                        "process {}: Python thread names cannot be read ({e:#}); OS thread names are used",
                        self.pid
                    );
                }
            }
        }
    }
}

fn walk(process: &remoteprocess::Process, at: &Where) -> anyhow::Result<HashMap<u64, String>> {
    use py_spy::python_bindings::*;
    let (l, v) = (&at.layout, &at.version);
    match (v.major, v.minor) {
        (3, 6) => thread_names_from_interpreter::<v3_6_6::_is, _>(l, process, v),
        (3, 7) => thread_names_from_interpreter::<v3_7_0::_is, _>(l, process, v),
        (3, 8) => thread_names_from_interpreter::<v3_8_0::_is, _>(l, process, v),
        (3, 9) => thread_names_from_interpreter::<v3_9_5::_is, _>(l, process, v),
        (3, 10) => thread_names_from_interpreter::<v3_10_0::_is, _>(l, process, v),
        (3, 11) => thread_names_from_interpreter::<v3_11_0::_is, _>(l, process, v),
        (3, 12) => thread_names_from_interpreter::<v3_12_0::_is, _>(l, process, v),
        (3, 13) => thread_names_from_interpreter::<v3_13_0::_is, _>(l, process, v),
        (3, 14) => thread_names_from_interpreter::<v3_14_0::_is, _>(l, process, v),
        (3, 15) => thread_names_from_interpreter::<v3_15_0::_is, _>(l, process, v),
        _ => anyhow::bail!("no thread-name walk for CPython {v}"),
    }
}
