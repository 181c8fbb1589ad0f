//! Command line: clap definitions, the flags the runtime registry adds, and (in [`argv`]) the
//! argument quirks of the original Go CLI.
//!
//! * Every flag also reads `PYROSCOPE_<UPPER_SNAKE_NAME>`; a flag beats its env var.
//! * What depends on the runtimes compiled in (the list in `--help`, `--spy-name`'s choices,
//!   one `--<spy>-blocking` per spy that can pause its target) comes from
//!   [`crate::runtimes`], so a new runtime needs no change here.

mod argv;

pub use argv::{normalize_args, parse_duration, parse_size};

use crate::runtimes;
use clap::builder::BoolishValueParser;
use clap::{Arg, ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// The command line (`about` is set from the registry by [`command`]).
#[derive(Parser, Debug)]
#[command(name = "pyroscope", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a program under the profiler; exits with the program's own exit status.
    #[command(
        long_about = "Start a program and profile it (and, by default, every process it starts that runs a supported runtime).\n\n\
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

    /// Pull mode: serve profiles on this address (`HOST:PORT`, or `:PORT` for every interface),
    /// e.g. 127.0.0.1:4041. `GET /debug/pprof/profile?seconds=N` answers with a gzip pprof of
    /// the next N seconds, as Go's net/http/pprof does (`go tool pprof`, Grafana Alloy's
    /// pyroscope.scrape). Works with or without --server-address; without either of them and
    /// without --output, no local files are written.
    #[arg(long, env = "PYROSCOPE_LISTEN_ADDRESS", value_name = "ADDR")]
    pub listen_address: Option<String>,

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

    /// Which spy to use (the choices are set from the registry by [`command`]).
    #[arg(
        long,
        env = "PYROSCOPE_SPY_NAME",
        default_value = "auto",
        value_name = "NAME"
    )]
    pub spy_name: String,

    /// Also profile descendant processes that run a supported runtime (multiprocessing,
    /// gunicorn or unicorn workers, ...).
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

    /// How much data waits in memory while the server is unreachable (e.g. 10m, 1h): 10 s
    /// windows, oldest dropped first (each drop is reported). See --spool-dir to keep more.
    #[arg(long, env = "PYROSCOPE_UPLOAD_QUEUE", default_value = "10m",
          value_parser = parse_duration, value_name = "DURATION")]
    pub upload_queue: std::time::Duration,

    /// Keep windows the server has not taken yet in this directory (created if missing), so a
    /// long outage or a restart loses nothing: they are sent, in order, when the server is
    /// back, also by the next run with the same directory (a restarted pod with a volume).
    #[arg(long, env = "PYROSCOPE_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Bound of --spool-dir (e.g. 500MiB, 2GiB); past it the oldest windows are deleted, with
    /// a warning.
    #[arg(long, env = "PYROSCOPE_SPOOL_MAX_SIZE", default_value = "256MiB",
          value_parser = parse_size, value_name = "SIZE")]
    pub spool_max_size: u64,

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

    /// Leave out the labels each sample carries: `pid` (the process it was taken in) and
    /// `thread_name` (Python's thread name; else the OS thread name, which Ruby's Thread#name=
    /// and .NET's Thread.Name set). They let Grafana filter one worker or one thread; a program
    /// with thousands of short-lived, distinctly named threads may want them off (cardinality).
    /// The series labels (app name, tags) stay either way.
    #[arg(long, env = "PYROSCOPE_NO_SAMPLE_LABELS", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub no_sample_labels: bool,

    /// Triggered capture: when the profiled processes use more than PERCENT of one core (e.g.
    /// 80, or 250 for two and a half cores) over 2 s, sample faster (--trigger-sample-rate)
    /// until their use falls below it again, for at most --trigger-duration, and label those
    /// windows `trigger=cpu` so Grafana can show them beside the normal ones. Values stay CPU
    /// time: a faster rate gives finer profiles, not larger totals. Off by default.
    #[arg(long, env = "PYROSCOPE_TRIGGER_CPU", value_parser = crate::config::trigger::parse_percent,
          value_name = "PERCENT")]
    pub trigger_cpu: Option<f64>,

    /// The longest a triggered capture lasts (default 60s; from 1s to 1h).
    #[arg(long, env = "PYROSCOPE_TRIGGER_DURATION", value_parser = parse_duration,
          value_name = "DURATION")]
    pub trigger_duration: Option<std::time::Duration>,

    /// After a triggered capture, how long before another may start (default 5m).
    #[arg(long, env = "PYROSCOPE_TRIGGER_COOLDOWN", value_parser = parse_duration,
          value_name = "DURATION")]
    pub trigger_cooldown: Option<std::time::Duration>,

    /// The sample rate during a triggered capture (default 4 times --sample-rate, at most
    /// 1000). .NET's sampler keeps its own rate.
    #[arg(long, env = "PYROSCOPE_TRIGGER_SAMPLE_RATE", value_name = "HZ")]
    pub trigger_sample_rate: Option<u32>,

    /// Also write each triggered capture's profile to this directory (created if missing), as
    /// `<app>-cpu-trigger-<UTC time>.pb.gz` (pprof: go tool pprof, speedscope, Grafana).
    #[arg(long, env = "PYROSCOPE_TRIGGER_OUTPUT", value_name = "DIR")]
    pub trigger_output: Option<PathBuf>,

    /// Python: count only the thread holding the GIL (as py-spy's --gil). Threads waiting for
    /// the GIL burn CPU too (CPython 2.7's GIL wakes its waiters every 100 bytecodes): by
    /// default they are counted with the CPU time they really used.
    #[arg(long, env = "PYROSCOPE_GIL_ONLY", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub gil_only: bool,

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

    /// Spies (by name) whose targets are paused while read: the `--<spy>-blocking` flags,
    /// one per runtime that can pause (see [`command`]).
    #[arg(skip)]
    pub blocking: Vec<&'static str>,
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

/// The whole command line: the derived definitions plus what the runtime registry supplies.
pub fn command() -> clap::Command {
    let all = runtimes::names(runtimes::all(), true);
    let about = format!(
        "Profile {all} programs without changing their code, and send the profiles to Pyroscope"
    );
    let long_about = format!(
        "{about} (or write them to local files when no server is given).\n\n\
  pyroscope exec [flags] [--] python app.py     start a program and profile it\n\
  pyroscope connect --pid N [flags]             profile a running process\n\n\
Every flag can also be set with an environment variable PYROSCOPE_<FLAG_NAME> \
(e.g. PYROSCOPE_SERVER_ADDRESS); a flag beats its variable."
    );
    let spy_help = format!(
        "Which spy to use: `auto` (recognise the runtime from the running executable), {}",
        runtimes::all()
            .iter()
            .map(|r| format!("`{}` ({})", r.spy_name(), r.runtime_name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut cmd = Cli::command().about(about).long_about(long_about);
    for sub in ["exec", "connect"] {
        cmd = cmd.mut_subcommand(sub, |mut sub| {
            sub = sub.mut_arg("spy_name", |a| a.help(spy_help.clone()));
            for r in runtimes::pausable() {
                sub = sub.arg(blocking_flag(r));
            }
            sub
        });
    }
    cmd
}

/// `--<spy>-blocking[=BOOL]` (env `PYROSCOPE_<SPY>_BLOCKING`), as the Go CLI had for `pyspy`.
fn blocking_flag(r: &dyn spy::Runtime) -> Arg {
    let spy = r.spy_name();
    Arg::new(blocking_id(spy))
        .long(format!("{spy}-blocking"))
        .env(format!("PYROSCOPE_{}_BLOCKING", spy.to_ascii_uppercase()))
        .action(ArgAction::Set)
        .num_args(0..=1)
        .require_equals(true)
        .default_value("false")
        .default_missing_value("true")
        .value_parser(BoolishValueParser::new())
        .value_name("BOOL")
        .help(format!(
            "Pause {} targets while reading their stacks: consistent stacks, small cost to the target",
            r.runtime_name()
        ))
}

fn blocking_id(spy: &str) -> String {
    format!("{spy}_blocking")
}

/// Parses argv (after the Go CLI's quirks, see [`argv`]).
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let matches = command().try_get_matches_from(normalize_args(args)?)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let (name, common) = match &mut cli.command {
        Command::Exec(a) => ("exec", &mut a.common),
        Command::Connect(a) => ("connect", &mut a.common),
    };
    let sub = matches
        .subcommand_matches(name)
        .expect("the subcommand parsed");
    common.blocking = runtimes::pausable()
        .map(|r| r.spy_name())
        .filter(|spy| sub.get_one::<bool>(&blocking_id(spy)) == Some(&true))
        .collect();
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_comes_from_the_registry() {
        let mut cmd = command();
        let help = cmd.render_long_help().to_string();
        assert!(
            help.contains("Profile Python, Ruby and .NET programs"),
            "{help}"
        );
        let exec = cmd.find_subcommand_mut("exec").unwrap();
        let help = exec.render_long_help().to_string();
        for r in runtimes::all() {
            assert!(help.contains(&format!("`{}`", r.spy_name())), "{help}");
        }
        for r in runtimes::pausable() {
            assert!(
                help.contains(&format!("--{}-blocking", r.spy_name())),
                "{help}"
            );
            assert!(help.contains(&format!(
                "PYROSCOPE_{}_BLOCKING",
                r.spy_name().to_ascii_uppercase()
            )));
        }
        assert!(
            !help.contains("--dotnetspy-blocking"),
            "only spies that can pause"
        );
    }

    /// Every `PYROSCOPE_*` variable the examples (Kubernetes, Docker) set is one a flag reads:
    /// a renamed flag must not leave an example that silently does nothing.
    #[test]
    fn the_examples_set_real_variables() {
        let cmd = command();
        let known: std::collections::HashSet<String> = cmd
            .get_subcommands()
            .flat_map(|sub| sub.get_arguments())
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("Dockerfile.example")];
        let mut dirs = vec![root.join("examples")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        let mut seen = 0;
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for (i, _) in text.match_indices("PYROSCOPE_") {
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                assert!(
                    known.contains(&name),
                    "{}: {name} is no flag's variable",
                    file.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 5, "the examples set {seen} variables");
    }

    #[test]
    fn blocking_flags_select_spies() {
        let parse = |v: &[&str]| parse(v.iter().map(OsString::from).collect());
        let Command::Connect(c) =
            parse(&["pyroscope", "connect", "--pid", "1", "--rbspy-blocking"])
                .unwrap()
                .command
        else {
            panic!()
        };
        assert_eq!(c.common.blocking, ["rbspy"]);
        let Command::Exec(e) = parse(&[
            "pyroscope",
            "exec",
            "-pyspy-blocking=true",
            "--rbspy-blocking=false",
            "ruby",
            "x.rb",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(e.common.blocking, ["pyspy"]);
        assert_eq!(e.command, ["ruby", "x.rb"]);
        assert!(parse(&["pyroscope", "exec", "--dotnetspy-blocking", "x"]).is_err());
    }
}
