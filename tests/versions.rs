//! Every supported CPython (2.7, 3.6 to 3.13, from pyenv) under `pyroscope exec`: the example's
//! functions are found, the 3:1 split of CPU time holds within 25%, the sleeping thread stays out
//! (under 5% of the CPU time); blocking
//! mode (the target paused through our own tracer) on the oldest and newest versions.

mod common;
use common::*;
use std::time::Duration;

fn profile_version(version: &str, blocking: bool) {
    let _slot = Slot::take();
    let py = python(version);
    let out = tempdir(&format!("v{version}-{blocking}")).join("p.pb.gz");
    // 1,000 Hz for 4 s: each sample lands in slow_function with p = 3/4, so over ~4,000 samples
    // the split's spread (binomial) is ~2%, and 25% is far outside it. At 250 Hz it is ~7%, and
    // a dozen such checks per run failed now and then.
    let mut args = vec!["exec", "--sample-rate", "1000", "--output", path_str(&out)];
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
    python_2_7_blocking: "2.7", true;
    python_3_11_blocking: "3.11", true;
    python_3_13_blocking: "3.13", true;
}
