//! Every supported CPython (2.7, 3.6 to 3.13, from pyenv) under `pyroscope exec`: the example's
//! functions are found, the 3:1 split holds within 25%, the sleeping thread stays out; blocking
//! mode (the target paused through our own tracer) on the oldest and newest versions.

mod common;
use common::*;
use std::time::Duration;

fn profile_version(version: &str, blocking: bool) {
    let py = python(version);
    let out = tempdir(&format!("v{version}-{blocking}")).join("p.txt");
    let mut args = vec!["exec", "--sample-rate", "250", "--output", path_str(&out)];
    if blocking {
        args.push("--pyspy-blocking");
    }
    let app = example_app();
    args.extend_from_slice(&[path_str(&py), path_str(&app), "4"]);
    let r = run(pyroscope(&args), Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains(&format!("CPython {version}")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let lines = collapsed_file(&out);
    let (slow, fast) = collapsed_split(&lines, "slow_function", "fast_function");
    assert_split(slow, fast);
    let total: u64 = lines.iter().map(|(_, n)| n).sum();
    let idle: u64 = lines
        .iter()
        .filter(|(s, _)| s.contains("idle_sleeper"))
        .map(|(_, n)| n)
        .sum();
    // Were the sleeping thread taken for running, it would hold about half of all samples. What
    // it does get is real: woken from sleep it competes for the GIL, which on a loaded 2-core
    // machine costs a few percent of CPU (seen up to 4% on CPython 2.7).
    assert!(
        idle * 10 < total,
        "idle thread in a CPU profile: {idle} of {total}"
    );
    // The leaf of the hot path is `work` in app.py with a real line number.
    assert!(
        lines
            .iter()
            .any(|(s, _)| s.ends_with(")") && s.contains(";work (") && s.contains("app.py:")),
        "{lines:?}"
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
    python_2_7_blocking: "2.7", true;
    python_3_11_blocking: "3.11", true;
    python_3_13_blocking: "3.13", true;
}
