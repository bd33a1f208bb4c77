//! `wafer.toml`: the functions `wafer up` serves.
//!
//! ```toml
//! [[function]]
//! name = "hello"
//! module = "hello.wasm"          # relative to this file
//! routes = ["/hello/..."]        # default: /NAME/...
//! env = { GREETING = "hi" }
//! limits = { memory = "64MiB", timeout = "5s", max_concurrency = 16 }
//! proto = "complex.proto"        # protobuf types of the operations (relative to this file)
//! operations = { mul = "complex.Pair:complex.Complex" }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use wafer_registry::{FunctionConfig, FunctionName, Route};
use wafer_runtime::Limits;

/// A parsed manifest, module paths resolved against its directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    #[serde(default, rename = "function")]
    pub functions: Vec<ManifestFunction>,
}

/// One `[[function]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestFunction {
    pub name: FunctionName,
    pub module: PathBuf,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    /// How to call the module, when not as its exports suggest.
    #[serde(default)]
    pub abi: Option<wafer_runtime::Abi>,
    /// A `.proto` file with the operations' message types.
    #[serde(default)]
    pub proto: Option<PathBuf>,
    /// `OPERATION = "INPUT_TYPE:OUTPUT_TYPE"`.
    #[serde(default)]
    pub operations: BTreeMap<String, String>,
}

impl ManifestFunction {
    pub(crate) fn config(&self) -> FunctionConfig {
        FunctionConfig {
            routes: self.routes.clone(),
            env: self.env.clone(),
            limits: self.limits,
            abi: self.abi,
            schema: None,
        }
    }
}

impl Manifest {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new("")))
            .with_context(|| format!("invalid manifest {}", path.display()))
    }

    pub(crate) fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let mut manifest: Manifest = toml::from_str(text)?;
        let mut seen = HashSet::new();
        for f in &mut manifest.functions {
            if !seen.insert(f.name.clone()) {
                anyhow::bail!("function `{}` is declared twice", f.name);
            }
            f.config()
                .validate()
                .with_context(|| format!("function `{}`", f.name))?;
            f.module = base.join(&f.module);
            f.proto = f.proto.as_ref().map(|p| base.join(p));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        format!("{:#}", Manifest::parse(text, Path::new("")).unwrap_err())
    }

    #[test]
    fn unknown_fields_name_the_field_and_line() {
        let e = error("[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nrutes = [\"/a\"]\n");
        assert!(e.contains("unknown field `rutes`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        let e = error(
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nlimits = { memroy = \"1MiB\" }\n",
        );
        assert!(
            e.contains("unknown field `memroy`") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let e = error("[[function]]\nname = \"A\"\nmodule = \"a.wasm\"\n");
        assert!(e.contains("invalid function name `A`"), "{e}");
        let e = error("[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = [\"a\"]\n");
        assert!(e.contains("invalid route `a`"), "{e}");
        let e = error(
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nlimits = { timeout = \"soon\" }\n",
        );
        assert!(e.contains("line 4"), "{e}");
        let e = error("[[function]]\nname = \"a\"\nmodule = \"x\"\n[[function]]\nname = \"a\"\nmodule = \"y\"\n");
        assert!(e.contains("declared twice"), "{e}");
    }

    #[test]
    fn limits_parse_human_units() {
        let m = Manifest::parse(
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nlimits = { memory = \"64MiB\", timeout = \"500ms\", max_concurrency = 2 }\n",
            Path::new("base"),
        )
        .unwrap();
        let f = &m.functions[0];
        assert_eq!(f.limits.memory.as_u64(), 64 << 20);
        assert_eq!(f.limits.timeout, std::time::Duration::from_millis(500));
        assert_eq!(f.limits.max_concurrency, 2);
        assert_eq!(f.module, Path::new("base/a.wasm"));
    }
}
