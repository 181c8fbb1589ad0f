//! MRI Ruby (Debian's ruby, installed by scripts/test.sh) under the real binary: exec with
//! uploads decoded, connect, exit status and signals, forked workers, errors.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn ruby_app() -> std::path::PathBuf {
    repo().join("examples/ruby/app.rb")
}

/// The Ruby example run for `seconds` (after `ruby_args`, with `env`), given 300 ms to start.
fn start_ruby_app(
    ruby_args: &[&str],
    seconds: &str,
    env: &[(&str, &std::path::Path)],
) -> std::process::Child {
    let mut c = Command::new(ruby());
    c.args(ruby_args)
        .arg(ruby_app())
        .arg(seconds)
        .stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[test]
fn exec_uploads_ruby_stacks_with_the_split() {
    let _slot = Slot::take();
    let server = Receiver::ok();
    let rb = ruby();
    let app = ruby_app();
    let r = run(
        pyroscope(&[
            "exec",
            "--server-address",
            &server.url,
            "--application-name",
            "shop.worker",
            "--tag",
            "lang=ruby",
            "--sample-rate",
            "1000",
            "--log-level",
            "debug",
            &rb,
            path_str(&app),
            "4",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(r.stderr.contains("MRI Ruby"), "{}", r.stderr);
    let all = pushed_samples(
        &server,
        &[
            ("pyroscope_spy", "rbspy"),
            ("service_name", "shop.worker"),
            ("lang", "ruby"),
        ],
        Some(1_000_000),
        &r.stderr,
    );
    let (s, f) = split(&all, "slow_function", "fast_function");
    assert_split(s, f);
    // Function, file (shortened) and line are separate fields.
    let heavy = all
        .iter()
        .filter(|s| s.has("slow_function"))
        .max_by_key(|s| s.value)
        .unwrap();
    let leaf = heavy.frames.last().unwrap();
    assert_eq!(leaf.0, "work");
    assert!(
        leaf.1.ends_with("app.rb") && !leaf.1.starts_with('/'),
        "file {}",
        leaf.1
    );
    assert!(leaf.2 > 0);
    let total: i64 = all.iter().map(|s| s.value).sum();
    let idle: i64 = all
        .iter()
        .filter(|s| {
            s.frames
                .iter()
                .any(|f| f.0.contains("block in") && f.2 == 24)
        })
        .map(|s| s.value)
        .sum();
    assert!(
        idle * 10 < total,
        "sleeping thread in a CPU profile: {idle}/{total}"
    );
}

/// Ruby 3.3 (built from Debian's source by scripts/test.sh), live: `exec` with uploads,
/// `connect`, `exec --rbspy-blocking` and `connect --rbspy-blocking`, each with the 3:1 split within 25% at 1,000 Hz. rbspy
/// names Ruby 3.x methods with their owner (`Object#slow_function`) from 3.2 on.
#[test]
fn ruby_3_3_under_exec_connect_and_blocking() {
    let _slot = Slot::take();
    let rb = ruby33();
    let app = ruby_app();
    let server = Receiver::ok();
    let r = run(
        pyroscope(&[
            "exec",
            "--server-address",
            &server.url,
            "--application-name",
            "ruby33",
            "--sample-rate",
            "1000",
            &rb,
            path_str(&app),
            "4",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("MRI Ruby 3.3.8"), "{}", r.stderr);
    let all = pushed_samples(
        &server,
        &[("pyroscope_spy", "rbspy"), ("service_name", "ruby33")],
        Some(1_000_000),
        &r.stderr,
    );
    let (s, f) = split(&all, "Object#slow_function", "Object#fast_function");
    eprintln!("ruby 3.3 exec: slow {s} fast {f}");
    assert_split(s, f);

    let dir = tempdir("ruby33");
    let out = dir.join("connect.txt");
    let mut program = Command::new(&rb);
    program.arg(&app).arg("5");
    let r = connect_to(
        program,
        Duration::from_millis(300),
        &["--sample-rate", "1000", "--output", path_str(&out)],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let (s, f) = collapsed_split(
        &collapsed_file(&out),
        "Object#slow_function",
        "Object#fast_function",
    );
    eprintln!("ruby 3.3 connect: slow {s} fast {f}");
    assert_split(s, f);

    // Blocking, under exec (the agent's tracer pauses the process). Stopping every thread once
    // broke the sleep of Ruby 3.3's timer thread (epoll_wait, EINTR) 1,000 times a second, so
    // its time slices never ended: a thread waiting for the GVL never got it (here: a thread
    // started after the profiler never ran) and 99.9% of the reads failed. Threads asleep in the
    // kernel are now left alone.
    let out = dir.join("exec-blocking.txt");
    let script = format!(
        "$woke = 0; Thread.new {{ loop {{ sleep 0.05; $woke += 1 }} }}; load '{}'; puts \"woke #{{$woke}}\"",
        app.display()
    );
    let woke = |stdout: &str| -> u32 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("woke ")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no 'woke N' line: {stdout}"))
    };
    // Without the profiler (the waking thread waits for the GVL up to a time slice, 100 ms).
    let plain = Command::new(&rb)
        .args(["-e", &script, "4"])
        .output()
        .unwrap();
    let plain = woke(&String::from_utf8_lossy(&plain.stdout));
    let r = run(
        pyroscope(&[
            "exec",
            "--rbspy-blocking",
            "--sample-rate",
            "1000",
            "--output",
            path_str(&out),
            &rb,
            "-e",
            &script,
            "4",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let profiled = woke(&r.stdout);
    assert!(
        profiled * 2 >= plain,
        "a thread started under the profiler woke {profiled} times in 4 s, {plain} times without it"
    );
    // Reads fail only while Ruby starts (~0.1 s).
    let (samples, errors) = summary_counts(&r.stderr);
    assert!(
        errors * 5 < samples,
        "{errors} failed reads for {samples} samples: {}",
        r.stderr
    );
    let (s, f) = collapsed_split(
        &collapsed_file(&out),
        "Object#slow_function",
        "Object#fast_function",
    );
    eprintln!("ruby 3.3 exec blocking: slow {s} fast {f}, {samples} samples, {errors} errors, sleeper woke {profiled} times ({plain} unprofiled)");
    assert_split(s, f);

    // Blocking, under connect (each runnable thread seized and stopped per read).
    let out = dir.join("blocking.txt");
    let mut program = Command::new(&rb);
    program.arg(&app).arg("5");
    let r = connect_to(
        program,
        Duration::from_millis(300),
        &[
            "--rbspy-blocking",
            "--sample-rate",
            "1000",
            "--output",
            path_str(&out),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("read with the target paused"),
        "{}",
        r.stderr
    );
    let (s, f) = collapsed_split(
        &collapsed_file(&out),
        "Object#slow_function",
        "Object#fast_function",
    );
    eprintln!("ruby 3.3 blocking: slow {s} fast {f}");
    assert_split(s, f);
}

#[test]
fn ruby_exit_status_and_signals() {
    let rb = ruby();
    let r = run(
        pyroscope(&[
            "exec",
            "--no-logging",
            "--output",
            "/tmp/rb.txt",
            &rb,
            "-e",
            "exit 7",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(7));
    let r = run(
        pyroscope(&[
            "exec",
            "--no-logging",
            "--output",
            "/tmp/rb.txt",
            &rb,
            "-e",
            "Process.kill(:KILL, Process.pid)",
        ]),
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
    let mut out = wait_ready(&mut child);
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
    let mut app = start_ruby_app(&[], "3", &[]);
    let pid = app.id().to_string();
    let r = run(
        pyroscope(&["connect", "--pid", &pid, "--output", path_str(&out)]),
        Duration::from_secs(30),
    );
    assert!(app.wait().unwrap().success());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines = collapsed_file(&out);
    let (s, f) = collapsed_split(&lines, "slow_function", "fast_function");
    assert!(s > 60 && f > 10, "slow {s} fast {f}");
}

#[test]
fn forked_ruby_workers_are_profiled() {
    let out = tempdir("rb-fork").join("p.txt");
    let r = run(
        pyroscope(&[
            "exec",
            "--output",
            path_str(&out),
            &ruby(),
            path_str(&test_app("ruby_fork.rb")),
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let burn: u64 = collapsed_file(&out)
        .iter()
        .filter(|(s, _)| s.contains("worker_burn"))
        .map(|(_, n)| n)
        .sum();
    // Two workers × 2 s at 100 Hz ≈ 400 samples, all in the forked children.
    assert!(burn > 200, "worker_burn samples: {burn}; {}", r.stderr);
}

/// A copy of Debian's libruby whose `ruby_version` claims another version (the interpreter is
/// still 3.1.2): how a Ruby release newer than rbspy's table looks to the spy.
fn libruby_claiming(version: &str) -> std::path::PathBuf {
    let dir = tempdir(&format!("libruby-{version}"));
    let src = std::path::PathBuf::from("/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1");
    let src = std::fs::canonicalize(&src).expect("Debian's libruby-3.1");
    let dst = dir.join("libruby-3.1.so.3.1");
    let offset = elf_symbol_file_offset(&src, "ruby_version");
    let mut bytes = std::fs::read(&src).unwrap();
    assert_eq!(&bytes[offset..offset + 6], b"3.1.2\0");
    bytes[offset..offset + 5].copy_from_slice(version.as_bytes());
    std::fs::write(&dst, bytes).unwrap();
    dir
}

fn exec_with_libruby(dir: &std::path::Path, args: &[&str]) -> Run {
    let out = dir.join("p.txt");
    let mut full = vec!["exec", "--output", path_str(&out)];
    full.extend_from_slice(args);
    let mut cmd = pyroscope(&full);
    cmd.env("LD_LIBRARY_PATH", dir);
    run(cmd, Duration::from_secs(60))
}

#[test]
fn unknown_patch_release_falls_back_to_the_nearest_known_one() {
    let _slot = Slot::take();
    let dir = libruby_claiming("3.1.9");
    // 1,000 Hz for 4 s: ~4,000 samples put the 3:1 split's spread at ~5% (at 250 Hz, ~10%: one
    // run in ten came out above 3.5), so 25% is well outside sampling noise.
    let r = exec_with_libruby(
        &dir,
        &["--sample-rate", "1000", &ruby(), path_str(&ruby_app()), "4"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warn:")).collect();
    assert_eq!(warnings.len(), 1, "one warning: {}", r.stderr);
    assert!(
        warnings[0].contains("Ruby 3.1.9") && warnings[0].contains("as Ruby 3.1.7"),
        "{}",
        warnings[0]
    );
    assert!(
        r.stderr.contains("reads Ruby 3.1.9 correctly"),
        "{}",
        r.stderr
    );
    let lines = collapsed_file(dir.join("p.txt"));
    let (s, f) = collapsed_split(&lines, "slow_function", "fast_function");
    assert_split(s, f);
}

#[test]
fn a_fallback_layout_that_does_not_fit_stops_with_a_clear_error() {
    // A 3.1 interpreter claiming 2.7.9 is read with 2.7.8's layout: that must be caught.
    let dir = libruby_claiming("2.7.9");
    let r = exec_with_libruby(
        &dir,
        &[&ruby(), "--disable-gems", path_str(&ruby_app()), "3"],
    );
    assert_eq!(r.code, Some(0), "the program is unaffected: {}", r.stderr);
    let error = error_line(&r);
    assert!(
        error.contains("Ruby 2.7.9") && error.contains("2.7.8"),
        "{error}"
    );
    let text = std::fs::read_to_string(dir.join("p.txt")).unwrap();
    assert!(
        !text.contains("slow_function"),
        "no stacks from a wrong layout: {text}"
    );
}

#[test]
fn an_unknown_minor_version_is_unsupported() {
    let dir = libruby_claiming("9.9.9");
    let r = exec_with_libruby(
        &dir,
        &[
            &ruby(),
            "--disable-gems",
            "-e",
            "x = 0; 2_000_000.times { |i| x += i }; exit 5",
        ],
    );
    assert_eq!(r.code, Some(5));
    let error = error_line(&r);
    assert!(error.contains("Ruby 9.9.9 is not supported"), "{error}");
}

/// How many reads were done with the target paused, from the end-of-run report.
fn paused_reads(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("samples of"))
        .unwrap_or_else(|| panic!("no report: {stderr}"));
    line.split_once(" read with the target paused")
        .and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no paused count in {line:?}"))
}

/// The 3:1 split holds in the collapsed profile at `out`, and every stack in it was read with the
/// target paused.
fn assert_split_read_in_pauses(out: &std::path::Path, stderr: &str) {
    let lines = collapsed_file(out);
    let (s, f) = collapsed_split(&lines, "slow_function", "fast_function");
    assert_split(s, f);
    let stacks: u64 = lines.iter().map(|(_, n)| n).sum();
    assert!(
        paused_reads(stderr) >= stacks,
        "every stack read in a pause: {stderr}"
    );
}

/// `--rbspy-blocking` with connect: every read happens with the process paused (remoteprocess's
/// ptrace lock, as the agent is not its tracer); the program runs to its normal end.
#[test]
fn connect_with_rbspy_blocking() {
    let _slot = Slot::take();
    let out = tempdir("rb-blocking").join("p.txt");
    let mut app = start_ruby_app(&[], "4", &[]);
    let pid = app.id().to_string();
    let r = run(
        pyroscope(&[
            "connect",
            "--pid",
            &pid,
            "--rbspy-blocking",
            "--sample-rate",
            "1000",
            "--output",
            path_str(&out),
        ]),
        Duration::from_secs(30),
    );
    assert!(app.wait().unwrap().success());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stderr.contains("warn:"), "{}", r.stderr);
    assert_split_read_in_pauses(&out, &r.stderr);
}

/// `--rbspy-blocking` under exec: the agent is the tracer, so it pauses the process itself (as
/// for Python) and rbspy reads inside the pause. The split holds, the exit status is the child's.
#[test]
fn exec_with_rbspy_blocking_pauses_through_the_tracer() {
    let _slot = Slot::take();
    let out = tempdir("rb-exec-blocking").join("p.txt");
    let r = run(
        pyroscope(&[
            "exec",
            "--rbspy-blocking",
            "--sample-rate",
            "1000",
            "--output",
            path_str(&out),
            &ruby(),
            "-e",
            &format!("load '{}'; exit 3", ruby_app().display()),
            "4",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        !r.stderr.contains("warn:") && !r.stderr.contains("error:"),
        "{}",
        r.stderr
    );
    assert_split_read_in_pauses(&out, &r.stderr);
}

/// A script with a `#!/usr/bin/ruby` line run directly (how `bundle`, `rake`, `rails`, `puma` and
/// `sidekiq` start): the running executable is ruby, so it is profiled as Ruby.
#[test]
fn ruby_shebang_scripts_are_profiled() {
    let dir = tempdir("rb-shebang");
    let script = dir.join("my-worker");
    std::fs::write(
        &script,
        format!(
            "#!{}\n{}",
            ruby(),
            std::fs::read_to_string(ruby_app()).unwrap()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = dir.join("p.txt");
    let r = run(
        pyroscope(&["exec", "--output", path_str(&out), path_str(&script), "1"]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("MRI Ruby 3."), "{}", r.stderr);
    let (s, f) = collapsed_split(&collapsed_file(&out), "slow_function", "fast_function");
    assert!(s > 30 && f > 5, "slow {s} fast {f}");
}

/// connect to a Ruby whose fallback layout turns out wrong: one error, exit 1, no hang.
#[test]
fn connect_gives_up_when_the_fallback_layout_is_wrong() {
    let dir = libruby_claiming("2.7.9");
    let mut app = start_ruby_app(&["--disable-gems"], "8", &[("LD_LIBRARY_PATH", &dir)]);
    let pid = app.id().to_string();
    let r = run(
        pyroscope(&[
            "connect",
            "--pid",
            &pid,
            "--output",
            path_str(&dir.join("c.txt")),
        ]),
        Duration::from_secs(20),
    );
    app.kill().unwrap();
    let _ = app.wait();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    error_line(&r);
}
