//! The bundled examples, served by `wafer up examples/wafer.toml` exactly as the README runs them.

use crate::common;

use common::{root, Server};

#[test]
fn examples_manifest_serves_every_example() {
    let data = tempfile::tempdir().unwrap();
    let manifest = root().join("examples/wafer.toml");
    let server = Server::start_with(data.path(), &["up", manifest.to_str().unwrap()]);
    for (path, text) in [
        ("/hello-wat", "Hello from WAT!\n"),
        ("/hello-rust", "Hello from Rust!\n"),
        ("/hello-go", "Hello from Go!\n"),
        ("/hello-c", "Hello from C!\n"),
        (
            "/hello-as/x",
            "Hello from AssemblyScript! (GET /x, 0 bytes in)\n",
        ),
        ("/routes-rust/", "routes: /time, /echo/...\n"),
        (
            "/routes-rust/echo/a%20b/c",
            "route: /routes-rust/echo/..., path: /a b/c\n",
        ),
        ("/http-hello-rust", "Hello from a Rust component!\n"),
        ("/http-p3", "Hello from a WASI 0.3 component!\n"),
        ("/http-p3-py", "Hello from a Python WASI 0.3 component!\n"),
        ("/http-hello-py", "Hello from a Python component!\n"),
        ("/http-hello-js", "Hello from a JavaScript component!\n"),
    ] {
        let r = server.get(path);
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().unwrap(), text, "{path}");
    }
    for path in [
        "/watenv/x?a=1",
        "/rustenv/x?a=1",
        "/goenv/x?a=1",
        "/env?a=1",
    ] {
        let text = server.get(path).text().unwrap();
        assert!(text.contains("QUERY_STRING=a=1"), "{path}: {text}");
        assert!(text.contains("http_method=GET"), "{path}: {text}");
    }
    assert!(server
        .get("/rustenv/")
        .text()
        .unwrap()
        .contains("GREETING=hello from the manifest"));
    let now: u64 = server
        .get("/routes-rust/time")
        .text()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(now > 1_700_000_000, "/routes-rust/time: {now}");
    let post = |path: &str, body: &str| server.post(path, body);
    for sdk in ["rust", "go", "c"] {
        for visit in 1..=2 {
            let text = server
                .get(&format!("/visits-{sdk}?secret=token"))
                .text()
                .unwrap();
            let expected = format!("hi from the manifest, visit {visit}\nsecret length: 13\n");
            assert_eq!(text, expected, "visits-{sdk}");
        }
    }
    for lang in ["rust", "py", "js"] {
        for visit in 1..=2 {
            let text = server
                .get(&format!("/visits-component-{lang}?secret=token"))
                .text()
                .unwrap();
            let expected = format!("hi from the manifest, visit {visit}\nsecret token: 12 bytes\n");
            assert_eq!(text, expected, "visits-component-{lang}");
        }
    }
    // The WASI 0.3 components: streaming echoes (Rust and Python), an outbound call, and two
    // slow requests that can only finish together, in one instance at once.
    assert_eq!(post("/http-p3/echo", "streamed"), "streamed");
    assert_eq!(post("/http-p3-py/echo", "streamed"), "streamed");
    let fetched = server.get(&format!("/http-p3/fetch?url={}/hello-wat", server.url));
    assert_eq!(fetched.text().unwrap(), "Hello from WAT!\n");
    let met: Vec<String> = std::thread::scope(|scope| {
        let slow = || scope.spawn(|| server.get("/http-p3/meet?n=2&wait=20000").text().unwrap());
        let (a, b) = (slow(), slow());
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    assert!(
        met.iter().all(|m| m.starts_with("together in instance")),
        "{met:?}"
    );
    assert_eq!(met[0], met[1], "{met:?}");
    assert_eq!(post("/wapc-rust/hello", "README"), "Hello, README!");
    assert_eq!(post("/exports-rust/sum", "[3, 2]"), "5\n");
    assert_eq!(
        post("/exports-c/greet?returns=string", r#"["C"]"#),
        "Hello, C!"
    );
}

#[test]
fn manifest_errors_name_the_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wafer.toml");
    std::fs::write(
        &manifest,
        "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nrutes = [\"/a\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::WAFER)
        .args([
            "up",
            manifest.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown field `rutes`") && stderr.contains("line 4"),
        "{stderr}"
    );
}

#[test]
fn up_watch_reloads_a_changed_module() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("f.wat");
    std::fs::copy(root().join("target/wasm/hello-wat.wat"), &module).unwrap();
    let manifest = dir.path().join("wafer.toml");
    std::fs::write(
        &manifest,
        "[[function]]\nname = \"f\"\nmodule = \"f.wat\"\n",
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["up", manifest.to_str().unwrap(), "--watch"],
    );
    assert_eq!(server.get("/f").text().unwrap(), "Hello from WAT!\n");
    std::fs::copy(root().join("target/wasm/hello-c.wasm"), &module).unwrap();
    // Poll (without a time assertion) until the reload lands.
    let mut text = String::new();
    for _ in 0..100 {
        text = server.get("/f").text().unwrap();
        if text == "Hello from C!\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(text, "Hello from C!\n");
}

/// Polls `path` (without a time assertion) until its answer satisfies `ok`; returns the
/// last answer.
fn poll(server: &Server, path: &str, ok: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let mut last = (0, String::new());
    for _ in 0..150 {
        let response = server.get(path);
        last = (response.status().as_u16(), response.text().unwrap());
        if ok(last.0, &last.1) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    last
}

#[test]
fn up_watch_rebuilds_on_source_changes_and_applies_manifest_changes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let source = dir.path().join("src/f.wat");
    std::fs::copy(root().join("target/wasm/hello-wat.wat"), &source).unwrap();
    let manifest = dir.path().join("wafer.toml");
    // The "build" copies the source into place; the server watches src/.
    let entry = "[[function]]\nname = \"f\"\nmodule = \"out/f.wat\"\n\
                 build = \"mkdir -p out && cp src/f.wat out/f.wat\"\nwatch = [\"src/**/*.wat\"]\n";
    std::fs::write(&manifest, entry).unwrap();
    let built = std::process::Command::new(common::WAFER)
        .args(["build", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let server = Server::start_with(
        &dir.path().join("data"),
        &["up", manifest.to_str().unwrap(), "--watch"],
    );
    assert_eq!(server.get("/f").text().unwrap(), "Hello from WAT!\n");

    // A source change: rebuilt, redeployed.
    let wat = std::fs::read_to_string(&source).unwrap();
    let changed = wat.replace("Hello from WAT!", "Hello from src!");
    assert_ne!(wat, changed, "the WAT hello's greeting moved");
    std::fs::write(&source, changed).unwrap();
    let (_, text) = poll(&server, "/f", |_, t| t == "Hello from src!\n");
    assert_eq!(text, "Hello from src!\n");

    // A manifest change (a new route, a second function) is applied...
    let more = format!(
        "{}routes = [\"/elsewhere\"]\n\n[[function]]\nname = \"g\"\nmodule = \"out/f.wat\"\n",
        entry
    );
    std::fs::write(&manifest, &more).unwrap();
    let (status, _) = poll(&server, "/elsewhere", |s, _| s == 200);
    assert_eq!(status, 200);
    assert_eq!(poll(&server, "/g", |s, _| s == 200).0, 200);
    assert_eq!(
        server.get("/f").status(),
        404,
        "f's route moved to /elsewhere"
    );

    // ... and a function taken out of it is removed; a broken manifest changes nothing.
    std::fs::write(
        &manifest,
        &more[..more.find("\n\n[[function]]").unwrap() + 1],
    )
    .unwrap();
    assert_eq!(poll(&server, "/g", |s, _| s == 404).0, 404);
    std::fs::write(&manifest, "[[function]]\nname = 3\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(server.get("/elsewhere").status(), 200);
}
