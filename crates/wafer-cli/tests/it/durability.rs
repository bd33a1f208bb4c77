//! Durability of the registry in the data directory: restarts reuse compiled
//! artifacts, SIGKILL in the middle of deploys leaves a consistent registry,
//! corrupt blobs are detected, and invalid uploads change nothing.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use common::{built, Server};
use reqwest::Method;

const HELLOS: [&str; 4] = [
    "Hello from WAT!",
    "Hello from C!",
    "Hello from Rust!",
    "Hello from Go!",
];

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            (path, mtime)
        })
        .collect()
}

fn get_text(server: &Server, path: &str) -> (u16, String) {
    let response = server.get(path);
    (response.status().as_u16(), response.text().unwrap())
}

/// The hex digest from a deploy response's `digest` ("sha256:HEX").
fn hex(deployed: &serde_json::Value) -> String {
    let digest = deployed["digest"].as_str().expect("digest");
    digest.strip_prefix("sha256:").unwrap_or(digest).to_owned()
}

/// Checks that every blob under DATA/modules/sha256 hashes to its file name, and every
/// compiled artifact with a recorded digest to that digest.
fn check_blobs(data: &Path) {
    for sidecar in files_under(&data.join("artifacts")) {
        let Some(artifact) = sidecar.to_str().unwrap().strip_suffix(".sha256") else {
            continue;
        };
        let recorded = std::fs::read_to_string(&sidecar).unwrap();
        let output = Command::new("sha256sum").arg(artifact).output().unwrap();
        let sum = String::from_utf8(output.stdout).unwrap();
        let sum = sum.split_whitespace().next().unwrap_or("missing");
        assert_eq!(recorded.trim(), format!("sha256:{sum}"), "{artifact}");
    }
    let blobs = files_under(&data.join("modules/sha256"));
    assert!(!blobs.is_empty(), "no blobs stored");
    for blob in blobs {
        let output = Command::new("sha256sum").arg(&blob).output().unwrap();
        assert!(output.status.success());
        let sum = String::from_utf8(output.stdout).unwrap();
        let sum = sum.split_whitespace().next().unwrap();
        let stem = blob.file_stem().unwrap().to_str().unwrap();
        assert_eq!(
            sum,
            stem,
            "blob {} does not hash to its name",
            blob.display()
        );
    }
}

#[test]
fn restart_reuses_compiled_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start_in(data);
    server.deploy("hello-go", &built("hello-go.wasm"), &[]);
    server.deploy("hello-wat", &built("hello-wat.wat"), &[]);
    assert_eq!(get_text(&server, "/hello-go/").0, 200);
    let request_id = |server: &Server| {
        let r = server.get("/hello-wat/");
        u64::from_str_radix(r.headers()["x-wafer-request-id"].to_str().unwrap(), 16).unwrap()
    };
    let last_id = request_id(&server);
    server.kill();

    let before = mtimes(&data.join("artifacts"));
    assert!(!before.is_empty(), "no compiled artifacts were stored");

    let server = Server::start_in(data);
    let (status, body) = get_text(&server, "/hello-go/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from Go!"), "{body}");
    let (status, body) = get_text(&server, "/hello-wat/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from WAT!"), "{body}");

    let after = mtimes(&data.join("artifacts"));
    assert_eq!(
        before, after,
        "artifacts changed: the modules were recompiled"
    );
    // Log lines of the two runs never share a request id.
    assert!(request_id(&server) > last_id);
}

#[test]
fn sigkill_during_deploys_leaves_a_consistent_registry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start_in(data);
    server.deploy("f", &built("hello-wat.wat"), &[]);
    let delays = [50u64, 370, 130, 260, 90, 400, 210];
    // Kill cycles until at least 100 deploys were under way (at most 30 cycles).
    let attempted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for (cycle, delay) in delays.iter().cycle().enumerate().take(30) {
        if cycle >= 5 && attempted.load(Ordering::Relaxed) >= 100 {
            break;
        }
        // Deploy alternately two modules until the server dies.
        let stop = Arc::new(AtomicBool::new(false));
        let deployer = {
            let (stop, attempted) = (stop.clone(), attempted.clone());
            let client = server.client.clone();
            let url = format!("{}/_wafer/functions/f", server.admin_url);
            let token = server.token.clone();
            let modules = [
                std::fs::read(built("hello-c.wasm")).unwrap(),
                std::fs::read(built("hello-rust.wasm")).unwrap(),
            ];
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    attempted.fetch_add(1, Ordering::Relaxed);
                    let sent = client
                        .put(&url)
                        .bearer_auth(&token)
                        .body(modules[i % 2].clone())
                        .send();
                    if sent.is_err() {
                        break;
                    }
                    i += 1;
                }
            })
        };
        thread::sleep(Duration::from_millis(*delay));
        server.kill(); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        deployer.join().unwrap();

        server = Server::start_in(data);
        let (status, body) = get_text(&server, "/f/");
        assert_eq!(status, 200, "cycle {cycle}: {body}");
        assert!(
            HELLOS.iter().any(|hello| body.contains(hello)),
            "cycle {cycle}: {body}"
        );

        // The record parses and its active version exists.
        let record: serde_json::Value = server
            .admin(Method::GET, "functions/f")
            .send()
            .unwrap()
            .json()
            .unwrap();
        let active = &record["active"];
        let versions = record["versions"].as_array().expect("versions");
        assert!(
            versions.iter().any(|v| &v["version"] == active),
            "cycle {cycle}: active version {active} missing from {record}"
        );
        let on_disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("functions/f.json")).unwrap())
                .expect("functions/f.json parses");
        assert!(on_disk.is_object());

        let output = server.cli(&["versions", "f"]);
        assert!(
            output.status.success(),
            "cycle {cycle}: wafer versions f failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        check_blobs(data);
        let leftovers = files_under(&data.join("tmp"));
        assert!(
            leftovers.is_empty(),
            "cycle {cycle}: leftovers in tmp: {leftovers:?}"
        );
    }
    // The deployer did get deploys through between the kills.
    let record: serde_json::Value = server
        .admin(Method::GET, "functions/f")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let count = record["versions"].as_array().unwrap().len();
    let attempted = attempted.load(Ordering::Relaxed);
    eprintln!("f has {count} versions after the kill cycles; {attempted} deploys attempted");
    assert!(attempted >= 100, "only {attempted} deploys were attempted");
    assert!(count > 1, "no deploy survived any cycle: {record}");
}

#[test]
fn corrupt_blob_is_reported_and_others_still_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start_in(data);
    let deployed = server.deploy("hello-wat", &built("hello-wat.wat"), &[]);
    server.deploy("hello-c", &built("hello-c.wasm"), &[]);
    server.kill();

    let blob = data
        .join("modules/sha256")
        .join(format!("{}.wasm", hex(&deployed)));
    assert!(blob.exists(), "{} missing", blob.display());
    std::fs::write(&blob, b"\x00asm\x01\x00\x00\x00 not the module you stored").unwrap();

    let server = Server::start_in(data);
    let list: serde_json::Value = server
        .admin(Method::GET, "functions")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let list = list.as_array().expect("list is an array");
    let entry = list
        .iter()
        .find(|f| f["name"] == "hello-wat")
        .unwrap_or_else(|| panic!("hello-wat missing from {list:?}"));
    let error = entry["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("corrupt"), "error: {entry}");

    let (status, body) = get_text(&server, "/hello-wat/");
    assert_eq!(status, 500, "{body}");
    assert!(body.to_lowercase().contains("cannot run"), "{body}");

    let (status, body) = get_text(&server, "/hello-c/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from C!"), "{body}");
}

#[test]
fn unreadable_record_is_set_aside_and_others_still_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start_in(data);
    server.deploy("hello-wat", &built("hello-wat.wat"), &[]);
    server.deploy("hello-c", &built("hello-c.wasm"), &[]);
    server.kill();

    let record = data.join("functions/hello-wat.json");
    std::fs::write(&record, b"{ \"name\": \"hello-wat\", truncated").unwrap();

    let server = Server::start_in(data);
    let (status, body) = get_text(&server, "/hello-c/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_text(&server, "/hello-wat/").0, 404);
    // Kept, under a name the registry does not read, so a new deploy cannot overwrite it.
    let aside = data.join("functions/hello-wat.json.unreadable");
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        b"{ \"name\": \"hello-wat\", truncated"
    );
    assert!(!record.exists());
    server.deploy("hello-wat", &built("hello-wat.wat"), &[]);
    assert_eq!(get_text(&server, "/hello-wat/").0, 200);
    assert!(aside.exists());
}

#[test]
fn invalid_upload_changes_nothing() {
    let server = Server::start();
    server.deploy("hello-wat", &built("hello-wat.wat"), &[]);
    let response = server
        .admin(Method::PUT, "functions/hello-wat")
        .body(b"\x00asm\x01\x00\x00\x00garbage".to_vec())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().unwrap();
    assert_eq!(status, 400, "{body}");
    eprintln!("invalid upload answered: {body}");
    assert!(
        body.to_lowercase().contains("invalid"),
        "no validator message: {body}"
    );

    let record: serde_json::Value = server
        .admin(Method::GET, "functions/hello-wat")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(record["versions"].as_array().unwrap().len(), 1, "{record}");
    let (status, body) = get_text(&server, "/hello-wat/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from WAT!"));
}

#[test]
fn a_corrupted_artifact_is_recompiled_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start_in(data);
    let deployed = server.deploy("hello-c", &built("hello-c.wasm"), &[]);
    server.kill();
    let artifact = files_under(&data.join("artifacts"))
        .into_iter()
        .find(|p| {
            p.to_string_lossy()
                .ends_with(&format!("{}.cwasm", hex(&deployed)))
        })
        .expect("the compiled artifact is stored");
    // Flip bytes in the middle of the machine code: the header still reads as an artifact.
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&artifact, &bytes).unwrap();

    let mut server = Server::start_logged(data, &["serve"]);
    let (status, body) = get_text(&server, "/hello-c/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from C!"), "{body}");
    server.kill();
    let log = server.stderr();
    assert!(
        log.contains("compiled artifact failed verification, recompiling"),
        "{log}"
    );
    // The recompiled artifact is stored again, and verifies.
    assert_ne!(std::fs::read(&artifact).unwrap(), bytes);
}
