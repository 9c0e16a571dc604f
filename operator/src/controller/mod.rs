//! The AgentSandbox controller: a named pipeline, one module per step.
//!
//! Each reconcile runs, in order:
//! 1. [`load`]: the sandbox's Pod from the watch cache, its ownership decided by UID;
//! 2. validate: [`crate::policy::tenant::plan`] checks the spec against the operator's rules
//!    and the namespace's tenant policy, giving a plan or a `Rejected` status;
//! 3. [`expiry`]: past `expiresAt`, tear down Pod first, then the rest;
//! 4. [`apply`]: server-side apply of the NetworkPolicy unless the cached one already
//!    matches, then (if missing) the Pod;
//! 5. [`observe`]: read the agent's state from its Pod;
//! 6. [`egress_check`]: other network policies that select the Pod and open egress beyond
//!    the allowlist, shown as the `EgressWidened` condition;
//! 7. [`status`]: write the status only when it changed.
//!
//! [`reconcile`] holds the body; this module wires the watches and the error policy.
//! [`tenant`] runs beside it: the policy and namespace stores, and the tenant reconciler
//! (namespace labels, quotas, admission bindings). A policy or namespace change re-checks
//! every sandbox. [`stores`] holds the watch caches the steps read instead of the API server.

pub mod apply;
pub mod egress_check;
pub mod expiry;
pub mod load;
pub mod observe;
mod reconcile;
pub mod sources;
pub mod status;
pub mod stores;
pub mod tenant;

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{core::v1::Pod, networking::v1::NetworkPolicy, node::v1::RuntimeClass};
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

use crate::{
    api::AgentSandbox,
    build::labels,
    config::Config,
    error::Error,
    telemetry::{EventPublisher, Health, Metrics},
};

/// The one field manager for every server-side apply Kennel makes.
pub const FIELD_MANAGER: &str = "kennel-operator";

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The operator's configuration.
    pub config: Config,
    /// Metrics, registered once.
    pub metrics: Arc<Metrics>,
    /// Where Events are published.
    pub events: EventPublisher,
    /// Every `SandboxPolicy` and the watched Namespaces, for tenant policy resolution.
    pub tenants: tenant::TenantStores,
    /// Watch caches of Pods, NetworkPolicies and RuntimeClasses.
    pub stores: stores::Stores,
    /// Consecutive failures per sandbox, for the growing retry delay.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for the controller.
    pub fn new(
        client: Client,
        config: Config,
        metrics: Arc<Metrics>,
        events: EventPublisher,
    ) -> Self {
        Self {
            client,
            config,
            metrics,
            events,
            tenants: tenant::TenantStores::default(),
            stores: stores::Stores::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failure_count(&self, key: &str, record: bool) -> u32 {
        let Ok(mut failures) = self.failures.lock() else {
            return 0;
        };
        if record {
            let count = failures.entry(key.to_owned()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        } else {
            failures.remove(key);
            0
        }
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The CRD is missing or the API server is unreachable.
    #[error(
        "failed to list AgentSandboxes: {0}; is the CRD installed (kubectl apply -f crds/) \
         and the API server reachable?"
    )]
    CrdUnavailable(#[source] kube::Error),
    /// The SandboxPolicy CRD is missing or cannot be listed.
    #[error(
        "failed to list SandboxPolicies: {0}; is the CRD installed (kubectl apply -f crds/) \
         and may the operator list them?"
    )]
    PolicyCrdUnavailable(#[source] kube::Error),
    /// The tenant watches were started twice, or stopped before they were ready.
    #[error("failed to start the tenant watches: started twice or stopped before ready")]
    AlreadyStarted,
}

/// Which namespaces the controller watches.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    /// Every namespace (the normal, cluster-wide install).
    #[default]
    Cluster,
    /// One namespace only: for tests and for installs that must not see other tenants.
    Namespace(String),
}

impl Scope {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::Cluster => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// Runs the controller until a shutdown signal arrives.
pub async fn run(ctx: Arc<Context>, health: Arc<Health>, scope: Scope) -> Result<(), StartError> {
    let client = ctx.client.clone();
    let sandboxes: Api<AgentSandbox> = scope.api(&client);
    sandboxes.list(&ListParams::default().limit(1)).await.map_err(StartError::CrdUnavailable)?;

    let tenant_changes = tenant::start_watches(&ctx, &scope).await?;
    tokio::spawn(tenant::run(ctx.clone(), scope.clone(), tenant_changes.clone()));

    let Some(writers) = ctx.stores.take_writers() else {
        return Err(StartError::AlreadyStarted);
    };
    let (store, sandbox_writer) = reflector::store();
    let sandbox_events = watcher(sandboxes, watcher::Config::default())
        .modify(stores::trim_metadata)
        .reflect(sandbox_writer)
        .applied_objects();
    let selector = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
    let stores_ctx = ctx.clone();
    let pods = watcher(scope.api::<Pod>(&client), watcher::Config::default().labels(&selector))
        .modify(stores::trim_pod)
        .reflect(writers.pods)
        .inspect_ok(move |event| {
            if let watcher::Event::Apply(pod) | watcher::Event::Delete(pod) = event {
                stores_ctx.stores.pod_seen(pod);
            }
        })
        .touched_objects();
    let policies = watcher(scope.api::<NetworkPolicy>(&client), watcher::Config::default())
        .modify(stores::trim_metadata)
        .reflect(writers.network_policies)
        .touched_objects();
    // RuntimeClasses trigger nothing: a sandbox waiting for one is re-checked periodically.
    let classes = watcher(Api::<RuntimeClass>::all(client.clone()), watcher::Config::default())
        .modify(stores::trim_metadata)
        .default_backoff()
        .reflect(writers.runtime_classes);
    tokio::spawn(classes.for_each(|_| std::future::ready(())));
    let sandboxes_of = store.clone();
    let controller = Controller::for_stream(sandbox_events, store.clone())
        .owns_stream(pods)
        .watches_stream(policies, move |policy| policy_sandboxes(&sandboxes_of, &policy))
        .reconcile_all_on(tenant::triggers(tenant_changes))
        .with_config(
            controller::Config::default().concurrency(ctx.config.reconcile_concurrency.max(1)),
        )
        .shutdown_on_signal();
    ctx.metrics.watch_cache(store.clone());
    let ready = health.clone();
    let ready_ctx = ctx.clone();
    tokio::spawn(async move {
        // A store's `wait_until_ready` wakes only the task that polled it last, and the
        // controller's runner polls it too: re-poll until ready instead of waiting once.
        // Taking the wake-up from the runner is harmless, as every watch event re-polls it.
        loop {
            let all = futures::future::try_join4(
                store.wait_until_ready(),
                ready_ctx.stores.pods.wait_until_ready(),
                ready_ctx.stores.network_policies.wait_until_ready(),
                ready_ctx.stores.runtime_classes.wait_until_ready(),
            );
            match tokio::time::timeout(Duration::from_millis(250), all).await {
                Ok(Ok(_)) => {
                    ready.set_ready(true);
                    tracing::info!("watch caches synced, ready");
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
    });
    controller
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|result| {
            let health = health.clone();
            async move {
                match result {
                    Ok((object, _)) => tracing::trace!(sandbox = %object, "reconciled"),
                    Err(kube::runtime::controller::Error::QueueError(error)) => {
                        health.set_ready(false);
                        tracing::warn!(error = %error, "watch failed; will retry");
                    }
                    Err(error) => tracing::debug!(error = %error, "reconcile ended in error"),
                }
            }
        })
        .await;
    tracing::info!("controller stopped");
    Ok(())
}

/// The sandboxes a NetworkPolicy change concerns: its owner for Kennel's own policies, and
/// every sandbox of the namespace for anyone else's, which may widen their egress. Own means
/// controlled by an AgentSandbox: a label alone is easy to copy.
fn policy_sandboxes(
    sandboxes: &Store<AgentSandbox>,
    policy: &NetworkPolicy,
) -> Vec<ObjectRef<AgentSandbox>> {
    let namespace = policy.namespace().unwrap_or_default();
    let owner = policy.owner_references().iter().find(|o| o.controller == Some(true));
    if let Some(owner) = owner.filter(|o| o.kind == "AgentSandbox") {
        return vec![ObjectRef::new(&owner.name).within(&namespace)];
    }
    sandboxes
        .state()
        .iter()
        .filter(|sandbox| sandbox.namespace().as_deref() == Some(namespace.as_str()))
        .map(|sandbox| ObjectRef::from_obj(sandbox.as_ref()))
        .collect()
}

/// Retries a failed reconcile with a delay that doubles per consecutive failure of the
/// same sandbox, from half a second up to five minutes.
#[allow(clippy::needless_pass_by_value)] // the signature `Controller::run` takes
fn error_policy(sandbox: Arc<AgentSandbox>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", sandbox.namespace().unwrap_or_default(), sandbox.name_any());
    let failures = ctx.failure_count(&key, true);
    ctx.metrics.record_error(error.category());
    let delay = retry_delay(failures);
    tracing::warn!(
        error = error as &dyn std::error::Error,
        category = error.category(),
        failures,
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "reconcile failed"
    );
    Action::requeue(delay)
}

fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(10);
    (Duration::from_millis(500) * 2u32.pow(exponent)).min(Duration::from_mins(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_is_capped_at_five_minutes() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(4), Duration::from_secs(4));
        assert_eq!(retry_delay(30), Duration::from_mins(5));
    }
}
