//! Wafer's WebAssembly runtime: one wasmtime engine, per-call limits, and the module ABIs.
//!
//! The runtime knows nothing of HTTP routing or storage. It turns bytes into a [`Program`]
//! (validate, compile ahead of time, link) and runs a program in a fresh, limited instance
//! per call.
//!
//! - [`Runtime`]: the engine (pooling allocator with copy-on-write memory images, epoch
//!   interruption ticking every millisecond) and the host functions guests may import.
//! - [`Runtime::compile`] gives a [`Compiled`]: a serialized artifact to cache, and the
//!   [`Program`]. [`Runtime::load`] maps a cached artifact back without
//!   recompiling.
//! - [`Program::run_cgi`] runs one CGI-style call (ABI 1): env and stdin in, stdout and logs
//!   out, bounded by [`Limits`]. A guest that traps, runs too long or asks for too much memory
//!   ends its own call with a [`Fault`]; nothing it does reaches the host.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use wafer_runtime::{CgiRequest, Limits, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(&RuntimeConfig::default())?;
//! let hello = br#"(module
//!     (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
//!     (memory (export "memory") 1)
//!     (data (i32.const 16) "hi\n")
//!     (func (export "_start")
//!         (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
//!         (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
//! let compiled = runtime.compile(hello)?;
//! let output = compiled.program.run_cgi(CgiRequest::default(), &Limits::default()).await;
//! assert_eq!(output.exit, Ok(0));
//! assert_eq!(&output.stdout[..], b"hi\n");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod call;
mod engine;
mod error;
mod limits;
mod output;
mod program;
mod wapc;

pub use bytesize::ByteSize;
pub use call::{
    CallError, CallOptions, FromValue, Instance, IntoValue, Params, Results, Shape, Value,
};
pub use engine::{Compiled, Runtime, RuntimeConfig};
pub use error::{CompileError, Fault, RuntimeError};
pub use limits::Limits;
pub use program::{Abi, CgiOutput, CgiRequest, CommandOptions, GuestCtx, Inputs, Program};
pub use wapc::{HostCall, HostCallFuture, HostCalls};
pub use wasmtime::{FuncType, ValType};
