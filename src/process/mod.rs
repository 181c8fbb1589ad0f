//! The processes around the agent: starting the `exec` child under ptrace ([`launch`]),
//! following its process tree ([`tracer`]), pausing a process for a blocking-mode read ([`pause`]), signals reaching pyroscope and their relay to the
//! child ([`signals`]), how a process ended ([`exit`]), users and groups ([`users`]).

pub mod exit;
pub mod launch;
pub mod pause;
pub mod signals;
pub mod tracer;
pub mod users;

pub use exit::Exit;
