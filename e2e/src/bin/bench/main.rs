//! `make bench`: Kennel's speed and cost against the bare-Pod floor on the local API
//! server, with kwok's simulated nodes, plus start-up on the real node under gVisor.
//!
//! Phases, in order: fake nodes; the floor (bare Pods with the spec Kennel builds); the
//! Kennel burst, idle window and mass expiry; the real node (gVisor). Each phase is one
//! module: [`kwok`], [`floor`], [`kennel_run`], [`gvisor`]. Figures go to `docs/bench/`
//! ([`report`]). Settings come from the environment (see `e2e/bench/run.sh`).

// Kubernetes kind names (RuntimeClass, NetworkPolicy) are words in these docs, not code.
#![allow(clippy::doc_markdown)]

mod apiserver;
mod floor;
mod gvisor;
mod kennel_run;
mod kwok;
mod operator;
mod plot;
mod prom;
mod report;
mod stats;
mod workload;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use kube::Client;

use kennel_e2e::{ClusterEnv, TestNamespace, client, kubectl::kubectl_ok};

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Sandboxes (and bare Pods) in the burst.
    pub n: usize,
    /// Client requests in flight during a burst.
    pub concurrency: usize,
    /// Seconds of the idle window in which writes are counted.
    pub idle_secs: u32,
    /// Sandboxes (and bare Pods) started one by one on the real node.
    pub gvisor_n: usize,
    /// Fake nodes.
    pub nodes: usize,
    /// Where logs and generated configuration go.
    pub work_dir: PathBuf,
    /// The image every sandbox names: kwok never pulls it, the real node has it imported.
    pub image: String,
}

impl Settings {
    fn from_env(env: &ClusterEnv) -> Result<Self> {
        let var = |name: &str, default: usize| -> Result<usize> {
            std::env::var(name).map_or(Ok(default), |v| {
                v.parse().with_context(|| format!("{name} must be a whole number, not {v:?}"))
            })
        };
        let work_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster/bench");
        std::fs::create_dir_all(&work_dir)?;
        Ok(Self {
            n: var("BENCH_N", 1000)?.max(1),
            concurrency: var("BENCH_CONCURRENCY", 32)?.max(1),
            idle_secs: u32::try_from(var("BENCH_IDLE_SECS", 60)?)?,
            gvisor_n: var("BENCH_GVISOR_N", 20)?,
            nodes: var("BENCH_NODES", 4)?.max(1),
            work_dir,
            image: env.busybox_image.clone(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let env = ClusterEnv::load()?;
    let settings = Settings::from_env(&env)?;
    let client = client(&env).await?;
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let crds = crds.display().to_string();
    kubectl_ok(&env, &["apply", "--server-side", "--force-conflicts", "-f", &crds])?;
    say(&format!(
        "bench: {} sandboxes, {} in flight, {} fake nodes, idle window {} s",
        settings.n, settings.concurrency, settings.nodes, settings.idle_secs
    ));

    let simulated = simulated(&client, &env, &settings).await?;
    // The simulated figures are written first: the real node's phase cannot lose them.
    let mut results = report::Results::new(&settings, simulated, None);
    report::write(&results)?;
    if settings.gvisor_n > 0 {
        match gvisor::run(&client, &env, &settings).await {
            Ok(real) => results.real_node = Some(real),
            Err(error) => say(&format!("bench: WARNING: the real-node phase failed: {error:#}")),
        }
        report::write(&results)?;
    }
    say(&report::summary(&results));
    Ok(())
}

/// The floor and the Kennel run on kwok's nodes; the nodes are removed even on failure.
async fn simulated(
    client: &Client,
    env: &ClusterEnv,
    settings: &Settings,
) -> Result<report::Simulated> {
    let log = settings.work_dir.join("kwok.log");
    let nodes = kwok::FakeNodes::start(client, env, settings.nodes, &log).await?;
    say(&format!("bench: kwok runs {} fake nodes (log: {})", settings.nodes, log.display()));
    let outcome = async {
        let floor_ns = TestNamespace::create(client, env, "kennel-bench-floor").await?;
        let floor = floor::run(client, &floor_ns.name, settings).await?;
        drop(floor_ns);
        let ns = TestNamespace::create(client, env, "kennel-bench").await?;
        let kennel = kennel_run::run(client, env, &ns.name, settings, &floor).await?;
        Ok::<_, anyhow::Error>(report::Simulated { floor, kennel })
    }
    .await;
    // Pods left on the fake nodes lose their node; give namespace deletion a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes.stop().await?;
    outcome
}

/// Progress for the person at the terminal. The benchmark is a command-line tool, not
/// the operator: printing is its job.
pub fn say(line: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
}
