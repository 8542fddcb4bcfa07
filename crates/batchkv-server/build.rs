//! Generates the gRPC code from etcd's vendored `.proto` files (proto/README.md): protox parses
//! them in Rust (no `protoc` on the build machine), tonic-prost-build writes the prost messages
//! and the tonic server traits into OUT_DIR, and pbjson-build writes their serde impls (the
//! protobuf JSON mapping the HTTP/JSON gateway speaks, `gateway.rs`) from the same descriptors.
//! batchkv's own peer service (`batchkvpb/raft.proto`) is compiled apart, with its client too
//! (members call each other).

use prost::Message;

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
    let descriptors = fds.encode_to_vec();
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Keys and values as `bytes::Bytes`: batchkv's own type, so no copy either way.
        .bytes(".")
        // prost's codec with each response's buffer reserved to its size (src/codec.rs).
        .codec_path("crate::codec::ReservingCodec")
        .compile_fds(fds)?;
    // As etcd 3.4's gateway (grpc-gateway v1's JSONPb{OrigName: true}): the proto field names
    // (`cluster_id`, `grantedTTL`), defaults left out, int64 as strings, enums by name, bytes in
    // base64; unknown fields in a request are ignored.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb"])?;
    let peer = protox::compile(["batchkvpb/raft.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(peer)?;
    Ok(())
}
