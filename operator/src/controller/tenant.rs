//! Tenant guardrails at run time: the watches behind the tenant policy of each namespace,
//! and the tenant reconciler that realises each policy in the namespaces it governs.
//!
//! Flow: reflectors keep every `SandboxPolicy` and the watched Namespaces in stores that
//! the sandbox reconcile reads ([`TenantStores::policy_for`]). After a store has taken a
//! change, a trigger fires: the sandbox controller re-checks every sandbox and the
//! namespace reconciler re-runs every namespace, so a tightened policy is applied to
//! sandboxes that already exist (a running Pod is kept; its sandbox shows `Accepted=False`).
//!
//! Per namespace the reconciler: labels it with the governing policy's name (what that
//! policy's `ValidatingAdmissionPolicyBinding` selects), server-side applies the
//! `ResourceQuota` and `LimitRange` of the policy's quota, and deletes them when the namespace
//! stops being governed or the quota is removed. Per policy it applies the binding, owned
//! by the policy. Drift (someone deleting the quota) is repaired at the next periodic pass.

use std::{sync::Arc, sync::Mutex, time::Duration};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    core::v1::{LimitRange, Namespace, ResourceQuota},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};
use tokio::sync::watch;

use crate::{
    api::SandboxPolicy,
    build::{admission, limit_range, resource_quota},
    config::Config,
    controller::{Context, Scope, StartError, apply::apply},
    error::{Error, Result},
    policy::tenant::{self, InvalidPolicy, TenantPolicy},
};

/// How often every namespace and binding is reconciled again when nothing changes.
const RESYNC: Duration = Duration::from_mins(10);
/// Field manager of the namespace label: separate, so it never touches other labels.
const NAMESPACE_MANAGER: &str = "kennel-operator-tenant";

/// The stores of every `SandboxPolicy` and of the watched Namespaces.
pub struct TenantStores {
    policies: Store<SandboxPolicy>,
    namespaces: Store<Namespace>,
    writers: Mutex<Option<(Writer<SandboxPolicy>, Writer<Namespace>)>>,
}

impl Default for TenantStores {
    fn default() -> Self {
        let (policies, policy_writer) = reflector::store();
        let (namespaces, namespace_writer) = reflector::store();
        Self { policies, namespaces, writers: Mutex::new(Some((policy_writer, namespace_writer))) }
    }
}

impl TenantStores {
    /// The resolved tenant policy of a namespace: its labels from the store, or from the
    /// API server when the store has not seen the namespace yet.
    pub async fn policy_for(
        &self,
        client: &Client,
        namespace: &str,
        config: &Config,
    ) -> Result<Result<TenantPolicy, InvalidPolicy>> {
        let labels = match self.namespaces.get(&ObjectRef::new(namespace)) {
            Some(ns) => ns.labels().clone(),
            None => Api::<Namespace>::all(client.clone())
                .get_opt(namespace)
                .await
                .map_err(|source| Error::Read {
                    kind: "Namespace".to_owned(),
                    name: namespace.to_owned(),
                    source,
                })?
                .map(|ns| ns.labels().clone())
                .unwrap_or_default(),
        };
        let policies = self.policies.state();
        Ok(tenant::for_namespace(&labels, policies.iter().map(AsRef::as_ref), config))
    }
}

/// Starts the policy and namespace watches and waits until both stores are filled, so no
/// sandbox is judged before its policy is known. The returned receiver changes after
/// every change to a policy or a namespace.
pub async fn start_watches(
    ctx: &Context,
    scope: &Scope,
) -> Result<watch::Receiver<()>, StartError> {
    let policies: Api<SandboxPolicy> = Api::all(ctx.client.clone());
    policies
        .list(&ListParams::default().limit(1))
        .await
        .map_err(StartError::PolicyCrdUnavailable)?;
    let Some((policy_writer, namespace_writer)) =
        ctx.tenants.writers.lock().ok().and_then(|mut w| w.take())
    else {
        return Err(StartError::AlreadyStarted);
    };
    let (changed, receiver) = watch::channel(());
    let changed = Arc::new(changed);
    tokio::spawn(drive(
        policy_writer,
        watcher(policies, watcher::Config::default()),
        changed.clone(),
    ));
    let namespaces = watcher(Api::<Namespace>::all(ctx.client.clone()), namespace_config(scope));
    tokio::spawn(drive(namespace_writer, namespaces, changed));
    let ready = futures::future::join(
        ctx.tenants.policies.wait_until_ready(),
        ctx.tenants.namespaces.wait_until_ready(),
    );
    let (a, b) = ready.await;
    a.and(b).map_err(|_| StartError::AlreadyStarted)?;
    Ok(receiver)
}

/// A stream that yields once per change seen by `receiver` (changes in a burst coalesce).
pub fn triggers(receiver: watch::Receiver<()>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(
        receiver,
        |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) },
    )
}

fn namespace_config(scope: &Scope) -> watcher::Config {
    match scope {
        Scope::Cluster => watcher::Config::default(),
        Scope::Namespace(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
    }
}

/// Feeds a store from a watch and signals each change after the store has it. Initial
/// listing events do not signal: the first reconciles already see the filled store.
async fn drive<K, S>(writer: Writer<K>, stream: S, changed: Arc<watch::Sender<()>>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let events = reflector::reflector(writer, stream.default_backoff());
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                changed.send_replace(());
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "tenant watch failed; retrying"),
        }
    }
}

/// Runs the namespace and binding reconcilers until shutdown.
pub async fn run(ctx: Arc<Context>, scope: Scope, changes: watch::Receiver<()>) {
    let namespaces =
        Controller::new(Api::<Namespace>::all(ctx.client.clone()), namespace_config(&scope))
            .reconcile_all_on(triggers(changes))
            .shutdown_on_signal()
            .run(reconcile_namespace, error_policy, ctx.clone())
            .for_each(|_| async {});
    let bindings_ctx = Arc::new((ctx.clone(), scope));
    let bindings =
        Controller::new(Api::<SandboxPolicy>::all(ctx.client.clone()), watcher::Config::default())
            .shutdown_on_signal()
            .run(reconcile_binding, binding_error_policy, bindings_ctx)
            .for_each(|_| async {});
    futures::future::join(namespaces, bindings).await;
    tracing::info!("tenant reconciler stopped");
}

/// Realises the governing policy of one namespace: label, quota and limit range.
#[tracing::instrument(skip_all, fields(namespace = %namespace.name_any()))]
async fn reconcile_namespace(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let policies = ctx.tenants.policies.state();
    let governing = tenant::select(namespace.labels(), policies.iter().map(AsRef::as_ref));
    let policy_name = governing.and_then(|p| p.metadata.name.clone());
    label_namespace(&ctx.client, &name, policy_name.as_deref()).await?;
    let quota = governing
        .and_then(|p| tenant::resolve(Some(p), &ctx.config).ok())
        .and_then(|resolved| resolved.quota)
        .zip(policy_name.as_deref())
        .and_then(|(quota, policy)| resource_quota::resource_quota(&name, policy, &quota));
    let quotas: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &name);
    let ranges: Api<LimitRange> = Api::namespaced(ctx.client.clone(), &name);
    if let (Some(quota), Some(policy)) = (quota, policy_name.as_deref()) {
        apply(&quotas, &quota).await?;
        apply(&ranges, &limit_range::limit_range(&name, policy, &ctx.config)).await?;
        tracing::debug!(policy, "tenant quota applied");
    } else {
        delete_managed(&quotas, resource_quota::NAME).await?;
        delete_managed(&ranges, limit_range::NAME).await?;
    }
    Ok(Action::requeue(RESYNC))
}

/// Sets (or, with `None`, removes) the label naming the namespace's governing policy.
async fn label_namespace(client: &Client, name: &str, policy: Option<&str>) -> Result<()> {
    let labels = match policy {
        Some(policy) => serde_json::json!({
            resource_quota::POLICY_LABEL: resource_quota::label_value(policy)
        }),
        None => serde_json::json!({}),
    };
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name, "labels": labels },
    });
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::apply(NAMESPACE_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::Apply {
            kind: "Namespace".to_owned(),
            name: name.to_owned(),
            source,
        })
}

/// Deletes a tenant object if it exists and carries Kennel's managed-by label.
async fn delete_managed<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let read =
        |source| Error::Read { kind: K::kind(&()).into_owned(), name: name.to_owned(), source };
    let Some(object) = api.get_opt(name).await.map_err(read)? else {
        return Ok(());
    };
    let ours = object.labels().get(crate::build::labels::MANAGED_BY).map(String::as_str)
        == Some(crate::build::labels::MANAGER);
    if !ours {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Ok(_) => {
            tracing::info!(kind = %K::kind(&()), name, "tenant object removed");
            Ok(())
        }
        Err(source) => {
            Err(Error::Delete { kind: K::kind(&()).into_owned(), name: name.to_owned(), source })
        }
    }
}

/// Applies a policy's admission binding. A namespace-scoped operator only binds policies
/// that select its namespace, so test operators never bind other tenants' policies.
#[tracing::instrument(skip_all, fields(policy = %policy.name_any()))]
async fn reconcile_binding(
    policy: Arc<SandboxPolicy>,
    ctx: Arc<(Arc<Context>, Scope)>,
) -> Result<Action> {
    let (ctx, scope) = (&ctx.0, &ctx.1);
    if policy.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if let Scope::Namespace(ns) = scope {
        let selected = ctx
            .tenants
            .namespaces
            .get(&ObjectRef::new(ns))
            .is_some_and(|namespace| tenant::selects(&policy, namespace.labels()));
        if !selected {
            return Ok(Action::requeue(RESYNC));
        }
    }
    let Some(binding) = admission::policy_binding(&policy) else {
        return Ok(Action::await_change());
    };
    let api: Api<ValidatingAdmissionPolicyBinding> = Api::all(ctx.client.clone());
    apply(&api, &binding).await?;
    tracing::debug!("admission binding applied");
    Ok(Action::requeue(RESYNC))
}

#[allow(clippy::needless_pass_by_value)] // the signature kube-runtime's Controller::run takes
fn error_policy(_: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.record_error(error.category());
    tracing::warn!(error = error as &dyn std::error::Error, "tenant reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

#[allow(clippy::needless_pass_by_value)] // the signature kube-runtime's Controller::run takes
fn binding_error_policy(
    _: Arc<SandboxPolicy>,
    error: &Error,
    ctx: Arc<(Arc<Context>, Scope)>,
) -> Action {
    ctx.0.metrics.record_error(error.category());
    tracing::warn!(error = error as &dyn std::error::Error, "admission binding failed");
    Action::requeue(Duration::from_secs(30))
}
