//! Local output files, decoded: svg, pprof, collapsed text, speedscope, and the default files
//! written when no server is given.

mod common;
use common::*;
use std::time::Duration;

fn profile_to(path: &std::path::Path) -> Run {
    let py = python("3.11");
    let r = run(
        pyroscope(&[
            "exec",
            "--application-name",
            "local",
            "--output",
            path_str(path),
            path_str(&py),
            path_str(&example_app()),
            "2",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("profile written to {}", path.display())),
        "{}",
        r.stderr
    );
    r
}

#[test]
fn every_output_format_decodes() {
    let dir = tempdir("outputs");
    let svg = dir.join("p.svg");
    profile_to(&svg);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("slow_function") && text.contains("</svg>"));

    for name in ["p.pb.gz", "p.pprof"] {
        let pb = dir.join(name);
        profile_to(&pb);
        let p = decode_pprof_gz(&std::fs::read(&pb).unwrap());
        let (s, f) = split(&samples(&p), "slow_function", "fast_function");
        assert!(s > 50 && f > 10, "{name}: slow {s} fast {f}");
        assert_eq!(p.period, 10_000_000);
    }

    let txt = dir.join("p.txt");
    profile_to(&txt);
    let lines = collapsed_file(&txt);
    // Every frame reads `function (file:line)`, counts are positive.
    for (stack, n) in &lines {
        assert!(*n > 0);
        for frame in stack.split(';') {
            assert!(frame.ends_with(')') && frame.contains(" ("), "{frame}");
        }
    }
    let (s, f) = collapsed_split(&lines, "slow_function", "fast_function");
    assert!(s > 50 && f > 10);

    let json = dir.join("p.json");
    profile_to(&json);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let prof = &doc["profiles"][0];
    assert_eq!(prof["type"], "sampled");
    assert_eq!(
        prof["samples"].as_array().unwrap().len(),
        prof["weights"].as_array().unwrap().len()
    );
    let frames = doc["shared"]["frames"].as_array().unwrap();
    let slow = frames
        .iter()
        .position(|f| f["name"] == "slow_function")
        .unwrap();
    assert!(prof["samples"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_array().unwrap().contains(&slow.into())));
}

#[test]
fn without_server_or_output_writes_default_files() {
    let dir = tempdir("defaults");
    let py = python("3.11");
    let mut cmd = pyroscope(&["exec", path_str(&py), path_str(&example_app()), "1"]);
    cmd.current_dir(&dir);
    let r = run(cmd, Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let svg = names
        .iter()
        .find(|n| n.starts_with("app-") && n.ends_with(".svg"))
        .unwrap_or_else(|| panic!("{names:?}"));
    let pb = names
        .iter()
        .find(|n| n.starts_with("app-") && n.ends_with(".pb.gz"))
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(
        r.stderr.contains(svg.as_str()) && r.stderr.contains(pb.as_str()),
        "paths printed: {}",
        r.stderr
    );
    let p = decode_pprof_gz(&std::fs::read(dir.join(pb)).unwrap());
    assert!(samples(&p).iter().any(|s| s.has("slow_function")));
}
