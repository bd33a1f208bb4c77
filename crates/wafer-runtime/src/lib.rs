//! Wafer's WebAssembly runtime: one wasmtime engine, per-call limits, and the module ABIs.
//! Usable on its own as an embedding library, like Extism or Wasp.
//!
//! The runtime knows nothing of HTTP routing or storage. It turns bytes into a [`Program`]
//! (validate, compile ahead of time, link) and runs a program in a fresh, limited instance
//! per call, or in an [`Instance`] kept for several calls.
//!
//! - [`Runtime`]: the engine (pooling allocator with copy-on-write memory images, epoch
//!   interruption ticking every millisecond) and the host functions guests may import; add
//!   your own with [`Runtime::func_wrap`].
//! - [`Runtime::compile`] gives a [`Compiled`]: a serialized artifact to cache, and the
//!   [`Program`]. [`Runtime::load`] maps a cached artifact back without recompiling.
//! - The ABI is detected from the exports ([`Abi`]):
//!   - CGI (`_start`): [`Program::run_cgi`] runs one call: env and stdin in, stdout and logs
//!     out.
//!   - waPC (`__guest_call`): [`Program::call_wapc`] / [`Instance::call_wapc`] call an
//!     operation with a byte payload; the guest's `__host_call`s go to the [`HostCalls`] in
//!     the [`CallOptions`].
//!   - plain exports: [`Program::call`] / [`Instance::call`] call an export by name with
//!     typed arguments and results: numbers, `&str`/`String`, `&[u8]`/`Vec<u8>` (strings
//!     and bytes cross through the guest's `allocate`/`deallocate`, see `docs/calls.md`).
//!   - WASI 0.2 components: HTTP components ([`HttpComponent::handle`]), services, and any
//!     component's exported functions, called with JSON arguments typed by their WIT
//!     ([`Program::component_functions`], [`ComponentFunctions::call`]); host functions
//!     for them are closures ([`Runtime::component_func`]). Components reach the host's
//!     capabilities through WIT interfaces (`wasi:keyvalue`, `wasi:config`, `wasi:logging`,
//!     `wafer:pubsub`) answered as [`HostCalls`].
//! - Every call is bounded by [`Limits`]: a guest that traps, runs too long or asks for too
//!   much memory ends its own call with a [`Fault`]; nothing it does reaches the host.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! use wafer_runtime::{CallOptions, HostCall, Runtime, RuntimeConfig};
//!
//! // Host functions are closures, added before compiling the programs that import them.
//! let mut runtime = Runtime::new(&RuntimeConfig::default())?;
//! runtime.func_wrap("host", "double", |x: i32| x * 2)?;
//!
//! let program = runtime
//!     .compile(br#"(module
//!         (import "host" "double" (func $double (param i32) (result i32)))
//!         (func (export "sum") (param i32 i32) (result i32)
//!             (i32.add (local.get 0) (local.get 1)))
//!         (func (export "sum_doubled") (param i32 i32) (result i32)
//!             (call $double (i32.add (local.get 0) (local.get 1)))))"#)?
//!     .program;
//!
//! // A fresh instance per call (the default)...
//! let options = CallOptions::default();
//! let five: i32 = program.call(&options, "sum", (3, 2)).await?;
//! assert_eq!(five, 5);
//!
//! // ...or one instance for several calls.
//! let mut instance = program.instantiate(&options).await?;
//! let ten: i32 = instance.call("sum_doubled", (3, 2)).await?;
//! assert_eq!(ten, 10);
//!
//! // A wrong call names the export's real signature.
//! let err = instance.call::<_, i32>("sum", 3).await.unwrap_err();
//! assert_eq!(err.to_string(), "sum(i32, i32) -> i32: called with (i32)");
//!
//! // waPC guests call back into the host through `HostCalls`, here a closure.
//! let _options = CallOptions::default().host(|call: HostCall<'_>| {
//!     match (call.binding, call.namespace, call.operation) {
//!         ("app", "greeting", "get") => Ok(b"hello".to_vec()),
//!         (b, n, o) => Err(format!("unknown host call {b}/{n}/{o}")),
//!     }
//! });
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod cache;
mod cgi;
mod command;
mod component;
mod concurrent;
mod engine;
mod error;
mod exports;
mod guest;
mod host_call;
mod http;
mod interfaces;
mod output;
mod program;
mod sandbox;
mod service;
mod spin;
mod ticker;
pub mod trace;
mod typed;
mod wapc;

pub use bytesize::ByteSize;
pub use cache::ArtifactCache;
pub use cgi::{CgiOutput, CgiRequest, CommandOptions, Inputs};
pub use component::{
    BoxError, HttpCtx, HttpOptions, Outbound, OutboundBody, OutboundError, SocketCheck,
};
pub use engine::{Compiled, Runtime, RuntimeConfig};
pub use error::{CallError, CompileError, Fault, RuntimeError};
pub use exports::{FromValue, IntoValue, Params, Results, Shape, Signature, Value, ValueType};
pub use guest::{CallOptions, GuestCtx, Instance};
pub use host_call::{HostCall, HostCallFuture, HostCalls};
pub use http::{Delivered, Done, Finished, Handled, HttpComponent, InstancePool};
pub use interfaces::SUBSCRIBER;
pub use program::Program;
pub use sandbox::Preopen;
pub use service::{Service, ServiceCtx, ServiceOptions};
pub use ticker::running_guests;
pub use typed::{Called, ComponentFunctions};
pub use wafer_abi::{Abi, Limits};
