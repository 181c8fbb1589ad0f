//! .NET: a real CoreCLR 3.1 (PyPI `dotnetcore2`, installed by scripts/test.sh) running
//! examples/dotnet/Burn.cs (compiled with Debian's Mono `mcs`) under `pyroscope exec` and
//! `connect`, against the in-test receiver.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn start_burn(seconds: &str, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(dotnet());
    c.arg(burn_dll()).arg(seconds).stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.spawn().unwrap();
    // Let the runtime create its diagnostics socket.
    std::thread::sleep(Duration::from_millis(700));
    child
}

#[test]
fn exec_uploads_dotnet_stacks_with_the_split_and_keeps_the_exit_code() {
    let server = Receiver::ok();
    let r = run(
        pyroscope(&[
            "exec",
            "--server-address",
            &server.url,
            "--application-name",
            "shop.billing",
            "--tag",
            "lang=dotnet",
            "--sample-rate",
            "250",
            "--log-level",
            "debug",
            path_str(&dotnet()),
            path_str(burn_dll()),
            "4",
            "7",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(7), "stderr: {}", r.stderr);
    assert!(r.stderr.contains(".NET 3.1.23 (CoreCLR)"), "{}", r.stderr);
    let all = pushed_samples(
        &server,
        &[
            ("pyroscope_spy", "dotnetspy"),
            ("service_name", "shop.billing"),
            ("lang", "dotnet"),
        ],
        Some(4_000_000),
        &r.stderr,
    );
    let (s, f) = split(&all, "BurnDemo.Worker.Slow", "BurnDemo.Worker.Fast");
    assert_split(s, f);
    // CPU nanoseconds, as for the other spies: one busy thread for ~4 s is ~4e9 ns.
    let total: i64 = all.iter().map(|s| s.value).sum();
    assert!(
        (2_500_000_000..=5_200_000_000).contains(&total),
        "{total} ns of CPU for 4 s of one busy thread"
    );
    // The sleeping thread is not in a CPU profile.
    assert!(
        !all.iter().any(|s| s.has("Sleeper")),
        "sleeping thread in a CPU profile"
    );
    // Frames are named, those of runtime start-up included (attached within milliseconds of
    // the start, most of CoreLib's precompiled code is first used after the rundown).
    let unknown: i64 = all
        .iter()
        .filter(|s| s.has("[unknown]"))
        .map(|s| s.value)
        .sum();
    assert!(
        unknown * 100 <= total,
        "{unknown} of {total} ns in stacks with [unknown] frames"
    );
    let leaf = all
        .iter()
        .filter(|s| s.has("BurnDemo.Worker.Slow"))
        .max_by_key(|s| s.value)
        .unwrap()
        .frames
        .last()
        .unwrap()
        .clone();
    assert_eq!(leaf.0, "BurnDemo.Worker.Work");
    assert_eq!(leaf.1, "burn.dll");
}

#[test]
fn connect_to_a_running_dotnet() {
    let mut app = start_burn("5", &[]);
    let out = tempdir("dotnet-connect").join("p.txt");
    let pid = app.id().to_string();
    let r = run(
        pyroscope(&[
            "connect",
            "--pid",
            &pid,
            "--sample-rate",
            "250",
            "--output",
            path_str(&out),
        ]),
        Duration::from_secs(30),
    );
    assert!(app.wait().unwrap().success());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines = collapsed_file(&out);
    let (s, f) = collapsed_split(&lines, "BurnDemo.Worker.Slow", "BurnDemo.Worker.Fast");
    assert_split(s, f);
}

/// `--dotnet-wall-clock` counts the sleeping thread too.
#[test]
fn wall_clock_view_includes_sleeping_threads() {
    let out = tempdir("dotnet-wall").join("p.txt");
    let r = run(
        pyroscope(&[
            "exec",
            "--dotnet-wall-clock",
            "--output",
            path_str(&out),
            path_str(&dotnet()),
            path_str(burn_dll()),
            "3",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines = collapsed_file(&out);
    let sleeper: u64 = lines
        .iter()
        .filter(|(s, _)| s.contains("Sleeper"))
        .map(|(_, n)| n)
        .sum();
    let busy: u64 = lines
        .iter()
        .filter(|(s, _)| s.contains("BurnDemo.Worker.Work"))
        .map(|(_, n)| n)
        .sum();
    // Both threads exist for the whole run: about as many samples each.
    assert!(
        sleeper * 2 > busy && busy * 2 > sleeper,
        "sleeper {sleeper}, busy {busy}"
    );
    // The sleeper started after the agent attached: the precompiled CoreLib methods that start
    // it are named, with their module, from their ReadyToRun entry points.
    let start = "System.Threading.ThreadHelper.ThreadStart (System.Private.CoreLib.dll);";
    for (stack, _) in lines.iter().filter(|(s, _)| s.contains("Sleeper")) {
        assert!(
            stack.starts_with(start) && !stack.contains("[unknown]"),
            "{stack}"
        );
    }
}

#[test]
fn diagnostics_disabled_is_a_clear_error() {
    let mut app = start_burn("10", &[("COMPlus_EnableDiagnostics", "0")]);
    let pid = app.id().to_string();
    let r = run(
        pyroscope(&["connect", "--pid", &pid, "--output", "/tmp/dotnet-off.txt"]),
        Duration::from_secs(30),
    );
    app.kill().unwrap();
    let _ = app.wait();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains("COMPlus_EnableDiagnostics=0"),
        "{}",
        errors[0]
    );
}

/// Under exec the .NET process is released from ptrace once profiled (see README): a SIGTERM
/// sent to pyroscope still reaches it once, and pyroscope ends exactly as the program does when
/// run directly and sent the same signal.
#[test]
fn sigterm_under_exec_ends_like_the_program_run_directly() {
    use std::os::unix::process::ExitStatusExt;
    let mut direct = start_burn("30", &[]);
    std::thread::sleep(Duration::from_millis(1300));
    unsafe { libc::kill(direct.id() as i32, libc::SIGTERM) };
    let expected = direct.wait().unwrap();

    let agent = pyroscope(&[
        "exec",
        "--log-level",
        "debug",
        "--output",
        "/tmp/dotnet-term.txt",
        path_str(&dotnet()),
        path_str(burn_dll()),
        "30",
    ])
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("released from ptrace"), "{stderr}");
    assert_eq!(
        (out.status.code(), out.status.signal()),
        (expected.code(), expected.signal()),
        "{stderr}"
    );
}

/// Under exec the .NET process leaves ptrace, so the tracer no longer sees its forks: a child
/// it starts later (here a CPython running the Python example) is found by scanning /proc and
/// profiled with its own spy, next to the .NET stacks.
#[test]
fn subprocess_of_a_released_dotnet_process_is_profiled() {
    let out = tempdir("dotnet-child").join("p.txt");
    let r = run(
        pyroscope(&[
            "exec",
            "--log-level",
            "debug",
            "--sample-rate",
            "250",
            "--output",
            path_str(&out),
            path_str(&dotnet()),
            path_str(burn_dll()),
            "5",
            "0",
            path_str(&python("3.11")),
            path_str(&example_app()),
            "4",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("released from ptrace"), "{}", r.stderr);
    assert!(
        r.stderr.contains("(CPython 3.11"),
        "the child was not profiled: {}",
        r.stderr
    );
    let lines = collapsed_file(&out);
    let (s, f) = collapsed_split(&lines, "BurnDemo.Worker.Slow", "BurnDemo.Worker.Fast");
    assert_split(s, f);
    let (s, f) = collapsed_split(&lines, "slow_function", "fast_function");
    assert_split(s, f);
}

/// An unprivileged agent and a root-owned .NET process: the message says how to get ptrace
/// permission.
#[test]
fn unprivileged_agent_is_told_how_to_get_ptrace_permission() {
    let mut app = start_burn("20", &[]);
    let r = as_nobody(&[], app.id());
    app.kill().unwrap();
    let _ = app.wait();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let line = error_line(&r);
    assert!(line.contains("SYS_PTRACE"), "{line}");
}

/// With ptrace permission (CAP_SYS_PTRACE) but another user: the runtime's socket is mode 0600,
/// so the agent may read the process but not open the socket. It says so up front, with the
/// socket's owner, instead of failing later in the session.
#[test]
fn diagnostics_socket_of_another_user_is_a_clear_error() {
    let mut app = start_burn("20", &[]);
    let r = as_nobody(
        &["--inh-caps=+sys_ptrace", "--ambient-caps=+sys_ptrace"],
        app.id(),
    );
    app.kill().unwrap();
    let _ = app.wait();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let line = error_line(&r);
    assert!(
        line.contains("no permission to profile process")
            && line.contains("belongs to uid 0 with mode 0600")
            && line.contains("pyroscope runs as uid 65534"),
        "{line}"
    );
    assert!(!r.stderr.contains("profiling process"), "{}", r.stderr);
}

/// `pyroscope connect --pid PID` run as uid 65534 through setpriv (with extra setpriv flags).
fn as_nobody(setpriv: &[&str], pid: u32) -> Run {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(setpriv)
        .arg("--")
        .arg(bin())
        .args([
            "connect",
            "--pid",
            &pid.to_string(),
            "--output",
            &format!("/tmp/pyroscope-nobody-{pid}.txt"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run(cmd, Duration::from_secs(20))
}

/// A real CoreCLR 2.1 (PyPI dotnetcore2 2.1.23, runtime 2.1.30) has no diagnostics server:
/// connect fails with one clear error; exec reports it once and the program runs on, unprofiled,
/// with its exit code.
#[test]
fn runtime_older_than_3_is_refused_clearly() {
    let dotnet21 = coreclr("DOTNET21_ROOT", "dotnet21", "2.1");
    let dir = tempdir("dotnet21");
    std::fs::copy(burn_dll(), dir.join("burn.dll")).unwrap();
    std::fs::write(
        dir.join("burn.runtimeconfig.json"),
        r#"{"runtimeOptions": {"tfm": "netcoreapp2.1", "framework": {"name": "Microsoft.NETCore.App", "version": "2.1.0"},
            "configProperties": {"System.Globalization.Invariant": true}}}"#,
    )
    .unwrap();
    let dll = dir.join("burn.dll");
    let mut app = Command::new(&dotnet21)
        .arg(&dll)
        .arg("20")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let r = run(
        pyroscope(&[
            "connect",
            "--pid",
            &app.id().to_string(),
            "--output",
            path_str(&dir.join("c.txt")),
        ]),
        Duration::from_secs(30),
    );
    app.kill().unwrap();
    let _ = app.wait();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let line = error_line(&r);
    assert!(
        line.contains(".NET Core 2.1.") && line.contains("3.0 or later is needed"),
        "{line}"
    );

    let r = run(
        pyroscope(&[
            "exec",
            "--output",
            path_str(&dir.join("e.txt")),
            path_str(&dotnet21),
            path_str(&dll),
            "1",
            "5",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    let line = error_line(&r);
    assert!(
        line.contains(".NET Core 2.1.") && line.contains("it is not profiled"),
        "{line}"
    );
}

/// A target as in a container: its own pid namespace (it is pid 1 there, so its socket is
/// `dotnet-diagnostic-1-…`), its own mount namespace with a private tmpfs as TMPDIR (invisible
/// from here except through /proc/PID/root). connect finds the socket and profiles it.
#[test]
fn target_in_its_own_pid_and_mount_namespaces() {
    let dir = tempdir("dotnet-ns");
    let private = dir.join("tmp");
    std::fs::create_dir_all(&private).unwrap();
    let script = format!(
        "mount -t tmpfs none {p} && TMPDIR={p} exec {dotnet} {dll} 5",
        p = private.display(),
        dotnet = dotnet().display(),
        dll = burn_dll().display()
    );
    let mut unshare = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    std::thread::sleep(Duration::from_millis(1000));
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id()))
        .unwrap_or_default();
    let Ok(pid) = children.trim().parse::<u32>() else {
        // unshare failed (it needs CAP_SYS_ADMIN: this test must run as root in a container
        // that allows namespaces, as CI's does).
        let _ = unshare.kill();
        let out = unshare.wait_with_output().unwrap();
        panic!(
            "unshare did not start the program: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "{status}"
    );
    assert_eq!(
        std::fs::read_dir(&private).unwrap().count(),
        0,
        "the private TMPDIR is visible from outside"
    );
    let out = dir.join("p.txt");
    let r = run(
        pyroscope(&[
            "connect",
            "--pid",
            &pid.to_string(),
            "--sample-rate",
            "250",
            "--output",
            path_str(&out),
        ]),
        Duration::from_secs(30),
    );
    assert!(unshare.wait().unwrap().success());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines = collapsed_file(&out);
    let (s, f) = collapsed_split(&lines, "BurnDemo.Worker.Slow", "BurnDemo.Worker.Fast");
    assert_split(s, f);
}

/// Detection goes by the mapped libcoreclr.so, not by the executable's name (an apphost is named
/// after the app): a host started as `shop-api` is recognised and names the application.
#[test]
fn detected_whatever_the_executable_is_called() {
    let dir = tempdir("dotnet-apphost");
    let host = dir.join("shop-api");
    let _ = std::fs::remove_file(&host);
    std::os::unix::fs::symlink(dotnet(), &host).unwrap();
    let out = dir.join("p.txt");
    let r = run(
        pyroscope(&[
            "exec",
            "--output",
            path_str(&out),
            path_str(&host),
            path_str(burn_dll()),
            "2",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("using \"shop-api\"") && r.stderr.contains("(.NET 3.1.23 (CoreCLR))"),
        "{}",
        r.stderr
    );
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("BurnDemo.Worker.Work (burn.dll)"));
}

/// The runtime's sampler runs in bursts, started at random times: a program that alternates two
/// methods every 50 ms gets a 1:1 split within 15%, and the profile still holds the CPU time it
/// used (one busy thread for 12 s: ~12e9 ns).
///
/// It runs at 400 Hz (bursts of 100 ms, one per 250 ms cycle, 40% of the time) rather than the
/// default 100 Hz (one burst a second) because the noise of the split is set by the number of
/// bursts, not by the rate: each burst covers about one period of the program, and where its
/// ends fall in that period moves its split by several percent. With 8 bursts (8 s at 100 Hz)
/// the ratio ranged 0.87-1.33 over 8 runs on this 2-core machine (5 beside two busy loops), and
/// was 1.154 on CI; with 48 bursts it ranged 0.98-1.01 idle and 0.92-1.02 with two busy loops
/// beside it. How a burst is placed in its cycle does not depend on the rate.
#[test]
fn bursts_are_unbiased_for_a_program_alternating_every_50_ms() {
    let _slot = Slot::take();
    let out = tempdir("dotnet-alternate").join("p.pb.gz");
    let r = run(
        pyroscope(&[
            "exec",
            "--sample-rate",
            "400",
            "--log-level",
            "debug",
            "--output",
            path_str(&out),
            path_str(&dotnet()),
            path_str(alternate_dll()),
            "12",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("Bursts { length: 100ms"), "{}", r.stderr);
    let bursts: u64 = r
        .stderr
        .lines()
        .filter(|l| l.contains(" sampling bursts"))
        .find_map(|l| {
            let before = l.split(" sampling bursts").next()?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no burst count: {}", r.stderr));
    // One burst per 250 ms cycle, at a random point of it.
    assert!(
        (36..=52).contains(&bursts),
        "{bursts} bursts in 12 s: {}",
        r.stderr
    );
    let all = samples(&decode_pprof_gz(&std::fs::read(&out).unwrap()));
    let (a, b) = split(&all, "Alternate.First", "Alternate.Second");
    let ratio = a as f64 / b as f64;
    eprintln!(
        "alternating every 50 ms: First {a} ns, Second {b} ns, ratio {ratio:.3}, {bursts} bursts"
    );
    assert!((0.85..=1.15).contains(&ratio), "First {a} Second {b}");
    let total: i64 = all.iter().map(|s| s.value).sum();
    assert!(
        (7_500_000_000..=16_500_000_000).contains(&total),
        "{total} ns of CPU for 12 s of one busy thread"
    );
}

/// Under `exec` the program is given `DOTNET_EventPipeThreadSamplingRate` at the agent's rate
/// (20 ms at 50 Hz), which .NET 10 and later read at start so that their sampler runs at that
/// rate; a value the user set is kept. No .NET 10 runtime can be installed here, so what is
/// checked is the program's environment (and, in the unit tests, that the spy then keeps the
/// sampler on instead of bursts).
#[test]
fn exec_gives_dotnet_10_and_later_the_agents_sampling_rate() {
    let script = "echo rate=$DOTNET_EventPipeThreadSamplingRate";
    let args = [
        "exec",
        "--no-logging",
        "--sample-rate",
        "50",
        "--output",
        "/tmp/pyroscope-test-rate-env.txt",
        "sh",
        "-c",
        script,
    ];
    let r = run(pyroscope(&args), Duration::from_secs(20));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "rate=20");
    let mut cmd = pyroscope(&args);
    cmd.env("DOTNET_EventPipeThreadSamplingRate", "3");
    let r = run(cmd, Duration::from_secs(20));
    assert_eq!(r.stdout.trim(), "rate=3");
}
