//! Durations as histograms, so percentiles can be merged across rollup rows.
//!
//! A duration (in microseconds) falls in one bin, named by an integer key; keys sort as the
//! durations do. The bins are chosen so that:
//!
//! - every bin's representative value is within **1 %** of every duration in it, so a
//!   percentile computed over the representatives (`percentile_cont`, as the README defines
//!   it) is within 1 % of the exact one (an interpolation of values each within 1 % is within
//!   1 % of the interpolation);
//! - up to one hour, bins never straddle a whole second (0.01 s wide up to 100 s, 1 s wide
//!   up to 3 600 s), so "how many first responses came within N seconds" is **exact** for
//!   any whole N up to 3 600; above that it is the count of bins whose representative is
//!   within N (a response within 1 % of N may fall either side).
//!
//! | duration `x` | key | bin |
//! |---|---|---|
//! | `x ≤ 0` | `ZERO` | exactly 0 |
//! | `0 < x ≤ 1 s` | `⌈ln x / ln γ⌉` (≤ 0) | `(γ^(k−1), γ^k]` |
//! | `1 s < x ≤ 100 s` | `100 000 + ⌈x / 0.01 s⌉` | `((c−1)/100, c/100]` |
//! | `100 s < x ≤ 3 600 s` | `200 000 + ⌈x / 1 s⌉` | `(s−1, s]` |
//! | `x > 3 600 s` | `300 000 + ⌈ln x / ln γ⌉` | `(γ^(j−1), γ^j]` |
//!
//! with `γ = 1.01 / 0.99`; a log bin's representative `2γ^k / (γ + 1)` is within 1 % of
//! both its ends. The keys are computed in SQL ([`bin_sql`]) wherever a sample is binned, so
//! a rolled-up sample and a raw one land in the same bin.

use std::collections::BTreeMap;

/// The relative error bound of the log bins.
const ALPHA: f64 = 0.01;
/// The key of a zero duration.
const ZERO: i32 = -1_000_000;
const CENTI_BASE: i32 = 100_000;
const SECOND_BASE: i32 = 200_000;
const LONG_BASE: i32 = 300_000;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

/// The SQL expression of the bin key of `us`, an integer expression in microseconds.
pub fn bin_sql(us: &str) -> String {
    let ln_gamma = gamma().ln();
    format!(
        "(CASE WHEN {us} <= 0 THEN {ZERO}
               WHEN {us} <= 1000000 THEN ceil(ln(({us})::float8 / 1e6) / {ln_gamma})::int
               WHEN {us} <= 100000000 THEN {CENTI_BASE} + (({us} + 9999) / 10000)::int
               WHEN {us} <= 3600000000 THEN {SECOND_BASE} + (({us} + 999999) / 1000000)::int
               ELSE {LONG_BASE} + ceil(ln(({us})::float8 / 1e6) / {ln_gamma})::int END)"
    )
}

/// The value (seconds) that stands for every duration of bin `key`, and the bin's upper end.
fn bin(key: i32) -> (f64, f64) {
    let log = |k: i32| {
        let upper = gamma().powi(k);
        (2.0 * upper / (gamma() + 1.0), upper)
    };
    match key {
        ZERO => (0.0, 0.0),
        k if k < CENTI_BASE => log(k),
        k if k < SECOND_BASE => {
            let c = f64::from(k - CENTI_BASE);
            ((c - 0.5) / 100.0, c / 100.0)
        }
        k if k < LONG_BASE => {
            let s = f64::from(k - SECOND_BASE);
            (s - 0.5, s)
        }
        k => log(k - LONG_BASE),
    }
}

/// A histogram of durations: bin key → samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    bins: BTreeMap<i32, i64>,
}

impl Histogram {
    /// Adds `counts[i]` samples to bin `keys[i]` (the two arrays of a rollup row).
    pub fn add_bins(&mut self, keys: &[i32], counts: &[i64]) {
        for (key, n) in keys.iter().zip(counts) {
            self.add(*key, *n);
        }
    }

    pub fn add(&mut self, key: i32, n: i64) {
        *self.bins.entry(key).or_default() += n;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (key, n) in &other.bins {
            self.add(*key, *n);
        }
    }

    pub fn samples(&self) -> i64 {
        self.bins.values().sum()
    }

    /// `percentile_cont(p)` over the bins' representatives; `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let n = self.samples();
        if n == 0 {
            return None;
        }
        let position = p.clamp(0.0, 1.0) * (n - 1) as f64;
        let (lower, upper) = (position.floor() as i64, position.ceil() as i64);
        let (a, b) = (self.value_at(lower)?, self.value_at(upper)?);
        Some(a + (position - lower as f64) * (b - a))
    }

    /// The representative of the sample of rank `rank` (0-based, ascending).
    fn value_at(&self, rank: i64) -> Option<f64> {
        let mut seen = 0;
        for (key, n) in &self.bins {
            seen += n;
            if rank < seen {
                return Some(bin(*key).0);
            }
        }
        None
    }

    /// How many samples are at most `seconds` (exact for whole seconds up to 3 600, see the
    /// module's documentation).
    pub fn at_most(&self, seconds: f64) -> i64 {
        self.bins
            .iter()
            .filter(|(key, _)| {
                let (value, upper) = bin(**key);
                upper <= seconds || (**key >= LONG_BASE && value <= seconds)
            })
            .map(|(_, n)| n)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }

    /// The bins as the two arrays a rollup row stores.
    pub fn to_arrays(&self) -> (Vec<i32>, Vec<i64>) {
        self.bins.iter().filter(|(_, n)| **n != 0).map(|(k, n)| (*k, *n)).unzip()
    }
}

/// The key [`bin_sql`] gives `us` microseconds, in Rust (for tests of the SQL).
pub fn key_of(us: i64) -> i32 {
    let ln = |us: i64| ((us as f64 / 1e6).ln() / gamma().ln()).ceil() as i32;
    match us {
        i64::MIN..=0 => ZERO,
        1..=1_000_000 => ln(us),
        1_000_001..=100_000_000 => CENTI_BASE + ((us + 9_999) / 10_000) as i32,
        100_000_001..=3_600_000_000 => SECOND_BASE + ((us + 999_999) / 1_000_000) as i32,
        _ => LONG_BASE + ln(us),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_percentile(sorted: &[f64], p: f64) -> f64 {
        let position = p * (sorted.len() - 1) as f64;
        let (lower, upper) = (position.floor() as usize, position.ceil() as usize);
        sorted[lower] + (position - lower as f64) * (sorted[upper] - sorted[lower])
    }

    #[test]
    fn every_duration_is_within_one_percent_of_its_bins_value_and_inside_its_bin() {
        let mut us: i64 = 1;
        while us < 400_000_000_000 {
            let x = us as f64 / 1e6;
            let (value, upper) = bin(key_of(us));
            assert!((value - x).abs() <= ALPHA * x * 1.000_001, "{us} µs → {value}");
            assert!(x <= upper * 1.000_000_1, "{us} µs above its bin's end {upper}");
            us = us + us / 7 + 1;
        }
        assert_eq!(bin(key_of(0)).0, 0.0);
    }

    #[test]
    fn keys_sort_as_durations_do() {
        let mut last = key_of(0);
        let mut us: i64 = 1;
        while us < 400_000_000_000 {
            let key = key_of(us);
            assert!(key >= last, "{us} µs");
            last = key;
            us = us + us / 11 + 1;
        }
    }

    #[test]
    fn percentiles_are_within_one_percent_of_the_exact_ones() {
        // A spread from milliseconds to days, deterministic.
        let mut samples: Vec<i64> = (1..2_000i64).map(|i| (i * i * 7_919) % 400_000_000_000 + i).collect();
        samples.sort_unstable();
        let mut h = Histogram::default();
        samples.iter().for_each(|us| h.add(key_of(*us), 1));
        let seconds: Vec<f64> = samples.iter().map(|us| *us as f64 / 1e6).collect();
        for p in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            let exact = exact_percentile(&seconds, p);
            let approx = h.percentile(p).unwrap_or(f64::NAN);
            assert!((approx - exact).abs() <= ALPHA * exact, "p{p}: {approx} vs {exact}");
        }
        assert_eq!(Histogram::default().percentile(0.5), None);
    }

    #[test]
    fn counts_within_whole_seconds_up_to_an_hour_are_exact() {
        let samples: Vec<i64> = (0..5_000i64).map(|i| i * 997_331 % 4_000_000_000).collect();
        let mut h = Histogram::default();
        samples.iter().for_each(|us| h.add(key_of(*us), 1));
        for n in [1i64, 2, 30, 59, 60, 61, 99, 100, 101, 300, 900, 3_599, 3_600] {
            let exact = samples.iter().filter(|us| **us <= n * 1_000_000).count() as i64;
            assert_eq!(h.at_most(n as f64), exact, "within {n} s");
        }
        // Exactly on the threshold counts as within.
        let mut h = Histogram::default();
        h.add(key_of(60_000_000), 1);
        h.add(key_of(60_000_001), 1);
        assert_eq!(h.at_most(60.0), 1);
    }
}
