//! Reading Prometheus' text format, as the server's `/metrics` writes it: what the load
//! driver's report and settle step read, and what end-to-end tests wait on.

/// The samples of `series` with labels (`series{...} value`): each one's label set and value.
pub fn samples<'a>(metrics: &'a str, series: &str) -> impl Iterator<Item = (&'a str, f64)> {
    let prefix = format!("{series}{{");
    metrics.lines().filter(move |line| line.starts_with(&prefix)).filter_map(|line| {
        let (labels, value) = line.rsplit_once(' ')?;
        Some((labels, value.parse().ok()?))
    })
}

/// The value of a metric without labels (`name 12`), 0 when absent.
pub fn unlabelled(metrics: &str, metric: &str) -> f64 {
    metrics.lines().find_map(|line| line.strip_prefix(metric)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// The sum of every sample of `metric`, labelled or not; `None` when it has none.
pub fn sum(metrics: &str, metric: &str) -> Option<f64> {
    let values: Vec<f64> = samples(metrics, metric)
        .map(|(_, value)| value)
        .chain(metrics.lines().filter_map(|line| line.strip_prefix(metric)?.strip_prefix(' ')?.trim().parse().ok()))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The value of label `name` in a sample's label set (`{a="x",b="y"}`).
pub fn label(labels: &str, name: &str) -> Option<String> {
    labels
        .split([',', '{', '}'])
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\""))
        .map(|value| value.trim_end_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# TYPE consumer_lag gauge\n\
        consumer_lag{group=\"orders\",topic=\"orders.orders\",partition=\"0\"} 3\n\
        consumer_lag{group=\"catalog\",topic=\"orders.orders\",partition=\"1\"} 4\n\
        consumer_lag_other{group=\"orders\"} 100\n\
        outbox_backlog 7\n";

    #[test]
    fn a_sum_is_of_every_sample_of_the_metric_and_no_other() {
        assert_eq!(sum(METRICS, "consumer_lag"), Some(7.0));
        assert_eq!(sum(METRICS, "outbox_backlog"), Some(7.0));
        assert_eq!(sum(METRICS, "outbox"), None);
        assert_eq!(sum(METRICS, "market_streams_open"), None);
        assert_eq!(unlabelled(METRICS, "outbox_backlog"), 7.0);
        assert_eq!(unlabelled(METRICS, "consumer_lag"), 0.0);
    }

    #[test]
    fn a_label_is_found_by_its_whole_name() {
        let labels = r#"{group="g",subgroup="s",stage="relay"}"#;
        assert_eq!(label(labels, "group").as_deref(), Some("g"));
        assert_eq!(label(labels, "subgroup").as_deref(), Some("s"));
        assert_eq!(label(labels, "le"), None);
    }
}
