//! Pull mode (`--listen-address`): scrapers get a gzip pprof of the next N seconds from
//! `/debug/pprof/profile?seconds=N`, during the run, several at once, with or without pushing.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One HTTP/1.0 GET: (status, body).
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&all[..at]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, all[at + 4..].to_vec())
}

/// Waits until something listens on `port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Under `exec`, pushing to a server at the same time: two scrapes at once (3 s and 2 s) each
/// get a pprof of their own duration with the program's functions and its 3:1 split in CPU
/// nanoseconds; bad requests get a 4xx with a message; the pushes go on.
#[test]
fn scrapes_during_a_run_two_at_once_and_pushes_go_on() {
    let _slot = Slot::take();
    let server = Receiver::ok();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut child = pyroscope(&[
        "exec",
        "--listen-address",
        &address,
        "--server-address",
        &server.url,
        "--sample-rate",
        "1000",
        path_str(&python("3.11")),
        path_str(&example_app()),
        "6",
    ])
    .spawn()
    .unwrap();
    wait_listening(port);
    std::thread::sleep(Duration::from_millis(500));
    let scrape = |seconds: u32| {
        std::thread::spawn(move || {
            let t = Instant::now();
            let (status, body) = get(port, &format!("/debug/pprof/profile?seconds={seconds}"));
            (status, body, t.elapsed())
        })
    };
    let (a, b) = (scrape(3), scrape(2));
    let (bad, message) = get(port, "/debug/pprof/profile?seconds=abc");
    assert_eq!(bad, 400);
    assert!(String::from_utf8_lossy(&message).contains("invalid seconds"));
    let (missing, message) = get(port, "/metrics");
    assert_eq!(missing, 404);
    assert!(String::from_utf8_lossy(&message).contains("/debug/pprof/profile"));
    for (handle, seconds) in [(a, 3.0), (b, 2.0)] {
        let (status, body, took) = handle.join().unwrap();
        assert_eq!(status, 200);
        assert!(
            took.as_secs_f64() >= seconds - 0.05 && took.as_secs_f64() < seconds + 1.5,
            "{seconds} s scrape answered after {took:?}"
        );
        let p = decode_pprof_gz(&body);
        let t = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(
            (t(p.sample_type[0].r#type), t(p.sample_type[0].unit)),
            ("cpu", "nanoseconds")
        );
        let duration = p.duration_nanos as f64 / 1e9;
        assert!((duration - seconds).abs() < 0.1, "duration {duration} s");
        let all = samples(&p);
        let (s, f) = split(&all, "slow_function", "fast_function");
        assert_split(s, f);
        // One busy thread: the CPU time of the scrape's duration.
        let cpu = all.iter().map(|s| s.value).sum::<i64>() as f64 / 1e9;
        eprintln!(
            "scrape of {seconds} s: {cpu:.2} CPU-s, slow {s} fast {f}, answered after {took:?}"
        );
        assert!(cpu > seconds * 0.7 && cpu < seconds * 1.2, "{cpu} CPU-s");
    }
    assert!(child.wait().unwrap().success());
    let pushed = pushed_samples(&server, &[("pyroscope_spy", "pyspy")], None, "");
    let (s, f) = split(&pushed, "slow_function", "fast_function");
    assert_split(s, f);
}

/// Pull only (no server, no --output): no files are written; a scrape still open when the
/// program ends is answered with what it holds.
#[test]
fn pull_only_writes_no_files_and_answers_an_open_scrape_at_the_end() {
    let port = free_port();
    let dir = tempdir("pull-only");
    let mut cmd = pyroscope(&[
        "exec",
        "--listen-address",
        &format!(":{port}"),
        path_str(&python("3.11")),
        path_str(&example_app()),
        "2",
    ]);
    cmd.current_dir(&dir);
    let mut child = cmd.spawn().unwrap();
    wait_listening(port);
    let (status, body) = get(port, "/debug/pprof/profile?seconds=30");
    assert_eq!(status, 200);
    let p = decode_pprof_gz(&body);
    assert!(p.duration_nanos < 5_000_000_000, "{}", p.duration_nanos);
    assert!(samples(&p).iter().any(|s| s.has("slow_function")));
    assert!(child.wait().unwrap().success());
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(files.is_empty(), "{files:?}");
}

/// A port in use is one clear error, before the program starts.
#[test]
fn a_port_in_use_is_one_clear_error_before_the_program_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempdir("pull-port");
    let started = dir.join("started");
    let r = run(
        pyroscope(&[
            "exec",
            "--listen-address",
            &format!("127.0.0.1:{port}"),
            "sh",
            "-c",
            &format!("touch {}", started.display()),
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let line = error_line(&r);
    assert!(
        line.contains(&format!(
            "cannot listen on --listen-address 127.0.0.1:{port}"
        )) && line.contains("in use"),
        "{line}"
    );
    assert!(!started.exists(), "the program started");
}
