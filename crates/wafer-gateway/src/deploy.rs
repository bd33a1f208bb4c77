//! What a deploy request says, turned into a function's configuration: the admin API's
//! query parameters, the gRPC Deploy's metadata and a manifest's `.proto` all go through
//! these, so every path accepts and refuses exactly the same things.

use bytes::Bytes;
use serde_json::{Map, Value};
use wafer_registry::FunctionConfig;

use crate::error::Error;

/// Protobuf packages a function's schema may not declare services in: `wafer.` is the
/// admin plane's (`wafer.v1.Wafer`), `grpc.` gRPC's own (reflection, health). A service
/// there could be mistaken for the server's, by a client or by a router.
const RESERVED_PACKAGES: [&str; 2] = ["wafer", "grpc"];

/// The schema of a protobuf-described function, from a `.proto` or a descriptor set and
/// the operations' types; checked before anything is stored.
pub fn schema_of(
    proto: Option<String>,
    descriptor_set: Option<Bytes>,
    operations: Vec<(String, wafer_registry::OperationTypes)>,
) -> Result<Option<wafer_registry::Schema>, Error> {
    let descriptors = match (proto, descriptor_set) {
        (Some(_), Some(_)) => {
            return Err(Error::BadRequest(
                "give a .proto or a descriptor set, not both".into(),
            ))
        }
        (Some(proto), None) => crate::schema::compile_proto(&proto)?,
        (None, Some(set)) => set.to_vec(),
        (None, None) if operations.is_empty() => return Ok(None),
        (None, None) => {
            return Err(Error::BadRequest(
                "operation types need a schema: a .proto or a descriptor set".into(),
            ))
        }
    };
    // Without operations, the methods of the services it declares are the operations.
    let operations = match operations.is_empty() {
        true => crate::schema::operations_of_services(&descriptors)?,
        false => operations,
    };
    let schema = wafer_registry::Schema {
        descriptors,
        operations: operations.into_iter().collect(),
    };
    crate::schema::check(&schema)?;
    refuse_reserved_services(&schema.descriptors)?;
    Ok(Some(schema))
}

/// Refuses a schema declaring a service in a reserved package ([`RESERVED_PACKAGES`]).
fn refuse_reserved_services(descriptors: &[u8]) -> Result<(), Error> {
    let pool = prost_reflect::DescriptorPool::decode(descriptors)
        .map_err(|e| Error::BadRequest(format!("the descriptor set does not load: {e}")))?;
    for service in pool.services() {
        let package = service.package_name();
        let reserved = RESERVED_PACKAGES.iter().find(|r| {
            package == **r
                || package
                    .strip_prefix(**r)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        if let Some(reserved) = reserved {
            return Err(Error::BadRequest(format!(
                "the schema declares the service `{}`: the protobuf package `{reserved}` and \
                 those below it are reserved for the server's own services; use a package of \
                 your own",
                service.full_name()
            )));
        }
    }
    Ok(())
}

/// Turns deploy query parameters into a [`FunctionConfig`] through the same serde
/// definitions a manifest uses, so both accept and reject exactly the same things:
/// `route` (repeatable), `env=KEY=VALUE` (repeatable), `schedule=CRON` (repeatable) and
/// each limit by name (`memory=64MiB`, `timeout=5s`, `max_concurrency=8`, ...).
pub fn deploy_config(
    query: &str,
) -> Result<
    (
        FunctionConfig,
        Vec<(String, wafer_registry::OperationTypes)>,
    ),
    Error,
> {
    let mut operations = Vec::new();
    let mut abi = None;
    let mut entrypoint = None;
    let mut routes = Vec::new();
    let mut env = Map::new();
    let mut limits = Map::new();
    let mut schedules = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "schedule" => schedules.push(wafer_registry::Schedule::of(&value)),
            "route" => routes.push(Value::from(value.into_owned())),
            "operation" => operations.push(crate::schema::operation(&value)?),
            "abi" => abi = Some(value.into_owned()),
            "entrypoint" => entrypoint = Some(value.into_owned()),
            "env" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| Error::BadRequest(format!("env `{value}` must be KEY=VALUE")))?;
                env.insert(k.to_owned(), Value::from(v));
            }
            "max_concurrency" | "kv_keys" | "instance_reuse" | "max_concurrent_per_instance" => {
                let n: u64 = value.parse().map_err(|_| {
                    Error::BadRequest(format!("{key} `{value}` must be a positive integer"))
                })?;
                limits.insert(key.into_owned(), Value::from(n));
            }
            "memory" | "timeout" | "request_body" | "stdout" | "stderr" | "http_timeout"
            | "http_response" | "kv_value" | "instance_idle" => {
                limits.insert(key.into_owned(), Value::from(value.into_owned()));
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "unknown deploy parameter `{other}`"
                )))
            }
        }
    }
    let mut config = config(routes, env, limits, abi)?;
    config.entrypoint = entrypoint;
    config.schedules = schedules;
    Ok((config, operations))
}

/// A function's configuration from its parts, through the same serde definitions a manifest
/// uses (the gRPC Deploy builds one too).
pub fn config(
    routes: Vec<Value>,
    env: Map<String, Value>,
    limits: Map<String, Value>,
    abi: Option<String>,
) -> Result<FunctionConfig, Error> {
    let config = serde_json::json!({ "routes": routes, "env": env, "limits": limits, "abi": abi });
    serde_json::from_value(config)
        .map_err(|e| Error::BadRequest(format!("invalid deploy parameters: {e}")))
}
