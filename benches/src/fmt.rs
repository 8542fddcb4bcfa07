//! Short numbers for tables and plot labels.

/// A count, short: 1000 -> 1K, 100000 -> 100K, 500 -> 500.
pub fn count(n: f64) -> String {
    if n >= 1e6 && n % 1e6 == 0.0 {
        format!("{}M", n / 1e6)
    } else if n >= 1e3 && n % 1e3 == 0.0 {
        format!("{}K", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// Operations per second, short: 754K, 1.23M, 2.3K; `-` for a value that is not finite.
pub fn rate(v: f64) -> String {
    if !v.is_finite() {
        "-".to_owned()
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}K", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(count(100_000.0), "100K");
        assert_eq!(count(500.0), "500");
        assert_eq!(rate(754_321.0), "754K");
        assert_eq!(rate(1_234_567.0), "1.23M");
        assert_eq!(rate(2_345.0), "2.3K");
        assert_eq!(rate(f64::NAN), "-");
    }
}
