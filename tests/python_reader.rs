//! The differential test of our CPython stack reader: on every installed CPython, with the target
//! stopped, our reader's stacks are identical to py-spy's (threads, and per frame the function,
//! file, short file and line, in order) over hundreds of samples of `tests/apps/stack_zoo.py`,
//! which keeps making every kind of frame and keeps freeing and remaking code objects.

mod common;
use common::*;
use spy_python::py_spy::config::{LineNo, LockingStrategy};
use spy_python::py_spy::{Config, PythonSpy};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// At least this many samples are compared; more are taken (up to [`MAX_SAMPLES`]) until every
/// function of [`MUST_SEE`] was met, so that a short function missed by chance on a loaded machine
/// does not fail the run (seen once on CI: `static_work` is ~3% of the main thread's loop).
const SAMPLES: usize = 300;
const MAX_SAMPLES: usize = 3000;

/// Functions of the zoo that must show up in some sample, proving each kind of frame was met
/// (coroutines only on 3.5+).
const MUST_SEE: &[&str] = &[
    "recurse",
    "numbers",
    "area",
    "static_work",
    "inner",
    "handler",
    "generated_",
    "<lambda>",
    "background",
];

/// Every thread of `pid` is stopped (`T`).
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let all = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| e.ok())
            .all(|e| {
                std::fs::read(e.path().join("stat"))
                    .ok()
                    .and_then(|s| spy::procfs::stat_state(&s))
                    .is_none_or(|st| st == b'T' || st == b't')
            });
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

type Shown = (String, String, Option<String>, i32);

fn compare_with_pyspy(version: &str) {
    let py = python(version);
    let mut child = Command::new(&py)
        .arg(test_app("stack_zoo.py"))
        .arg("60")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_ready(&mut child);

    let config = Config {
        blocking: LockingStrategy::NonBlocking,
        lineno: LineNo::LastInstruction,
        collect_thread_names: false,
        ..Config::default()
    };
    let mut theirs = PythonSpy::retry_new(pid as _, &config, 10).expect("py-spy attaches");
    let v = &theirs.version;
    let mut ours = spy_python::frames_for(
        pid,
        v.major,
        v.minor,
        theirs.addresses.interpreter_address,
        None,
    )
    .expect("our reader knows this version");

    let mut must: Vec<&str> = MUST_SEE.to_vec();
    if version != "2.7" {
        must.extend(["chain", "leaf"]);
    }
    let all_seen = |seen: &std::collections::HashSet<String>| {
        must.iter()
            .all(|name| seen.iter().any(|s| s.contains(name)))
    };
    let mut seen: std::collections::HashSet<String> = Default::default();
    let (mut frames_compared, mut threads_compared) = (0usize, 0usize);
    let mut samples = 0;
    while samples < SAMPLES || (samples < MAX_SAMPLES && !all_seen(&seen)) {
        let sample = samples;
        samples += 1;
        signal(pid, libc::SIGSTOP);
        wait_stopped(pid);
        let expected = theirs.get_stack_traces();
        let mut raw = Vec::new();
        let got = ours.read(&mut |_, _, _| (None, true), &mut raw);
        signal(pid, libc::SIGCONT);

        let expected = expected.unwrap_or_else(|e| panic!("py-spy, sample {sample}: {e:#}"));
        got.unwrap_or_else(|e| panic!("our reader, sample {sample}: {e:#}"));
        let expected: Vec<(u64, Vec<Shown>)> = expected
            .into_iter()
            .map(|t| {
                let frames = t
                    .frames
                    .into_iter()
                    .map(|f| (f.name, f.filename, f.short_filename, f.line))
                    .collect();
                (t.thread_id, frames)
            })
            .collect();
        let got: Vec<(u64, Vec<Shown>)> = raw
            .iter()
            .map(|t| {
                let frames = t
                    .frames
                    .iter()
                    .map(|&(code, line)| {
                        let n = ours.named(code).expect("a kept frame is named");
                        (
                            n.function.to_string(),
                            n.filename.clone(),
                            n.short.clone(),
                            line,
                        )
                    })
                    .collect();
                (t.thread_id, frames)
            })
            .collect();
        assert_eq!(
            got, expected,
            "CPython {version}, sample {sample}: our reader (left) differs from py-spy (right)"
        );
        for (_, frames) in &got {
            threads_compared += 1;
            frames_compared += frames.len();
            for f in frames {
                seen.insert(f.0.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(2 + (sample % 7) as u64));
    }
    let _ = child.kill();
    let _ = child.wait();

    let stats = ours.stats();
    println!(
        "CPython {version}: {samples} samples, {threads_compared} thread stacks, {frames_compared} frames identical; \
         {} process_vm_readv calls; code cache {} hits, {} misses",
        ours.calls(),
        stats.code_hits,
        stats.code_misses
    );
    for name in &must {
        assert!(
            seen.iter().any(|s| s.contains(name)),
            "CPython {version}: no frame of {name} in {samples} samples: {seen:?}"
        );
    }
    // Every sample's stacks were checked against py-spy above; here, that the cache served.
    assert!(
        stats.code_hits > 4 * stats.code_misses,
        "CPython {version}: code cache {} hits, {} misses",
        stats.code_hits,
        stats.code_misses
    );
}

macro_rules! versions {
    ($($name:ident: $v:expr;)*) => {
        $(#[test] fn $name() { compare_with_pyspy($v); })*
    };
}

versions! {
    same_stacks_as_pyspy_2_7: "2.7";
    same_stacks_as_pyspy_3_6: "3.6";
    same_stacks_as_pyspy_3_7: "3.7";
    same_stacks_as_pyspy_3_8: "3.8";
    same_stacks_as_pyspy_3_9: "3.9";
    same_stacks_as_pyspy_3_10: "3.10";
    same_stacks_as_pyspy_3_11: "3.11";
    same_stacks_as_pyspy_3_12: "3.12";
    same_stacks_as_pyspy_3_13: "3.13";
    same_stacks_as_pyspy_3_14: "3.14";
}
