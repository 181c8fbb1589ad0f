//! Shared test helpers, by concern: running the real binary (here), the real runtimes
//! ([`interpreters`]), the HTTP receiver that records uploads ([`receiver`]), and decoding what
//! the agent produced ([`decode`]).
#![allow(dead_code)]

pub mod decode;
pub mod interpreters;
pub mod real_server;
pub mod receiver;

// Each test file uses some of these.
#[allow(unused_imports)]
pub use {decode::*, interpreters::*, real_server::*, receiver::*};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: this build's, or `PYROSCOPE_TEST_BIN` (to show a new test failing
/// on an older build).
pub fn bin() -> PathBuf {
    match std::env::var_os("PYROSCOPE_TEST_BIN") {
        Some(b) => PathBuf::from(b),
        None => PathBuf::from(env!("CARGO_BIN_EXE_pyroscope")),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example_app() -> PathBuf {
    repo().join("examples/python/app.py")
}

pub fn test_app(name: &str) -> PathBuf {
    repo().join("tests/apps").join(name)
}

/// `pyroscope` with the given arguments, output captured.
pub fn pyroscope(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Tests decide everything with flags; the environment must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("PYROSCOPE_") {
            c.env_remove(k);
        }
    }
    c
}

pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs to completion, with a timeout that fails the test instead of hanging it.
pub fn run(mut cmd: Command, timeout: Duration) -> Run {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn pyroscope");
    let out = std::thread::spawn({
        let mut o = child.stdout.take().unwrap();
        move || {
            let mut s = String::new();
            let _ = o.read_to_string(&mut s);
            s
        }
    });
    let err = std::thread::spawn({
        let mut e = child.stderr.take().unwrap();
        move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        }
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "pyroscope did not finish within {timeout:?}; stderr: {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        signal: status.signal(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        took: start.elapsed(),
    }
}

/// Starts `program` (its stdout discarded), gives it `settle` to start, profiles it with
/// `pyroscope connect --pid <its pid> <args>` until it exits, and checks that it succeeded.
pub fn connect_to(mut program: Command, settle: Duration, args: &[&str]) -> Run {
    let mut child = program
        .stdout(Stdio::null())
        .spawn()
        .expect("start the program");
    std::thread::sleep(settle);
    let pid = child.id().to_string();
    let mut full = vec!["connect", "--pid", pid.as_str()];
    full.extend_from_slice(args);
    let r = run(pyroscope(&full), Duration::from_secs(30));
    assert!(child.wait().unwrap().success(), "the program failed");
    r
}

pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pyroscope-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one error line pyroscope printed; fails if there is not exactly one, or on a panic.
#[allow(dead_code)]
pub fn error_line(r: &Run) -> String {
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("[pyroscope] error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one error line, got: {}",
        r.stderr
    );
    errors[0].to_string()
}

/// Two CPU-bound runs at a time per test binary (the machines have 2 cores): a dozen at once
/// starve each other, and a sample after a long gap stands for all the CPU of that gap (samples
/// weigh their thread's CPU time), which makes a 4 s split noisy.
static SLOTS: std::sync::Mutex<u32> = std::sync::Mutex::new(0);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

pub struct Slot;

impl Slot {
    pub fn take() -> Slot {
        let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= 2 {
            used = FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

/// From pyroscope's summary line ("N samples of M stacks taken (E errors, ..."): (N, E).
pub fn summary_counts(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains(" samples of ") && l.contains(" errors"))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    let number_before = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {line}"));
        line[..at]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number before {word} in {line}"))
    };
    (number_before(" samples of"), number_before(" errors"))
}

/// Takes `child`'s piped stdout and waits for its first line, which must be `ready` (the test
/// apps print it once they are where the test wants them); the rest of the output is read from
/// what is returned.
pub fn wait_ready(child: &mut Child) -> std::io::BufReader<ChildStdout> {
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    out
}
