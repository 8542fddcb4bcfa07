//! Golden vectors: the exact bytes of each format, committed under tests/golden/ as hex, so the
//! format cannot drift. `BATCHKV_BLESS=1 cargo test -p batchkv-codec --test golden` rewrites them
//! (only do that for an intended, documented format change).

#[allow(dead_code)]
mod vectors;

use std::path::PathBuf;

use batchkv_codec::decode_entry;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.hex"))
}

fn to_hex_lines(bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    let mut out = String::new();
    for chunk in hex.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("hex is ascii"));
        out.push('\n');
    }
    out
}

fn from_hex_lines(text: &str) -> Vec<u8> {
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .collect();
    hex::decode(hex).expect("golden file is hex")
}

#[test]
fn golden_vectors_encode_and_decode_exactly() {
    let bless = std::env::var_os("BATCHKV_BLESS").is_some();
    for v in vectors::vectors() {
        let path = golden_path(v.name);
        let encoded = v.encode();
        if bless {
            let text = format!(
                "# {} ({:?} format)\n{}",
                v.name,
                v.format,
                to_hex_lines(&encoded)
            );
            std::fs::write(&path, text).expect("write golden file");
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with BATCHKV_BLESS=1 to create)",
                path.display()
            )
        });
        let golden = from_hex_lines(&text);
        assert_eq!(
            hex::encode(&encoded),
            hex::encode(&golden),
            "{}: encoding drifted from the golden bytes",
            v.name
        );
        let decoded = decode_entry(&golden).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(decoded.format, v.format, "{}", v.name);
        assert_eq!(decoded.compressed, v.compressed, "{}", v.name);
        assert_eq!(decoded.ops, v.ops, "{}", v.name);
    }
}

#[test]
fn legacy_records_are_the_documented_json() {
    let by_name = |name: &str| {
        vectors::vectors()
            .into_iter()
            .find(|v| v.name == name)
            .expect("vector exists")
            .encode()
    };
    assert_eq!(
        String::from_utf8(by_name("legacy_put")).expect("utf-8"),
        r#"{"op":"PUT","key":"Zm9v","value":"YmFy","lease":7,"ignore_lease":true}"#
    );
    assert_eq!(
        String::from_utf8(by_name("legacy_delete")).expect("utf-8"),
        r#"{"op":"DELETE","key":"YQ==","range_end":"Yg==","prev_kv":true}"#
    );
    assert_eq!(
        String::from_utf8(by_name("legacy_lease_revoke")).expect("utf-8"),
        r#"{"op":"LEASE_REVOKE","id":42}"#
    );
}

#[test]
fn entry_bytes_start_with_the_documented_header() {
    let v = &vectors::vectors()[0];
    let bytes = v.encode();
    // 0x0d = field 1 fixed32; "BKV1" = the magic; 0x12 = field 2 (single), length-delimited.
    assert_eq!(&bytes[..6], b"\x0dBKV1\x12");
}
