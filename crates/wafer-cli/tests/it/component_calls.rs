//! Typed calls of a component's exported functions (`examples/shapes-component-rust`): JSON
//! arguments and results converted by the functions' WIT types, from the CLI, REST and gRPC.

use crate::common;

use common::{built, Server};
use tonic::metadata::MetadataValue;
use wafer_admin::proto::wafer_client::WaferClient;
use wafer_admin::proto::InvokeRequest;

const SHAPES: &str = "wafer:shapes/shapes";

fn deployed() -> Server {
    let server = Server::start();
    server.deploy_cli("shapes", &built("shapes-component-rust.wasm"), &[]);
    server
}

/// `wafer invoke shapes 'wafer:shapes/shapes#FUNC' --args ARGS`: stdout, or stderr on failure.
fn invoke(server: &Server, func: &str, args: &str) -> Result<String, String> {
    let export = format!("{SHAPES}#{func}");
    let out = server.cli(&["invoke", "shapes", &export, "--args", args]);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    match out.status.success() {
        true => Ok(text(&out.stdout)),
        false => Err(text(&out.stderr)),
    }
}

#[test]
fn every_kind_of_value_crosses_from_the_cli() {
    let server = deployed();
    let ok = |func: &str, args: &str| invoke(&server, func, args).unwrap();
    // variant with a payload -> f64
    assert_eq!(ok("area", r#"[{"circle": 2.0}]"#), "12.566370614359172");
    // variant of a tuple of records, and an enum in an option
    let rectangle = r#"{"rectangle": [{"x": 0, "y": 0}, {"x": 3, "y": 4}]}"#;
    assert_eq!(ok("area", &format!("[{rectangle}]")), "12.0");
    assert_eq!(
        ok("describe", &format!(r#"[{rectangle}, "cm"]"#)),
        r#""a rectangle of 3 cm by 4 cm""#
    );
    // option: null is none; a case without payload is its name
    assert_eq!(ok("describe", r#"["dot", null]"#), r#""a dot""#);
    // a list of records in a variant
    let triangle = r#"[{"polygon": [{"x": 0, "y": 0}, {"x": 4, "y": 0}, {"x": 0, "y": 3}]}]"#;
    assert_eq!(ok("area", triangle), "6.0");
    // result<tuple<record, record>, string>, both ways; arguments by name
    assert_eq!(
        ok(
            "bounding-box",
            r#"{"points": [{"x": 1, "y": 5}, {"x": -2, "y": 3}]}"#
        ),
        r#"{"ok":[{"x":-2.0,"y":3.0},{"x":1.0,"y":5.0}]}"#
    );
    assert_eq!(
        ok("bounding-box", r#"{"points": []}"#),
        r#"{"err":"no points"}"#
    );
    // a record with flags and an option<u8>
    assert_eq!(
        ok(
            "render",
            r#"[{"text": "hi", "style": ["bold", "italic"], "size": 12}]"#
        ),
        r#""_**hi**_ (12pt)""#
    );
    assert_eq!(
        ok("render", r#"[{"text": "hi", "style": [], "size": null}]"#),
        r#""hi""#
    );
    // string and char; s64 (also as a string of digits) and result<s64, string>
    assert_eq!(ok("count", r#"["banana", "a"]"#), "3");
    assert_eq!(ok("checked-div", r#"[7, 2]"#), r#"{"ok":3}"#);
    assert_eq!(
        ok("checked-div", r#"["-9223372036854775808", 1]"#),
        r#"{"ok":-9223372036854775808}"#
    );
    assert_eq!(
        ok("checked-div", "[7, 0]"),
        r#"{"err":"cannot divide 7 by 0"}"#
    );
    // list<u32> -> list<bool>
    assert_eq!(ok("evens", "[[1, 2, 3, 4]]"), "[false,true,false,true]");
}

#[test]
fn a_wrong_argument_names_the_parameter_and_the_type() {
    let server = deployed();
    let err = |func: &str, args: &str| invoke(&server, func, args).unwrap_err();
    let area = "func(shape: variant { circle(f64), rectangle(tuple<record { x: f64, y: f64 }, \
                record { x: f64, y: f64 }>), polygon(list<record { x: f64, y: f64 }>), dot }) \
                -> f64";
    assert_eq!(
        err("area", r#"[{"circle": "big"}]"#),
        format!(
            "error: function `shapes`: {SHAPES}#area: {area}: argument `shape`: case `circle`: \
             expected f64, got \"big\" (400 Bad Request)"
        )
    );
    assert_eq!(
        err("area", r#"[{"square": 1}]"#),
        format!(
            "error: function `shapes`: {SHAPES}#area: {area}: argument `shape`: no case \
             `square` (the cases are circle, rectangle, polygon, dot) (400 Bad Request)"
        )
    );
    let text = err("describe", r#"["dot", "km"]"#);
    assert!(
        text.contains("argument `unit`: expected one of mm, cm, m, got \"km\""),
        "{text}"
    );
    let text = err(
        "render",
        r#"[{"text": "hi", "style": ["loud"], "size": null}]"#,
    );
    assert!(
        text.contains("argument `label`: field `style`: no flag `loud` (the flags are bold, italic, underline)"),
        "{text}"
    );
    let text = err("render", r#"[{"text": "hi", "style": []}]"#);
    assert!(text.contains("field `size` is missing"), "{text}");
    let text = err("render", r#"[{"text": "hi", "style": [], "size": 300}]"#);
    assert!(
        text.contains("field `size`: expected u8, got 300"),
        "{text}"
    );
    let text = err("count", r#"["banana", "an"]"#);
    assert!(
        text.contains("argument `c`: expected char, got \"an\""),
        "{text}"
    );
    let text = err("count", r#"["banana"]"#);
    assert!(
        text.contains("takes 2 argument(s), called with 1"),
        "{text}"
    );
    let text = err("count", r#"{"text": "a", "c": "a", "extra": 1}"#);
    assert!(text.contains("has no parameter `extra`"), "{text}");
    // An unknown function lists the ones there are.
    let text = err("nope", "[]");
    assert!(
        text.contains("no exported function `wafer:shapes/shapes#nope`"),
        "{text}"
    );
    assert!(text.contains("wafer:shapes/shapes@0.1.0#evens"), "{text}");
    assert!(text.ends_with("(404 Not Found)"), "{text}");
}

#[test]
fn rest_calls_name_the_function_as_a_path() {
    let server = deployed();
    let post = |path: &str, body: &str| {
        let response = server
            .client
            .post(format!("{}{path}", server.url))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    // `pkg:iface/iface/func` below the route, or the `#` percent-encoded.
    assert_eq!(
        post("/shapes/wafer:shapes/shapes/evens", "[[2, 3]]"),
        (200, "[true,false]\n".to_owned())
    );
    assert_eq!(
        post("/shapes/wafer:shapes/shapes%23count", r#"["aaa", "a"]"#),
        (200, "3\n".to_owned())
    );
    let (status, text) = post("/shapes/wafer:shapes/shapes/evens", "not json");
    assert_eq!(status, 400);
    assert!(text.contains("the body is not valid JSON"), "{text}");
}

#[test]
fn grpc_invoke_calls_a_component_function() {
    let server = deployed();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = WaferClient::connect(server.admin_url.clone())
            .await
            .unwrap();
        let call = |args: &str| {
            let mut request = tonic::Request::new(InvokeRequest {
                function: "shapes".into(),
                operation: format!("{SHAPES}#describe"),
                payload: args.as_bytes().to_vec(),
                content_type: "application/json".into(),
                returns: String::new(),
            });
            let token: MetadataValue<_> = format!("Bearer {}", server.token).parse().unwrap();
            request.metadata_mut().insert("authorization", token);
            request
        };
        let answer = client
            .invoke(call(r#"[{"circle": 1.5}, "mm"]"#))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.payload, b"\"a circle of radius 1.5 mm\"\n");
        assert_eq!(answer.content_type, "application/json");
        let status = client
            .invoke(call(r#"[{"circle": 1.5}, "furlong"]"#))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("expected one of mm, cm, m"),
            "{status:?}"
        );
    });
}
