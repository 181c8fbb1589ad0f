//! A real CPython under the real binary, uploading to an in-test receiver: what arrives on the
//! wire is decoded and checked (labels, tags, auth, stacks, split, time windows, fallback, retries).

mod common;
use common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TEN_S: i64 = 10_000_000_000;

fn exec_app(server: &Receiver, extra: &[&str], seconds: &str) -> Run {
    let py = python("3.11");
    let app = example_app();
    let mut args = vec![
        "exec",
        "--server-address",
        &server.url,
        "--log-level",
        "debug",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[path_str(&py), path_str(&app), seconds]);
    run(pyroscope(&args), Duration::from_secs(60))
}

#[test]
fn push_carries_labels_tags_auth_stacks_and_split() {
    let server = Receiver::ok();
    let r = exec_app(
        &server,
        &[
            "--application-name",
            "shop.api{region=eu}",
            "--tag",
            "env=prod",
            "--auth-token",
            "s3cret-token",
            "--sample-rate",
            "1000",
        ],
        "4",
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("s3cret-token"), "token leaked into logs");
    let pushes = server.accepted(PUSH_PATH);
    assert!(!pushes.is_empty(), "no push; stderr: {}", r.stderr);
    let mut all = Vec::new();
    for req in &pushes {
        assert_eq!(req.header("authorization"), Some("Bearer s3cret-token"));
        let (labels, profile) = decode_push(req);
        assert_eq!(labels["__name__"], "process_cpu");
        assert_eq!(labels["service_name"], "shop.api");
        assert_eq!(labels["env"], "prod");
        assert_eq!(labels["region"], "eu");
        assert_eq!(labels["pyroscope_spy"], "pyspy");
        let st = |i: i64| profile.string_table[i as usize].as_str();
        assert_eq!(st(profile.sample_type[0].r#type), "cpu");
        assert_eq!(st(profile.sample_type[0].unit), "nanoseconds");
        assert_eq!(profile.period, 1_000_000, "1e9 / 1000 Hz");
        all.extend(samples(&profile));
    }
    // Functions carry name, file and line.
    // The heaviest stack through slow_function (a sample may also catch it between calls).
    let slow = all
        .iter()
        .filter(|s| s.has("slow_function"))
        .max_by_key(|s| s.value)
        .expect("slow_function sampled");
    let leaf = slow.frames.last().unwrap();
    assert_eq!(leaf.0, "work");
    assert!(leaf.1.ends_with("app.py"), "file {}", leaf.1);
    assert!(leaf.2 > 0, "line number");
    assert!(slow.frames.iter().any(|f| f.0 == "main"));
    let (s, f) = split(&all, "slow_function", "fast_function");
    assert_split(s, f);
    // The thread that only sleeps is (nearly) never on CPU.
    let total: i64 = all.iter().map(|s| s.value).sum();
    let idle: i64 = all
        .iter()
        .filter(|s| s.has("idle_sleeper"))
        .map(|s| s.value)
        .sum();
    // Were the sleeping thread taken for running, it would hold about half of all samples. What
    // it does get is real: woken from sleep it competes for the GIL, which on a loaded 2-core
    // machine costs a few percent of CPU (seen up to 4% on CPython 2.7).
    assert!(
        idle * 10 < total,
        "idle thread in a CPU profile: {idle} of {total}"
    );
    // About 4 s at 250 Hz of CPU were sampled, none lost at exit.
    let seconds = total as f64 / 1e9;
    assert!((3.0..=5.0).contains(&seconds), "{seconds} s of CPU sampled");
}

#[test]
fn windows_are_aligned_to_ten_seconds_and_the_last_one_is_flushed() {
    let server = Receiver::ok();
    let started = SystemTime::now();
    let r = exec_app(&server, &["--application-name", "windows"], "12");
    let ended = SystemTime::now();
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let mut windows: Vec<_> = server
        .accepted(PUSH_PATH)
        .iter()
        .map(|r| (decode_push(r).1, r.at))
        .collect();
    windows.sort_by_key(|(p, _)| p.time_nanos);
    assert!(
        windows.len() >= 2,
        "a 12 s run crosses a 10 s boundary: {} windows",
        windows.len()
    );
    let ns = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    for (i, (p, _)) in windows.iter().enumerate() {
        assert_eq!(
            p.time_nanos % TEN_S,
            0,
            "window {i} starts on a 10 s multiple"
        );
        if i + 1 < windows.len() {
            assert_eq!(p.duration_nanos, TEN_S, "full windows last 10 s");
            assert_eq!(
                p.time_nanos + p.duration_nanos,
                windows[i + 1].0.time_nanos,
                "windows are contiguous"
            );
        }
    }
    // The first window starts at the aligned time before the agent started; when the program
    // took its first sample only after the next boundary (the run started just before one, on a
    // loaded machine), that first window was empty and not sent.
    let aligned = ns(started) / TEN_S * TEN_S;
    let first = windows[0].0.time_nanos;
    assert!(
        first == aligned || (first == aligned + TEN_S && ns(started) + 2_000_000_000 > first),
        "first window at {first}, agent started at {}",
        ns(started)
    );
    // The final, partial window ends when the child exited, and was uploaded before we exited.
    let (last, _) = windows.last().unwrap();
    let last_end = last.time_nanos + last.duration_nanos;
    assert!(last.duration_nanos < TEN_S + 1_000_000);
    assert!(
        last_end <= ns(ended) && ns(ended) - last_end < 2_000_000_000,
        "last window ends at exit"
    );
    let total: i64 = windows
        .iter()
        .map(|(p, _)| samples(p).iter().map(|s| s.value).sum::<i64>())
        .sum();
    assert!(
        total as f64 / 1e9 > 10.0,
        "12 s of CPU mostly sampled: {}",
        total as f64 / 1e9
    );
}

#[test]
fn falls_back_to_ingest_when_push_is_404() {
    let server = Receiver::start(|req, _| if req.path == PUSH_PATH { 404 } else { 200 });
    let r = exec_app(
        &server,
        &["--application-name", "legacy.app", "--tag", "env=staging"],
        "2",
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let reqs = server.requests();
    assert_eq!(
        reqs.iter().filter(|r| r.path == PUSH_PATH).count(),
        1,
        "push tried once, then never again"
    );
    let ingests = server.accepted("/ingest");
    assert!(!ingests.is_empty());
    for req in &ingests {
        assert_eq!(req.query["name"], "legacy.app{env=staging}");
        assert_eq!(req.query["format"], "pprof");
        assert_eq!(req.query["spyName"], "pyspy");
        assert_eq!(req.query["sampleRate"], "100");
        let from: i64 = req.query["from"].parse().unwrap();
        let until: i64 = req.query["until"].parse().unwrap();
        assert_eq!(from % 10, 0);
        assert!(until > from && until - from <= 10);
        let p = decode_pprof_gz(&req.body);
        assert_eq!(p.time_nanos / 1_000_000_000, from);
        assert!(samples(&p).iter().any(|s| s.has("slow_function")));
    }
}

#[test]
fn retries_server_errors_then_delivers() {
    // The first two attempts fail with 503 and 429; the data must still arrive.
    let server = Receiver::start(|_, i| match i {
        0 => 503,
        1 => 429,
        _ => 200,
    });
    let r = exec_app(&server, &["--application-name", "retry"], "1");
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let reqs = server.requests();
    assert!(reqs.len() >= 3, "{} requests", reqs.len());
    let ok = server.accepted(PUSH_PATH);
    assert_eq!(ok.len(), reqs.len() - 2);
    // The window refused twice is the one that arrived, as it was (same ID, same bytes)...
    assert_eq!(ok[0].body, reqs[0].body);
    assert_eq!(push_id(&ok[0]), push_id(&reqs[0]));
    // ...and the run's data arrived. (A 1 s run may straddle a window boundary: then the first
    // window holds only the interpreter's start-up, and slow_function is in the second.)
    assert!(ok.iter().any(|req| samples(&decode_push(req).1)
        .iter()
        .any(|s| s.has("slow_function"))));
    assert!(r.stderr.contains("retrying"), "{}", r.stderr);
}

#[test]
fn client_errors_are_logged_once_with_the_server_message() {
    let server = Receiver::start(|_, _| 400);
    let r = exec_app(&server, &["--application-name", "bad"], "1");
    assert_eq!(r.code, Some(0));
    // One request per window (a run may straddle a 10 s boundary): a 400 is never retried.
    let reqs = server.requests();
    let windows: std::collections::BTreeSet<i64> =
        reqs.iter().map(|r| decode_push(r).1.time_nanos).collect();
    assert_eq!(reqs.len(), windows.len(), "a 400 is not retried");
    assert!(
        r.stderr.contains("rejected by test receiver"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("rejected the profile with 400").count(),
        1,
        "logged once: {}",
        r.stderr
    );
}

#[test]
fn basic_auth_tenant_and_headers() {
    let server = Receiver::ok();
    let r = exec_app(
        &server,
        &[
            "--basic-auth-user",
            "123456",
            "--basic-auth-password",
            "pa55word",
            "--tenant-id",
            "team-a",
            "--header",
            "X-Extra: one",
            "--header",
            "X-Other: two: three",
        ],
        "1",
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("pa55word"));
    let req = &server.accepted(PUSH_PATH)[0];
    // base64("123456:pa55word")
    assert_eq!(
        req.header("authorization"),
        Some("Basic MTIzNDU2OnBhNTV3b3Jk")
    );
    assert_eq!(req.header("x-scope-orgid"), Some("team-a"));
    assert_eq!(req.header("x-extra"), Some("one"));
    assert_eq!(req.header("x-other"), Some("two: three"));
}

#[test]
fn env_vars_configure_and_flags_win() {
    let server = Receiver::ok();
    let py = python("3.11");
    let mut cmd = pyroscope(&[
        "exec",
        "--application-name",
        "from.flag",
        path_str(&py),
        path_str(&example_app()),
        "1",
    ]);
    cmd.env("PYROSCOPE_SERVER_ADDRESS", &server.url)
        .env("PYROSCOPE_APPLICATION_NAME", "from.env")
        .env("PYROSCOPE_TAG", "a=1,b=2")
        .env("PYROSCOPE_SAMPLE_RATE", "50");
    let r = run(cmd, Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let (labels, p) = decode_push(&server.accepted(PUSH_PATH)[0]);
    assert_eq!(labels["service_name"], "from.flag");
    assert_eq!(labels["a"], "1");
    assert_eq!(labels["b"], "2");
    assert_eq!(p.period, 20_000_000);
}

#[test]
fn unreachable_server_is_a_warning_and_the_child_is_unaffected() {
    // Port 9 (discard) on loopback: nothing listens, connections are refused.
    let py = python("3.11");
    let r = run(
        pyroscope(&[
            "exec",
            "--server-address",
            "http://127.0.0.1:9",
            "--upstream-request-timeout",
            "1s",
            path_str(&py),
            "-c",
            "import sys; sum(range(10**6)); sys.exit(5)",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(5));
    assert!(r.stderr.contains("warn: upload failed"), "{}", r.stderr);
    assert!(
        r.took < Duration::from_secs(15),
        "shutdown is bounded: {:?}",
        r.took
    );
}
