//! The argument quirks of the original Go CLI, applied to argv before clap sees it.
//!
//! * `-spy-name pyspy` (one dash) works like `--spy-name pyspy`, as in existing Dockerfiles.
//! * `exec`: our flags come first; the first argument that is not one of our flags (or the value
//!   of one) starts the child's command line, which is never parsed as ours. `--` is optional.
//! * Durations are Go's: `10s`, `500ms`, `1m30s`.

use std::ffi::OsString;

/// Parses a Go-style duration: `10s`, `500ms`, `1m30s`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 {
            return Ok(std::time::Duration::from_secs_f64(secs));
        }
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?} (examples: 10s, 500ms, 1m)"))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("invalid duration {s:?} (examples: 10s, 500ms, 1m)")),
        };
        total += n * scale;
        rest = tail;
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// A size in bytes: a number with an optional unit, `KiB`/`MiB`/`GiB` (or `K`/`M`/`G`, the
/// same), `KB`/`MB`/`GB` (powers of 1000), `B`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size {s:?} (examples: 256MiB, 2GiB, 500MB)");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(bad()),
    };
    let bytes = n * scale;
    if !(1.0..=1e15).contains(&bytes) {
        return Err(format!("invalid size {s:?}: give at least one byte"));
    }
    Ok(bytes as u64)
}

/// Rewrites argv so clap can parse it: single-dash long flags become double-dash, and under
/// `exec` a `--` is put in front of the program so its arguments are never taken for ours.
pub fn normalize_args(args: Vec<OsString>) -> Result<Vec<OsString>, clap::Error> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut it = args.into_iter();
    if let Some(bin) = it.next() {
        out.push(bin);
    }
    // Find the subcommand (global flags such as --help/--version may precede it).
    let mut sub = None;
    for arg in it.by_ref() {
        let s = arg.to_string_lossy().into_owned();
        out.push(arg);
        if s == "exec" || s == "connect" {
            sub = Some(s);
            break;
        }
    }
    let Some(sub) = sub else {
        out.extend(it);
        return Ok(out);
    };
    let cmd = super::command();
    let subcmd = cmd
        .find_subcommand(&sub)
        .expect("subcommand exists")
        .clone();
    // Long flags of this subcommand that take the next argument as their value.
    let takes_value = |name: &str| {
        subcmd.get_arguments().any(|a| {
            a.get_long() == Some(name)
                && a.get_action().takes_values()
                && !a.is_require_equals_set()
        })
    };
    let known =
        |name: &str| name == "help" || subcmd.get_arguments().any(|a| a.get_long() == Some(name));
    while let Some(arg) = it.next() {
        let Some(s) = arg.to_str().map(str::to_owned) else {
            // Not UTF-8: cannot be one of our flags, so it is the program.
            if sub == "exec" {
                out.push("--".into());
            }
            out.push(arg);
            out.extend(it);
            return Ok(out);
        };
        if s == "--" {
            out.push(arg);
            out.extend(it);
            return Ok(out);
        }
        if s.len() > 2 && s.starts_with('-') && !s.starts_with("--") {
            // `-spy-name` -> `--spy-name` (but `-h` stays a short flag).
            let long = format!("-{s}");
            let name = long[2..].split('=').next().unwrap_or("").to_string();
            if known(&name) {
                let consumes = !long.contains('=') && takes_value(&name);
                out.push(long.into());
                if consumes {
                    if let Some(v) = it.next() {
                        out.push(v);
                    }
                }
                continue;
            }
        }
        if let Some(body) = s.strip_prefix("--") {
            let name = body.split('=').next().unwrap_or("");
            if !known(name) && name != "version" {
                // Before the program, every flag must be ours (the program's come after it).
                let mut cmd = super::command();
                cmd.build();
                let sub_cmd = cmd.find_subcommand_mut(&sub).expect("subcommand exists");
                return Err(sub_cmd.error(
                    clap::error::ErrorKind::UnknownArgument,
                    format!("unknown flag: --{name} (flags of the program go after it: pyroscope {sub} [flags] -- program args)"),
                ));
            }
            let consumes = !body.contains('=') && takes_value(name);
            out.push(arg);
            if consumes {
                if let Some(v) = it.next() {
                    out.push(v);
                }
            }
            continue;
        }
        if s.starts_with('-') && s.len() > 1 {
            // Short flags (-h, -V) and unknown ones: clap reports unknown ones.
            out.push(arg);
            continue;
        }
        // The program starts here.
        if sub == "exec" {
            out.push("--".into());
        }
        out.push(arg);
        out.extend(it);
        return Ok(out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(OsString::from).collect())
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn parse(args: &[&str]) -> Cli {
        super::super::parse(args.iter().map(OsString::from).collect()).unwrap()
    }

    #[test]
    fn single_dash_flags_and_child_args() {
        assert_eq!(
            norm(&[
                "pyroscope",
                "exec",
                "-spy-name",
                "pyspy",
                "python",
                "app.py",
                "--tag",
                "x"
            ]),
            [
                "pyroscope",
                "exec",
                "--spy-name",
                "pyspy",
                "--",
                "python",
                "app.py",
                "--tag",
                "x"
            ]
        );
        let Command::Exec(e) = parse(&[
            "pyroscope",
            "exec",
            "-spy-name",
            "pyspy",
            "python",
            "-c",
            "--x",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(e.common.spy_name, "pyspy");
        assert_eq!(e.command, ["python", "-c", "--x"]);
    }

    #[test]
    fn explicit_double_dash_and_bools() {
        let Command::Exec(e) = parse(&[
            "pyroscope",
            "exec",
            "--detect-subprocesses=false",
            "--no-logging",
            "--tag",
            "a=b",
            "--tag=c=d",
            "--",
            "python3",
            "--version",
        ])
        .command
        else {
            panic!()
        };
        assert!(!e.common.detect_subprocesses);
        assert!(e.common.no_logging);
        assert_eq!(e.common.tags, ["a=b", "c=d"]);
        assert_eq!(e.command, ["python3", "--version"]);
    }

    #[test]
    fn bool_flag_does_not_eat_the_program() {
        let Command::Exec(e) = parse(&["pyroscope", "exec", "--pyspy-blocking", "true"]).command
        else {
            panic!()
        };
        assert_eq!(e.common.blocking, ["pyspy"]);
        assert_eq!(e.command, ["true"]);
    }

    #[test]
    fn unknown_flag_is_an_error() {
        let r = normalize_args(
            ["pyroscope", "exec", "--non-existing-flag", "python"]
                .iter()
                .map(OsString::from)
                .collect(),
        );
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("unknown flag: --non-existing-flag"));
        // After the program, anything goes.
        assert!(normalize_args(
            ["pyroscope", "exec", "python", "--non-existing-flag"]
                .iter()
                .map(OsString::from)
                .collect()
        )
        .is_ok());
    }

    #[test]
    fn connect_pid() {
        let Command::Connect(c) = parse(&["pyroscope", "connect", "-pid", "42"]).command else {
            panic!()
        };
        assert_eq!(c.pid, 42);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap().as_millis(), 10_000);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("3").unwrap().as_secs(), 3);
        assert!(parse_duration("ten").is_err());
    }
}
