//! Tests of the foreign-policy analysis: which network policies widen a sandbox's egress and
//! how each is explained.
// Test-only code: a fixture that does not parse fails the test loudly.
#![allow(clippy::panic)]

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule};

use super::{Allowance, Widening, widening_policies};
use crate::{
    build::{self, labels},
    policy::{SandboxPlan, testing::accepted},
};

/// A sandbox allowed HTTPS to one documentation range, and 0.0.0.0/0 on port 80 (with the
/// always-denied ranges carved out).
const ALLOWLIST: &str = "image: x\nnetwork:\n  egress:\n  \
    - {cidr: 203.0.113.0/24, ports: [{port: 443}]}\n  \
    - {cidr: 0.0.0.0/0, ports: [{port: 80}]}";

/// A `NetworkPolicy` in `team-a` named `name` from the YAML of its spec.
fn policy(name: &str, spec_yaml: &str) -> NetworkPolicy {
    let text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: {name}, namespace: team-a}}\nspec: {spec_yaml}\n"
    );
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("test policy parses: {e}"))
}

fn pod_labels(plan: &SandboxPlan) -> BTreeMap<String, String> {
    labels::common_labels(plan)
}

/// The widenings the policies cause for the [`ALLOWLIST`] sandbox.
fn widenings(policies: &[NetworkPolicy]) -> Vec<Widening> {
    let plan = accepted(ALLOWLIST);
    widening_policies("team-a", &pod_labels(&plan), &Allowance::of(&plan), policies)
}

/// The one explanation a single policy gets, or `None` when it does not widen.
fn explain(spec_yaml: &str) -> Option<String> {
    let found = widenings(&[policy("p", spec_yaml)]);
    assert!(found.len() <= 1, "one policy, one widening at most: {found:?}");
    found.first().map(ToString::to_string)
}

#[test]
fn a_policy_opening_everything_to_every_pod_is_reported_with_what_it_opens() {
    let text = explain("{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}");
    assert_eq!(text.as_deref(), Some("p allows egress to 0.0.0.0/0 on any port"));
}

#[test]
fn a_rule_without_destinations_opens_any_destination() {
    let text = explain("{podSelector: {}, policyTypes: [Egress], egress: [{}]}");
    assert_eq!(text.as_deref(), Some("p allows egress to any destination on any port"));
    let text = explain("{podSelector: {}, egress: [{ports: [{port: 22}]}]}");
    assert_eq!(text.as_deref(), Some("p allows egress to any destination on TCP/22"));
}

#[test]
fn a_policy_selecting_other_pods_is_not_reported() {
    let other = "{podSelector: {matchLabels: {app: web}}, egress: [{}]}";
    assert_eq!(explain(other), None);
    let by_uid =
        "{podSelector: {matchLabels: {kennel.dev/sandbox-uid: someone-else}}, egress: [{}]}";
    assert_eq!(explain(by_uid), None);
}

#[test]
fn a_policy_selecting_the_pod_by_its_labels_or_expressions_is_reported() {
    let managed = "{podSelector: {matchLabels: {app.kubernetes.io/managed-by: kennel}}, \
                   egress: [{}]}";
    assert!(explain(managed).is_some());
    let exists = "{podSelector: {matchExpressions: [{key: kennel.dev/sandbox-uid, \
                  operator: Exists}]}, egress: [{}]}";
    assert!(explain(exists).is_some());
    let not_in = "{podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [db]}]}, \
                  egress: [{}]}";
    assert!(explain(not_in).is_some(), "NotIn selects Pods without the key");
    let excluded = "{podSelector: {matchExpressions: [{key: app.kubernetes.io/managed-by, \
                    operator: NotIn, values: [kennel]}]}, egress: [{}]}";
    assert_eq!(explain(excluded), None);
}

#[test]
fn a_selector_that_cannot_be_evaluated_is_assumed_to_select_the_pod() {
    let text = explain(
        "{podSelector: {matchExpressions: [{key: app, operator: Near, values: [x]}]}, \
         egress: [{}]}",
    )
    .unwrap_or_default();
    assert!(text.contains("any destination"), "{text}");
    assert!(text.contains("could not be evaluated"), "{text}");
}

#[test]
fn policies_that_do_not_apply_to_egress_are_not_reported() {
    let ingress_only = "{podSelector: {}, policyTypes: [Ingress], egress: [{}]}";
    assert_eq!(explain(ingress_only), None, "egress rules are ignored without Egress");
    let no_types_no_rules = "{podSelector: {}, ingress: [{}]}";
    assert_eq!(explain(no_types_no_rules), None);
}

#[test]
fn a_deny_all_egress_policy_does_not_widen() {
    assert_eq!(explain("{podSelector: {}, policyTypes: [Egress]}"), None);
    assert_eq!(explain("{podSelector: {}, policyTypes: [Egress], egress: []}"), None);
}

#[test]
fn a_range_inside_an_allowlist_entry_on_its_ports_is_not_reported() {
    let inside = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 203.0.113.128/25}}], \
                  ports: [{port: 443, protocol: TCP}]}]}";
    assert_eq!(explain(inside), None);
}

#[test]
fn ports_beyond_the_allowlist_are_reported() {
    let any_port = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}]}]}";
    assert_eq!(explain(any_port).as_deref(), Some("p allows egress to 203.0.113.0/24 on any port"));
    let udp = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}], \
               ports: [{port: 443, protocol: UDP}, {port: 443}]}]}";
    assert_eq!(explain(udp).as_deref(), Some("p allows egress to 203.0.113.0/24 on UDP/443"));
    let all_tcp = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}], \
                   ports: [{protocol: TCP}]}]}";
    assert_eq!(
        explain(all_tcp).as_deref(),
        Some("p allows egress to 203.0.113.0/24 on any TCP port")
    );
}

#[test]
fn a_port_range_is_reported_unless_every_port_in_it_is_allowlisted() {
    let range = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}], \
                 ports: [{port: 443, endPort: 444}]}]}";
    assert_eq!(explain(range).as_deref(), Some("p allows egress to 203.0.113.0/24 on TCP/443-444"));
    let single = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}], \
                  ports: [{port: 443, endPort: 443}]}]}";
    assert_eq!(explain(single), None);
}

#[test]
fn named_ports_are_reported_because_they_cannot_be_resolved_here() {
    let named = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}], \
                 ports: [{port: https}]}]}";
    assert_eq!(
        explain(named).as_deref(),
        Some("p allows egress to 203.0.113.0/24 on TCP named port \"https\"")
    );
}

#[test]
fn reopening_an_always_denied_range_is_reported_and_keeping_it_closed_is_not() {
    // The allowlist's 0.0.0.0/0 on port 80 carves out link-local and the cluster's ranges.
    let reopened = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 169.254.169.254/32}}], \
                    ports: [{port: 80}]}]}";
    assert_eq!(
        explain(reopened).as_deref(),
        Some("p allows egress to 169.254.169.254/32 on TCP/80")
    );
    let wide = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}], \
                ports: [{port: 80}]}]}";
    assert!(explain(wide).is_some(), "0.0.0.0/0 without the carve-outs reopens them");
    let carved = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: \
                  [169.254.0.0/16, 10.244.0.0/16, 10.96.0.0/12, 192.0.2.10/32]}}], \
                  ports: [{port: 80}]}]}";
    assert_eq!(explain(carved), None);
}

#[test]
fn ranges_outside_every_entry_or_unparseable_are_reported() {
    let v6 = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: '::/0'}}], ports: [{port: 80}]}]}";
    assert_eq!(explain(v6).as_deref(), Some("p allows egress to ::/0 on TCP/80"));
    let junk = "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: not-a-cidr}}], \
                ports: [{port: 443}]}]}";
    assert_eq!(explain(junk).as_deref(), Some("p allows egress to not-a-cidr on TCP/443"));
}

#[test]
fn pod_and_namespace_selectors_are_cluster_destinations_kennel_never_allows() {
    let same_ns = "{podSelector: {}, egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]}";
    assert_eq!(
        explain(same_ns).as_deref(),
        Some("p allows egress to pods in this namespace (app=db) on any port")
    );
    let everywhere = "{podSelector: {}, egress: [{to: [{namespaceSelector: {}}], \
                      ports: [{port: 5432}]}]}";
    assert_eq!(
        explain(everywhere).as_deref(),
        Some("p allows egress to pods (all pods) in namespaces (all) on TCP/5432")
    );
}

#[test]
fn egress_to_cluster_dns_on_its_port_is_not_reported_but_more_of_kube_system_is() {
    let dns = "{podSelector: {}, egress: [{to: [{namespaceSelector: {matchLabels: \
               {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: \
               {k8s-app: kube-dns}}}], ports: [{port: 53, protocol: UDP}, {port: 53}]}]}";
    assert_eq!(explain(dns), None);
    let other_port = "{podSelector: {}, egress: [{to: [{namespaceSelector: {matchLabels: \
                      {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: \
                      {k8s-app: kube-dns}}}], ports: [{port: 9153}]}]}";
    assert!(explain(other_port).is_some());
    let whole_ns = "{podSelector: {}, egress: [{to: [{namespaceSelector: {matchLabels: \
                    {kubernetes.io/metadata.name: kube-system}}}], ports: [{port: 53}]}]}";
    assert!(explain(whole_ns).is_some());
}

#[test]
fn kennels_own_policy_is_skipped_but_its_label_alone_does_not_hide_a_policy() {
    let plan = accepted(ALLOWLIST);
    let sandbox = crate::policy::testing::sandbox(ALLOWLIST);
    let owner = build::owner_reference(&sandbox).expect("owner");
    let mut own = build::network_policy::network_policy(&plan, vec![owner.clone()]);
    own.spec.as_mut().expect("spec").egress = Some(vec![NetworkPolicyEgressRule::default()]);
    assert_eq!(widenings(&[own]), vec![], "an owned, labelled policy is Kennel's own");

    let mut lookalike = policy("lookalike", "{podSelector: {}, egress: [{}]}");
    lookalike.metadata.labels = Some(labels::managed_labels());
    let found = widenings(&[lookalike]);
    assert_eq!(found.len(), 1, "a label anyone can write does not make a policy Kennel's");
    assert_eq!(found[0].policy, "lookalike");
}

#[test]
fn kennels_own_rules_lie_within_the_allowance_they_were_built_from() {
    let plan = accepted(ALLOWLIST);
    let mut copy = build::network_policy::network_policy(&plan, Vec::new());
    copy.metadata.labels = None;
    assert_eq!(widenings(&[copy]), vec![]);
}

#[test]
fn policies_of_other_namespaces_are_ignored() {
    let mut elsewhere = policy("elsewhere", "{podSelector: {}, egress: [{}]}");
    elsewhere.metadata.namespace = Some("team-b".to_owned());
    assert_eq!(widenings(&[elsewhere]), vec![]);
}

#[test]
fn widenings_are_sorted_by_name_with_duplicate_openings_merged_and_long_lists_cut() {
    let zeta = policy("zeta", "{podSelector: {}, egress: [{}, {}]}");
    let alpha = policy(
        "alpha",
        "{podSelector: {}, egress: [{ports: [{port: 1}]}, {ports: [{port: 2}]}, \
         {ports: [{port: 3}]}, {ports: [{port: 4}]}, {ports: [{port: 5}]}]}",
    );
    let fine = policy("fine", "{podSelector: {}, policyTypes: [Egress]}");
    let found = widenings(&[zeta, fine, alpha]);
    let names: Vec<&str> = found.iter().map(|w| w.policy.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(found[1].opens, ["any destination on any port"]);
    assert_eq!(
        found[0].to_string(),
        "alpha allows egress to any destination on TCP/1; to any destination on TCP/2; \
         to any destination on TCP/3 (and 2 more)"
    );
}
