//! The runtimes this build can profile, and the choice made by `--spy-name`.

use anyhow::{bail, Result};
use spy::Runtime;

static PYTHON: spy_python::Python = spy_python::Python;
static RUBY: spy_ruby::Ruby = spy_ruby::Ruby;
static DOTNET: spy_dotnet::DotNet = spy_dotnet::DotNet;

/// Every runtime compiled in.
pub fn all() -> Vec<&'static dyn Runtime> {
    vec![&PYTHON, &RUBY, &DOTNET]
}

/// Names accepted by `--spy-name`.
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
        .into_iter()
        .filter(|r| name == "auto" || r.spy_name() == name)
        .collect()
}
