//! Calling HTTP components (`wasi:http/incoming-handler`): the request streams in, the
//! response streams out, and the instance (and its slot under the concurrency limit) lives
//! until the guest has written the whole body.
//!
//! The request body is cut off at the function's `request_body` limit: a declared length over
//! it is refused up front with `413`; a body that grows past it ends with an error the guest
//! sees as `HTTP-request-body-size`. A guest that traps, times out or returns without a
//! response gets `500`/`504` and a log line; a failure after the response has started ends
//! the body early and is logged.

use std::sync::Arc;

use crate::live::{Admission, Function};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use wafer_runtime::{Done, Finished, HttpComponent, HttpOptions};

use crate::error::Error;
use crate::App;

impl App {
    /// How to run one call of the component `function`: its environment, limits, outbound
    /// policy, directories, and a host for its capability calls if it imports any.
    pub(crate) fn component_options(
        &self,
        function: &Arc<Function>,
        request_id: &str,
        hops: u32,
    ) -> HttpOptions {
        let config = &function.config;
        let uses_capabilities = function
            .program()
            .is_ok_and(|program| program.inputs().host_calls);
        HttpOptions {
            env: config
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits: config.limits,
            outbound: (!config.grants.http.is_empty()).then(|| {
                self.caps.outbound(&function.deployment) as Arc<dyn wafer_runtime::Outbound>
            }),
            host: uses_capabilities.then(|| self.host_calls(function, request_id, hops)),
            dirs: crate::preopens(function),
            https: self.https(),
            sockets: sockets(&config.grants),
        }
    }

    pub(crate) async fn call_http<B>(
        &self,
        function: &Arc<Function>,
        component: &HttpComponent,
        request: Request<B>,
        admission: Admission,
        request_id: &str,
    ) -> Result<Response, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let config = &function.config;
        let limit = config.limits.request_body;
        if hyper::body::Body::size_hint(request.body()).lower() > limit.as_u64() {
            return Err(Error::BodyTooLarge(limit));
        }
        let max = usize::try_from(limit.as_u64()).unwrap_or(usize::MAX);
        let request = request.map(|body| {
            Limited::new(body, max).map_err(move |e| match e.downcast::<hyper::Error>() {
                Ok(e) => wasmtime_wasi_http::Error::Hyper(*e),
                Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit.as_u64())),
            })
        });
        let options = self.component_options(function, request_id, 0);
        let handled = component
            .handle(request, &options, function.instances())
            .await;
        let name = function.name.to_string();
        match handled.response {
            Ok(response) => {
                // The guest runs on while the body streams; its log and its slot are released
                // when it is done.
                let (logs, id) = (self.logs.clone(), request_id.to_owned());
                let function = function.clone();
                let finish = move |finished: Option<Finished>| {
                    drop(admission);
                    if let Some(finished) = finished {
                        logs.append_call(&function, &id, &finished.log, finished.log_truncated);
                        if let Err(fault) = finished.result {
                            let line = format!("the response body was cut short: {fault}");
                            logs.note(&name, &id, &line);
                            tracing::warn!(request_id = id, "function `{name}`: {line}");
                        }
                    }
                };
                match handled.done {
                    Done::Ended(finished) => finish(Some(finished)),
                    running => drop(tokio::spawn(async move { finish(running.wait().await) })),
                }
                Ok(response.map(Body::new))
            }
            Err(unanswered) => {
                let finished = handled.done.wait().await;
                drop(admission);
                let fault = match finished {
                    Some(finished) => {
                        self.logs.append_call(
                            function,
                            request_id,
                            &finished.log,
                            finished.log_truncated,
                        );
                        finished.result.err().unwrap_or(unanswered)
                    }
                    None => unanswered,
                };
                Err(Error::Guest { name, fault })
            }
        }
    }
}

/// TCP connections a component may open: to addresses the outbound rules of scheme `tcp`
/// or `*` allow (Spin's rule for `wasi:sockets`).
fn sockets(grants: &wafer_registry::Grants) -> Option<wafer_runtime::SocketCheck> {
    let rules: Vec<_> = grants
        .outbound
        .iter()
        .filter(|r| r.scheme.as_deref().is_none_or(|s| s == "tcp"))
        .cloned()
        .collect();
    if rules.is_empty() {
        return None;
    }
    Some(Arc::new(move |addr: std::net::SocketAddr| {
        let ip = addr.ip().to_string();
        rules.iter().any(|r| r.allows("tcp", &ip, addr.port()))
    }))
}
