//! Delivering published messages: each subscribed function is called once per message.
//!
//! - A CGI program gets a `POST` to `SCRIPT_NAME/_message` with the message as its body,
//!   `CONTENT_TYPE=application/octet-stream`, and the topic in `WAFER_TOPIC` (and, as a
//!   request header would be, `HTTP_X_WAFER_TOPIC`). A non-2xx status counts as a failure.
//! - A waPC program gets operation `on_message` with `{"topic": T, "message": "..."}` (or
//!   `message_base64`) as its payload.
//!
//! - A component gets a call of its `wafer:pubsub/subscriber` export, `on-message(topic,
//!   message)`; an `err` counts as a failure.
//!
//! Failures land in the subscriber's log with a request id, like any failed call.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use wafer_host::{Deliver, Delivery, Message};
use wafer_registry::FunctionName;
use wafer_runtime::Abi;

use crate::error::Error;
use crate::invoke::Call;
use crate::live::{Function, Resolved};
use crate::{runnable, App};

/// The waPC operation a message arrives as.
pub const ON_MESSAGE: &str = "on_message";

impl Deliver for App {
    fn subscribers(&self, topic: &str) -> Vec<FunctionName> {
        self.functions
            .subscribers(topic)
            .iter()
            .map(|f| f.name.clone())
            .collect()
    }

    fn deliver(
        self: Arc<Self>,
        function: FunctionName,
        message: Message,
    ) -> Pin<Box<dyn Future<Output = Delivery> + Send>> {
        let span = crate::spans::deliver(function.as_str(), &message);
        let delivery = async move {
            let subscribed = |f: &Arc<Function>| {
                let patterns = &f.config.grants.subscribe;
                patterns.iter().any(|p| p.matches(&message.topic))
            };
            // A traffic split shares deliveries as it shares requests (the active version
            // takes those of a version not subscribed to the topic).
            let subscribed = self
                .functions
                .function(&function)
                .map(|active| {
                    let version = self.functions.version_for(active.clone(), None);
                    if subscribed(&version) {
                        version
                    } else {
                        active
                    }
                })
                .filter(subscribed);
            let Some(function) = subscribed else {
                return Delivery::Gone;
            };
            let request_id = self.request_id();
            match self.deliver_to(&function, message, &request_id).await {
                Ok(()) => {
                    function.metrics().delivered();
                    Delivery::Delivered
                }
                Err(error) => {
                    self.log_failure(&function, &request_id, &error);
                    let span = tracing::Span::current();
                    span.record("otel.status_code", "error");
                    span.record("otel.status_description", error.to_string());
                    Delivery::Failed(error.to_string())
                }
            }
        };
        match span.is_none() {
            true => Box::pin(delivery),
            false => Box::pin(tracing::Instrument::instrument(delivery, span)),
        }
    }
}

impl App {
    async fn deliver_to(
        &self,
        function: &Arc<Function>,
        message: Message,
        request_id: &str,
    ) -> Result<(), Error> {
        let program = runnable(function)?;
        let _admission = self.admission(function).await?;
        match program.abi() {
            Abi::Service => Err(Error::Delivery(
                "a service does not take messages; it serves its own socket".into(),
            )),
            Abi::Exports => Err(Error::Delivery(
                "functions called by their plain exports do not take messages: subscribe a \
                 CGI, waPC or component function"
                    .into(),
            )),
            Abi::Http => {
                let component = program.as_http().ok_or_else(|| {
                    Error::Delivery("the program is not an HTTP component".into())
                })?;
                let options = self.component_options(function, request_id, message.hops);
                let delivered = component
                    .deliver(&options, &message.topic, &message.body)
                    .await;
                self.logs.append_call(
                    function,
                    request_id,
                    &delivered.log,
                    delivered.log_truncated,
                );
                delivered
                    .result
                    .map_err(|e| Error::Delivery(format!("the subscriber failed: {e}")))
            }
            Abi::Cgi => {
                let script = function.config.routes[0].pattern().0.to_owned();
                let mut request = Request::builder()
                    .method(Method::POST)
                    .uri(format!("{script}/_message"))
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(())
                    .map_err(|e| Error::BadRequest(format!("cannot build the delivery: {e}")))?;
                if let Ok(topic) = HeaderValue::from_str(&message.topic) {
                    request.headers_mut().insert("x-wafer-topic", topic);
                }
                // The subscriber sees the delivery's trace context (`HTTP_TRACEPARENT`).
                wafer_host::trace::inject_headers(request.headers_mut());
                let (parts, ()) = request.into_parts();
                let resolved = Resolved {
                    function: function.clone(),
                    route: 0,
                    script_name_len: script.len(),
                };
                let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                let inputs = program.inputs();
                let hops = message.hops;
                let mut request = crate::cgi::request(
                    &parts,
                    message.body,
                    peer,
                    self.local,
                    self.https(),
                    &resolved,
                    inputs,
                )?;
                if inputs.env {
                    request.env.push(("WAFER_TOPIC".to_owned(), message.topic));
                }
                let response = self
                    .call_cgi(function, program, request, false, request_id, hops)
                    .await?;
                if !response.status().is_success() {
                    return Err(Error::Delivery(format!(
                        "the subscriber answered {}",
                        response.status()
                    )));
                }
                Ok(())
            }
            Abi::Wapc => {
                let payload = message.to_json();
                let call = Call {
                    method: &Method::POST,
                    rest: &format!("/{ON_MESSAGE}"),
                    query: None,
                    content_type: Some("application/json"),
                    body: Bytes::from(payload),
                };
                self.invoke(function, program, call, request_id, message.hops)
                    .await
                    .map(drop)
            }
        }
    }
}
