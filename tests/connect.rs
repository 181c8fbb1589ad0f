//! `pyroscope connect --pid`: attach to a running CPython, profile until it exits or until
//! SIGINT/SIGTERM, flush, exit 0.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start_app(version: &str, seconds: &str) -> Child {
    let child = Command::new(python(version))
        .arg(example_app())
        .arg(seconds)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[test]
fn connect_until_sigint_uploads_and_exits_0() {
    let server = Receiver::ok();
    let mut app = start_app("3.11", "30");
    let pid = app.id().to_string();
    let mut agent = pyroscope(&[
        "connect",
        "--pid",
        &pid,
        "--server-address",
        &server.url,
        "--application-name",
        "attached",
        "--tag",
        "mode=connect",
    ])
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    unsafe { libc::kill(agent.id() as i32, libc::SIGINT) };
    let status = agent.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The target keeps running, untouched.
    assert!(
        app.try_wait().unwrap().is_none(),
        "the target must survive the agent"
    );
    app.kill().unwrap();
    let _ = app.wait();
    let all = pushed_samples(
        &server,
        &[("service_name", "attached"), ("mode", "connect")],
        None,
        "connect",
    );
    let (s, f) = split(&all, "slow_function", "fast_function");
    assert!(s > 50 && f > 10, "slow {s} fast {f}");
}

#[test]
fn connect_ends_when_the_target_exits() {
    for blocking in [false, true] {
        let out = tempdir(&format!("connect-exit-{blocking}")).join("p.json");
        let mut app = start_app("3.12", "2");
        let pid = app.id().to_string();
        let mut args = vec!["connect", "--pid", &pid, "--output", path_str(&out)];
        if blocking {
            args.push("--pyspy-blocking");
        }
        let started = Instant::now();
        let mut agent = pyroscope(&args).spawn().unwrap();
        // The target's parent (this test) reaps it; the agent must notice the exit by itself.
        let app_status = app.wait().unwrap();
        assert!(
            app_status.success(),
            "blocking={blocking}: the target ran normally"
        );
        let status = loop {
            if let Some(s) = agent.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "agent did not exit after its target"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0));
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let frames = doc["shared"]["frames"].as_array().unwrap();
        assert!(
            frames.iter().any(|f| f["name"] == "slow_function"),
            "blocking={blocking}"
        );
    }
}

#[test]
fn connect_follows_new_subprocesses() {
    let out = tempdir("connect-mp").join("p.txt");
    let mut app = Command::new(python("3.11"))
        .arg(test_app("multiproc.py"))
        .arg("spawn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = app.id().to_string();
    let agent = pyroscope(&["connect", "--pid", &pid, "--output", path_str(&out)])
        .spawn()
        .unwrap();
    assert!(app.wait().unwrap().success());
    let r = agent.wait_with_output().unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let burn: u64 = collapsed(&text)
        .iter()
        .filter(|(s, _)| s.contains("worker_burn"))
        .map(|(_, n)| n)
        .sum();
    assert!(burn > 100, "worker_burn samples: {burn}");
}
