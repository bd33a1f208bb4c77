//! A CGI guest's stdout turned into a response (wafer-gateway `cgi::parse_output`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wafer_gateway::fuzzing::cgi_output(data));
