//! Generates the gRPC code from etcd's vendored `.proto` files (proto/README.md): protox parses
//! them in Rust (no `protoc` on the build machine), tonic-prost-build writes the prost messages
//! and the tonic server traits into OUT_DIR. batchkv's own peer service (`batchkvpb/raft.proto`)
//! is compiled apart, with its client too (members call each other).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "etcdserverpb/rpc.proto",
            "mvccpb/kv.proto",
            "authpb/auth.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Keys and values as `bytes::Bytes`: batchkv's own type, so no copy either way.
        .bytes(".")
        .compile_fds(fds)?;
    let peer = protox::compile(["batchkvpb/raft.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(peer)?;
    Ok(())
}
