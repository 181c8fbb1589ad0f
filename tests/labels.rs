//! Per-sample labels: each pushed sample carries `pid` (the process it was taken in) and
//! `thread_name`, so Grafana can pick out one worker process or one thread; off with
//! `--no-sample-labels`. Checked on the bytes the receiver got.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// (parent pid, child pid) from the app's "pids P C" line.
fn pids(stdout: &str) -> (String, String) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("pids "))
        .unwrap_or_else(|| panic!("no pids line: {stdout}"));
    let mut it = line.split_whitespace().skip(1).map(str::to_string);
    (it.next().unwrap(), it.next().unwrap())
}

/// CPU ns of the samples holding one of `functions` (a frame of that name, or `...#name` as
/// Ruby 3.3 names methods), by (pid, value of the label `thread_key` or "", function). Every
/// sample must carry `pid`.
fn cpu_by<'a>(
    all: &[Sampled],
    thread_key: &str,
    functions: [&'a str; 2],
) -> BTreeMap<(String, String, &'a str), i64> {
    let mut by = BTreeMap::new();
    for s in all {
        let pid = s
            .label("pid")
            .unwrap_or_else(|| panic!("no pid label: {s:?}"));
        let thread = s.label(thread_key).unwrap_or("");
        for f in functions {
            let method = format!("#{f}");
            if s.frames.iter().any(|x| x.0 == f || x.0.ends_with(&method)) {
                *by.entry((pid.to_string(), thread.to_string(), f))
                    .or_default() += s.value;
            }
        }
    }
    eprintln!("CPU ns by (pid, {thread_key}, function): {by:?}");
    by
}

/// Of the CPU ns of `f` (in process `pid`, or in all): (those labelled `thread`, all).
fn named_share(
    by: &BTreeMap<(String, String, &str), i64>,
    pid: Option<&str>,
    thread: &str,
    f: &str,
) -> (i64, i64) {
    let of_f = by
        .iter()
        .filter(|((p, _, g), _)| pid.is_none_or(|pid| p == pid) && *g == f);
    let named = of_f
        .clone()
        .filter(|((_, t, _), _)| t == thread)
        .map(|(_, v)| v)
        .sum();
    (named, of_f.map(|(_, v)| v).sum())
}

fn exec_named_workers(server: &Receiver, version: &str, extra: &[&str]) -> Run {
    let py = python(version);
    let app = test_app("named_workers.py");
    let mut args = vec![
        "exec",
        "--server-address",
        &server.url,
        "--sample-rate",
        "200",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[path_str(&py), path_str(&app), "3"]);
    run(pyroscope(&args), Duration::from_secs(60))
}

/// Two CPython processes with threads named `worker-a` and `worker-b` by `threading` (before
/// 3.14 the OS names are the process's, so these come from Python's own thread table): every
/// sample carries its process's pid, and each thread's samples its Python name.
#[test]
fn python_3_11_samples_carry_pid_and_thread_name() {
    pid_and_thread_name("3.11");
}

/// 3.13: the `Thread` objects keep their attributes in a managed dict.
#[test]
fn python_3_13_samples_carry_pid_and_thread_name() {
    pid_and_thread_name("3.13");
}

#[test]
fn python_3_14_samples_carry_pid_and_thread_name() {
    pid_and_thread_name("3.14");
}

fn pid_and_thread_name(version: &str) {
    let _slot = Slot::take();
    let server = Receiver::ok();
    let r = exec_named_workers(&server, version, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let (parent, child) = pids(&r.stdout);
    let all = pushed_samples(
        &server,
        &[("service_name", "named_workers")],
        None,
        &r.stderr,
    );
    for s in &all {
        let pid = s.label("pid").unwrap_or_default();
        assert!(
            pid == parent || pid == child,
            "pid {pid:?}: not {parent} or {child}: {s:?}"
        );
    }
    let by = cpu_by(&all, "thread_name", ["burn_a", "burn_b"]);
    let total: i64 = by.values().sum();
    for pid in [&parent, &child] {
        for (thread, f) in [("worker-a", "burn_a"), ("worker-b", "burn_b")] {
            let (named, all_of_f) = named_share(&by, Some(pid), thread, f);
            // Each of the 4 threads got about a quarter of the CPU; a thread's first samples,
            // before the first walk of the thread table, may carry its OS name.
            assert!(
                named * 10 >= all_of_f * 9 && named * 8 >= total,
                "{f} in process {pid}: {named} of {all_of_f} ns labelled {thread} (total {total})"
            );
        }
    }
}

/// `--no-sample-labels`: no sample carries labels; the series labels are as always.
#[test]
fn no_sample_labels_turns_them_off() {
    let _slot = Slot::take();
    let server = Receiver::ok();
    let r = exec_named_workers(&server, "3.11", &["--no-sample-labels"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let all = pushed_samples(
        &server,
        &[("service_name", "named_workers")],
        None,
        &r.stderr,
    );
    assert!(all.iter().any(|s| s.has("burn_a")));
    assert!(
        all.iter().all(|s| s.labels.is_empty()),
        "labels: {:?}",
        all.iter().find(|s| !s.labels.is_empty())
    );
}

/// Ruby (Debian's and 3.3): `Thread#name=` sets the OS thread name, which the samples carry.
#[test]
fn ruby_samples_carry_pid_and_thread_name() {
    for ruby in [ruby(), ruby33()] {
        let _slot = Slot::take();
        let server = Receiver::ok();
        let app = test_app("named_threads.rb");
        let r = run(
            pyroscope(&[
                "exec",
                "--server-address",
                &server.url,
                "--sample-rate",
                "200",
                &ruby,
                path_str(&app),
                "3",
            ]),
            Duration::from_secs(60),
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let all = pushed_samples(&server, &[], None, &r.stderr);
        // `burn_a`, or `Object#burn_a` on Ruby 3.3.
        let by = cpu_by(&all, "thread_name", ["burn_a", "burn_b"]);
        let pids: std::collections::BTreeSet<_> = by.keys().map(|k| k.0.clone()).collect();
        assert_eq!(pids.len(), 1, "{ruby}: {by:?}");
        for (thread, f) in [("worker-a", "burn_a"), ("worker-b", "burn_b")] {
            let (named, all_of_f) = named_share(&by, None, thread, f);
            assert!(
                all_of_f > 0 && named * 10 >= all_of_f * 9,
                "{ruby}: {f}: {named} of {all_of_f} ns labelled {thread}"
            );
        }
    }
}

/// A thread without a name of its own (here the main thread of a program that never imports
/// `threading`, whose OS name is the process's) carries `thread_id`, its OS id, not the
/// process's name.
#[test]
fn a_thread_named_as_its_process_carries_its_id() {
    let _slot = Slot::take();
    let server = Receiver::ok();
    let py = python("3.11");
    let app = test_app("spike.py");
    let r = run(
        pyroscope(&[
            "exec",
            "--server-address",
            &server.url,
            path_str(&py),
            path_str(&app),
            "0.5",
            "1.5",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let all = pushed_samples(&server, &[], None, &r.stderr);
    assert!(all.iter().any(|s| s.has("spike")));
    for s in &all {
        assert_eq!(s.label("thread_name"), None, "{s:?}");
        assert_eq!(
            s.label("thread_id"),
            s.label("pid"),
            "the main thread: {s:?}"
        );
    }
}

/// .NET: a thread the runtime gave an OS name carries it as `thread_name`; CoreCLR 3.1 names
/// none (`Thread.Name` reaches the OS from .NET 6), so its samples carry `thread_id`, the OS
/// thread id, which tells the two workers apart.
#[test]
fn dotnet_samples_carry_pid_and_thread_id() {
    let _slot = Slot::take();
    let server = Receiver::ok();
    let r = run(
        pyroscope(&[
            "exec",
            "--server-address",
            &server.url,
            path_str(&dotnet()),
            path_str(named_threads_dll()),
            "3",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let all = pushed_samples(&server, &[], None, &r.stderr);
    for s in &all {
        assert_eq!(s.label("thread_name"), None, "{s:?}");
        assert!(s.label("thread_id").is_some(), "no thread_id label: {s:?}");
    }
    let by = cpu_by(
        &all,
        "thread_id",
        ["NamedThreads.BurnA", "NamedThreads.BurnB"],
    );
    // One thread each, and not the same one.
    let threads = |f: &str| -> Vec<String> {
        by.keys()
            .filter(|k| k.2 == f)
            .map(|k| k.1.clone())
            .collect()
    };
    let (a, b) = (threads("NamedThreads.BurnA"), threads("NamedThreads.BurnB"));
    assert_eq!(a.len(), 1, "{by:?}");
    assert_eq!(b.len(), 1, "{by:?}");
    assert_ne!(a, b);
}
