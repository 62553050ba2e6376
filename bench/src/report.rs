//! Latency histograms and the numbers the tools print from them.

use hdrhistogram::Histogram;
use std::time::Duration;

/// Longest latency a histogram can hold; longer samples are clamped to it.
const LATENCY_CEILING: Duration = Duration::from_secs(60);

/// A latency histogram in nanoseconds, 3 significant digits (0.1% error),
/// which is finer than the microsecond figures printed from it.
pub struct Latencies {
    histogram: Histogram<u64>,
}

/// The quantiles a tool reports, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latencies {
    pub fn new() -> Latencies {
        let histogram = Histogram::new_with_bounds(1, LATENCY_CEILING.as_nanos() as u64, 3)
            .expect("static histogram bounds are valid");
        Latencies { histogram }
    }

    pub fn record(&mut self, latency: Duration) {
        let nanos = latency.as_nanos().min(LATENCY_CEILING.as_nanos()) as u64;
        self.histogram.saturating_record(nanos.max(1));
    }

    /// Adds another thread's samples to this one.
    pub fn merge(&mut self, other: &Latencies) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with the same bounds merge");
    }

    pub fn summary(&self) -> Summary {
        let micros = |nanos: u64| nanos as f64 / 1e3;
        Summary {
            samples: self.histogram.len(),
            p50_us: micros(self.histogram.value_at_quantile(0.50)),
            p99_us: micros(self.histogram.value_at_quantile(0.99)),
            p999_us: micros(self.histogram.value_at_quantile(0.999)),
            max_us: micros(self.histogram.max()),
        }
    }
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_in_microseconds() {
        let mut latencies = Latencies::new();
        for micros in 1..=1000 {
            latencies.record(Duration::from_micros(micros));
        }
        let mut other = Latencies::new();
        other.record(Duration::from_secs(3600)); // clamped, not dropped
        latencies.merge(&other);
        let summary = latencies.summary();
        assert_eq!(summary.samples, 1001);
        assert!((summary.p50_us - 500.0).abs() < 2.0, "{summary:?}");
        assert!((summary.p99_us - 990.0).abs() < 2.0, "{summary:?}");
        assert!(summary.max_us >= 59e6, "{summary:?}");
    }
}
