//! Egress check step: compares every other `NetworkPolicy` that selects the sandbox's Pod with
//! its allowlist ([`crate::policy::overlap`]) and shows the outcome as the `EgressWidened`
//! condition, with a Warning Event and a counted warning when a sandbox becomes widened.

use std::{collections::BTreeMap, time::Duration};

use futures::FutureExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;

use crate::{
    api::{
        AgentSandbox, AgentSandboxStatus,
        conditions::{self, reason},
    },
    build::labels,
    controller::{Context, status},
    policy::{
        SandboxPlan,
        overlap::{Allowance, Widening, widening_policies},
    },
};

/// Action of the Event about a widened sandbox.
const ACTION: &str = "CheckEgress";
/// Longest condition message; the API server refuses over 32 kB, and many widening policies
/// in one namespace must not make the status unwritable.
const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Wait before checking again while the `NetworkPolicy` cache is still loading.
const CACHE_LOADING: Duration = Duration::from_secs(2);

/// Sets `EgressWidened` on `next` from the cached `NetworkPolicies` of the sandbox's
/// namespace. When the sandbox turns widened, or other policies widen it than before, a
/// Warning Event names them. Returns a short requeue while the cache has not loaded yet;
/// the condition is then left as it was rather than cleared on no evidence.
pub async fn check(
    ctx: &Context,
    sandbox: &AgentSandbox,
    plan: &SandboxPlan,
    pod: Option<&Pod>,
    next: &mut AgentSandboxStatus,
) -> Option<Action> {
    let policies = &ctx.stores.network_policies;
    // A single poll: ready now or not. The readiness task re-polls on a timer, so taking the
    // store's wake-up from it here costs it nothing.
    if !matches!(policies.wait_until_ready().now_or_never(), Some(Ok(()))) {
        tracing::debug!("NetworkPolicy cache not loaded yet; egress check deferred");
        return Some(Action::requeue(CACHE_LOADING));
    }
    let pod_labels = pod_labels(plan, pod);
    // Only this namespace's policies leave the cache: the store holds every namespace's.
    let state = policies.state_filter(|p| p.metadata.namespace.as_ref() == Some(&plan.namespace));
    let found = widening_policies(
        &plan.namespace,
        &pod_labels,
        &Allowance::of(plan),
        state.iter().map(AsRef::as_ref),
    );
    let before = widened_message(sandbox.status.as_ref());
    let generation = sandbox.metadata.generation;
    if found.is_empty() {
        let message = "no other NetworkPolicy opens egress beyond the allowlist";
        status::set_condition(
            &mut next.conditions,
            conditions::EGRESS_WIDENED,
            false,
            reason::ALLOWLIST_ONLY,
            message,
            generation,
        );
        if before.is_some() {
            tracing::info!("egress no longer widened by other NetworkPolicies");
        }
        return None;
    }
    let message = explain(&found);
    status::set_condition(
        &mut next.conditions,
        conditions::EGRESS_WIDENED,
        true,
        reason::FOREIGN_NETWORK_POLICY,
        &message,
        generation,
    );
    if before.as_deref().is_none_or(|old| names(old) != names(&message)) {
        let policies: Vec<&str> = found.iter().map(|w| w.policy.as_str()).collect();
        tracing::warn!(?policies, "egress widened by other NetworkPolicies");
        ctx.metrics.record_warning(reason::FOREIGN_NETWORK_POLICY);
        ctx.events.warning(sandbox, reason::FOREIGN_NETWORK_POLICY, ACTION, &message).await;
    }
    None
}

/// The labels policies select the Pod by: the live Pod's, or those it will be created with.
fn pod_labels(plan: &SandboxPlan, pod: Option<&Pod>) -> BTreeMap<String, String> {
    pod.and_then(|p| p.metadata.labels.clone()).unwrap_or_else(|| labels::common_labels(plan))
}

/// The stored `EgressWidened` message while it is true.
fn widened_message(stored: Option<&AgentSandboxStatus>) -> Option<String> {
    let condition = stored?.conditions.iter().find(|c| c.type_ == conditions::EGRESS_WIDENED)?;
    (condition.status == "True").then(|| condition.message.clone())
}

/// The condition message: the policies' names, then what each opens. Policy names are
/// DNS subdomains, so the first `": "` ends the list of names.
fn explain(found: &[Widening]) -> String {
    let names: Vec<&str> = found.iter().map(|w| w.policy.as_str()).collect();
    let each: Vec<String> = found.iter().map(ToString::to_string).collect();
    let noun = if found.len() == 1 { "NetworkPolicy" } else { "NetworkPolicies" };
    let mut message = format!(
        "egress beyond the allowlist is opened by {noun} {}: {}",
        names.join(", "),
        each.join("; ")
    );
    if message.len() > MAX_MESSAGE_BYTES {
        let end = (0..=MAX_MESSAGE_BYTES).rev().find(|&i| message.is_char_boundary(i));
        message.truncate(end.unwrap_or(0));
        message.push_str(" ...");
    }
    message
}

/// The part of a message that lists the policies, to tell a new set of widening policies
/// from a change in what the same policies open.
fn names(message: &str) -> &str {
    message.split_once(": ").map_or(message, |(names, _)| names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widening(policy: &str, opens: &str) -> Widening {
        Widening { policy: policy.to_owned(), opens: vec![opens.to_owned()] }
    }

    #[test]
    fn the_message_names_every_widening_policy_and_what_it_opens() {
        let one = explain(&[widening("allow-all", "0.0.0.0/0 on any port")]);
        assert_eq!(
            one,
            "egress beyond the allowlist is opened by NetworkPolicy allow-all: allow-all \
             allows egress to 0.0.0.0/0 on any port"
        );
        let two = explain(&[widening("a", "x on any port"), widening("b", "y on TCP/1")]);
        assert_eq!(
            two,
            "egress beyond the allowlist is opened by NetworkPolicies a, b: a allows egress \
             to x on any port; b allows egress to y on TCP/1"
        );
    }

    #[test]
    fn a_message_for_very_many_policies_stays_writable() {
        let many: Vec<Widening> =
            (0..1000).map(|i| widening(&format!("policy-{i}"), "0.0.0.0/0 on any port")).collect();
        let message = explain(&many);
        assert!(message.len() <= MAX_MESSAGE_BYTES + 4, "{} bytes", message.len());
        assert!(message.ends_with(" ..."));
    }

    #[test]
    fn a_new_event_is_due_only_when_the_set_of_policies_changes() {
        let old = explain(&[widening("a", "x on any port")]);
        let same_names = explain(&[widening("a", "y on TCP/22")]);
        let more = explain(&[widening("a", "x on any port"), widening("b", "z on any port")]);
        assert_eq!(names(&old), names(&same_names));
        assert_ne!(names(&old), names(&more));
    }

    #[test]
    fn the_pod_is_judged_by_its_live_labels_or_else_the_ones_it_will_get() {
        let plan = crate::policy::testing::accepted("image: x");
        assert_eq!(pod_labels(&plan, None), labels::common_labels(&plan));
        let mut pod = Pod::default();
        pod.metadata.labels = Some(BTreeMap::from([("app".to_owned(), "x".to_owned())]));
        assert_eq!(pod_labels(&plan, Some(&pod))["app"], "x");
    }
}
