//! Function names, routes, digests, HTTP rules, topic patterns, directory grants and the
//! route table (wafer-registry and wafer-gateway).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wafer_gateway::fuzzing::names_routes(data));
