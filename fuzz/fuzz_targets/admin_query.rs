//! The admin API's query strings: deploy parameters (wafer-gateway `admin::deploy_config`)
//! and `logs?tail=N`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wafer_gateway::fuzzing::admin_query(data));
