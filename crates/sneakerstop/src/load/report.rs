//! The final report: a table for people, JSON for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::stats::{EndpointSummary, Quantiles, Recorder, rate};
use super::{LoadArgs, Scenario};

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: Scenario,
    pub seconds: f64,
    /// `closed loop, 32 workers` or `open loop, 100/s`.
    pub load: String,
    pub requests: u64,
    pub requests_per_second: f64,
    pub errors: u64,
    pub endpoints: Vec<EndpointSummary>,
    pub purchases: u64,
    pub purchases_per_second: f64,
    /// Pay → order complete and pair sold, seen over HTTP.
    pub purchase_latency_ms: Option<Quantiles>,
    /// Requests repeated because a service had not yet applied the event they depend on.
    pub replica_waits: u64,
    /// Drop scenario: orders refused because the pair was held or sold.
    pub sold_out: u64,
    /// Event time to applied, per consumer group, from the server's histogram.
    pub event_hops: BTreeMap<String, HopSummary>,
    /// The server's largest resident set seen during the run.
    pub server_peak_rss_mib: Option<f64>,
}

/// Event hop latency of one consumer group during the run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HopSummary {
    pub events: f64,
    /// Estimated from histogram buckets (upper bound of the bucket holding the quantile).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Report {
    /// Builds the report from the merged measurements and the server's metrics before/after.
    pub fn new(
        args: &LoadArgs,
        rec: &Recorder,
        elapsed: Duration,
        before: &str,
        after: &str,
        peak_rss_kib: Option<u64>,
    ) -> Self {
        let (requests, errors) = rec.totals();
        let load = match args.rate {
            Some(rate) => format!("open loop, {rate}/s"),
            None => format!("closed loop, {} workers", args.concurrency),
        };
        #[allow(clippy::cast_precision_loss, reason = "MiB for display")]
        let server_peak_rss_mib = peak_rss_kib.map(|kib| kib as f64 / 1024.0);
        Self {
            scenario: args.scenario,
            seconds: elapsed.as_secs_f64(),
            load,
            requests,
            requests_per_second: rate(requests, elapsed),
            errors,
            endpoints: rec.summary(elapsed),
            purchases: rec.purchases,
            purchases_per_second: rate(rec.purchases, elapsed),
            purchase_latency_ms: rec.purchase_latency.as_ref().map(Quantiles::of),
            replica_waits: rec.replica_waits,
            sold_out: rec.sold_out,
            event_hops: event_hops(before, after),
            server_peak_rss_mib,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario {:?}, {}, {:.1} s", self.scenario, self.load, self.seconds);
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}  statuses",
            "endpoint", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for e in &self.endpoints {
            let statuses: Vec<String> = e.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            let _ = writeln!(
                out,
                "{:<28} {:>9} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}{}",
                e.endpoint,
                e.requests,
                e.per_second,
                e.latency_ms.p50,
                e.latency_ms.p95,
                e.latency_ms.p99,
                e.latency_ms.max,
                statuses.join(" "),
                if e.errors > 0 { format!("  ({} errors)", e.errors) } else { String::new() },
            );
        }
        let _ = writeln!(
            out,
            "total: {} requests, {:.1} req/s, {} errors",
            self.requests, self.requests_per_second, self.errors
        );
        if self.purchases > 0 || matches!(self.scenario, Scenario::Purchase | Scenario::Drop | Scenario::Mixed) {
            let latency = self
                .purchase_latency_ms
                .map(|q| format!("p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms", q.p50, q.p95, q.p99, q.max))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "purchases completed: {} ({:.1}/s); pay → complete and sold: {latency}",
                self.purchases, self.purchases_per_second
            );
        }
        if self.replica_waits > 0 {
            let _ = writeln!(out, "requests repeated while a service caught up with events: {}", self.replica_waits);
        }
        if self.sold_out > 0 {
            let _ = writeln!(out, "orders refused because the pair was held or sold: {}", self.sold_out);
        }
        for (group, hop) in &self.event_hops {
            let _ = writeln!(
                out,
                "event hop {group}: {:.0} events, p50 ≤ {:.1} ms, p99 ≤ {:.1} ms",
                hop.events, hop.p50_ms, hop.p99_ms
            );
        }
        if let Some(rss) = self.server_peak_rss_mib {
            let _ = writeln!(out, "server peak resident memory: {rss:.1} MiB");
        }
        out
    }
}

/// The resident set size of `pid` in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `event_hop_seconds` bucket counts per group: group → (le → cumulative count).
fn hop_buckets(metrics: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("event_hop_seconds_bucket{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |name: &str| {
            labels
                .split([',', '{', '}'])
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
        };
        let (Some(group), Some(le), Ok(count)) = (label("group"), label("le"), value.parse::<f64>()) else { continue };
        *out.entry(group).or_default().entry(le).or_default() += count;
    }
    out
}

/// Hop latency per group during the run: the bucket counts after minus before.
fn event_hops(before: &str, after: &str) -> BTreeMap<String, HopSummary> {
    let before = hop_buckets(before);
    let mut out = BTreeMap::new();
    for (group, buckets) in hop_buckets(after) {
        let mut delta: Vec<(f64, f64)> = buckets
            .iter()
            .map(|(le, count)| {
                let old = before.get(&group).and_then(|b| b.get(le)).copied().unwrap_or(0.0);
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
                (bound, count - old)
            })
            .collect();
        delta.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = delta.last().map_or(0.0, |(_, c)| *c);
        if total <= 0.0 {
            continue;
        }
        let quantile =
            |q: f64| delta.iter().find(|(_, c)| *c >= q * total).map_or(f64::INFINITY, |(bound, _)| bound * 1000.0);
        out.insert(group, HopSummary { events: total, p50_ms: quantile(0.5), p99_ms: quantile(0.99) });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_latency_comes_from_the_bucket_deltas() {
        let before = r#"event_hop_seconds_bucket{group="g",topic="t",type="a",le="0.01"} 10
event_hop_seconds_bucket{group="g",topic="t",type="a",le="0.1"} 10
event_hop_seconds_bucket{group="g",topic="t",type="a",le="+Inf"} 10"#;
        let after = r#"event_hop_seconds_bucket{group="g",topic="t",type="a",le="0.01"} 60
event_hop_seconds_bucket{group="g",topic="t",type="a",le="0.1"} 109
event_hop_seconds_bucket{group="g",topic="t",type="a",le="+Inf"} 110
event_hop_seconds_bucket{group="g",topic="t",type="b",le="0.01"} 0
event_hop_seconds_bucket{group="g",topic="t",type="b",le="0.1"} 0
event_hop_seconds_bucket{group="g",topic="t",type="b",le="+Inf"} 0"#;
        let hops = event_hops(before, after);
        let g = &hops["g"];
        assert_eq!(g.events, 100.0);
        assert_eq!(g.p50_ms, 10.0, "50 of 100 within 10 ms");
        assert_eq!(g.p99_ms, 100.0, "99 of 100 within 100 ms");
    }
}
