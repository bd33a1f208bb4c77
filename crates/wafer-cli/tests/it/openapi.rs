//! The admin API's OpenAPI document at `/_wafer/openapi.json`, generated from the handlers:
//! every operation it lists is served (none falls through to "no route"), and every endpoint
//! docs/admin-api.md lists is in it.

use crate::common;

use common::{built, Server};
use reqwest::Method;

#[test]
fn the_document_lists_what_is_served_and_what_the_docs_describe() {
    let server = Server::start();
    server.deploy("hello", &built("hello-wat.wat"), &[]);
    let response = server.get_admin("/_wafer/openapi.json");
    assert_eq!(response.status(), 200, "the document needs no token");
    let doc: serde_json::Value = response.json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();

    // Every documented operation answers (with dummy parameters), not the fallback's 404.
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase(), path.clone()));
            let concrete = path
                .replace("{name}", "hello")
                .replace("{operation}", "nope")
                .replace("{digest}", "sha256:00")
                .replace("{id}", "nope")
                .replace("{file}", "app.js");
            let method: Method = method.to_uppercase().parse().unwrap();
            // PUT and DELETE on `hello` would change it: use a name that does not exist.
            let concrete = if method == Method::PUT || method == Method::DELETE {
                concrete.replace("/hello", "/absent")
            } else {
                concrete
            };
            let answer = server
                .admin(method.clone(), concrete.trim_start_matches("/_wafer/"))
                .send()
                .unwrap();
            let status = answer.status();
            let text = answer.text().unwrap_or_default();
            assert!(
                !(status == 404 && text.contains("no function is served")),
                "{method} {concrete} is documented but not served: {status} {text}"
            );
            assert_ne!(status, 405, "{method} {concrete}: method not allowed");
        }
    }

    // Every endpoint of docs/admin-api.md's table is documented (but the async one, whose
    // path of any depth OpenAPI cannot express).
    let docs = std::fs::read_to_string(common::root().join("docs/admin-api.md")).unwrap();
    for line in docs.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('`').nth(1).unwrap();
        let Some((method, path)) = cell.split_once(' ') else {
            continue;
        };
        if !path.starts_with("/_wafer/") || path.starts_with("/_wafer/async/") {
            continue;
        }
        let path = path.split('?').next().unwrap();
        let templated = path
            .replace("NAME", "{name}")
            .replace("OP", "{operation}")
            .replace("sha256:HEX", "{digest}")
            .replace("ID", "{id}");
        for method in method.split('/') {
            if method == "ANY" {
                continue;
            }
            assert!(
                operations.contains(&(method.to_owned(), templated.clone())),
                "docs/admin-api.md lists `{method} {path}`, the OpenAPI document does not: {operations:?}"
            );
        }
    }
}
