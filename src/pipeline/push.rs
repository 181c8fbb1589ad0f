//! What is sent to the server, per route: the push API's `push.v1.PushRequest` (prost derives,
//! field numbers from `api/push/v1/push.proto`) and the `/ingest` query of older servers. The
//! delivery (queue, retries, auth) is [`super::upload`]'s.

use prost::Message;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The push route, below the server's base URL.
pub const PUSH_PATH: &str = "push.v1.PusherService/Push";
/// The route of servers without the push API.
pub const INGEST_PATH: &str = "ingest";

/// What every upload is labelled with.
#[derive(Clone, Debug)]
pub struct Labels {
    pub app_name: String,
    pub tags: BTreeMap<String, String>,
    pub sample_rate: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawSample {
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Labels every series carries besides the tags: `__name__`, `service_name`, `pyroscope_spy`.
pub const FIXED_LABELS: usize = 3;

/// The body of a push: one series labelled `__name__=process_cpu`, `service_name`,
/// `pyroscope_spy` and the tags (sorted by name), holding one sample, the gzip pprof, with the
/// window's `id` (the same for every attempt, so a server that stored a timed-out request can
/// tell a retry from a new profile).
pub fn push_body(labels: &Labels, spy_name: &str, pprof_gz: &[u8], id: &str) -> Vec<u8> {
    let mut pairs: Vec<LabelPair> = vec![
        LabelPair {
            name: "__name__".into(),
            value: "process_cpu".into(),
        },
        LabelPair {
            name: "service_name".into(),
            value: labels.app_name.clone(),
        },
        LabelPair {
            name: "pyroscope_spy".into(),
            value: spy_name.to_string(),
        },
    ];
    pairs.extend(labels.tags.iter().map(|(k, v)| LabelPair {
        name: k.clone(),
        value: v.clone(),
    }));
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    PushRequest {
        series: vec![RawProfileSeries {
            labels: pairs,
            samples: vec![RawSample {
                raw_profile: pprof_gz.to_vec(),
                id: id.to_string(),
            }],
        }],
    }
    .encode_to_vec()
}

/// The query of an `/ingest` upload: `name=app{tags}`, the window in whole seconds (`until`
/// rounded up, and after `from`), `format=pprof`, the sample rate and the spy.
pub fn ingest_query(
    labels: &Labels,
    start: SystemTime,
    end: SystemTime,
    spy_name: &str,
) -> Vec<(&'static str, String)> {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let from = secs(start).as_secs();
    let end = secs(end);
    let until = end.as_secs() + u64::from(end.subsec_nanos() > 0);
    let tags: Vec<String> = labels
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vec![
        ("name", format!("{}{{{}}}", labels.app_name, tags.join(","))),
        ("from", from.to_string()),
        ("until", until.max(from + 1).to_string()),
        ("format", "pprof".into()),
        ("sampleRate", labels.sample_rate.to_string()),
        ("spyName", spy_name.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn labels() -> Labels {
        Labels {
            app_name: "shop.api".into(),
            tags: [("env".to_string(), "prod".to_string())].into(),
            sample_rate: 100,
        }
    }

    #[test]
    fn push_body_decodes() {
        let id = "0b7c2ad4-7d6f-4a43-9d0e-4ad2a1f6c2d1";
        let body = push_body(&labels(), "pyspy", &[1, 2, 3], id);
        let req = PushRequest::decode(&body[..]).unwrap();
        let series = &req.series[0];
        let names: Vec<(&str, &str)> = series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("__name__", "process_cpu"),
                ("env", "prod"),
                ("pyroscope_spy", "pyspy"),
                ("service_name", "shop.api")
            ]
        );
        assert_eq!(series.samples[0].raw_profile, [1, 2, 3]);
        assert_eq!(series.samples[0].id, id);
    }

    #[test]
    fn ingest_query_rounds_the_window_out() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let end = start + Duration::from_millis(2_500);
        let q = ingest_query(&labels(), start, end, "rbspy");
        let get = |k: &str| q.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("name"), "shop.api{env=prod}");
        assert_eq!(get("from"), "1700000000");
        assert_eq!(get("until"), "1700000003");
        assert_eq!(get("spyName"), "rbspy");
        assert_eq!(get("sampleRate"), "100");
    }
}
