//! A network policy Kennel does not manage, selecting a sandbox's Pod and opening more egress
//! than its allowlist, shows on the sandbox as `EgressWidened=True` naming the policy, with a
//! Warning Event; the condition clears when the policy goes. A policy that selects other
//! Pods is not named.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{events::v1::Event, networking::v1::NetworkPolicy};
use kennel::api::{AgentSandbox, Phase};
use kennel_e2e::sandbox;
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};

use crate::{Tenant, apply_text};

/// How long the operator may take to notice a policy change and write the status.
const VERDICT: Duration = Duration::from_mins(1);
/// How long a gVisor sandbox may take to start on a busy two-core node.
const START: Duration = Duration::from_mins(2);
/// The condition and its reasons, as `operator/src/api/conditions.rs` names them.
const WIDENED: &str = "EgressWidened";
const FOREIGN: &str = "ForeignNetworkPolicy";
const ALLOWLIST_ONLY: &str = "AllowlistOnly";

/// A `NetworkPolicy` named `name` with the given pod selector, opening egress to `0.0.0.0/0`.
fn open_everything(name: &str, pod_selector: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}}}\n\
         spec:\n  podSelector: {pod_selector}\n  policyTypes: [Egress]\n  \
         egress: [{{to: [{{ipBlock: {{cidr: 0.0.0.0/0}}}}]}}]\n"
    )
}

/// Waits until the sandbox's `EgressWidened` condition satisfies `done`.
async fn wait_widened(
    tenant: &Tenant,
    name: &str,
    what: &str,
    done: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> bool,
) -> Result<AgentSandbox> {
    let check = move |s: &AgentSandbox| sandbox::condition(s, WIDENED).is_some_and(&done);
    sandbox::wait_for(&tenant.client, tenant.ns(), name, what, VERDICT, check)
        .await
        .context(tenant.log_hint())
}

/// The Warning Events about sandbox `name` with `reason`.
async fn warnings(tenant: &Tenant, name: &str, reason: &str) -> Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(tenant.client.clone(), tenant.ns());
    let all = events.list(&ListParams::default()).await?.items;
    Ok(all
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect())
}

#[tokio::test]
async fn a_foreign_policy_opening_egress_to_everywhere_is_shown_on_the_sandbox_until_removed()
-> Result<()> {
    let tenant = Tenant::new("guard-egress", "").await?;
    let name = "fenced";
    apply_text(&tenant.env, Some(tenant.ns()), &tenant.sleeper(name, ""))?;
    // Running first, so that the Pod's own start-up is not what the check races with.
    sandbox::wait_for_phase(&tenant.client, tenant.ns(), name, Phase::Running, START)
        .await
        .context(tenant.log_hint())?;
    // Only a policy for other Pods: the sandbox is checked and found fenced as it asked.
    apply_text(
        &tenant.env,
        Some(tenant.ns()),
        &open_everything("web-egress", "{matchLabels: {app: web}}"),
    )?;
    wait_widened(&tenant, name, "EgressWidened=False", |c| {
        c.status == "False" && c.reason == ALLOWLIST_ONLY
    })
    .await?;

    apply_text(&tenant.env, Some(tenant.ns()), &open_everything("allow-everything", "{}"))?;
    let widened = wait_widened(&tenant, name, "EgressWidened=True", |c| {
        c.status == "True" && c.reason == FOREIGN
    })
    .await?;
    let message =
        sandbox::condition(&widened, WIDENED).map(|c| c.message.clone()).unwrap_or_default();
    println!("egress widened: {message}");
    assert!(message.contains("allow-everything"), "the policy is not named: {message}");
    assert!(message.contains("0.0.0.0/0 on any port"), "what it opens is not said: {message}");
    assert!(!message.contains("web-egress"), "a policy for other Pods is named: {message}");

    let mut events = Vec::new();
    for _ in 0..50 {
        events = warnings(&tenant, name, FOREIGN).await?;
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some(event) = events.first() else {
        bail!("no Warning Event {FOREIGN} on the sandbox; {}", tenant.log_hint());
    };
    let note = event.note.clone().unwrap_or_default();
    assert!(note.contains("allow-everything"), "the Event does not name the policy: {note}");

    let policies: Api<NetworkPolicy> = Api::namespaced(tenant.client.clone(), tenant.ns());
    policies.delete("allow-everything", &DeleteParams::default()).await?;
    wait_widened(&tenant, name, "EgressWidened=False after the deletion", |c| {
        c.status == "False" && c.reason == ALLOWLIST_ONLY
    })
    .await?;
    let after = warnings(&tenant, name, FOREIGN).await?;
    let count: i32 = after.iter().map(|e| e.series.as_ref().map_or(1, |s| s.count)).sum();
    assert_eq!(count, 1, "one widening, one Warning Event: {after:#?}");
    tenant.assert_no_panic()
}
