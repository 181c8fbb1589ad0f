//! pprof (`perftools.profiles.Profile`) messages, declared with prost derives (field numbers
//! from `profile.proto`), and the encoding of a [`Profile`] as a CPU profile.

use super::aggregate::Profile;
use super::window::unix_nanos;
use std::collections::HashMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PprofProfile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
    #[prost(int64, tag = "3")]
    pub column: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// Interns strings into a pprof string table (index 0 is the empty string).
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings::default();
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Encodes a profile as a pprof CPU profile: sample type `cpu`/`nanoseconds`, one value per
/// stack = the CPU time its samples stand for; functions carry name, file and line.
pub fn to_pprof(p: &Profile) -> PprofProfile {
    let mut strings = Strings::new();
    let cpu = strings.id("cpu");
    let ns = strings.id("nanoseconds");
    let mut functions: Vec<Function> = Vec::new();
    let mut function_ids: HashMap<(std::sync::Arc<str>, std::sync::Arc<str>), u64> = HashMap::new();
    // One location per frame (function + line); location id = frame index + 1.
    let location = p
        .frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let key = (f.function.clone(), f.file.clone());
            let function_id = match function_ids.get(&key) {
                Some(&id) => id,
                None => {
                    let id = functions.len() as u64 + 1;
                    let name = strings.id(&f.function);
                    functions.push(Function {
                        id,
                        name,
                        system_name: name,
                        filename: strings.id(&f.file),
                        start_line: 0,
                    });
                    function_ids.insert(key, id);
                    id
                }
            };
            Location {
                id: i as u64 + 1,
                line: vec![Line {
                    function_id,
                    line: i64::from(f.line),
                    column: 0,
                }],
                ..Default::default()
            }
        })
        .collect();
    // Sample labels as strings (what Grafana Pyroscope keeps of them): `pid`, and `thread_name`
    // or, for a thread without a name, `thread_id`.
    let (pid_key, thread_key) = (strings.id("pid"), strings.id("thread_name"));
    let id_key = strings.id("thread_id");
    let label_sets: Vec<Vec<Label>> = p
        .labels
        .iter()
        .map(|l| {
            let mut set = vec![Label {
                key: pid_key,
                str: strings.id(&l.pid.to_string()),
                ..Default::default()
            }];
            if let Some(name) = &l.thread_name {
                set.push(Label {
                    key: thread_key,
                    str: strings.id(name),
                    ..Default::default()
                });
            }
            if let Some(id) = l.thread_id {
                set.push(Label {
                    key: id_key,
                    str: strings.id(&id.to_string()),
                    ..Default::default()
                });
            }
            set
        })
        .collect();
    let sample = p
        .stacks
        .iter()
        .map(|c| Sample {
            location_id: c.stack.iter().rev().map(|&i| u64::from(i) + 1).collect(),
            value: vec![c.weight.cpu_ns as i64],
            label: c
                .labels
                .and_then(|l| label_sets.get(l as usize))
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    let start = unix_nanos(p.start);
    PprofProfile {
        sample_type: vec![ValueType {
            r#type: cpu,
            unit: ns,
        }],
        sample,
        location,
        function: functions,
        time_nanos: start,
        duration_nanos: (unix_nanos(p.end) - start).max(0),
        period_type: Some(ValueType {
            r#type: cpu,
            unit: ns,
        }),
        period: p.period_ns as i64,
        string_table: strings.table,
        ..Default::default()
    }
}

/// Grafana Pyroscope's default limits on one profile: distinct samples
/// (`validation.max-profile-stacktrace-samples`) and uncompressed bytes
/// (`validation.max-profile-size-bytes`). A profile over either is rejected whole.
pub const MAX_SAMPLES: usize = 16_000;
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// pprof bytes, gzip-compressed (what `go tool pprof` and the server both accept).
pub fn to_pprof_gz(p: &Profile) -> Vec<u8> {
    use prost::Message;
    gzip(&to_pprof(p).encode_to_vec())
}

/// The profile as gzip pprof parts that each fit the server's limits ([`MAX_SAMPLES`],
/// [`MAX_BYTES`]): one part when it fits, else its stacks split (in order, so neighbours that
/// share frames stay together) into parts over the same time range, which add up to the whole.
pub fn to_pprof_parts_gz(p: &Profile) -> Vec<Vec<u8>> {
    use prost::Message;
    let whole = to_pprof(p);
    let size = whole.encoded_len();
    let n = whole.sample.len();
    if (n <= MAX_SAMPLES && size <= MAX_BYTES) || p.stacks.len() < 2 {
        return vec![gzip(&whole.encode_to_vec())];
    }
    drop(whole);
    // Aim under the limits (a part repeats some frames and strings), and check each part.
    let parts = n
        .div_ceil(MAX_SAMPLES * 9 / 10)
        .max(size.div_ceil(MAX_BYTES * 8 / 10))
        .max(2);
    let per = p.stacks.len().div_ceil(parts);
    p.stacks
        .chunks(per)
        .flat_map(|chunk| to_pprof_parts_gz(&p.subset(chunk)))
        .collect()
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut gz = GzEncoder::new(
        Vec::with_capacity(raw.len() / 3 + 64),
        flate2::Compression::default(),
    );
    gz.write_all(raw).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::aggregate::{Counted, SampleLabels};
    use prost::Message;
    use spy::Frame;
    use std::time::{Duration, UNIX_EPOCH};

    fn gunzip(b: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_window_over_the_server_limits_is_split_into_parts_that_add_up() {
        // 40,000 distinct stacks (16 levels of two choices, plus a counter frame): over the
        // 16,000 samples a profile may carry.
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut frames = vec![];
        for i in 0..40_000u32 {
            frames.push(Frame {
                function: format!("leaf_{i}").into(),
                file: "gen.py".into(),
                line: i,
            });
        }
        frames.push(Frame {
            function: "main".into(),
            file: "gen.py".into(),
            line: 1,
        });
        let stacks: Vec<_> = (0..40_000u32)
            .map(|i| {
                Counted::unlabelled(
                    vec![40_000, i],
                    crate::pipeline::aggregate::Weight {
                        samples: 1,
                        cpu_ns: 1_000 + u64::from(i),
                    },
                )
            })
            .collect();
        let p = Profile {
            frames,
            stacks,
            labels: Vec::new(),
            start,
            end: start + Duration::from_secs(10),
            period_ns: 10_000_000,
            spy_name: "pyspy",
        };
        let parts = to_pprof_parts_gz(&p);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let mut total = 0i64;
        let mut samples = 0;
        for part in &parts {
            let raw = gunzip(part);
            assert!(raw.len() <= MAX_BYTES);
            let d = PprofProfile::decode(&raw[..]).unwrap();
            assert!(d.sample.len() <= MAX_SAMPLES, "{}", d.sample.len());
            assert_eq!(d.time_nanos, 1_700_000_000_000_000_000);
            assert_eq!(d.duration_nanos, 10_000_000_000);
            samples += d.sample.len();
            total += d.sample.iter().map(|s| s.value[0]).sum::<i64>();
        }
        assert_eq!(samples, 40_000);
        assert_eq!(total as u64, p.total_cpu_ns());
        // A profile within the limits is one part.
        assert_eq!(to_pprof_parts_gz(&p.subset(&p.stacks[..100])).len(), 1);
    }

    #[test]
    fn encodes_cpu_profile() {
        let f = |n: &str, l| Frame {
            function: n.into(),
            file: "app.py".into(),
            line: l,
        };
        // Samples at 100 Hz that each stand for one period.
        let w = |samples| crate::pipeline::aggregate::Weight {
            samples,
            cpu_ns: samples * 10_000_000,
        };
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let p = Profile {
            frames: vec![f("main", 1), f("slow", 5), f("slow", 6)],
            // The first stack's samples carry labels, with and without a thread name.
            stacks: vec![
                Counted {
                    stack: vec![0, 1],
                    labels: Some(0),
                    weight: w(3),
                },
                Counted {
                    stack: vec![0, 1],
                    labels: Some(1),
                    weight: w(2),
                },
                Counted::unlabelled(vec![0, 2], w(1)),
            ],
            labels: vec![
                SampleLabels {
                    pid: 42,
                    thread_name: Some("worker-1".into()),
                    thread_id: None,
                },
                SampleLabels {
                    pid: 43,
                    thread_name: None,
                    thread_id: Some(44),
                },
            ],
            start,
            end: start + Duration::from_secs(10),
            period_ns: 10_000_000,
            spy_name: "pyspy",
        };
        let bytes = to_pprof(&p).encode_to_vec();
        let d = PprofProfile::decode(&bytes[..]).unwrap();
        let s = |i: i64| d.string_table[i as usize].as_str();
        assert_eq!(s(d.sample_type[0].r#type), "cpu");
        assert_eq!(s(d.sample_type[0].unit), "nanoseconds");
        assert_eq!(d.period, 10_000_000);
        assert_eq!(d.time_nanos, 1_700_000_000_000_000_000);
        assert_eq!(d.duration_nanos, 10_000_000_000);
        // Two lines of `slow` share one function.
        assert_eq!(d.function.len(), 2);
        let total: i64 = d.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(total, 6 * 10_000_000);
        let labels: Vec<Vec<(&str, &str)>> = d
            .sample
            .iter()
            .map(|x| x.label.iter().map(|l| (s(l.key), s(l.str))).collect())
            .collect();
        assert_eq!(
            labels,
            [
                vec![("pid", "42"), ("thread_name", "worker-1")],
                vec![("pid", "43"), ("thread_id", "44")],
                vec![]
            ]
        );
        // Leaf first: the first location of the 3-count sample is `slow` line 5.
        let first = &d.sample.iter().find(|s| s.value[0] == 30_000_000).unwrap();
        let loc = &d.location[(first.location_id[0] - 1) as usize];
        assert_eq!(loc.line[0].line, 5);
        assert_eq!(
            s(d.function[(loc.line[0].function_id - 1) as usize].name),
            "slow"
        );
    }
}
