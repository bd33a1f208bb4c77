//! HTTPS: `wafer serve --tls-cert --tls-key` with a certificate made in the test (rcgen):
//! function calls over HTTPS, gRPC over TLS (ALPN h2), the CLI with `--cacert`, plain HTTP
//! to the TLS port refused with a clear answer, and the certificate reloaded on SIGHUP.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{built, Server, WAFER};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use wafer_admin::proto::wafer_client::WaferClient;
use wafer_admin::proto::ListRequest;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as `NAME.pem` and
/// `NAME.key` in `dir`; returns the certificate's PEM.
fn certificate(dir: &Path, name: &str) -> String {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let pem = made.cert.pem();
    std::fs::write(dir.join(format!("{name}.pem")), &pem).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        made.signing_key.serialize_pem(),
    )
    .unwrap();
    pem
}

/// A server on HTTPS with the certificate `tls.pem`/`tls.key` in `dir`.
fn start(dir: &Path) -> Server {
    let (cert, key) = (dir.join("tls.pem"), dir.join("tls.key"));
    let data = dir.join("data");
    Server::start_with(
        &data,
        &[
            "serve",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
}

/// A client trusting only `pem`.
fn client(pem: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// `wafer ARGS` against the server, trusting `cacert` if given.
fn cli(server: &Server, cacert: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(WAFER);
    command
        .args(args)
        .env("WAFER_SERVER", &server.admin_url)
        .env("WAFER_DATA", &server.data)
        .env_remove("WAFER_TOKEN")
        .env_remove("WAFER_CACERT");
    if let Some(cacert) = cacert {
        command.env("WAFER_CACERT", cacert);
    }
    command.output().unwrap()
}

#[test]
fn https_calls_grpc_over_tls_and_the_cli_with_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pem = certificate(dir.path(), "tls");
    let server = start(dir.path());
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    // The CLI deploys over HTTPS when told which CA to trust, and refuses without it.
    let hello = built("hello-wat.wat");
    let hello = hello.to_str().unwrap();
    let untrusted = cli(&server, None, &["deploy", "hello-wat", hello]);
    assert!(!untrusted.status.success());
    let said = String::from_utf8_lossy(&untrusted.stderr);
    assert!(said.contains("cannot reach the server"), "{said}");
    let cacert = dir.path().join("tls.pem");
    let deployed = cli(&server, Some(&cacert), &["deploy", "hello-wat", hello]);
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );

    // A function call over HTTPS.
    let response = client(&pem)
        .get(format!("{}/hello-wat/", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("Hello from WAT!"));

    // gRPC over TLS on the same port: HTTP/2 chosen by ALPN.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let names = runtime.block_on(async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(server.admin_url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut request = tonic::Request::new(ListRequest {});
        let token = format!("Bearer {}", server.token).parse().unwrap();
        request.metadata_mut().insert("authorization", token);
        let listed = WaferClient::new(channel).list(request).await.unwrap();
        let names: Vec<String> = listed
            .into_inner()
            .functions
            .into_iter()
            .map(|f| f.name)
            .collect();
        names
    });
    assert_eq!(names, ["hello-wat"]);
}

#[test]
fn plain_http_to_the_tls_port_is_told_to_use_https() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "tls");
    let server = start(dir.path());
    let plain = server.url.replacen("https://", "http://", 1);
    let response = reqwest::blocking::get(format!("{plain}/hello-wat/")).unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.text().unwrap(),
        "this port speaks HTTPS: use https://\n"
    );
}

#[test]
fn sighup_reloads_the_certificate_and_a_bad_one_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let first = certificate(dir.path(), "tls");
    let server = start(dir.path());
    let health = format!("{}/healthz", server.url);
    assert_eq!(client(&first).get(&health).send().unwrap().status(), 200);

    let hangup = || {
        let pid = server.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    };
    // A broken key: the old certificate stays.
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    hangup();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(client(&first).get(&health).send().unwrap().status(), 200);

    // A new pair: new connections get it (a client trusting only the new one gets in, one
    // trusting only the old one does not).
    let second = certificate(dir.path(), "tls");
    hangup();
    let mut reloaded = false;
    for _ in 0..100 {
        if client(&second).get(&health).send().is_ok() {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reloaded, "the new certificate was not served after SIGHUP");
    assert!(client(&first).get(&health).send().is_err());
}
