//! The final report: a table for people, JSON for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::prometheus::{label, samples, unlabelled};
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
    /// Requests the scenario sent per completed purchase (listing, order, payment, polls).
    pub requests_per_purchase: Option<f64>,
    /// Drop scenario: orders refused because the pair was held or sold.
    pub sold_out: u64,
    /// PostgreSQL's ceiling (tx/s) this run is compared with (`--yardstick`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yardstick_tps: Option<f64>,
    /// Each throughput divided by the yardstick: `requests`, `purchases`, `bookOperations`
    /// and one per endpoint (its name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ratios: BTreeMap<String, f64>,
    /// Event time to applied, per consumer group, from the server's histogram.
    pub event_hops: BTreeMap<String, HopSummary>,
    /// The hop's stages per consumer group (`"<group> <stage>"`): `relay` (outbox write →
    /// produced), `delivery` (produced → taken by the consumer), `apply` (taken → committed).
    pub event_stages: BTreeMap<String, HopSummary>,
    /// Catalog read-cache answers during the run, by result (`hit`, `miss`, `bypass`).
    pub catalog_cache: BTreeMap<String, f64>,
    /// The server's largest resident set seen during the run.
    pub server_peak_rss_mib: Option<f64>,
    /// Market scenario: the book, matching and live streams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market: Option<MarketSummary>,
    /// Storefront scenario: what a browser downloads for each page.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<crate::client::PageWeight>,
}

/// What the market scenario measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketSummary {
    /// Bids placed, asks listed and bids cancelled.
    pub book_operations: u64,
    pub book_operations_per_second: f64,
    /// The slowest of the three operations' p99.
    pub book_operation_p99_ms: f64,
    /// Bids that met asks (the server's `market_matches_total`).
    pub matches: f64,
    pub matches_per_second: f64,
    /// Completed sales of asks (`market_sales_total`): matched, ordered, charged, sold.
    pub sales: f64,
    pub sales_per_second: f64,
    /// Match made → order complete (`market_match_to_sale_seconds`).
    pub match_to_sale: Option<HopSummary>,
    /// Probe bid sent → shown by each live stream (SSE).
    pub stream_delay_ms: Option<Quantiles>,
}

/// The operations on a book, as the scenario names them.
const BOOK_OPERATIONS: [&str; 3] = ["POST /api/bids", "POST /api/sneakers (ask)", "DELETE /api/bids/{id}"];

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
        let report = Self {
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
            #[allow(clippy::cast_precision_loss, reason = "a ratio for display")]
            requests_per_purchase: (rec.purchases > 0).then(|| requests as f64 / rec.purchases as f64),
            sold_out: rec.sold_out,
            event_hops: event_hops(before, after),
            event_stages: event_stages(before, after),
            catalog_cache: counter_deltas(before, after, "catalog_cache_requests_total", "result"),
            server_peak_rss_mib,
            market: (args.scenario == Scenario::Market).then(|| market_summary(rec, elapsed, before, after)),
            yardstick_tps: None,
            ratios: BTreeMap::new(),
            pages: Vec::new(),
        };
        match args.yardstick {
            Some(tps) => report.against(tps),
            None => report,
        }
    }

    /// The same report with every throughput also as a ratio to `tps`, PostgreSQL's ceiling
    /// measured beside it.
    #[must_use]
    pub fn against(mut self, tps: f64) -> Self {
        if !(tps.is_finite() && tps > 0.0) {
            return self;
        }
        self.yardstick_tps = Some(tps);
        self.ratios.insert("requests".into(), self.requests_per_second / tps);
        if self.purchases > 0 {
            self.ratios.insert("purchases".into(), self.purchases_per_second / tps);
        }
        if let Some(market) = &self.market {
            self.ratios.insert("bookOperations".into(), market.book_operations_per_second / tps);
        }
        for endpoint in &self.endpoints {
            self.ratios.insert(endpoint.endpoint.clone(), endpoint.per_second / tps);
        }
        self
    }

    /// Adds the live streams' delays the market's probe measured.
    #[must_use]
    pub fn with_fanout(mut self, fanout: Option<&hdrhistogram::Histogram<u64>>) -> Self {
        if let (Some(market), Some(histogram)) = (self.market.as_mut(), fanout)
            && !histogram.is_empty()
        {
            market.stream_delay_ms = Some(Quantiles::of(histogram));
        }
        self
    }

    /// Adds the storefront pages' weights.
    #[must_use]
    pub fn with_pages(mut self, pages: Vec<crate::client::PageWeight>) -> Self {
        self.pages = pages;
        self
    }

    /// A throughput's ratio to the yardstick, for the table (`-` without one).
    fn ratio(&self, name: &str) -> String {
        self.ratios.get(name).map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"))
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let scenario = clap::ValueEnum::to_possible_value(&self.scenario).map(|v| v.get_name().to_owned());
        let scenario = scenario.unwrap_or_default();
        let _ = writeln!(out, "scenario {scenario}, {}, {:.1} s", self.load, self.seconds);
        if let Some(tps) = self.yardstick_tps {
            let _ = writeln!(out, "yardstick: PostgreSQL's ceiling {tps:.0} tx/s (× below is req/s ÷ it)");
        }
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8}  statuses",
            "endpoint", "requests", "req/s", "×PG", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for e in &self.endpoints {
            let statuses: Vec<String> = e.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            let _ = writeln!(
                out,
                "{:<28} {:>9} {:>9.1} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}{}",
                e.endpoint,
                e.requests,
                e.per_second,
                self.ratio(&e.endpoint),
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
            "total: {} requests, {:.1} req/s ({} × PG), {} errors",
            self.requests,
            self.requests_per_second,
            self.ratio("requests"),
            self.errors
        );
        if self.purchases > 0 || matches!(self.scenario, Scenario::Purchase | Scenario::Drop | Scenario::Mixed) {
            let latency = self
                .purchase_latency_ms
                .map(|q| format!("p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms", q.p50, q.p95, q.p99, q.max))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "purchases completed: {} ({:.1}/s, {} × PG); pay → complete and sold: {latency}",
                self.purchases,
                self.purchases_per_second,
                self.ratio("purchases")
            );
        }
        for page in &self.pages {
            let _ = writeln!(
                out,
                "page {}: {:.1} KB (HTML {:.1} KB, CSS and script {:.1} KB)",
                page.page,
                kb(page.total_bytes()),
                kb(page.html_bytes),
                kb(page.asset_bytes)
            );
        }
        if let Some(per) = self.requests_per_purchase {
            let _ = writeln!(out, "requests per completed purchase: {per:.1}");
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
            let stages: Vec<String> = ["relay", "delivery", "apply"]
                .iter()
                .filter_map(|stage| {
                    let s = self.event_stages.get(&format!("{group} {stage}"))?;
                    Some(format!("{stage} p50 ≤ {:.1} / p99 ≤ {:.1} ms", s.p50_ms, s.p99_ms))
                })
                .collect();
            if !stages.is_empty() {
                let _ = writeln!(out, "  stages: {}", stages.join(", "));
            }
        }
        let cached: f64 = self.catalog_cache.values().sum();
        if cached > 0.0 {
            let share = |result: &str| 100.0 * self.catalog_cache.get(result).copied().unwrap_or(0.0) / cached;
            let _ = writeln!(
                out,
                "catalog cache: {cached:.0} answers, {:.1}% hits, {:.1}% misses, {:.1}% bypassed",
                share("hit"),
                share("miss"),
                share("bypass")
            );
        }
        if let Some(m) = &self.market {
            let _ = writeln!(
                out,
                "book operations: {} ({:.1}/s, {} × PG), slowest p99 {:.1} ms; matches {:.0} ({:.1}/s); sales completed {:.0} ({:.1}/s)",
                m.book_operations,
                m.book_operations_per_second,
                self.ratio("bookOperations"),
                m.book_operation_p99_ms,
                m.matches,
                m.matches_per_second,
                m.sales,
                m.sales_per_second
            );
            if let Some(hop) = &m.match_to_sale {
                let _ = writeln!(out, "match → completed sale: p50 ≤ {:.1} ms, p99 ≤ {:.1} ms", hop.p50_ms, hop.p99_ms);
            }
            if let Some(q) = &m.stream_delay_ms {
                let _ = writeln!(
                    out,
                    "bid sent → shown by a live stream (SSE): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    q.p50, q.p99, q.max
                );
            }
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

/// Bucket counts of histogram `metric`, summed per key (the values of `key_labels`,
/// joined by a space): key → (le → cumulative count).
fn buckets(metrics: &str, metric: &str, key_labels: &[&str]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (labels, count) in samples(metrics, &format!("{metric}_bucket")) {
        let key: Option<Vec<String>> = key_labels.iter().map(|name| label(labels, name)).collect();
        let (Some(key), Some(le)) = (key, label(labels, "le")) else { continue };
        *out.entry(key.join(" ")).or_default().entry(le).or_default() += count;
    }
    out
}

/// How much counter `metric` grew during the run, per value of label `by`.
fn counter_deltas(before: &str, after: &str, metric: &str, by: &str) -> BTreeMap<String, f64> {
    let read = |metrics: &str| {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for (labels, value) in samples(metrics, metric) {
            if let Some(key) = label(labels, by) {
                *out.entry(key).or_default() += value;
            }
        }
        out
    };
    let before = read(before);
    read(after)
        .into_iter()
        .map(|(key, count)| (key.clone(), count - before.get(&key).copied().unwrap_or(0.0)))
        .collect()
}

/// The market scenario's summary: book operations from the driver, matches and sales from
/// the server's counters, match-to-sale from its histogram.
fn market_summary(rec: &Recorder, elapsed: Duration, before: &str, after: &str) -> MarketSummary {
    let endpoints = rec.summary(elapsed);
    let book: Vec<&EndpointSummary> =
        endpoints.iter().filter(|e| BOOK_OPERATIONS.contains(&e.endpoint.as_str())).collect();
    let book_operations = book.iter().map(|e| e.requests).sum();
    let grew = |metric: &str| unlabelled(after, metric) - unlabelled(before, metric);
    let (matches, sales) = (grew("market_matches_total"), grew("market_sales_total"));
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    MarketSummary {
        book_operations,
        book_operations_per_second: rate(book_operations, elapsed),
        book_operation_p99_ms: book.iter().map(|e| e.latency_ms.p99).fold(0.0, f64::max),
        matches,
        matches_per_second: matches / seconds,
        sales,
        sales_per_second: sales / seconds,
        match_to_sale: histogram_deltas(before, after, "market_match_to_sale_seconds", &[]).into_values().next(),
        stream_delay_ms: None,
    }
}

/// Quantiles per key of histogram `metric` during the run: the bucket counts after minus before.
fn histogram_deltas(before: &str, after: &str, metric: &str, key_labels: &[&str]) -> BTreeMap<String, HopSummary> {
    let before = buckets(before, metric, key_labels);
    let mut out = BTreeMap::new();
    for (key, counts) in buckets(after, metric, key_labels) {
        let mut delta: Vec<(f64, f64)> = counts
            .iter()
            .map(|(le, count)| {
                let old = before.get(&key).and_then(|b| b.get(le)).copied().unwrap_or(0.0);
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
        out.insert(key, HopSummary { events: total, p50_ms: quantile(0.5), p99_ms: quantile(0.99) });
    }
    out
}

/// Hop latency per consumer group during the run.
fn event_hops(before: &str, after: &str) -> BTreeMap<String, HopSummary> {
    histogram_deltas(before, after, "event_hop_seconds", &["group"])
}

/// The hop split into its stages (relay, delivery, apply), per consumer group.
fn event_stages(before: &str, after: &str) -> BTreeMap<String, HopSummary> {
    histogram_deltas(before, after, "event_stage_seconds", &["group", "stage"])
}

#[allow(clippy::cast_precision_loss, reason = "kilobytes for display")]
fn kb(bytes: usize) -> f64 {
    bytes as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_throughput_is_also_a_ratio_to_the_yardstick() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: LoadArgs,
        }
        let args = <Cli as clap::Parser>::parse_from(["load", "--scenario", "list", "--yardstick", "2000"]);
        let mut rec = Recorder::default();
        for _ in 0..500 {
            rec.record("POST /api/sneakers", Duration::from_millis(3), Some(201), false);
        }
        let report = Report::new(&args.args, &rec, Duration::from_secs(1), "", "", None);
        assert_eq!(report.yardstick_tps, Some(2000.0));
        assert!((report.ratios["requests"] - 0.25).abs() < 1e-9, "{:?}", report.ratios);
        assert!((report.ratios["POST /api/sneakers"] - 0.25).abs() < 1e-9);
        assert!(report.table().contains("0.250"), "{}", report.table());
        let without =
            Report::new(&LoadArgs { yardstick: None, ..args.args }, &rec, Duration::from_secs(1), "", "", None);
        assert!(without.ratios.is_empty() && without.yardstick_tps.is_none());
    }

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

    #[test]
    fn cache_answers_are_counted_during_the_run_only() {
        let before = "catalog_cache_requests_total{result=\"hit\"} 10\ncatalog_cache_requests_total{result=\"miss\"} 3";
        let after = "catalog_cache_requests_total{result=\"hit\"} 110\ncatalog_cache_requests_total{result=\"miss\"} 4\n\
                     catalog_cache_requests_total{result=\"bypass\"} 2";
        let counts = counter_deltas(before, after, "catalog_cache_requests_total", "result");
        assert_eq!(counts["hit"], 100.0);
        assert_eq!(counts["miss"], 1.0);
        assert_eq!(counts["bypass"], 2.0);
    }

    #[test]
    fn stages_are_summarised_per_group_and_stage() {
        let after = r#"event_stage_seconds_bucket{group="orders",stage="relay",le="0.005"} 9
event_stage_seconds_bucket{group="orders",stage="relay",le="0.01"} 10
event_stage_seconds_bucket{group="orders",stage="relay",le="+Inf"} 10
event_stage_seconds_bucket{group="orders",stage="apply",le="0.005"} 0
event_stage_seconds_bucket{group="orders",stage="apply",le="0.01"} 4
event_stage_seconds_bucket{group="orders",stage="apply",le="+Inf"} 4"#;
        let stages = event_stages("", after);
        assert_eq!(stages["orders relay"].p50_ms, 5.0);
        assert_eq!(stages["orders relay"].p99_ms, 10.0);
        assert_eq!(stages["orders apply"].events, 4.0);
        assert_eq!(stages["orders apply"].p50_ms, 10.0);
    }
}
