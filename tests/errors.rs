//! Bad input gets one clear error line and a non-zero exit, never a panic or a hang.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn quick(args: &[&str]) -> Run {
    run(pyroscope(args), Duration::from_secs(20))
}

#[test]
fn no_such_pid() {
    let r = quick(&["connect", "--pid", "999999999"]);
    assert_eq!(r.code, Some(1));
    assert!(error_line(&r).contains("no such process: 999999999"));
    let r = quick(&["connect", "--pid", "0"]);
    assert_eq!(r.code, Some(1));
    assert!(error_line(&r).contains("invalid --pid"));
}

/// A usage error exits 1, as the README says of every error before the program starts (clap's
/// own code is 2).
#[test]
fn missing_pid_is_a_usage_error() {
    let r = quick(&["connect"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("--pid"));
    let r = quick(&["exec", "--sample-rate", "fast", "true"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("--sample-rate"));
    // --help and --version are not errors.
    assert_eq!(quick(&["--help"]).code, Some(0));
    assert_eq!(quick(&["--version"]).code, Some(0));
}

/// A rate over the highest is lowered, and said once.
#[test]
fn a_too_high_sample_rate_is_lowered_and_said_once() {
    let dir = tempdir("highrate");
    let out = dir.join("p.txt");
    let r = quick(&[
        "exec",
        "--sample-rate",
        "50000",
        "--output",
        path_str(&out),
        "true",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stderr
            .matches("--sample-rate 50000 is more than the highest rate: sampling at 10000 Hz")
            .count(),
        1,
        "{}",
        r.stderr
    );
}

/// `connect` to a process that runs none of the runtimes: one error naming them all; and with
/// each spy forced on it, one error naming that runtime. Exit 1, no panic, every time.
#[test]
fn a_process_of_no_known_runtime() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let r = quick(&["connect", "--pid", &pid]);
    assert_eq!(r.code, Some(1));
    let line = error_line(&r);
    assert!(
        line.contains("is not a Python, Ruby or .NET process"),
        "{line}"
    );
    let forced = [
        ("pyspy", "does not look like a Python process"),
        ("rbspy", "does not look like a Ruby process"),
        ("dotnetspy", "does not look like a .NET process"),
    ];
    // A runtime added to the registry must be added here too.
    let spies: Vec<&str> = forced.iter().map(|(spy, _)| *spy).collect();
    assert_eq!(spies, pyroscope::runtimes::spy_names());
    for (spy, expected) in forced {
        let r = quick(&["connect", "--pid", &pid, "--spy-name", spy]);
        assert_eq!(r.code, Some(1), "{spy}: {}", r.stderr);
        let line = error_line(&r);
        assert!(line.contains(expected), "{spy}: {line}");
    }
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
}

#[test]
fn unknown_spy_names() {
    let r = quick(&["exec", "--spy-name", "nosuchspy", "true"]);
    assert_eq!(r.code, Some(1));
    assert!(
        error_line(&r).contains("is not supported") && error_line(&r).contains("dotnetspy"),
        "{}",
        r.stderr
    );
}

/// Bad configuration is refused before the child starts (the child would create a file).
#[test]
fn bad_configuration_never_starts_the_child() {
    let dir = tempdir("badcfg");
    let marker = dir.join("started");
    let touch = format!("touch {}", marker.display());
    let long_value = format!("k={}", "v".repeat(2049));
    let long_key = format!("{}=v", "k".repeat(1025));
    // 26 tags + __name__, service_name, pyroscope_spy + the sample labels pid and thread_name.
    let many_tags: Vec<String> = (0..26)
        .flat_map(|i| ["--tag".to_string(), format!("t{i}=v")])
        .collect();
    // Without the sample labels, 28 tags are one too many.
    let mut many_tags_unlabelled: Vec<String> = (0..28)
        .flat_map(|i| ["--tag".to_string(), format!("t{i}=v")])
        .collect();
    many_tags_unlabelled.push("--no-sample-labels".into());
    for (args, expect) in [
        (
            vec!["--server-address", "pyroscope:4040"],
            "invalid server address",
        ),
        (
            vec!["--server-address", "ftp://host"],
            "scheme must be http or https",
        ),
        (vec!["--tag", "novalue"], "key=value"),
        (vec!["--tag", "bad key=v"], "invalid tag key"),
        (
            vec!["--application-name", "my app"],
            "invalid application name",
        ),
        (vec!["--header", "NoColon"], "invalid header"),
        (vec!["--output", "profile.png"], "cannot tell the format"),
        (
            vec!["--upstream-request-timeout", "soon"],
            "invalid duration",
        ),
        (vec!["--user-name", "no-such-user-xyz"], "unknown user"),
        // The server's limits, checked at start rather than by every window's rejection.
        (
            vec![
                "--server-address",
                "http://127.0.0.1:9",
                "--upstream-request-timeout",
                "0s",
            ],
            "--upstream-request-timeout: it must be more than 0",
        ),
        (
            vec![
                "--server-address",
                "http://127.0.0.1:9",
                "--upload-queue",
                "0s",
            ],
            "--upload-queue: it must be at least one window",
        ),
        (
            vec!["--application-name", "short{k=a}b}"],
            "character '}' is not allowed",
        ),
        (vec!["--tag", "k=a}b"], "character '}' is not allowed"),
        (
            vec!["--tag", &long_value],
            "the server accepts at most 2048",
        ),
        (vec!["--tag", &long_key], "the server accepts at most 1024"),
        (
            vec![
                "--server-address",
                "http://127.0.0.1:9",
                "--auth-token",
                "t0ken",
                "--basic-auth-user",
                "u",
                "--basic-auth-password",
                "pw",
            ],
            "give one of them",
        ),
        (
            vec![
                "--server-address",
                "http://u:pw@127.0.0.1:9",
                "--auth-token",
                "t0ken",
            ],
            "give one of them",
        ),
        (
            vec!["--output", "/no/such/dir/profile.svg"],
            "cannot write --output /no/such/dir/profile.svg",
        ),
        (
            vec!["--output", "/proc/profile.txt"],
            "cannot write --output",
        ),
        (
            vec![
                "--server-address",
                "http://127.0.0.1:9",
                "--spool-dir",
                "/proc/spool",
            ],
            "cannot use --spool-dir /proc/spool",
        ),
        (vec!["--spool-max-size", "lots"], "invalid size"),
        (vec!["--sample-rate", "-5"], "--sample-rate"),
        (vec!["--trigger-cpu", "lots"], "invalid percentage \"lots\""),
        (vec!["--trigger-cpu", "0"], "more than 0"),
        (
            vec!["--trigger-output", "/tmp"],
            "--trigger-output needs --trigger-cpu PERCENT",
        ),
        (
            vec!["--trigger-cpu", "50", "--trigger-duration", "100ms"],
            "a capture lasts from 1s to 1h",
        ),
        (
            vec!["--trigger-cpu", "50", "--trigger-sample-rate", "50"],
            "invalid --trigger-sample-rate 50: give a rate from --sample-rate (100) to 10000 Hz",
        ),
        (
            vec!["--trigger-cpu", "50", "--trigger-output", "/proc/spikes"],
            "cannot use --trigger-output /proc/spikes",
        ),
        (
            vec!["--trigger-cpu", "50", "--tag", "trigger=x"],
            "the tag \"trigger\" is set by --trigger-cpu",
        ),
    ]
    .into_iter()
    .chain([
        (
            many_tags.iter().map(String::as_str).collect(),
            "too many tags: 26 tags make 31 labels per series with __name__, service_name, pyroscope_spy and the sample labels pid and thread_name (--no-sample-labels frees those two), and Pyroscope accepts at most 30 (give at most 25)",
        ),
        (
            many_tags[..50]
                .iter()
                .map(String::as_str)
                .chain(["--trigger-cpu", "50"])
                .collect(),
            "too many tags: 25 tags make 31 labels per series with __name__, service_name, pyroscope_spy and the sample labels pid and thread_name (--no-sample-labels frees those two), and trigger (--trigger-cpu), and Pyroscope accepts at most 30 (give at most 24)",
        ),
        (
            many_tags_unlabelled.iter().map(String::as_str).collect(),
            "too many tags: 28 tags make 31 labels per series with __name__, service_name and pyroscope_spy, and Pyroscope accepts at most 30 (give at most 27)",
        ),
    ]) {
        let mut full = vec!["exec"];
        full.extend(args.iter().copied());
        full.extend(["sh", "-c", touch.as_str()]);
        let r = quick(&full);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"));
        assert!(!marker.exists(), "{args:?} started the child");
    }
}

#[test]
fn secrets_never_appear_in_errors() {
    let r = quick(&["exec", "--server-address", "htp:/user:hunter2@host", "true"]);
    assert_ne!(r.code, Some(0));
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
}

/// An unprivileged agent against another user's process: the message says how to get ptrace
/// permission.
#[test]
fn no_ptrace_permission_explains_sys_ptrace() {
    let mut app = Command::new(python("3.11"))
        .arg(example_app())
        .arg("20")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = app.id().to_string();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["connect", "--pid", &pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let r = run(cmd, Duration::from_secs(20));
    app.kill().unwrap();
    let _ = app.wait();
    assert_eq!(r.code, Some(1));
    let line = error_line(&r);
    assert!(
        line.contains("SYS_PTRACE") && line.contains("ptrace_scope"),
        "{line}"
    );
}

/// A CPython whose version the spy does not know (a real 3.11 whose libpython reports 3.99):
/// connect fails with the version; exec reports it once and the program runs undisturbed.
#[test]
fn unsupported_python_version() {
    let dir = tempdir("unsupported");
    let lib = fake_python_3_99(&dir);
    let mut app = Command::new(python("3.11"))
        .arg(example_app())
        .arg("20")
        .env("LD_LIBRARY_PATH", lib.parent().unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = app.id().to_string();
    let r = quick(&["connect", "--pid", &pid]);
    app.kill().unwrap();
    let _ = app.wait();
    assert_eq!(r.code, Some(1));
    assert!(
        error_line(&r).contains("Unsupported version of Python: 3.99.7"),
        "{}",
        r.stderr
    );

    let py = python("3.11");
    let mut cmd = pyroscope(&[
        "exec",
        "--output",
        path_str(&dir.join("p.txt")),
        path_str(&py),
        "-c",
        "import sys; sys.exit(6)",
    ]);
    cmd.env("LD_LIBRARY_PATH", lib.parent().unwrap());
    let r = run(cmd, Duration::from_secs(20));
    assert_eq!(r.code, Some(6));
    assert!(
        error_line(&r).contains("Unsupported version of Python: 3.99.7"),
        "{}",
        r.stderr
    );
}

/// Copies pyenv's libpython3.11 and patches its `Py_Version` constant to 3.99.
fn fake_python_3_99(dir: &std::path::Path) -> std::path::PathBuf {
    fake_libpython(dir, "3.11", 99, 7)
}

/// Copies pyenv's libpython of `version` (3.11+) into `dir`, its `Py_Version` patched to claim
/// 3.`minor`.`micro`.
fn fake_libpython(
    dir: &std::path::Path,
    version: &str,
    minor: u8,
    micro: u8,
) -> std::path::PathBuf {
    let py = python(version);
    let name = format!("libpython{version}.so.1.0");
    let src = py
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("lib")
        .join(&name);
    let dst = dir.join(&name);
    std::fs::copy(&src, &dst).unwrap();
    let at = elf_symbol_file_offset(&src, "Py_Version");
    let mut bytes = std::fs::read(&dst).unwrap();
    let real_minor: u8 = version[2..].parse().unwrap();
    assert_eq!(
        &bytes[at + 2..at + 4],
        &[real_minor, 0x03],
        "Py_Version is {version}.x"
    );
    bytes[at + 1] = micro;
    bytes[at + 2] = minor;
    std::fs::write(&dst, bytes).unwrap();
    dst
}

/// A patch release newer than any checked with this build (a real 3.11.7 whose libpython says
/// 3.11.99) is read with the 3.11 layout after one warning, and trusted once its first stacks
/// look right: the split holds. A release whose claimed minor version's layout does not fit
/// (a 3.12 claiming 3.13.99) is not read: one warning names why, the program runs undisturbed.
#[test]
fn a_newer_patch_release_is_read_with_its_minor_versions_layout() {
    let _slot = Slot::take();
    let dir = tempdir("newer-patch");
    let lib = fake_libpython(&dir, "3.11", 11, 99);
    let out = dir.join("p.txt");
    let mut cmd = pyroscope(&[
        "exec",
        "--sample-rate",
        "1000",
        "--output",
        path_str(&out),
        path_str(&python("3.11")),
        path_str(&example_app()),
        "3",
    ]);
    cmd.env("LD_LIBRARY_PATH", lib.parent().unwrap());
    let r = run(cmd, Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warn:")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(
        warnings[0].contains("CPython 3.11.99")
            && warnings[0].contains("newest 3.11 release checked with this build (3.11.7)")
            && warnings[0].contains("3.11 layout"),
        "{}",
        warnings[0]
    );
    assert!(
        r.stderr
            .contains("the 3.11 layout reads CPython 3.11.99 correctly"),
        "{}",
        r.stderr
    );
    let (s, f) = collapsed_split(&collapsed_file(&out), "slow_function", "fast_function");
    assert_split(s, f);

    let dir = tempdir("wrong-layout");
    let lib = fake_libpython(&dir, "3.12", 13, 99);
    let mut cmd = pyroscope(&[
        "exec",
        "--output",
        path_str(&dir.join("p.txt")),
        path_str(&python("3.12")),
        "-c",
        "import time, sys\nt = time.time() + 2\nwhile time.time() < t: pass\nsys.exit(5)",
    ]);
    cmd.env("LD_LIBRARY_PATH", lib.parent().unwrap());
    let r = run(cmd, Duration::from_secs(30));
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("looks like Python but no spy could attach")
            && r.stderr.contains("interpreter"),
        "{}",
        r.stderr
    );
}

/// A process that looks like Python (its executable is called `python3`) but is not one: the
/// end of the run says so, with py-spy's reason, instead of "no Python process was found"; and
/// the tries to attach back off (about 25 in 2 s, where a try every 5 ms made 200 and cost the
/// agent 20% of a core when a try searches memory).
#[test]
fn a_python_lookalike_that_never_attaches_is_named_at_the_end() {
    let dir = tempdir("lookalike");
    let fake = dir.join("python3");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let r = quick(&[
        "exec",
        "--log-level",
        "debug",
        "--output",
        path_str(&dir.join("p.txt")),
        path_str(&fake),
        "2",
    ]);
    let tries: u32 = r
        .stderr
        .lines()
        .find_map(|l| {
            let (head, _) = l.split_once(" attach tries in ")?;
            head.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no attach count: {}", r.stderr));
    assert!((10..=40).contains(&tries), "{tries} attach tries in 2 s");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("looks like Python but no spy could attach"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(line.starts_with("[pyroscope] warn: process "), "{line}");
    assert!(
        !r.stderr
            .contains("no Python, Ruby or .NET process was found"),
        "{}",
        r.stderr
    );
}

/// A free-threaded build this reader has no layout for (here a 3.13t executable renamed
/// `python3.14t`, which is how such a build is known): one clear error naming the build, never
/// a silent "no Python process was found"; the program runs on with its own exit status.
#[test]
fn an_unknown_free_threaded_python_is_refused_with_one_clear_error() {
    let dir = tempdir("ft-unknown");
    let renamed = dir.join("python3.14t");
    std::fs::copy(python313t(), &renamed).unwrap();
    let r = quick(&[
        "exec",
        "--output",
        path_str(&dir.join("p.txt")),
        path_str(&renamed),
        "-c",
        "import sys, time; time.sleep(1); sys.exit(4)",
    ]);
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    let line = error_line(&r);
    assert!(
        line.contains(
            "free-threaded CPython 3.14t (built with --disable-gil) is not supported yet"
        ),
        "{line}"
    );
    assert!(!r
        .stderr
        .contains("no Python, Ruby or .NET process was found"));
}
