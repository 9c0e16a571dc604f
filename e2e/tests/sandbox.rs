//! End-to-end proof of the operator core on the local cluster: each test starts its own
//! `kennel-operator` scoped to its own namespace, applies `AgentSandbox` objects and checks, from
//! the API and from inside the sandbox, what a tenant relies on. The cases live in
//! `sandbox/`: `fencing` (what the agent can and cannot do), `expiry` (TTL, Retain, an
//! operator restart) and `lifecycle` (recreation, refusals, finished agents, idleness).
//!
//! Needs the cluster (`make cluster-up`), the CRD applied and the operator built
//! (`cargo build -p kennel-operator`). Operator logs: `e2e/.cluster/logs/operator-<ns>.log`.

#[path = "sandbox/expiry.rs"]
mod expiry;
#[path = "sandbox/fencing.rs"]
mod fencing;
#[path = "sandbox/lifecycle.rs"]
mod lifecycle;

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kennel_e2e::{
    ClusterEnv, TestNamespace, client,
    operator::{OperatorProcess, OperatorSettings},
};
use kube::{Api, Client};

/// How long a gVisor sandbox may take to run on a busy two-core node.
pub const START_TIMEOUT: Duration = Duration::from_mins(2);

/// One test's world: its operator (dropped, so killed, first), namespace and client.
pub struct Fixture {
    /// The operator, watching only `ns`.
    pub operator: OperatorProcess,
    /// The test's namespace, deleted on drop.
    pub ns: TestNamespace,
    /// A client on the cluster's admin kubeconfig.
    pub client: Client,
    /// The cluster's facts.
    pub env: ClusterEnv,
}

impl Fixture {
    /// A namespace `PREFIX-…` and an operator with default settings watching only it.
    pub async fn new(prefix: &str) -> Result<Self> {
        Self::with(prefix, &OperatorSettings::default()).await
    }

    /// A namespace `PREFIX-…` and an operator with `settings` watching only it.
    pub async fn with(prefix: &str, settings: &OperatorSettings) -> Result<Self> {
        let env = ClusterEnv::load()?;
        let client = client(&env).await?;
        let ns = TestNamespace::create(&client, &env, prefix).await?;
        let operator = OperatorProcess::start_with(&env, &ns.name, settings).await?;
        Ok(Self { operator, ns, client, env })
    }

    /// The namespace's name.
    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    /// The Pods of the namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// A sandbox running `sleep` on the cluster's busybox, with `extra` spec lines
    /// (indented by two spaces, under `spec:`).
    pub fn sleeper(&self, name: &str, extra: &str) -> String {
        format!(
            "metadata: {{name: {name}}}\nspec:\n  image: {}\n  command: [sleep, '3600']\n{extra}",
            self.env.busybox_image
        )
    }

    /// Where to look when a test fails.
    pub fn log_hint(&self) -> String {
        format!("operator log: {}", self.operator.log_path().display())
    }
}
