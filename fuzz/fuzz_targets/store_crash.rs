//! The store's crash-after-writes property (redb's `crash_after_ops`): arbitrary operations
//! against a model, every storage write after an arbitrary budget failing, then a reopen that
//! must show exactly what was acknowledged. Links RocksDB: `cargo xtask fuzz store_crash`
//! builds it with the `store` feature (not in `cargo xtask ci`; the same property runs as a
//! proptest in `cargo xtask test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|program: batchkv::fuzzing::Program| {
    if let Err(e) = batchkv::fuzzing::crash_after_writes(&program) {
        panic!("{e}\nprogram: {program:?}");
    }
});
