//! The runtimes this build can profile: the only place in the agent that names the spies.
//!
//! Adding a runtime is writing its crate (an implementation of [`spy::Runtime`]) and adding it
//! to [`ALL`]: detection, `--spy-name`, `--<spy>-blocking`, the default application name and
//! the spy's log lines all follow from the trait.

use anyhow::{bail, Result};
use spy::Runtime;

/// Every runtime compiled in, in the order they are tried on a new process.
static ALL: [&dyn Runtime; 3] = [&spy_python::Python, &spy_ruby::Ruby, &spy_dotnet::DotNet];

/// Every runtime compiled in.
pub fn all() -> &'static [&'static dyn Runtime] {
    &ALL
}

/// Names accepted by `--spy-name` (besides `auto`).
pub fn spy_names() -> Vec<&'static str> {
    all().iter().map(|r| r.spy_name()).collect()
}

/// Validates `--spy-name`.
pub fn check_spy_name(name: &str) -> Result<()> {
    if name == "auto" || spy_names().contains(&name) {
        return Ok(());
    }
    let available = spy_names().join(", ");
    bail!("spy {name:?} is not supported; available spies: auto, {available}");
}

/// The runtimes `--spy-name` selects.
pub fn selected(name: &str) -> Vec<&'static dyn Runtime> {
    all()
        .iter()
        .copied()
        .filter(|r| name == "auto" || r.spy_name() == name)
        .collect()
}

/// The runtimes whose spies can read with the process paused (`--<spy>-blocking`).
pub fn pausable() -> impl Iterator<Item = &'static dyn Runtime> {
    all().iter().copied().filter(|r| r.can_pause())
}

/// Log targets (crate names) whose lines are pyroscope's own: the agent's, the trait crate's and
/// every spy's. Libraries' lines (py-spy, rbspy, reqwest, ...) are not shown.
pub fn log_targets() -> Vec<&'static str> {
    let mut targets = vec![env!("CARGO_CRATE_NAME"), "spy"];
    targets.extend(all().iter().map(|r| r.log_target()));
    targets
}

/// The application name a runtime's launcher command line implies (`app` for `python app.py`).
pub fn app_name(argv: &[String]) -> Option<String> {
    all().iter().find_map(|r| r.app_name(argv))
}

/// The runtimes' names joined for a sentence: "Python", "Python or Ruby", "Python, Ruby or .NET"
/// (`and`: with "and" instead).
pub fn names(runtimes: &[&dyn Runtime], and: bool) -> String {
    let names: Vec<&str> = runtimes.iter().map(|r| r.runtime_name()).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            format!(
                "{} {} {last}",
                init.join(", "),
                if and { "and" } else { "or" }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry() {
        assert_eq!(spy_names(), ["pyspy", "rbspy", "dotnetspy"]);
        assert_eq!(
            log_targets(),
            ["pyroscope", "spy", "spy_python", "spy_ruby", "spy_dotnet"]
        );
        assert_eq!(names(all(), false), "Python, Ruby or .NET");
        assert_eq!(names(&selected("rbspy"), false), "Ruby");
        assert_eq!(names(&selected("auto"), true), "Python, Ruby and .NET");
        let pausable: Vec<_> = pausable().map(|r| r.spy_name()).collect();
        assert_eq!(pausable, ["pyspy", "rbspy"]);
        assert!(check_spy_name("auto").is_ok());
        assert!(check_spy_name("jvmspy")
            .unwrap_err()
            .to_string()
            .contains("available spies: auto, pyspy, rbspy, dotnetspy"));
        let app = |v: &[&str]| app_name(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(app(&["python3", "app.py"]), Some("app".into()));
        assert_eq!(app(&["ruby", "worker.rb"]), Some("worker".into()));
        assert_eq!(app(&["dotnet", "shop.dll"]), Some("shop".into()));
        assert_eq!(app(&["gunicorn", "app:wsgi"]), None);
    }
}
