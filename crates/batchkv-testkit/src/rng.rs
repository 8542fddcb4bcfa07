//! The seeded generator of every test and benchmark harness.

/// The splitmix64 finalizer: a bijection on `u64` that scatters consecutive inputs. `mix64(i)`
/// is distinct for distinct `i`, so it numbers things in a pseudo-random order that never
/// repeats (the benchmarks' keys); [`Rng::next`] is this function over a counter.
pub fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64 (Steele, Lea and Flood): a deterministic generator seeded by its one field, good
/// enough for test data and fast. Any seed works, 0 included.
///
/// The algorithm is part of what a seed means: the differential tests print their seed
/// (`BATCHKV_DIFF_SEED`, `BATCHKV_WATCH_SEED`) so a failure replays, and docs/ETCD-COMPAT.md
/// names those defaults. Changing it would silently change every documented run.
///
/// ```
/// use batchkv_testkit::Rng;
///
/// let mut rng = Rng(0x1ea5_e0f0_2024);
/// let roll = rng.between(1, 6);
/// assert!((1..=6).contains(&roll));
/// assert!(["a", "b"].contains(&rng.pick(&["a", "b"])));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random number.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform-ish in `0..n` (modulo bias is irrelevant for test data).
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0): the range is empty");
        (self.next() % n as u64) as usize
    }

    /// True with probability `p` percent.
    pub fn pct(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    /// One element of `xs`.
    ///
    /// # Panics
    /// If `xs` is empty.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    /// Uniform in `lo..=hi`.
    ///
    /// # Panics
    /// If `hi < lo`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(hi >= lo, "Rng::between({lo}, {hi}): empty range");
        lo + self.below((hi - lo + 1) as usize) as i64
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// A 100-byte value, as the benchmarks write: random bytes, or, when `compressible`,
    /// metadata-like JSON text padded with spaces.
    pub fn value(&mut self, compressible: bool) -> Vec<u8> {
        if compressible {
            let n = self.next() % 1000;
            format!(
                "{{\"owner\":\"svc-{:03}\",\"state\":\"ready\",\"replicas\":3,\"zone\":\"eu-west-1a\",\"n\":{n:04}}}",
                n % 50
            )
            .into_bytes()
            .into_iter()
            .chain(std::iter::repeat(b' '))
            .take(100)
            .collect()
        } else {
            self.bytes(100)
        }
    }
}

/// A number from the environment variable `name` (decimal, or hex with `0x`); `None` when it is
/// not set. Tests use it for seed and size overrides.
///
/// # Panics
/// If the variable is set but is not a number: a typo must not silently run the default.
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for seed 1234567 (Rosetta Code, "Pseudo-random numbers/Splitmix64"):
        // the algorithm, not just some generator.
        let mut rng = Rng(1_234_567);
        assert_eq!(rng.next(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next(), 3_203_168_211_198_807_973);
        assert_eq!(rng.next(), 9_817_491_932_198_370_423);
        assert_eq!(rng.next(), 4_593_380_528_125_082_431);
        assert_eq!(rng.next(), 16_408_922_859_458_223_821);
    }

    #[test]
    fn mix64_is_the_first_output_of_a_counter() {
        for i in [0u64, 1, 7, u64::MAX] {
            assert_eq!(mix64(i.wrapping_add(0x9e37_79b9_7f4a_7c15)), Rng(i).next());
        }
        assert_ne!(mix64(1), mix64(2));
    }

    #[test]
    fn ranges_stay_inside() {
        let mut rng = Rng(0);
        for _ in 0..1000 {
            assert!(rng.below(3) < 3);
            let b = rng.between(-2, 2);
            assert!((-2..=2).contains(&b));
        }
        assert_eq!(rng.value(false).len(), 100);
        let text = rng.value(true);
        assert_eq!(text.len(), 100);
        assert!(text.starts_with(b"{\"owner\":\"svc-"));
    }
}
