//! Load step for mount sources: the metadata (never the data) of the objects a sandbox's
//! mounts name, where the tenant's rules need it; and the wait while one does not exist.
//!
//! Only what [`policy::sources::to_read`] names is read: Secrets the policy admits (to refuse
//! service-account tokens) and sources whose rule requires labels. The pure plan judges the
//! result ([`policy::sources::refusal`]).

use std::time::Duration;

use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret},
};
use kube::{Api, Client, Resource, ResourceExt, runtime::controller::Action};
use serde::de::DeserializeOwned;

use crate::{
    api::{
        AgentSandbox, Phase,
        conditions::{self, reason},
    },
    controller::{Context, load::PodState, status},
    error::{Error, Result},
    policy::{
        self, SandboxPlan,
        sources::{Found, SERVICE_ACCOUNT_ANNOTATION, SourceFacts, SourceKind},
        tenant::{InvalidPolicy, TenantPolicy},
    },
};

/// Wait before looking again for a mount source that does not exist yet.
const RECHECK_MISSING: Duration = Duration::from_secs(10);

/// Reads the metadata of every source the tenant's rules need to see.
// Known shortcoming: one metadata GET per such mount per reconcile; a metadata reflector
// on these kinds would save it, but would also need list/watch on Secrets cluster-wide.
pub async fn read(
    client: &Client,
    namespace: &str,
    sandbox: &AgentSandbox,
    tenant: &Result<TenantPolicy, InvalidPolicy>,
) -> Result<SourceFacts> {
    let mut facts = SourceFacts::default();
    let Ok(tenant) = tenant else { return Ok(facts) };
    for source in policy::sources::to_read(sandbox, tenant) {
        let found = match source.kind {
            SourceKind::ConfigMap => look::<ConfigMap>(client, namespace, &source.name).await,
            SourceKind::Secret => look::<Secret>(client, namespace, &source.name).await,
            SourceKind::Claim => {
                look::<PersistentVolumeClaim>(client, namespace, &source.name).await
            }
        };
        let found = found.map_err(|source_error| Error::Read {
            kind: source.kind.as_str().to_owned(),
            name: source.name.clone(),
            source: source_error,
        })?;
        tracing::debug!(kind = source.kind.as_str(), name = %source.name, ?found, "mount source");
        facts.insert(source.kind, &source.name, found);
    }
    Ok(facts)
}

/// The metadata of one object: found, missing, or refused by RBAC (judged, not retried).
async fn look<K>(client: &Client, namespace: &str, name: &str) -> kube::Result<Found>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_metadata_opt(name).await {
        Ok(Some(meta)) => Ok(Found::Object {
            labels: meta.labels().clone(),
            service_account: meta.annotations().get(SERVICE_ACCOUNT_ANNOTATION).cloned(),
        }),
        Ok(None) => Ok(Found::Missing),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Found::Unreadable(
            "forbidden; the platform team must grant the operator get on this kind (the chart \
             value mountSources.readSecrets for Secrets)"
                .to_owned(),
        )),
        Err(error) => Err(error),
    }
}

/// While a mount source does not exist and the Pod is not created yet, shows the sandbox
/// `Pending` with reason `MountSourceMissing` naming the mount and the object, and looks
/// again shortly. `None` when nothing is missing, or the Pod already exists.
pub async fn wait_for_missing(
    ctx: &Context,
    sandbox: &AgentSandbox,
    plan: &SandboxPlan,
    found: &SourceFacts,
    pod: &PodState,
) -> Result<Option<Action>> {
    let missing = policy::sources::missing(sandbox, found);
    if missing.is_empty() || !matches!(pod, PodState::Missing) {
        return Ok(None);
    }
    let message = missing.join("; ");
    let generation = sandbox.metadata.generation;
    let mut next = sandbox.status.clone().unwrap_or_default();
    next.phase = Some(Phase::Pending);
    next.expires_at = Some(status::to_time(plan.expires_at));
    next.isolation = Some(plan.isolation);
    let conds = &mut next.conditions;
    status::set_condition(
        conds,
        conditions::ACCEPTED,
        true,
        reason::VALID,
        "the spec is valid",
        generation,
    );
    status::set_condition(
        conds,
        conditions::READY,
        false,
        reason::MOUNT_SOURCE_MISSING,
        &message,
        generation,
    );
    tracing::info!(reason = reason::MOUNT_SOURCE_MISSING, %message, "waiting for a mount source");
    let api: Api<AgentSandbox> =
        Api::namespaced(ctx.client.clone(), &sandbox.namespace().unwrap_or_default());
    status::write_if_changed(&api, sandbox, next).await?;
    Ok(Some(Action::requeue(RECHECK_MISSING)))
}
