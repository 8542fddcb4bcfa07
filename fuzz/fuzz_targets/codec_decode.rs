//! Decoding any bytes never panics; what decodes re-encodes to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batchkv_codec::fuzzing::decode(data));
