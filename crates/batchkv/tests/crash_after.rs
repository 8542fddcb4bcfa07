//! The `store_crash` fuzz target's property as a proptest (it runs in `cargo xtask test`; the
//! fuzz target links RocksDB, which CI does not build for the fuzzer): random programs of
//! puts, deletes, txns, leases and compactions against a model, with every storage write after
//! a random budget failing, then a reopen (see `batchkv::fuzzing`).

use arbitrary::{Arbitrary, Unstructured};
use batchkv::fuzzing::{Program, crash_after_writes};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_writes_survive_and_failed_ones_leave_no_trace(
        bytes in prop::collection::vec(any::<u8>(), 16..400)
    ) {
        let program = Program::arbitrary(&mut Unstructured::new(&bytes))
            .map_err(|e| TestCaseError::reject(e.to_string()))?;
        if let Err(e) = crash_after_writes(&program) {
            return Err(TestCaseError::fail(format!("{e}\nprogram: {program:?}")));
        }
    }
}
