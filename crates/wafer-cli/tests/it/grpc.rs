//! The gRPC service through its generated client, on the server's HTTP port: every method,
//! reflection, the token check, and a corrupted module refused on fetch.

use crate::common;

use common::{built, Server};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};
use wafer_admin::proto::wafer_client::WaferClient;
use wafer_admin::proto::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn client(server: &Server) -> WaferClient<Channel> {
    WaferClient::connect(server.admin_url.clone())
        .await
        .unwrap()
}

/// A request with the admin token.
fn authed<T>(server: &Server, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let token: MetadataValue<_> = format!("Bearer {}", server.token).parse().unwrap();
    request.metadata_mut().insert("authorization", token);
    request
}

async fn invoke(
    server: &Server,
    client: &mut WaferClient<Channel>,
    request: InvokeRequest,
) -> Result<InvokeResponse, tonic::Status> {
    client
        .invoke(authed(server, request))
        .await
        .map(|r| r.into_inner())
}

/// An Invoke of `function`'s `operation` with `payload` as `content_type`.
fn call(function: &str, operation: &str, payload: &[u8], content_type: &str) -> InvokeRequest {
    InvokeRequest {
        function: function.into(),
        operation: operation.into(),
        payload: payload.to_vec(),
        content_type: content_type.into(),
        returns: String::new(),
    }
}

fn deploy_stream(name: &str, module: &[u8], limits: Option<Limits>) -> Vec<DeployRequest> {
    let mut messages = vec![DeployRequest {
        part: Some(deploy_request::Part::Metadata(DeployMetadata {
            name: name.into(),
            routes: Vec::new(),
            env: Default::default(),
            limits,
            schema: None,
            abi: String::new(),
            grants: None,
            entrypoint: String::new(),
            ..Default::default()
        })),
    }];
    for chunk in module.chunks(7000) {
        messages.push(DeployRequest {
            part: Some(deploy_request::Part::Chunk(chunk.to_vec())),
        });
    }
    messages
}

async fn deploy(
    server: &Server,
    client: &mut WaferClient<Channel>,
    name: &str,
    module: &[u8],
    limits: Option<Limits>,
) -> Result<Deployed, tonic::Status> {
    let stream = tokio_stream::iter(deploy_stream(name, module, limits));
    client
        .deploy(authed(server, stream))
        .await
        .map(|r| r.into_inner())
}

#[test]
fn every_method_through_the_generated_client() {
    // The server (and its blocking HTTP client) live outside the async runtime.
    let server = Server::start();
    runtime().block_on(async {
        let mut client = client(&server).await;
        let wapc = std::fs::read(built("wapc-rust.wasm")).unwrap();

        let first = deploy(&server, &mut client, "wapc", &wapc, None)
            .await
            .unwrap();
        assert_eq!(
            (first.name.as_str(), first.version, first.unchanged),
            ("wapc", 1, false)
        );
        assert!(first.digest.starts_with("sha256:"));
        let again = deploy(&server, &mut client, "wapc", &wapc, None)
            .await
            .unwrap();
        assert!(again.unchanged);
        let limits = Limits {
            timeout: "2s".into(),
            ..Default::default()
        };
        let second = deploy(&server, &mut client, "wapc", &wapc, Some(limits))
            .await
            .unwrap();
        assert_eq!(second.version, 2);

        // HTTP sees what gRPC deployed.
        let pong = tokio::task::block_in_place(|| {
            server
                .client
                .post(format!("{}/wapc/ping", server.url))
                .send()
                .unwrap()
                .text()
                .unwrap()
        });
        assert_eq!(pong, "pong");

        let listed = client
            .list(authed(&server, ListRequest {}))
            .await
            .unwrap()
            .into_inner();
        let summary = listed.functions.iter().find(|f| f.name == "wapc").unwrap();
        assert_eq!((summary.version, summary.versions), (2, 2));
        assert_eq!(summary.routes, ["/wapc/..."]);
        assert!(summary.error.is_empty());
        assert_eq!(summary.abi, "wapc");

        let record = client
            .get(authed(
                &server,
                GetRequest {
                    name: "wapc".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(record.active, 2);
        assert_eq!(record.versions.len(), 2);
        assert!(record.versions.iter().all(|v| v.abi == "wapc"));

        let answer = invoke(&server, &mut client, call("wapc", "hello", b"gRPC", ""))
            .await
            .unwrap();
        assert_eq!(answer.payload, b"Hello, gRPC!");
        assert_eq!(answer.content_type, "application/octet-stream");
        assert!(!answer.request_id.is_empty());
        let unknown = invoke(&server, &mut client, call("wapc", "nope", b"", ""))
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        assert!(unknown.message().contains("unknown operation `nope`"));
        let failed = invoke(&server, &mut client, call("wapc", "fail", b"xy", ""))
            .await
            .unwrap_err();
        assert_eq!(failed.code(), Code::Internal);
        assert!(failed.message().contains("refusing 2 bytes"), "{failed:?}");

        let exports = std::fs::read(built("exports-rust.wasm")).unwrap();
        deploy(&server, &mut client, "ex", &exports, None)
            .await
            .unwrap();
        let export = |operation: &str, payload: &str, returns: &str| InvokeRequest {
            function: "ex".into(),
            operation: operation.into(),
            payload: payload.as_bytes().to_vec(),
            content_type: "application/json".into(),
            returns: returns.into(),
        };
        let sum = client
            .invoke(authed(&server, export("sum", "[3, 2]", "")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (sum.payload.as_slice(), sum.content_type.as_str()),
            (&b"5\n"[..], "application/json")
        );
        let greeting = client
            .invoke(authed(&server, export("greet", r#"["gRPC"]"#, "string")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(greeting.payload, b"Hello, gRPC!");
        let wrong = client
            .invoke(authed(&server, export("sum", "[3]", "")))
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::InvalidArgument);
        assert!(wrong.message().contains("sum(i32, i32) -> i32"));

        // GetModule streams the module back, verified.
        let mut chunks = client
            .get_module(authed(
                &server,
                GetModuleRequest {
                    digest: first.digest.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let mut fetched = Vec::new();
        let mut count = 0;
        while let Some(chunk) = chunks.next().await {
            fetched.extend(chunk.unwrap().data);
            count += 1;
        }
        assert_eq!(fetched, wapc);
        assert!(count >= 1);

        let rolled = client
            .rollback(authed(
                &server,
                RollbackRequest {
                    name: "wapc".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rolled.version, 1);
        let rolled = client
            .rollback(authed(
                &server,
                RollbackRequest {
                    name: "wapc".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(rolled.code(), Code::FailedPrecondition);

        client
            .delete(authed(
                &server,
                DeleteRequest {
                    name: "wapc".into(),
                },
            ))
            .await
            .unwrap();
        let gone = client
            .get(authed(
                &server,
                GetRequest {
                    name: "wapc".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
        let invalid = client
            .get(authed(
                &server,
                GetRequest {
                    name: "../etc".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(invalid.code(), Code::InvalidArgument);
    });
}

#[test]
fn protobuf_described_function_over_grpc() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = client(&server).await;
        let proto =
            std::fs::read_to_string(common::root().join("examples/complex-rust/complex.proto"))
                .unwrap();
        deploy_complex(&server, &mut client, &proto).await;
        let answer = invoke(
            &server,
            &mut client,
            call(
                "complex",
                "mul",
                br#"{"a": {"re": 1, "im": 2}, "b": {"re": 3, "im": 4}}"#,
                "application/json",
            ),
        )
        .await
        .unwrap();
        assert_eq!(answer.content_type, "application/json");
        let product: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        assert_eq!(product, serde_json::json!({"re": -5.0, "im": 10.0}));
        let invalid = invoke(
            &server,
            &mut client,
            call(
                "complex",
                "mul",
                br#"{"a": {"re": true}}"#,
                "application/json",
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert!(invalid.message().contains("complex.Pair"), "{invalid:?}");
    });
}

#[test]
fn bad_deploys_and_modules() {
    // The server (and its blocking HTTP client) live outside the async runtime.
    let server = Server::start();
    runtime().block_on(async {
        let mut client = client(&server).await;

        let bad = deploy(&server, &mut client, "bad", b"\0asm\x01\0\0\0garbage", None)
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().contains("invalid wasm module"), "{bad:?}");
        let no_metadata = tokio_stream::iter(vec![DeployRequest {
            part: Some(deploy_request::Part::Chunk(b"(module)".to_vec())),
        }]);
        let err = client
            .deploy(authed(&server, no_metadata))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("metadata"));
        // Bad limits, and instance reuse (which the registry keeps to HTTP components).
        let bad_limits = [
            (
                Limits {
                    memory: "lots".into(),
                    ..Default::default()
                },
                "invalid deploy parameters",
            ),
            (
                Limits {
                    instance_reuse: 5,
                    ..Default::default()
                },
                "instance_reuse = 5 is for HTTP components",
            ),
        ];
        for (limits, message) in bad_limits {
            let err = deploy(&server, &mut client, "bad", b"(module)", Some(limits))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.message().contains(message), "{err:?}");
        }

        // A module whose stored bytes no longer match their digest is reported, not returned.
        let module = std::fs::read(built("exports-c.wasm")).unwrap();
        let deployed = deploy(&server, &mut client, "victim", &module, None)
            .await
            .unwrap();
        let hex = deployed.digest.strip_prefix("sha256:").unwrap();
        let blob = server
            .data
            .join("modules/sha256")
            .join(format!("{hex}.wasm"));
        let mut bytes = std::fs::read(&blob).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&blob, bytes).unwrap();
        let err = client
            .get_module(authed(
                &server,
                GetModuleRequest {
                    digest: deployed.digest.clone(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{err:?}");
        assert!(err.message().contains(hex), "{err:?}");
        for (digest, code) in [
            ("sha256:nothex", Code::InvalidArgument),
            (
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                Code::NotFound,
            ),
        ] {
            let err = client
                .get_module(authed(
                    &server,
                    GetModuleRequest {
                        digest: digest.into(),
                    },
                ))
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{digest}: {err:?}");
        }
    });
}

#[test]
fn calls_without_the_token_are_refused_and_change_nothing() {
    // The server (and its blocking HTTP client) live outside the async runtime.
    let server = Server::start();
    runtime().block_on(async {
        let mut client = client(&server).await;
        let err = client.list(ListRequest {}).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        let mut wrong = Request::new(ListRequest {});
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(
            client.list(wrong).await.unwrap_err().code(),
            Code::Unauthenticated
        );
        let module = std::fs::read(built("hello-wat.wat")).unwrap();
        let stream = tokio_stream::iter(deploy_stream("sneaky", &module, None));
        let err = client.deploy(stream).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        let status = tokio::task::block_in_place(|| server.get("/sneaky").status());
        assert_eq!(status, 404);
    });
}

#[test]
fn reflection_lists_the_service() {
    // The server (and its blocking HTTP client) live outside the async runtime.
    let server = Server::start();
    runtime().block_on(async {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let channel = Channel::from_shared(server.admin_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"wafer.v1.Wafer".to_owned()), "{names:?}");

    // The service's file descriptor is there for generic clients to build calls from.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "wafer.v1.Wafer".into(),
        )),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );
    });
}

#[test]
fn grants_over_grpc_are_applied_and_listed_with_secrets_masked() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = client(&server).await;
        let module = std::fs::read(built("visits-go.wasm")).unwrap();
        let mut messages = deploy_stream("visits", &module, None);
        let Some(deploy_request::Part::Metadata(metadata)) = &mut messages[0].part else {
            unreachable!("the first message is the metadata")
        };
        metadata.grants = Some(Grants {
            kv: true,
            config: [("greeting".to_owned(), "ahoy".to_owned())].into(),
            secrets: [("token".to_owned(), "hunter2".to_owned())].into(),
            ..Default::default()
        });
        client
            .deploy(authed(&server, tokio_stream::iter(messages)))
            .await
            .unwrap();
        let text = tokio::task::block_in_place(|| {
            let get = || server.get("/visits?secret=token").text().unwrap();
            (get(), get())
        });
        assert_eq!(text.0, "ahoy, visit 1\nsecret length: 7\n");
        assert_eq!(text.1, "ahoy, visit 2\nsecret length: 7\n");
        let listed = client
            .list(authed(&server, ListRequest {}))
            .await
            .unwrap()
            .into_inner();
        let grants = listed.functions[0].grants.clone().unwrap();
        assert!(grants.kv);
        assert_eq!(grants.secrets["token"], "********");
        assert!(!format!("{listed:?}").contains("hunter2"));

        // A bad grant is refused with the reason, and changes nothing.
        let mut messages = deploy_stream("visits", &module, None);
        let Some(deploy_request::Part::Metadata(metadata)) = &mut messages[0].part else {
            unreachable!("the first message is the metadata")
        };
        metadata.grants = Some(Grants {
            http: vec!["ftp://files.example.com".into()],
            ..Default::default()
        });
        let err = client
            .deploy(authed(&server, tokio_stream::iter(messages)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("scheme `ftp`"), "{}", err.message());
    });
}

#[test]
fn a_guest_that_sleeps_past_its_timeout_is_deadline_exceeded() {
    let server = Server::start();
    let sleep = common::guest("sleep.wat");
    server.deploy("sleepy", &sleep, &[("abi", "wapc"), ("timeout", "300ms")]);
    runtime().block_on(async {
        let mut client = client(&server).await;
        let status = invoke(&server, &mut client, call("sleepy", "op", b"", ""))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("time limit"), "{status:?}");
    });
}

/// Deploys the complex example over gRPC with `proto` and its `mul` operation.
async fn deploy_complex(server: &Server, client: &mut WaferClient<Channel>, proto: &str) {
    let module = std::fs::read(built("complex-rust.wasm")).unwrap();
    let types = OperationTypes {
        input: "complex.Pair".into(),
        output: "complex.Complex".into(),
    };
    let mut messages = deploy_stream("complex", &module, None);
    if let Some(deploy_request::Part::Metadata(metadata)) = &mut messages[0].part {
        metadata.schema = Some(Schema {
            source: Some(schema::Source::Proto(proto.to_owned())),
            operations: [("mul".to_owned(), types)].into(),
        });
    }
    client
        .deploy(authed(server, tokio_stream::iter(messages)))
        .await
        .unwrap();
}

#[test]
fn a_schema_deployed_after_rm_replaces_the_old_one() {
    let server = Server::start();
    let proto = std::fs::read_to_string(common::root().join("examples/complex-rust/complex.proto"))
        .unwrap();
    // The same wire format, other field names: `x` and `y` instead of `a` and `b`.
    let renamed = proto
        .replace("Complex a = 1;", "Complex x = 1;")
        .replace("Complex b = 2;", "Complex y = 2;");
    let pair = |first: &str, second: &str| {
        format!(r#"{{"{first}": {{"re": 1, "im": 2}}, "{second}": {{"re": 3, "im": 4}}}}"#)
    };
    runtime().block_on(async {
        let mut client = client(&server).await;
        deploy_complex(&server, &mut client, &proto).await;
        let mul = |body: String| call("complex", "mul", body.as_bytes(), "application/json");
        invoke(&server, &mut client, mul(pair("a", "b")))
            .await
            .unwrap();
        assert!(server.cli(&["rm", "complex"]).status.success());
        // Version 1 again, with the renamed schema.
        deploy_complex(&server, &mut client, &renamed).await;
        let answer = invoke(&server, &mut client, mul(pair("x", "y")))
            .await
            .unwrap();
        let product: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        assert_eq!(product, serde_json::json!({"re": -5.0, "im": 10.0}));
        let old = invoke(&server, &mut client, mul(pair("a", "b")))
            .await
            .unwrap_err();
        assert_eq!(old.code(), Code::InvalidArgument, "{old:?}");
    });
}

/// A canary deploy, a split and promote, through gRPC.
#[test]
fn traffic_splits_through_the_generated_client() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = client(&server).await;
        let wapc = std::fs::read(built("wapc-rust.wasm")).unwrap();
        deploy(&server, &mut client, "wapc", &wapc, None)
            .await
            .unwrap();
        let mut stream = deploy_stream(
            "wapc",
            &wapc,
            Some(Limits {
                timeout: "2s".into(),
                ..Default::default()
            }),
        );
        if let Some(deploy_request::Part::Metadata(metadata)) = &mut stream[0].part {
            metadata.canary = 10;
            metadata.sticky = Some(Sticky {
                by: Some(sticky::By::Header("X-User".into())),
            });
        }
        let canary = client
            .deploy(authed(&server, tokio_stream::iter(stream)))
            .await
            .unwrap()
            .into_inner();
        let split = canary.traffic.unwrap();
        let shares: Vec<(u32, u32)> = split.split.iter().map(|s| (s.version, s.percent)).collect();
        assert_eq!((canary.version, shares), (2, vec![(2, 10), (1, 90)]));
        assert_eq!(
            split.sticky.unwrap().by,
            Some(sticky::By::Header("x-user".into()))
        );

        let even = Traffic {
            split: vec![
                Share {
                    version: 1,
                    percent: 50,
                },
                Share {
                    version: 2,
                    percent: 40,
                },
            ],
            sticky: None,
        };
        let refused = client
            .set_traffic(authed(
                &server,
                SetTrafficRequest {
                    name: "wapc".into(),
                    traffic: Some(even),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("add up to 90%"), "{refused:?}");

        let list = client
            .list(authed(&server, ListRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.functions[0].traffic.as_ref().unwrap().split.len(), 2);
        let promoted = client
            .promote(authed(
                &server,
                PromoteRequest {
                    name: "wapc".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((promoted.version, promoted.traffic), (2, None));
        let record = client
            .get(authed(
                &server,
                GetRequest {
                    name: "wapc".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((record.active, record.traffic), (2, None));
    });
}
