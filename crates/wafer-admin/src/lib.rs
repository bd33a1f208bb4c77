//! Wafer's admin plane, served on its own listener (`wafer serve --admin-listen`, loopback
//! by default), never on the functions' one:
//!
//! - the admin REST API under `/_wafer/` (JSON, bearer token; [`rest`](crate) module docs
//!   list every path) and its OpenAPI document at `/_wafer/openapi.json`;
//! - the admin gRPC service `wafer.v1.Wafer` ([`proto`]) with server reflection;
//! - the dashboard at `/_wafer/ui`;
//! - invocation records, logs, `/metrics` (Prometheus) and the probes.
//!
//! A separate listener is a separate origin: no function response can script the dashboard
//! or read its token, and no function route or gRPC service can shadow an admin path. The
//! admin plane drives the gateway's function table ([`wafer_gateway::App`]); the gateway
//! knows nothing of it.
//!
//! ```no_run
//! # async fn demo(app: std::sync::Arc<wafer_gateway::App>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! wafer_admin::serve(listener, app, None, tokio::signal::ctrl_c()).await
//! # }
//! ```
#![warn(missing_docs)]

mod grpc;
mod rest;
mod ui;

use std::future::Future;
use std::sync::Arc;

use axum::response::Response;
use http::{header, HeaderValue, Request};
use hyper::body::Incoming;
use tower::ServiceExt;
use wafer_gateway::{App, Tls};

pub use grpc::proto;
pub use rest::MAX_UPLOAD;

/// The admin plane's routers.
struct Plane {
    app: Arc<App>,
    rest: axum::Router,
    grpc: axum::Router,
    reflection: axum::Router,
}

/// Serves the admin plane of `app` (HTTPS with `tls`) on `listener` until `shutdown`
/// completes, with the connection limits of the app's configuration (its own connection
/// slots: a flood of the function plane does not lock the operator out).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = impl Sized>,
) -> std::io::Result<()> {
    let plane = Arc::new(Plane {
        rest: rest::router(app.clone()),
        grpc: grpc::router(app.clone()),
        // No token needed: it describes the service, nothing of the functions.
        reflection: wafer_gateway::grpc_reflection(&[proto::DESCRIPTOR_SET]),
        app: app.clone(),
    });
    let handle = move |request, _peer| {
        let plane = plane.clone();
        async move { plane.handle(request).await }
    };
    let (config, open) = (app.config(), app.open_connections());
    wafer_gateway::serve_with(listener, config, tls, open, shutdown, handle).await
}

impl Plane {
    async fn handle(&self, request: Request<Incoming>) -> Response {
        let path = request.uri().path();
        if path == "/metrics" {
            return self.app.metrics().await;
        }
        let router = if wafer_gateway::is_grpc(&request) {
            match path.starts_with("/grpc.reflection.") {
                true => &self.reflection,
                false => &self.grpc,
            }
        } else {
            &self.rest
        };
        let mut response = match router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        // Nothing the admin plane answers is to be sniffed into something else.
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}
