//! Any bytes through the nettrace reader and the collector: errors are fine, panics, hangs and
//! unbounded allocations are not. Run: `cd spies/dotnet/fuzz && cargo +nightly fuzz run nettrace`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spy_dotnet::collector::{Collector, Weighting};
use spy_dotnet::nettrace::Reader;

fuzz_target!(|data: &[u8]| {
    let mut c = Collector::new(Weighting::Period { period_ns: 10_000_000 }, true);
    let _ = Reader::new(data).run(&mut c);
    c.resolve_pending(true);
});
