//! Arbitrary valid ops encode and decode back to themselves in every format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| batchkv_codec::fuzzing::roundtrip(data));
