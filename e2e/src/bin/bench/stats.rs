//! Percentiles of latency samples and of Prometheus histograms.

use serde::Serialize;

/// p50, p90, p99 and max of a set of samples, in milliseconds.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Summary {
    /// Summarises samples given in milliseconds (any order).
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            count: sorted.len(),
            p50_ms: percentile(&sorted, 50.0),
            p90_ms: percentile(&sorted, 90.0),
            p99_ms: percentile(&sorted, 99.0),
            max_ms: sorted.last().copied().unwrap_or_default(),
        }
    }
}

/// The nearest-rank percentile of sorted samples; zero when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    #[allow(clippy::cast_sign_loss)]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// A quantile of a cumulative Prometheus histogram (`(upper bound, count)` pairs, `+Inf`
/// last), interpolated linearly inside the bucket as `histogram_quantile` does.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let fraction = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_pick_an_existing_sample() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&samples);
        assert!((s.p50_ms - 50.0).abs() < f64::EPSILON);
        assert!((s.p99_ms - 99.0).abs() < f64::EPSILON);
        assert!((s.max_ms - 100.0).abs() < f64::EPSILON);
        assert_eq!(Summary::of(&[]).count, 0);
    }

    #[test]
    fn histogram_quantile_interpolates_inside_the_bucket() {
        let buckets = [(0.1, 0.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        let p50 = histogram_quantile(0.5, &buckets).expect("has samples");
        assert!((p50 - 0.15).abs() < 1e-9, "{p50}");
        assert_eq!(histogram_quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    }
}
