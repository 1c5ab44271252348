//! Generates a gRPC client for the part of etcd's v3 KV API that `shardkv bench --target
//! etcd` speaks (`proto/etcd_kv.proto`), without a `protoc` binary: `protox` parses the file
//! into a descriptor set and `tonic-prost-build` generates the messages and the client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/etcd_kv.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
