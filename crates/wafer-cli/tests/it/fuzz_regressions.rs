//! The fuzz targets' inputs replayed on stable: every file of `fuzz/seeds/TARGET/` and
//! `fuzz/regressions/TARGET/` goes through the same check as the fuzz target `TARGET`
//! (`fuzz/fuzz_targets/TARGET.rs`), so a crash found by fuzzing, once fixed, stays fixed.
//! `bash scripts/fuzz.sh` runs the targets themselves (nightly).

use crate::fuzzing;

use wafer_registry::fuzzing::replay;

#[test]
fn cgi_output() {
    replay("cgi_output", wafer_gateway::fuzzing::cgi_output);
}

#[test]
fn manifest() {
    replay("manifest", fuzzing::manifest);
}

#[test]
fn names_routes() {
    replay("names_routes", wafer_gateway::fuzzing::names_routes);
}

#[test]
fn admin_query() {
    replay("admin_query", wafer_gateway::fuzzing::admin_query);
}

#[test]
fn host_call_json() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let host = wafer_host::fuzzing::HostCalls::new(dir.path());
    replay("host_call_json", |data| host.check(data));
}

#[test]
fn protobuf_transcode() {
    let proto = include_str!("../../../../examples/complex-rust/complex.proto");
    let transcoder = wafer_gateway::fuzzing::Transcoder::new(proto);
    replay("protobuf_transcode", |data| transcoder.check(data));
}
