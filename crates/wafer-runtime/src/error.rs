//! Errors: host-side failures to build or load a program, and guest faults during a call.

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;

/// The engine could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the wasm engine: {0}")]
pub struct RuntimeError(String);

impl RuntimeError {
    pub(crate) fn engine(e: wasmtime::Error) -> Self {
        Self(format!("{e:#}"))
    }
}

/// A module could not be turned into a runnable program. The messages are meant for the
/// person who uploaded the module.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CompileError {
    /// The WAT text does not parse.
    #[error("invalid WAT: {0}")]
    Wat(String),
    /// The binary is not valid WebAssembly, or cannot be compiled.
    #[error("invalid wasm module: {0}")]
    Invalid(String),
    /// Valid WebAssembly, but of a kind this server does not run.
    #[error("unsupported module: {0}")]
    Unsupported(String),
    /// The module imports something the host does not provide.
    #[error("cannot link module: {0}")]
    Link(String),
    /// The host could not set up the module's copy-on-write memory image (out of memory or
    /// file descriptors).
    #[error("cannot prepare the module's memory image: {0}")]
    MemoryImage(String),
    /// A cached artifact is unusable (corrupt, or from another engine).
    #[error("unusable compiled artifact: {0}")]
    Artifact(String),
}

/// How a call failed on the guest's side. Each costs that call only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The guest trapped (`unreachable`, out-of-bounds access, stack overflow, ...).
    Trap(String),
    /// The call ran past its wall-clock limit.
    Timeout(Duration),
    /// The guest tried to grow its memory past its limit.
    OutOfMemory(ByteSize),
    /// The guest wrote more to stdout than its limit.
    OutputTooLarge(ByteSize),
    /// No instance slot was free (all pool slots in use).
    Busy,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Trap(msg) => write!(f, "trapped: {msg}"),
            Fault::Timeout(limit) => write!(
                f,
                "exceeded its time limit of {}",
                humantime::format_duration(*limit)
            ),
            Fault::OutOfMemory(limit) => write!(f, "exceeded its memory limit of {limit}"),
            Fault::OutputTooLarge(limit) => {
                write!(f, "wrote more than its output limit of {limit}")
            }
            Fault::Busy => write!(f, "could not start: every instance slot is in use"),
        }
    }
}
