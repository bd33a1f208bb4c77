//! The admin API (JSON over HTTP, bearer token): deploy, list, get, remove, rollback, logs,
//! and module download.
//!
//! | method and path                         | does                                         |
//! |-----------------------------------------|----------------------------------------------|
//! | `GET /_wafer/health`                    | `ok`, or `ok: PROBLEM` (no token needed)     |
//! | `GET /_wafer/functions`                 | every function, active version and status    |
//! | `PUT /_wafer/functions/NAME?...`        | deploy the body (wasm or WAT) as a version   |
//! | `GET /_wafer/functions/NAME`            | the function's record: all versions          |
//! | `DELETE /_wafer/functions/NAME`         | remove the function                          |
//! | `POST /_wafer/functions/NAME/rollback`  | re-activate the version before the active one, or end a traffic split |
//! | `PUT /_wafer/functions/NAME/traffic`    | share requests among versions (JSON `{"split": [{"version", "percent"}], "sticky"}`) |
//! | `POST /_wafer/functions/NAME/promote`   | end a traffic split: its newest version takes every request |
//! | `GET /_wafer/functions/NAME/logs?tail=N`| the last N log lines (default 100); `&since=10m`; `&follow=true` streams new ones (SSE) |
//! | `GET /_wafer/modules/sha256:HEX`        | a module's bytes, verified against the digest|
//! | `GET /_wafer/pubsub`                    | pub/sub counters per subscriber              |
//! | `POST /_wafer/functions/NAME/invoke/OP` | call a waPC operation or export (as `POST /NAME/OP`) |
//! | `ANY /_wafer/async/NAME/REST`           | queue a call of `REST` on the function's route; `202 {"id"}` (no token needed) |
//! | `GET /_wafer/invocations?limit=N`       | the newest asynchronous invocations          |
//! | `GET /_wafer/invocations/ID`            | one invocation: its state and, once done, its result |
//! | `GET /_wafer/stats`                     | every function's request counters (the dashboard's) |
//! | `GET /_wafer/ui`                        | the dashboard (no token needed to load; it asks for one) |
//! | `GET /_wafer/openapi.json`              | this API as an OpenAPI 3.1 document, generated from the handlers (no token) |

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafer_registry::{Digest, FunctionName, Sticky, Traffic};

use wafer_gateway::{App, Error};

/// Largest module upload. Go binaries are a few MB and Python/JS components up to ~20 MB;
/// 256 MiB leaves room without letting one upload exhaust memory.
pub const MAX_UPLOAD: usize = 256 << 20;

pub(crate) fn router(app: Arc<App>) -> Router {
    let (router, api) = api_router().split_for_parts();
    let _ = DOCUMENT.set(api.to_pretty_json().unwrap_or_default());
    router
        // A path of any depth, which OpenAPI cannot express: documented in async.md.
        .route("/_wafer/async/{*rest}", any(enqueue))
        .fallback(|uri: http::Uri| async move { Error::NoRoute(uri.path().to_owned()) })
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(app)
}

/// The admin API's routes and their OpenAPI document, from the same handlers.
pub(crate) fn api_router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(list))
        .routes(routes!(deploy, describe, remove))
        .routes(routes!(rollback))
        .routes(routes!(traffic))
        .routes(routes!(promote))
        .routes(routes!(logs))
        .routes(routes!(invoke))
        .routes(routes!(module))
        .routes(routes!(pubsub))
        .routes(routes!(invocations))
        .routes(routes!(invocation))
        .routes(routes!(stats))
        .routes(routes!(crate::ui::page))
        .routes(routes!(crate::ui::asset))
        .routes(routes!(openapi))
}

/// This document.
#[utoipa::path(get, path = "/_wafer/openapi.json", tag = "operations",
    responses((status = 200, description = "The admin API as an OpenAPI 3.1 document", body = serde_json::Value)))]
async fn openapi() -> impl IntoResponse {
    let document = DOCUMENT.get().map_or("", String::as_str);
    ([(header::CONTENT_TYPE, "application/json")], document)
}

/// The OpenAPI document, made with the router (the same for every app in the process).
static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The document's frame: title, version, the bearer-token scheme.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Wafer admin API", description = "Deploy, list, roll back, remove and call functions; read their logs and counters. Every path but `/_wafer/health`, `/_wafer/ui` and `/_wafer/async/...` needs the admin token as a bearer token. docs/admin-api.md describes each."),
    modifiers(&BearerToken)
)]
struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Proof that the request carried the admin token.
struct Admin;

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Error> {
        let authorized = parts
            .headers
            .get(header::AUTHORIZATION)
            .is_some_and(|value| app.token().is_in(value));
        match authorized {
            true => Ok(Admin),
            false => Err(Error::Unauthorized),
        }
    }
}

fn name(raw: &str) -> Result<FunctionName, Error> {
    Ok(raw.parse::<FunctionName>()?)
}

#[utoipa::path(get, path = "/_wafer/functions", tag = "functions", security(("token" = [])),
    responses((status = 200, description = "Every function with its active version, ABI, routes, grants and status", body = serde_json::Value)))]
async fn list(_: Admin, State(app): State<Arc<App>>) -> Result<Json<Value>, Error> {
    let list = app.functions().list();
    Ok(Json(serde_json::to_value(list).unwrap_or_default()))
}

#[utoipa::path(get, path = "/_wafer/functions/{name}", tag = "functions", security(("token" = [])), params(("name" = String, Path, description = "The function's name")),
    responses((status = 200, description = "The function's record: every version, the active one", body = serde_json::Value), (status = 404, description = "No such function")))]
async fn describe(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let record = app.functions().get(&name(&raw)?)?;
    Ok(Json(record).into_response())
}

#[utoipa::path(put, path = "/_wafer/functions/{name}", tag = "functions", security(("token" = [])), params(("name" = String, Path, description = "The function's name")),
    request_body(content = Vec<u8>, description = "The module (wasm or WAT), or multipart/form-data with `module`, `proto`, `descriptor_set`, `grants`; the configuration in the query (`route`, `env`, limits)", content_type = "application/wasm"),
    responses((status = 201, description = "Deployed as a new version (with `compile_ms`)", body = serde_json::Value), (status = 200, description = "Unchanged: the module and config of the active version", body = serde_json::Value), (status = 400, description = "A module or configuration that cannot run, named")))]
async fn deploy(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    request: axum::extract::Request,
) -> Result<Response, Error> {
    let name = name(&raw)?;
    let (canary, query) = canary(query.as_deref().unwrap_or(""))?;
    let (mut config, operations) = wafer_gateway::deploy_config(&query)?;
    let upload = Upload::read(request).await?;
    if let Some(whole) = upload.config {
        if !query.is_empty() || upload.grants.is_some() {
            return Err(Error::BadRequest(
                "a `config` part is the whole configuration: give no query parameters or \
                 `grants` part with it"
                    .into(),
            ));
        }
        config = whole;
    }
    config.schema = match config.schema.take() {
        // A schema in a `config` part is checked as an uploaded descriptor set is.
        Some(schema) if upload.proto.is_none() && upload.descriptor_set.is_none() => {
            let operations = schema.operations.into_iter().collect();
            wafer_gateway::schema_of(None, Some(schema.descriptors.into()), operations)?
        }
        _ => wafer_gateway::schema_of(upload.proto, upload.descriptor_set, operations)?,
    };
    if let Some(grants) = upload.grants {
        config.grants = grants;
    }
    let module = upload.module;
    if module.is_empty() {
        return Err(Error::BadRequest(
            "the request body must be the module (.wasm or .wat)".into(),
        ));
    }
    let deployed = app
        .functions()
        .deploy_with(name, module.to_vec(), config, canary)
        .await?;
    let status = if deployed.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    tracing::info!(name = %deployed.name, version = deployed.version, digest = %deployed.digest, unchanged = deployed.unchanged, "deployed");
    let mut answer = serde_json::to_value(&deployed).unwrap_or_default();
    // How long this node took to compile it (or to map it from the artifact cache).
    if let Some(took) = app.compile_time(&deployed.name) {
        answer["compile_ms"] = ((took.as_secs_f64() * 1e4).round() / 10.0).into();
    }
    Ok((status, Json(answer)).into_response())
}

/// The canary parameters of a deploy's query (`canary=PERCENT`, `sticky_header=NAME` or
/// `sticky_cookie=NAME`), and the rest of the query.
fn canary(query: &str) -> Result<(Option<wafer_gateway::Canary>, String), Error> {
    let (mut percent, mut sticky) = (None, None);
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "canary" => {
                let value = value.trim_end_matches('%');
                percent = Some(value.parse::<u8>().map_err(|_| {
                    Error::BadRequest(format!("canary `{value}` must be a percentage, 1 to 99"))
                })?);
            }
            "sticky_header" => sticky = Some(Sticky::Header(value.to_ascii_lowercase())),
            "sticky_cookie" => sticky = Some(Sticky::Cookie(value.into_owned())),
            _ => {
                rest.append_pair(&key, &value);
            }
        }
    }
    let canary = match (percent, sticky) {
        (Some(percent), sticky) => Some(wafer_gateway::Canary { percent, sticky }),
        (None, Some(_)) => {
            return Err(Error::BadRequest(
                "`sticky_header` and `sticky_cookie` go with `canary`".into(),
            ))
        }
        (None, None) => None,
    };
    Ok((canary, rest.finish()))
}

/// A deploy's upload: the module as the whole body, or, as `multipart/form-data`, parts
/// `module`, `proto` (a `.proto` file) or `descriptor_set` (an encoded `FileDescriptorSet`)
/// for a protobuf-described function, `grants` (JSON, as in the function's record), or
/// `config`, the whole configuration as the record holds it (JSON, instead of the query
/// parameters and `grants`: what `wafer deploy --spin` sends for a Spin component).
struct Upload {
    module: Bytes,
    proto: Option<String>,
    descriptor_set: Option<Bytes>,
    grants: Option<wafer_registry::Grants>,
    config: Option<wafer_registry::FunctionConfig>,
}

impl Upload {
    async fn read(request: axum::extract::Request) -> Result<Self, Error> {
        use axum::extract::FromRequest;
        let multipart = request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"multipart/form-data"));
        if !multipart {
            let module = Bytes::from_request(request, &()).await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    Error::BadBody(e.body_text())
                }
            })?;
            return Ok(Self {
                module,
                proto: None,
                descriptor_set: None,
                grants: None,
                config: None,
            });
        }
        let mut form = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|e| Error::BadRequest(e.body_text()))?;
        let mut upload = Self {
            module: Bytes::new(),
            proto: None,
            descriptor_set: None,
            grants: None,
            config: None,
        };
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| Error::BadRequest(e.body_text()))?
        {
            let part = field.name().unwrap_or("").to_owned();
            let bytes = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    Error::BadRequest(e.body_text())
                }
            })?;
            match part.as_str() {
                "module" => upload.module = bytes,
                "proto" => {
                    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        Error::BadRequest("the `proto` part is not UTF-8 text".into())
                    })?;
                    upload.proto = Some(text);
                }
                "descriptor_set" => upload.descriptor_set = Some(bytes),
                "grants" => {
                    let grants = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::BadRequest(format!("the `grants` part: {e}")))?;
                    upload.grants = Some(grants);
                }
                "config" => {
                    let config = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::BadRequest(format!("the `config` part: {e}")))?;
                    upload.config = Some(config);
                }
                other => {
                    return Err(Error::BadRequest(format!(
                        "unknown deploy part `{other}` (parts: module, proto, descriptor_set, \
                         grants, config)"
                    )))
                }
            }
        }
        Ok(upload)
    }
}

/// An upload past [`MAX_UPLOAD`]: `413`, like a function's body past its limit.
fn too_large() -> Error {
    Error::BodyTooLarge(wafer_runtime::ByteSize::b(MAX_UPLOAD as u64))
}

#[utoipa::path(delete, path = "/_wafer/functions/{name}", tag = "functions", security(("token" = [])), params(("name" = String, Path, description = "The function's name")),
    responses((status = 204, description = "Removed, with its history and key-value namespace"), (status = 404, description = "No such function")))]
async fn remove(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
) -> Result<StatusCode, Error> {
    let name = name(&raw)?;
    app.remove(&name).await?;
    tracing::info!(%name, "removed");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/_wafer/functions/{name}/rollback", tag = "functions", security(("token" = [])), params(("name" = String, Path, description = "The function's name")),
    responses((status = 200, description = "The version before the active one is active again", body = serde_json::Value), (status = 409, description = "No version before the active one")))]
async fn rollback(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let name = name(&raw)?;
    let deployed = app.functions().rollback(&name).await?;
    tracing::info!(name = %deployed.name, version = deployed.version, "rolled back");
    Ok(Json(deployed).into_response())
}

#[utoipa::path(put, path = "/_wafer/functions/{name}/traffic", tag = "functions", security(("token" = [])), params(("name" = String, Path, description = "The function's name")),
    request_body(content = serde_json::Value, description = "The split: `{\"split\": [{\"version\": 7, \"percent\": 25}, {\"version\": 6, \"percent\": 75}], \"sticky\": {\"header\": \"x-user\"}}` (2 to 4 versions with the same routes, together 100%; `sticky` optional, a `header` or a `cookie`)", content_type = "application/json"),
    responses((status = 200, description = "The split stands; the oldest member is the active version", body = serde_json::Value), (status = 400, description = "A split that cannot stand, and why")))]
async fn traffic(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let name = name(&raw)?;
    let asked: Traffic = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("the traffic split: {e}")))?;
    let sticky = asked.sticky.map(|sticky| match sticky {
        Sticky::Header(header) => Sticky::Header(header.to_ascii_lowercase()),
        cookie => cookie,
    });
    let traffic = Traffic::new(asked.split, sticky)?;
    let deployed = app.functions().set_traffic(&name, traffic).await?;
    tracing::info!(name = %deployed.name, traffic = ?deployed.traffic, "traffic split");
    Ok(Json(deployed).into_response())
}

#[utoipa::path(post, path = "/_wafer/functions/{name}/promote", tag = "functions", security(("token" = [])), params(("name" = String, Path, description = "The function's name")),
    responses((status = 200, description = "The split's newest version takes every request", body = serde_json::Value), (status = 400, description = "No traffic split")))]
async fn promote(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let name = name(&raw)?;
    let deployed = app.functions().promote(&name).await?;
    tracing::info!(name = %deployed.name, version = deployed.version, "promoted");
    Ok(Json(deployed).into_response())
}

/// Calls an operation like `POST /NAME/OPERATION` does, for functions with any routes.
#[utoipa::path(post, path = "/_wafer/functions/{name}/invoke/{operation}", tag = "calls", security(("token" = [])), params(("name" = String, Path, description = "The function's name"), ("operation" = String, Path, description = "The waPC operation or export")),
    request_body(content = Vec<u8>, description = "The payload, or the arguments as JSON"),
    responses((status = 200, description = "The answer")))]
async fn invoke(
    _: Admin,
    State(app): State<Arc<App>>,
    Path((name, operation)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let call = wafer_gateway::Call {
        method: &http::Method::POST,
        rest: &format!("/{operation}"),
        query: query.as_deref(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body,
    };
    let (result, request_id) = app.invoke_named(&name, call).await;
    let response = match result {
        Ok(answer) => answer.into_response(),
        Err(error) => error.into_response(),
    };
    match request_id {
        Some(id) => wafer_gateway::with_request_id(response, &id),
        None => response,
    }
}

#[utoipa::path(get, path = "/_wafer/pubsub", tag = "pubsub", security(("token" = [])),
    responses((status = 200, description = "Pub/sub counters per subscriber", body = serde_json::Value)))]
async fn pubsub(_: Admin, State(app): State<Arc<App>>) -> Json<wafer_host::pubsub::Stats> {
    Json(app.caps().pubsub_stats().await)
}

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    tail: Option<usize>,
    /// Only lines newer than this: a duration back from now (`10m`, `1h30m`) or an RFC 3339
    /// time.
    since: Option<String>,
    /// Keep the response open and send new lines as they are written (Server-Sent Events).
    #[serde(default)]
    follow: bool,
}

/// How often a followed log sends a keep-alive comment when nothing is written, so that the
/// connection is not closed as idle and a gone client is noticed.
const FOLLOW_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// The time `since` names: a duration back from now, or an RFC 3339 time.
fn since(text: &str) -> Result<std::time::SystemTime, Error> {
    let now = std::time::SystemTime::now();
    if let Ok(back) = humantime::parse_duration(text) {
        return Ok(now.checked_sub(back).unwrap_or(std::time::UNIX_EPOCH));
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        Error::BadRequest(format!(
            "since: `{text}` is neither a duration (like `10m` or `1h30m`) nor an RFC 3339 time \
             (like `2026-12-01T10:00:00Z`)"
        ))
    })
}

#[utoipa::path(get, path = "/_wafer/functions/{name}/logs", tag = "functions", security(("token" = [])), params(("name" = String, Path, description = "The function's name"),
        ("tail" = Option<usize>, Query, description = "How many of the newest lines (default 100)"),
        ("since" = Option<String>, Query, description = "Only lines newer than this: a duration back (`10m`) or an RFC 3339 time"),
        ("follow" = Option<bool>, Query, description = "Then stream new lines as Server-Sent Events")),
    responses((status = 200, description = "The lines, oldest first (JSON), or with `follow` a `text/event-stream`", body = serde_json::Value), (status = 404, description = "No such function")))]
async fn logs(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, Error> {
    let name = name(&raw)?;
    if app.functions().function(&name).is_none() {
        return Err(wafer_registry::RegistryError::NotFound(name.to_string()).into());
    }
    let since = q.since.as_deref().map(since).transpose()?;
    // Subscribed before the tail is read, so no line falls between the two.
    let follow = q.follow.then(|| app.logs().follow(name.as_str()));
    let mut lines = app.logs().tail(name.as_str(), q.tail.unwrap_or(100));
    if let Some(since) = since {
        lines.retain(|line| line.at() > since);
    }
    let Some(new_lines) = follow else {
        return Ok(Json(lines).into_response());
    };
    Ok(follow_response(name.to_string(), lines, new_lines))
}

/// A Server-Sent Events stream of `lines`, then of `function`'s new lines as they come: one
/// `data:` event per line, the line as JSON; a `lagged` event when the follower fell behind
/// and lines were skipped.
fn follow_response(
    function: String,
    lines: Vec<wafer_gateway::LogLine>,
    new_lines: tokio::sync::broadcast::Receiver<(Arc<str>, wafer_gateway::LogLine)>,
) -> Response {
    use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
    use tokio_stream::wrappers::{BroadcastStream, IntervalStream};
    use tokio_stream::StreamExt;

    let event = |line: &wafer_gateway::LogLine| {
        let json = serde_json::to_string(line).unwrap_or_default();
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {json}\n\n")))
    };
    let last = lines.last().map(wafer_gateway::LogLine::seq);
    let past: Vec<_> = lines.iter().map(event).collect();
    let new = BroadcastStream::new(new_lines).filter_map(move |next| match next {
        Ok((name, line)) if *name == *function && last.is_none_or(|seq| line.seq() > seq) => {
            Some(event(&line))
        }
        Ok(_) => None,
        Err(BroadcastStreamRecvError::Lagged(skipped)) => Some(Ok(Bytes::from(format!(
            "event: lagged\ndata: {skipped}\n\n"
        )))),
    });
    let mut keepalive = tokio::time::interval(FOLLOW_KEEPALIVE);
    keepalive.reset();
    let keepalive =
        IntervalStream::new(keepalive).map(|_| Ok(Bytes::from_static(b": keep-alive\n\n")));
    let stream = tokio_stream::iter(past).chain(new.merge(keepalive));
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(get, path = "/_wafer/modules/{digest}", tag = "functions", security(("token" = [])), params(("digest" = String, Path, description = "`sha256:HEX`")),
    responses((status = 200, description = "The module's bytes, checked against the digest", content_type = "application/wasm", body = Vec<u8>)))]
async fn module(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let digest: Digest = raw.parse()?;
    let bytes = app.functions().module(&digest).await?;
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/_wafer/invocations", tag = "async", security(("token" = [])), params(("limit" = Option<usize>, Query, description = "How many (default 100)")),
    responses((status = 200, description = "The newest asynchronous invocations", body = serde_json::Value)))]
async fn invocations(
    _: Admin,
    State(app): State<Arc<App>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, Error> {
    let limit = query.limit.unwrap_or(100);
    Ok(Json(app.invocations().list(limit).await?))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/_wafer/invocations/{id}", tag = "async", security(("token" = [])), params(("id" = String, Path, description = "The invocation id")),
    responses((status = 200, description = "Its state and, once finished, its result", body = serde_json::Value), (status = 404, description = "No such invocation")))]
async fn invocation(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(app.invocations().describe(&id).await?))
}

/// Every live function's counters (those of `/metrics`) and the async queue's depth, as
/// JSON: what the dashboard charts.
#[utoipa::path(get, path = "/_wafer/stats", tag = "operations", security(("token" = [])),
    responses((status = 200, description = "Every live function's counters and the async queue's depth", body = serde_json::Value)))]
async fn stats(_: Admin, State(app): State<Arc<App>>) -> Json<Value> {
    Json(app.stats().await)
}

/// `ANY /_wafer/async/NAME/REST` with the admin token (as `wafer invoke --async` sends it):
/// queues the call as the function plane's anonymous endpoint does. The token is consumed
/// here: it is never stored with the call nor forwarded to the function.
async fn enqueue(
    _: Admin,
    State(app): State<Arc<App>>,
    mut request: axum::extract::Request,
) -> Result<Response, Error> {
    request.headers_mut().remove(header::AUTHORIZATION);
    app.sanitize(request.headers_mut());
    app.enqueue(request).await
}

/// `ok`, or, while a part the node depends on is failing (it still serves), `ok: PROBLEM`.
#[utoipa::path(get, path = "/_wafer/health", tag = "operations",
    responses((status = 200, description = "`ok`, or `ok: PROBLEM`", body = String)))]
async fn health(State(app): State<Arc<App>>) -> String {
    match app.problem() {
        None => "ok\n".to_owned(),
        Some(problem) => format!("ok: {problem}\n"),
    }
}
