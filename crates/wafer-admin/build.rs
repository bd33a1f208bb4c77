//! Compiles `proto/wafer/v1/wafer.proto` into the gRPC service and client (tonic + prost),
//! with protox, a protobuf compiler in Rust: no `protoc` needed. The descriptor set is kept
//! for server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/wafer/v1/wafer.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("wafer_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
