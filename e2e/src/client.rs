//! A kube client on the local cluster's admin kubeconfig.

use anyhow::{Context, Result};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::ClusterEnv;

/// A client for the cluster described by `env`, authenticated as its admin.
pub async fn client(env: &ClusterEnv) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(&env.kubeconfig)
        .with_context(|| format!("failed to read kubeconfig {}", env.kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("failed to build a client config from the kubeconfig")?;
    Client::try_from(config).context("failed to build a kube client")
}
