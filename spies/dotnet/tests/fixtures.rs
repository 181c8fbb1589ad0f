//! The nettrace reader and the collector on real CoreCLR 3.1.23 captures (tests/data/README.md).

use spy_dotnet::collector::{Collector, Weighting};
use spy_dotnet::nettrace::{End, Event, Handler, Reader};
use std::collections::HashMap;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Counts events by (provider, id) and checks the stack-id scoping.
#[derive(Default)]
struct Census {
    by_event: HashMap<(String, u32), u64>,
    samples_with_stack: u64,
    sequence_points: u64,
}

impl Handler for Census {
    fn event(&mut self, e: &Event<'_>) {
        *self.by_event.entry((e.metadata.provider.to_string(), e.metadata.event_id)).or_default() += 1;
        if e.metadata.event_id == 0 && e.metadata.provider.ends_with("SampleProfiler") && !e.stack.is_empty() {
            self.samples_with_stack += 1;
        }
    }
    fn sequence_point(&mut self) {
        self.sequence_points += 1;
    }
}

fn census(name: &str) -> (Census, spy_dotnet::nettrace::Stats, End) {
    let bytes = data(name);
    let mut r = Reader::new(&bytes[..]);
    let mut c = Census::default();
    let end = r.run(&mut c).unwrap();
    assert_eq!(r.header().unwrap().process_id > 0, true);
    (c, r.stats.clone(), end)
}

fn collect(name: &str, include_external: bool) -> Collector {
    let bytes = data(name);
    let mut r = Reader::new(&bytes[..]);
    let mut c = Collector::new(Weighting::PerSample, include_external);
    // These captures carry their rundown at the end: name everything then.
    c.grace_ns = i64::MAX;
    r.run(&mut c).unwrap();
    c.resolve_pending(true);
    c
}

/// Leaf function → samples.
fn leaves(c: &Collector) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for s in &c.ready {
        *m.entry(s.frames.last().unwrap().function.clone()).or_default() += 1;
    }
    m
}

#[test]
fn t31_event_counts() {
    let (c, stats, end) = census("t31.nettrace");
    assert_eq!(end, End::Clean);
    assert_eq!(c.by_event[&("Microsoft-DotNETCore-SampleProfiler".into(), 0)], 5100);
    assert_eq!(c.by_event[&("Microsoft-Windows-DotNETRuntimeRundown".into(), 144)], 296);
    assert_eq!(stats.missing_stacks, 0, "every stack id resolves within its sequence-point window");
    assert_eq!(c.samples_with_stack, 5100);
    assert_eq!(c.sequence_points, 1);
}

#[test]
fn t31_names_and_split() {
    let all = collect("t31.nettrace", true);
    assert_eq!(all.stats.samples, 5100);
    assert_eq!(all.stats.unresolved_frames, 0, "{:?}", all.stats);
    assert_eq!(all.stats.frames, 20400);
    let l = leaves(&all);
    assert_eq!(l["BurnDemo.Worker.Slow"], 2650);
    assert_eq!(l["BurnDemo.Worker.Fast"], 750);
    assert_eq!(l["System.Threading.Thread.Sleep"], 1700);
    let s = all.ready.iter().find(|s| s.frames.last().unwrap().function == "BurnDemo.Worker.Slow").unwrap();
    let names: Vec<&str> = s.frames.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(names.first(), Some(&"System.Threading.ThreadHelper.ThreadStart"), "root first: {names:?}");
    assert_eq!(names[names.len() - 2], "BurnDemo.Worker.Loop");
    assert_eq!(s.frames.last().unwrap().file, "burn.dll");
}

#[test]
fn t31_cpu_view_leaves_out_sleeping_threads() {
    let cpu = collect("t31.nettrace", false);
    let l = leaves(&cpu);
    assert!(!l.contains_key("System.Threading.Thread.Sleep"), "{l:?}");
    let ratio = l["BurnDemo.Worker.Slow"] as f64 / l["BurnDemo.Worker.Fast"] as f64;
    assert!((3.0..=5.0).contains(&ratio), "Slow:Fast = {ratio}");
}
