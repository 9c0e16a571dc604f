//! The real node: sandboxes under gVisor started one at a time, apply to Running, next to
//! the same Pod spec created bare. No kwok here: a real kubelet, containerd and runsc.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::PostParams};
use serde::Serialize;

use kennel::{api::AgentSandbox, config::Config};
use kennel_e2e::{ClusterEnv, TestNamespace};

use crate::{
    Settings,
    operator::Operator,
    say,
    stats::Summary,
    workload::{self, PodTimeline, now},
};

/// Start-up on the real node.
#[derive(Serialize, Clone, Debug)]
pub struct RealNode {
    /// Sandboxes (and bare Pods) started, one at a time.
    pub n: usize,
    /// Sandbox apply to its Pod Running, through the operator.
    pub kennel_apply_to_running: Summary,
    /// Bare Pod create to Running, same spec.
    pub bare_apply_to_running: Summary,
}

/// The operator's configuration on the real node, and the bare Pods' too: CPU requests
/// small enough that every sandbox of the run fits on the one two-core node at once (at
/// the default 100m, the 20th stays Pending).
const REAL_NODE_CONFIG: &str = "runtimeClasses:\n  gvisor: gvisor\ndefaultRequests:\n  \
                                cpu: 10m\n  memory: 64Mi\n  ephemeralStorage: 64Mi\n";

/// Runs both sides, each in its own namespace, deleted before the next starts.
pub async fn run(client: &Client, env: &ClusterEnv, settings: &Settings) -> Result<RealNode> {
    let config = settings.work_dir.join("operator-gvisor.yaml");
    std::fs::write(&config, REAL_NODE_CONFIG)?;
    let ns = TestNamespace::create(client, env, "kennel-bench-gvisor").await?;
    let log = settings.work_dir.join("operator-gvisor.log");
    let op = Operator::start(env, &config, &ns.name, &log).await?;
    let timeline = PodTimeline::start(client, &ns.name).await?;
    let sandboxes: Api<AgentSandbox> = Api::namespaced(client.clone(), &ns.name);
    let kennel = workload::one_by_one(settings.gvisor_n, |i| {
        let (api, timeline, image) = (&sandboxes, &timeline, &settings.image);
        async move {
            let sandbox = workload::sandbox(&format!("gv-{i:02}"), image, None)?;
            let start = now();
            api.create(&PostParams::default(), &sandbox).await?;
            started(timeline, i + 1, start).await
        }
    })
    .await?;
    op.stop();
    // The bare Pods start on a quiet node: the sandboxes' Pods are gone first.
    drop(ns);
    let n = settings.gvisor_n;
    timeline.wait_for("gone", n, Duration::from_mins(2), |t| t.gone.is_some()).await?;
    drop(timeline);

    let ns = TestNamespace::create(client, env, "kennel-bench-gvisor-bare").await?;
    let config = Config::from_yaml(REAL_NODE_CONFIG)?;
    workload::service_account(client, &ns.name, &config.sandbox_service_account).await?;
    let timeline = PodTimeline::start(client, &ns.name).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let bare = workload::one_by_one(settings.gvisor_n, |i| {
        let (api, timeline, image, config, ns) = (&pods, &timeline, &settings.image, &config, &ns);
        async move {
            let sandbox = workload::sandbox(&format!("gv-{i:02}"), image, None)?;
            let pod = workload::bare_pod(&sandbox, &ns.name, config)?;
            let start = now();
            api.create(&PostParams::default(), &pod).await?;
            started(timeline, i + 1, start).await
        }
    })
    .await?;
    let real = RealNode {
        n: settings.gvisor_n,
        kennel_apply_to_running: Summary::of(&kennel),
        bare_apply_to_running: Summary::of(&bare),
    };
    say(&format!(
        "gvisor: apply-to-Running p50/p90 Kennel {:.0}/{:.0} ms, bare Pod {:.0}/{:.0} ms",
        real.kennel_apply_to_running.p50_ms,
        real.kennel_apply_to_running.p90_ms,
        real.bare_apply_to_running.p50_ms,
        real.bare_apply_to_running.p90_ms
    ));
    Ok(real)
}

/// Waits for the `count`th Pod to run; returns its start-up in milliseconds.
async fn started(timeline: &PodTimeline, count: usize, start: f64) -> Result<f64> {
    timeline.wait_for("Running", count, Duration::from_mins(3), |t| t.running.is_some()).await?;
    let latest = timeline.snapshot().values().filter_map(|t| t.running).fold(0.0, f64::max);
    Ok((latest - start) * 1e3)
}
