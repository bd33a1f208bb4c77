//! Entry points for the fuzz targets and their regression tests; not a stable API.
//!
//! `wafer-cli` is a binary, which neither the fuzz crate nor an integration test can depend
//! on, so this file is not part of the `wafer` binary: the fuzz target
//! (`fuzz/fuzz_targets/manifest.rs`) and the replay test (`tests/it/fuzz_regressions.rs`) each
//! include it with `#[path]`, and it includes the real `manifest.rs` the same way. Both run
//! the same check, so they cannot drift apart.

#[path = "manifest.rs"]
#[allow(dead_code)]
mod manifest;
#[path = "oci.rs"]
#[allow(dead_code)]
mod oci;
#[path = "spin.rs"]
#[allow(dead_code)]
mod spin;

use std::path::Path;

use wafer_registry::FunctionConfig;

/// Where relative paths of a fuzzed manifest point: a directory that does not exist, so a
/// relative directory grant never opens anything.
const BASE: &str = "/nonexistent/wafer-fuzz";

/// `manifest`: parses the input as a `wafer.toml`. It never panics; a manifest that parses
/// names each function once, anchors modules at the manifest's directory, and gives each
/// function a configuration that validates and survives the JSON round trip of the stored
/// record (`wafer up` deploys it into the registry).
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = manifest::Manifest::parse(text, Path::new(BASE)) else {
        return;
    };
    let mut names = std::collections::HashSet::new();
    for function in &manifest.functions {
        assert!(
            names.insert(function.name.clone()),
            "function `{}` declared twice",
            function.name
        );
        if let Some(module) = function.module.file() {
            assert!(
                module.starts_with(BASE) || module.is_absolute(),
                "module {} is not anchored at the manifest",
                module.display()
            );
        }
        let config = function.config();
        config
            .validate()
            .unwrap_or_else(|e| panic!("function `{}` does not validate: {e}", function.name));
        let json = serde_json::to_string(&config).expect("a config serializes");
        let stored: FunctionConfig = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("the stored config {json} does not load: {e}"));
        assert_eq!(
            stored, config,
            "the configuration of `{}` changes when stored and loaded (as {json})",
            function.name
        );
    }
}
