//! The tenant `ResourceQuota`: a namespace's totals from its `SandboxPolicy` quota.
//!
//! Not owned by anything: its policy is cluster-scoped and the namespace outlives it. It is
//! found by the managed-by label and deleted when the namespace stops being governed.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{ResourceQuota, ResourceQuotaSpec},
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};

use crate::{api::policy::QuotaRules, build::labels};

/// Name of the quota Kennel manages in each governed namespace.
pub const NAME: &str = "kennel-tenant-quota";
/// The quota key that counts `AgentSandboxes`: the API server refuses the create past it.
pub const SANDBOX_COUNT: &str = "count/agentsandboxes.kennel.dev";
/// Label naming the `SandboxPolicy` a tenant object comes from.
pub const POLICY_LABEL: &str = "kennel.dev/sandbox-policy";

/// The quota of a namespace under `policy`, or `None` when the quota limits nothing.
/// Each sandbox is one Pod, so `pods` follows the sandbox count; cpu and memory bound both
/// requests and limits.
pub fn resource_quota(namespace: &str, policy: &str, quota: &QuotaRules) -> Option<ResourceQuota> {
    let mut hard = BTreeMap::new();
    if let Some(count) = quota.sandboxes {
        hard.insert(SANDBOX_COUNT.to_owned(), Quantity(count.to_string()));
        hard.insert("pods".to_owned(), Quantity(count.to_string()));
    }
    for (value, keys) in [
        (&quota.cpu, &["requests.cpu", "limits.cpu"][..]),
        (&quota.memory, &["requests.memory", "limits.memory"][..]),
        (&quota.ephemeral_storage, &["requests.ephemeral-storage"][..]),
    ] {
        for key in keys.iter().filter(|_| value.is_some()) {
            hard.insert((*key).to_owned(), Quantity(value.clone().unwrap_or_default()));
        }
    }
    if hard.is_empty() {
        return None;
    }
    Some(ResourceQuota {
        metadata: tenant_meta(NAME, namespace, policy),
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..ResourceQuotaSpec::default() }),
        status: None,
    })
}

/// Metadata of a tenant object: name, namespace, managed-by and policy labels.
pub(crate) fn tenant_meta(name: &str, namespace: &str, policy: &str) -> ObjectMeta {
    let mut labels = labels::managed_labels();
    labels.insert(POLICY_LABEL.to_owned(), label_value(policy));
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// The policy name as a label value: policy names may be longer than 63 characters.
pub(crate) fn label_value(name: &str) -> String {
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(yaml: &str) -> QuotaRules {
        serde_yaml::from_str(yaml).expect("test quota parses")
    }

    #[test]
    fn every_set_total_becomes_a_hard_limit_and_sandboxes_count_pods_too() {
        let built =
            resource_quota("team-a", "gold", &quota("{sandboxes: 3, cpu: '4', memory: 8Gi}"))
                .expect("quota");
        let hard = built.spec.and_then(|s| s.hard).unwrap_or_default();
        let get = |k: &str| hard.get(k).map(|q| q.0.as_str());
        assert_eq!(get(SANDBOX_COUNT), Some("3"));
        assert_eq!(get("pods"), Some("3"));
        assert_eq!(get("requests.cpu"), Some("4"));
        assert_eq!(get("limits.cpu"), Some("4"));
        assert_eq!(get("limits.memory"), Some("8Gi"));
        assert_eq!(get("requests.ephemeral-storage"), None);
        let labels = built.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(POLICY_LABEL).map(String::as_str), Some("gold"));
        assert_eq!(labels.get(labels::MANAGED_BY).map(String::as_str), Some("kennel"));
        assert_eq!(built.metadata.owner_references, None, "cluster-scoped policy owns nothing");
    }

    #[test]
    fn empty_quota_builds_nothing() {
        assert!(resource_quota("team-a", "p", &QuotaRules::default()).is_none());
    }

    #[test]
    fn long_policy_names_are_cut_to_a_valid_label_value() {
        let long = format!("{}.x", "a".repeat(62));
        assert_eq!(label_value(&long), "a".repeat(62));
    }
}
