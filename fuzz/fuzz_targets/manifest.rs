//! `wafer.toml` parsing (crates/wafer-cli/src/manifest.rs, in the `wafer` binary: included by
//! path through crates/wafer-cli/src/fuzzing.rs, as the replay test includes it).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/wafer-cli/src/fuzzing.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| fuzzing::manifest(data));
