//! CPU time that adds up: the CPU the uploaded profile holds equals the CPU time the kernel gave
//! the profiled program (±5%), also when CPUs are shared and when a cgroup quota throttles it.
//! Each stack is weighted by its thread's CPU time since the previous tick (`schedstat`), not by
//! a fixed period: with 8 busy processes on 2 cores a fixed period counted 2.5x too much.

mod common;
use common::*;
use std::time::Duration;

/// The cases run one at a time: each is about its own share of the CPUs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `busy.py ARGS` under `pyroscope exec` (through `wrapper`, e.g. to enter a cgroup) with
/// uploads to a test receiver; returns (profile CPU s, kernel CPU s of the program).
fn profile_and_kernel_cpu(wrapper: &[&str], args: &[&str]) -> (f64, f64, String) {
    let py = python("3.11");
    let app = test_app("busy.py");
    program_cpu(wrapper, &[path_str(&py), path_str(&app)], args)
}

/// Runs `program ARGS` (which ends printing `cpu SECONDS`) under `pyroscope exec`.
fn program_cpu(wrapper: &[&str], program: &[&str], args: &[&str]) -> (f64, f64, String) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Receiver::ok();
    let mut full: Vec<&str> = vec![
        "exec",
        "--server-address",
        &server.url,
        "--application-name",
        "cpu-time",
    ];
    full.extend_from_slice(program);
    full.extend_from_slice(args);
    let mut cmd = if wrapper.is_empty() {
        pyroscope(&full)
    } else {
        let mut c = std::process::Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(bin()).args(&full);
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    cmd.env_remove("PYROSCOPE_SERVER_ADDRESS");
    let r = run(cmd, Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let kernel: f64 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .unwrap_or_else(|| panic!("no cpu line: {} {}", r.stdout, r.stderr))
        .trim()
        .parse()
        .unwrap();
    let samples = pushed_samples(&server, &[], None, &r.stderr);
    let profile_ns: i64 = samples.iter().map(|s| s.value).sum();
    (profile_ns as f64 / 1e9, kernel, r.stderr)
}

fn assert_adds_up(profile: f64, kernel: f64, stderr: &str) {
    let ratio = profile / kernel;
    println!("profile {profile:.3} s, kernel {kernel:.3} s, ratio {ratio:.3}");
    assert!(
        (0.95..=1.05).contains(&ratio),
        "profile holds {profile:.3} CPU-s, the kernel gave {kernel:.3} (ratio {ratio:.3}); {stderr}"
    );
}

#[test]
fn one_busy_thread() {
    let (profile, kernel, err) = profile_and_kernel_cpu(&[], &["threads", "1", "4"]);
    assert!(kernel > 3.0, "the program burned {kernel} s");
    assert_adds_up(profile, kernel, &err);
}

#[test]
fn eight_busy_processes_on_two_cores() {
    let (profile, kernel, err) = profile_and_kernel_cpu(&[], &["procs", "8", "4"]);
    // 8 processes × 4 s of wall time, on 2 cores: at most ~8 CPU-s, not 32.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    assert!(
        kernel <= cores * 4.5,
        "kernel CPU {kernel} on {cores} cores"
    );
    assert_adds_up(profile, kernel, &err);
}

/// 32 processes share 2 cores: every one must be sampled whenever it ran (a sample lost for a
/// process that ran is CPU missing from the profile), newly forked ones from their first tick.
#[test]
fn thirty_two_busy_processes_on_two_cores() {
    let (profile, kernel, err) = profile_and_kernel_cpu(&[], &["procs", "32", "3"]);
    assert_adds_up(profile, kernel, &err);
}

/// A cgroup (v1 `cpu` controller) limited to half a CPU, removed when dropped.
struct HalfCpu(std::path::PathBuf);

impl HalfCpu {
    fn new() -> HalfCpu {
        let root = std::path::Path::new("/sys/fs/cgroup/cpu");
        assert!(
            root.join("cpu.cfs_quota_us").exists(),
            "this test needs the cgroup v1 cpu controller at {} (and root)",
            root.display()
        );
        let dir = root.join(format!("pyroscope-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a cgroup (run as root)");
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").unwrap();
        std::fs::write(dir.join("cpu.cfs_quota_us"), "50000").unwrap();
        HalfCpu(dir)
    }
}

impl Drop for HalfCpu {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn one_process_limited_to_half_a_cpu() {
    let cg = HalfCpu::new();
    let procs = cg.0.join("cgroup.procs");
    // The shell enters the cgroup, then becomes pyroscope: agent and program run under the quota.
    let script = format!("echo $$ > {} && exec \"$0\" \"$@\"", procs.display());
    let (profile, kernel, err) =
        profile_and_kernel_cpu(&["sh", "-c", &script], &["threads", "1", "4"]);
    assert!(
        kernel < 0.6 * 4.0,
        "the quota held the program to {kernel} CPU-s in 4 s"
    );
    assert!(kernel > 1.0, "the program burned {kernel} s");
    assert_adds_up(profile, kernel, &err);
}

/// Ruby: rbspy reads the GVL holder, whose `pthread_t` is mapped to its OS thread to weight it.
#[test]
fn four_busy_ruby_processes_on_two_cores() {
    let app = test_app("busy.rb");
    let (profile, kernel, err) = program_cpu(&[], &[&ruby(), path_str(&app)], &["4", "3"]);
    assert!(kernel > 3.0, "the program burned {kernel} s");
    assert_adds_up(profile, kernel, &err);
}

/// CPU seconds the speedscope output of `pyroscope exec FLAGS python2.7 two_busy_threads.py 3`
/// gives `alpha` and `beta` (one thread each).
fn two_threads_on_2_7(flags: &[&str]) -> (f64, f64, String) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempdir("gil").join(format!("p{}.json", flags.len()));
    let py = python("2.7");
    let app = test_app("two_busy_threads.py");
    let mut args = vec!["exec", "--output", path_str(&out)];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[path_str(&py), path_str(&app), "3"]);
    let r = run(pyroscope(&args), Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let names: Vec<&str> = doc["shared"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let p = &doc["profiles"][0];
    let (mut alpha, mut beta) = (0.0, 0.0);
    for (s, w) in p["samples"]
        .as_array()
        .unwrap()
        .iter()
        .zip(p["weights"].as_array().unwrap())
    {
        let w = w.as_f64().unwrap() / 1e9;
        let frames: Vec<&str> = s
            .as_array()
            .unwrap()
            .iter()
            .map(|i| names[i.as_u64().unwrap() as usize])
            .collect();
        if frames.contains(&"alpha") {
            alpha += w;
        }
        if frames.contains(&"beta") {
            beta += w;
        }
    }
    (alpha, beta, r.stderr)
}

/// CPython 2.7's GIL wakes its waiters every 100 bytecodes, so two busy threads both burn CPU
/// (both count, with the CPU they used); `--gil-only` counts only the holder, as py-spy's --gil.
#[test]
fn gil_only_counts_the_gil_holder() {
    let (a, b, err) = two_threads_on_2_7(&[]);
    let all = a + b;
    let (ga, gb, gerr) = two_threads_on_2_7(&["--gil-only"]);
    let held = ga + gb;
    println!("2.7, 3 s: every thread {all:.2} CPU-s ({a:.2} + {b:.2}); --gil-only {held:.2} ({ga:.2} + {gb:.2})");
    assert!(
        ga > 0.1 && gb > 0.1,
        "both threads hold the GIL in turn: {ga} {gb}; {gerr}"
    );
    assert!(
        held < 3.0 * 1.1,
        "one holder at a time: {held} CPU-s in 3 s; {gerr}"
    );
    assert!(
        held < 0.8 * all,
        "--gil-only {held} vs every thread {all}; {err}"
    );
}

/// A program whose loop runs in lockstep with the sampling rate (3.75 ms in `phase_a`, 1.25 ms
/// in `phase_b`, every 5 ms, to deadlines on the sampler's own clock; sampled at 200 Hz) is still
/// split 3:1. A sampler with a fixed period sees the same phase every time and gives all of it to
/// one of the two; samples at random points of a fixed grid, weighed by the CPU time since the
/// sample before, favour the later phase (about 1.9:1); random gaps between samples do neither.
#[test]
fn a_loop_in_lockstep_with_the_sampler_is_split_by_its_time() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempdir("lockstep").join("p.pb.gz");
    let py = python("3.11");
    let app = test_app("lockstep.py");
    let args = [
        "exec",
        "--sample-rate",
        "200",
        "--output",
        path_str(&out),
        path_str(&py),
        path_str(&app),
        "6",
    ];
    let r = run(pyroscope(&args), Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let samples = samples(&decode_pprof_gz(&std::fs::read(&out).unwrap()));
    let (a, b) = split(&samples, "phase_a", "phase_b");
    println!("lockstep, 200 Hz, 6 s: phase_a:phase_b = {a}:{b}");
    // ~1,200 samples: the binomial spread of the ratio is ~7%; aliased, it is 0 or unbounded.
    assert!(
        a > 0 && b > 0,
        "one phase never sampled: {a}:{b}; {}",
        r.stderr
    );
    let ratio = a as f64 / b as f64;
    assert!(
        (2.0..=4.5).contains(&ratio),
        "phase_a:phase_b = {ratio:.2}, expected 3"
    );
}

/// Threads that take turns at the GIL (CPython 3.11: the main thread and, one after another,
/// threads that live ~40 ms each). At a tick one holds the GIL and the other waits for it, so
/// counting only the threads runnable at the tick gave the profile half of the kernel's CPU
/// (measured 0.52; the short-lived threads 0.41). Each thread that ran counts with the CPU it
/// used: 0.92 (short-lived threads 0.86). What is still lost, mostly from the short-lived
/// threads: a thread's CPU between the last tick and its exit, and a first interval of less
/// than a quarter of a period spent waiting for the GIL.
#[test]
fn threads_taking_turns_and_coming_and_going_add_up() {
    let py = python("3.11");
    let app = test_app("thread_churn.py");
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempdir("churn").join("p.pb.gz");
    let args = [
        "exec",
        "--output",
        path_str(&out),
        path_str(&py),
        path_str(&app),
        "4",
    ];
    let r = run(pyroscope(&args), Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let field = |name: &str| -> f64 {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name}line: {}", r.stdout))
            .trim()
            .parse()
            .unwrap()
    };
    let (kernel, kernel_short) = (field("cpu "), field("short "));
    let samples = samples(&decode_pprof_gz(&std::fs::read(&out).unwrap()));
    let total = samples.iter().map(|s| s.value).sum::<i64>() as f64 / 1e9;
    let short = samples
        .iter()
        .filter(|s| s.has("short_lived"))
        .map(|s| s.value)
        .sum::<i64>() as f64
        / 1e9;
    println!(
        "3.11, GIL shared, ~90 threads of 40 ms: profile {total:.2} of kernel {kernel:.2} CPU-s ({:.3}); short-lived threads {short:.2} of {kernel_short:.2} ({:.2})",
        total / kernel,
        short / kernel_short
    );
    assert!(
        total > 0.85 * kernel && total < 1.05 * kernel,
        "profile {total:.2} vs kernel {kernel:.2} CPU-s; {}",
        r.stderr
    );
    assert!(
        short > 0.7 * kernel_short && short < 1.1 * kernel_short,
        "short-lived threads: profile {short:.2} vs kernel {kernel_short:.2} CPU-s"
    );
}
