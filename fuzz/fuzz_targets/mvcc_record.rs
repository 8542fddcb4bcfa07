//! batchkv-mvcc's stored record (kept in the codec crate so fuzzing needs no RocksDB): decoding
//! any bytes never panics; what decodes re-encodes to a record that decodes the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batchkv_codec::fuzzing::record(data));
