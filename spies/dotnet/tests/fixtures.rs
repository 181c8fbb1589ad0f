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
        *self
            .by_event
            .entry((e.metadata.provider.to_string(), e.metadata.event_id))
            .or_default() += 1;
        if e.metadata.event_id == 0
            && e.metadata.provider.ends_with("SampleProfiler")
            && !e.stack.is_empty()
        {
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
    assert!(r.header().unwrap().process_id > 0);
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
        *m.entry(s.frames.last().unwrap().function.to_string())
            .or_default() += 1;
    }
    m
}

#[test]
fn t31_event_counts() {
    let (c, stats, end) = census("t31.nettrace");
    assert_eq!(end, End::Clean);
    assert_eq!(
        c.by_event[&("Microsoft-DotNETCore-SampleProfiler".into(), 0)],
        5100
    );
    assert_eq!(
        c.by_event[&("Microsoft-Windows-DotNETRuntimeRundown".into(), 144)],
        296
    );
    assert_eq!(
        stats.missing_stacks, 0,
        "every stack id resolves within its sequence-point window"
    );
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
    let s = all
        .ready
        .iter()
        .find(|s| s.frames.last().unwrap().function.as_ref() == "BurnDemo.Worker.Slow")
        .unwrap();
    let names: Vec<&str> = s.frames.iter().map(|f| f.function.as_ref()).collect();
    assert_eq!(
        names.first(),
        Some(&"System.Threading.ThreadHelper.ThreadStart"),
        "root first: {names:?}"
    );
    assert_eq!(names[names.len() - 2], "BurnDemo.Worker.Loop");
    assert_eq!(&*s.frames.last().unwrap().file, "burn.dll");
}

#[test]
fn t31_cpu_view_leaves_out_sleeping_threads() {
    let cpu = collect("t31.nettrace", false);
    let l = leaves(&cpu);
    assert!(!l.contains_key("System.Threading.Thread.Sleep"), "{l:?}");
    let ratio = l["BurnDemo.Worker.Slow"] as f64 / l["BurnDemo.Worker.Fast"] as f64;
    assert!((3.0..=5.0).contains(&ratio), "Slow:Fast = {ratio}");
}

#[test]
fn collect_tracing2_capture_reads_the_same() {
    let c = collect("t31-v2.nettrace", true);
    assert!(c.stats.samples > 1000, "{:?}", c.stats);
    assert_eq!(c.stats.unresolved_frames, 0, "{:?}", c.stats);
    let l = leaves(&c);
    let ratio = l["BurnDemo.Worker.Slow"] as f64 / l["BurnDemo.Worker.Fast"] as f64;
    assert!((3.0..=5.0).contains(&ratio), "Slow:Fast = {ratio}");
}

/// Without rundown nothing names the code compiled before the session: those frames are counted
/// and shown as [unknown], never dropped.
#[test]
fn without_rundown_frames_are_unknown_but_kept() {
    let (census, _, _) = census("t31-norundown.nettrace");
    let samples = census.by_event[&("Microsoft-DotNETCore-SampleProfiler".into(), 0)];
    let c = collect("t31-norundown.nettrace", true);
    assert_eq!(c.stats.samples, samples);
    assert_eq!(
        c.ready.len() as u64,
        samples,
        "every sample with a stack is kept"
    );
    assert!(c.stats.unresolved_frames > 0);
    assert_eq!(
        c.stats.unresolved_frames,
        c.stats.frames - resolved_frames(&c)
    );
    assert!(c
        .ready
        .iter()
        .any(|s| s.frames.iter().any(|f| f.function.as_ref() == "[unknown]")));
}

fn resolved_frames(c: &Collector) -> u64 {
    c.ready
        .iter()
        .flat_map(|s| &s.frames)
        .filter(|f| f.function.as_ref() != "[unknown]")
        .count() as u64
}

/// Methods compiled after the session started are named from the live MethodLoadVerbose events.
#[test]
fn methods_compiled_during_the_session_get_names() {
    let (census, _, _) = census("t31-jit.nettrace");
    assert!(census.by_event[&("Microsoft-Windows-DotNETRuntime".into(), 143)] >= 3);
    // Read as live: only what precedes a sample by the grace time can name it.
    let bytes = data("t31-jit.nettrace");
    let mut c = Collector::new(Weighting::PerSample, false);
    Reader::new(&bytes[..]).run(&mut c).unwrap();
    c.resolve_pending(true);
    let l = leaves(&c);
    assert!(
        l.get("BurnDemo.Worker.Slow").copied().unwrap_or(0) > 100,
        "{l:?}"
    );
    assert!(
        l.get("BurnDemo.Worker.Fast").copied().unwrap_or(0) > 20,
        "{l:?}"
    );
}

#[test]
fn a_session_after_an_aborted_one_reads_normally() {
    let c = collect("t31-after-abort.nettrace", true);
    assert!(c.stats.samples > 1000, "{:?}", c.stats);
    assert!(leaves(&c).contains_key("BurnDemo.Worker.Slow"));
}

/// A stream cut at any point gives an error or a clean early end, never a panic; the events
/// before the cut are delivered.
#[test]
fn a_stream_cut_anywhere_is_an_error_not_a_panic() {
    let bytes = data("t31.nettrace");
    for cut in (0..bytes.len()).step_by(997).chain([bytes.len() - 1]) {
        let mut c = Census::default();
        let r = Reader::new(&bytes[..cut]).run(&mut c);
        match r {
            Ok(End::Abrupt) | Err(_) => {}
            Ok(End::Clean) => panic!("cut at {cut} of {} read as a clean end", bytes.len()),
        }
    }
    let mut c = Census::default();
    let err = Reader::new(&bytes[..bytes.len() / 2])
        .run(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("cut off"), "{err}");
    assert!(
        c.by_event.values().sum::<u64>() > 0,
        "events before the cut are delivered"
    );
}

#[test]
fn a_v6_stream_is_recognised_and_refused() {
    let mut v6 = b"Nettrace".to_vec();
    v6.extend_from_slice(&0u32.to_le_bytes());
    v6.extend_from_slice(&6u32.to_le_bytes());
    v6.extend_from_slice(&0u32.to_le_bytes());
    let err = Reader::new(&v6[..])
        .run(&mut Census::default())
        .unwrap_err();
    assert!(
        matches!(err, spy_dotnet::nettrace::Error::Unsupported(_)),
        "{err}"
    );
    assert!(err.to_string().contains("V6"), "{err}");
    let err = Reader::new(&b"NotATrace"[..])
        .run(&mut Census::default())
        .unwrap_err();
    assert!(err.to_string().contains("not a nettrace stream"), "{err}");
}

/// Samples become one stack per period of managed thread time: the count follows the period,
/// not the runtime's own 1 ms rate.
#[test]
fn weighting_follows_the_agent_period() {
    let bytes = data("t31.nettrace");
    let count = |period_ns: i64| {
        let mut c = Collector::new(Weighting::Period { period_ns }, false);
        c.grace_ns = i64::MAX;
        Reader::new(&bytes[..]).run(&mut c).unwrap();
        c.resolve_pending(true);
        c.ready.len() as f64
    };
    let (at_100hz, at_250hz) = (count(10_000_000), count(4_000_000));
    // Two busy threads for ~3 s: ~600 stacks at 100 Hz (less the time they were not managed).
    assert!((300.0..=700.0).contains(&at_100hz), "{at_100hz}");
    let r = at_250hz / at_100hz;
    assert!((2.3..=2.7).contains(&r), "250 Hz / 100 Hz = {r}");
}

/// The two .NET 5.0 traces of pyroscope-io/dotnetdiag's test data (Apache-2.0), read in place
/// from the shared fixtures when they are there (they may not be copied into this project).
#[test]
fn dotnet5_third_party_traces_when_present() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/dotnet/third-party");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} is not there", dir.display());
        return;
    };
    let mut seen = 0;
    for e in entries.flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        let mut c = Collector::new(Weighting::PerSample, true);
        c.grace_ns = i64::MAX;
        Reader::new(&bytes[..]).run(&mut c).unwrap();
        c.resolve_pending(true);
        let resolved = resolved_frames(&c) as f64 / c.stats.frames.max(1) as f64;
        assert!(c.stats.samples > 1000, "{:?}: {:?}", e.path(), c.stats);
        assert!(
            resolved > 0.85,
            "{:?}: {resolved} of frames resolved",
            e.path()
        );
        seen += 1;
    }
    assert_eq!(seen, 2);
}

/// A minimal nettrace writer for synthetic streams.
mod synth {
    pub struct W(pub Vec<u8>);

    impl W {
        pub fn new() -> W {
            let mut w = W(b"Nettrace".to_vec());
            w.i32(20);
            w.0.extend_from_slice(b"!FastSerialization.1");
            w
        }
        pub fn i32(&mut self, v: i32) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn begin(&mut self, name: &str, version: i32) {
            self.0.extend_from_slice(&[5, 5, 1]);
            self.i32(version);
            self.i32(version);
            self.i32(name.len() as i32);
            self.0.extend_from_slice(name.as_bytes());
            self.0.push(6);
        }
        pub fn trace(&mut self) {
            self.begin("Trace", 4);
            self.0.extend_from_slice(&[0u8; 16]);
            self.0.extend_from_slice(&0i64.to_le_bytes());
            self.0.extend_from_slice(&1_000_000_000i64.to_le_bytes());
            for v in [8, 42, 2, 1_000_000] {
                self.i32(v);
            }
            self.0.push(6);
        }
        pub fn block(&mut self, name: &str, body: &[u8]) {
            self.begin(name, 2);
            self.i32(body.len() as i32);
            while !self.0.len().is_multiple_of(4) {
                self.0.push(0);
            }
            self.0.extend_from_slice(body);
            self.0.push(6);
        }
        pub fn end(&mut self) {
            self.0.push(1);
        }
    }

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(|u| u.to_le_bytes())
            .collect()
    }

    /// Event-block body: header (compressed) + blobs (metadata id, thread, stack, ts, payload).
    pub fn events(blobs: &[(u32, u64, u32, u64, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![20, 0, 1, 0];
        b.extend_from_slice(&[0u8; 16]);
        let mut ts = 0;
        for (meta, tid, stack, at, payload) in blobs {
            b.push(1 | 4 | 8 | 128);
            for v in [
                u64::from(*meta),
                *tid,
                u64::from(*stack),
                at - ts,
                payload.len() as u64,
            ] {
                varint(&mut b, v);
            }
            ts = *at;
            b.extend_from_slice(payload);
        }
        b
    }

    fn varint(b: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            b.push(v as u8 | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
    }

    pub fn sample_profiler_metadata(id: u32) -> Vec<u8> {
        let mut p = id.to_le_bytes().to_vec();
        p.extend(utf16z("Microsoft-DotNETCore-SampleProfiler"));
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend(utf16z(""));
        p.extend_from_slice(&0i64.to_le_bytes());
        p.extend_from_slice(&[0u8; 12]);
        p
    }

    pub fn stacks(first: u32, stacks: &[&[u64]]) -> Vec<u8> {
        let mut b = first.to_le_bytes().to_vec();
        b.extend_from_slice(&(stacks.len() as u32).to_le_bytes());
        for s in stacks {
            b.extend_from_slice(&((s.len() * 8) as u32).to_le_bytes());
            for ip in *s {
                b.extend_from_slice(&ip.to_le_bytes());
            }
        }
        b
    }

    /// A stream with its trace header and the sample profiler's metadata (id 1).
    pub fn sampler_stream() -> W {
        let mut w = W::new();
        w.trace();
        w.block(
            "MetadataBlock",
            &events(&[(0, 1, 0, 1, sample_profiler_metadata(1))]),
        );
        w
    }

    /// `threads` threads, each with one managed sample (stack 0xA1 → 0xA0), `spacing_ns` apart,
    /// 100 events per block.
    pub fn one_sample_per_thread(threads: u64, spacing_ns: u64) -> W {
        let managed = 2u32.to_le_bytes().to_vec();
        let mut w = sampler_stream();
        w.block("StackBlock", &stacks(1, &[&[0xA1, 0xA0]]));
        let blobs: Vec<_> = (0..threads)
            .map(|i| (1, 1000 + i, 1, 10 + i * spacing_ns, managed.clone()))
            .collect();
        for chunk in blobs.chunks(100) {
            w.block("EventBlock", &events(chunk));
        }
        w.end();
        w
    }

    pub fn sequence_point() -> Vec<u8> {
        let mut b = 0i64.to_le_bytes().to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        b
    }
}

/// Stack ids restart at 1 after every sequence point: an id is resolved against the stacks of
/// its own window (a reader with one global map would give the second sample the first stack).
#[test]
fn stack_ids_are_scoped_to_sequence_point_windows() {
    use synth::*;
    let managed = 2u32.to_le_bytes().to_vec();
    let mut w = sampler_stream();
    w.block("StackBlock", &stacks(1, &[&[0xA1, 0xA0]]));
    w.block("EventBlock", &events(&[(1, 7, 1, 10, managed.clone())]));
    w.block("SPBlock", &sequence_point());
    w.block("StackBlock", &stacks(1, &[&[0xB1, 0xB0]]));
    w.block(
        "EventBlock",
        &events(&[(1, 7, 1, 20, managed.clone()), (1, 7, 2, 30, managed)]),
    );
    w.end();

    #[derive(Default)]
    struct Stacks(Vec<Vec<u64>>);
    impl Handler for Stacks {
        fn event(&mut self, e: &Event<'_>) {
            self.0.push(e.stack.to_vec());
        }
    }
    let mut got = Stacks::default();
    let mut r = Reader::new(&w.0[..]);
    assert_eq!(r.run(&mut got).unwrap(), End::Clean);
    assert_eq!(got.0, vec![vec![0xA1, 0xA0], vec![0xB1, 0xB0], vec![]]);
    assert_eq!(
        r.stats.missing_stacks, 1,
        "stack 2 does not exist in the second window"
    );
    assert_eq!(r.stats.sequence_points, 1);
}

/// Captured from the first milliseconds of the program (examples/capture.rs): most of CoreLib's
/// precompiled code is first used after the session starts and has no JIT event. Without the
/// rundown at the end (left out here, as a live session has none), the R2RGetEntryPoint events
/// name the sleeper thread's start-up frames; without them too, those frames are unknown.
#[test]
fn ready_to_run_entry_points_name_start_up_frames() {
    struct Without<'a> {
        inner: &'a mut Collector,
        entry_points: bool,
    }
    impl Handler for Without<'_> {
        fn header(&mut self, h: &spy_dotnet::nettrace::TraceHeader) {
            self.inner.header(h);
        }
        fn event(&mut self, e: &Event<'_>) {
            let rundown = e.metadata.provider.ends_with("Rundown");
            let entry =
                e.metadata.provider.ends_with("DotNETRuntime") && e.metadata.event_id == 159;
            if !rundown && (self.entry_points || !entry) {
                self.inner.event(e);
            }
        }
        fn block_done(&mut self) {
            self.inner.block_done();
        }
    }
    let (census, _, end) = census("burn-startup-r2r.nettrace");
    assert_eq!(end, End::Clean);
    let entry_events = census.by_event[&("Microsoft-Windows-DotNETRuntime".to_string(), 159)];
    assert!(entry_events > 100, "{entry_events} R2RGetEntryPoint events");
    let sleeper_stacks = |entry_points: bool| {
        let bytes = data("burn-startup-r2r.nettrace");
        let mut c = Collector::new(Weighting::PerSample, true);
        Reader::new(&bytes[..])
            .run(&mut Without {
                inner: &mut c,
                entry_points,
            })
            .unwrap();
        c.resolve_pending(true);
        assert_eq!(
            c.stats.entry_points,
            if entry_points { entry_events } else { 0 }
        );
        let names = |s: &spy::Stack| {
            s.frames
                .iter()
                .map(|f| f.function.to_string())
                .collect::<Vec<_>>()
        };
        c.ready
            .iter()
            .filter(|s| names(s).iter().any(|f| f == "BurnDemo.Worker.Sleeper"))
            .map(names)
            .collect::<Vec<_>>()
    };
    let named = sleeper_stacks(true);
    assert!(named.len() > 100, "{} sleeper samples", named.len());
    for s in &named {
        assert_eq!(s[0], "System.Threading.ThreadHelper.ThreadStart", "{s:?}");
        assert!(!s.iter().any(|f| f == "[unknown]"), "{s:?}");
    }
    let unnamed = sleeper_stacks(false);
    assert_eq!(unnamed.len(), named.len());
    assert!(
        unnamed.iter().all(|s| s[0] == "[unknown]"),
        "{:?}",
        unnamed[0]
    );
}

/// A program that keeps starting short-lived threads does not grow the collector: threads not
/// sampled for 2 s (trace time) are forgotten, and every sample is still counted.
#[test]
fn threads_that_ended_are_forgotten() {
    // 3000 threads, each sampled once, one every 10 ms: 30 s of trace.
    let w = synth::one_sample_per_thread(3000, 10_000_000);
    let mut c = Collector::new(Weighting::PerSample, false);
    assert_eq!(Reader::new(&w.0[..]).run(&mut c).unwrap(), End::Clean);
    c.resolve_pending(true);
    assert_eq!(c.stats.stacks_emitted, 3000);
    // At most 2 s of threads plus one block and one pruning period: ~ 200 + 100 + 200.
    assert!(
        c.threads_tracked() <= 500,
        "{} threads remembered",
        c.threads_tracked()
    );
}

/// Work done on threads that each live for less than a period is still counted, in proportion:
/// 1000 threads with 1 ms of managed time each, at 100 Hz (10 ms periods), give about 100
/// stacks, not none.
#[test]
fn threads_shorter_than_a_period_still_count() {
    let w = synth::one_sample_per_thread(1000, 3_000_000);
    let mut c = Collector::new(
        Weighting::Period {
            period_ns: 10_000_000,
        },
        false,
    );
    assert_eq!(Reader::new(&w.0[..]).run(&mut c).unwrap(), End::Clean);
    c.resolve_pending(true);
    // Binomial(1000, 0.1): mean 100, standard deviation 9.5.
    assert!(
        (70..=130).contains(&c.stats.stacks_emitted),
        "{} stacks",
        c.stats.stacks_emitted
    );
}

/// Every input of the fuzz corpus (spies/dotnet/fuzz, grown by `cargo fuzz run nettrace`, with
/// the inputs that once crashed) goes through the reader and collector without a panic.
#[test]
fn the_fuzz_corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/nettrace");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        // (A fuzzer running meanwhile replaces files.)
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        let mut c = Collector::new(
            Weighting::Period {
                period_ns: 10_000_000,
            },
            true,
        );
        let _ = Reader::new(&bytes[..]).run(&mut c);
        c.resolve_pending(true);
        n += 1;
    }
    assert!(n >= 500, "corpus of {n} inputs");
    // The input that once crashed the collector (an overflow on extreme timestamps) stays in.
    assert!(dir.join("regression-timestamp-overflow").exists());
}
