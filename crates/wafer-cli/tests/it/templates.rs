//! Every `wafer new` template, as a new user would take it: create the project, `wafer
//! build` it with its manifest's own command, `wafer up` it, and call it over HTTP.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::WAFER;

/// `wafer ARGS` in `dir`, with Go on the PATH where Debian puts it and componentize-py where
/// scripts/setup.sh installs it.
fn wafer(dir: &Path, args: &[&str]) -> Output {
    let venv = common::root().join("target/guests/venv/bin");
    let path = format!(
        "/usr/lib/go-1.23/bin:{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(WAFER)
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap()
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Creates, builds and serves `template` as function `name`; returns the answer to `POST
/// path` with `body` (a GET when `body` is empty).
fn serve(template: &str, name: &str, path: &str, body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(name);
    let created = ok(
        &wafer(dir.path(), &["new", template, name]),
        &format!("wafer new {template}"),
    );
    assert!(
        created.contains(&format!("created {name} from the `{template}` template")),
        "{created}"
    );
    ok(
        &wafer(&project, &["build"]),
        &format!("wafer build of the {template} template"),
    );

    let mut up = Command::new(WAFER)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--data", ".wafer"])
        .current_dir(&project)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(up.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            let _ = up.kill();
            panic!("wafer up of the {template} template said {line:?}")
        });
    let client = reqwest::blocking::Client::new();
    let request = match body {
        "" => client.get(format!("{url}{path}")),
        body => client.post(format!("{url}{path}")).body(body.to_owned()),
    };
    let response = request.send().unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    let _ = up.kill();
    let _ = up.wait();
    assert_eq!(status, 200, "{template}: {text}");
    text
}

#[test]
fn rust_cgi() {
    let answer = serve("rust", "hello-rust", "/hello-rust/there", "");
    assert_eq!(answer, "Hello from hello-rust! (GET /there, 0 bytes in)\n");
}

#[test]
fn rust_http_component() {
    let answer = serve("rust-http", "hello-http", "/hello-http/x?y=1", "");
    assert_eq!(answer, "Hello from hello-http! (/hello-http/x?y=1)\n");
}

#[test]
fn rust_http_p3_component() {
    let answer = serve("rust-http-p3", "hello-p3", "/hello-p3/x?y=1", "");
    assert_eq!(answer, "Hello from hello-p3! (/hello-p3/x?y=1)\n");
}

#[test]
fn rust_wapc() {
    let answer = serve("rust-wapc", "greeter", "/greeter/hello", "you");
    assert_eq!(answer, "Hello from greeter, you!");
}

#[test]
fn go_cgi() {
    let answer = serve("go", "hello-go", "/hello-go/a", "four");
    assert_eq!(answer, "Hello from hello-go! (POST /a, 4 bytes in)\n");
}

#[test]
fn c_cgi() {
    let answer = serve("c", "hello-c", "/hello-c/b", "");
    assert_eq!(answer, "Hello from hello-c! (GET /b, 0 bytes in)\n");
}

#[test]
fn wat_cgi() {
    let answer = serve("wat", "hello-wat", "/hello-wat", "");
    assert_eq!(answer, "Hello from hello-wat!\n");
}

#[test]
fn assemblyscript_cgi() {
    let answer = serve("assemblyscript", "hello-as", "/hello-as/s", "body");
    assert_eq!(answer, "Hello from hello-as! (POST /s, 4 bytes in)\n");
}

#[test]
fn python_http_component() {
    let answer = serve("python", "hello-py", "/hello-py/p?q=2", "");
    assert_eq!(answer, "Hello from hello-py! (/hello-py/p?q=2)\n");
}

#[test]
fn js_http_component() {
    let answer = serve("js", "hello-js", "/hello-js/j?k=3", "");
    assert_eq!(answer, "Hello from hello-js! (/hello-js/j?k=3)\n");
}

#[test]
fn new_refuses_unknown_templates_bad_names_and_full_directories() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = wafer(dir.path(), &["new", "cobol", "x"]);
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no template `cobol`; the templates are: rust, rust-http"),
        "{said}"
    );

    let bad = wafer(dir.path(), &["new", "wat", "two words"]);
    assert!(!bad.status.success());

    ok(&wafer(dir.path(), &["new", "wat", "taken"]), "wafer new");
    let again = wafer(dir.path(), &["new", "wat", "taken"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists and is not empty"));

    let listed = ok(&wafer(dir.path(), &["new", "--list"]), "wafer new --list");
    for template in [
        "rust ",
        "rust-http",
        "rust-http-p3",
        "rust-wapc",
        "go ",
        "c ",
        "wat ",
        "python ",
    ] {
        assert!(listed.contains(template), "{listed}");
    }
}

#[test]
fn build_says_which_function_failed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wafer.toml"),
        "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nbuild = \"echo building; exit 3\"\n",
    )
    .unwrap();
    let failed = wafer(dir.path(), &["build"]);
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(
        said.contains("function `f`: `echo building; exit 3` failed (exit status: 3)"),
        "{said}"
    );
}
