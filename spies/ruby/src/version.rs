//! Which Ruby a process runs, and which layout to read it with.
//!
//! rbspy matches versions exactly: every new Ruby patch release is "unsupported" until rbspy is
//! updated (pyroscope-rs #231, #278). Layouts almost never change within a minor version, so for
//! an unknown X.Y.Z the nearest known X.Y.* is used instead, with one warning, and the first
//! stacks are checked for sanity before they are trusted (see `lib.rs`).

use remoteprocess::ProcessMemory;

/// The versions rbspy 0.55 knows (its private `supported_ruby_versions.rs`). The test
/// `known_list_matches_rbspy` fails when an rbspy upgrade changes them.
pub const KNOWN: &[&str] = &[
    "1.9.1", "1.9.2", "1.9.3", "2.0.0", "2.1.0", "2.1.1", "2.1.2", "2.1.3", "2.1.4", "2.1.5",
    "2.1.6", "2.1.7", "2.1.8", "2.1.9", "2.1.10", "2.2.0", "2.2.1", "2.2.2", "2.2.3", "2.2.4",
    "2.2.5", "2.2.6", "2.2.7", "2.2.8", "2.2.9", "2.2.10", "2.3.0", "2.3.1", "2.3.2", "2.3.3",
    "2.3.4", "2.3.5", "2.3.6", "2.3.7", "2.3.8", "2.4.0", "2.4.1", "2.4.2", "2.4.3", "2.4.4",
    "2.4.5", "2.4.6", "2.4.7", "2.4.8", "2.4.9", "2.4.10", "2.5.0", "2.5.1", "2.5.2", "2.5.3",
    "2.5.4", "2.5.5", "2.5.6", "2.5.7", "2.5.8", "2.5.9", "2.6.0", "2.6.1", "2.6.2", "2.6.3",
    "2.6.4", "2.6.5", "2.6.6", "2.6.7", "2.6.8", "2.6.9", "2.6.10", "2.7.0", "2.7.1", "2.7.2",
    "2.7.3", "2.7.4", "2.7.5", "2.7.6", "2.7.7", "2.7.8", "3.0.0", "3.0.1", "3.0.2", "3.0.3",
    "3.0.4", "3.0.5", "3.0.6", "3.0.7", "3.1.0", "3.1.1", "3.1.2", "3.1.3", "3.1.4", "3.1.5",
    "3.1.6", "3.1.7", "3.2.0", "3.2.1", "3.2.2", "3.2.3", "3.2.4", "3.2.5", "3.2.6", "3.2.7",
    "3.2.8", "3.2.9", "3.2.10", "3.2.11", "3.3.0", "3.3.1", "3.3.2", "3.3.3", "3.3.4", "3.3.5",
    "3.3.6", "3.3.7", "3.3.8", "3.3.9", "3.3.10", "3.3.11", "3.3.12", "3.3.13", "3.4.0", "3.4.1",
    "3.4.2", "3.4.3", "3.4.4", "3.4.5", "3.4.6", "3.4.7", "3.4.8", "3.4.9", "3.4.10", "3.4.11",
    "3.4.12", "4.0.0", "4.0.1", "4.0.2", "4.0.3", "4.0.4", "4.0.5", "4.0.6", "4.0.7", "4.0.8",
    "4.0.9",
];

/// `(major, minor, patch)` of a version string like "3.1.2" (pre-release suffixes ignored).
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// `None` when rbspy knows `version`; else the nearest known patch release of the same minor
/// version (the highest below it, or else the lowest above it), if any.
pub fn fallback(version: &str) -> Option<Option<&'static str>> {
    if KNOWN.contains(&version) {
        return None;
    }
    let (maj, min, patch) = parse(version)?;
    let same_minor: Vec<(u32, &'static str)> = KNOWN
        .iter()
        .filter_map(|k| {
            parse(k)
                .filter(|p| p.0 == maj && p.1 == min)
                .map(|p| (p.2, *k))
        })
        .collect();
    let below = same_minor
        .iter()
        .filter(|(p, _)| *p < patch)
        .max_by_key(|(p, _)| *p);
    let above = same_minor
        .iter()
        .filter(|(p, _)| *p > patch)
        .min_by_key(|(p, _)| *p);
    Some(below.or(above).map(|(_, k)| *k))
}

/// Reads the `ruby_version` string out of the running process: the symbol is looked up in
/// libruby (or the executable, for a static ruby) and read from memory.
pub fn read(pid: u32) -> Result<String, String> {
    let addr = spy::elf::symbol_address(pid, crate::is_libruby, "ruby_version")
        .map_err(|e| e.replace("library", "libruby"))?;
    let mut buf = [0u8; 16];
    let process =
        remoteprocess::Process::new(pid as remoteprocess::Pid).map_err(|e| e.to_string())?;
    process
        .read(addr as usize, &mut buf)
        .map_err(|e| format!("reading ruby_version: {e}"))?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text =
        std::str::from_utf8(&buf[..end]).map_err(|_| "ruby_version is not text".to_string())?;
    if parse(text).is_some() {
        Ok(text.to_string())
    } else {
        Err(format!("odd ruby_version {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_known_patch() {
        assert_eq!(fallback("3.1.2"), None, "known");
        assert_eq!(
            fallback("3.1.9"),
            Some(Some("3.1.7")),
            "newer patch: the highest known below"
        );
        assert!(
            fallback("9.9.9").unwrap().is_none(),
            "unknown minor: nothing to fall back to"
        );
        assert_eq!(parse("3.4.0-preview1"), Some((3, 4, 0)));
    }

    #[test]
    fn reads_the_version_of_a_real_ruby() {
        let Ok(ruby) = which("ruby") else {
            panic!("ruby is not installed (scripts/test.sh installs it)")
        };
        let mut child = std::process::Command::new(ruby)
            .args(["-e", "sleep 5"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let v = read(child.id());
        let expected = std::process::Command::new("ruby")
            .args(["-e", "print RUBY_VERSION"])
            .output()
            .unwrap()
            .stdout;
        child.kill().unwrap();
        let _ = child.wait();
        assert_eq!(v.unwrap(), String::from_utf8(expected).unwrap());
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(name))
            .find(|p| p.exists())
            .ok_or(())
    }

    /// When rbspy is upgraded, its list of versions changes: keep ours equal to it.
    #[test]
    fn known_list_matches_rbspy() {
        let f = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../vendor/rbspy/src/core/supported_ruby_versions.rs"
        );
        let src = std::fs::read_to_string(f).expect("the vendored rbspy sources");
        let theirs: Vec<&str> = src
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix('"')?
                    .split_once("\" =>")
                    .map(|(v, _)| v)
            })
            .collect();
        assert_eq!(theirs, KNOWN);
    }
}
