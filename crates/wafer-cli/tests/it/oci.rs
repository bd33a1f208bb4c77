//! Functions in OCI registries (docs/oci.md): `wafer push`, and `oci://` modules deployed by
//! `wafer deploy`, `wafer apply` and `wafer up`, against a real registry (the CNCF
//! distribution server, Debian's `docker-registry`, which `scripts/setup.sh` installs) on a
//! free port of 127.0.0.1, with and without basic authentication.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{free_port, Server, WAFER};
use sha2::Digest as _;

/// A real registry on a free port of 127.0.0.1, its storage in a temporary directory;
/// killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// A registry anyone may push to and pull from.
    fn start() -> Self {
        Self::spawn(None)
    }

    /// A registry that lets in only `user` with `password` (HTTP basic authentication,
    /// an htpasswd file with a bcrypt hash, as the distribution server requires).
    fn with_user(user: &str, password: &str) -> Self {
        Self::spawn(Some((user, password)))
    }

    fn spawn(user: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some((user, password)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run htpasswd: {e} (scripts/setup.sh installs apache2-utils)")
                });
            assert!(out.status.success(), "{out:?}");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wafer-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let binary = std::env::var("DOCKER_REGISTRY").unwrap_or_else(|_| {
            if Path::new("/usr/bin/docker-registry").exists() {
                "/usr/bin/docker-registry".into()
            } else {
                "docker-registry".into()
            }
        });
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e} (scripts/setup.sh installs it)")
            });
        let registry = Self { child, port, dir };
        registry.wait();
        registry
    }

    /// Waits until the registry answers `GET /v2/` (200, or 401 with authentication).
    fn wait(&self) {
        let client = reqwest::blocking::Client::new();
        for _ in 0..400 {
            if let Ok(response) = client.get(format!("http://{}/v2/", self.host())).send() {
                if matches!(response.status().as_u16(), 200 | 401) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not start on port {}", self.port);
    }

    /// `127.0.0.1:PORT`.
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file a blob is stored in (the filesystem driver's layout).
    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `GET /v2/PATH` (no authentication), as JSON.
    fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::blocking::Client::new()
            .get(format!("http://{}/v2/{path}", self.host()))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hello-world CGI guest (WAT source).
fn hello() -> PathBuf {
    common::root().join("examples/hello-wat/hello.wat")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Runs `wafer ARGS` against `server` with `env`, and nothing from this machine's Docker
/// configuration or registry variables.
fn wafer(server: &Server, args: &[&str], env: &[(&str, &str)], docker: &Path) -> Output {
    Command::new(WAFER)
        .args(args)
        .env("WAFER_SERVER", &server.admin_url)
        .env("WAFER_DATA", &server.data)
        .env("DOCKER_CONFIG", docker)
        .env_remove("WAFER_TOKEN")
        .env_remove("WAFER_REGISTRY_USERNAME")
        .env_remove("WAFER_REGISTRY_PASSWORD")
        .env_remove("WAFER_REGISTRY_INSECURE")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wafer failed: {stderr}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "wafer succeeded: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The manifest digest `wafer push` printed (`pushed NAME vN to oci://REF@DIGEST`).
fn pushed_digest(stdout: &str) -> String {
    let line = stdout.lines().find(|l| l.starts_with("pushed ")).unwrap();
    line.rsplit_once('@').unwrap().1.trim().to_owned()
}

/// The active module digest of a deployed function.
fn module_digest(server: &Server, name: &str) -> String {
    let record: serde_json::Value = server
        .admin(reqwest::Method::GET, &format!("functions/{name}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let active = record["active"].as_u64().unwrap();
    let version = record["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"].as_u64() == Some(active))
        .unwrap();
    version["digest"].as_str().unwrap().to_owned()
}

#[test]
fn push_then_deploy_by_tag_and_by_digest_and_call_it() {
    let registry = Registry::start();
    let server = Server::start();
    let docker = tempfile::tempdir().unwrap();
    let host = registry.host();
    server.deploy_cli("hello", &hello(), &[]);
    let digest = module_digest(&server, "hello");

    let out = wafer(
        &server,
        &["push", "hello", &format!("{host}/fns/hello:v1")],
        &[],
        docker.path(),
    );
    let stdout = ok(&out);
    assert!(
        stdout.starts_with(&format!(
            "pushed hello v1 to oci://{host}/fns/hello:v1@sha256:"
        )),
        "{stdout}"
    );
    let manifest_digest = pushed_digest(&stdout);

    // The layout of the Wasm OCI artifact: its config and one `application/wasm` layer,
    // the module's bytes as the server holds them.
    let manifest = registry.get_json("fns/hello/manifests/v1");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(layers[0]["digest"], digest.as_str());
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "hello"
    );
    let pushed: serde_json::Value = serde_json::from_str(
        manifest["annotations"]["dev.wafer.function.config"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(pushed["limits"].is_object(), "{pushed}");
    let config = registry.get_json(&format!(
        "fns/hello/blobs/{}",
        manifest["config"]["digest"].as_str().unwrap()
    ));
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");
    assert_eq!(config["layerDigests"], serde_json::json!([digest]));

    // By tag.
    let out = wafer(
        &server,
        &["deploy", "by-tag", &format!("oci://{host}/fns/hello:v1")],
        &[],
        docker.path(),
    );
    assert!(ok(&out).contains(&format!("deployed by-tag v1 ({digest}")));
    assert_eq!(server.get("/by-tag").text().unwrap(), "Hello from WAT!\n");

    // By digest, with and without the tag.
    for (name, reference) in [
        (
            "by-digest",
            format!("oci://{host}/fns/hello@{manifest_digest}"),
        ),
        (
            "by-both",
            format!("oci://{host}/fns/hello:v1@{manifest_digest}"),
        ),
    ] {
        ok(&wafer(
            &server,
            &["deploy", name, &reference],
            &[],
            docker.path(),
        ));
        assert_eq!(module_digest(&server, name), digest);
        let response = server.get(&format!("/{name}"));
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().unwrap(), "Hello from WAT!\n");
    }

    // `module = "oci://..."` in a manifest: `wafer apply` to this server, `wafer up` its own.
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = dir.path().join("wafer.toml");
    std::fs::write(
        &manifest_path,
        format!(
            "[[function]]\nname = \"from-manifest\"\nmodule = \"oci://{host}/fns/hello@{manifest_digest}\"\nroutes = [\"/m/...\"]\n"
        ),
    )
    .unwrap();
    let manifest_arg = manifest_path.to_str().unwrap();
    ok(&wafer(
        &server,
        &["apply", manifest_arg],
        &[],
        docker.path(),
    ));
    assert_eq!(server.get("/m/x").text().unwrap(), "Hello from WAT!\n");
    let data = tempfile::tempdir().unwrap();
    let up = Server::start_with_env(
        data.path(),
        &["up", manifest_arg],
        &[("DOCKER_CONFIG", docker.path().to_str().unwrap())],
    );
    assert_eq!(up.get("/m/").text().unwrap(), "Hello from WAT!\n");
}

#[test]
fn the_pushed_configuration_travels_with_the_module_but_not_its_grants() {
    let registry = Registry::start();
    let docker = tempfile::tempdir().unwrap();
    let host = registry.host();
    let first = Server::start();
    let env = common::root().join("examples/watenv/watenv.wat");
    first.deploy_cli(
        "env",
        &env,
        &[
            "--route",
            "/env/...",
            "--env",
            "GREETING=hi",
            "--timeout",
            "5s",
            "--kv",
            "--secret",
            "token=s3cret",
        ],
    );
    let out = wafer(
        &first,
        &["push", "env", &format!("oci://{host}/fns/env:1")],
        &[],
        docker.path(),
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("secrets are not pushed (token)"),
        "{stderr}"
    );
    let manifest = registry.get_json("fns/env/manifests/1");
    let annotation = manifest["annotations"]["dev.wafer.function.config"]
        .as_str()
        .unwrap();
    assert!(
        !annotation.contains("s3cret") && !annotation.contains("secrets"),
        "{annotation}"
    );

    // Another server: routes, environment and limits come from the artifact; grants from
    // the flags alone.
    let second = Server::start();
    let reference = format!("oci://{host}/fns/env:1");
    ok(&wafer(
        &second,
        &[
            "deploy",
            "env",
            &reference,
            "--artifact-config",
            "--secret",
            "token=other",
        ],
        &[],
        docker.path(),
    ));
    let body = second.get("/env/x").text().unwrap();
    assert!(body.contains("GREETING=hi"), "{body}");
    let record: serde_json::Value = second
        .admin(reqwest::Method::GET, "functions/env")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let config = &record["versions"][0]["config"];
    assert_eq!(config["limits"]["timeout"], "5s", "{config}");
    assert_eq!(config["grants"]["secrets"]["token"], "********", "{config}");
    assert!(config["grants"].get("kv").is_none(), "{config}");

    // A flag that sets configuration cannot be mixed with the artifact's.
    let e = refused(&wafer(
        &second,
        &[
            "deploy",
            "env",
            &reference,
            "--artifact-config",
            "--route",
            "/x",
        ],
        &[],
        docker.path(),
    ));
    assert!(
        e.contains("--artifact-config") && e.contains("--route"),
        "{e}"
    );

    // The protobuf types of a waPC function travel too.
    let proto = common::root().join("examples/complex-rust/complex.proto");
    first.deploy_cli(
        "own",
        &common::guest("wapc-own-words.wat"),
        &[
            "--proto",
            proto.to_str().unwrap(),
            "--operation",
            "ping=complex.Pair:complex.Complex",
        ],
    );
    ok(&wafer(
        &first,
        &["push", "own", &format!("{host}/fns/own:1")],
        &[],
        docker.path(),
    ));
    ok(&wafer(
        &second,
        &[
            "deploy",
            "own",
            &format!("oci://{host}/fns/own:1"),
            "--artifact-config",
        ],
        &[],
        docker.path(),
    ));
    let record: serde_json::Value = second
        .admin(reqwest::Method::GET, "functions/own")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let schema = &record["versions"][0]["config"]["schema"];
    assert_eq!(
        schema["operations"]["ping"]["input"], "complex.Pair",
        "{schema}"
    );
}

#[test]
fn wrong_digests_are_refused() {
    let registry = Registry::start();
    let server = Server::start();
    let docker = tempfile::tempdir().unwrap();
    let host = registry.host();
    server.deploy_cli("hello", &hello(), &[]);
    let digest = module_digest(&server, "hello");
    let stdout = ok(&wafer(
        &server,
        &["push", "hello", &format!("{host}/fns/hello:v1")],
        &[],
        docker.path(),
    ));
    let manifest_digest = pushed_digest(&stdout);

    // A digest the repository does not have.
    let missing = format!("sha256:{}", "0".repeat(64));
    let e = refused(&wafer(
        &server,
        &[
            "deploy",
            "missing",
            &format!("oci://{host}/fns/hello@{missing}"),
        ],
        &[],
        docker.path(),
    ));
    assert!(
        e.contains(&format!("oci://{host}/fns/hello@{missing} was not found")),
        "{e}"
    );

    // The stored manifest changed under its digest (a byte of an annotation, the JSON still
    // valid): refused by digest and by tag, naming what was expected and what came.
    let path = registry.blob_path(&manifest_digest);
    let original = std::fs::read(&path).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    let tampered = text.replacen("\"hello\"", "\"jello\"", 1);
    assert_ne!(tampered, text);
    std::fs::write(&path, &tampered).unwrap();
    let got = sha256(tampered.as_bytes());
    for reference in [
        format!("oci://{host}/fns/hello@{manifest_digest}"),
        format!("oci://{host}/fns/hello:v1"),
    ] {
        let e = refused(&wafer(
            &server,
            &["deploy", "tampered", &reference],
            &[],
            docker.path(),
        ));
        assert!(e.contains("does not match its digest"), "{e}");
        assert!(e.contains(&manifest_digest) && e.contains(&got), "{e}");
    }
    std::fs::write(&path, &original).unwrap();

    // The stored module changed under its digest (one byte flipped, same length).
    let path = registry.blob_path(&digest);
    let mut module = std::fs::read(&path).unwrap();
    let middle = module.len() / 2;
    module[middle] ^= 0xff;
    std::fs::write(&path, &module).unwrap();
    let got = sha256(&module);
    let e = refused(&wafer(
        &server,
        &["deploy", "tampered", &format!("oci://{host}/fns/hello:v1")],
        &[],
        docker.path(),
    ));
    assert!(
        e.contains(&format!(
            "the module the registry sent for oci://{host}/fns/hello:v1 does not match its \
             digest: expected {digest}, got {got}"
        )),
        "{e}"
    );
    // Nothing was deployed.
    assert_eq!(server.get("/tampered").status(), 404);
}

#[test]
fn basic_auth_credentials_come_from_the_docker_config_or_the_flags() {
    use base64::Engine as _;
    let registry = Registry::with_user("ann", "s3cret");
    let server = Server::start();
    let host = registry.host();
    let reference = format!("oci://{host}/fns/hello:v1");
    server.deploy_cli("hello", &hello(), &[]);
    let empty = tempfile::tempdir().unwrap();

    // No credentials: refused, saying so and how to give them.
    let e = refused(&wafer(
        &server,
        &["push", "hello", &reference],
        &[],
        empty.path(),
    ));
    assert!(
        e.contains(&format!(
            "authentication failed: the registry {host} refused pushing"
        )) && e.contains("no credentials were given"),
        "{e}"
    );

    // Wrong ones.
    let e = refused(&wafer(
        &server,
        &[
            "push",
            "hello",
            &reference,
            "--registry-username",
            "ann",
            "--registry-password",
            "wrong",
        ],
        &[],
        empty.path(),
    ));
    assert!(
        e.contains("authentication failed") && e.contains("the credentials given"),
        "{e}"
    );

    // The flags.
    ok(&wafer(
        &server,
        &[
            "push",
            "hello",
            &reference,
            "--registry-username",
            "ann",
            "--registry-password",
            "s3cret",
        ],
        &[],
        empty.path(),
    ));

    // Pulling: no credentials, then the environment, then the Docker config file.
    let e = refused(&wafer(
        &server,
        &["deploy", "anon", &reference],
        &[],
        empty.path(),
    ));
    assert!(
        e.contains(&format!(
            "authentication failed: the registry {host} refused pulling"
        )) && e.contains("no credentials were given"),
        "{e}"
    );
    ok(&wafer(
        &server,
        &["deploy", "from-env", &reference],
        &[
            ("WAFER_REGISTRY_USERNAME", "ann"),
            ("WAFER_REGISTRY_PASSWORD", "s3cret"),
        ],
        empty.path(),
    ));
    assert_eq!(server.get("/from-env").text().unwrap(), "Hello from WAT!\n");

    let docker = tempfile::tempdir().unwrap();
    let write_config = |password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("ann:{password}"));
        let config = serde_json::json!({"auths": {host.clone(): {"auth": auth}}});
        std::fs::write(docker.path().join("config.json"), config.to_string()).unwrap();
    };
    write_config("s3cret");
    ok(&wafer(
        &server,
        &["deploy", "from-docker", &reference],
        &[],
        docker.path(),
    ));
    assert_eq!(
        server.get("/from-docker").text().unwrap(),
        "Hello from WAT!\n"
    );
    write_config("stale");
    let e = refused(&wafer(
        &server,
        &["deploy", "stale", &reference],
        &[],
        docker.path(),
    ));
    let config_path = docker.path().join("config.json");
    assert!(
        e.contains(&format!(
            "the credentials for {host} in {} were refused",
            config_path.display()
        )),
        "{e}"
    );
    // The flags win over the file.
    ok(&wafer(
        &server,
        &[
            "deploy",
            "flags-win",
            &reference,
            "--registry-username",
            "ann",
            "--registry-password",
            "s3cret",
        ],
        &[],
        docker.path(),
    ));
}

/// Pushes `layers` with `config` to `reference` with oci-client itself, as another tool
/// (`wkg`, `oras`) would.
fn push_with_oci_client(
    reference: &str,
    layers: Vec<oci_client::client::ImageLayer>,
    config: oci_client::client::Config,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::Http,
            ..Default::default()
        });
        let reference: oci_client::Reference = reference.parse().unwrap();
        client
            .push(
                &reference,
                &layers,
                config,
                &oci_client::secrets::RegistryAuth::Anonymous,
                None,
            )
            .await
            .unwrap();
    });
}

#[test]
fn a_plain_wasm_artifact_from_another_tool_deploys() {
    use oci_client::client::{Config, ImageLayer};
    let registry = Registry::start();
    let server = Server::start();
    let docker = tempfile::tempdir().unwrap();
    let host = registry.host();
    let module = wat::parse_file(hello()).unwrap();
    push_with_oci_client(
        &format!("{host}/tools/plain:1.0.0"),
        vec![ImageLayer::new(
            module.clone(),
            "application/wasm".into(),
            None,
        )],
        Config::new(
            br#"{"architecture":"wasm","os":"wasip1"}"#.to_vec(),
            "application/vnd.wasm.config.v0+json".into(),
            None,
        ),
    );
    let out = ok(&wafer(
        &server,
        &[
            "deploy",
            "plain",
            &format!("oci://{host}/tools/plain:1.0.0"),
        ],
        &[],
        docker.path(),
    ));
    assert!(
        out.contains(&format!("deployed plain v1 ({}", sha256(&module))),
        "{out}"
    );
    assert_eq!(server.get("/plain").text().unwrap(), "Hello from WAT!\n");

    // With --artifact-config: there is none to take.
    let e = refused(&wafer(
        &server,
        &[
            "deploy",
            "plain",
            &format!("oci://{host}/tools/plain:1.0.0"),
            "--artifact-config",
        ],
        &[],
        docker.path(),
    ));
    assert!(e.contains("carries no Wafer configuration"), "{e}");

    // A container image is not a Wasm artifact: refused, naming what it has.
    push_with_oci_client(
        &format!("{host}/tools/image:1"),
        vec![ImageLayer::new(
            b"not a tarball".to_vec(),
            "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            None,
        )],
        Config::new(
            b"{}".to_vec(),
            "application/vnd.oci.image.config.v1+json".into(),
            None,
        ),
    );
    let e = refused(&wafer(
        &server,
        &["deploy", "image", &format!("oci://{host}/tools/image:1")],
        &[],
        docker.path(),
    ));
    assert!(
        e.contains(&format!(
            "oci://{host}/tools/image:1 is not a Wasm artifact: it has no `application/wasm` \
             layer (its layers' media types: application/vnd.oci.image.layer.v1.tar+gzip; its \
             config's: application/vnd.oci.image.config.v1+json)"
        )),
        "{e}"
    );
}
