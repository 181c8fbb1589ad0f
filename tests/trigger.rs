//! Triggered capture (`--trigger-cpu`): a program that runs light load, spikes, and runs light
//! load again, under the real binary. Checked on the uploaded bytes: the spike's windows are
//! labelled `trigger=cpu` and sampled faster, the others not; the values stay CPU time (they
//! add up to what the kernel counted for the program); `--trigger-output` holds the spike's
//! profile, the same samples as the labelled windows.

mod common;
use common::*;
use std::time::Duration;

/// A number from the app's line `<key> N [M]`.
fn line_numbers(stdout: &str, key: &str) -> Vec<i64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key:?} line: {stdout}"));
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// One pushed window: its series labels, period, time range (unix ns) and samples.
struct Window {
    trigger: Option<String>,
    period: i64,
    start: i64,
    end: i64,
    samples: Vec<Sampled>,
}

impl Window {
    fn cpu(&self) -> i64 {
        self.samples.iter().map(|s| s.value).sum()
    }
    fn cpu_in(&self, f: &str) -> i64 {
        self.samples
            .iter()
            .filter(|s| s.has(f))
            .map(|s| s.value)
            .sum()
    }
}

fn windows(server: &Receiver) -> Vec<Window> {
    let mut all: Vec<Window> = server
        .accepted(PUSH_PATH)
        .iter()
        .map(|req| {
            let (labels, prof) = decode_push(req);
            assert_eq!(labels["service_name"], "spike");
            Window {
                trigger: labels.get("trigger").cloned(),
                period: prof.period,
                start: prof.time_nanos,
                end: prof.time_nanos + prof.duration_nanos,
                samples: samples(&prof),
            }
        })
        .collect();
    all.sort_by_key(|w| w.start);
    all
}

/// `spike.py LIGHT SPIKE` under `exec` with `flags`, pushing to `server`; it must succeed.
fn exec_spike(server: &Receiver, flags: &[&str], light: &str, spike: &str) -> Run {
    let (py, app) = (python("3.11"), test_app("spike.py"));
    exec_pushing(
        server,
        flags,
        &[path_str(&py), path_str(&app), light, spike],
    )
}

/// `command` under `exec` with `flags`, pushing to `server` as the service `spike`; it must
/// succeed.
fn exec_pushing(server: &Receiver, flags: &[&str], command: &[&str]) -> Run {
    let mut args = vec![
        "exec",
        "--server-address",
        &server.url,
        "--application-name",
        "spike",
    ];
    args.extend_from_slice(flags);
    args.extend_from_slice(command);
    let r = run(pyroscope(&args), Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r
}

#[test]
fn a_cpu_spike_is_captured_faster_labelled_and_written_out() {
    let _slot = Slot::take();
    let server = Receiver::ok();
    let dir = tempdir("trigger-output");
    // 30%: the spike (a whole core, or two thirds of one on a loaded machine) crosses it in
    // under a second of the 2 s average; the light load (3%) never does.
    let flags = ["--trigger-cpu", "30", "--trigger-output", path_str(&dir)];
    let r = exec_spike(&server, &flags, "3", "4");
    let (spike_start, spike_end) = {
        let v = line_numbers(&r.stdout, "spike");
        (v[0], v[1])
    };
    let process_cpu = line_numbers(&r.stdout, "cpu")[0];

    // One capture, begun once the 2 s average crossed 30% (about 1 s into the spike), ended
    // when it fell below (1-2 s after it).
    let began = r
        .stderr
        .matches("CPU trigger: the profiled processes use")
        .count();
    let ended = r.stderr.matches("CPU trigger: capture ended after").count();
    assert_eq!((began, ended), (1, 1), "{}", r.stderr);

    let all = windows(&server);
    let (hot, cold): (Vec<&Window>, Vec<&Window>) = all.iter().partition(|w| w.trigger.is_some());
    assert!(!hot.is_empty() && !cold.is_empty(), "{} windows", all.len());
    for w in &hot {
        assert_eq!(w.trigger.as_deref(), Some("cpu"));
        assert_eq!(w.period, 2_500_000, "400 Hz (4 times 100) in a capture");
        // Wholly within the spike and the 2.5 s after it (the capture ends 1-2 s late).
        assert!(
            w.start >= spike_start && w.end <= spike_end + 2_500_000_000,
            "captured window {}..{} against the spike {spike_start}..{spike_end}",
            w.start,
            w.end
        );
        // Each sample carries pid and thread labels as usual.
        assert!(w.samples.iter().all(|s| s.label("pid").is_some()));
    }
    for w in &cold {
        assert_eq!(w.period, 10_000_000, "100 Hz out of a capture");
    }
    // No two windows overlap: cutting at the capture's start and end lost and doubled nothing.
    for pair in all.windows(2) {
        assert!(pair[0].end <= pair[1].start, "overlapping windows");
    }

    let hot_cpu: i64 = hot.iter().map(|w| w.cpu()).sum();
    let hot_spike: i64 = hot.iter().map(|w| w.cpu_in("spike")).sum();
    let cold_light: i64 = cold.iter().map(|w| w.cpu_in("light")).sum();
    let spike_cpu: i64 = all.iter().map(|w| w.cpu_in("spike")).sum();
    let total: i64 = all.iter().map(|w| w.cpu()).sum();
    eprintln!(
        "captured {hot_cpu} ns ({hot_spike} in spike), spike {spike_cpu} ns in all, light {cold_light} ns out of the capture; total {total} ns against the kernel's {process_cpu} ns"
    );
    assert!(
        hot_spike * 100 >= hot_cpu * 95,
        "the capture is the spike's"
    );
    // Most of the 4 s spike is in the capture (it begins 1-2 s in).
    assert!(
        hot_spike * 100 >= spike_cpu * 45,
        "{hot_spike} of {spike_cpu}"
    );
    assert!(cold_light > 0, "light load is profiled out of the capture");
    // Values stay CPU time: sampling 4 times faster did not inflate them. The program's own
    // CPU count (10 ms ticks) includes its start before the first sample.
    assert!(
        total <= process_cpu + 50_000_000 && total * 100 >= process_cpu * 85,
        "{total} ns profiled against {process_cpu} ns used"
    );

    // Sampled faster in the capture: the summary's samples per second, in and out.
    let summary = r
        .stderr
        .lines()
        .find(|l| l.contains("CPU trigger: 1 capture,"))
        .unwrap_or_else(|| panic!("no trigger summary: {}", r.stderr));
    // "..., 394 samples per second in them, 99 out of them; stacks per second 173 in them, 26
    // out of them": the numbers after "in all,".
    let rates: Vec<f64> = summary
        .split_once("in all,")
        .unwrap()
        .1
        .split([' ', ',', ';'])
        .filter_map(|w| w.parse::<f64>().ok())
        .collect();
    let [inside, outside, stacks_in, stacks_out] = rates[..] else {
        panic!("{summary}")
    };
    assert!(
        inside >= 300.0 && (80.0..=110.0).contains(&outside),
        "{summary}"
    );
    // The busy thread gave more stacks per second in the capture (at most the kernel's tick
    // rate, 250 per second here) than the mostly idle light load out of it.
    assert!(stacks_in > 2.0 * stacks_out, "{summary}");

    // --trigger-output: one file, the capture's profile, which is exactly the labelled
    // windows' samples.
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("spike-cpu-trigger-") && name.ends_with(".pb.gz"),
        "{name}"
    );
    let prof = decode_pprof_gz(&std::fs::read(&files[0]).unwrap());
    let file_cpu: i64 = samples(&prof).iter().map(|s| s.value).sum();
    assert_eq!(
        file_cpu, hot_cpu,
        "the file holds the captured windows' samples"
    );
    assert_eq!(prof.period, 2_500_000);
    let (first, last) = (
        hot.iter().map(|w| w.start).min().unwrap(),
        hot.iter().map(|w| w.end).max().unwrap(),
    );
    assert_eq!(
        (prof.time_nanos, prof.time_nanos + prof.duration_nanos),
        (first, last)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn light_load_never_triggers() {
    let _slot = Slot::take();
    let server = Receiver::ok();
    // About 3% of a core for 4 s, against a trigger at 20%.
    let r = exec_spike(&server, &["--trigger-cpu", "20"], "2", "0");
    assert!(
        !r.stderr.contains("CPU trigger: the profiled"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("CPU trigger: 0 captures"), "{}", r.stderr);
    let all = windows(&server);
    assert!(!all.is_empty());
    assert!(all
        .iter()
        .all(|w| w.trigger.is_none() && w.period == 10_000_000));
    assert!(all.iter().map(|w| w.cpu_in("light")).sum::<i64>() > 0);
}

/// .NET: the runtime's sampler keeps its rate in a capture, and its stacks keep their weight (a
/// period of their thread's time at the rate the spy was started with), so a capture's windows
/// hold as much CPU per second as the others under the same load. (They held a quarter of it
/// when a .NET stack counted the agent's period in force, 2.5 ms in a 400 Hz capture.)
#[test]
fn dotnet_values_keep_their_weight_in_a_capture() {
    let _slot = Slot::take();
    let server = Receiver::ok();
    // Two busy threads for 9 s; the sampler always on at 500 Hz (no bursts, so every second
    // holds the same share of samples); captures of 2 s, then 1 s of cool-down, in turn.
    let flags = [
        "--sample-rate",
        "500",
        "--trigger-cpu",
        "30",
        "--trigger-duration",
        "2s",
        "--trigger-cooldown",
        "1s",
    ];
    let dll = named_threads_dll();
    let r = exec_pushing(&server, &flags, &[path_str(&dotnet()), path_str(dll), "9"]);
    let all = windows(&server);
    let first_hot = all
        .iter()
        .position(|w| w.trigger.is_some())
        .unwrap_or_else(|| panic!("no capture: {}", r.stderr));
    // From the first capture on (the start-up before it uses less CPU); the last window ends
    // with the program.
    let steady = &all[first_hot..all.len() - 1];
    let per_second = |hot: bool| {
        let (cpu, wall) = steady
            .iter()
            .filter(|w| w.trigger.is_some() == hot)
            .fold((0i64, 0i64), |(c, t), w| {
                (c + w.cpu(), t + (w.end - w.start))
            });
        assert!(
            wall > 1_000_000_000,
            "{} s {}",
            wall as f64 / 1e9,
            if hot { "in captures" } else { "out" }
        );
        cpu as f64 / wall as f64
    };
    let (hot, cold) = (per_second(true), per_second(false));
    eprintln!("CPU per second: {hot:.2} in captures, {cold:.2} out of them");
    assert!(
        (0.7..=1.4).contains(&(hot / cold)),
        "{hot:.2} CPU-s per second in captures against {cold:.2} out of them"
    );
}
