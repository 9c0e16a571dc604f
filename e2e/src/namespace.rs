//! Throwaway namespaces: each test gets its own, and it is deleted when the test ends,
//! even when the test fails.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

use crate::{ClusterEnv, kubectl::kubectl};

/// A namespace made for one test. Dropping it starts its deletion (without waiting), so
/// a panicking test still cleans up.
#[derive(Debug)]
pub struct TestNamespace {
    /// The namespace's name: the test's prefix and a unique suffix.
    pub name: String,
    env: ClusterEnv,
}

impl TestNamespace {
    /// Creates `PREFIX-<unique suffix>`, labelled `kennel.dev/e2e=true` so leftovers of
    /// an interrupted run can be found.
    pub async fn create(client: &Client, env: &ClusterEnv, prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let suffix = format!(
            "{:x}{:x}",
            std::process::id() % 0xfff,
            (nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed)) % 0xfffff
        );
        let name = format!("{prefix}-{suffix}");
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("kennel.dev/e2e".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("failed to create namespace {name}"))?;
        wait_for_default_service_account(client, &name).await?;
        Ok(Self { name, env: env.clone() })
    }
}

/// Pods cannot be created in a namespace until its `default` `ServiceAccount` exists.
async fn wait_for_default_service_account(client: &Client, namespace: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    for _ in 0..150 {
        if api.get_opt("default").await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("the default ServiceAccount of {namespace} did not appear within 15 s")
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await, and kubectl returns at once with
        // --wait=false. A failure here only leaves a labelled namespace behind.
        let _ = kubectl(&self.env, &["delete", "namespace", &self.name, "--wait=false"]);
    }
}
