//! The floor: the Pods Kennel would build, created directly by the client with the same
//! concurrency, then deleted. Nothing that creates Pods can be faster on this API server.

use std::time::Duration;

use anyhow::Result;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::DeleteParams};
use serde::Serialize;

use kennel::config::Config;

use crate::{
    Settings, apiserver, say,
    stats::Summary,
    workload::{self, PodTimeline},
};

/// What the floor measured.
#[derive(Serialize, Clone, Debug)]
pub struct Floor {
    /// Pods created.
    pub n: usize,
    /// Seconds from the first create call to the last Pod seen.
    pub burst_s: f64,
    /// Pods created per second.
    pub throughput_per_s: f64,
    /// Create call to the Pod's first watch event.
    pub apply_to_created: Summary,
    /// Create call to the Pod seen `Running` (kwok).
    pub apply_to_running: Summary,
    /// API requests over create, run and delete.
    pub requests: apiserver::RequestDelta,
    /// Raw apply-to-created samples, ms, for the plot.
    #[serde(skip)]
    pub created_samples: Vec<f64>,
}

/// Runs the floor in `namespace` (empty, on kwok's nodes).
pub async fn run(client: &Client, namespace: &str, settings: &Settings) -> Result<Floor> {
    let config = crate::kennel_run::operator_config()?;
    workload::service_account(client, namespace, &config.sandbox_service_account).await?;
    let pods = floor_pods(namespace, settings.n, &settings.image, &config)?;
    let timeline = PodTimeline::start(client, namespace).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let before = apiserver::scrape(client).await?;

    let applied = workload::burst(&api, pods, settings.concurrency).await?;
    let wait = Duration::from_secs(60 + settings.n as u64 / 10);
    timeline.wait_for("created", settings.n, wait, |t| t.created.is_some()).await?;
    timeline.wait_for("Running", settings.n, wait, |t| t.running.is_some()).await?;
    let times = timeline.snapshot();
    delete_all(&api, applied.keys().cloned().collect(), settings.concurrency).await?;
    timeline.wait_for("gone", settings.n, wait, |t| t.gone.is_some()).await?;
    let after = apiserver::scrape(client).await?;

    let first = applied.values().copied().fold(f64::INFINITY, f64::min);
    let last = times.values().filter_map(|t| t.created).fold(0.0, f64::max);
    let latency = |pick: fn(&workload::PodTimes) -> Option<f64>| -> Vec<f64> {
        applied
            .iter()
            .filter_map(|(name, start)| times.get(name).and_then(pick).map(|t| (t - start) * 1e3))
            .collect()
    };
    let created_samples = latency(|t| t.created);
    #[allow(clippy::cast_precision_loss)]
    let floor = Floor {
        n: settings.n,
        burst_s: last - first,
        throughput_per_s: settings.n as f64 / (last - first).max(1e-3),
        apply_to_created: Summary::of(&created_samples),
        apply_to_running: Summary::of(&latency(|t| t.running)),
        requests: before.delta(&after, settings.n),
        created_samples,
    };
    say(&format!(
        "floor: {} bare Pods in {:.1} s, {:.0}/s; apply-to-created p50 {:.0} ms p99 {:.0} ms",
        floor.n,
        floor.burst_s,
        floor.throughput_per_s,
        floor.apply_to_created.p50_ms,
        floor.apply_to_created.p99_ms
    ));
    Ok(floor)
}

/// `n` bare Pods with the spec Kennel builds for the benchmark's sandbox.
pub fn floor_pods(namespace: &str, n: usize, image: &str, config: &Config) -> Result<Vec<Pod>> {
    (0..n)
        .map(|i| {
            let sandbox = workload::sandbox(&format!("pod-{i:05}"), image, None)?;
            workload::bare_pod(&sandbox, namespace, config)
        })
        .collect()
}

async fn delete_all(api: &Api<Pod>, names: Vec<String>, concurrency: usize) -> Result<()> {
    let results: Vec<kube::Result<()>> = stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move { api.delete(&name, &DeleteParams::default()).await.map(|_| ()) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<kube::Result<()>>()?;
    Ok(())
}
