//! The `ValidatingAdmissionPolicyBinding` of a `SandboxPolicy`: it makes the API server
//! check sandboxes against that policy at `kubectl apply` time, through the
//! `kennel-tenant-policy` `ValidatingAdmissionPolicy` shipped in `deploy/admission/`.
//!
//! The binding selects namespaces by the label the tenant reconciler writes on each
//! namespace naming the policy that governs it, not by the policy's own selector: when two
//! policies select one namespace only the winner (highest priority, then name) may judge
//! its sandboxes, and a selector cannot express "and no policy above me matches".

use std::collections::BTreeMap;

use k8s_openapi::{
    api::admissionregistration::v1::{
        MatchResources, ParamRef, ValidatingAdmissionPolicyBinding,
        ValidatingAdmissionPolicyBindingSpec,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kube::Resource;

use crate::{
    api::SandboxPolicy,
    build::{
        labels,
        resource_quota::{POLICY_LABEL, label_value},
    },
};

/// The `ValidatingAdmissionPolicy` that judges sandboxes against a `SandboxPolicy` param.
pub const TENANT_VAP: &str = "kennel-tenant-policy";
/// Prefix of each policy's binding name.
const BINDING_PREFIX: &str = "kennel-tenant-";

/// The binding of one policy, owned by it so that it goes when the policy goes; `None`
/// when the policy has no name or UID yet.
pub fn policy_binding(policy: &SandboxPolicy) -> Option<ValidatingAdmissionPolicyBinding> {
    let name = policy.metadata.name.clone()?;
    let owner = policy.controller_owner_ref(&())?;
    let selector = BTreeMap::from([(POLICY_LABEL.to_owned(), label_value(&name))]);
    Some(ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some(binding_name(&name)),
            labels: Some(labels::managed_labels()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: TENANT_VAP.to_owned(),
            param_ref: Some(ParamRef {
                name: Some(name),
                parameter_not_found_action: Some("Deny".to_owned()),
                ..ParamRef::default()
            }),
            match_resources: Some(MatchResources {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(selector),
                    match_expressions: None,
                }),
                ..MatchResources::default()
            }),
            validation_actions: vec!["Deny".to_owned()],
        },
    })
}

/// `kennel-tenant-<policy>`, cut to the 253 characters of an object name.
pub fn binding_name(policy: &str) -> String {
    let full = format!("{BINDING_PREFIX}{policy}");
    let cut: String = full.chars().take(253).collect();
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_refers_to_its_policy_and_selects_the_namespaces_it_governs() {
        let mut policy: SandboxPolicy = serde_yaml::from_str(
            "apiVersion: kennel.dev/v1alpha1\nkind: SandboxPolicy\nmetadata: {name: gold}\n\
             spec: {namespaceSelector: {matchLabels: {tier: gold}}}\n",
        )
        .expect("test policy parses");
        policy.metadata.uid = Some("u-1".to_owned());
        let binding = policy_binding(&policy).expect("named policy has a binding");
        assert_eq!(binding.metadata.name.as_deref(), Some("kennel-tenant-gold"));
        let owner = &binding.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("SandboxPolicy", "u-1"));
        let spec = binding.spec;
        assert_eq!(spec.policy_name, TENANT_VAP);
        assert_eq!(spec.param_ref.and_then(|p| p.name).as_deref(), Some("gold"));
        let selector = spec.match_resources.and_then(|m| m.namespace_selector);
        let labels = selector.and_then(|s| s.match_labels).unwrap_or_default();
        assert_eq!(labels.get(POLICY_LABEL).map(String::as_str), Some("gold"));
        assert_eq!(spec.validation_actions, vec!["Deny".to_owned()]);
    }
}
