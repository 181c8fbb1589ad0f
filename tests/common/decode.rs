//! Decoding what the agent produced: push requests, pprof, collapsed stacks; and the split
//! assertions the tests share.

use super::receiver::{Receiver, Req, PUSH_PATH};
use flate2::read::GzDecoder;
use prost::Message;
use pyroscope::pipeline::pprof::PprofProfile;
use pyroscope::pipeline::push::PushRequest;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(b).read_to_end(&mut out).expect("gzip");
    out
}

/// Decodes a push request: its labels and its pprof profile.
pub fn decode_push(req: &Req) -> (BTreeMap<String, String>, PprofProfile) {
    assert_eq!(req.header("content-type"), Some("application/proto"));
    let push = PushRequest::decode(&req.body[..]).expect("PushRequest");
    assert_eq!(push.series.len(), 1);
    let series = &push.series[0];
    let labels = series
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    assert_eq!(series.samples.len(), 1);
    assert_eq!(series.samples[0].id.len(), 36, "sample ID is a UUID");
    (labels, decode_pprof_gz(&series.samples[0].raw_profile))
}

pub fn decode_pprof_gz(b: &[u8]) -> PprofProfile {
    PprofProfile::decode(&gunzip(b)[..]).expect("pprof")
}

/// A pprof sample: frames root first as (function, file, line), and its value.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub frames: Vec<(String, String, i64)>,
    pub value: i64,
    /// pprof sample labels (key, string value).
    pub labels: Vec<(String, String)>,
}

impl Sampled {
    pub fn has(&self, function: &str) -> bool {
        self.frames.iter().any(|f| f.0 == function)
    }

    /// The value of sample label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn samples(p: &PprofProfile) -> Vec<Sampled> {
    let s = |i: i64| p.string_table[i as usize].clone();
    p.sample
        .iter()
        .map(|smp| {
            let frames = smp
                .location_id
                .iter()
                .rev()
                .map(|&id| {
                    let loc = p.location.iter().find(|l| l.id == id).expect("location");
                    let line = &loc.line[0];
                    let f = p
                        .function
                        .iter()
                        .find(|f| f.id == line.function_id)
                        .expect("function");
                    (s(f.name), s(f.filename), line.line)
                })
                .collect();
            Sampled {
                frames,
                value: smp.value[0],
                labels: smp.label.iter().map(|l| (s(l.key), s(l.str))).collect(),
            }
        })
        .collect()
}

/// Every push the receiver accepted, decoded: each must carry `labels` (and `period`, when
/// given); their samples together. Fails if nothing was pushed (`context`: what to show then).
#[allow(dead_code)]
pub fn pushed_samples(
    server: &Receiver,
    labels: &[(&str, &str)],
    period: Option<i64>,
    context: &str,
) -> Vec<Sampled> {
    let pushes = server.accepted(PUSH_PATH);
    assert!(!pushes.is_empty(), "no push: {context}");
    let mut all = Vec::new();
    for p in &pushes {
        let (got, prof) = decode_push(p);
        for (k, v) in labels {
            assert_eq!(got.get(*k).map(String::as_str), Some(*v), "label {k}");
        }
        if let Some(period) = period {
            assert_eq!(prof.period, period);
        }
        all.extend(samples(&prof));
    }
    all
}

/// Sum of values of samples whose stack holds `a`, and of those holding `b`.
pub fn split(samples: &[Sampled], a: &str, b: &str) -> (i64, i64) {
    let sum = |name: &str| {
        samples
            .iter()
            .filter(|s| s.has(name))
            .map(|s| s.value)
            .sum::<i64>()
    };
    (sum(a), sum(b))
}

/// The example's slow:fast split is 3:1; "within 25%" means a measured ratio in [2.25, 3.75].
pub fn assert_split(slow: i64, fast: i64) {
    assert!(slow > 0 && fast > 0, "slow={slow} fast={fast}");
    let ratio = slow as f64 / fast as f64;
    assert!(
        (2.25..=3.75).contains(&ratio),
        "slow:fast = {ratio:.2} ({slow}/{fast}), expected 3 ± 25%"
    );
}

/// Collapsed-stack lines (`frame;frame count`) → (stack, count).
pub fn collapsed(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(s, n)| (s.to_string(), n.parse().unwrap()))
        .collect()
}

/// A collapsed-stacks file (`--output x.txt`), read.
#[allow(dead_code)]
pub fn collapsed_file(path: impl AsRef<Path>) -> Vec<(String, u64)> {
    collapsed(&std::fs::read_to_string(path).unwrap())
}

pub fn collapsed_split(lines: &[(String, u64)], a: &str, b: &str) -> (i64, i64) {
    let sum = |name: &str| {
        lines
            .iter()
            .filter(|(s, _)| s.contains(name))
            .map(|(_, n)| *n as i64)
            .sum::<i64>()
    };
    (sum(a), sum(b))
}

/// The sample ID of a push.
pub fn push_id(req: &Req) -> String {
    PushRequest::decode(&req.body[..])
        .expect("PushRequest")
        .series[0]
        .samples[0]
        .id
        .clone()
}
