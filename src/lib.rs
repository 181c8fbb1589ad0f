//! pyroscope-spy: profile programs in interpreted runtimes without changing their code.
//!
//! See ARCHITECTURE.md for the data path. The modules, from the command line to an upload:
//! * [`cli`], [`config`]: argv → validated [`config::Settings`]; [`commands`]: `exec` and
//!   `connect` around a session; [`errors`]: what failures are called, and exit codes;
//! * [`process`]: the child, ptrace, signals, exit status;
//! * [`session`]: the loop: which processes, sampling them, the end-of-run report;
//! * [`pipeline`]: stacks → windows → pprof → uploads and local files;
//! * [`runtimes`]: the spies compiled in (the only module that names them); [`logging`].

pub mod cli;
pub mod commands;
pub mod config;
pub mod errors;
pub mod logging;
pub mod pipeline;
pub mod process;
pub mod runtimes;
pub mod session;
