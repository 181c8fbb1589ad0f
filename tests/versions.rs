//! Every supported CPython (2.7, 3.6 to 3.13, from pyenv; 3.14 from Maven Central and
//! free-threaded 3.13t built from Debian's source, by scripts/test.sh) under `pyroscope exec`: the example's functions are found, the 3:1
//! split of CPU time holds within 25%, the sleeping thread stays out (under 5% of the CPU time);
//! blocking mode (the target paused through our own tracer) on the oldest and newest versions;
//! `connect` to the newest.
//! Free-threaded: threads really run in parallel, and each counts with its own CPU time.

mod common;
use common::*;
use std::time::Duration;

fn profile_version(version: &str, blocking: bool) {
    profile_python(&python(version), version, blocking);
}

fn profile_python(py: &std::path::Path, version: &str, blocking: bool) {
    let _slot = Slot::take();
    let out = tempdir(&format!("v{version}-{blocking}")).join("p.pb.gz");
    // 1,000 Hz for 4 s: each sample lands in slow_function with p = 3/4, so over ~4,000 samples
    // the split's spread (binomial) is ~2%, and 25% is far outside it. At 250 Hz it is ~7%, and
    // a dozen such checks per run failed now and then.
    let mut args = vec!["exec", "--sample-rate", "1000", "--output", path_str(&out)];
    if blocking {
        args.push("--pyspy-blocking");
    }
    let app = example_app();
    args.extend_from_slice(&[path_str(py), path_str(&app), "4"]);
    let r = run(pyroscope(&args), Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains(&format!("CPython {version}")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let samples = samples(&decode_pprof_gz(&std::fs::read(&out).unwrap()));
    let (slow, fast) = split(&samples, "slow_function", "fast_function");
    assert_split(slow, fast);
    // CPU time, as the profile counts it: each sample its thread's CPU since the previous tick.
    let total: i64 = samples.iter().map(|s| s.value).sum();
    let idle: i64 = samples
        .iter()
        .filter(|s| s.has("idle_sleeper"))
        .map(|s| s.value)
        .sum();
    // Were the sleeping thread taken for running, it would hold about half of the CPU. What it
    // does get is real: woken from sleep it competes for the GIL for a moment.
    assert!(
        idle * 20 < total,
        "idle thread in a CPU profile: {idle} ns of {total}"
    );
    // The leaf of the hot path is `work` in app.py with a real line number.
    assert!(
        samples.iter().any(|s| s
            .frames
            .last()
            .is_some_and(|f| f.0 == "work" && f.1.ends_with("app.py") && f.2 > 0)),
        "no work (app.py:N) leaf"
    );
}

macro_rules! versions {
    ($($name:ident: $v:expr, $blocking:expr;)*) => {
        $(#[test] fn $name() { profile_version($v, $blocking); })*
    };
}

versions! {
    python_2_7: "2.7", false;
    python_3_6: "3.6", false;
    python_3_7: "3.7", false;
    python_3_8: "3.8", false;
    python_3_9: "3.9", false;
    python_3_10: "3.10", false;
    python_3_11: "3.11", false;
    python_3_12: "3.12", false;
    python_3_13: "3.13", false;
    python_3_14: "3.14", false;
    python_2_7_blocking: "2.7", true;
    python_3_11_blocking: "3.11", true;
    python_3_13_blocking: "3.13", true;
    python_3_14_blocking: "3.14", true;
}

#[test]
fn python_3_13t_free_threaded() {
    profile_python(&python313t(), "3.13.15t", false);
}

#[test]
fn python_3_13t_free_threaded_blocking() {
    profile_python(&python313t(), "3.13.15t", true);
}

/// Free-threaded CPython has no GIL: two busy threads run at once on the two cores, both are
/// sampled at the same ticks, and the profile holds each one's CPU time (about twice the wall
/// time in all, where a GIL build gives at most once).
#[test]
fn free_threaded_threads_run_in_parallel_and_each_counts() {
    let _slot = Slot::take();
    let _other = Slot::take();
    let out = tempdir("ft-parallel").join("p.pb.gz");
    let r = run(
        pyroscope(&[
            "exec",
            "--sample-rate",
            "250",
            "--output",
            path_str(&out),
            path_str(&python313t()),
            path_str(&test_app("two_busy_threads.py")),
            "3",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let samples = samples(&decode_pprof_gz(&std::fs::read(&out).unwrap()));
    let total: i64 = samples.iter().map(|s| s.value).sum();
    let (alpha, beta) = split(&samples, "alpha", "beta");
    assert!(
        total > 4_200_000_000,
        "{total} ns of CPU in 3 s: the threads did not run in parallel"
    );
    for (name, t) in [("alpha", alpha), ("beta", beta)] {
        assert!(t * 100 > total * 35, "{name}: {t} of {total} ns");
    }
    // More stacks than process samples: ticks that found both threads running.
    let summary = r
        .stderr
        .lines()
        .find(|l| l.contains(" samples of "))
        .unwrap();
    let n = |i: usize| -> u64 { summary.split_whitespace().nth(i).unwrap().parse().unwrap() };
    assert!(n(5) > n(2), "{summary}");
}

/// `connect` to a free-threaded build whose executable is called plain `python3` (the build is
/// known by its libpython3.13t).
#[test]
fn connect_to_a_free_threaded_python_named_python3() {
    let _slot = Slot::take();
    let py = python313t().parent().unwrap().join("python3");
    let out = tempdir("ft-connect").join("p.txt");
    let mut program = std::process::Command::new(&py);
    program.arg(example_app()).arg("5");
    let r = connect_to(
        program,
        Duration::from_millis(500),
        &["--sample-rate", "1000", "--output", path_str(&out)],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("CPython 3.13.15t"), "{}", r.stderr);
    let (s, f) = collapsed_split(&collapsed_file(&out), "slow_function", "fast_function");
    assert_split(s, f);
}

/// `connect` to CPython 3.14, plain and blocking (each runnable thread seized for the read).
#[test]
fn connect_to_python_3_14() {
    let _slot = Slot::take();
    for blocking in [false, true] {
        let out = tempdir(&format!("connect-314-{blocking}")).join("p.txt");
        let mut program = std::process::Command::new(python("3.14"));
        program.arg(example_app()).arg("5");
        let mut args = vec!["--sample-rate", "1000", "--output", path_str(&out)];
        if blocking {
            args.push("--pyspy-blocking");
        }
        let r = connect_to(program, Duration::from_millis(500), &args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stderr.contains("CPython 3.14."), "{}", r.stderr);
        assert_eq!(
            r.stderr.contains("read with the target paused"),
            blocking,
            "{}",
            r.stderr
        );
        let (s, f) = collapsed_split(&collapsed_file(&out), "slow_function", "fast_function");
        eprintln!("3.14 connect (blocking {blocking}): slow {s} fast {f}");
        assert_split(s, f);
    }
}
