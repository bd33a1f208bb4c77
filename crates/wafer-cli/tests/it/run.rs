//! `wafer run` as other tools call it: old toolchains' `wasi_unstable` imports, and Go's
//! `go test -exec` for wasip1 test binaries.

use crate::common;

use std::process::Command;

use common::{guest, root, WAFER};

#[test]
fn wafer_run_links_wasi_preview0() {
    let out = Command::new(WAFER)
        .args(["run", guest("preview0.wat").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("Hello from preview 0!\n"), "{text}");
}

/// Go as the test command installs it (scripts/setup.sh).
fn go() -> String {
    std::env::var("GO").unwrap_or_else(|_| "/usr/lib/go-1.23/bin/go".into())
}

#[test]
fn go_test_runs_the_go_sdk_tests_under_wafer_run() {
    // The one line docs/sdk-go.md gives: GOOS=wasip1 GOARCH=wasm go test -exec "wafer run --dir=/"
    let target = root().join("target/guests");
    let out = Command::new(go())
        .current_dir(root().join("guests/go"))
        .args(["test", "-count=1", "-v", "-exec"])
        .arg(format!("{WAFER} run --dir=/"))
        .arg("./...")
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", target.join("go-cache"))
        .env("GOPATH", target.join("gopath"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The tests ran as wasip1 binaries, in their package's directory.
    assert!(
        text.contains("--- PASS: TestTheTestsRunInThePackageDirectory"),
        "{text}"
    );
    assert!(text.contains("--- PASS: TestNotInsideWafer"), "{text}");
}
