//! Typed calls of a component's exported functions: arguments and results as JSON,
//! converted by the function's own WIT types (strings, numbers, lists, records, variants,
//! enums, options, results, flags, tuples).
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool` | `true` / `false` |
//! | integers, `f32`, `f64` | numbers (`s64`/`u64` also as strings of digits) |
//! | `char`, `string` | strings (a `char` is one character) |
//! | `list<T>`, `tuple<...>` | arrays |
//! | `record { a: T, ... }` | objects with every field: `{"a": ...}` |
//! | `variant { c(T), d }` | `{"c": ...}` for a case with a payload, `"d"` without |
//! | `enum { x, y }` | `"x"` |
//! | `option<T>` | `null` or the value |
//! | `result<T, E>` | `{"ok": ...}` or `{"err": ...}` (`null` for no payload) |
//! | `flags { a, b }` | `["a", "b"]` |
//!
//! Resources, futures and streams cannot cross as JSON; a function that takes one is refused.

use serde_json::{json, Map, Value as Json};
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{ComponentExportIndex, InstancePre, Val};
use wasmtime::Engine;

use crate::component::{fault, new_store, HttpCtx, HttpOptions};
use crate::error::{CallError, Fault};
use crate::interfaces::CAPABILITY_PACKAGES;
use crate::ticker::Running;
use bytes::Bytes;

/// A component's exported functions, callable with JSON arguments.
#[derive(Clone)]
pub struct ComponentFunctions {
    pre: InstancePre<HttpCtx>,
    /// Whether it imports a capability interface.
    capabilities: bool,
}

/// What a typed call of a component function produced.
#[derive(Debug, Clone)]
pub struct Called {
    /// The result as JSON (`null` for a function without one), or why there is none.
    pub result: Result<Json, CallError>,
    /// stdout and stderr.
    pub log: Bytes,
    /// Whether the log went past its limit and was cut.
    pub log_truncated: bool,
}

/// The exports that belong to the HTTP and command worlds, not called by name.
fn is_world_export(name: &str) -> bool {
    name.starts_with("wasi:http/incoming-handler")
        || name.starts_with("wasi:http/handler")
        || name.starts_with("wasi:cli/run")
}

impl ComponentFunctions {
    pub(crate) fn new(pre: InstancePre<HttpCtx>) -> Self {
        let mut functions = Self {
            pre,
            capabilities: false,
        };
        functions.capabilities = functions
            .imports()
            .iter()
            .any(|name| CAPABILITY_PACKAGES.iter().any(|p| name.starts_with(p)));
        functions
    }

    /// The interfaces the component imports, as `package/interface@version`.
    pub fn imports(&self) -> Vec<String> {
        self.pre
            .component()
            .component_type()
            .imports(self.engine())
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// Whether the component imports any capability interface (`wasi:keyvalue`, `wasi:config`,
    /// `wasi:logging`, `wafer:pubsub`), and so needs a host for its calls.
    pub fn uses_capabilities(&self) -> bool {
        self.capabilities
    }

    /// Whether the component exports the interface `name` (`package/interface@version`).
    pub fn exports_interface(&self, name: &str) -> bool {
        self.pre.component().get_export_index(None, name).is_some()
    }

    pub(crate) fn engine(&self) -> &Engine {
        self.pre.engine()
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<HttpCtx> {
        &self.pre
    }

    /// Every function the component exports, with its signature:
    /// `("wafer:shapes/shapes#area", "func(shape: variant {...}) -> f64")`, or `("hello", ...)`
    /// for a function exported by the world itself.
    pub fn functions(&self) -> Vec<(String, String)> {
        let engine = self.engine();
        let mut functions = Vec::new();
        for (name, item) in self.pre.component().component_type().exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    functions.push((name.to_owned(), signature(&func)))
                }
                ComponentItem::ComponentInstance(instance) if !is_world_export(name) => {
                    for (func_name, item) in instance.exports(engine) {
                        if let ComponentItem::ComponentFunc(func) = item.ty {
                            functions.push((format!("{name}#{func_name}"), signature(&func)));
                        }
                    }
                }
                _ => {}
            }
        }
        functions
    }

    /// Whether the component exports any function to call by name.
    pub fn is_empty(&self) -> bool {
        self.functions().is_empty()
    }

    /// Finds `name` (`pkg:iface/iface#func`, the version optional, or a world-level `func`):
    /// its export index and type.
    fn find(&self, name: &str) -> Result<(ComponentExportIndex, ComponentFunc), CallError> {
        let component = self.pre.component();
        let engine = self.engine();
        let unknown = || CallError::NoExport {
            name: name.to_owned(),
            exports: {
                let names: Vec<String> = self.functions().into_iter().map(|(n, _)| n).collect();
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            },
        };
        let (interface, func) = match name.rsplit_once('#') {
            Some((interface, func)) => (Some(interface), func),
            None => (None, name),
        };
        let parent = match interface {
            None => None,
            Some(interface) => {
                let ty = component.component_type();
                let full = ty
                    .exports(engine)
                    .map(|(export, _)| export)
                    .find(|export| {
                        *export == interface || export.split('@').next() == Some(interface)
                    })
                    .ok_or_else(unknown)?;
                Some(component.get_export_index(None, full).ok_or_else(unknown)?)
            }
        };
        let (item, index) = component
            .get_export(parent.as_ref(), func)
            .ok_or_else(unknown)?;
        match item {
            ComponentItem::ComponentFunc(ty) => Ok((index, ty)),
            _ => Err(unknown()),
        }
    }

    /// The signature of function `name`.
    pub fn signature(&self, name: &str) -> Result<String, CallError> {
        self.find(name).map(|(_, ty)| signature(&ty))
    }

    /// Calls function `name` in a fresh instance, within the options' limits. `args` is a
    /// JSON array of the arguments in order, or an object of them by parameter name; every
    /// argument is checked against its type before the instance is created.
    ///
    /// The result, written as compact JSON text, may take at most the `stdout` limit
    /// ([`Limits::stdout`](crate::Limits::stdout), 16 MiB by default); a larger one fails the
    /// call with [`Fault::OutputTooLarge`], counted while it is converted, so no more than
    /// the limit's worth is ever built.
    pub async fn call(&self, options: &HttpOptions, name: &str, args: &Json) -> Called {
        let failed = |e| Called {
            result: Err(e),
            log: Bytes::new(),
            log_truncated: false,
        };
        let (index, ty) = match self.find(name) {
            Ok(found) => found,
            Err(e) => return failed(e),
        };
        let params = match arguments(name, &ty, args) {
            Ok(params) => params,
            Err(problem) => {
                return failed(CallError::Signature {
                    signature: format!("{name}: {}", signature(&ty)),
                    problem,
                })
            }
        };
        let limits = options.limits;
        let mut store = match new_store(self.engine(), options) {
            Ok(store) => store,
            Err(fault) => return failed(CallError::Fault(fault)),
        };
        store.set_epoch_deadline(1);
        let mut results = vec![Val::Bool(false); ty.results().len()];
        let run = async {
            let instance = crate::trace::instantiated!(self.pre.instantiate_async(&mut store))?;
            let func = instance
                .get_func(&mut store, index)
                .ok_or_else(|| wasmtime::format_err!("`{name}` is not a function"))?;
            func.call_async(&mut store, &params, &mut results).await
        };
        let running = Running::start();
        let outcome = match tokio::time::timeout(limits.timeout, run).await {
            Ok(Ok(())) => results_to_json(&results, limits.stdout_bytes())
                .map_err(|TooLarge| CallError::Fault(Fault::OutputTooLarge(limits.stdout))),
            Ok(Err(e)) => Err(CallError::Fault(fault(store.data(), &e, &limits))),
            Err(_) => Err(CallError::Fault(Fault::Timeout(limits.timeout))),
        };
        drop(running);
        let (log, log_truncated) = store.data().log().drain();
        Called {
            result: outcome,
            log,
            log_truncated,
        }
    }
}

/// One call of a host function given as a JSON closure ([`Runtime::component_func`]
/// (crate::Runtime::component_func)): the arguments to JSON, the answer back by the result
/// type.
pub(crate) fn host_call(
    label: &str,
    func: &(impl Fn(Json) -> Result<Json, String> + ?Sized),
    ty: &ComponentFunc,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let args = Json::Array(params.iter().map(to_json).collect());
    let answer = func(args).map_err(|e| wasmtime::format_err!("{label}: {e}"))?;
    let types: Vec<Type> = ty.results().collect();
    match (types.as_slice(), results) {
        ([], []) => Ok(()),
        ([ty], [slot]) => {
            *slot = to_val(ty, &answer)
                .map_err(|why| wasmtime::format_err!("{label} answered badly: {why}"))?;
            Ok(())
        }
        _ => wasmtime::bail!("{label}: a function of several results is not supported"),
    }
}

/// `func(a: T, b: U) -> R`
fn signature(func: &ComponentFunc) -> String {
    let params: Vec<String> = func
        .params()
        .map(|(name, ty)| format!("{name}: {}", type_name(&ty)))
        .collect();
    let results: Vec<String> = func.results().map(|ty| type_name(&ty)).collect();
    match results.as_slice() {
        [] => format!("func({})", params.join(", ")),
        [one] => format!("func({}) -> {one}", params.join(", ")),
        many => format!("func({}) -> ({})", params.join(", "), many.join(", ")),
    }
}

/// A type as WIT writes it, spelled out for records, variants, enums and flags.
pub(crate) fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", type_name(&list.ty())),
        Type::FixedLengthList(list) => format!("list<{}, {}>", type_name(&list.ty()), list.len()),
        Type::Map(map) => format!(
            "map<{}, {}>",
            type_name(&map.key()),
            type_name(&map.value())
        ),
        Type::Record(record) => {
            let fields: Vec<String> = record
                .fields()
                .map(|f| format!("{}: {}", f.name, type_name(&f.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        Type::Tuple(tuple) => {
            let types: Vec<String> = tuple.types().map(|t| type_name(&t)).collect();
            format!("tuple<{}>", types.join(", "))
        }
        Type::Variant(variant) => {
            let cases: Vec<String> = variant
                .cases()
                .map(|c| match c.ty {
                    Some(ty) => format!("{}({})", c.name, type_name(&ty)),
                    None => c.name.to_owned(),
                })
                .collect();
            format!("variant {{ {} }}", cases.join(", "))
        }
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Option(option) => format!("option<{}>", type_name(&option.ty())),
        Type::Result(result) => {
            let side = |t: Option<Type>| t.map_or("_".to_owned(), |t| type_name(&t));
            format!("result<{}, {}>", side(result.ok()), side(result.err()))
        }
        Type::Flags(flags) => format!(
            "flags {{ {} }}",
            flags.names().collect::<Vec<_>>().join(", ")
        ),
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        Type::Future(_) => "future".into(),
        Type::Stream(_) => "stream".into(),
        Type::ErrorContext => "error-context".into(),
    }
}

/// The call's arguments, from a JSON array (in order) or object (by name).
fn arguments(name: &str, func: &ComponentFunc, args: &Json) -> Result<Vec<Val>, String> {
    let params: Vec<(&str, Type)> = func.params().collect();
    let given: Vec<&Json> = match args {
        Json::Array(items) => {
            if items.len() != params.len() {
                return Err(format!(
                    "takes {} argument(s), called with {}",
                    params.len(),
                    items.len()
                ));
            }
            items.iter().collect()
        }
        Json::Object(fields) => {
            if let Some(extra) = fields.keys().find(|k| !params.iter().any(|(p, _)| p == k)) {
                return Err(format!("`{name}` has no parameter `{extra}`"));
            }
            let mut given = Vec::with_capacity(params.len());
            for (param, _) in &params {
                given.push(
                    fields
                        .get(*param)
                        .ok_or_else(|| format!("argument `{param}` is missing"))?,
                );
            }
            given
        }
        Json::Null if params.is_empty() => Vec::new(),
        other => {
            return Err(format!(
                "arguments are a JSON array (in order) or object (by name), not {}",
                kind(other)
            ))
        }
    };
    params
        .iter()
        .zip(given)
        .map(|((param, ty), json)| {
            to_val(ty, json).map_err(|why| format!("argument `{param}`: {why}"))
        })
        .collect()
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// `json` as a value of `ty`, or what does not fit.
fn to_val(ty: &Type, json: &Json) -> Result<Val, String> {
    let expected = || format!("expected {}, got {json}", type_name(ty));
    macro_rules! int {
        ($variant:ident, $t:ty) => {{
            let n = match json {
                Json::Number(n) => n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from)),
                Json::String(s) => s.parse::<i128>().ok(),
                _ => None,
            };
            n.and_then(|n| <$t>::try_from(n).ok())
                .map(Val::$variant)
                .ok_or_else(expected)
        }};
    }
    match ty {
        Type::Bool => json.as_bool().map(Val::Bool).ok_or_else(expected),
        Type::S8 => int!(S8, i8),
        Type::U8 => int!(U8, u8),
        Type::S16 => int!(S16, i16),
        Type::U16 => int!(U16, u16),
        Type::S32 => int!(S32, i32),
        Type::U32 => int!(U32, u32),
        Type::S64 => int!(S64, i64),
        Type::U64 => int!(U64, u64),
        Type::Float32 => json
            .as_f64()
            .map(|f| Val::Float32(f as f32))
            .ok_or_else(expected),
        Type::Float64 => json.as_f64().map(Val::Float64).ok_or_else(expected),
        Type::Char => {
            let text = json.as_str().ok_or_else(expected)?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Val::Char(c)),
                _ => Err(expected()),
            }
        }
        Type::String => json
            .as_str()
            .map(|s| Val::String(s.to_owned()))
            .ok_or_else(expected),
        Type::List(list) => {
            let items = json.as_array().ok_or_else(expected)?;
            elements(&list.ty(), items).map(Val::List)
        }
        Type::FixedLengthList(list) => {
            let items = json.as_array().ok_or_else(expected)?;
            if items.len() != list.len() as usize {
                return Err(expected());
            }
            elements(&list.ty(), items).map(Val::FixedLengthList)
        }
        Type::Map(map) => {
            let pairs = json.as_array().ok_or_else(expected)?;
            let (key, value) = (map.key(), map.value());
            pairs
                .iter()
                .map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => Ok((to_val(&key, k)?, to_val(&value, v)?)),
                    _ => Err(format!("expected [key, value] pairs, got {pair}")),
                })
                .collect::<Result<_, _>>()
                .map(Val::Map)
        }
        Type::Record(record) => {
            let fields = json.as_object().ok_or_else(expected)?;
            if let Some(extra) = fields
                .keys()
                .find(|k| !record.fields().any(|f| f.name == k.as_str()))
            {
                return Err(format!("{} has no field `{extra}`", type_name(ty)));
            }
            record
                .fields()
                .map(|field| {
                    let value = fields.get(field.name).ok_or_else(|| {
                        format!("field `{}` is missing ({})", field.name, type_name(ty))
                    })?;
                    let val = to_val(&field.ty, value)
                        .map_err(|why| format!("field `{}`: {why}", field.name))?;
                    Ok((field.name.to_owned(), val))
                })
                .collect::<Result<_, String>>()
                .map(Val::Record)
        }
        Type::Tuple(tuple) => {
            let items = json.as_array().ok_or_else(expected)?;
            if items.len() != tuple.types().len() {
                return Err(expected());
            }
            tuple
                .types()
                .zip(items)
                .enumerate()
                .map(|(i, (t, item))| to_val(&t, item).map_err(|why| format!("[{i}]: {why}")))
                .collect::<Result<_, _>>()
                .map(Val::Tuple)
        }
        Type::Variant(variant) => {
            let (case, payload) = match json {
                Json::String(case) => (case.as_str(), None),
                Json::Object(map) if map.len() == 1 => {
                    let (case, payload) = map.iter().next().ok_or_else(expected)?;
                    (case.as_str(), Some(payload))
                }
                _ => return Err(expected()),
            };
            let found = variant.cases().find(|c| c.name == case).ok_or_else(|| {
                let cases: Vec<&str> = variant.cases().map(|c| c.name).collect();
                format!("no case `{case}` (the cases are {})", cases.join(", "))
            })?;
            let payload = match (found.ty, payload) {
                (None, None) | (None, Some(Json::Null)) => None,
                (Some(t), Some(payload)) => Some(Box::new(
                    to_val(&t, payload).map_err(|why| format!("case `{case}`: {why}"))?,
                )),
                (Some(t), None) => {
                    return Err(format!(
                        "case `{case}` carries a {}: write {{\"{case}\": ...}}",
                        type_name(&t)
                    ))
                }
                (None, Some(_)) => {
                    return Err(format!("case `{case}` carries nothing: write \"{case}\""))
                }
            };
            Ok(Val::Variant(case.to_owned(), payload))
        }
        Type::Enum(e) => {
            let name = json.as_str().ok_or_else(expected)?;
            match e.names().any(|n| n == name) {
                true => Ok(Val::Enum(name.to_owned())),
                false => Err(format!(
                    "expected one of {}, got {json}",
                    e.names().collect::<Vec<_>>().join(", ")
                )),
            }
        }
        Type::Option(option) => match json {
            Json::Null => Ok(Val::Option(None)),
            value => Ok(Val::Option(Some(Box::new(to_val(&option.ty(), value)?)))),
        },
        Type::Result(result) => {
            let object = json
                .as_object()
                .filter(|o| o.len() == 1)
                .ok_or_else(expected)?;
            let side = |t: Option<Type>, value: &Json| -> Result<Option<Box<Val>>, String> {
                match (t, value) {
                    (None, Json::Null) => Ok(None),
                    (None, other) => Err(format!("expected null, got {other}")),
                    (Some(t), value) => Ok(Some(Box::new(to_val(&t, value)?))),
                }
            };
            match (object.get("ok"), object.get("err")) {
                (Some(ok), None) => Ok(Val::Result(Ok(side(result.ok(), ok)?))),
                (None, Some(err)) => Ok(Val::Result(Err(side(result.err(), err)?))),
                _ => Err(expected()),
            }
        }
        Type::Flags(flags) => {
            let items = json.as_array().ok_or_else(expected)?;
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                let name = item.as_str().ok_or_else(expected)?;
                if !flags.names().any(|n| n == name) {
                    let names: Vec<&str> = flags.names().collect();
                    return Err(format!(
                        "no flag `{name}` (the flags are {})",
                        names.join(", ")
                    ));
                }
                set.push(name.to_owned());
            }
            Ok(Val::Flags(set))
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Err(format!("a {} cannot be passed as JSON", type_name(ty)))
        }
    }
}

/// Each of `items` as a value of `ty`; an error says which.
fn elements(ty: &Type, items: &[Json]) -> Result<Vec<Val>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| to_val(ty, item).map_err(|why| format!("[{i}]: {why}")))
        .collect()
}

/// A result past its limit as JSON text.
#[derive(Debug)]
struct TooLarge;

/// Bytes of JSON text still allowed for a result.
struct TextBudget(usize);

impl TextBudget {
    fn spend(&mut self, bytes: usize) -> Result<(), TooLarge> {
        self.0 = self.0.checked_sub(bytes).ok_or(TooLarge)?;
        Ok(())
    }

    /// Spends the length of `json` (a number, string or other leaf) as compact text.
    fn leaf(&mut self, json: Json) -> Result<Json, TooLarge> {
        self.spend(text_len(&json))?;
        Ok(json)
    }

    /// Spends the length of `text` as a JSON string, quotes and escapes included.
    fn string(&mut self, text: &str) -> Result<(), TooLarge> {
        let mut counter = Counter(0);
        // A `Counter` never fails, so neither does writing to it.
        let _ = serde_json::to_writer(&mut counter, text);
        self.spend(counter.0)
    }

    /// Spends the length of `key` as an object's key, with its quotes and colon.
    fn key(&mut self, key: &str) -> Result<(), TooLarge> {
        self.string(key)?;
        self.spend(1)
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `json` as compact text (as `Display` writes it), without writing it out.
fn text_len(json: &Json) -> usize {
    let mut counter = Counter(0);
    // A `Counter` never fails, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut counter, json);
    counter.0
}

/// A call's results as JSON (`null` for none, one as is, several as an array), within
/// `limit` bytes of compact JSON text.
fn results_to_json(results: &[Val], limit: usize) -> Result<Json, TooLarge> {
    let mut budget = TextBudget(limit);
    match results {
        [] => budget.leaf(Json::Null),
        [one] => to_json_within(one, &mut budget),
        many => array_within(many.iter(), &mut budget),
    }
}

/// `items` as a JSON array within the budget: its brackets, commas and items.
fn array_within<'a>(
    items: impl ExactSizeIterator<Item = &'a Val>,
    budget: &mut TextBudget,
) -> Result<Json, TooLarge> {
    budget.spend(2 + items.len().saturating_sub(1))?;
    // Not `with_capacity(items.len())`: the budget, not the guest's count, bounds what is
    // built.
    let mut array = Vec::new();
    for item in items {
        array.push(to_json_within(item, budget)?);
    }
    Ok(Json::Array(array))
}

/// `fields` as a JSON object within the budget: its braces, commas, keys and values.
fn object_within<'a>(
    fields: impl ExactSizeIterator<Item = (&'a str, Option<&'a Val>)>,
    budget: &mut TextBudget,
) -> Result<Json, TooLarge> {
    budget.spend(2 + fields.len().saturating_sub(1))?;
    let mut object = Map::new();
    for (name, value) in fields {
        budget.key(name)?;
        let value = match value {
            Some(value) => to_json_within(value, budget)?,
            None => budget.leaf(Json::Null)?,
        };
        object.insert(name.to_owned(), value);
    }
    Ok(Json::Object(object))
}

/// A value as JSON, as [`to_json`] writes it, spending its length as compact text from the
/// budget as it goes.
fn to_json_within(val: &Val, budget: &mut TextBudget) -> Result<Json, TooLarge> {
    match val {
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            array_within(items.iter(), budget)
        }
        Val::Map(pairs) => {
            budget.spend(2 + pairs.len().saturating_sub(1))?;
            let mut array = Vec::new();
            for (k, v) in pairs {
                budget.spend(3)?;
                let pair = vec![to_json_within(k, budget)?, to_json_within(v, budget)?];
                array.push(Json::Array(pair));
            }
            Ok(Json::Array(array))
        }
        Val::Record(fields) => object_within(
            fields
                .iter()
                .map(|(name, value)| (name.as_str(), Some(value))),
            budget,
        ),
        Val::Variant(case, Some(payload)) => {
            object_within(std::iter::once((case.as_str(), Some(&**payload))), budget)
        }
        Val::Option(Some(value)) => to_json_within(value, budget),
        Val::Result(Ok(value)) => object_within(std::iter::once(("ok", value.as_deref())), budget),
        Val::Result(Err(value)) => {
            object_within(std::iter::once(("err", value.as_deref())), budget)
        }
        Val::Flags(names) => {
            budget.spend(2 + names.len().saturating_sub(1))?;
            let mut array = Vec::new();
            for name in names {
                array.push(budget.leaf(json!(name))?);
            }
            Ok(Json::Array(array))
        }
        // Counted before it is copied.
        Val::String(text) => {
            budget.string(text)?;
            Ok(Json::String(text.clone()))
        }
        // Scalars, cases without payload, enums, `none`, and what cannot cross.
        leaf => budget.leaf(to_json(leaf)),
    }
}

/// A value as JSON, as [`to_val`] reads it.
fn to_json(val: &Val) -> Json {
    let float = |f: f64| match serde_json::Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None => Json::String(f.to_string()),
    };
    match val {
        Val::Bool(b) => json!(b),
        Val::S8(n) => json!(n),
        Val::U8(n) => json!(n),
        Val::S16(n) => json!(n),
        Val::U16(n) => json!(n),
        Val::S32(n) => json!(n),
        Val::U32(n) => json!(n),
        Val::S64(n) => json!(n),
        Val::U64(n) => json!(n),
        Val::Float32(f) => float(f64::from(*f)),
        Val::Float64(f) => float(*f),
        Val::Char(c) => json!(c.to_string()),
        Val::String(s) => json!(s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Json::Array(items.iter().map(to_json).collect())
        }
        Val::Map(pairs) => Json::Array(
            pairs
                .iter()
                .map(|(k, v)| Json::Array(vec![to_json(k), to_json(v)]))
                .collect(),
        ),
        Val::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), to_json(value)))
                .collect::<Map<_, _>>(),
        ),
        Val::Variant(case, None) => json!(case),
        Val::Variant(case, Some(payload)) => json!({ case: to_json(payload) }),
        Val::Enum(name) => json!(name),
        Val::Option(None) => Json::Null,
        Val::Option(Some(value)) => to_json(value),
        Val::Result(Ok(value)) => json!({ "ok": value.as_deref().map_or(Json::Null, to_json) }),
        Val::Result(Err(value)) => json!({ "err": value.as_deref().map_or(Json::Null, to_json) }),
        Val::Flags(names) => json!(names),
        Val::Resource(_) => json!("<resource>"),
        Val::Future(_) => json!("<future>"),
        Val::Stream(_) => json!("<stream>"),
        Val::ErrorContext(_) => json!("<error-context>"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Values of every shape a result can take.
    fn samples() -> Vec<Val> {
        let point = |x: f64| {
            Val::Record(vec![
                ("x".into(), Val::Float64(x)),
                ("y\"q".into(), Val::Float32(0.5)),
            ])
        };
        vec![
            Val::Bool(true),
            Val::S64(i64::MIN),
            Val::U64(u64::MAX),
            Val::Float64(f64::NAN),
            Val::Float64(1.0),
            Val::Char('é'),
            Val::String("line\n\"quoted\" \u{1}".into()),
            Val::List(vec![Val::U8(0), Val::U8(255)]),
            Val::List(Vec::new()),
            Val::Tuple(vec![point(1.5), point(-2.0)]),
            Val::Map(vec![(Val::String("k".into()), Val::S32(-1))]),
            Val::Variant("circle".into(), Some(Box::new(Val::Float64(2.0)))),
            Val::Variant("dot".into(), None),
            Val::Enum("cm".into()),
            Val::Option(None),
            Val::Option(Some(Box::new(Val::U32(7)))),
            Val::Result(Ok(None)),
            Val::Result(Err(Some(Box::new(Val::String("no points".into()))))),
            Val::Flags(vec!["bold".into(), "italic".into()]),
            Val::Flags(Vec::new()),
        ]
    }

    #[test]
    fn a_result_is_counted_as_exactly_its_json_text() {
        let all = samples();
        let cases: Vec<Vec<Val>> = all
            .iter()
            .map(|v| vec![v.clone()])
            .chain([Vec::new(), all.clone()])
            .collect();
        for results in cases {
            let expected = match results.as_slice() {
                [] => Json::Null,
                [one] => to_json(one),
                many => Json::Array(many.iter().map(to_json).collect()),
            };
            let len = expected.to_string().len();
            assert_eq!(results_to_json(&results, len).unwrap(), expected);
            assert!(
                results_to_json(&results, len - 1).is_err(),
                "{expected} fits in {} bytes",
                len - 1
            );
        }
    }

    #[test]
    fn a_large_list_stops_at_the_limit() {
        let big = Val::List(vec![Val::Bool(false); 1_000_000]);
        assert!(results_to_json(&[big], 1024).is_err());
        let text = Val::String("x".repeat(1 << 20));
        assert!(results_to_json(&[text], 1 << 20).is_err());
    }
}
