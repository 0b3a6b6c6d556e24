//! What the load driver measures: latency histograms and status counts per endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies (microseconds) and outcomes of one endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

impl Default for Endpoint {
    fn default() -> Self {
        // 1 µs to 60 s, 3 significant digits.
        let latency =
            Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|e| unreachable!("static bounds: {e}"));
        Self { latency, statuses: BTreeMap::new(), errors: 0 }
    }
}

/// One worker's (or the whole run's) measurements.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    endpoints: BTreeMap<&'static str, Endpoint>,
    /// Purchases that ended with the order complete and the pair sold.
    pub purchases: u64,
    /// Pay → order complete and pair sold, as seen over HTTP (microseconds).
    pub purchase_latency: Option<Histogram<u64>>,
    /// Drop scenario: orders refused because another buyer holds or bought the pair.
    pub sold_out: u64,
}

/// `elapsed` in whole microseconds, at least 1 (histograms count from 1).
pub(crate) fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Recorder {
    /// Records one request; `status` is `None` for a transport error.
    pub fn record(&mut self, endpoint: &'static str, elapsed: Duration, status: Option<u16>, error: bool) {
        let entry = self.endpoints.entry(endpoint).or_default();
        let _ = entry.latency.record(micros(elapsed));
        *entry.statuses.entry(status.unwrap_or(0)).or_default() += 1;
        if error {
            entry.errors += 1;
        }
    }

    /// Records one completed purchase.
    pub fn purchase(&mut self, elapsed: Duration) {
        self.purchases += 1;
        let histogram = self.purchase_latency.get_or_insert_with(|| Endpoint::default().latency);
        let _ = histogram.record(micros(elapsed));
    }

    /// Adds another recorder's measurements.
    pub fn merge(&mut self, other: Recorder) {
        for (name, theirs) in other.endpoints {
            let ours = self.endpoints.entry(name).or_default();
            let _ = ours.latency.add(&theirs.latency);
            for (status, count) in theirs.statuses {
                *ours.statuses.entry(status).or_default() += count;
            }
            ours.errors += theirs.errors;
        }
        self.purchases += other.purchases;
        self.sold_out += other.sold_out;
        if let Some(theirs) = other.purchase_latency {
            match &mut self.purchase_latency {
                Some(ours) => {
                    let _ = ours.add(&theirs);
                }
                None => self.purchase_latency = Some(theirs),
            }
        }
    }

    /// Total requests and errors.
    pub fn totals(&self) -> (u64, u64) {
        self.endpoints.values().fold((0, 0), |(n, e), ep| (n + ep.latency.len(), e + ep.errors))
    }

    /// The per-endpoint summary for a run of `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Vec<EndpointSummary> {
        self.endpoints
            .iter()
            .map(|(name, ep)| EndpointSummary {
                endpoint: (*name).to_owned(),
                requests: ep.latency.len(),
                per_second: rate(ep.latency.len(), elapsed),
                latency_ms: Quantiles::of(&ep.latency),
                statuses: ep
                    .statuses
                    .iter()
                    .map(|(s, n)| (if *s == 0 { "io".to_owned() } else { s.to_string() }, *n))
                    .collect(),
                errors: ep.errors,
            })
            .collect()
    }
}

/// Events per second.
#[allow(clippy::cast_precision_loss, reason = "a rate for display")]
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Quantiles {
    /// From a microsecond histogram.
    #[allow(clippy::cast_precision_loss, reason = "milliseconds for display")]
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// One row of the final table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSummary {
    pub endpoint: String,
    pub requests: u64,
    pub per_second: f64,
    pub latency_ms: Quantiles,
    /// Count per HTTP status (`io` = no answer).
    pub statuses: BTreeMap<String, u64>,
    pub errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_merge_counts_and_latencies() {
        let mut a = Recorder::default();
        a.record("GET /x", Duration::from_millis(2), Some(200), false);
        a.record("GET /x", Duration::from_millis(4), Some(500), true);
        let mut b = Recorder::default();
        b.record("GET /x", Duration::from_millis(8), Some(200), false);
        b.purchase(Duration::from_millis(30));
        a.merge(b);
        assert_eq!(a.totals(), (3, 1));
        let summary = a.summary(Duration::from_secs(1));
        assert_eq!(summary[0].statuses["200"], 2);
        assert_eq!(summary[0].statuses["500"], 1);
        assert!((summary[0].latency_ms.max - 8.0).abs() < 0.1, "{:?}", summary[0].latency_ms);
        assert_eq!(a.purchases, 1);
        assert!((Quantiles::of(a.purchase_latency.as_ref().unwrap()).p50 - 30.0).abs() < 0.1);
    }
}
