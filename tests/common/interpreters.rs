//! The real runtimes the tests run (installed by scripts/test.sh; a missing one fails the test,
//! never skips it), and patching copies of their libraries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A pyenv CPython, e.g. `python("3.11")`; "3.14" is Maven Central's build that scripts/test.sh
/// installs (`$CPYTHON314_ROOT`, by default `~/.cache/cpython314`). Missing interpreters fail the
/// test: CI must have them.
pub fn python(version: &str) -> PathBuf {
    if version == "3.14" {
        return cached_runtime(
            "CPYTHON314_ROOT",
            "cpython314",
            "bin/python3.14",
            "CPython 3.14",
            "installs it from Maven Central",
        );
    }
    let root = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or("/root".into())).join(".pyenv")
        });
    let versions = root.join("versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
        .unwrap_or_else(|e| {
            panic!(
                "no pyenv at {}: {e}; the tests need CPython {version} (see README)",
                versions.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n == version || n.starts_with(&format!("{version}."))
        })
        .collect();
    found.sort();
    let dir = found.pop().unwrap_or_else(|| {
        panic!(
            "CPython {version} is not installed under {}",
            versions.display()
        )
    });
    let major = &version[..1];
    let exe = dir.join("bin").join(format!("python{major}"));
    assert!(exe.exists(), "{} missing", exe.display());
    exe
}

/// Debian's MRI (scripts/test.sh installs it); missing fails the test.
pub fn ruby() -> String {
    for p in ["/usr/bin/ruby", "/usr/local/bin/ruby"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("ruby is not installed (scripts/test.sh installs Debian's ruby)");
}

/// Ruby 3.3 built from Debian's source by scripts/test.sh (`$RUBY33_ROOT`, by default
/// `~/.cache/ruby33`); missing fails the test.
pub fn ruby33() -> String {
    let rb = cached_runtime(
        "RUBY33_ROOT",
        "ruby33",
        "bin/ruby",
        "Ruby 3.3",
        "builds it from Debian's source",
    );
    rb.to_str().unwrap().to_string()
}

/// A free-threaded CPython 3.13 (`python3.13t`) built from Debian's source by scripts/test.sh
/// (`$CPYTHON313T_ROOT`, by default `~/.cache/cpython313t`); missing fails the test.
pub fn python313t() -> PathBuf {
    cached_runtime(
        "CPYTHON313T_ROOT",
        "cpython313t",
        "bin/python3.13t",
        "free-threaded CPython 3.13",
        "builds it from Debian's source",
    )
}

/// `exe` under `$VARIABLE`, by default under `~/.cache/DEFAULT_DIR`: a runtime scripts/test.sh
/// installs (`how`). Missing fails the test, naming `what` and where it was looked for.
fn cached_runtime(variable: &str, default_dir: &str, exe: &str, what: &str, how: &str) -> PathBuf {
    let root = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache")
                .join(default_dir)
        });
    let path = root.join(exe);
    assert!(
        path.exists(),
        "{what} is missing at {} (scripts/test.sh {how})",
        path.display()
    );
    path
}

/// The `dotnet` host of CoreCLR 3.1 (`$DOTNET31_ROOT`, by default `~/.cache/dotnet31`).
pub fn dotnet() -> PathBuf {
    coreclr("DOTNET31_ROOT", "dotnet31", "3.1")
}

/// The `dotnet` host of a CoreCLR installed from PyPI by scripts/test.sh; missing fails the test.
pub fn coreclr(variable: &str, default_dir: &str, version: &str) -> PathBuf {
    cached_runtime(
        variable,
        default_dir,
        "dotnetcore2/bin/dotnet",
        &format!("CoreCLR {version}"),
        "installs it from PyPI",
    )
}

/// File offset of an ELF symbol's bytes (binutils' readelf: symbol value → containing section →
/// offset), for tests that patch a copy of a runtime library.
pub fn elf_symbol_file_offset(file: &Path, symbol: &str) -> usize {
    let readelf = |flag: &str| {
        String::from_utf8(
            Command::new("readelf")
                .arg(flag)
                .arg(file)
                .output()
                .expect("readelf (binutils)")
                .stdout,
        )
        .unwrap()
    };
    let addr = readelf("-sW")
        .lines()
        .find(|l| l.split_whitespace().last() == Some(symbol))
        .and_then(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .unwrap_or_else(|| panic!("symbol {symbol} in {}", file.display()));
    readelf("-SW")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(']').nth(1)?.split_whitespace().collect();
            let (a, o, size) = (
                u64::from_str_radix(f.get(2)?, 16).ok()?,
                u64::from_str_radix(f.get(3)?, 16).ok()?,
                u64::from_str_radix(f.get(4)?, 16).ok()?,
            );
            (a <= addr && addr < a + size).then(|| (addr - a + o) as usize)
        })
        .next()
        .unwrap_or_else(|| panic!("section of {symbol} in {}", file.display()))
}

/// examples/dotnet/Burn.cs compiled once per test run: the directory holding burn.dll.
pub fn burn_dll() -> &'static PathBuf {
    static DLL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DLL.get_or_init(|| csharp_dll("examples/dotnet/Burn.cs", "burn"))
}

/// tests/apps/Alternate.cs compiled, with its runtimeconfig.
pub fn alternate_dll() -> &'static PathBuf {
    static DLL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DLL.get_or_init(|| csharp_dll("tests/apps/Alternate.cs", "alternate"))
}

/// tests/apps/NamedThreads.cs compiled, with its runtimeconfig.
#[allow(dead_code)]
pub fn named_threads_dll() -> &'static PathBuf {
    static DLL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DLL.get_or_init(|| csharp_dll("tests/apps/NamedThreads.cs", "named_threads"))
}

/// Compiles `source` (relative to the repository) with mcs into a temporary `NAME.dll`, next to
/// the example's runtimeconfig (CoreCLR 3.1).
fn csharp_dll(source: &str, name: &str) -> PathBuf {
    let dir = super::tempdir(&format!("dotnet-{name}"));
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dll = dir.join(format!("{name}.dll"));
    let out = Command::new("mcs")
        .args(["-optimize+", "-target:exe"])
        .arg(format!("-out:{}", dll.display()))
        .arg(repo.join(source))
        .output()
        .expect("mcs (Debian's mono-mcs; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "mcs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(
        repo.join("examples/dotnet/burn.runtimeconfig.json"),
        dir.join(format!("{name}.runtimeconfig.json")),
    )
    .unwrap();
    dll
}
