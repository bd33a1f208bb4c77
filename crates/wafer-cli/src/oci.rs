//! Functions in OCI registries: `wafer push` publishes a function's module as a Wasm OCI
//! artifact, and `oci://REF` modules (`wafer deploy`, `module = "oci://..."` in a manifest)
//! are pulled from one, verified against their digests, and deployed like a local file.
//!
//! The artifact follows the CNCF TAG Runtime "Wasm OCI Artifact layout" (what `wkg` and
//! wasmCloud read and write): an OCI image manifest whose config has the media type
//! `application/vnd.wasm.config.v0+json` and whose one layer is the module, `application/wasm`.
//! What Wafer adds rides in the manifest's annotations, so that tools which know only the
//! layout see exactly one layer of exactly that type (docs/oci.md).
//!
//! Everything here runs in the CLI, with the user's credentials: the server never talks to
//! a registry.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageManifest, OciManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use serde_json::Value;
use sha2::Digest as _;
use tokio_stream::StreamExt as _;

/// The media type of the module's layer.
pub(crate) const WASM_LAYER: &str = "application/wasm";
/// The media type of the artifact's config blob.
pub(crate) const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// Layer types of older Wasm layouts (`wasm-to-oci`, Solo's and Istio's Wasm images), read as
/// the module too but never written.
const LEGACY_WASM_LAYERS: [&str; 2] = [
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];
/// The manifest annotation holding the function's configuration as `wafer push` found it
/// (JSON, the `config` of a deploy; secrets left out).
pub(crate) const CONFIG_ANNOTATION: &str = "dev.wafer.function.config";
/// The manifest annotation naming the function that was pushed.
pub(crate) const NAME_ANNOTATION: &str = "org.opencontainers.image.title";
/// The manifest annotation with the time of the push.
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// The largest module pulled: the server's own limit on a deploy, so that a registry cannot
/// make the CLI hold more than the server would take.
const MAX_MODULE_BYTES: u64 = 256 << 20;
/// The scheme of a module reference in a manifest or on the command line.
pub(crate) const SCHEME: &str = "oci://";

/// How to reach and authenticate to an OCI registry.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct RegistryArgs {
    /// User name for the OCI registry (default: the registry's entry in the Docker config
    /// file, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
    #[arg(
        long,
        env = "WAFER_REGISTRY_USERNAME",
        requires = "registry_password",
        value_name = "USER"
    )]
    registry_username: Option<String>,
    /// Password or token for the OCI registry, with `--registry-username`.
    #[arg(
        long,
        env = "WAFER_REGISTRY_PASSWORD",
        hide_env_values = true,
        requires = "registry_username",
        value_name = "PASSWORD"
    )]
    registry_password: Option<String>,
    /// Talk plain HTTP to the OCI registry even though it is not on a loopback address
    /// (one on `localhost`, `127.0.0.0/8` or `::1` always gets plain HTTP; any other, HTTPS).
    #[arg(long, env = "WAFER_REGISTRY_INSECURE")]
    insecure: bool,
}

/// An `oci://` module: a reference to an artifact in a registry, by tag or by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OciSource {
    reference: Reference,
}

impl OciSource {
    /// Parses `REF` or `oci://REF`: `host[:port]/repository[:tag][@sha256:HEX]`.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let bare = text.strip_prefix(SCHEME).unwrap_or(text);
        anyhow::ensure!(
            !bare.contains("://"),
            "invalid OCI reference `{text}`: give `oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]` \
             (the registry's scheme follows from its address and --insecure)"
        );
        let reference: Reference = bare
            .parse()
            .with_context(|| format!("invalid OCI reference `{text}`"))?;
        Ok(Self { reference })
    }

    /// The reference without a tag when a digest pins it (the digest is what is pulled).
    fn pinned(&self) -> Reference {
        match self.reference.digest() {
            Some(digest) => Reference::with_digest(
                self.reference.registry().to_owned(),
                self.reference.repository().to_owned(),
                digest.to_owned(),
            ),
            None => self.reference.clone(),
        }
    }
}

impl fmt::Display for OciSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.reference.whole())
    }
}

/// A module pulled from a registry.
pub(crate) struct Pulled {
    /// The module's bytes, verified against the layer's digest.
    pub module: Vec<u8>,
    /// The digest of the image manifest the module came from.
    pub manifest_digest: String,
    /// The configuration `wafer push` stored with it, if it did.
    pub config: Option<Value>,
}

/// Where the credentials for a registry came from, to say so when they are refused.
enum Credentials {
    None,
    Given,
    DockerConfig(PathBuf),
}

impl RegistryArgs {
    /// An OCI client for `reference`'s registry: plain HTTP for a loopback registry or with
    /// `--insecure`, HTTPS otherwise.
    fn client(&self, reference: &Reference) -> oci_client::Client {
        // reqwest 0.13 is built without a crypto provider of its own: use ring, as the rest
        // of Wafer does. An error only says one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = match self.plain_http(reference.resolve_registry()) {
            true => ClientProtocol::Http,
            false => ClientProtocol::Https,
        };
        oci_client::Client::new(ClientConfig {
            protocol,
            platform_resolver: Some(Box::new(wasm_platform)),
            user_agent: concat!("wafer/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    /// Whether to talk plain HTTP to `registry`: with `--insecure`, or on a loopback address.
    fn plain_http(&self, registry: &str) -> bool {
        self.insecure || is_loopback(registry)
    }

    /// The credentials for `registry`: the flags (or their environment variables), else the
    /// registry's entry in the Docker config file, else none.
    fn credentials(&self, registry: &str) -> anyhow::Result<(RegistryAuth, Credentials)> {
        if let (Some(user), Some(password)) = (&self.registry_username, &self.registry_password) {
            return Ok((
                RegistryAuth::Basic(user.clone(), password.clone()),
                Credentials::Given,
            ));
        }
        let Some(path) = docker_config_path() else {
            return Ok((RegistryAuth::Anonymous, Credentials::None));
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((RegistryAuth::Anonymous, Credentials::None))
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        match docker_config_auth(&text, registry)
            .with_context(|| format!("invalid Docker config file {}", path.display()))?
        {
            Some((user, password)) => Ok((
                RegistryAuth::Basic(user, password),
                Credentials::DockerConfig(path),
            )),
            None => Ok((RegistryAuth::Anonymous, Credentials::None)),
        }
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker/config.json"))
}

/// The user and password a Docker config file (`auths`, as `docker login` writes it) holds
/// for `registry`. Keys may be bare hosts (`registry.example.com:5000`) or URLs
/// (`https://index.docker.io/v1/`); an entry is `auth` (base64 of `user:password`) or
/// `username` and `password`. Credential helpers (`credsStore`, `credHelpers`) are not run.
fn docker_config_auth(text: &str, registry: &str) -> anyhow::Result<Option<(String, String)>> {
    use base64::Engine as _;
    let config: Value = serde_json::from_str(text)?;
    let Some(auths) = config.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let host = |key: &str| -> String {
        let key = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        let host = key.split('/').next().unwrap_or(key);
        match host {
            "docker.io" | "registry-1.docker.io" => "index.docker.io".into(),
            other => other.to_owned(),
        }
    };
    let wanted = host(registry);
    let Some(entry) = auths
        .iter()
        .find(|(key, _)| host(key) == wanted)
        .map(|(_, e)| e)
    else {
        return Ok(None);
    };
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .with_context(|| format!("`auths.{registry}.auth` is not base64"))?;
        let decoded = String::from_utf8(decoded)
            .with_context(|| format!("`auths.{registry}.auth` is not UTF-8"))?;
        let (user, password) = decoded
            .split_once(':')
            .with_context(|| format!("`auths.{registry}.auth` is not USER:PASSWORD"))?;
        return Ok(Some((user.to_owned(), password.to_owned())));
    }
    match (
        entry.get("username").and_then(Value::as_str),
        entry.get("password").and_then(Value::as_str),
    ) {
        (Some(user), Some(password)) => Ok(Some((user.to_owned(), password.to_owned()))),
        _ => Ok(None),
    }
}

/// Whether `registry` (`host[:port]`) is on a loopback address, where Docker too allows
/// plain HTTP.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Picks the Wasm entry of an image index (platform architecture `wasm`).
fn wasm_platform(entries: &[ImageIndexEntry]) -> Option<String> {
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.architecture.to_string() == "wasm")
        })
        .map(|e| e.digest.clone())
}

/// `sha256:HEX` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Says what went wrong talking to the registry, an authentication failure as one.
fn explain(
    e: OciDistributionError,
    doing: &str,
    source: &OciSource,
    credentials: &Credentials,
) -> anyhow::Error {
    let denied = match &e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    };
    let registry = source.reference.resolve_registry();
    if denied {
        let how = match credentials {
            Credentials::None => format!(
                "no credentials were given (pass --registry-username and --registry-password, \
                 set WAFER_REGISTRY_USERNAME and WAFER_REGISTRY_PASSWORD, or `docker login \
                 {registry}`)"
            ),
            Credentials::Given => {
                "the credentials given (--registry-username, WAFER_REGISTRY_USERNAME) were \
                 refused"
                    .to_owned()
            }
            Credentials::DockerConfig(path) => format!(
                "the credentials for {registry} in {} were refused",
                path.display()
            ),
        };
        return anyhow::anyhow!(
            "authentication failed: the registry {registry} refused {doing} {source}: {how}"
        );
    }
    let not_found = match &e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::BlobUnknown
            )
        }),
        _ => false,
    };
    if not_found {
        return anyhow::anyhow!("{source} was not found in the registry {registry} ({e})");
    }
    anyhow::Error::new(e).context(format!("{doing} {source} failed"))
}

/// Manifest types a pull accepts: OCI and Docker image manifests, and indexes of them.
const MANIFEST_TYPES: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Pulls the module of the artifact `source` names, checking the manifest against the
/// reference's digest (if it has one) and the module against its layer's digest.
pub(crate) async fn pull(source: &OciSource, registry: &RegistryArgs) -> anyhow::Result<Pulled> {
    let client = registry.client(&source.reference);
    let (auth, credentials) = registry.credentials(source.reference.resolve_registry())?;
    let explain = |e| explain(e, "pulling", source, &credentials);
    let mut reference = source.pinned();
    let mut manifest: Option<(OciImageManifest, String)> = None;
    // An image index is followed once, to its Wasm entry.
    for _ in 0..2 {
        let (body, digest) = client
            .pull_manifest_raw(&reference, &auth, &MANIFEST_TYPES)
            .await
            .map_err(|e| match e {
                OciDistributionError::DigestError(e) => anyhow::anyhow!(
                    "the manifest the registry sent for {source} does not match its digest: {e}"
                ),
                e => explain(e),
            })?;
        let got = sha256(&body);
        if let Some(want) = reference.digest() {
            anyhow::ensure!(
                got == want,
                "the manifest the registry sent for {source} does not match its digest: \
                 expected {want}, got {got}"
            );
        }
        let parsed: OciManifest = serde_json::from_slice(&body)
            .with_context(|| format!("{source}: the registry sent an invalid manifest"))?;
        match parsed {
            OciManifest::Image(image) => {
                manifest = Some((image, digest));
                break;
            }
            OciManifest::ImageIndex(index) => {
                let entry = wasm_platform(&index.manifests).with_context(|| {
                    let platforms: Vec<String> = index
                        .manifests
                        .iter()
                        .map(|m| match &m.platform {
                            Some(p) => format!("{}/{}", p.os, p.architecture),
                            None => m.media_type.clone(),
                        })
                        .collect();
                    format!(
                        "{source} is an image index with no Wasm entry (architecture `wasm`); \
                         its entries are: {}",
                        platforms.join(", ")
                    )
                })?;
                reference = reference.clone_with_digest(entry);
            }
        }
    }
    let (manifest, manifest_digest) =
        manifest.with_context(|| format!("{source}: an image index points to another index"))?;
    let layer = wasm_layer(&manifest, source)?;
    let module = pull_layer(&client, &reference, layer, source)
        .await
        .map_err(|e| match e.downcast::<OciDistributionError>() {
            Ok(e) => explain(e),
            Err(e) => e,
        })?;
    let config = match manifest
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_ANNOTATION))
    {
        Some(text) => Some(serde_json::from_str(text).with_context(|| {
            format!("{source}: the annotation `{CONFIG_ANNOTATION}` is not valid JSON")
        })?),
        None => None,
    };
    Ok(Pulled {
        module,
        manifest_digest,
        config,
    })
}

/// The one layer of `manifest` that is the module.
fn wasm_layer<'a>(
    manifest: &'a OciImageManifest,
    source: &OciSource,
) -> anyhow::Result<&'a OciDescriptor> {
    let wasm: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| {
            l.media_type == WASM_LAYER || LEGACY_WASM_LAYERS.contains(&l.media_type.as_str())
        })
        .collect();
    match wasm.as_slice() {
        [layer] => Ok(layer),
        [] => {
            let types: Vec<&str> = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            let types = match types.is_empty() {
                true => "none".to_owned(),
                false => types.join(", "),
            };
            bail!(
                "{source} is not a Wasm artifact: it has no `{WASM_LAYER}` layer (its layers' \
                 media types: {types}; its config's: {})",
                manifest.config.media_type
            )
        }
        more => bail!(
            "{source} has {} Wasm layers; Wafer deploys one module per function",
            more.len()
        ),
    }
}

/// Downloads `layer`, at most [`MAX_MODULE_BYTES`], and checks it against its digest.
async fn pull_layer(
    client: &oci_client::Client,
    reference: &Reference,
    layer: &OciDescriptor,
    source: &OciSource,
) -> anyhow::Result<Vec<u8>> {
    let want = &layer.digest;
    anyhow::ensure!(
        want.starts_with("sha256:"),
        "{source}: the module's layer has digest `{want}`; Wafer verifies sha256 digests only"
    );
    let limit = u64::try_from(layer.size).unwrap_or(u64::MAX);
    anyhow::ensure!(
        limit <= MAX_MODULE_BYTES,
        "{source}: the module is {} bytes, more than the {MAX_MODULE_BYTES} a deploy takes",
        layer.size
    );
    // The library checks the digest too, and ends the stream with an error if it differs;
    // it is compared here as well, to name both.
    let mut stream = client.pull_blob_stream(reference, layer).await?;
    let mut module = Vec::with_capacity(limit as usize);
    let mut hasher = sha2::Sha256::new();
    let mut broken = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                hasher.update(&chunk);
                module.extend_from_slice(&chunk);
                anyhow::ensure!(
                    module.len() as u64 <= MAX_MODULE_BYTES,
                    "{source}: the registry sent more than {MAX_MODULE_BYTES} bytes for the module"
                );
            }
            Err(e) => {
                broken = Some(e);
                break;
            }
        }
    }
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != *want {
        bail!(
            "the module the registry sent for {source} does not match its digest: expected \
             {want}, got {got}"
        );
    }
    if let Some(e) = broken {
        return Err(e).with_context(|| format!("{source}: downloading the module failed"));
    }
    Ok(module)
}

/// What `wafer push` publishes.
pub(crate) struct Artifact {
    /// The function's name.
    pub name: String,
    /// The module's bytes (binary).
    pub module: Vec<u8>,
    /// The function's configuration to store with it, if any.
    pub config: Option<Value>,
}

/// Pushes `artifact` to `source`; returns the manifest's digest.
pub(crate) async fn push(
    source: &OciSource,
    artifact: Artifact,
    registry: &RegistryArgs,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        source.reference.digest().is_none(),
        "cannot push to {source}: a push names a tag (`:TAG`), not a digest"
    );
    let reference = &source.reference;
    let client = registry.client(reference);
    let (auth, credentials) = registry.credentials(reference.resolve_registry())?;
    let explain = |e| explain(e, "pushing", source, &credentials);
    client
        .auth(reference, &auth, RegistryOperation::Push)
        .await
        .map_err(explain)?;
    let layer_digest = sha256(&artifact.module);
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let config = wasm_config(&artifact.module, &layer_digest, &created)?;
    let config = serde_json::to_vec(&config)?;
    let config_digest = sha256(&config);
    let mut annotations = BTreeMap::from([
        (NAME_ANNOTATION.to_owned(), artifact.name.clone()),
        (CREATED_ANNOTATION.to_owned(), created),
    ]);
    if let Some(function) = &artifact.config {
        annotations.insert(CONFIG_ANNOTATION.to_owned(), function.to_string());
    }
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
        config: OciDescriptor {
            media_type: WASM_CONFIG.to_owned(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: WASM_LAYER.to_owned(),
            digest: layer_digest.clone(),
            size: artifact.module.len() as i64,
            ..Default::default()
        }],
        subject: None,
        artifact_type: None,
        annotations: Some(annotations),
    };
    client
        .push_blob(reference, artifact.module, &layer_digest)
        .await
        .map_err(explain)?;
    client
        .push_blob(reference, config, &config_digest)
        .await
        .map_err(explain)?;
    let body = serde_json::to_vec(&manifest)?;
    let digest = sha256(&body);
    client
        .push_manifest_raw(
            reference,
            body,
            reqwest::header::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .map_err(explain)?;
    Ok(digest)
}

/// The artifact's config blob (`application/vnd.wasm.config.v0+json`): `os` is `wasip1` for
/// a core module and `wasip2` for a component, whose imports and exports are listed.
fn wasm_config(module: &[u8], layer_digest: &str, created: &str) -> anyhow::Result<Value> {
    let mut config = serde_json::json!({
        "created": created,
        "architecture": "wasm",
        "os": "wasip1",
        "layerDigests": [layer_digest],
    });
    if wasmparser::Parser::is_component(module) {
        config["os"] = "wasip2".into();
        config["component"] = component_world(module)?;
    }
    Ok(config)
}

/// A component's world as the layout's `component` field has it: the names of its imports
/// and exports.
fn component_world(module: &[u8]) -> anyhow::Result<Value> {
    let decoded = wit_component::decode(module).context("cannot read the component's WIT")?;
    let wit_component::DecodedWasm::Component(resolve, world) = decoded else {
        bail!("the module is a WIT package, not a component");
    };
    let world = &resolve.worlds[world];
    let names = |items: &wit_parser::IndexMap<wit_parser::WorldKey, wit_parser::WorldItem>| {
        items
            .iter()
            .filter(|(_, item)| !matches!(item, wit_parser::WorldItem::Type { .. }))
            .map(|(key, _)| resolve.name_world_key(key))
            .collect::<Vec<_>>()
    };
    Ok(serde_json::json!({
        "imports": names(&world.imports),
        "exports": names(&world.exports),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_and_without_the_scheme() {
        let s = OciSource::parse("oci://127.0.0.1:5000/fns/hello:v1").unwrap();
        assert_eq!(s.reference.registry(), "127.0.0.1:5000");
        assert_eq!(s.reference.repository(), "fns/hello");
        assert_eq!(s.reference.tag(), Some("v1"));
        assert_eq!(s.to_string(), "oci://127.0.0.1:5000/fns/hello:v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let s = OciSource::parse(&format!("localhost:5000/hello:v1@{digest}")).unwrap();
        assert_eq!(s.pinned().digest(), Some(digest.as_str()));
        assert_eq!(s.pinned().tag(), None);
        let e = OciSource::parse("oci://https://example.com/a").unwrap_err();
        assert!(format!("{e:#}").contains("invalid OCI reference"), "{e:#}");
        let e = OciSource::parse("oci://Example.com/UPPER").unwrap_err();
        assert!(format!("{e:#}").contains("invalid OCI reference"), "{e:#}");
    }

    #[test]
    fn loopback_registries_are_told_apart() {
        for r in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
        let secure = RegistryArgs::default();
        assert!(secure.plain_http("127.0.0.1:5000"));
        assert!(!secure.plain_http("registry.example.com"));
        let insecure = RegistryArgs {
            insecure: true,
            ..Default::default()
        };
        assert!(insecure.plain_http("registry.example.com"));
    }

    #[test]
    fn docker_config_entries_are_found_by_host() {
        // base64("ann:s3cret")
        let text = r#"{"auths": {"https://index.docker.io/v1/": {"auth": "YW5uOnMzY3JldA=="},
            "127.0.0.1:5000": {"username": "bob", "password": "pw"},
            "ghcr.io": {}}}"#;
        assert_eq!(
            docker_config_auth(text, "index.docker.io").unwrap(),
            Some(("ann".into(), "s3cret".into()))
        );
        assert_eq!(
            docker_config_auth(text, "127.0.0.1:5000").unwrap(),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(docker_config_auth(text, "ghcr.io").unwrap(), None);
        assert_eq!(docker_config_auth(text, "quay.io").unwrap(), None);
        assert_eq!(docker_config_auth("{}", "quay.io").unwrap(), None);
        let e = docker_config_auth(r#"{"auths": {"q.io": {"auth": "!!"}}}"#, "q.io").unwrap_err();
        assert!(format!("{e:#}").contains("not base64"), "{e:#}");
    }

    #[test]
    fn the_config_blob_tells_modules_from_components() {
        let module = wat::parse_str("(module)").unwrap();
        let config = wasm_config(&module, "sha256:x", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(config["os"], "wasip1");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["layerDigests"], serde_json::json!(["sha256:x"]));
        assert!(config.get("component").is_none());
        let component = wat::parse_str(
            r#"(component
                 (import "wasi:cli/environment@0.2.0" (instance))
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func (export "run") (canon lift (core func $i "f"))))"#,
        )
        .unwrap();
        let config = wasm_config(&component, "sha256:x", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(config["os"], "wasip2");
        assert_eq!(
            config["component"]["imports"],
            serde_json::json!(["wasi:cli/environment@0.2.0"])
        );
        assert_eq!(config["component"]["exports"], serde_json::json!(["run"]));
    }

    #[test]
    fn artifacts_without_a_wasm_layer_name_their_media_types() {
        let manifest = OciImageManifest {
            config: OciDescriptor {
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                ..Default::default()
            },
            layers: vec![OciDescriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let source = OciSource::parse("oci://localhost:5000/img:1").unwrap();
        let e = wasm_layer(&manifest, &source).unwrap_err().to_string();
        assert!(
            e.contains("application/vnd.oci.image.layer.v1.tar+gzip")
                && e.contains("application/vnd.oci.image.config.v1+json"),
            "{e}"
        );
    }
}
