//! Generates the gRPC code for `proto/shardkv.proto` without a `protoc` binary: `protox` (a
//! protobuf compiler written in Rust) parses the file into a descriptor set, and
//! `tonic-prost-build` generates messages, clients and servers from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/shardkv.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
