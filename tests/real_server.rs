//! End to end against a real Grafana Pyroscope (see `common::real_server`): Python, Ruby and
//! .NET under `exec`, Python under `connect`, the `/ingest` fallback, the label limit and
//! windows split to fit the profile limits. What was pushed is recorded by a proxy in front of
//! the server, and what the server answers to queries (`ProfileTypes`, `LabelNames`,
//! `LabelValues`, `SelectSeries`, `SelectMergeProfile`) is checked against it: function names,
//! the slow:fast split, the labels, the profile type, the windows' time range, the totals.
//!
//! `#[ignore]`d: the Go module proxy does not serve Grafana Pyroscope (403, see the README), so
//! CI cannot build it; scripts/test.sh runs these with `--include-ignored` whenever a server
//! binary is there, and says so when it is not.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// What the agent pushed through the proxy, all answered 200 by the server: the profiles.
fn pushed(proxy: &Proxy) -> Vec<pyroscope::pipeline::pprof::PprofProfile> {
    use prost::Message;
    proxy
        .seen()
        .iter()
        .filter(|f| f.path.starts_with("/push.v1."))
        .map(|f| {
            assert_eq!(f.status, 200, "the server refused a push");
            let push = pyroscope::pipeline::push::PushRequest::decode(&f.body[..]).unwrap();
            decode_pprof_gz(&push.series[0].samples[0].raw_profile)
        })
        .collect()
}

/// `pyroscope exec --server-address <proxy> <args>`, which must succeed: the run and its time
/// range.
fn exec_through(proxy: &Proxy, args: &[&str]) -> (Run, (SystemTime, SystemTime)) {
    let mut full = vec!["exec", "--server-address", proxy.url.as_str()];
    full.extend_from_slice(args);
    let started = SystemTime::now();
    let r = run(pyroscope(&full), Duration::from_secs(90));
    let ended = SystemTime::now();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    (r, (started, ended))
}

fn total(p: &pyroscope::pipeline::pprof::PprofProfile) -> i64 {
    p.sample.iter().map(|s| s.value[0]).sum()
}

/// Checks what the server says of `service`: profile type, labels, the split of `slow`/`fast`,
/// the windows' time range, and (when `sent` is known) that it holds exactly what was sent.
fn check_service(
    server: &RealServer,
    service: &str,
    spy: &str,
    tags: &[(&str, &str)],
    (slow, fast): (&str, &str),
    (started, ended): (SystemTime, SystemTime),
    sent: Option<i64>,
) {
    let range = (unix_ms(started) - 60_000, unix_ms(ended) + 60_000);
    let selector = format!("{{service_name=\"{service}\"}}");
    let merged = server.wait_for_profile(&selector, range, sent.unwrap_or(1));
    let all = samples(&merged);
    let (s, f) = split(&all, slow, fast);
    assert_split(s, f);
    if let Some(sent) = sent {
        assert_eq!(total(&merged), sent, "the server holds what was sent");
    }
    assert!(
        server.profile_types(range).iter().any(|t| t == CPU),
        "{:?}",
        server.profile_types(range)
    );
    assert!(server
        .label_values("service_name", range)
        .contains(&service.to_string()));
    let names = server.label_names(&selector, range);
    for (k, v) in tags {
        assert!(names.contains(&k.to_string()), "{k} not in {names:?}");
        assert!(server.label_values(k, range).contains(&v.to_string()));
    }
    assert!(names.contains(&"pyroscope_spy".to_string()), "{names:?}");
    assert!(server
        .label_values("pyroscope_spy", range)
        .contains(&spy.to_string()));
    // The windows: every point lies within the run (windows start at the aligned time before
    // the start), and they add up to the profile.
    let points = server.series(&selector, range);
    assert!(!points.is_empty());
    let from = unix_ms(started) / 10_000 * 10_000;
    for (ts, _) in &points {
        assert!(
            *ts >= from - 10_000 && *ts <= unix_ms(ended) + 10_000,
            "point at {ts} outside the run {from}..{}",
            unix_ms(ended)
        );
    }
    let series_total: f64 = points.iter().map(|(_, v)| v).sum();
    let merged_total = total(&merged) as f64;
    assert!(
        (series_total - merged_total).abs() <= merged_total * 0.01,
        "series {series_total} vs profile {merged_total}"
    );
}

#[test]
#[ignore = "needs a Grafana Pyroscope binary (scripts/test.sh runs these when it has one)"]
fn python_under_exec_and_connect() {
    let server = RealServer::start("python");
    let proxy = Proxy::start(&server.url, false);
    let py = python("3.11");
    let app = example_app();
    let _slot = Slot::take();
    let (_, (started, ended)) = exec_through(
        &proxy,
        &[
            "--application-name",
            "real.python{env=test}",
            "--tag",
            "team=core",
            "--sample-rate",
            "1000",
            path_str(&py),
            path_str(&app),
            "6",
        ],
    );
    let sent: i64 = pushed(&proxy).iter().map(total).sum();
    check_service(
        &server,
        "real.python",
        "pyspy",
        &[("env", "test"), ("team", "core")],
        ("slow_function", "fast_function"),
        (started, ended),
        Some(sent),
    );

    // connect to a running program.
    let mut child = std::process::Command::new(&py)
        .arg(&app)
        .arg("8")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = SystemTime::now();
    let pid = child.id().to_string();
    let r = run(
        pyroscope(&[
            "connect",
            "--pid",
            &pid,
            "--server-address",
            &server.url,
            "--application-name",
            "real.connect",
            "--sample-rate",
            "1000",
        ]),
        Duration::from_secs(60),
    );
    let _ = child.wait();
    let ended = SystemTime::now();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    check_service(
        &server,
        "real.connect",
        "pyspy",
        &[],
        ("slow_function", "fast_function"),
        (started, ended),
        None,
    );
}

#[test]
#[ignore = "needs a Grafana Pyroscope binary (scripts/test.sh runs these when it has one)"]
fn ruby_under_exec() {
    let server = RealServer::start("ruby");
    let proxy = Proxy::start(&server.url, false);
    let rb = ruby();
    let app = repo().join("examples/ruby/app.rb");
    let _slot = Slot::take();
    let (_, (started, ended)) = exec_through(
        &proxy,
        &[
            "--application-name",
            "real.ruby",
            "--tag",
            "lang=ruby",
            "--sample-rate",
            "1000",
            &rb,
            path_str(&app),
            "6",
        ],
    );
    let sent: i64 = pushed(&proxy).iter().map(total).sum();
    check_service(
        &server,
        "real.ruby",
        "rbspy",
        &[("lang", "ruby")],
        ("slow_function", "fast_function"),
        (started, ended),
        Some(sent),
    );
}

#[test]
#[ignore = "needs a Grafana Pyroscope binary (scripts/test.sh runs these when it has one)"]
fn dotnet_under_exec() {
    let server = RealServer::start("dotnet");
    let proxy = Proxy::start(&server.url, false);
    let _slot = Slot::take();
    let (_, (started, ended)) = exec_through(
        &proxy,
        &[
            "--application-name",
            "real.dotnet",
            "--tag",
            "lang=dotnet",
            "--sample-rate",
            "250",
            path_str(&dotnet()),
            path_str(burn_dll()),
            "6",
        ],
    );
    let sent: i64 = pushed(&proxy).iter().map(total).sum();
    check_service(
        &server,
        "real.dotnet",
        "dotnetspy",
        &[("lang", "dotnet")],
        ("BurnDemo.Worker.Slow", "BurnDemo.Worker.Fast"),
        (started, ended),
        Some(sent),
    );
}

/// A server whose push route answers 404 (the proxy's doing): the agent falls back to
/// `/ingest`, and the real server's answers are the same.
#[test]
#[ignore = "needs a Grafana Pyroscope binary (scripts/test.sh runs these when it has one)"]
fn ingest_fallback() {
    let server = RealServer::start("ingest");
    let proxy = Proxy::start(&server.url, true);
    let py = python("3.11");
    let _slot = Slot::take();
    let (r, (started, ended)) = exec_through(
        &proxy,
        &[
            "--application-name",
            "real.ingest{env=old}",
            "--sample-rate",
            "1000",
            path_str(&py),
            path_str(&example_app()),
            "6",
        ],
    );
    assert!(
        r.stderr.contains("using /ingest from now on"),
        "{}",
        r.stderr
    );
    let ingested: Vec<Forwarded> = proxy
        .seen()
        .into_iter()
        .filter(|f| f.path.starts_with("/ingest"))
        .collect();
    assert!(!ingested.is_empty());
    assert!(ingested.iter().all(|f| f.status == 200), "{ingested:?}");
    let sent: i64 = ingested
        .iter()
        .map(|f| total(&decode_pprof_gz(&f.body)))
        .sum();
    // On /ingest the server renames the functions of py-spy and rbspy profiles to
    // `file function` (its FixFunctionNamesForScriptingLanguages, for the old scripting
    // agents); the push route keeps them as sent.
    check_service(
        &server,
        "real.ingest",
        "pyspy",
        &[("env", "old")],
        ("app.py slow_function", "app.py fast_function"),
        (started, ended),
        Some(sent),
    );
}

/// The server's limits, on the real server: 25 tags (30 labels with ours and the sample labels
/// `pid` and `thread_name`, which the server counts as series labels) are taken, and a
/// window of more than 16,000 distinct stacks arrives in parts that are all taken and add up.
#[test]
#[ignore = "needs a Grafana Pyroscope binary (scripts/test.sh runs these when it has one)"]
fn limits_most_tags_and_a_window_split_in_parts() {
    let server = RealServer::start("limits");
    let proxy = Proxy::start(&server.url, false);
    let py = python("3.11");
    let mut args: Vec<String> = [
        "exec",
        "--server-address",
        &proxy.url,
        "--application-name",
        "real.limits",
        "--sample-rate",
        "2000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..25 {
        args.push("--tag".into());
        args.push(format!("t{i:02}=v{i}"));
    }
    let app = test_app("many_stacks.py");
    args.extend([
        path_str(&py).into(),
        path_str(&app).into(),
        "22".into(),
        "3".into(),
    ]);
    let _slot = Slot::take();
    let _other = Slot::take();
    let started = SystemTime::now();
    let r = run(
        pyroscope(&args.iter().map(String::as_str).collect::<Vec<_>>()),
        Duration::from_secs(90),
    );
    let ended = SystemTime::now();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stderr.contains("rejected"), "{}", r.stderr);
    let profiles = pushed(&proxy);
    let windows: BTreeSet<i64> = profiles.iter().map(|p| p.time_nanos).collect();
    assert!(
        profiles.len() > windows.len(),
        "no window was split: {} profiles for {} windows",
        profiles.len(),
        windows.len()
    );
    let sent: i64 = profiles.iter().map(total).sum();
    let range = (unix_ms(started) - 60_000, unix_ms(ended) + 60_000);
    let merged = server.wait_for_profile("{service_name=\"real.limits\"}", range, sent);
    assert_eq!(total(&merged), sent, "every part was stored");
    let names = server.label_names("{service_name=\"real.limits\"}", range);
    for i in 0..25 {
        assert!(names.contains(&format!("t{i:02}")), "{names:?}");
    }
    assert!(names.contains(&"pid".to_string()), "{names:?}");
}

/// Per-sample labels reach the server as labels one can select on: the two processes by `pid`,
/// each thread by `thread_name`, and a selection by thread holds that thread's function only.
#[test]
#[ignore = "needs a Grafana Pyroscope binary (scripts/test.sh runs these when it has one)"]
fn sample_labels_select_a_process_and_a_thread() {
    let server = RealServer::start("labels");
    let proxy = Proxy::start(&server.url, false);
    let _slot = Slot::take();
    let (r, (started, ended)) = exec_through(
        &proxy,
        &[
            "--application-name",
            "real.labels",
            "--sample-rate",
            "200",
            path_str(&python("3.11")),
            path_str(&test_app("named_workers.py")),
            "4",
        ],
    );
    let pids: Vec<String> = r
        .stdout
        .lines()
        .find(|l| l.starts_with("pids "))
        .unwrap_or_else(|| panic!("no pids line: {}", r.stdout))
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    let range = (unix_ms(started) - 60_000, unix_ms(ended) + 60_000);
    let service = "{service_name=\"real.labels\"}";
    // Wait for everything to be queryable.
    let sent: i64 = pushed(&proxy).iter().map(total).sum();
    server.wait_for_profile(service, range, sent);
    let names = server.label_names(service, range);
    assert!(names.contains(&"pid".to_string()), "{names:?}");
    assert!(names.contains(&"thread_name".to_string()), "{names:?}");
    let threads = server.label_values("thread_name", range);
    for t in ["worker-a", "worker-b"] {
        assert!(threads.contains(&t.to_string()), "{threads:?}");
    }
    let pid_values = server.label_values("pid", range);
    for pid in &pids {
        assert!(pid_values.contains(pid), "{pid} not in {pid_values:?}");
        let one = server.wait_for_profile(
            &format!("{{service_name=\"real.labels\",pid=\"{pid}\"}}"),
            range,
            1,
        );
        let all = samples(&one);
        assert!(all.iter().any(|s| s.has("burn_a")) && all.iter().any(|s| s.has("burn_b")));
    }
    for (thread, mine, other) in [
        ("worker-a", "burn_a", "burn_b"),
        ("worker-b", "burn_b", "burn_a"),
    ] {
        let one = server.wait_for_profile(
            &format!("{{service_name=\"real.labels\",thread_name=\"{thread}\"}}"),
            range,
            1,
        );
        let all = samples(&one);
        let (m, o) = split(&all, mine, other);
        assert!(m > 0 && o == 0, "{thread}: {mine} {m} ns, {other} {o} ns");
    }
}

/// `--trigger-cpu`: the windows of a CPU spike carry the series label `trigger=cpu`, so
/// `{trigger="cpu"}` selects the spike alone, and the service as a whole still holds exactly
/// what was sent (the faster rate did not inflate or lose anything).
#[test]
#[ignore = "needs a Grafana Pyroscope binary (scripts/test.sh runs these when it has one)"]
fn triggered_windows_are_selected_by_their_label() {
    let server = RealServer::start("trigger");
    let proxy = Proxy::start(&server.url, false);
    let _slot = Slot::take();
    let (_, (started, ended)) = exec_through(
        &proxy,
        &[
            "--application-name",
            "real.trigger",
            "--trigger-cpu",
            "50",
            path_str(&python("3.11")),
            path_str(&test_app("spike.py")),
            "3",
            "4",
        ],
    );
    let range = (unix_ms(started) - 60_000, unix_ms(ended) + 60_000);
    let service = "{service_name=\"real.trigger\"}";
    let sent: i64 = pushed(&proxy).iter().map(total).sum();
    let merged = server.wait_for_profile(service, range, sent);
    assert_eq!(total(&merged), sent, "the server holds what was sent");
    let values = server.label_values("trigger", range);
    assert_eq!(values, ["cpu"], "{values:?}");
    let hot = samples(&server.wait_for_profile(
        "{service_name=\"real.trigger\",trigger=\"cpu\"}",
        range,
        1,
    ));
    let (spike, light) = split(&hot, "spike", "light");
    assert!(
        spike > 1_000_000_000 && light * 50 < spike,
        "trigger=cpu: spike {spike} ns, light {light} ns"
    );
    let cold =
        samples(&server.wait_for_profile("{service_name=\"real.trigger\",trigger=\"\"}", range, 1));
    let (_, light) = split(&cold, "spike", "light");
    assert!(
        light > 0,
        "the windows without the label hold the light load"
    );
}
