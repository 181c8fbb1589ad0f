//! Command line: clap definitions plus the argument quirks of the original Go CLI.
//!
//! * `-spy-name pyspy` (one dash) works like `--spy-name pyspy`, as in existing Dockerfiles.
//! * `exec`: our flags come first; the first argument that is not one of our flags (or the value
//!   of one) starts the child's command line, which is never parsed as ours. `--` is optional.
//! * Every flag also reads `PYROSCOPE_<UPPER_SNAKE_NAME>`; a flag beats its env var.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "pyroscope",
    version,
    about = "Profile Python and Ruby programs without changing their code, and send the profiles to Pyroscope",
    long_about = "Profile Python and Ruby programs without changing their code, and send the profiles to \
Pyroscope (or write them to local files when no server is given).\n\n\
  pyroscope exec [flags] [--] python app.py     start a program and profile it\n\
  pyroscope connect --pid N [flags]             profile a running process\n\n\
Every flag can also be set with an environment variable PYROSCOPE_<FLAG_NAME> \
(e.g. PYROSCOPE_SERVER_ADDRESS); a flag beats its variable."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a program under the profiler; exits with the program's own exit status.
    #[command(
        long_about = "Start a program and profile it (and, by default, every Python process it starts).\n\n\
The program keeps its stdin/stdout/stderr, environment, working directory and process group; \
signals sent to pyroscope are passed on to it, and pyroscope exits with its exact status \
(a program killed by signal S makes pyroscope die of S too). A program that cannot be started \
gives exit status 127 (126 when it is not executable).\n\n\
Flags go before the program; `--` before the program is optional."
    )]
    Exec(ExecArgs),
    /// Profile a running process until it exits or pyroscope gets SIGINT/SIGTERM.
    Connect(ConnectArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Application name used when uploading; may carry tags: `shop.api{env=prod,region=eu}`.
    #[arg(long, env = "PYROSCOPE_APPLICATION_NAME", value_name = "NAME")]
    pub application_name: Option<String>,

    /// Pyroscope server URL, e.g. http://pyroscope:4040. Without it (and without --output),
    /// profiles are written to `<app>-<time>.svg` and `.pb.gz` in the working directory.
    #[arg(long, env = "PYROSCOPE_SERVER_ADDRESS", value_name = "URL")]
    pub server_address: Option<String>,

    /// Sent as `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "PYROSCOPE_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub auth_token: Option<String>,

    /// HTTP basic auth user (e.g. a Grafana Cloud stack id).
    #[arg(long, env = "PYROSCOPE_BASIC_AUTH_USER", value_name = "USER")]
    pub basic_auth_user: Option<String>,

    /// HTTP basic auth password.
    #[arg(
        long,
        env = "PYROSCOPE_BASIC_AUTH_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub basic_auth_password: Option<String>,

    /// Tenant id for a multi-tenant server, sent as `X-Scope-OrgID`.
    #[arg(long, env = "PYROSCOPE_TENANT_ID", value_name = "ID")]
    pub tenant_id: Option<String>,

    /// Extra HTTP header for uploads, `'Name: value'`; repeatable.
    #[arg(
        long = "header",
        env = "PYROSCOPE_HEADER",
        value_name = "'NAME: VALUE'",
        hide_env_values = true
    )]
    pub headers: Vec<String>,

    /// Samples per second (0 means the default, 100).
    #[arg(
        long,
        env = "PYROSCOPE_SAMPLE_RATE",
        default_value_t = 100,
        value_name = "HZ"
    )]
    pub sample_rate: u32,

    /// Which spy to use: `auto` (recognise the runtime from the running executable), `pyspy`
    /// (CPython) or `rbspy` (MRI Ruby).
    #[arg(
        long,
        env = "PYROSCOPE_SPY_NAME",
        default_value = "auto",
        value_name = "NAME"
    )]
    pub spy_name: String,

    /// Also profile descendant processes that run Python (multiprocessing, gunicorn workers, ...).
    #[arg(long, env = "PYROSCOPE_DETECT_SUBPROCESSES", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "true", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub detect_subprocesses: bool,

    /// Tag added to every profile, `key=value`; repeatable (env: comma-separated).
    #[arg(
        long = "tag",
        env = "PYROSCOPE_TAG",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub tags: Vec<String>,

    /// Log level of pyroscope's own messages (on stderr).
    #[arg(
        long,
        env = "PYROSCOPE_LOG_LEVEL",
        value_enum,
        default_value = "info",
        ignore_case = true
    )]
    pub log_level: LogLevel,

    /// Print nothing of pyroscope's own (errors that stop it are still printed).
    #[arg(long, env = "PYROSCOPE_NO_LOGGING", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub no_logging: bool,

    /// Timeout of one upload request (e.g. 10s, 500ms, 1m).
    #[arg(long, env = "PYROSCOPE_UPSTREAM_REQUEST_TIMEOUT", default_value = "10s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub upstream_request_timeout: std::time::Duration,

    /// Accepted for compatibility with the Go CLI; uploads use one connection.
    #[arg(
        long,
        env = "PYROSCOPE_UPSTREAM_THREADS",
        default_value_t = 4,
        hide = true
    )]
    pub upstream_threads: u32,

    /// Also write the whole run's profile here at exit; format by extension: .svg (flamegraph),
    /// .pb.gz or .pprof (pprof), .txt (collapsed stacks), .json (speedscope).
    #[arg(long, env = "PYROSCOPE_OUTPUT", value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Pause the target while reading its stacks: consistent stacks, small cost to the target.
    #[arg(long, env = "PYROSCOPE_PYSPY_BLOCKING", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub pyspy_blocking: bool,

    /// Pause Ruby targets while reading their stacks: consistent stacks, small cost to the target.
    #[arg(long, env = "PYROSCOPE_RBSPY_BLOCKING", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub rbspy_blocking: bool,

    /// .NET: also count threads outside managed code (waiting, sleeping, in native code): a
    /// wall-clock view instead of CPU.
    #[arg(long, env = "PYROSCOPE_DOTNET_WALL_CLOCK", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub dotnet_wall_clock: bool,

    /// Under exec, stop ptrace-tracing a .NET process once its spy is attached (measured: see
    /// README). For comparing both ways.
    #[arg(long, env = "PYROSCOPE_DOTNET_RELEASE_PTRACE", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "true", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL", hide = true)]
    pub dotnet_release_ptrace: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// When run as root through sudo, run the program as root too (default: as the sudo user).
    #[arg(long, env = "PYROSCOPE_NO_ROOT_DROP", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub no_root_drop: bool,

    /// Run the program as this user (name or numeric id).
    #[arg(long, env = "PYROSCOPE_USER_NAME", value_name = "USER")]
    pub user_name: Option<String>,

    /// Run the program as this group (name or numeric id).
    #[arg(long, env = "PYROSCOPE_GROUP_NAME", value_name = "GROUP")]
    pub group_name: Option<String>,

    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Process id to profile.
    #[arg(
        long,
        env = "PYROSCOPE_PID",
        required = true,
        allow_negative_numbers = true
    )]
    pub pid: i64,
}

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
    let cmd = Cli::command();
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
                let mut cmd = Cli::command();
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
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(OsString::from).collect())
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from).collect()).unwrap())
            .unwrap()
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
        assert!(e.common.pyspy_blocking);
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
