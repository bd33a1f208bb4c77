//! `wafer new TEMPLATE NAME`: a new function's project from a template, ready to build with
//! `wafer build` and serve with `wafer up` (each template's `wafer.toml` says how).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Options of `wafer new`.
#[derive(clap::Args)]
pub(crate) struct NewArgs {
    /// The template (`wafer new --list` shows them).
    #[arg(required_unless_present = "list")]
    template: Option<String>,
    /// The function's name, also the project's; letters, digits, `-` and `_`.
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// Where to create the project (default: a new directory named after the function).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// List the templates.
    #[arg(long)]
    list: bool,
}

/// A template: its name, what it makes, and its files (paths and text with `{{name}}`,
/// `{{crate}}` and `{{wat_len}}` to fill in), and for a component the WIT it builds against.
struct Template {
    name: &'static str,
    about: &'static str,
    files: &'static [(&'static str, &'static str)],
    wit: &'static [(&'static str, &'static str)],
}

macro_rules! files {
    ($dir:literal: $($path:literal),+ $(,)?) => {
        &[$(($path, include_str!(concat!("../templates/", $dir, "/", $path)))),+]
    };
}

/// The WIT files of an example (its world and the WASI packages it builds against), as the
/// template's `wit/`: kept once, with the example.
macro_rules! wit {
    ($example:literal) => {
        wit!($example: "world.wit", "LICENSE-Apache-2.0_WITH_LLVM-exception", "deps/cli.wit",
            "deps/clocks.wit", "deps/filesystem.wit", "deps/http.wit", "deps/io.wit",
            "deps/random.wit", "deps/sockets.wit")
    };
    ($example:literal: $($path:literal),+) => {
        &[$((
            concat!("wit/", $path),
            include_str!(concat!("../../../examples/", $example, "/wit/", $path)),
        )),+]
    };
}

const TEMPLATES: &[Template] = &[
    Template {
        name: "rust",
        about: "Rust, CGI (wasm32-wasip1): the request in env and stdin, the response on stdout",
        files: files!("rust": "Cargo.toml", "src/main.rs", "wafer.toml"),
        wit: &[],
    },
    Template {
        name: "rust-http",
        about: "Rust, a WASI 0.2 HTTP component (wasi:http/proxy, wasm32-wasip2)",
        files: files!("rust-http": "Cargo.toml", "src/lib.rs", "wafer.toml"),
        wit: &[],
    },
    Template {
        name: "rust-http-p3",
        about: "Rust, a WASI 0.3 HTTP component (wasi:http/service, async handler, wasm32-wasip2)",
        files: files!("rust-http-p3": "Cargo.toml", "src/lib.rs", "wafer.toml"),
        wit: &[],
    },
    Template {
        name: "rust-wapc",
        about: "Rust, waPC operations called by name (wapc-guest, wasm32-unknown-unknown)",
        files: files!("rust-wapc": "Cargo.toml", "src/lib.rs", "wafer.toml"),
        wit: &[],
    },
    Template {
        name: "go",
        about: "Go 1.21+, CGI (GOOS=wasip1)",
        files: files!("go": "go.mod", "main.go", "wafer.toml"),
        wit: &[],
    },
    Template {
        name: "c",
        about: "C, CGI (clang --target=wasm32-wasi with wasi-libc)",
        files: files!("c": "main.c", "wafer.toml"),
        wit: &[],
    },
    Template {
        name: "wat",
        about: "WebAssembly text, CGI: nothing to build",
        files: files!("wat": "main.wat", "wafer.toml"),
        wit: &[],
    },
    Template {
        name: "assemblyscript",
        about: "AssemblyScript, CGI (asc with @assemblyscript/wasi-shim)",
        files: files!("assemblyscript": "assembly/index.ts", "asconfig.json", "package.json", "wafer.toml"),
        wit: &[],
    },
    Template {
        name: "python",
        about: "Python, a WASI 0.2 HTTP component (componentize-py)",
        files: files!("python": "app.py", "wafer.toml"),
        wit: wit!("http-hello-py"),
    },
    Template {
        name: "js",
        about: "JavaScript, a WASI 0.2 HTTP component (ComponentizeJS, a fetch handler)",
        files: files!("js": "app.js", "componentize.mjs", "package.json", "wafer.toml"),
        wit: wit!("http-hello-js"),
    },
];

pub(crate) fn new(args: NewArgs) -> anyhow::Result<()> {
    if args.list {
        for t in TEMPLATES {
            println!("{:<10} {}", t.name, t.about);
        }
        return Ok(());
    }
    let (Some(template), Some(name)) = (args.template, args.name) else {
        anyhow::bail!("give a template and a name: wafer new TEMPLATE NAME");
    };
    let Some(template) = TEMPLATES.iter().find(|t| t.name == template) else {
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
        anyhow::bail!(
            "no template `{template}`; the templates are: {}",
            names.join(", ")
        );
    };
    let function: wafer_registry::FunctionName = name
        .parse()
        .with_context(|| format!("`{name}` cannot be a function's name"))?;
    anyhow::ensure!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && name.starts_with(|c: char| c.is_ascii_alphabetic()),
        "`{name}`: a project name starts with a letter and has only letters, digits, `-` and `_`"
    );
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!(
            "{} exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    for (path, text) in template.files {
        write(&dir.join(path), &fill(text, function.as_str()))?;
    }
    for (path, text) in template.wit {
        write(&dir.join(path), text)?;
    }
    println!(
        "created {} from the `{}` template",
        dir.display(),
        template.name
    );
    let build = template
        .files
        .iter()
        .any(|(_, text)| text.contains("\nbuild = "));
    println!("  cd {}", dir.display());
    if build {
        println!(
            "  wafer build      # {}",
            build_command(template).unwrap_or_default()
        );
    }
    println!("  wafer up         # serves it on http://127.0.0.1:8080/{name}");
    Ok(())
}

/// The build command in a template's manifest, for the hint.
fn build_command(template: &Template) -> Option<&'static str> {
    let (_, manifest) = template
        .files
        .iter()
        .find(|(path, _)| *path == "wafer.toml")?;
    let line = manifest.lines().find(|l| l.starts_with("build = "))?;
    Some(line.trim_start_matches("build = ").trim_matches('"'))
}

/// `text` with the placeholders filled in for function `name`.
fn fill(text: &str, name: &str) -> String {
    let greeting_len = "Content-Type: text/plain\n\nHello from !\n".len() + name.len();
    text.replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{wat_len}}", &greeting_len.to_string())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_a_manifest_naming_the_function() {
        for t in TEMPLATES {
            let manifest = t.files.iter().find(|(p, _)| *p == "wafer.toml");
            let (_, manifest) = manifest.unwrap_or_else(|| panic!("{}: no wafer.toml", t.name));
            assert!(manifest.contains("name = \"{{name}}\""), "{}", t.name);
        }
    }

    #[test]
    fn the_wat_greeting_length_is_its_byte_length() {
        let template = TEMPLATES
            .iter()
            .find(|t| t.name == "wat")
            .expect("a wat template");
        let wat = fill(template.files[0].1, "abc");
        assert!(wat.contains("(i32.const 42)"), "{wat}");
    }
}
