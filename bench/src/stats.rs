//! Latency summaries: nearest-rank percentiles over every sample, no histogram buckets.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The nearest-rank percentile of sorted samples: the smallest sample such that at least
/// `percent` of all samples are at or below it. `None` for no samples.
pub fn percentile(sorted: &[Duration], percent: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarises samples in any order; `None` for no samples.
pub fn summarise(mut samples: Vec<Duration>) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let total: Duration = samples.iter().sum();
    Some(Summary {
        count: samples.len(),
        p50_ms: ms(percentile(&samples, 50.0)?),
        p95_ms: ms(percentile(&samples, 95.0)?),
        p99_ms: ms(percentile(&samples, 99.0)?),
        max_ms: ms(*samples.last()?),
        mean_ms: ms(total) / samples.len() as f64,
    })
}

/// `a / b`, or `None` when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_are_the_ranks_themselves() {
        let samples = millis(1..=100);
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 95.0), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&samples, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&samples, 0.0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn nearest_rank_rounds_up_between_samples() {
        // 10 samples: p95 is the 10th (ceil(9.5)), p50 the 5th.
        let samples = millis([1, 2, 3, 4, 5, 6, 7, 8, 9, 1000]);
        assert_eq!(percentile(&samples, 95.0), Some(Duration::from_millis(1000)));
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&millis([7]), 95.0), Some(Duration::from_millis(7)));
    }

    #[test]
    fn summary_sorts_its_samples_and_empty_input_has_none() {
        let summary = summarise(millis([30, 10, 20, 40])).unwrap();
        assert_eq!(summary.count, 4);
        assert_eq!(summary.p50_ms, 20.0);
        assert_eq!(summary.max_ms, 40.0);
        assert_eq!(summary.mean_ms, 25.0);
        assert_eq!(summarise(Vec::new()), None);
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn ratio_is_missing_without_both_sides_or_with_a_zero_divisor() {
        assert_eq!(ratio(Some(10.0), Some(4.0)), Some(2.5));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }
}
