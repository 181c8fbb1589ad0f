//! pyroscope-spy: profile programs in interpreted runtimes without changing their code.
//!
//! See ARCHITECTURE.md for the data path; one module per concern:

pub mod cli;
pub mod commands;
pub mod config;
pub mod errors;
pub mod launch;
pub mod logging;
pub mod output;
pub mod pprof;
pub mod profile;
pub mod runtimes;
pub mod session;
pub mod signals;
pub mod tracer;
pub mod upload;
pub mod users;
