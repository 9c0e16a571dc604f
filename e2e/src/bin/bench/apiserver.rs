//! API requests as the API server counts them: `apiserver_request_total`, scraped through
//! the admin client before and after a phase.
//!
//! The counter has no label for the client, so a delta holds every component's requests
//! (scheduler binds, kwok's status patches, other tenants' traffic). Only the resources a
//! sandbox's life touches are kept, and Kennel's figure is set next to the bare-Pod
//! floor's, which carries the same scheduler and kwok traffic.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use kube::Client;
use serde::Serialize;

use crate::prom;

/// Resources a sandbox's life touches: its own object, its children, their Events.
const RELEVANT: &[&str] = &[
    "agentsandboxes",
    "pods",
    "networkpolicies",
    "serviceaccounts",
    "persistentvolumeclaims",
    "runtimeclasses",
    "events",
];

/// Request counts keyed by `resource[/subresource] VERB`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests(BTreeMap<String, f64>);

/// The difference of two scrapes, per sandbox, with its breakdown.
#[derive(Serialize, Clone, Debug)]
pub struct RequestDelta {
    /// Requests on the relevant resources, all components together.
    pub total: f64,
    /// `total` divided by the number of sandboxes (or Pods).
    pub per_object: f64,
    /// Per `resource[/subresource] VERB`, per object, largest first.
    pub breakdown: Vec<(String, f64)>,
}

/// Scrapes the API server's request counter.
pub async fn scrape(client: &Client) -> Result<Requests> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .context("failed to build the /metrics request")?;
    let text = client
        .request_text(request)
        .await
        .context("failed to read the API server's /metrics (is the client an admin?)")?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Requests {
    let mut counts = BTreeMap::new();
    for sample in prom::samples(text, "apiserver_request_total") {
        let get = |k: &str| sample.labels.get(k).map_or("", String::as_str);
        if !RELEVANT.contains(&get("resource")) {
            continue;
        }
        let resource = match get("subresource") {
            "" => get("resource").to_owned(),
            sub => format!("{}/{sub}", get("resource")),
        };
        *counts.entry(format!("{resource} {}", get("verb"))).or_insert(0.0) += sample.value;
    }
    Requests(counts)
}

impl Requests {
    /// What happened between `self` (before) and `after`, divided over `objects`.
    pub fn delta(&self, after: &Requests, objects: usize) -> RequestDelta {
        #[allow(clippy::cast_precision_loss)]
        let n = objects.max(1) as f64;
        let mut breakdown: Vec<(String, f64)> = after
            .0
            .iter()
            .map(|(key, v)| (key.clone(), v - self.0.get(key).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d > 0.0)
            .collect();
        let total = breakdown.iter().map(|(_, d)| d).sum();
        breakdown.sort_by(|a, b| b.1.total_cmp(&a.1));
        let breakdown = breakdown.into_iter().map(|(k, d)| (k, round2(d / n))).collect();
        RequestDelta { total, per_object: round2(total / n), breakdown }
    }
}

/// Rounds to two decimals, for figures people read.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_keeps_relevant_resources_and_divides_per_object() {
        let before = parse(
            "apiserver_request_total{resource=\"pods\",subresource=\"\",verb=\"POST\"} 10\n\
             apiserver_request_total{resource=\"leases\",subresource=\"\",verb=\"PUT\"} 10\n",
        );
        let after = parse(
            "apiserver_request_total{resource=\"pods\",subresource=\"\",verb=\"POST\"} 30\n\
             apiserver_request_total{resource=\"pods\",subresource=\"binding\",verb=\"POST\"} 20\n\
             apiserver_request_total{resource=\"leases\",subresource=\"\",verb=\"PUT\"} 99\n",
        );
        let d = before.delta(&after, 20);
        assert!((d.total - 40.0).abs() < f64::EPSILON);
        assert!((d.per_object - 2.0).abs() < f64::EPSILON);
        assert_eq!(d.breakdown.len(), 2);
    }
}
