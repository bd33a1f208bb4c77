//! Functions' own gRPC services: a unary method of a service a function's schema declares
//! (`/pkg.Service/Method`) runs the function's operation of that name, the request message
//! as its payload; and server reflection (`grpc.reflection.v1` and `v1alpha`) of those
//! services. No token: like a function's HTTP route, its service is public. The admin
//! service `wafer.v1.Wafer` is not here: it is served on the admin listener (`wafer-admin`).

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::App;

/// Server reflection (`grpc.reflection.v1` and `v1alpha`) of the services in the encoded
/// descriptor sets `descriptors`: the functions' own (each file named after its function)
/// on the function plane, `wafer.v1.Wafer` on the admin plane.
pub fn reflection(descriptors: &[&[u8]]) -> axum::Router {
    let reflection = || {
        descriptors.iter().fold(
            tonic_reflection::server::Builder::configure(),
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
    let refuse = |error: Error| status(error).into_http::<axum::body::Body>();
    // Admitted first, then the message read within the function's limit (and its 5-byte
    // frame) and the server's body timeout, as for an HTTP call: what a flood of streams
    // holds in memory is bounded by the calls that can run, not by the streams opened.
    let admission = match app.admission(&function).await {
        Ok(admission) => admission,
        Err(error) => return refuse(error),
    };
    let limit = function.config.limits.request_body.as_u64();
    let (parts, body) = request.into_parts();
    let timeout = app.config.body_timeout;
    let body = match tokio::time::timeout(timeout, crate::read_body(body, limit + FRAME)).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => return refuse(error),
        Err(_) => return refuse(Error::BodyTimeout(timeout)),
    };
    let request = http::Request::from_parts(parts, http_body_util::Full::new(body));
    let mut grpc = tonic::server::Grpc::new(Raw)
        .max_decoding_message_size(usize::try_from(limit).unwrap_or(usize::MAX))
        .max_encoding_message_size(usize::MAX);
    let (function, operation, admission) = (&function, operation.as_str(), &admission);
    let service = tower::service_fn(move |request: Request<Bytes>| async move {
        app.call_method(function, operation, request.into_inner(), admission)
            .await
            .map(Response::new)
            .map_err(status)
    });
    grpc.unary(service, request)
        .await
        .map(axum::body::Body::new)
}

/// A gRPC message's frame: a compression flag and a 4-byte length.
const FRAME: u64 = 5;

/// The gRPC status for an error, by the HTTP status the same error gets (for gRPC services
/// built on the gateway, such as the admin plane's).
pub fn status(error: Error) -> Status {
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
