//! Wafer's integration tests, in one test binary (one link instead of one per file; `cargo
//! test -p wafer-cli --test it dashboard::` runs one file's). Each module is one subject,
//! talking to a real `wafer` child process over real sockets ([`common`]).

#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;
/// The manifest fuzzer's replay of its findings (`fuzz/`), shared with the fuzz target.
#[path = "../../src/fuzzing.rs"]
mod fuzzing;

mod admin;
mod admin_plane;
mod calls;
mod capabilities;
mod cgi;
mod cluster;
mod component_calls;
mod component_capabilities;
mod components;
mod components_p3;
mod dashboard;
mod durability;
mod examples;
mod fuzz_regressions;
mod grpc;
mod grpc_services;
mod hostile;
mod hostile_bounds;
mod hostile_inputs;
mod invocations;
mod limits;
mod oci;
mod openapi;
mod operations;
mod run;
mod run_components;
mod schedules;
mod services;
mod spin;
mod spin_outbound;
mod spin_postgres;
mod templates;
mod tls;
mod tracing;
mod traffic;
