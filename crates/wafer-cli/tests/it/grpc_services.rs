//! A function's own protobuf service served as gRPC: the `complex` example deployed with
//! `complex.proto`, whose `service Calculator` maps `Add` and `Mul` to the waPC operations
//! `add` and `mul`, called by a gRPC client with binary protobuf, and listed by reflection.

use crate::common;

use common::{built, root, Server};
use http::uri::PathAndQuery;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[derive(Clone, PartialEq, prost::Message)]
struct Complex {
    #[prost(double, tag = "1")]
    re: f64,
    #[prost(double, tag = "2")]
    im: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Pair {
    #[prost(message, optional, tag = "1")]
    a: Option<Complex>,
    #[prost(message, optional, tag = "2")]
    b: Option<Complex>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn deploy(server: &Server, name: &str) -> std::process::Output {
    let proto = root().join("examples/complex-rust/complex.proto");
    let module = built("complex-rust.wasm");
    server.cli(&[
        "deploy",
        name,
        module.to_str().unwrap(),
        "--proto",
        proto.to_str().unwrap(),
    ])
}

/// One unary call of `/complex.Complex/METHOD`, without any token.
async fn call(channel: &Channel, method: &str, pair: Pair) -> Result<Complex, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = PathAndQuery::try_from(format!("/complex.Calculator/{method}")).unwrap();
    grpc.unary(
        Request::new(pair),
        path,
        tonic_prost::ProstCodec::<Pair, Complex>::default(),
    )
    .await
    .map(|r| r.into_inner())
}

async fn reflect(channel: &Channel, request: MessageRequest) -> MessageResponse {
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    responses
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

async fn services(channel: &Channel) -> Vec<String> {
    match reflect(channel, MessageRequest::ListServices(String::new())).await {
        MessageResponse::ListServicesResponse(list) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer: {other:?}"),
    }
}

fn c(re: f64, im: f64) -> Option<Complex> {
    Some(Complex { re, im })
}

#[test]
fn the_complex_example_answers_as_a_grpc_service() {
    let server = Server::start();
    let out = deploy(&server, "complex");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    runtime().block_on(async {
        let channel = Channel::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        // (1 + 2i)(3 + 4i) = -5 + 10i; binary protobuf in and out, no token.
        let product = call(
            &channel,
            "Mul",
            Pair {
                a: c(1.0, 2.0),
                b: c(3.0, 4.0),
            },
        )
        .await
        .unwrap();
        assert_eq!(product, Complex { re: -5.0, im: 10.0 });
        let sum = call(
            &channel,
            "Add",
            Pair {
                a: c(1.0, 2.0),
                b: c(3.0, 4.0),
            },
        )
        .await
        .unwrap();
        assert_eq!(sum, Complex { re: 4.0, im: 6.0 });
        // A method the service lacks.
        let status = call(&channel, "Div", Pair::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert_eq!(
            status.message(),
            "the service `complex.Calculator` of function `complex` has no method `Div`"
        );

        // Reflection lists it with its file (named after the function); the admin service
        // is not on the functions' listener at all.
        let names = services(&channel).await;
        assert!(
            names.contains(&"complex.Calculator".to_owned()),
            "{names:?}"
        );
        assert!(!names.contains(&"wafer.v1.Wafer".to_owned()), "{names:?}");
        let files = match reflect(
            &channel,
            MessageRequest::FileContainingSymbol("complex.Calculator".into()),
        )
        .await
        {
            MessageResponse::FileDescriptorResponse(files) => files.file_descriptor_proto,
            other => panic!("unexpected reflection answer: {other:?}"),
        };
        let file =
            <prost_types::FileDescriptorProto as prost::Message>::decode(files[0].as_slice())
                .unwrap();
        assert_eq!(file.name(), "complex.proto");
        assert_eq!(file.service[0].method.len(), 2);
    });

    // A second function cannot claim the same service.
    let out = deploy(&server, "complex2");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: the gRPC service `complex.Calculator` is served by function `complex` already; a \
         service belongs to one function (409 Conflict)"
    );

    // Removed, the service is gone from calls and reflection; the name is free again.
    let removed = server.cli(&["rm", "complex"]);
    assert!(removed.status.success());
    runtime().block_on(async {
        let channel = Channel::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let status = call(&channel, "Mul", Pair::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        let names = services(&channel).await;
        assert!(
            !names.contains(&"complex.Calculator".to_owned()),
            "{names:?}"
        );
    });
    let out = deploy(&server, "complex2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn only_a_service_whose_methods_all_map_is_served_and_types_must_agree() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let proto = dir.path().join("calc.proto");
    std::fs::write(
        &proto,
        "syntax = \"proto3\"; package calc; message M { int32 x = 1; } message N { int32 y = 1; }\n\
         service Calc { rpc Mul(M) returns (M); rpc Div(M) returns (M); }\n",
    )
    .unwrap();
    let module = built("complex-rust.wasm");
    let deploy = |name: &str, operations: &[&str]| {
        let mut args = vec!["deploy", name, module.to_str().unwrap()];
        args.extend(["--proto", proto.to_str().unwrap()]);
        for op in operations {
            args.extend(["--operation", op]);
        }
        server.cli(&args)
    };
    // `Div` maps to no operation: the service is not served, and the function deploys.
    assert!(deploy("partial", &["mul=calc.M:calc.M"]).status.success());
    runtime().block_on(async {
        let channel = Channel::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        assert!(!services(&channel).await.contains(&"calc.Calc".to_owned()));
    });
    // An operation of the method's name but other types is a mistake.
    let out = deploy("wrong", &["mul=calc.M:calc.N", "div=calc.M:calc.M"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: the method `calc.Calc/Mul` takes calc.M and returns calc.M, but the operation \
         `mul` takes calc.M and returns calc.N (400 Bad Request)"
    );
}

#[test]
fn a_stalled_grpc_message_holds_only_its_admitted_slot_and_times_out() {
    // A function's gRPC method is admitted before its message is read, the message must
    // arrive within the body timeout, and a stalled one frees its slot when it runs out.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &["serve", "--body-timeout", "5s"]);
    server.keep(dir);
    let proto = root().join("examples/complex-rust/complex.proto");
    let module = built("complex-rust.wasm");
    let out = server.cli(&[
        "deploy",
        "complex",
        module.to_str().unwrap(),
        "--proto",
        proto.to_str().unwrap(),
        "--max-concurrency",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pair = Pair {
        a: c(1.0, 2.0),
        b: c(3.0, 4.0),
    };
    runtime().block_on(async {
        use http_body_util::BodyExt;
        // Stream A: a frame header announcing 100 bytes, then nothing.
        let (stall, frames) = tokio::sync::mpsc::channel::<
            Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
        >(1);
        stall
            .send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(&[
                0, 0, 0, 0, 100,
            ]))))
            .await
            .unwrap();
        let body =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(frames));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http();
        let request = http::Request::post(format!("{}/complex.Calculator/Mul", server.url))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)
            .unwrap();
        let stalled = tokio::spawn(async move { client.request(request).await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        // B: the one slot is A's, admitted and waiting for its message; B is refused.
        let channel = Channel::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let busy = call(&channel, "Mul", pair.clone()).await.unwrap_err();
        assert_eq!(busy.code(), Code::Unavailable, "{busy:?}");
        assert!(busy.message().contains("busy"), "{busy:?}");

        // A runs out of time, and says so.
        let response = stalled.await.unwrap().unwrap();
        let headers = response.headers().clone();
        let trailers = response
            .into_body()
            .collect()
            .await
            .ok()
            .and_then(|collected| collected.trailers().cloned());
        let status = headers
            .get("grpc-status")
            .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
            .map(|v| v.to_str().unwrap().to_owned());
        let message = headers
            .get("grpc-message")
            .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-message")))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(status.is_some_and(|s| s != "0"), "{headers:?} {trailers:?}");
        assert!(
            message.contains("did%20not%20arrive") || message.contains("did not arrive"),
            "{message}"
        );
        drop(stall);

        // And the slot is free again.
        let product = call(&channel, "Mul", pair).await.unwrap();
        assert_eq!(product, Complex { re: -5.0, im: 10.0 });
    });
}
