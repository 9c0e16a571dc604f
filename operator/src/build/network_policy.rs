//! The sandbox's `NetworkPolicy`: ingress closed, egress closed except cluster DNS and the
//! allowlist, with the always-denied ranges carved out of every allowlist entry.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{
        IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};

use crate::{
    build::labels,
    policy::{SandboxPlan, plan::EgressPlan},
};

/// The label every namespace carries with its own name.
const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// The sandbox's `NetworkPolicy`, named after the sandbox and selecting its Pod by UID.
pub fn network_policy(plan: &SandboxPlan, owners: Vec<OwnerReference>) -> NetworkPolicy {
    let mut egress = vec![dns_rule(plan)];
    egress.extend(plan.egress.iter().map(allow_rule));
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(plan.name.clone()),
            namespace: Some(plan.namespace.clone()),
            labels: Some(labels::common_labels(plan)),
            annotations: Some(labels::common_annotations(plan)),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels(labels::selector_labels(plan))),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            // `Ingress` in policyTypes with no rules: no ingress is allowed at all. The rules
            // are left out rather than sent empty: the API server stores `[]` as absent but
            // still counts `[]` against absent as a spec change, so every apply would bump
            // the generation, emit a watch event and trigger the next reconcile, forever.
            ingress: None,
            egress: Some(egress),
        }),
    }
}

/// DNS to the cluster's DNS pods, on the port they listen on, over UDP and TCP.
fn dns_rule(plan: &SandboxPlan) -> NetworkPolicyEgressRule {
    let namespace = BTreeMap::from([(NAMESPACE_NAME.to_owned(), plan.dns.namespace.clone())]);
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(match_labels(namespace)),
            pod_selector: Some(match_labels(plan.dns.pod_labels.clone())),
            ip_block: None,
        }]),
        ports: Some(vec![port(plan.dns.port, "UDP"), port(plan.dns.port, "TCP")]),
    }
}

/// One allowlist entry; no ports means every port.
fn allow_rule(entry: &EgressPlan) -> NetworkPolicyEgressRule {
    let except: Vec<String> = entry.except.iter().map(ToString::to_string).collect();
    let ports: Vec<NetworkPolicyPort> =
        entry.ports.iter().map(|(n, p)| port(*n, p.as_str())).collect();
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: entry.cidr.to_string(),
                except: (!except.is_empty()).then_some(except),
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: (!ports.is_empty()).then_some(ports),
    }
}

fn port(number: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some(protocol.to_owned()),
        end_port: None,
    }
}

fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels), match_expressions: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        build::owner_reference,
        policy::testing::{accepted, sandbox},
    };

    fn build(spec: &str) -> NetworkPolicySpec {
        let owner = owner_reference(&sandbox(spec)).expect("owner");
        network_policy(&accepted(spec), vec![owner]).spec.expect("spec")
    }

    #[test]
    fn policy_selects_the_pod_by_uid_and_denies_all_ingress() {
        let spec = build("image: x");
        let selector = spec.pod_selector.and_then(|s| s.match_labels).unwrap_or_default();
        assert_eq!(
            selector,
            BTreeMap::from([(
                labels::SANDBOX_UID.into(),
                "0b5c6f4e-1111-2222-3333-444455556666".into()
            )])
        );
        assert_eq!(spec.policy_types, Some(vec!["Ingress".into(), "Egress".into()]));
        assert_eq!(spec.ingress, None, "no ingress rules at all");
    }

    #[test]
    fn without_an_allowlist_only_cluster_dns_is_reachable() {
        let egress = build("image: x").egress.unwrap_or_default();
        assert_eq!(egress.len(), 1);
        let peer = &egress[0].to.as_deref().unwrap_or_default()[0];
        let ns = peer.namespace_selector.clone().and_then(|s| s.match_labels).unwrap_or_default();
        assert_eq!(ns, BTreeMap::from([(NAMESPACE_NAME.into(), "kube-system".into())]));
        let pods = peer.pod_selector.clone().and_then(|s| s.match_labels).unwrap_or_default();
        assert_eq!(pods, BTreeMap::from([("k8s-app".into(), "kube-dns".into())]));
        assert!(peer.ip_block.is_none());
        assert_eq!(egress[0].ports, Some(vec![port(53, "UDP"), port(53, "TCP")]));
    }

    #[test]
    fn allowlist_entries_become_ip_blocks_with_denied_ranges_as_except() {
        let spec = build(
            "image: x\nnetwork:\n  egress:\n  \
             - {cidr: 0.0.0.0/0, ports: [{port: 443}, {port: 53, protocol: UDP}]}\n  \
             - {cidr: 203.0.113.0/24}",
        );
        let egress = spec.egress.unwrap_or_default();
        assert_eq!(egress.len(), 3);
        let block =
            egress[1].to.as_deref().unwrap_or_default()[0].ip_block.clone().expect("ipBlock");
        assert_eq!(block.cidr, "0.0.0.0/0");
        let except = block.except.unwrap_or_default();
        assert!(except.contains(&"169.254.0.0/16".to_owned()), "{except:?}");
        assert!(except.contains(&"10.244.0.0/16".to_owned()), "{except:?}");
        assert_eq!(egress[1].ports, Some(vec![port(443, "TCP"), port(53, "UDP")]));
        let open =
            egress[2].to.as_deref().unwrap_or_default()[0].ip_block.clone().expect("ipBlock");
        assert_eq!(open, IPBlock { cidr: "203.0.113.0/24".into(), except: None });
        assert_eq!(egress[2].ports, None, "no ports means every port");
    }

    #[test]
    fn policy_is_named_after_the_sandbox_and_owned_by_it() {
        let sandbox = sandbox("image: x");
        let owner = owner_reference(&sandbox).expect("owner");
        let policy = network_policy(&accepted("image: x"), vec![owner.clone()]);
        assert_eq!(policy.metadata.name.as_deref(), Some("demo"));
        assert_eq!(policy.metadata.owner_references, Some(vec![owner]));
    }
}
