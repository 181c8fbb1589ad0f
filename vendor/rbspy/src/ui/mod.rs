pub mod callgrind;
pub mod flamegraph;
pub mod output;
pub mod pprof;
pub mod speedscope;
pub mod summary;
