//! Calling a program's functions: waPC operations and plain exports, in a fresh instance per
//! call or in one instance kept for several calls.
//!
//! Plain exports take and return numbers (`i32`, `i64`, `f32`, `f64`) directly. Strings and
//! byte arrays cross through the guest's allocator:
//! - an argument is copied into a buffer the host gets from the guest's
//!   `allocate(len: i32) -> i32`, and passed as two `i32` parameters, pointer then length; the
//!   host frees it with `deallocate(ptr: i32, len: i32)` after the call returns;
//! - a result is returned as one `i64`, `(ptr << 32) | len`, of a buffer the guest allocated;
//!   the host copies it, then frees it with `deallocate(ptr, len)`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime::{Extern, ExternType, Func, FuncType, Module, Store, Val, ValType};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::WasiCtxBuilder;

use crate::error::Fault;
use crate::output::{CappedPipe, Overflow};
use crate::program::{store, within, GuestCtx, Program};
use crate::wapc::HostCalls;
use wafer_abi::Abi;
use wafer_abi::Limits;

/// How to run calls: the limits, who answers the guest's host calls, and the directories
/// the guest may open.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Memory and time (per call) and the size of answers and logs.
    pub limits: Limits,
    /// Answers waPC `__host_call`s; without it every host call fails with a message.
    pub host: Option<Arc<dyn HostCalls>>,
    /// Host directories pre-opened for the guest; none by default.
    pub dirs: Vec<Preopen>,
}

/// A host directory a guest may use, at a path of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: std::path::PathBuf,
    /// Where the guest finds it.
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

impl CallOptions {
    /// Options with these limits, no host calls and no directories.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Adds the pre-opened directories to a WASI context.
    pub(crate) fn preopen(&self, wasi: &mut WasiCtxBuilder) -> Result<(), Fault> {
        for dir in &self.dirs {
            let perms = if dir.read_only {
                wasmtime_wasi::FsPerms::ReadOnly
            } else {
                wasmtime_wasi::FsPerms::ReadWrite
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| {
                    Fault::Trap(format!(
                        "cannot open the granted directory {}: {e}",
                        dir.host.display()
                    ))
                })?;
        }
        Ok(())
    }

    /// Answers the guest's host calls with `host`.
    pub fn host(mut self, host: impl HostCalls + 'static) -> Self {
        self.host = Some(Arc::new(host));
        self
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

/// A value crossing into or out of a plain export.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A wasm `i32`.
    I32(i32),
    /// A wasm `i64`.
    I64(i64),
    /// A wasm `f32`.
    F32(f32),
    /// A wasm `f64`.
    F64(f64),
    /// Bytes (or UTF-8 text) passed through the guest's allocator.
    Bytes(Vec<u8>),
}

/// The type of a wasm parameter or result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// A vector or reference, which cannot cross to the host.
    Other,
}

impl ValueType {
    fn of(ty: &ValType) -> Self {
        match ty {
            ValType::I32 => ValueType::I32,
            ValType::I64 => ValueType::I64,
            ValType::F32 => ValueType::F32,
            ValType::F64 => ValueType::F64,
            ValType::V128 | ValType::Ref(_) => ValueType::Other,
        }
    }
}

/// The parameter and result types of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Parameter types, in order.
    pub params: Vec<ValueType>,
    /// Result types, in order.
    pub results: Vec<ValueType>,
}

/// The form of a result the caller expects from a plain export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A number: whatever wasm number type the export returns.
    Number,
    /// A buffer returned as `(ptr << 32) | len` in an `i64`.
    Bytes,
}

/// One argument of a typed call.
pub trait IntoValue {
    /// The argument as a [`Value`].
    fn into_value(self) -> Value;
}

/// One result of a typed call.
pub trait FromValue: Sized {
    /// How the result comes back.
    const SHAPE: Shape;
    /// Converts the lifted value, or says why it cannot.
    fn from_value(value: Value) -> Result<Self, String>;
}

macro_rules! numbers {
    ($($t:ty => $variant:ident as $wasm:ty),* $(,)?) => {$(
        impl IntoValue for $t {
            fn into_value(self) -> Value {
                // Unsigned values travel as their two's-complement bit pattern, as in wasm.
                Value::$variant(self as $wasm)
            }
        }
        impl FromValue for $t {
            const SHAPE: Shape = Shape::Number;
            fn from_value(value: Value) -> Result<Self, String> {
                match value {
                    Value::$variant(v) => Ok(v as $t),
                    other => Err(format!("returns {}, not {}", kind(&other), stringify!($wasm))),
                }
            }
        }
    )*};
}
numbers!(i32 => I32 as i32, u32 => I32 as i32, i64 => I64 as i64, u64 => I64 as i64, f32 => F32 as f32, f64 => F64 as f64);

impl IntoValue for &str {
    fn into_value(self) -> Value {
        Value::Bytes(self.as_bytes().to_vec())
    }
}
impl IntoValue for String {
    fn into_value(self) -> Value {
        Value::Bytes(self.into_bytes())
    }
}
impl IntoValue for &[u8] {
    fn into_value(self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
impl IntoValue for Vec<u8> {
    fn into_value(self) -> Value {
        Value::Bytes(self)
    }
}
impl IntoValue for Value {
    fn into_value(self) -> Value {
        self
    }
}
impl FromValue for Vec<u8> {
    const SHAPE: Shape = Shape::Bytes;
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Bytes(bytes) => Ok(bytes),
            other => Err(format!("returns {}, not bytes", kind(&other))),
        }
    }
}
impl FromValue for String {
    const SHAPE: Shape = Shape::Bytes;
    fn from_value(value: Value) -> Result<Self, String> {
        String::from_utf8(Vec::<u8>::from_value(value)?)
            .map_err(|_| "returned bytes that are not UTF-8".to_owned())
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::I32(_) => "i32",
        Value::I64(_) => "i64",
        Value::F32(_) => "f32",
        Value::F64(_) => "f64",
        Value::Bytes(_) => "bytes",
    }
}

/// The arguments of a typed call: `()`, one argument, or a tuple of up to six.
pub trait Params {
    /// The arguments as [`Value`]s.
    fn into_values(self) -> Vec<Value>;
}

/// The results of a typed call: `()`, one result, or a tuple of up to four.
pub trait Results: Sized {
    /// How each result comes back.
    fn shapes() -> Vec<Shape>;
    /// Converts the lifted values (as many as [`Results::shapes`]).
    fn from_values(values: Vec<Value>) -> Result<Self, String>;
}

impl Params for () {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}
impl<T: IntoValue> Params for T {
    fn into_values(self) -> Vec<Value> {
        vec![self.into_value()]
    }
}
impl Results for () {
    fn shapes() -> Vec<Shape> {
        Vec::new()
    }
    fn from_values(_: Vec<Value>) -> Result<Self, String> {
        Ok(())
    }
}
impl<T: FromValue> Results for T {
    fn shapes() -> Vec<Shape> {
        vec![T::SHAPE]
    }
    fn from_values(values: Vec<Value>) -> Result<Self, String> {
        let mut values = values.into_iter();
        T::from_value(values.next().ok_or("returns nothing")?)
    }
}

macro_rules! tuples {
    ($(($($t:ident),+)),* $(,)?) => {$(
        #[allow(non_snake_case)]
        impl<$($t: IntoValue),+> Params for ($($t,)+) {
            fn into_values(self) -> Vec<Value> {
                let ($($t,)+) = self;
                vec![$($t.into_value()),+]
            }
        }
    )*};
}
tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F)
);

macro_rules! result_tuples {
    ($(($($t:ident),+)),* $(,)?) => {$(
        #[allow(non_snake_case)]
        impl<$($t: FromValue),+> Results for ($($t,)+) {
            fn shapes() -> Vec<Shape> {
                vec![$($t::SHAPE),+]
            }
            fn from_values(values: Vec<Value>) -> Result<Self, String> {
                let mut values = values.into_iter();
                Ok(($($t::from_value(values.next().ok_or("returns too few values")?)?,)+))
            }
        }
    )*};
}
result_tuples!((A, B), (A, B, C), (A, B, C, D));

/// An instance of a program with its own memory, kept across calls.
///
/// [`Program::instantiate`] makes one; a fresh instance per call is what [`Program::call`]
/// and [`Program::call_wapc`] do. After a call that traps or times out the instance refuses
/// further calls ([`CallError::Poisoned`]).
pub struct Instance {
    store: Store<GuestCtx>,
    instance: wasmtime::Instance,
    program: Program,
    timeout: std::time::Duration,
    poisoned: Option<Fault>,
}

impl Program {
    /// Creates an instance, and initializes it as its ABI asks: `_initialize` (WASI reactors);
    /// for waPC also `_start` (a waPC module built as a command) and `wapc_init`; each if
    /// exported. A command's `_start` is its whole program, so other ABIs never run it here.
    pub async fn instantiate(&self, options: &CallOptions) -> Result<Instance, CallError> {
        let limits = &options.limits;
        let log = CappedPipe::new(limits.stderr_bytes(), Overflow::Truncate);
        // Guests built for WASI may print; both streams go to the log. No environment, no
        // arguments, and only the granted directories.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(log.clone()).stderr(log.clone());
        options.preopen(&mut wasi).map_err(CallError::Fault)?;
        let mut ctx = GuestCtx::new(wasi.build_p1(), limits, log);
        ctx.host = options.host.clone();
        let pre = self
            .pre()
            .map_err(|why| CallError::Unsupported(why.into()))?;
        let mut store = store(pre.module().engine(), ctx);
        let deadline = store.data().deadline;
        let instance = match within(deadline, pre.instantiate_async(&mut store)).await {
            Ok(instance) => instance,
            Err(e) => return Err(CallError::Fault(store.data().fault(&e))),
        };
        let mut instance = Instance {
            store,
            instance,
            program: self.clone(),
            timeout: limits.timeout,
            poisoned: None,
        };
        let inits: &[&str] = match instance.abi() {
            Abi::Wapc => &["_initialize", "_start", "wapc_init"],
            Abi::Cgi | Abi::Exports | Abi::Service | Abi::Http => &["_initialize"],
        };
        for &init in inits {
            if let Some(func) = instance.func(init) {
                let deadline = instance.begin()?;
                let result =
                    within(deadline, func.call_async(&mut instance.store, &[], &mut [])).await;
                match result {
                    Err(e) if e.downcast_ref::<I32Exit>().is_some_and(|exit| exit.0 == 0) => {}
                    result => instance.finish(result)?,
                }
            }
        }
        Ok(instance)
    }

    /// Calls a plain export in a fresh instance, with typed arguments and results.
    ///
    /// ```no_run
    /// # async fn demo(program: wafer_runtime::Program) -> Result<(), wafer_runtime::CallError> {
    /// use wafer_runtime::CallOptions;
    /// let sum: i32 = program.call(&CallOptions::default(), "sum", (3, 2)).await?;
    /// let greeting: String = program.call(&CallOptions::default(), "greet", "world").await?;
    /// # Ok(()) }
    /// ```
    pub async fn call<P: Params, R: Results>(
        &self,
        options: &CallOptions,
        name: &str,
        args: P,
    ) -> Result<R, CallError> {
        self.instantiate(options).await?.call(name, args).await
    }

    /// The parameter and result types of an export, or an error listing the exports there
    /// are.
    pub fn export_type(&self, name: &str) -> Result<Signature, CallError> {
        let module = self
            .pre()
            .map_err(|why| CallError::Unsupported(why.into()))?
            .module();
        match module.get_export(name) {
            Some(ExternType::Func(ty)) => Ok(Signature {
                params: ty.params().map(|t| ValueType::of(&t)).collect(),
                results: ty.results().map(|t| ValueType::of(&t)).collect(),
            }),
            _ => Err(no_export(module, name)),
        }
    }

    /// Calls a waPC operation in a fresh instance.
    pub async fn call_wapc(
        &self,
        options: &CallOptions,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        self.instantiate(options)
            .await?
            .call_wapc(operation, payload)
            .await
    }
}

/// The operation Wafer calls to learn how a waPC guest words "no such operation": no guest
/// has a handler for it.
const PROBE_OPERATION: &str = "wafer.no-such-operation.7f3a9c";

impl Program {
    /// Whether `message`, the error a waPC guest returned for `operation`, is the guest's
    /// way of saying it has no such operation.
    ///
    /// Every waPC SDK words this differently (`No handler registered for function ...`,
    /// `Could not find function "..."`, ...), so Wafer asks the guest itself: once per
    /// program it calls an operation that cannot exist, in a fresh instance without host
    /// calls, and keeps the error with the operation's name cut out. An error that reads the
    /// same with `operation` in that place means "unknown operation". A guest that answers
    /// the probe, or fails it some other way, never has unknown operations.
    async fn is_unknown_operation(&self, operation: &str, message: &str, limits: &Limits) -> bool {
        if !message.contains(operation) {
            return false;
        }
        let wording = self
            .unknown
            .get_or_init(|| async {
                let options = CallOptions {
                    limits: *limits,
                    ..CallOptions::default()
                };
                let mut probe = self.instantiate(&options).await.ok()?;
                match probe.guest_call(PROBE_OPERATION, b"").await {
                    Err(CallError::Guest(said)) => {
                        let (before, after) = said.split_once(PROBE_OPERATION)?;
                        Some((before.to_owned(), after.to_owned()))
                    }
                    _ => None,
                }
            })
            .await;
        wording.as_ref().is_some_and(|(before, after)| {
            message
                .strip_prefix(before.as_str())
                .and_then(|rest| rest.strip_suffix(after.as_str()))
                == Some(operation)
        })
    }
}

impl Instance {
    /// The ABI of the program this is an instance of.
    pub fn abi(&self) -> Abi {
        self.program.abi()
    }

    /// Takes the log lines written so far: stderr, stdout (outside CGI) and log imports.
    pub fn take_log(&mut self) -> Bytes {
        self.store.data().log.take()
    }

    /// Whether log output went past the stderr limit and was cut.
    pub fn log_truncated(&self) -> bool {
        self.store.data().log.overflowed()
    }

    fn func(&mut self, name: &str) -> Option<Func> {
        self.instance
            .get_export(&mut self.store, name)
            .and_then(Extern::into_func)
    }

    /// Starts the clock for one call; returns its deadline, for [`within`].
    fn begin(&mut self) -> Result<Option<Instant>, CallError> {
        if let Some(fault) = &self.poisoned {
            return Err(CallError::Poisoned(fault.clone()));
        }
        let cx = self.store.data_mut();
        let deadline = Some(Instant::now() + self.timeout);
        cx.deadline = deadline;
        cx.timed_out = false;
        self.store.set_epoch_deadline(1);
        Ok(deadline)
    }

    /// The deadline of the call under way.
    fn deadline(&self) -> Option<Instant> {
        self.store.data().deadline
    }

    /// Ends one call: a failure poisons the instance.
    fn finish<T>(&mut self, result: wasmtime::Result<T>) -> Result<T, CallError> {
        result.map_err(|e| {
            let fault = self.store.data().fault(&e);
            self.poisoned = Some(fault.clone());
            CallError::Fault(fault)
        })
    }

    /// Calls a waPC operation: the guest's answer, or its error
    /// ([`CallError::UnknownOperation`] when the guest has no such operation).
    pub async fn call_wapc(
        &mut self,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        match self.guest_call(operation, payload).await {
            Err(CallError::Guest(message))
                if self
                    .program
                    .is_unknown_operation(operation, &message, &self.store.data().limits)
                    .await =>
            {
                Err(CallError::UnknownOperation(operation.to_owned()))
            }
            result => result,
        }
    }

    /// One `__guest_call`: the guest's answer, or its error as it words it.
    async fn guest_call(&mut self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        if self.abi() != Abi::Wapc {
            return Err(CallError::Unsupported(format!(
                "not a waPC module (it exports no `__guest_call`; its ABI is {})",
                self.abi()
            )));
        }
        let guest_call = self
            .func("__guest_call")
            .ok_or_else(|| CallError::Unsupported("`__guest_call` is not a function".into()))?
            .typed::<(i32, i32), i32>(&self.store)
            .map_err(|_| CallError::Signature {
                signature: "__guest_call".into(),
                problem: "must be (i32, i32) -> i32".into(),
            })?;
        let too_large = |what: &str, len: usize| {
            i32::try_from(len).map_err(|_| {
                CallError::Unsupported(format!("the {what} is too large ({len} bytes)"))
            })
        };
        let op_len = too_large("operation name", operation.len())?;
        let len = too_large("payload", payload.len())?;
        let deadline = self.begin()?;
        self.store.data_mut().wapc.start(operation, payload);
        let result = within(
            deadline,
            guest_call.call_async(&mut self.store, (op_len, len)),
        )
        .await;
        let ok = self.finish(result)?;
        let wapc = &mut self.store.data_mut().wapc;
        let (response, error) = (wapc.response.take(), wapc.error.take());
        match (ok, response, error) {
            (1, Some(response), _) => Ok(response),
            (1, None, _) => Ok(Vec::new()),
            (_, _, Some(error)) => Err(CallError::Guest(
                String::from_utf8_lossy(&error).into_owned(),
            )),
            (code, _, None) => Err(CallError::Guest(format!(
                "the guest failed (`__guest_call` returned {code}) without an error message"
            ))),
        }
    }

    /// Calls a plain export with typed arguments and results.
    pub async fn call<P: Params, R: Results>(
        &mut self,
        name: &str,
        args: P,
    ) -> Result<R, CallError> {
        let values = self
            .call_values(name, args.into_values(), &R::shapes())
            .await?;
        R::from_values(values).map_err(|problem| CallError::Signature {
            signature: self.signature(name).unwrap_or_else(|| name.to_owned()),
            problem,
        })
    }

    /// The signature of an export, as `name(i32, i32) -> i32`.
    pub fn signature(&mut self, name: &str) -> Option<String> {
        let ty = self.func(name)?.ty(&self.store);
        Some(signature(name, &ty))
    }

    /// Calls a plain export with [`Value`]s; `shapes` says how each result comes back.
    pub async fn call_values(
        &mut self,
        name: &str,
        args: Vec<Value>,
        shapes: &[Shape],
    ) -> Result<Vec<Value>, CallError> {
        let Some(func) = self.func(name) else {
            return Err(no_export(self.instance.module(&self.store), name));
        };
        let ty = func.ty(&self.store);
        let mismatch = |problem: String| CallError::Signature {
            signature: signature(name, &ty),
            problem,
        };
        // Check the whole call against the signature before touching the guest.
        let lowered: Vec<&str> = args
            .iter()
            .flat_map(|a| match a {
                Value::Bytes(_) => ["i32", "i32"].as_slice(),
                Value::I32(_) => &["i32"],
                Value::I64(_) => &["i64"],
                Value::F32(_) => &["f32"],
                Value::F64(_) => &["f64"],
            })
            .copied()
            .collect();
        let params: Vec<&str> = ty.params().map(|t| type_name(&t)).collect();
        if lowered != params {
            return Err(mismatch(format!(
                "called with ({}){}",
                lowered.join(", "),
                if args.iter().any(|a| matches!(a, Value::Bytes(_))) {
                    " (a string or bytes argument is passed as ptr: i32, len: i32)"
                } else {
                    ""
                }
            )));
        }
        let results: Vec<ValType> = ty.results().collect();
        let expected: Vec<&str> = shapes
            .iter()
            .zip(&results)
            .map(|(shape, t)| match shape {
                Shape::Bytes => "i64",
                Shape::Number => type_name(t),
            })
            .collect();
        let actual: Vec<&str> = results.iter().map(type_name).collect();
        if shapes.len() != results.len() || expected != actual {
            return Err(mismatch(format!(
                "expected to return {} value(s){}",
                shapes.len(),
                if shapes.contains(&Shape::Bytes) {
                    " (a string or bytes result is returned as (ptr << 32) | len in an i64)"
                } else {
                    ""
                }
            )));
        }

        let deadline = self.begin()?;
        let mut buffers = Vec::new();
        let mut params = Vec::with_capacity(params.len());
        for arg in args {
            match arg {
                Value::I32(v) => params.push(Val::I32(v)),
                Value::I64(v) => params.push(Val::I64(v)),
                Value::F32(v) => params.push(Val::F32(v.to_bits())),
                Value::F64(v) => params.push(Val::F64(v.to_bits())),
                Value::Bytes(bytes) => {
                    let ptr = self.pass(&bytes).await?;
                    buffers.push((ptr, bytes.len() as i32));
                    params.push(Val::I32(ptr));
                    params.push(Val::I32(bytes.len() as i32));
                }
            }
        }
        let mut returned = vec![Val::I32(0); results.len()];
        let result = within(
            deadline,
            func.call_async(&mut self.store, &params, &mut returned),
        )
        .await;
        self.finish(result)?;
        for (ptr, len) in buffers {
            self.free(ptr, len).await?;
        }
        let mut values = Vec::with_capacity(returned.len());
        for (val, shape) in returned.into_iter().zip(shapes) {
            values.push(match (shape, val) {
                (Shape::Bytes, Val::I64(packed)) => Value::Bytes(self.take(packed).await?),
                (_, Val::I32(v)) => Value::I32(v),
                (_, Val::I64(v)) => Value::I64(v),
                (_, Val::F32(v)) => Value::F32(f32::from_bits(v)),
                (_, Val::F64(v)) => Value::F64(f64::from_bits(v)),
                (_, other) => {
                    return Err(mismatch(format!(
                        "returns a {:?}, which cannot be passed to the host",
                        other.ty(&self.store)
                    )))
                }
            });
        }
        Ok(values)
    }

    fn memory(&mut self) -> Result<wasmtime::Memory, CallError> {
        self.instance
            .get_memory(&mut self.store, "memory")
            .ok_or_else(|| {
                CallError::Unsupported(
                    "the module exports no `memory`, so strings and bytes cannot be passed".into(),
                )
            })
    }

    /// Copies `bytes` into a buffer from the guest's `allocate`.
    async fn pass(&mut self, bytes: &[u8]) -> Result<i32, CallError> {
        let allocate = self
            .func("allocate")
            .and_then(|f| f.typed::<i32, i32>(&self.store).ok())
            .ok_or_else(|| {
                CallError::Unsupported(
                    "passing a string or bytes needs an exported `allocate(len: i32) -> i32`"
                        .into(),
                )
            })?;
        let len = i32::try_from(bytes.len()).map_err(|_| {
            CallError::Unsupported(format!("an argument of {} bytes is too large", bytes.len()))
        })?;
        let result = within(self.deadline(), allocate.call_async(&mut self.store, len)).await;
        let ptr = self.finish(result)?;
        let memory = self.memory()?;
        let start = ptr as u32 as usize;
        memory
            .data_mut(&mut self.store)
            .get_mut(start..start + bytes.len())
            .ok_or_else(|| {
                CallError::Fault(Fault::Trap(format!(
                    "`allocate({len})` returned {start}, out of bounds"
                )))
            })?
            .copy_from_slice(bytes);
        Ok(ptr)
    }

    /// Frees a buffer with the guest's `deallocate`, if it has one.
    async fn free(&mut self, ptr: i32, len: i32) -> Result<(), CallError> {
        if let Some(deallocate) = self
            .func("deallocate")
            .and_then(|f| f.typed::<(i32, i32), ()>(&self.store).ok())
        {
            let result = within(
                self.deadline(),
                deallocate.call_async(&mut self.store, (ptr, len)),
            )
            .await;
            self.finish(result)?;
        }
        Ok(())
    }

    /// Copies out, then frees, a buffer returned as `(ptr << 32) | len`.
    async fn take(&mut self, packed: i64) -> Result<Vec<u8>, CallError> {
        let (ptr, len) = ((packed as u64 >> 32) as u32, packed as u32);
        if len as usize > self.store.data().response_limit {
            let limit = self.store.data().limits.stdout;
            return Err(CallError::Fault(Fault::OutputTooLarge(limit)));
        }
        let memory = self.memory()?;
        let start = ptr as usize;
        let bytes = memory
            .data(&self.store)
            .get(start..start + len as usize)
            .ok_or_else(|| {
                CallError::Fault(Fault::Trap(format!(
                    "returned a buffer of {len} bytes at {start}, out of bounds"
                )))
            })?
            .to_vec();
        self.free(ptr as i32, len as i32).await?;
        Ok(bytes)
    }
}

/// The error for a missing export, naming the functions the module does export.
fn no_export(module: &Module, name: &str) -> CallError {
    let names: Vec<&str> = module
        .exports()
        .filter(|e| matches!(e.ty(), ExternType::Func(_)))
        .map(|e| e.name())
        .collect();
    CallError::NoExport {
        name: name.to_owned(),
        exports: if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        },
    }
}

fn type_name(ty: &ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}

/// `name(i32, i32) -> i32`
pub(crate) fn signature(name: &str, ty: &FuncType) -> String {
    let params: Vec<&str> = ty.params().map(|t| type_name(&t)).collect();
    let results: Vec<&str> = ty.results().map(|t| type_name(&t)).collect();
    let mut text = format!("{name}({})", params.join(", "));
    match results.len() {
        0 => {}
        1 => text.push_str(&format!(" -> {}", results[0])),
        _ => text.push_str(&format!(" -> ({})", results.join(", "))),
    }
    text
}
