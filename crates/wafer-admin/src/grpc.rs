//! The gRPC service `wafer.v1.Wafer` (`proto/wafer/v1/wafer.proto`): the admin API's
//! operations and Invoke, on the admin listener beside the REST API. Requests whose
//! `content-type` starts with `application/grpc` come here; every call needs
//! `authorization: Bearer TOKEN`. Server reflection (`grpc.reflection.v1` and `v1alpha`) is
//! on and needs no token.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio_stream::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};
use wafer_registry::{Digest, FunctionName};

use wafer_gateway::grpc_status as status;
use wafer_gateway::{config, schema_of, AdminToken, App, Call, Error};

use crate::MAX_UPLOAD;

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
    let token = app.token().clone();
    let wafer = WaferServer::new(Service { app }).max_decoding_message_size(MAX_UPLOAD);
    let wafer = InterceptedService::new(wafer, move |request: Request<()>| {
        authorize(&token, &request)?;
        Ok(request)
    });
    tonic::service::Routes::new(wafer).into_axum_router()
}

fn authorize(token: &AdminToken, request: &Request<()>) -> Result<(), Status> {
    let authorized = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| http::HeaderValue::from_str(v).ok())
        .is_some_and(|v| token.is_in(&v));
    match authorized {
        true => Ok(()),
        false => Err(Status::unauthenticated(Error::Unauthorized.to_string())),
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
        traffic: d.traffic.as_ref().map(traffic_message),
    }
}

fn traffic_message(traffic: &wafer_registry::Traffic) -> Traffic {
    Traffic {
        split: (traffic.split.iter())
            .map(|s| Share {
                version: s.version,
                percent: s.percent.into(),
            })
            .collect(),
        sticky: traffic.sticky.as_ref().map(|sticky| Sticky {
            by: Some(match sticky {
                wafer_registry::Sticky::Header(h) => sticky::By::Header(h.clone()),
                wafer_registry::Sticky::Cookie(c) => sticky::By::Cookie(c.clone()),
            }),
        }),
    }
}

fn sticky_of(sticky: Option<Sticky>) -> Option<wafer_registry::Sticky> {
    match sticky?.by? {
        sticky::By::Header(header) => {
            Some(wafer_registry::Sticky::Header(header.to_ascii_lowercase()))
        }
        sticky::By::Cookie(cookie) => Some(wafer_registry::Sticky::Cookie(cookie)),
    }
}

/// A percentage as the registry takes it (a value past 255 is past 99 too).
fn percent(value: u32) -> u8 {
    u8::try_from(value).unwrap_or(u8::MAX)
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
        let sticky = sticky_of(metadata.sticky.take());
        let canary = match metadata.canary {
            0 if sticky.is_some() => {
                return Err(Status::invalid_argument("`sticky` goes with `canary`"))
            }
            0 => None,
            n => Some(wafer_gateway::Canary {
                percent: percent(n),
                sticky,
            }),
        };
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
            .functions()
            .deploy_with(name, module, config, canary)
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
                .functions()
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
            .functions()
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
                traffic: f.traffic.as_ref().map(traffic_message),
            })
            .collect();
        Ok(Response::new(ListResponse { functions }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<FunctionRecord>, Status> {
        let name = function_name(&request.into_inner().name)?;
        let record = self
            .app
            .functions()
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
            traffic: record.traffic.as_ref().map(traffic_message),
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
        let result = self.app.functions().rollback(&name).await.map_err(status)?;
        Ok(Response::new(deployed(result)))
    }

    async fn set_traffic(
        &self,
        request: Request<SetTrafficRequest>,
    ) -> Result<Response<Deployed>, Status> {
        let request = request.into_inner();
        let name = function_name(&request.name)?;
        let asked = request.traffic.unwrap_or_default();
        let split = (asked.split.iter())
            .map(|s| wafer_registry::Share {
                version: s.version,
                percent: percent(s.percent),
            })
            .collect();
        let traffic = wafer_registry::Traffic::new(split, sticky_of(asked.sticky))
            .map_err(|e| status(e.into()))?;
        let functions = self.app.functions();
        let result = functions
            .set_traffic(&name, traffic)
            .await
            .map_err(status)?;
        Ok(Response::new(deployed(result)))
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<Deployed>, Status> {
        let name = function_name(&request.into_inner().name)?;
        let result = self.app.functions().promote(&name).await.map_err(status)?;
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
            ("instance_idle", l.instance_idle),
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
        for (key, value) in [
            ("instance_reuse", l.instance_reuse),
            ("max_concurrent_per_instance", l.max_concurrent_per_instance),
        ] {
            if value != 0 {
                limits.insert(key.to_owned(), Value::from(value));
            }
        }
    }
    let abi = (!metadata.abi.is_empty()).then_some(metadata.abi);
    let mut config = config(routes, env, limits, abi)?;
    config.entrypoint = (!metadata.entrypoint.is_empty()).then_some(metadata.entrypoint);
    config.schedules = (metadata.schedules.iter())
        .map(|cron| wafer_registry::Schedule::of(cron))
        .collect();
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
