//! .NET (CoreCLR 3.1 and later) spy: the runtime samples itself through EventPipe
//! (`Microsoft-DotNETCore-SampleProfiler`); this crate asks for that stream over the
//! diagnostics IPC socket, reads it ([`nettrace`]) and names the frames from the runtime's own
//! method events ([`collector`], [`symbols`]).

pub mod collector;
pub mod events;
pub mod ipc;
pub mod nettrace;
mod sampling;
mod session;
pub mod symbols;

use ipc::IpcError;
use sampling::{sampling_rate_ms, Sampling, SAMPLING_RATE_ENV};
use session::SessionReader;
use spy::{AttachError, AttachOptions, Pauser, Runtime, SampleError, Spy, Stack};

pub struct DotNet;

/// Whether a library basename is CoreCLR's.
pub fn is_coreclr(name: &str) -> bool {
    name == "libcoreclr.so"
}

/// A managed assembly file (its ReadyToRun code is mapped from it).
pub(crate) fn is_managed_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".dll") || lower.ends_with(".exe")
}

/// The runtime version, from the directory libcoreclr.so is mapped from
/// (`…/shared/Microsoft.NETCore.App/3.1.23/libcoreclr.so`).
pub fn runtime_version(coreclr_path: &str) -> Option<String> {
    let dir = std::path::Path::new(coreclr_path)
        .parent()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    dir.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit())
        .then_some(dir)
}

fn disabled_by_environment(pid: u32) -> Option<String> {
    ["COMPlus_EnableDiagnostics", "DOTNET_EnableDiagnostics"]
        .into_iter()
        .find(|v| spy::procfs::env_var(pid, v).as_deref() == Some("0"))
        .map(|v| format!("{v}=0"))
}

impl Runtime for DotNet {
    fn spy_name(&self) -> &'static str {
        "dotnetspy"
    }

    fn runtime_name(&self) -> &'static str {
        ".NET"
    }

    fn detect(&self, pid: u32) -> bool {
        spy::procfs::maps_file(pid, is_coreclr)
    }

    fn release_from_tracer(&self) -> bool {
        true
    }

    /// .NET 10 and later read `DOTNET_EventPipeThreadSamplingRate` (ms) at start: their sampler
    /// then samples at the agent's rate in the first place (older runtimes ignore it).
    fn child_env(&self, sample_rate: u32) -> Vec<(&'static str, String)> {
        vec![(SAMPLING_RATE_ENV, sampling_rate_ms(sample_rate).to_string())]
    }

    /// `shop` for `dotnet shop.dll` (also `dotnet exec shop.dll`, `dotnet --roll-forward Major
    /// shop.dll`): the managed assembly being run.
    fn app_name(&self, argv: &[String]) -> Option<String> {
        spy::launcher_args(argv, |exe| exe == "dotnet")?
            .iter()
            .find(|a| !a.starts_with('-') && is_managed_image(a))
            .map(|a| spy::program_name(a))
    }

    fn attach(&self, pid: u32, options: &AttachOptions) -> Result<Box<dyn Spy>, AttachError> {
        if !spy::procfs::alive(pid) {
            return Err(AttachError::Gone);
        }
        let Some(coreclr) = spy::procfs::mapped_file(pid, is_coreclr) else {
            let exe = spy::procfs::exe_name(pid).unwrap_or_default();
            return Err(AttachError::WrongRuntime(format!(
                "{exe} does not map libcoreclr.so"
            )));
        };
        let version = runtime_version(&coreclr);
        if let Some(major) = version
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        {
            if major < 3 {
                return Err(AttachError::Unsupported(format!(
                    ".NET Core {} has no diagnostics server: .NET Core 3.0 or later is needed",
                    version.as_deref().unwrap_or("?")
                )));
            }
        }
        let socket = match ipc::find_socket(pid) {
            Ok(s) => s,
            Err(IpcError::Permission(m)) => return Err(AttachError::Permission(m)),
            Err(IpcError::Denied(m)) => return Err(AttachError::Denied(m)),
            Err(e) => {
                if let Some(setting) = disabled_by_environment(pid) {
                    return Err(AttachError::Unsupported(format!(
                        "the .NET diagnostics server is disabled in this process ({setting} in its environment)"
                    )));
                }
                // The runtime creates its socket early in start-up: retried until then.
                return Err(AttachError::NotReady(format!("{e}")));
            }
        };
        let period_ns = spy::period_ns(options.sample_rate) as i64;
        let sampling = Sampling::for_process(pid, version.as_deref(), options.sample_rate);
        log::debug!("process {pid}: {sampling:?}");
        let reader = SessionReader::start(pid, socket, period_ns, options.wall_clock, sampling)?;
        Ok(Box::new(DotNetProcessSpy {
            pid,
            version,
            reader,
            ended_seen: None,
            names: options
                .thread_names
                .then(|| spy::procfs::ThreadNames::new(pid)),
        }))
    }
}

struct DotNetProcessSpy {
    pid: u32,
    version: Option<String>,
    reader: SessionReader,
    /// When the end of the stream was first seen.
    ended_seen: Option<std::time::Instant>,
    /// OS thread names (which `Thread.Name` sets), for the `thread_name` label.
    names: Option<spy::procfs::ThreadNames>,
}

impl Spy for DotNetProcessSpy {
    fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!(".NET {v} (CoreCLR)"),
            None => ".NET (CoreCLR)".into(),
        }
    }

    fn sample(
        &mut self,
        _pauser: Option<&mut dyn Pauser>,
        out: &mut Vec<Stack>,
    ) -> Result<(), SampleError> {
        let mut s = self.reader.shared.lock().expect("not poisoned");
        let first = out.len();
        out.append(&mut s.ready);
        if let Some(names) = &mut self.names {
            for stack in &mut out[first..] {
                stack.thread_name = u32::try_from(stack.thread_id)
                    .ok()
                    .and_then(|tid| names.own(tid));
            }
        }
        let Some(ended) = &s.ended else { return Ok(()) };
        if !spy::procfs::alive(self.pid) {
            return Err(SampleError::Gone);
        }
        // A runtime that shuts down ends its sessions first and exits a moment later: give it
        // that moment before calling the end a failure.
        let since = *self.ended_seen.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < std::time::Duration::from_secs(3) {
            return Ok(());
        }
        Err(SampleError::Fatal(match ended {
            Ok(_) => "the runtime ended the EventPipe session while the process goes on".into(),
            Err(e) => e.clone(),
        }))
    }
}
