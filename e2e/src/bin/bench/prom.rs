//! Reading the Prometheus text format: enough to pick counters and histograms out of the
//! API server's and the operator's `/metrics`.

use std::collections::BTreeMap;

/// One sample line: a metric name, its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, with any `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Parses every sample of metrics named `name` or `name_*` from a text exposition;
/// comments and malformed lines are skipped.
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(parse_line)
        .filter(|s| s.name == name || s.name.strip_prefix(name).is_some_and(|r| r.starts_with('_')))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
        None => (head, BTreeMap::new()),
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

/// Splits `a="x",b="y"`; values here never hold escaped quotes or commas that matter.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        labels.insert(key.trim_start_matches(',').to_owned(), after[..end].to_owned());
        rest = &after[end + 1..];
    }
    labels
}

/// The cumulative buckets of histogram `name` as `(upper bound, count)`, `+Inf` last.
pub fn histogram(text: &str, name: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = samples(text, &bucket)
        .into_iter()
        .filter_map(|s| {
            let le = s.labels.get("le")?;
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((bound, s.value))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The value of a counter or gauge without labels (or the sum over its label sets).
pub fn total(text: &str, name: &str) -> f64 {
    // An empty float sum is -0.0; adding 0.0 makes "no samples" print as 0.
    samples(text, name).iter().filter(|s| s.name == name).map(|s| s.value).sum::<f64>() + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
        apiserver_request_total{code=\"201\",resource=\"pods\",verb=\"POST\"} 12\n\
        apiserver_request_total{code=\"200\",resource=\"pods\",verb=\"GET\"} 3\n\
        lag_seconds_bucket{le=\"0.1\"} 4\nlag_seconds_bucket{le=\"+Inf\"} 5\n\
        lag_seconds_count 5\nreconciles 7\n";

    #[test]
    fn samples_carry_their_labels_and_values() {
        let s = samples(TEXT, "apiserver_request_total");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels.get("verb").map(String::as_str), Some("POST"));
        assert!((s[0].value - 12.0).abs() < f64::EPSILON);
    }

    #[test]
    fn histogram_buckets_are_sorted_with_infinity_last() {
        let h = histogram(TEXT, "lag_seconds");
        assert_eq!(h, vec![(0.1, 4.0), (f64::INFINITY, 5.0)]);
        assert!((total(TEXT, "reconciles") - 7.0).abs() < f64::EPSILON);
    }
}
