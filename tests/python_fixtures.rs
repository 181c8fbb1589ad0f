//! Recorded-memory fixtures (`spy_python::fixture`): each file under `tests/data/python/` is
//! one read of a live CPython, kept as the pages it used and the stacks it gave; replayed here
//! through the same reader code, it must give exactly those stacks. So versions that cannot be
//! installed where the tests run are still tested, and a field report becomes a test.
//! Recorded with `cargo run --release -p spy-python --example record_python -- PID FILE`.

mod common;
use common::*;
use spy_python::fixture::Fixture;
use spy_python::py_spy::{Config, PythonSpy};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/data/python"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".fixture.gz"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_recorded_fixture_replays_to_its_stacks() {
    let files = fixtures();
    assert!(files.len() >= 12, "{files:?}");
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("3.13t")),
        "a free-threaded recording"
    );
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("3.14-")),
        "a CPython 3.14 recording"
    );
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let f = Fixture::read(path).unwrap();
        assert!(
            std::fs::metadata(path).unwrap().len() < 2 << 20,
            "{name}: over 2 MB"
        );
        let replayed = f.replay().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(replayed, f.threads, "{name}");
        // What each recording shows (its program is in tests/apps or examples).
        let all: Vec<&str> = f
            .threads
            .iter()
            .flat_map(|t| t.frames.iter().map(|(func, _, _)| func.as_str()))
            .collect();
        if name.contains("-app") {
            assert!(
                all.iter()
                    .any(|f| matches!(*f, "slow_function" | "fast_function")),
                "{name}: {all:?}"
            );
            assert_eq!(f.threads.len(), 2, "{name}: main and the sleeper");
        }
        if name.contains("-deep") {
            let depth = f.threads[0]
                .frames
                .iter()
                .filter(|(func, _, _)| func == "deep")
                .count();
            assert_eq!(depth, 151, "{name}");
            let (_, file, line) = &f.threads[0].frames[0];
            assert!(file.ends_with("deep_recursion.py"), "{file}");
            assert!(*line > 0);
        }
        if name.contains("-threads") {
            assert!(f.threads.len() >= 2, "{name}");
            assert!(
                all.contains(&"alpha") && all.contains(&"beta"),
                "{name}: {all:?}"
            );
        }
    }
}

/// A replay reads only recorded pages (it never falls back to a live process): with any one
/// page left out, the read fails or gives other stacks.
#[test]
fn a_replay_reads_nothing_but_the_recording() {
    let path = repo().join("tests/data/python/cpython-3.13-app.fixture.gz");
    let f = Fixture::read(&path).unwrap();
    for page in f.pages.keys() {
        let mut pages = (*f.pages).clone();
        pages.remove(page);
        let mut without = f.clone();
        without.pages = std::sync::Arc::new(pages);
        if let Ok(threads) = without.replay() {
            assert_ne!(threads, f.threads, "page {page:#x} was not needed");
        }
    }
}

/// The recorder itself, on live interpreters: a recording made now replays to what was read.
#[test]
fn a_live_recording_replays_identically() {
    let dir = tempdir("fixture-live");
    for version in ["2.7", "3.13"] {
        let py = python(version);
        let mut app = Command::new(&py)
            .arg(test_app("deep_recursion.py"))
            .arg("20")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // At the bottom of the recursion once it says so.
        wait_ready(&mut app);
        let pid = app.id();
        let spy = PythonSpy::new(pid as spy_python::py_spy::Pid, &Config::default()).unwrap();
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_millis(100));
        let recorded = Fixture::record(
            pid,
            &spy.version.to_string(),
            (spy.version.major, spy.version.minor, false),
            spy.addresses.interpreter_address,
        );
        app.kill().unwrap();
        let _ = app.wait();
        let recorded = recorded.unwrap();
        let file = dir.join(format!("{version}.fixture.gz"));
        recorded.write(&file).unwrap();
        let read = Fixture::read(&file).unwrap();
        assert_eq!(read.threads, recorded.threads);
        assert_eq!(read.replay().unwrap(), recorded.threads, "{version}");
        assert_eq!(
            read.threads[0]
                .frames
                .iter()
                .filter(|(f, _, _)| f == "deep")
                .count(),
            151,
            "{version}: {:?}",
            read.threads
        );
    }
}
