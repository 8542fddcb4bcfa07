//! The adaptive chunk controller: converges up when steady, backs off when noisy, stays in
//! bounds, and refuses bad configuration by name.

use std::time::Duration;

use batchkv_batcher::{AdaptiveBatchConfig, ChunkController, ConfigError, rsd_pct};
use proptest::prelude::*;

fn cfg() -> AdaptiveBatchConfig {
    AdaptiveBatchConfig {
        initial_chunk: 1000,
        min_chunk: 100,
        max_chunk: 20_000,
        ..AdaptiveBatchConfig::default_for(1_000_000)
    }
}

/// Time for `n` ops at `rate` ops/s.
fn at(n: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(n as f64 / rate)
}

#[test]
fn steady_throughput_grows_the_chunk_to_the_maximum() {
    let mut c = ChunkController::new(cfg()).expect("valid");
    let mut sizes = vec![c.next_chunk_size()];
    for _ in 0..200 {
        let n = c.next_chunk_size();
        c.record(n, at(n, 500_000.0));
        sizes.push(c.next_chunk_size());
    }
    assert!(
        sizes.windows(2).all(|w| w[1] >= w[0]),
        "never shrinks: {sizes:?}"
    );
    assert_eq!(c.next_chunk_size(), 20_000);
    let r = c.report();
    assert_eq!(r.chunks.len(), 200);
    assert!(r.rsd_pct < 1e-6, "steady run has no spread: {}", r.rsd_pct);
    assert_eq!(r.final_chunk, 20_000);
    assert!((r.ops_per_sec() - 500_000.0).abs() < 1.0);
}

#[test]
fn noisy_throughput_shrinks_the_chunk_to_the_minimum() {
    let mut c = ChunkController::new(cfg()).expect("valid");
    for i in 0..200 {
        let n = c.next_chunk_size();
        // Alternating 100K and 900K ops/s: an RSD of 80%.
        let rate = if i % 2 == 0 { 100_000.0 } else { 900_000.0 };
        c.record(n, at(n, rate));
    }
    assert_eq!(c.next_chunk_size(), 100);
    assert!(c.report().rsd_pct > 50.0);
}

#[test]
fn it_moves_both_ways_when_conditions_change() {
    let mut c = ChunkController::new(cfg()).expect("valid");
    let step = |c: &mut ChunkController, noisy: bool, chunks: usize| {
        for i in 0..chunks {
            let n = c.next_chunk_size();
            let rate = if noisy && i % 2 == 0 {
                100_000.0
            } else {
                400_000.0
            };
            c.record(n, at(n, rate));
        }
        c.next_chunk_size()
    };
    let up = step(&mut c, false, 6);
    assert_eq!(up, 1250, "one steady window: +25%");
    let down = step(&mut c, true, 6);
    assert_eq!(down, 875, "one noisy window: -30%");
    let up_again = step(&mut c, false, 6);
    assert_eq!(up_again, 1094);
}

#[test]
fn decisions_wait_for_a_full_window() {
    let mut c = ChunkController::new(cfg()).expect("valid");
    for _ in 0..5 {
        c.record(1000, at(1000, 1e6));
        assert_eq!(c.next_chunk_size(), 1000);
    }
    assert!(c.window_rsd_pct() < 1e-9);
    c.record(1000, at(1000, 1e6));
    assert_eq!(c.next_chunk_size(), 1250);
}

#[test]
fn rsd_is_the_population_relative_standard_deviation() {
    assert_eq!(rsd_pct([5.0]), 0.0);
    assert!((rsd_pct([1.0, 3.0]) - 50.0).abs() < 1e-9);
    assert!((rsd_pct([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) - 40.0).abs() < 1e-9);
}

#[test]
fn default_for_sizes_to_the_batch() {
    let small = AdaptiveBatchConfig::default_for(2_000);
    assert_eq!((small.initial_chunk, small.max_chunk), (500, 2_000));
    let big = AdaptiveBatchConfig::default_for(1_000_000);
    assert_eq!(
        (big.initial_chunk, big.window, big.down_pct),
        (5_000, 6, 0.30)
    );
    let tiny = AdaptiveBatchConfig::default_for(10);
    assert_eq!(
        (tiny.min_chunk, tiny.initial_chunk, tiny.max_chunk),
        (10, 10, 10)
    );
    for n in [0, 1, 7, 100, 50_000, 10_000_000] {
        AdaptiveBatchConfig::default_for(n)
            .validate()
            .expect("defaults are valid");
    }
}

#[test]
fn invalid_configuration_names_the_field() {
    let bad = |f: fn(&mut AdaptiveBatchConfig)| {
        let mut c = cfg();
        f(&mut c);
        ChunkController::new(c).expect_err("invalid").to_string()
    };
    assert_eq!(
        bad(|c| c.window = 0),
        "invalid window: must be at least 1, got 0"
    );
    assert_eq!(
        bad(|c| c.down_pct = 0.0),
        "invalid down_pct: must be strictly between 0 and 1, got 0"
    );
    assert_eq!(
        bad(|c| c.down_pct = 1.5),
        "invalid down_pct: must be strictly between 0 and 1, got 1.5"
    );
    assert_eq!(
        bad(|c| c.up_pct = f64::NAN),
        "invalid up_pct: must be strictly between 0 and 1, got NaN"
    );
    assert_eq!(
        bad(|c| c.min_chunk = 30_000),
        "invalid min_chunk: must not exceed max_chunk, got 30000 > 20000"
    );
    assert_eq!(
        bad(|c| c.min_chunk = 0),
        "invalid min_chunk: must be at least 1, got 0"
    );
    assert_eq!(
        bad(|c| c.initial_chunk = 50),
        "invalid initial_chunk: must be within [100, 20000], got 50"
    );
    assert_eq!(
        bad(|c| c.target_rsd_pct = -1.0),
        "invalid target_rsd_pct: must be a positive percentage, got -1"
    );
}

#[test]
fn environment_overrides_apply_or_fail_by_name() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let c = cfg()
        .with_env_from(env(&[
            ("ADAPT_WINDOW", "4"),
            ("ADAPT_DOWN_PCT", "0.4"),
            ("ADAPT_TARGET_RSD", " 10 "),
        ]))
        .expect("valid overrides");
    assert_eq!((c.window, c.down_pct, c.target_rsd_pct), (4, 0.4, 10.0));
    assert_eq!(cfg().with_env_from(env(&[])).expect("no overrides"), cfg());
    let err = cfg()
        .with_env_from(env(&[("ADAPT_WINDOW", "six")]))
        .expect_err("unparsable");
    assert_eq!(
        err,
        ConfigError::Env {
            var: "ADAPT_WINDOW",
            value: "six".to_owned(),
            expected: "a whole number of chunks"
        }
    );
    assert_eq!(
        err.to_string(),
        "environment variable ADAPT_WINDOW=\"six\" is not a whole number of chunks"
    );
    let err = cfg()
        .with_env_from(env(&[("ADAPT_DOWN_PCT", "30")]))
        .expect_err("out of range");
    assert_eq!(
        err.to_string(),
        "invalid down_pct: must be strictly between 0 and 1, got 30"
    );
    let err = cfg()
        .with_env_from(env(&[("ADAPT_TARGET_RSD", "")]))
        .expect_err("empty");
    assert!(
        err.to_string()
            .starts_with("environment variable ADAPT_TARGET_RSD")
    );
}

proptest! {
    /// Whatever the timings, the chunk stays within its bounds and every chunk is reported.
    #[test]
    fn chunk_stays_within_bounds(
        min in 1usize..1000,
        span in 0usize..10_000,
        window in 1usize..10,
        up in 0.01f64..0.99,
        down in 0.01f64..0.99,
        target in 0.1f64..100.0,
        timings in prop::collection::vec(0u64..10_000_000, 1..300),
    ) {
        let max = min + span;
        let c = AdaptiveBatchConfig {
            initial_chunk: min + span / 2,
            min_chunk: min,
            max_chunk: max,
            window,
            target_rsd_pct: target,
            up_pct: up,
            down_pct: down,
        };
        let mut ctl = ChunkController::new(c).expect("valid");
        for ns in &timings {
            let n = ctl.next_chunk_size();
            prop_assert!((min..=max).contains(&n));
            ctl.record(n, Duration::from_nanos(*ns));
        }
        prop_assert_eq!(ctl.report().chunks.len(), timings.len());
    }
}
