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

/// Why a call did not return a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The guest trapped, ran out of time or memory, or answered too much.
    #[error("{0}")]
    Fault(Fault),
    /// A waPC guest answered with an error (`__guest_error`).
    #[error("{0}")]
    Guest(String),
    /// A waPC guest has no handler for the operation.
    #[error("unknown operation `{0}`")]
    UnknownOperation(String),
    /// The module exports no function of that name.
    #[error("no exported function `{name}` (exports: {exports})")]
    NoExport {
        /// The name asked for.
        name: String,
        /// The functions the module does export.
        exports: String,
    },
    /// The arguments or expected results do not fit the export's signature.
    #[error("{signature}: {problem}")]
    Signature {
        /// The export's real signature, for example `sum(i32, i32) -> i32`.
        signature: String,
        /// What does not fit.
        problem: String,
    },
    /// The call needs something the module lacks (an allocator, an exported memory, ...).
    #[error("{0}")]
    Unsupported(String),
    /// An earlier call on this instance failed, leaving it unusable.
    #[error("this instance failed in an earlier call ({0}); create a new one")]
    Poisoned(Fault),
}

impl From<Fault> for CallError {
    fn from(fault: Fault) -> Self {
        CallError::Fault(fault)
    }
}
