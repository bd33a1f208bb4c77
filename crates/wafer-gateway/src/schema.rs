//! Protobuf-described functions: compiling a `.proto` in-process (protox), checking a
//! function's [`Schema`], and transcoding JSON calls to protobuf for the guest and its
//! protobuf answers back to JSON (prost-reflect).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ServiceDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use wafer_registry::Schema;

use wafer_registry::Deployment;

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

/// Checks a schema before it is stored: its operations' types, and that every method of
/// every service it declares maps to one of them.
pub(crate) fn check(schema: &Schema) -> Result<(), Error> {
    if schema.operations.is_empty() {
        return Err(Error::BadRequest(
            "a schema needs at least one operation: OPERATION=INPUT_TYPE:OUTPUT_TYPE, or a \
             `service` whose methods are the operations"
                .into(),
        ));
    }
    load(schema).map_err(Error::BadRequest)?;
    services(schema).map(drop).map_err(Error::BadRequest)
}

/// The services a descriptor set declares (those of the well-known `google.protobuf` files
/// aside).
fn declared_services(pool: &DescriptorPool) -> impl Iterator<Item = ServiceDescriptor> + '_ {
    pool.services()
        .filter(|s| !s.parent_file().name().starts_with("google/protobuf/"))
}

/// The operation a method of a service maps to: the one of the method's name, as is or in
/// snake case (`Mul` -> `mul`, `BoundingBox` -> `bounding_box`).
fn operation_name(method: &str) -> String {
    let mut snake = String::with_capacity(method.len() + 4);
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

/// Operations for every method of the services `descriptors` declares, for a schema given
/// without any: `Mul(Pair) returns (Complex)` becomes `mul = complex.Pair:complex.Complex`.
pub(crate) fn operations_of_services(
    descriptors: &[u8],
) -> Result<Vec<(String, wafer_registry::OperationTypes)>, Error> {
    let pool = DescriptorPool::decode(descriptors)
        .map_err(|e| Error::BadRequest(format!("the descriptor set does not load: {e}")))?;
    Ok(declared_services(&pool)
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .map(|method| {
            (
                operation_name(method.name()),
                wafer_registry::OperationTypes {
                    input: method.input().full_name().to_owned(),
                    output: method.output().full_name().to_owned(),
                },
            )
        })
        .collect())
}

/// The gRPC services of a schema, and for each of its methods (`/pkg.Service/Method`) the
/// operation it calls.
pub(crate) type Services = Vec<(String, Vec<(String, String)>)>;

/// The services of `schema` every method of which maps to an operation: those the function
/// serves. A service some of whose methods map to nothing is not served (the schema just
/// uses its messages); a method that maps by name to an operation of other types is an
/// error, naming both.
pub(crate) fn services(schema: &Schema) -> Result<Services, String> {
    let pool = DescriptorPool::decode(schema.descriptors.as_slice())
        .map_err(|e| format!("the descriptor set does not load: {e}"))?;
    let mut services = Vec::new();
    'services: for service in declared_services(&pool) {
        let mut methods = Vec::new();
        for method in service.methods() {
            let name = method.name();
            let Some(operation) = [name.to_owned(), operation_name(name)]
                .into_iter()
                .find(|op| schema.operations.contains_key(op))
            else {
                continue 'services;
            };
            let types = &schema.operations[&operation];
            let (input, output) = (method.input(), method.output());
            if input.full_name() != types.input.trim_start_matches('.')
                || output.full_name() != types.output.trim_start_matches('.')
            {
                return Err(format!(
                    "the method `{}/{name}` takes {} and returns {}, but the operation \
                     `{operation}` takes {} and returns {}",
                    service.full_name(),
                    input.full_name(),
                    output.full_name(),
                    types.input,
                    types.output
                ));
            }
            methods.push((format!("/{}/{name}", service.full_name()), operation));
        }
        services.push((service.full_name().to_owned(), methods));
    }
    Ok(services)
}

/// The schema's descriptor set with its uploaded file renamed after the function, so that
/// the files of several functions (each `function.proto` when compiled) can be listed by
/// server reflection side by side.
pub(crate) fn descriptors_for_reflection(schema: &Schema, function: &str) -> Option<Vec<u8>> {
    let mut set = prost_types::FileDescriptorSet::decode(schema.descriptors.as_slice()).ok()?;
    let renamed = format!("{function}.proto");
    for file in &mut set.file {
        if file.name() == PROTO_NAME {
            file.name = Some(renamed.clone());
        }
        for dependency in &mut file.dependency {
            if dependency == PROTO_NAME {
                dependency.clone_from(&renamed);
            }
        }
    }
    Some(set.encode_to_vec())
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

/// What one schema maps: each operation's types, and each gRPC method's operation.
#[derive(Default)]
struct Loaded {
    operations: HashMap<String, Arc<Types>>,
    /// `/pkg.Service/Method` -> operation.
    methods: HashMap<String, String>,
}

/// One cached [`Loaded`] per function version, by the version's address.
type Cache = HashMap<usize, (Weak<Deployment>, Arc<Loaded>)>;

/// Loaded schemas, one per live function version (a schema is decoded once, not per call).
///
/// Keyed by the version's allocation, not its name and number: after `rm` and a redeploy the
/// numbers start again at 1, and a `(name, version)` key would serve the old schema. The
/// entry holds a `Weak` to the version, which keeps its allocation (so its address) from
/// being reused while the entry exists; entries of versions no longer served are swept on
/// the next insert.
#[derive(Default)]
pub(crate) struct Schemas {
    loaded: Mutex<Cache>,
}

impl Schemas {
    /// The types of `operation` of `function`, if its schema maps it.
    pub(crate) fn types(&self, function: &Arc<Deployment>, operation: &str) -> Option<Arc<Types>> {
        self.loaded(function)?.operations.get(operation).cloned()
    }

    /// The operation the gRPC method `path` (`/pkg.Service/Method`) of `function` calls.
    pub(crate) fn method(&self, function: &Arc<Deployment>, path: &str) -> Option<String> {
        self.loaded(function)?.methods.get(path).cloned()
    }

    /// The decoded schema of `function`'s version, decoded on its first use. The descriptor
    /// sets are decoded outside the lock, which is only held to look up and insert, so one
    /// function's first call never holds up another's.
    fn loaded(&self, function: &Arc<Deployment>) -> Option<Arc<Loaded>> {
        let schema = function.config.schema.as_ref()?;
        let key = Arc::as_ptr(function) as usize;
        // An entry counts only while its version lives: an address can be reused.
        let cached = |cache: &Cache| {
            cache
                .get(&key)
                .filter(|(version, _)| version.strong_count() > 0)
                .map(|(_, found)| found.clone())
        };
        if let Some(found) = cached(&self.loaded.lock().unwrap_or_else(|e| e.into_inner())) {
            return Some(found);
        }
        // Checked at deploy; a schema that stopped loading maps nothing.
        let found = match (load(schema), services(schema)) {
            (Ok(operations), Ok(services)) => Loaded {
                operations,
                methods: services
                    .into_iter()
                    .flat_map(|(_, methods)| methods)
                    .collect(),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(function = %function.name, "schema does not load: {e}");
                Loaded::default()
            }
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = cached(&loaded) {
            return Some(found);
        }
        loaded.retain(|_, (version, _)| version.strong_count() > 0);
        let found = Arc::new(found);
        loaded.insert(key, (Arc::downgrade(function), found.clone()));
        Some(found)
    }
}

/// JSON to protobuf, validated against `message`; errors name the field. The JSON may hold at
/// most [`MAX_JSON_VALUES`](crate::json::MAX_JSON_VALUES) values: it is counted
/// first, then decoded straight into the message.
pub(crate) fn json_to_protobuf(message: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, Error> {
    crate::json::check(json).map_err(|e| Error::BadRequest(e.to_string()))?;
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
