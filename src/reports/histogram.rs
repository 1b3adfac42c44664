//! Durations as histograms, so percentiles can be merged across rollup rows.
//!
//! A duration falls in one bin, named by an integer key; keys sort as the durations do.
//! A bin is the intersection of two grids:
//!
//! - **log bins** `(γ^(k−1), γ^k]` with `γ = 1.01 / 0.99` (each about 2 % wide): a bin's
//!   representative, the harmonic mean of its ends, is within **1 %** of every duration in
//!   it, so a percentile computed over the representatives (`percentile_cont`, as the
//!   README defines it) is within 1 % of the exact one (an interpolation of values each
//!   within 1 % is within 1 % of the interpolation);
//! - **round thresholds**: whole seconds up to 100 s, whole minutes up to an hour, whole
//!   hours up to a day. No bin straddles one, so "how many first responses came within N
//!   seconds" is **exact** for those N; for any other N it counts the bins whose
//!   representative is within N (a response within 1 % of N may fall either side).
//!
//! The key is `k · 1000 + u`, `u` the position on the threshold grid (1–100 for seconds,
//! 101–160 for minutes, 201–224 for hours, 300 beyond a day), so it sorts as durations do.
//! A realistic spread of durations (seconds to a day) fills at most ~750 bins. The keys are
//! computed in SQL ([`bin_sql`]) wherever a sample is binned, so a rolled-up sample and a
//! raw one land in the same bin.

use std::collections::BTreeMap;

/// The relative error bound of the log bins.
const ALPHA: f64 = 0.01;
/// The key of a zero duration.
const ZERO: i32 = -1_000_000_000;
/// Keys per log bin.
const PER_LOG_BIN: i32 = 1_000;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

/// The SQL expression of the bin key of `us`, an integer expression in microseconds.
pub fn bin_sql(us: &str) -> String {
    let ln_gamma = gamma().ln();
    format!(
        "(CASE WHEN {us} <= 0 THEN {ZERO}
               ELSE ceil(ln(({us})::float8 / 1e6) / {ln_gamma})::int * {PER_LOG_BIN}
                    + CASE WHEN {us} <= 100000000 THEN (({us} + 999999) / 1000000)::int
                           WHEN {us} <= 3600000000 THEN 100 + (({us} + 59999999) / 60000000)::int
                           WHEN {us} <= 86400000000 THEN 200 + (({us} + 3599999999) / 3600000000)::int
                           ELSE 300 END END)"
    )
}

/// The threshold-grid interval `(lower, upper]` of position `u`, in seconds.
fn grid(u: i32) -> (f64, f64) {
    let u = f64::from(u);
    match u {
        u if u <= 100.0 => (u - 1.0, u),
        u if u <= 160.0 => (((u - 101.0) * 60.0).max(100.0), (u - 100.0) * 60.0),
        u if u <= 224.0 => (((u - 201.0) * 3_600.0).max(3_600.0), (u - 200.0) * 3_600.0),
        _ => (86_400.0, f64::INFINITY),
    }
}

/// The value (seconds) that stands for every duration of bin `key`, and the bin's upper end.
fn bin(key: i32) -> (f64, f64) {
    if key == ZERO {
        return (0.0, 0.0);
    }
    let (k, u) = (key.div_euclid(PER_LOG_BIN), key.rem_euclid(PER_LOG_BIN));
    let (log_lower, log_upper) = (gamma().powi(k - 1), gamma().powi(k));
    let (grid_lower, grid_upper) = grid(u);
    let (lower, upper) = (log_lower.max(grid_lower), log_upper.min(grid_upper));
    // The harmonic mean of the ends is within ALPHA of both when upper/lower ≤ γ.
    (2.0 * lower * upper / (lower + upper), upper)
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

    /// How many samples are at most `seconds` (exact on the threshold grid, see the module's
    /// documentation).
    pub fn at_most(&self, seconds: f64) -> i64 {
        self.bins
            .iter()
            .filter(|(key, _)| {
                let (value, upper) = bin(**key);
                upper <= seconds || value <= seconds
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

/// The key [`bin_sql`] gives `us` microseconds, in Rust (for tests).
pub fn key_of(us: i64) -> i32 {
    if us <= 0 {
        return ZERO;
    }
    let k = ((us as f64 / 1e6).ln() / gamma().ln()).ceil() as i32;
    let u = if us <= 100_000_000 {
        (us + 999_999) / 1_000_000
    } else if us <= 3_600_000_000 {
        100 + (us + 59_999_999) / 60_000_000
    } else if us <= 86_400_000_000 {
        200 + (us + 3_599_999_999) / 3_600_000_000
    } else {
        300
    };
    k * PER_LOG_BIN + u as i32
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
    fn a_realistic_spread_fills_few_bins() {
        // A duration every 50 ms from 0 to a day.
        let keys: std::collections::BTreeSet<i32> = (0..1_728_000i64).map(|i| key_of(i * 50_000)).collect();
        assert!(keys.len() < 900, "{} bins", keys.len());
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
    fn counts_within_round_thresholds_are_exact() {
        let samples: Vec<i64> = (0..20_000i64).map(|i| i * 9_973_331 % 100_000_000_000).collect();
        let mut h = Histogram::default();
        samples.iter().for_each(|us| h.add(key_of(*us), 1));
        for n in [1i64, 2, 30, 59, 60, 61, 99, 100, 120, 300, 900, 1_800, 3_540, 3_600, 7_200, 86_400] {
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
