//! Simulated nodes: kwok against the local API server, a few fake nodes only benchmark
//! Pods may land on, and the RuntimeClass that sends them there.
//!
//! The operator is not changed for the benchmark: its configuration maps `gvisor` to the
//! RuntimeClass made here, whose `scheduling` adds the fake nodes' selector and
//! toleration to every Pod that names it (the RuntimeClass admission plugin does that).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{core::v1::Node, node::v1::RuntimeClass};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use kennel_e2e::ClusterEnv;

/// Label that marks the fake nodes; kwok manages only the nodes that carry it.
pub const NODE_LABEL: (&str, &str) = ("type", "kwok");
/// Taint on the fake nodes, so that nothing but benchmark Pods is scheduled there.
pub const TAINT_KEY: &str = "kwok.x-k8s.io/node";
/// The benchmark's RuntimeClass: any handler, scheduled onto the fake nodes.
pub const RUNTIME_CLASS: &str = "kennel-bench-kwok";
const NODE_PREFIX: &str = "kennel-bench-kwok-";

/// Running kwok and its fake nodes. [`FakeNodes::stop`] removes everything; dropping it
/// without `stop` still kills kwok.
pub struct FakeNodes {
    client: Client,
    child: Option<Child>,
    nodes: Vec<String>,
}

impl FakeNodes {
    /// Creates the RuntimeClass and `count` nodes, starts kwok and waits for the nodes to
    /// be Ready.
    pub async fn start(
        client: &Client,
        env: &ClusterEnv,
        count: usize,
        log: &Path,
    ) -> Result<Self> {
        let kwok = std::env::var_os("KWOK_BIN").map(PathBuf::from).context(
            "KWOK_BIN is not set: run the benchmark through `make bench` (e2e/bench/run.sh)",
        )?;
        let stages = std::env::var_os("KWOK_STAGES").map(PathBuf::from).context(
            "KWOK_STAGES is not set: run the benchmark through `make bench` (e2e/bench/run.sh)",
        )?;
        runtime_class(client).await?;
        let mut fake = Self { client: client.clone(), child: None, nodes: Vec::new() };
        for i in 0..count {
            let name = format!("{NODE_PREFIX}{i}");
            create_node(client, &name).await?;
            fake.nodes.push(name);
        }
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        let child = Command::new(&kwok)
            .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
            .arg(format!("--config={}", stages.display()))
            .arg(format!("--manage-nodes-with-label-selector={}={}", NODE_LABEL.0, NODE_LABEL.1))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("failed to start {}", kwok.display()))?;
        fake.child = Some(child);
        fake.wait_ready().await?;
        Ok(fake)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        for _ in 0..120 {
            let mut ready = 0;
            for name in &self.nodes {
                if api.get_opt(name).await?.as_ref().is_some_and(is_ready) {
                    ready += 1;
                }
            }
            if ready == self.nodes.len() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("kwok exited ({status}) before its nodes were Ready; see its log");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("kwok's fake nodes were not Ready within 60 s; see its log")
    }

    /// Stops kwok, then deletes the fake nodes and the RuntimeClass.
    pub async fn stop(mut self) -> Result<()> {
        self.kill();
        let nodes: Api<Node> = Api::all(self.client.clone());
        for name in &self.nodes {
            ignore_missing(nodes.delete(name, &DeleteParams::default()).await)?;
        }
        let classes: Api<RuntimeClass> = Api::all(self.client.clone());
        ignore_missing(classes.delete(RUNTIME_CLASS, &DeleteParams::default()).await)?;
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ignore_missing<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn runtime_class(client: &Client) -> Result<()> {
    let class: RuntimeClass = serde_json::from_value(json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": RUNTIME_CLASS, "labels": {"kennel.dev/bench": "true"}},
        // Never run: kwok plays the Pods' lifecycle without a container runtime.
        "handler": "kwok",
        "scheduling": {
            "nodeSelector": {NODE_LABEL.0: NODE_LABEL.1},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        },
    }))?;
    let api: Api<RuntimeClass> = Api::all(client.clone());
    api.patch(RUNTIME_CLASS, &PatchParams::apply("kennel-bench").force(), &Patch::Apply(&class))
        .await
        .context("failed to apply the benchmark RuntimeClass")?;
    Ok(())
}

/// A fake node with room for thousands of Pods. Its status is set after creation: kwok's
/// initial stage keeps capacity and allocatable it finds.
async fn create_node(client: &Client, name: &str) -> Result<()> {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {NODE_LABEL.0: NODE_LABEL.1, "kubernetes.io/hostname": name,
                       "kennel.dev/bench": "true"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": [{"key": TAINT_KEY, "value": "fake", "effect": "NoSchedule"}]},
    }))?;
    let api: Api<Node> = Api::all(client.clone());
    ignore_missing(api.delete(name, &DeleteParams::default()).await)?;
    for _ in 0..50 {
        if api.get_opt(name).await?.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.create(&PostParams::default(), &node)
        .await
        .with_context(|| format!("failed to create fake node {name}"))?;
    let room = json!({"cpu": "1k", "memory": "8Ti", "ephemeral-storage": "8Ti", "pods": "20k"});
    let status = json!({"status": {"capacity": room, "allocatable": room}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("failed to set the capacity of fake node {name}"))?;
    Ok(())
}
