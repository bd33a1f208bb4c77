//! The plain-exports ABI: a module called by its exports' names, with typed arguments and
//! results.
//!
//! Plain exports take and return numbers (`i32`, `i64`, `f32`, `f64`) directly. Strings and
//! byte arrays cross through the guest's allocator:
//! - an argument is copied into a buffer the host gets from the guest's
//!   `allocate(len: i32) -> i32`, and passed as two `i32` parameters, pointer then length; the
//!   host frees it with `deallocate(ptr: i32, len: i32)` after the call returns;
//! - a result is returned as one `i64`, `(ptr << 32) | len`, of a buffer the guest allocated;
//!   the host copies it, then frees it with `deallocate(ptr, len)`.

use wasmtime::{ExternType, Module, Val, ValType};

use crate::error::{CallError, Fault};
use crate::guest::{function_names, signature, type_name, Instance};
use crate::sandbox::within;

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

impl Instance {
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
            // A call with far too many arguments is named by its count, not listed whole.
            let shown = params.len() + 1;
            let listed = match lowered.get(..shown) {
                Some(first) if lowered.len() > shown => {
                    format!("{}, ... {} in all", first.join(", "), lowered.len())
                }
                _ => lowered.join(", "),
            };
            return Err(mismatch(format!(
                "called with ({listed}){}",
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

/// The parameter and result types of `module`'s export `name`, or an error listing the
/// exports there are.
pub(crate) fn export_type(module: &Module, name: &str) -> Result<Signature, CallError> {
    match module.get_export(name) {
        Some(ExternType::Func(ty)) => Ok(Signature {
            params: ty.params().map(|t| ValueType::of(&t)).collect(),
            results: ty.results().map(|t| ValueType::of(&t)).collect(),
        }),
        _ => Err(no_export(module, name)),
    }
}

/// The error for a missing export, naming the functions the module does export.
fn no_export(module: &Module, name: &str) -> CallError {
    CallError::NoExport {
        name: name.to_owned(),
        exports: function_names(module),
    }
}
