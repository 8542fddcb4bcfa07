//! protoc as an independent oracle for the wire format.
//!
//! - Text messages encoded by `protoc --encode` are byte-for-byte what batchkv encodes, and decode
//!   to the expected ops.
//! - `protoc --decode` reads what batchkv encodes (random ops included) and re-encodes it to the
//!   same bytes, so protoc saw every field as the schema defines it (an unknown field would print
//!   as a bare number and not re-encode).
//!
//! Needs `protoc` (Debian `protobuf-compiler`; `cargo xtask doctor` installs it).

mod vectors;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use batchkv_codec::{decode_entry, encode_entry, fuzzing};
use batchkv_testkit::Rng;
use bytes::BytesMut;

fn proto_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto")
}

fn protoc(mode: &str, message: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("protoc")
        .arg(format!("--{mode}={message}"))
        .arg(format!("--proto_path={}", proto_dir().display()))
        .arg("batchkv/v1/entry.proto")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protoc runs (install it with `cargo xtask doctor` or apt-get install protobuf-compiler)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .expect("write to protoc");
    let out = child.wait_with_output().expect("protoc finishes");
    assert!(
        out.status.success(),
        "protoc --{mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn protoc_encodes_the_same_bytes_and_they_decode_to_the_expected_ops() {
    let mut checked = 0;
    for v in vectors::vectors() {
        let Some(text) = v.text else { continue };
        let from_protoc = protoc("encode", v.message_type(), text.as_bytes());
        assert_eq!(
            hex::encode(&from_protoc),
            hex::encode(v.encode()),
            "{}: protoc and batchkv disagree on the bytes",
            v.name
        );
        let decoded = decode_entry(&from_protoc).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(decoded.format, v.format, "{}", v.name);
        assert_eq!(decoded.ops, v.ops, "{}", v.name);
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} vectors have text");
}

#[test]
fn protoc_decodes_what_batchkv_encodes() {
    for v in vectors::vectors() {
        let Some(text) = v.text else { continue };
        let decoded = protoc("decode", v.message_type(), &v.encode());
        let decoded = String::from_utf8(decoded).expect("protoc prints text");
        // protoc prints the magic in decimal; everything else as in the vector.
        let expected =
            normalize(text).replace("0x31564B42", &batchkv_codec::ENTRY_MAGIC.to_string());
        assert_eq!(normalize(&decoded), expected, "{}", v.name);
    }
}

#[test]
fn protoc_reads_random_entries_field_for_field() {
    // A fixed-seed stream of fuzzer-style inputs: deterministic, and wide enough to touch every
    // op type, txn nesting, compares and ranges.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..40 {
        let data = rng.bytes(2048);
        let mut u = arbitrary::Unstructured::new(&data);
        let ops = fuzzing::arbitrary_ops(&mut u, 30).expect("enough input for one op");
        let mut buf = BytesMut::new();
        encode_entry(&ops, &mut buf).expect("valid ops encode");
        let text = protoc("decode", "batchkv.v1.Entry", &buf);
        let again = protoc("encode", "batchkv.v1.Entry", &text);
        assert_eq!(
            hex::encode(&again),
            hex::encode(&buf),
            "case {case}: protoc's reading of the entry differs:\n{}",
            String::from_utf8_lossy(&text)
        );
    }
}
