//! Protobuf-described functions: compiling a `.proto` in-process (protox), checking a
//! function's [`Schema`], and transcoding JSON calls to protobuf for the guest and its
//! protobuf answers back to JSON (prost-reflect).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use wafer_registry::Schema;

use crate::live::Function;

use crate::error::Error;

/// The name the uploaded `.proto` gets inside the compiler.
const PROTO_NAME: &str = "function.proto";

/// One uploaded `.proto` file (it may import the well-known `google/protobuf/*` types).
struct Upload(String);

impl FileResolver for Upload {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == PROTO_NAME {
            File::from_source(name, &self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Compiles `.proto` source into an encoded descriptor set, with the compiler's message
/// (line and column) on error.
pub(crate) fn compile_proto(source: &str) -> Result<Vec<u8>, Error> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(Upload(source.to_owned()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_file(PROTO_NAME)
        .map_err(|e| Error::BadRequest(format!("invalid .proto: {e}")))?;
    Ok(compiler.encode_file_descriptor_set())
}

/// The request and response types of one operation.
pub(crate) struct Types {
    pub(crate) input: MessageDescriptor,
    pub(crate) output: MessageDescriptor,
}

/// Loads a schema's descriptors and finds every operation's types; the error names what is
/// missing.
pub(crate) fn load(schema: &Schema) -> Result<HashMap<String, Arc<Types>>, String> {
    let pool = DescriptorPool::decode(schema.descriptors.as_slice())
        .map_err(|e| format!("the descriptor set does not load: {e}"))?;
    let find = |name: &str| {
        pool.get_message_by_name(name.trim_start_matches('.'))
            .ok_or_else(|| {
                let known: Vec<String> = pool
                    .all_messages()
                    .map(|m| m.full_name().to_owned())
                    .collect();
                format!(
                    "no message type `{name}` in the schema (it has: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )
            })
    };
    let mut operations = HashMap::new();
    for (operation, types) in &schema.operations {
        let input = find(&types.input)?;
        let output = find(&types.output)?;
        operations.insert(operation.clone(), Arc::new(Types { input, output }));
    }
    Ok(operations)
}

/// Checks a schema before it is stored.
pub(crate) fn check(schema: &Schema) -> Result<(), Error> {
    if schema.operations.is_empty() {
        return Err(Error::BadRequest(
            "a schema needs at least one operation: OPERATION=INPUT_TYPE:OUTPUT_TYPE".into(),
        ));
    }
    load(schema).map(drop).map_err(Error::BadRequest)
}

/// Parses `OPERATION=INPUT:OUTPUT`.
pub(crate) fn operation(spec: &str) -> Result<(String, wafer_registry::OperationTypes), Error> {
    let bad = || {
        Error::BadRequest(format!(
            "operation `{spec}` must read OPERATION=INPUT_TYPE:OUTPUT_TYPE, e.g. mul=complex.Pair:complex.Complex"
        ))
    };
    let (name, types) = spec.split_once('=').ok_or_else(bad)?;
    let (input, output) = types.split_once(':').ok_or_else(bad)?;
    if name.is_empty() || input.is_empty() || output.is_empty() {
        return Err(bad());
    }
    Ok((
        name.to_owned(),
        wafer_registry::OperationTypes {
            input: input.to_owned(),
            output: output.to_owned(),
        },
    ))
}

/// The types of each operation of one schema.
type Operations = Arc<HashMap<String, Arc<Types>>>;

/// Loaded schemas, one per live function version (a schema is decoded once, not per call).
///
/// Keyed by the version's allocation, not its name and number: after `rm` and a redeploy the
/// numbers start again at 1, and a `(name, version)` key would serve the old schema. The
/// entry holds a `Weak` to the version, which keeps its allocation (so its address) from
/// being reused while the entry exists; entries of versions no longer served are swept on
/// the next insert.
#[derive(Default)]
pub(crate) struct Schemas {
    loaded: Mutex<HashMap<usize, (Weak<Function>, Operations)>>,
}

impl Schemas {
    /// The types of `operation` of `function`, if its schema maps it.
    pub(crate) fn types(&self, function: &Arc<Function>, operation: &str) -> Option<Arc<Types>> {
        let schema = function.config.schema.as_ref()?;
        let key = Arc::as_ptr(function) as usize;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, operations)) = loaded.get(&key) {
            return operations.get(operation).cloned();
        }
        loaded.retain(|_, (version, _)| version.strong_count() > 0);
        // Checked at deploy; a schema that stopped loading maps nothing.
        let operations = Arc::new(load(schema).unwrap_or_else(|e| {
            tracing::error!(function = %function.name, "schema does not load: {e}");
            HashMap::new()
        }));
        let types = operations.get(operation).cloned();
        loaded.insert(key, (Arc::downgrade(function), operations));
        types
    }
}

/// JSON to protobuf, validated against `message`; errors name the field.
pub(crate) fn json_to_protobuf(message: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let decoded = DynamicMessage::deserialize(message.clone(), &mut deserializer)
        .and_then(|m| deserializer.end().map(|()| m))
        .map_err(|e| {
            Error::BadRequest(format!(
                "the body is not a valid `{}` in JSON: {e}",
                message.full_name()
            ))
        })?;
    Ok(decoded.encode_to_vec())
}

/// The guest's protobuf answer as JSON.
pub(crate) fn protobuf_to_json(
    message: &MessageDescriptor,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let decoded = DynamicMessage::decode(message.clone(), bytes).map_err(|e| {
        format!(
            "the function's answer is not a valid `{}`: {e}",
            message.full_name()
        )
    })?;
    let mut json = serde_json::to_vec(&decoded).map_err(|e| e.to_string())?;
    json.push(b'\n');
    Ok(json)
}
