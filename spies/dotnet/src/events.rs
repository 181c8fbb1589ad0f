//! Payloads of the runtime events the spy uses. Native runtime events carry no field
//! descriptions in their metadata, so their layouts are fixed here, keyed by provider and id.

use crate::nettrace::{Cursor, Event, Result};

pub const SAMPLE_PROFILER: &str = "Microsoft-DotNETCore-SampleProfiler";
pub const RUNTIME: &str = "Microsoft-Windows-DotNETRuntime";
pub const RUNDOWN: &str = "Microsoft-Windows-DotNETRuntimeRundown";

/// Keywords of the runtime provider: Loader (modules) | Jit (methods compiled from now on) |
/// CompilationDiagnostic (R2RGetEntryPoint: precompiled ReadyToRun methods, such as most of
/// System.Private.CoreLib, when first used; no JIT event is sent for them).
pub const RUNTIME_KEYWORDS: u64 = 0x8 | 0x10 | 0x20_0000_0000;
/// Verbose: the method events with names (MethodLoadVerbose) need it.
pub const LEVEL_VERBOSE: u32 = 5;

/// The providers of the spy's long session: the sampler's stacks, and the events that name them.
pub const SESSION_PROVIDERS: [crate::ipc::Provider<'static>; 2] = [
    crate::ipc::Provider {
        name: SAMPLE_PROFILER,
        keywords: 0,
        level: LEVEL_VERBOSE,
    },
    crate::ipc::Provider {
        name: RUNTIME,
        keywords: RUNTIME_KEYWORDS,
        level: LEVEL_VERBOSE,
    },
];

/// The providers of the long session when the sampler runs in bursts: only the events that
/// name the stacks.
pub const METHOD_PROVIDERS: [crate::ipc::Provider<'static>; 1] = [SESSION_PROVIDERS[1]];

/// The providers of a sampling burst: only the sampler.
pub const SAMPLER_PROVIDERS: [crate::ipc::Provider<'static>; 1] = [SESSION_PROVIDERS[0]];

/// `ThreadSample.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Error,
    /// Not in managed code (native code, waits, sleeps): preemptive mode.
    External,
    /// Running managed code.
    Managed,
}

/// What one event means to the spy.
#[derive(Debug)]
pub enum Known {
    Sample(SampleKind),
    /// A method's code range came into existence (JIT, or rundown of existing code).
    MethodLoad(MethodLoad),
    /// A method's code range went away (collectible assembly unloaded).
    MethodUnload {
        start: u64,
    },
    /// A precompiled (ReadyToRun) method was first used: where its code starts, not its size.
    EntryPoint {
        start: u64,
        name: String,
    },
    Module {
        id: u64,
        path: String,
    },
    Other,
}

#[derive(Debug, Clone)]
pub struct MethodLoad {
    pub module_id: u64,
    pub start: u64,
    pub size: u32,
    /// Full type name, e.g. `BurnDemo.Worker`.
    pub namespace: String,
    pub name: String,
}

impl MethodLoad {
    pub fn full_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.namespace, self.name)
        }
    }
}

pub fn classify(e: &Event<'_>) -> Result<Known> {
    let m = e.metadata;
    let mut c = Cursor::new(e.payload);
    Ok(match (&*m.provider, m.event_id) {
        (SAMPLE_PROFILER, 0) => Known::Sample(match c.u32()? {
            1 => SampleKind::External,
            2 => SampleKind::Managed,
            _ => SampleKind::Error,
        }),
        // MethodLoadVerbose; rundown's MethodDCStartVerbose / MethodDCEndVerbose.
        (RUNTIME, 143) | (RUNDOWN, 143) | (RUNDOWN, 144) => Known::MethodLoad(method(&mut c)?),
        // MethodUnloadVerbose.
        (RUNTIME, 144) => {
            let m = method(&mut c)?;
            Known::MethodUnload { start: m.start }
        }
        // R2RGetEntryPoint: u64 MethodID, namespace, name, signature, u64 EntryPoint, u16.
        (RUNTIME, 159) => {
            let _method_id = c.u64()?;
            let namespace = c.utf16z()?;
            let name = c.utf16z()?;
            let _signature = c.utf16z()?;
            let start = c.u64()?;
            let name = if namespace.is_empty() {
                name
            } else {
                format!("{namespace}.{name}")
            };
            Known::EntryPoint { start, name }
        }
        // ModuleLoad; rundown's ModuleDCStart / ModuleDCEnd.
        (RUNTIME, 152) | (RUNDOWN, 153) | (RUNDOWN, 154) => {
            let id = c.u64()?;
            let _assembly = c.u64()?;
            let _flags = c.u32()?;
            let _reserved = c.u32()?;
            Known::Module {
                id,
                path: c.utf16z()?,
            }
        }
        // DomainModuleLoad; rundown's DomainModuleDCStart / DomainModuleDCEnd.
        (RUNTIME, 151) | (RUNDOWN, 151) | (RUNDOWN, 152) => {
            let id = c.u64()?;
            let _assembly = c.u64()?;
            let _domain = c.u64()?;
            let _flags = c.u32()?;
            let _reserved = c.u32()?;
            Known::Module {
                id,
                path: c.utf16z()?,
            }
        }
        _ => Known::Other,
    })
}

/// `MethodLoadUnloadVerbose`: u64 MethodID, u64 ModuleID, u64 MethodStartAddress,
/// u32 MethodSize, u32 MethodToken, u32 MethodFlags, namespace, name, signature, u16 ClrInstanceID.
fn method(c: &mut Cursor<'_>) -> Result<MethodLoad> {
    let _method_id = c.u64()?;
    let module_id = c.u64()?;
    let start = c.u64()?;
    let size = c.u32()?;
    let _token = c.u32()?;
    let _flags = c.u32()?;
    let namespace = c.utf16z()?;
    let name = c.utf16z()?;
    Ok(MethodLoad {
        module_id,
        start,
        size,
        namespace,
        name,
    })
}
