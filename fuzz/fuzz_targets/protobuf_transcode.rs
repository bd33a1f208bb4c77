//! JSON <-> protobuf transcoding (wafer-gateway `schema::json_to_protobuf` and
//! `protobuf_to_json`) with the messages of examples/complex-rust/complex.proto.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wafer_gateway::fuzzing::Transcoder;

fn transcoder() -> &'static Transcoder {
    static TRANSCODER: OnceLock<Transcoder> = OnceLock::new();
    TRANSCODER
        .get_or_init(|| Transcoder::new(include_str!("../../examples/complex-rust/complex.proto")))
}

fuzz_target!(|data: &[u8]| transcoder().check(data));
