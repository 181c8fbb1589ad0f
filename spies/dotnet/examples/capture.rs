//! Records the raw nettrace stream the spy reads, for test fixtures and fuzz seeds:
//! the same providers as the spy's long session (SampleProfiler + runtime Jit|Loader|
//! CompilationDiagnostic, verbose), with rundown at the end.
//!
//!   cargo run --release -p spy-dotnet --example capture -- PID SECONDS OUT.nettrace
//!
//! Started within milliseconds of the program, it catches the ReadyToRun entry points of
//! start-up (see tests/data/README.md).

use spy_dotnet::{events, ipc};
use std::io::Read;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, pid, seconds, out] = &args[..] else {
        eprintln!("usage: capture PID SECONDS OUT.nettrace");
        std::process::exit(2);
    };
    let pid: u32 = pid.parse().expect("PID");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let started = Instant::now();
    let socket = loop {
        match ipc::find_socket(pid) {
            Ok(s) => break s,
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (mut stream, session) = ipc::collect_tracing(&socket, 64, true, &events::SESSION_PROVIDERS)
        .expect("CollectTracing2");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        bytes
    });
    std::thread::sleep(Duration::from_secs_f64(seconds));
    ipc::stop_tracing(&socket, session).expect("StopTracing");
    let bytes = reader.join().unwrap();
    std::fs::write(out, &bytes).expect("write");
    eprintln!("{} bytes to {out}", bytes.len());
}
