//! CPython releases newer than the ones checked with this build.
//!
//! Struct layouts are per minor version (py-spy's bindings, and ours for free-threaded 3.13), and
//! within a minor version CPython keeps the layouts the reader uses. A patch release newer than
//! the newest one checked here (live tests and recorded fixtures) is read with its minor
//! version's layout, as Ruby patch releases are (see the Ruby spy): after one warning, and shown
//! only once its first stacks look right; stacks that look wrong, or reads that keep failing,
//! end its profiling with one clear error. A minor version with no layout at all is refused
//! before this (py-spy: "Unsupported version of Python").

use spy::{SampleError, Stack};
use std::collections::HashSet;
use std::sync::Mutex;

/// The newest release of each minor version checked with this build (`tests/versions.rs`,
/// `tests/python_reader.rs`, `tests/data/python/`). Free-threaded builds: the same numbers.
pub const CHECKED: &[(u64, u64, u64)] = &[
    (2, 7, 18),
    (3, 6, 15),
    (3, 7, 16),
    (3, 8, 18),
    (3, 9, 18),
    (3, 10, 13),
    (3, 11, 7),
    (3, 12, 1),
    (3, 13, 15),
    (3, 14, 3),
];

/// Stacks that must look right before the layout is trusted.
const SANE_STACKS_NEEDED: u32 = 5;

/// Failed reads, with no sane stack yet, after which the layout is given up (about a second at
/// the default rate; a CPython still starting fails a few).
const FAILED_READS_ALLOWED: u32 = 100;

/// Stacks with no Python file in them after which the layout is given up.
const INCONCLUSIVE_STACKS_ALLOWED: u32 = 200;

/// A release on trial.
#[derive(Debug)]
pub struct Unverified {
    pid: u32,
    running: String,
    layout: String,
    sane: u32,
    inconclusive: u32,
    failed: u32,
}

/// `major.minor.patch` of a version string such as `3.13.15t` or `3.14.0rc1`.
fn parse(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((major, minor, rest[..digits].parse().ok()?))
}

/// Versions already warned about in this run (forked workers of one interpreter warn once).
static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// `Some` when `version` is newer than every release of its minor version checked here (or its
/// minor version has none): said once per version, and its stacks are then checked.
pub fn unverified(pid: u32, version: &str) -> Option<Unverified> {
    let (major, minor, patch) = parse(version)?;
    let newest = CHECKED
        .iter()
        .find(|&&(a, b, _)| (a, b) == (major, minor))
        .map(|&(_, _, c)| c);
    if newest.is_some_and(|n| patch <= n) {
        return None;
    }
    let layout = format!("{major}.{minor}");
    let first = WARNED
        .lock()
        .map(|mut w| {
            w.get_or_insert_with(HashSet::new)
                .insert(version.to_string())
        })
        .unwrap_or(true);
    if first {
        let checked = match newest {
            Some(n) => format!(
                "newer than the newest {layout} release checked with this build ({layout}.{n})"
            ),
            None => format!("no {layout} release was checked with this build"),
        };
        log::warn!(
            "process {pid} runs CPython {version}: {checked}; reading it with the {layout} layout (its first stacks are checked)"
        );
    }
    Some(Unverified {
        pid,
        running: version.to_string(),
        layout,
        sane: 0,
        inconclusive: 0,
        failed: 0,
    })
}

/// Whether a stack looks like real Python: every frame has a printable, non-empty name and
/// file (else the layout is wrong), and some frame is of a Python file (`.py`) or of code
/// CPython names in angle brackets (`<frozen ...>`, `<string>`); else nothing is proven.
fn looks_sane(stack: &Stack) -> Result<bool, String> {
    let printable = |s: &str| !s.is_empty() && s.len() < 4096 && s.chars().all(|c| !c.is_control());
    for f in &stack.frames {
        if !printable(&f.function) || !printable(&f.file) {
            return Err(format!("unreadable frame {:?} in {:?}", f.function, f.file));
        }
    }
    Ok(stack
        .frames
        .iter()
        .any(|f| f.file.ends_with(".py") || f.file.ends_with(".pyw") || f.file.starts_with('<')))
}

impl Unverified {
    /// Checks the stacks of one sample (`out[first..]`; `failed`: the read failed): keeps
    /// those that prove something, `Ok(true)` once the layout is trusted, a fatal error when
    /// it reads this release wrong.
    pub fn check(
        &mut self,
        out: &mut Vec<Stack>,
        first: usize,
        failed: bool,
    ) -> Result<bool, SampleError> {
        let (running, layout) = (&self.running, &self.layout);
        if failed && self.sane == 0 {
            self.failed += 1;
            if self.failed >= FAILED_READS_ALLOWED {
                return Err(SampleError::Fatal(format!(
                    "reading CPython {running} with the {layout} layout keeps failing: CPython {running} is not supported"
                )));
            }
        }
        let mut wrong = None;
        let (mut sane, mut inconclusive) = (0, 0);
        let mut index = 0;
        out.retain(|stack| {
            index += 1;
            if index <= first || wrong.is_some() {
                return index <= first;
            }
            match looks_sane(stack) {
                Err(why) => {
                    wrong = Some(why);
                    false
                }
                // Not proof either way: not trusted, not shown.
                Ok(false) => {
                    inconclusive += 1;
                    false
                }
                Ok(true) => {
                    sane += 1;
                    true
                }
            }
        });
        if let Some(why) = wrong {
            out.truncate(first);
            return Err(SampleError::Fatal(format!(
                "stacks read with the {layout} layout look wrong ({why}): CPython {running} is not supported"
            )));
        }
        self.inconclusive += inconclusive;
        if self.sane == 0 && self.inconclusive >= INCONCLUSIVE_STACKS_ALLOWED {
            return Err(SampleError::Fatal(format!(
                "{} stacks read with the {layout} layout show no Python file: CPython {running} is not supported",
                self.inconclusive
            )));
        }
        self.sane += sane;
        if self.sane >= SANE_STACKS_NEEDED {
            log::info!(
                "process {}: the {layout} layout reads CPython {running} correctly",
                self.pid
            );
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spy::Frame;

    fn stack(frames: &[(&str, &str)]) -> Stack {
        Stack {
            thread_id: 1,
            cpu_ns: None,
            thread_name: None,
            frames: frames
                .iter()
                .map(|&(function, file)| Frame {
                    function: function.into(),
                    file: file.into(),
                    line: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn checked_releases_and_newer_ones() {
        assert_eq!(parse("3.13.15t"), Some((3, 13, 15)));
        assert_eq!(parse("3.14.0rc1"), Some((3, 14, 0)));
        assert!(unverified(1, "3.11.7").is_none());
        assert!(unverified(1, "3.11.2").is_none());
        assert!(unverified(1, "3.13.15t").is_none());
        let u = unverified(1, "3.11.99").expect("newer than checked");
        assert_eq!(u.layout, "3.11");
        assert!(unverified(1, "3.5.10").is_some(), "no 3.5 release checked");
    }

    #[test]
    fn sane_stacks_make_it_trusted_and_garbage_is_fatal() {
        let mut u = unverified(1, "3.12.99").unwrap();
        let mut out = vec![stack(&[("other", "x.py")])];
        for i in 0..SANE_STACKS_NEEDED {
            out.push(stack(&[("<module>", "app.py"), ("work", "app.py")]));
            // Inconclusive stacks are not shown.
            out.push(stack(&[("select", "select")]));
            let trusted = u.check(&mut out, 1 + i as usize, false).unwrap();
            assert_eq!(trusted, i + 1 == SANE_STACKS_NEEDED);
        }
        assert_eq!(out.len(), 1 + SANE_STACKS_NEEDED as usize);

        let mut u = unverified(1, "3.12.98").unwrap();
        let mut out = vec![stack(&[("\u{1}\u{2}", "app.py")])];
        match u.check(&mut out, 0, false) {
            Err(SampleError::Fatal(m)) => {
                assert!(m.contains("look wrong") && m.contains("3.12.98"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(out.is_empty());

        let mut u = unverified(1, "3.12.97").unwrap();
        for _ in 1..FAILED_READS_ALLOWED {
            assert!(!u.check(&mut Vec::new(), 0, true).unwrap());
        }
        assert!(matches!(
            u.check(&mut Vec::new(), 0, true),
            Err(SampleError::Fatal(m)) if m.contains("keeps failing")
        ));
    }
}
