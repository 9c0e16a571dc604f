//! Expiry step: at `expiresAt` the Pod goes first, then its policy and workspace, then the
//! sandbox object (or it stays as an `Expired` record).
//!
//! Ordering matters for safety: the NetworkPolicy must outlive every container of the Pod,
//! so it is only removed once the Pod object is gone, which the kubelet allows only after
//! the containers have stopped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::{
    core::v1::{PersistentVolumeClaim, Pod},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Preconditions},
    runtime::controller::Action,
};

use crate::{
    api::{
        AgentSandbox, AgentSandboxStatus, Phase,
        conditions::{self, reason},
        sandbox::{ExpiryAction, WorkspaceRetention},
    },
    controller::{Context, status},
    error::{Error, Result},
    policy::storage::CLAIM_SUFFIX,
};

/// When to look again while the Pod terminates if no watch event came first. The Pod's
/// removal is an event of the owned-Pod watch and reconciles the sandbox at once; this is
/// only the safety net. A short poll here cost the benchmark 50 reconciles per sandbox
/// while 1,000 Pods drained off simulated nodes for a minute.
const TERMINATION_POLL: Duration = Duration::from_secs(30);

/// Carries out the sandbox's expiry, one step per call.
pub async fn expire(
    ctx: &Context,
    sandbox: &AgentSandbox,
    expires_at: DateTime<Utc>,
    pod: Option<&Pod>,
) -> Result<Action> {
    let ns = sandbox.namespace().unwrap_or_default();
    if let Some(pod) = pod {
        if pod.metadata.deletion_timestamp.is_none() {
            delete_pod(ctx, sandbox, pod, expires_at).await?;
        }
        return Ok(Action::requeue(TERMINATION_POLL));
    }
    let lifetime = sandbox.spec.lifetime.clone().unwrap_or_default();
    let workspace = sandbox.spec.workspace.clone().unwrap_or_default();
    // A claim to retain was created without an owner reference, so nothing removes it.
    let retain_claim = workspace.on_expiry == WorkspaceRetention::Retain;
    match lifetime.on_expiry {
        ExpiryAction::Delete => {
            let api: Api<AgentSandbox> = Api::namespaced(ctx.client.clone(), &ns);
            delete(&api, &sandbox.name_any(), sandbox.uid(), None).await?;
            tracing::info!("expired sandbox deleted");
        }
        ExpiryAction::Retain => {
            let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &ns);
            delete(&policies, &sandbox.name_any(), None, None).await?;
            if workspace.persistent && !retain_claim {
                let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
                let claim = format!("{}{CLAIM_SUFFIX}", sandbox.name_any());
                delete(&claims, &claim, None, None).await?;
            }
            record_expired(ctx, sandbox, expires_at).await?;
        }
    }
    Ok(Action::await_change())
}

async fn delete_pod(
    ctx: &Context,
    sandbox: &AgentSandbox,
    pod: &Pod,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let grace = u32::try_from(ctx.config.expiry_grace_seconds).ok();
    delete(&pods, &pod.name_any(), pod.uid(), grace).await?;
    let lag = (Utc::now() - expires_at).num_milliseconds();
    #[allow(clippy::cast_precision_loss)] // milliseconds far below 2^52
    ctx.metrics.observe_expiry_lag(lag.max(0) as f64 / 1000.0);
    tracing::info!(lag_ms = lag, "sandbox expired, pod deletion requested");
    ctx.events
        .phase_changed(
            sandbox,
            status::current_phase(sandbox),
            Phase::Expired,
            reason::TTL_ELAPSED,
            "the sandbox's lifetime has elapsed; its Pod is being deleted",
        )
        .await;
    Ok(())
}

/// Deletes an object, treating "already gone" as done. With a UID, only that incarnation
/// is deleted, never a newer object of the same name.
async fn delete<K>(api: &Api<K>, name: &str, uid: Option<String>, grace: Option<u32>) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        grace_period_seconds: grace,
        preconditions: uid.map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(source) => {
            Err(Error::Delete { kind: K::kind(&()).into_owned(), name: name.to_owned(), source })
        }
    }
}

async fn record_expired(
    ctx: &Context,
    sandbox: &AgentSandbox,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    let mut next: AgentSandboxStatus = sandbox.status.clone().unwrap_or_default();
    let generation = sandbox.metadata.generation;
    next.phase = Some(Phase::Expired);
    next.expires_at = Some(status::to_time(expires_at));
    let message = "the lifetime elapsed; the Pod and its network policy were removed";
    status::set_condition(
        &mut next.conditions,
        conditions::EXPIRED,
        true,
        reason::TTL_ELAPSED,
        message,
        generation,
    );
    status::set_condition(
        &mut next.conditions,
        conditions::READY,
        false,
        reason::TTL_ELAPSED,
        message,
        generation,
    );
    let api: Api<AgentSandbox> =
        Api::namespaced(ctx.client.clone(), &sandbox.namespace().unwrap_or_default());
    status::write_if_changed(&api, sandbox, next).await?;
    Ok(())
}
