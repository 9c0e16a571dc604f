//! The reconcile body: the pipeline steps in order, and the decisions between them.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use kube::{Api, ResourceExt, runtime::controller::Action};

use crate::{
    api::{
        AgentSandbox, AgentSandboxStatus, Phase,
        conditions::{self, reason},
    },
    build,
    controller::{
        Context, apply,
        apply::PodOutcome,
        egress_check, expiry,
        load::{self, PodState},
        observe, sources, status,
    },
    error::{Error, Result},
    policy::{self, SandboxPlan, lifetime::to_chrono},
};

/// Longest wait between two looks at a live sandbox when nothing happens.
const PERIODIC: Duration = Duration::from_hours(1);
/// Wait before looking again at a condition that only someone else can change.
const RECHECK: Duration = Duration::from_secs(15);

/// One pass of the pipeline for one sandbox.
#[tracing::instrument(skip_all, fields(sandbox = %sandbox.name_any(), ns = sandbox.namespace()))]
pub async fn reconcile(sandbox: Arc<AgentSandbox>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer();
    let action = pipeline(&sandbox, &ctx).await?;
    let key = format!("{}/{}", sandbox.namespace().unwrap_or_default(), sandbox.name_any());
    ctx.failure_count(&key, false);
    Ok(action)
}

async fn pipeline(sandbox: &AgentSandbox, ctx: &Context) -> Result<Action> {
    if sandbox.metadata.deletion_timestamp.is_some() {
        // Owner references remove the children; the NetworkPolicy is also owned by the Pod,
        // so it stays until the Pod's containers are gone.
        return Ok(Action::await_change());
    }
    if status::current_phase(sandbox) == Some(Phase::Expired) {
        return Ok(Action::await_change());
    }
    let uid = sandbox.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let ns = sandbox.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let pod = load::pod(&ctx.stores, &ns, &sandbox.name_any(), &uid);

    let tenant = ctx.tenants.policy_for(&ctx.client, &ns, &ctx.config).await?;
    let found = sources::read(&ctx.client, &ns, sandbox, &tenant).await?;
    let plan = match policy::tenant::plan(sandbox, &ctx.config, &tenant, &found) {
        Ok(plan) => plan,
        Err(rejection) => return reject(ctx, sandbox, &pod, &rejection.to_string()).await,
    };
    if Utc::now() >= plan.expires_at {
        return expiry::expire(ctx, sandbox, plan.expires_at, pod.ours()).await;
    }
    if let Some(action) = sources::wait_for_missing(ctx, sandbox, &plan, &found, &pod).await? {
        return Ok(action);
    }
    let (next, action) = run(ctx, sandbox, &plan, pod).await?;
    report_transition(ctx, sandbox, &next).await;
    status::write_if_changed(&sandboxes(ctx, &ns), sandbox, next).await?;
    Ok(action.unwrap_or_else(|| until(plan.expires_at)))
}

/// Apply and observe: the status the sandbox should show, and an earlier requeue if a
/// step waits on someone else.
async fn run(
    ctx: &Context,
    sandbox: &AgentSandbox,
    plan: &SandboxPlan,
    pod: PodState,
) -> Result<(AgentSandboxStatus, Option<Action>)> {
    let owner = build::owner_reference(sandbox).ok_or(Error::MissingField("metadata.uid"))?;
    let generation = sandbox.metadata.generation;
    let mut next = sandbox.status.clone().unwrap_or_default();
    next.expires_at = Some(status::to_time(plan.expires_at));
    next.isolation = Some(plan.isolation);
    next.runtime_class_name = Some(plan.runtime_class.clone());
    next.pod_name = Some(plan.name.clone());
    status::set_condition(
        &mut next.conditions,
        conditions::ACCEPTED,
        true,
        reason::VALID,
        "the spec is valid",
        generation,
    );
    let mut action = None;
    let pod = match pod {
        PodState::Ours(pod) => {
            apply::network_policy(&ctx.client, &ctx.stores, plan, &owner, Some(&pod)).await?;
            Some(*pod)
        }
        PodState::Foreign(_) => {
            action = Some(wait_for_foreign_pod(&mut next, plan, generation));
            None
        }
        PodState::Missing => {
            let (pod, wait) = create_pod(ctx, sandbox, plan, &owner, &mut next).await?;
            action = wait;
            pod
        }
    };
    let wait = egress_check::check(ctx, sandbox, plan, pod.as_ref(), &mut next).await;
    if let Some(pod) = pod {
        if deleted_while_live(&pod, &next) {
            // The agent's exit is the deletion's doing, not its own: recording it as a
            // finished agent would forbid the new Pod, so wait for this one to go instead.
            let message = "the sandbox's Pod is being deleted from outside; it will be created \
                           again once it is gone";
            pending(&mut next, reason::POD_PENDING, message, generation);
            // The Pod's removal reconciles the sandbox through the Pod watch; this is a net.
            action = Some(Action::requeue(RECHECK));
        } else {
            record_observation(ctx, sandbox, &mut next, &observe::observe(&pod));
        }
    }
    Ok((next, action.or(wait)))
}

/// Whether someone deleted the sandbox's Pod while the agent had not finished. (Expiry and
/// the sandbox's own deletion never reach this step.)
fn deleted_while_live(pod: &k8s_openapi::api::core::v1::Pod, next: &AgentSandboxStatus) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !next.phase.is_some_and(Phase::is_finished)
}

/// Creates the Pod (policy first) unless the agent already finished, the runtime is
/// missing, or the API server refuses it. Returns the Pod and, when waiting, a requeue.
async fn create_pod(
    ctx: &Context,
    sandbox: &AgentSandbox,
    plan: &SandboxPlan,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    next: &mut AgentSandboxStatus,
) -> Result<(Option<k8s_openapi::api::core::v1::Pod>, Option<Action>)> {
    let generation = sandbox.metadata.generation;
    if next.phase.is_some_and(Phase::is_finished) {
        // The agent finished and its Pod was removed since: never start it again.
        return Ok((None, None));
    }
    if !load::runtime_class_exists(&ctx.stores, &ctx.client, &plan.runtime_class).await? {
        let message = format!(
            "RuntimeClass {:?} for isolation {} does not exist on this cluster; install the \
             runtime or change the operator's runtimeClasses",
            plan.runtime_class,
            plan.isolation.as_str()
        );
        ctx.metrics.record_refusal(reason::RUNTIME_UNAVAILABLE);
        pending(next, reason::RUNTIME_UNAVAILABLE, &message, generation);
        return Ok((None, Some(Action::requeue(RECHECK))));
    }
    let recreated = next.start_time.is_some() || next.node_name.is_some();
    let gate = ctx.config.fence_gate.as_ref();
    match apply::pod_and_prerequisites(&ctx.client, &ctx.stores, plan, owner, gate).await? {
        PodOutcome::Created(pod) => {
            if recreated {
                ctx.events
                    .warning(
                        sandbox,
                        reason::POD_RECREATED,
                        "RecreatePod",
                        "the sandbox's Pod was deleted from outside and has been created again",
                    )
                    .await;
            } else if let Some(created) = created_at(sandbox) {
                ctx.metrics.observe_pod_created(seconds_since(created));
            }
            tracing::info!(recreated, "pod created");
            Ok((Some(*pod), None))
        }
        PodOutcome::AlreadyExists => {
            // The watch cache had not shown it yet: judge it as the API server has it.
            let uid = sandbox.uid().unwrap_or_default();
            match load::pod_from_server(&ctx.client, &plan.namespace, &plan.name, &uid).await? {
                PodState::Ours(pod) => Ok((Some(*pod), None)),
                PodState::Foreign(_) => {
                    Ok((None, Some(wait_for_foreign_pod(next, plan, generation))))
                }
                PodState::Missing => Ok((None, Some(Action::requeue(Duration::from_millis(200))))),
            }
        }
        PodOutcome::Refused(server_message) => {
            let message = format!("the API server refused the sandbox's Pod: {server_message}");
            ctx.metrics.record_refusal(reason::POD_REJECTED);
            pending(next, reason::POD_REJECTED, &message, generation);
            Ok((None, Some(Action::requeue(RECHECK))))
        }
    }
}

/// A Pod of the sandbox's name belongs to someone else, usually an earlier sandbox of the
/// same name whose Pod is still terminating: wait, never adopt.
fn wait_for_foreign_pod(
    next: &mut AgentSandboxStatus,
    plan: &SandboxPlan,
    generation: Option<i64>,
) -> Action {
    let message = format!(
        "a Pod named {} that this sandbox does not own still exists; it is waited out, never \
         adopted (delete it if it is not terminating)",
        plan.name
    );
    pending(next, reason::WAITING_FOR_OLD_POD, &message, generation);
    Action::requeue(Duration::from_secs(2))
}

fn pending(next: &mut AgentSandboxStatus, why: &str, message: &str, generation: Option<i64>) {
    next.phase = Some(Phase::Pending);
    status::set_condition(&mut next.conditions, conditions::READY, false, why, message, generation);
}

/// Copies what the Pod says into the status and records first-time latencies.
fn record_observation(
    ctx: &Context,
    sandbox: &AgentSandbox,
    next: &mut AgentSandboxStatus,
    obs: &observe::Observation,
) {
    let created = created_at(sandbox);
    if next.node_name.is_none()
        && obs.node_name.is_some()
        && let Some(created) = created
    {
        ctx.metrics.observe_pod_scheduled(seconds_since(created));
    }
    if next.phase != Some(Phase::Running)
        && obs.phase == Phase::Running
        && let Some(created) = created
    {
        ctx.metrics.observe_pod_running(seconds_since(created));
    }
    next.phase = Some(obs.phase);
    next.node_name.clone_from(&obs.node_name);
    next.start_time = next.start_time.take().or_else(|| obs.start_time.clone());
    next.ready_time = next.ready_time.take().or_else(|| obs.ready_time.clone());
    next.exit_code = obs.exit_code;
    next.read_only_mounts = obs.read_only_mounts.map(str::to_owned);
    let generation = sandbox.metadata.generation;
    status::set_condition(
        &mut next.conditions,
        conditions::READY,
        obs.ready,
        obs.reason,
        &obs.message,
        generation,
    );
}

/// Reports a spec that cannot be run. A Pod that already runs (the spec's network was
/// edited into something invalid) keeps running behind its last valid policy.
async fn reject(
    ctx: &Context,
    sandbox: &AgentSandbox,
    pod: &PodState,
    message: &str,
) -> Result<Action> {
    let expires_at = fallback_expiry(sandbox, ctx);
    if let Some(expires_at) = expires_at.filter(|at| Utc::now() >= *at) {
        return expiry::expire(ctx, sandbox, expires_at, pod.ours()).await;
    }
    let mut next = sandbox.status.clone().unwrap_or_default();
    if pod.ours().is_none() {
        next.phase = Some(Phase::Rejected);
    }
    next.expires_at = expires_at.map(status::to_time);
    status::set_condition(
        &mut next.conditions,
        conditions::ACCEPTED,
        false,
        reason::INVALID_SPEC,
        message,
        sandbox.metadata.generation,
    );
    if status::current_phase(sandbox) != next.phase {
        ctx.metrics.record_refusal(reason::INVALID_SPEC);
        ctx.events.refused(sandbox, reason::INVALID_SPEC, message).await;
    }
    tracing::info!(reason = reason::INVALID_SPEC, %message, "sandbox rejected");
    let ns = sandbox.namespace().unwrap_or_default();
    status::write_if_changed(&sandboxes(ctx, &ns), sandbox, next).await?;
    Ok(expires_at.map_or(Action::await_change(), until))
}

/// The expiry of a sandbox whose lifetime may itself be invalid: the stored one, or
/// creation plus the default TTL, so that rejected sandboxes do not linger forever.
fn fallback_expiry(sandbox: &AgentSandbox, ctx: &Context) -> Option<DateTime<Utc>> {
    if let Some(at) = sandbox.status.as_ref().and_then(|s| s.expires_at.as_ref()) {
        return to_chrono(at);
    }
    let created = created_at(sandbox)?;
    let ttl = chrono::Duration::from_std(ctx.config.default_ttl()).ok()?;
    created.checked_add_signed(ttl)
}

async fn report_transition(ctx: &Context, sandbox: &AgentSandbox, next: &AgentSandboxStatus) {
    let before = status::current_phase(sandbox);
    let (Some(after), true) = (next.phase, before != next.phase) else {
        return;
    };
    let ready = next.conditions.iter().find(|c| c.type_ == conditions::READY);
    let (why, message) = ready.map_or(("", ""), |c| (c.reason.as_str(), c.message.as_str()));
    tracing::info!(from = ?before, to = ?after, reason = why, "phase changed");
    ctx.events.phase_changed(sandbox, before, after, why, message).await;
}

fn sandboxes(ctx: &Context, ns: &str) -> Api<AgentSandbox> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// Requeue at the deadline (a little after, so the clock has passed it), or periodically.
fn until(deadline: DateTime<Utc>) -> Action {
    let left = (deadline - Utc::now()).to_std().unwrap_or_default();
    Action::requeue(left.min(PERIODIC) + Duration::from_millis(20))
}

fn created_at(sandbox: &AgentSandbox) -> Option<DateTime<Utc>> {
    sandbox.metadata.creation_timestamp.as_ref().and_then(to_chrono)
}

#[allow(clippy::cast_precision_loss)] // latencies in milliseconds, far below 2^52
fn seconds_since(then: DateTime<Utc>) -> f64 {
    (Utc::now() - then).num_milliseconds().max(0) as f64 / 1000.0
}
