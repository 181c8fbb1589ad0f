//! MRI Ruby (Debian's ruby, installed by scripts/test.sh) under the real binary: exec with
//! uploads decoded, connect, exit status and signals, forked workers, errors.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn ruby() -> String {
    for p in ["/usr/bin/ruby", "/usr/local/bin/ruby"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("ruby is not installed (scripts/test.sh installs Debian's ruby)");
}

fn ruby_app() -> std::path::PathBuf {
    repo().join("examples/ruby/app.rb")
}

#[test]
fn exec_uploads_ruby_stacks_with_the_split() {
    let server = Receiver::ok();
    let rb = ruby();
    let app = ruby_app();
    let r = run(
        pyroscope(&[
            "exec", "--server-address", &server.url, "--application-name", "shop.worker", "--tag", "lang=ruby",
            "--sample-rate", "250", "--log-level", "debug", &rb, path_str(&app), "4",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(r.stderr.contains("MRI Ruby"), "{}", r.stderr);
    let pushes = server.accepted(PUSH_PATH);
    assert!(!pushes.is_empty(), "{}", r.stderr);
    let mut all = Vec::new();
    for p in &pushes {
        let (labels, prof) = decode_push(p);
        assert_eq!(labels["pyroscope_spy"], "rbspy");
        assert_eq!(labels["service_name"], "shop.worker");
        assert_eq!(labels["lang"], "ruby");
        assert_eq!(prof.period, 4_000_000);
        all.extend(samples(&prof));
    }
    let (s, f) = split(&all, "slow_function", "fast_function");
    assert_split(s, f);
    // Function, file (shortened) and line are separate fields.
    let heavy = all.iter().filter(|s| s.has("slow_function")).max_by_key(|s| s.value).unwrap();
    let leaf = heavy.frames.last().unwrap();
    assert_eq!(leaf.0, "work");
    assert!(leaf.1.ends_with("app.rb") && !leaf.1.starts_with('/'), "file {}", leaf.1);
    assert!(leaf.2 > 0);
    let total: i64 = all.iter().map(|s| s.value).sum();
    let idle: i64 = all.iter().filter(|s| s.frames.iter().any(|f| f.0.contains("block in") && f.2 == 24)).map(|s| s.value).sum();
    assert!(idle * 10 < total, "sleeping thread in a CPU profile: {idle}/{total}");
}

#[test]
fn ruby_exit_status_and_signals() {
    let rb = ruby();
    let r = run(pyroscope(&["exec", "--no-logging", "--output", "/tmp/rb.txt", &rb, "-e", "exit 7"]), Duration::from_secs(30));
    assert_eq!(r.code, Some(7));
    let r = run(
        pyroscope(&["exec", "--no-logging", "--output", "/tmp/rb.txt", &rb, "-e", "Process.kill(:KILL, Process.pid)"]),
        Duration::from_secs(30),
    );
    assert_eq!(r.signal, Some(libc::SIGKILL));
    // A signal sent to pyroscope reaches the Ruby program once.
    let mut child = pyroscope(&[
        "exec", "--no-logging", "--output", "/tmp/rb.txt", &rb, "-e",
        "n = 0; Signal.trap(:USR1) { n += 1 }; Signal.trap(:TERM) { sleep 0.3; puts \"usr1 x#{n}\"; exit 3 }; $stdout.sync = true; puts :ready; loop { 1000.times { } ; sleep 0.001 }",
    ])
    .spawn()
    .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(3));
    assert_eq!(rest.trim(), "usr1 x1");
}

#[test]
fn connect_to_a_running_ruby() {
    let out = tempdir("rb-connect").join("p.txt");
    let mut app = Command::new(ruby()).arg(ruby_app()).arg("3").stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = app.id().to_string();
    let r = run(pyroscope(&["connect", "--pid", &pid, "--output", path_str(&out)]), Duration::from_secs(30));
    assert!(app.wait().unwrap().success());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines = collapsed(&std::fs::read_to_string(&out).unwrap());
    let (s, f) = collapsed_split(&lines, "slow_function", "fast_function");
    assert!(s > 60 && f > 10, "slow {s} fast {f}");
}

#[test]
fn forked_ruby_workers_are_profiled() {
    let out = tempdir("rb-fork").join("p.txt");
    let r = run(
        pyroscope(&["exec", "--output", path_str(&out), &ruby(), path_str(&test_app("ruby_fork.rb"))]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let burn: u64 =
        collapsed(&std::fs::read_to_string(&out).unwrap()).iter().filter(|(s, _)| s.contains("worker_burn")).map(|(_, n)| n).sum();
    // Two workers × 2 s at 100 Hz ≈ 400 samples, all in the forked children.
    assert!(burn > 200, "worker_burn samples: {burn}; {}", r.stderr);
}

#[test]
fn rbspy_on_a_process_that_is_not_ruby() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let r = run(pyroscope(&["connect", "--pid", &pid, "--spy-name", "rbspy"]), Duration::from_secs(20));
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("does not look like a Ruby process"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"));
}
