//! The gRPC service `wafer.v1.Wafer` (`proto/wafer/v1/wafer.proto`): the admin API's
//! operations and Invoke, on the same port as HTTP. Requests whose `content-type` starts
//! with `application/grpc` come here; every call needs `authorization: Bearer TOKEN`.
//! Server reflection (`grpc.reflection.v1` and `v1alpha`) is on and needs no token.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};
use tokio_stream::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};
use wafer_registry::{Digest, FunctionName};

use crate::admin::{config, constant_time_eq, schema_of, MAX_UPLOAD};
use crate::error::Error;
use crate::invoke::Call;
use crate::App;

/// The generated messages, service and client of `wafer.v1`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("wafer.v1");

    /// The encoded descriptor set of `wafer.proto`, for reflection.
    pub const DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/wafer_descriptor.bin"));
}

use proto::wafer_server::{Wafer, WaferServer};
use proto::*;

/// Size of the chunks GetModule streams.
const CHUNK: usize = 64 << 10;

/// The service, with the admin token check in front of it and reflection beside it.
pub(crate) fn router(app: Arc<App>) -> axum::Router {
    let token = app.token.clone();
    let wafer = WaferServer::new(Service { app }).max_decoding_message_size(MAX_UPLOAD);
    let wafer = InterceptedService::new(wafer, move |request: Request<()>| {
        authorize(&token, &request)?;
        Ok(request)
    });
    tonic::service::Routes::new(wafer).into_axum_router()
}

/// Server reflection (`grpc.reflection.v1` and `v1alpha`) of `wafer.v1.Wafer` and of the
/// functions' own services: `descriptors` are their encoded descriptor sets, each file named
/// after its function.
pub(crate) fn reflection(descriptors: &[Vec<u8>]) -> axum::Router {
    let reflection = || {
        descriptors.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::DESCRIPTOR_SET),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        )
    };
    match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => tonic::service::Routes::new(v1)
            .add_service(v1alpha)
            .into_axum_router(),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "gRPC reflection is off: a descriptor set does not load");
            axum::Router::new()
        }
    }
}

/// Bytes in, bytes out: a function's own gRPC methods take and return its protobuf
/// messages, which the guest reads and writes itself.
#[derive(Clone, Copy, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, len)))
    }
}

/// Answers a call of `function`'s gRPC method `operation` (a unary method of a service its
/// schema declares): the request message is the guest's payload, its answer the response
/// message. No admin token: like the function's HTTP route, its service is public.
pub(crate) async fn call_method<B>(
    app: &App,
    function: Arc<crate::live::Function>,
    operation: String,
    request: http::Request<B>,
) -> axum::response::Response
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let limit = usize::try_from(function.config.limits.request_body.as_u64()).unwrap_or(usize::MAX);
    let mut grpc = tonic::server::Grpc::new(Raw)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let (function, operation) = (&function, operation.as_str());
    let service = tower::service_fn(move |request: Request<Bytes>| async move {
        app.call_method(function, operation, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    });
    grpc.unary(service, request)
        .await
        .map(axum::body::Body::new)
}

fn authorize(token: &str, request: &Request<()>) -> Result<(), Status> {
    let given = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated(Error::Unauthorized.to_string()))?;
    if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated(Error::Unauthorized.to_string()))
    }
}

/// The gRPC status for an error, by the HTTP status the same error gets.
fn status(error: Error) -> Status {
    let message = error.to_string();
    match error.status() {
        StatusCode::BAD_REQUEST => Status::invalid_argument(message),
        StatusCode::UNAUTHORIZED => Status::unauthenticated(message),
        StatusCode::NOT_FOUND => Status::not_found(message),
        StatusCode::METHOD_NOT_ALLOWED => Status::unimplemented(message),
        StatusCode::CONFLICT => Status::failed_precondition(message),
        StatusCode::PAYLOAD_TOO_LARGE => Status::resource_exhausted(message),
        StatusCode::SERVICE_UNAVAILABLE => Status::unavailable(message),
        StatusCode::GATEWAY_TIMEOUT => Status::deadline_exceeded(message),
        _ => match &error {
            Error::Registry(wafer_registry::RegistryError::Corrupt { .. }) => {
                Status::data_loss(message)
            }
            _ => Status::internal(message),
        },
    }
}

fn function_name(raw: &str) -> Result<FunctionName, Status> {
    raw.parse::<FunctionName>()
        .map_err(|e| status(Error::Registry(e)))
}

struct Service {
    app: Arc<App>,
}

fn deployed(d: wafer_registry::Deployed) -> Deployed {
    Deployed {
        name: d.name.to_string(),
        version: d.version,
        digest: d.digest.to_string(),
        unchanged: d.unchanged,
    }
}

#[tonic::async_trait]
impl Wafer for Service {
    async fn deploy(
        &self,
        request: Request<Streaming<DeployRequest>>,
    ) -> Result<Response<Deployed>, Status> {
        let mut stream = request.into_inner();
        let mut metadata = match stream.next().await {
            Some(Ok(DeployRequest {
                part: Some(deploy_request::Part::Metadata(metadata)),
            })) => metadata,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of Deploy must carry `metadata`",
                ))
            }
        };
        let name = function_name(&metadata.name)?;
        let schema = metadata.schema.take();
        let mut config = deploy_config(metadata).map_err(status)?;
        if let Some(schema) = schema {
            let (proto, set) = match schema.source {
                Some(schema::Source::Proto(text)) => (Some(text), None),
                Some(schema::Source::DescriptorSet(bytes)) => (None, Some(Bytes::from(bytes))),
                None => (None, None),
            };
            let operations = schema
                .operations
                .into_iter()
                .map(|(op, t)| {
                    let types = wafer_registry::OperationTypes {
                        input: t.input,
                        output: t.output,
                    };
                    (op, types)
                })
                .collect();
            config.schema = schema_of(proto, set, operations).map_err(status)?;
        }
        let mut module = Vec::new();
        while let Some(message) = stream.next().await {
            match message?.part {
                Some(deploy_request::Part::Chunk(chunk)) => {
                    if module.len() + chunk.len() > MAX_UPLOAD {
                        return Err(Status::resource_exhausted(format!(
                            "the module is larger than the upload limit of {MAX_UPLOAD} bytes"
                        )));
                    }
                    module.extend_from_slice(&chunk);
                }
                Some(deploy_request::Part::Metadata(_)) => {
                    return Err(Status::invalid_argument(
                        "only the first message of Deploy carries `metadata`",
                    ))
                }
                None => {}
            }
        }
        if module.is_empty() {
            return Err(Status::invalid_argument(
                "no module: send its bytes in `chunk` messages after the metadata",
            ));
        }
        let result = self
            .app
            .functions
            .deploy(name, module, config)
            .await
            .map_err(status)?;
        tracing::info!(name = %result.name, version = result.version, digest = %result.digest, unchanged = result.unchanged, "deployed (gRPC)");
        Ok(Response::new(deployed(result)))
    }

    type GetModuleStream = Pin<Box<dyn Stream<Item = Result<ModuleChunk, Status>> + Send>>;

    async fn get_module(
        &self,
        request: Request<GetModuleRequest>,
    ) -> Result<Response<Self::GetModuleStream>, Status> {
        let digest: Digest = request
            .into_inner()
            .digest
            .parse()
            .map_err(|e| status(Error::Registry(e)))?;
        let bytes = Bytes::from(
            self.app
                .functions
                .module(&digest)
                .await
                .map_err(|e| status(e.into()))?,
        );
        let chunks: Vec<Result<ModuleChunk, Status>> = (0..bytes.len())
            .step_by(CHUNK)
            .map(|at| {
                Ok(ModuleChunk {
                    data: bytes.slice(at..(at + CHUNK).min(bytes.len())).to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let functions = self
            .app
            .functions
            .list()
            .into_iter()
            .map(|f| FunctionSummary {
                name: f.name.to_string(),
                version: f.version,
                versions: u32::try_from(f.versions).unwrap_or(u32::MAX),
                digest: f.digest.to_string(),
                routes: f.routes.iter().map(|r| r.to_string()).collect(),
                error: f.error.unwrap_or_default(),
                abi: f.abi.to_string(),
                grants: Some(grants_message(&f.config.grants)),
            })
            .collect();
        Ok(Response::new(ListResponse { functions }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<FunctionRecord>, Status> {
        let name = function_name(&request.into_inner().name)?;
        let record = self
            .app
            .functions
            .get(&name)
            .map_err(|e| status(e.into()))?;
        Ok(Response::new(FunctionRecord {
            name: record.name.to_string(),
            active: record.active,
            versions: record
                .versions
                .iter()
                .map(|v| Version {
                    version: v.version,
                    digest: v.digest.to_string(),
                    abi: v.abi.to_string(),
                    routes: v.routes().iter().map(|r| r.to_string()).collect(),
                    created: v.created.clone(),
                })
                .collect(),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let name = function_name(&request.into_inner().name)?;
        self.app.remove(&name).await.map_err(status)?;
        tracing::info!(%name, "removed (gRPC)");
        Ok(Response::new(DeleteResponse {}))
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<Deployed>, Status> {
        let name = function_name(&request.into_inner().name)?;
        let result = self.app.functions.rollback(&name).await.map_err(status)?;
        Ok(Response::new(deployed(result)))
    }

    async fn invoke(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        let request = request.into_inner();
        let query = (!request.returns.is_empty()).then(|| format!("returns={}", request.returns));
        let call = Call {
            method: &http::Method::POST,
            rest: &format!("/{}", request.operation),
            query: query.as_deref(),
            content_type: (!request.content_type.is_empty()).then_some(&*request.content_type),
            body: Bytes::from(request.payload),
        };
        let (result, request_id) = self.app.invoke_named(&request.function, call).await;
        let answer = result.map_err(status)?;
        Ok(Response::new(InvokeResponse {
            payload: answer.body.to_vec(),
            content_type: answer.content_type.to_owned(),
            request_id: request_id.unwrap_or_default(),
        }))
    }
}

/// Grants as List shows them (the registry has masked the secrets already).
fn grants_message(grants: &wafer_registry::Grants) -> Grants {
    let strings =
        |items: &[wafer_registry::TopicPattern]| items.iter().map(|p| p.to_string()).collect();
    Grants {
        http: grants.http.iter().map(|r| r.to_string()).collect(),
        dirs: grants.dirs.iter().map(|d| d.to_string()).collect(),
        config: grants.config.clone().into_iter().collect(),
        secrets: grants
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect(),
        kv: grants.kv,
        publish: strings(&grants.publish),
        subscribe: strings(&grants.subscribe),
        listen: grants.listen.map(|a| a.to_string()).unwrap_or_default(),
    }
}

/// A function's configuration from Deploy's metadata.
fn deploy_config(metadata: DeployMetadata) -> Result<wafer_registry::FunctionConfig, Error> {
    let routes = metadata.routes.into_iter().map(Value::from).collect();
    let env = metadata
        .env
        .into_iter()
        .map(|(k, v)| (k, Value::from(v)))
        .collect();
    let mut limits = Map::new();
    if let Some(l) = metadata.limits {
        for (key, value) in [
            ("memory", l.memory),
            ("timeout", l.timeout),
            ("request_body", l.request_body),
            ("stdout", l.stdout),
            ("stderr", l.stderr),
            ("http_timeout", l.http_timeout),
            ("http_response", l.http_response),
            ("kv_value", l.kv_value),
        ] {
            if !value.is_empty() {
                limits.insert(key.to_owned(), Value::from(value));
            }
        }
        if l.max_concurrency != 0 {
            limits.insert("max_concurrency".to_owned(), Value::from(l.max_concurrency));
        }
        if l.kv_keys != 0 {
            limits.insert("kv_keys".to_owned(), Value::from(l.kv_keys));
        }
        if l.instance_reuse != 0 {
            limits.insert("instance_reuse".to_owned(), Value::from(l.instance_reuse));
        }
    }
    let abi = (!metadata.abi.is_empty()).then_some(metadata.abi);
    let mut config = config(routes, env, limits, abi)?;
    config.entrypoint = (!metadata.entrypoint.is_empty()).then_some(metadata.entrypoint);
    if let Some(g) = metadata.grants {
        let grants = serde_json::json!({
            "http": g.http,
            "dirs": g.dirs,
            "config": g.config,
            "secrets": g.secrets,
            "kv": g.kv,
            "publish": g.publish,
            "subscribe": g.subscribe,
            "listen": (!g.listen.is_empty()).then_some(g.listen),
        });
        config.grants = serde_json::from_value(grants)
            .map_err(|e| Error::BadRequest(format!("invalid grants: {e}")))?;
    }
    Ok(config)
}
