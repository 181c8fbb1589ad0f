//! Records a fixture of a live CPython (see `spy_python::fixture`): stops the process, finds
//! its interpreter (py-spy), reads it once with every page kept, resumes it, writes FILE.
//!
//! `cargo run --release -p spy-python --example record_python -- PID FILE`

use spy_python::fixture::Fixture;
use spy_python::py_spy::{Config, PythonSpy};

fn main() -> anyhow::Result<()> {
    env_logger::init();
    let args: Vec<String> = std::env::args().collect();
    let [_, pid, out] = &args[..] else {
        anyhow::bail!("usage: record_python PID FILE");
    };
    let pid: u32 = pid.parse()?;
    // A free-threaded build (`python3.13t`, `libpython3.13t.so`) has its own layout, and is
    // found without py-spy.
    let free_threaded = spy_python::is_free_threaded(pid);
    let (major, minor, version, interpreter) = if free_threaded {
        spy_python::locate_free_threaded(pid).map_err(anyhow::Error::msg)?
    } else {
        let spy = PythonSpy::new(pid as spy_python::py_spy::Pid, &Config::default())?;
        let v = spy.version.clone();
        (
            v.major,
            v.minor,
            v.to_string(),
            spy.addresses.interpreter_address,
        )
    };
    // Stopped, so that every page kept is what the read saw.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))?
        .rsplit(')')
        .next()
        .is_some_and(|s| s.trim_start().starts_with('T'))
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let fixture = Fixture::record(pid, &version, (major, minor, free_threaded), interpreter);
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let fixture = fixture?;
    fixture.write(std::path::Path::new(out))?;
    println!(
        "CPython {}: {} threads, {} pages -> {out}",
        fixture.version,
        fixture.threads.len(),
        fixture.pages.len()
    );
    Ok(())
}
