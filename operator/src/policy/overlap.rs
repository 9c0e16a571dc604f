//! Foreign network policies that widen a sandbox's egress. Policies add up: any other policy
//! that selects the sandbox's Pod and allows egress adds to what Kennel's own policy allows,
//! so each one is compared with the allowlist and reported when it opens more.
//!
//! The comparison is conservative: what cannot be proven to lie inside the allowlist (named
//! ports, a selector that cannot be evaluated, a range covered only by several entries
//! together) counts as widening. A false alarm costs a look; a missed one costs the fence.

use std::{collections::BTreeMap, fmt};

use ipnet::IpNet;
use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::core::{Selector, SelectorExt as _};

use crate::{
    build::labels,
    config::DnsConfig,
    policy::{SandboxPlan, plan::EgressPlan},
};

/// The label every namespace carries with its own name.
const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";
/// Most openings listed per policy in its explanation; the rest are counted.
const MAX_OPENINGS_SHOWN: usize = 3;

/// What Kennel's own policy lets a sandbox reach: cluster DNS and the allowlist.
#[derive(Clone, Copy, Debug)]
pub struct Allowance<'a> {
    /// The allowlist, with the always-denied ranges carved out.
    pub egress: &'a [EgressPlan],
    /// Where cluster DNS is.
    pub dns: &'a DnsConfig,
}

impl<'a> Allowance<'a> {
    /// What a sandbox of this plan is allowed.
    pub fn of(plan: &'a SandboxPlan) -> Self {
        Self { egress: &plan.egress, dns: &plan.dns }
    }
}

/// A foreign policy that opens egress the allowlist does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Widening {
    /// The policy's name (it is in the sandbox's namespace).
    pub policy: String,
    /// What it opens, one short phrase each (`0.0.0.0/0 on any port`), in rule order.
    pub opens: Vec<String>,
}

impl fmt::Display for Widening {
    /// `allow-all allows egress to 0.0.0.0/0 on any port; to ... (and 2 more)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} allows egress to ", self.policy)?;
        let shown = self.opens.iter().take(MAX_OPENINGS_SHOWN);
        for (i, opening) in shown.enumerate() {
            if i > 0 {
                f.write_str("; to ")?;
            }
            f.write_str(opening)?;
        }
        let hidden = self.opens.len().saturating_sub(MAX_OPENINGS_SHOWN);
        if hidden > 0 {
            write!(f, " (and {hidden} more)")?;
        }
        Ok(())
    }
}

/// The policies of `namespace` that select a Pod with `pod_labels` and open egress beyond
/// `allowance`, sorted by name. Kennel's own policies and other namespaces' are skipped.
pub fn widening_policies<'p>(
    namespace: &str,
    pod_labels: &BTreeMap<String, String>,
    allowance: &Allowance<'_>,
    policies: impl IntoIterator<Item = &'p NetworkPolicy>,
) -> Vec<Widening> {
    let mut found: Vec<Widening> = policies
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref().is_none_or(|ns| ns == namespace))
        .filter(|p| !is_kennels_own(p))
        .filter_map(|p| {
            let spec = p.spec.as_ref()?;
            let opens = openings(spec, pod_labels, allowance);
            let policy = p.metadata.name.clone().unwrap_or_default();
            (!opens.is_empty()).then_some(Widening { policy, opens })
        })
        .collect();
    found.sort_by(|a, b| a.policy.cmp(&b.policy));
    found
}

/// A sandbox's own policy: labelled as Kennel's and owned by an `AgentSandbox`. The label
/// alone is not enough, since anyone who may write policies may also write labels.
fn is_kennels_own(policy: &NetworkPolicy) -> bool {
    let labelled = policy
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGER);
    let owned = policy
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "AgentSandbox" && o.api_version.starts_with("kennel.dev/"));
    labelled && owned
}

/// What one policy opens beyond the allowance for this Pod; empty when it opens nothing.
fn openings(
    spec: &NetworkPolicySpec,
    pod_labels: &BTreeMap<String, String>,
    allowance: &Allowance<'_>,
) -> Vec<String> {
    let selection = selects(spec.pod_selector.as_ref(), pod_labels);
    if selection == Selection::No || !restricts_egress(spec) {
        return Vec::new();
    }
    let mut opens = Vec::new();
    for rule in spec.egress.iter().flatten() {
        for opening in rule_openings(rule, allowance) {
            if !opens.contains(&opening) {
                opens.push(opening);
            }
        }
    }
    if selection == Selection::Unknown && !opens.is_empty() {
        opens.push("(its podSelector could not be evaluated; assumed to select the Pod)".into());
    }
    opens
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Selection {
    Yes,
    No,
    /// The selector is malformed (the API server should have refused it): assume it selects.
    Unknown,
}

/// Whether a policy's `podSelector` selects the Pod; absent or empty selects every Pod.
fn selects(selector: Option<&LabelSelector>, pod_labels: &BTreeMap<String, String>) -> Selection {
    let Some(selector) = selector else {
        return Selection::Yes;
    };
    match Selector::try_from(selector.clone()) {
        Ok(selector) if selector.matches(pod_labels) => Selection::Yes,
        Ok(_) => Selection::No,
        Err(_) => Selection::Unknown,
    }
}

/// Whether the policy's egress rules apply: `Egress` in `policyTypes`, or, with no types
/// given, any egress rule (the API server's own defaulting).
fn restricts_egress(spec: &NetworkPolicySpec) -> bool {
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => types.iter().any(|t| t == "Egress"),
        _ => spec.egress.as_ref().is_some_and(|rules| !rules.is_empty()),
    }
}

/// A destination of a rule.
enum Destination<'a> {
    /// No `to`: every address and every Pod.
    Anywhere,
    /// An address range, minus its exceptions (unparseable exceptions are dropped, which
    /// only makes the range larger).
    Range { cidr: Option<IpNet>, text: &'a str, except: Vec<IpNet> },
    /// Pods chosen by selectors: cluster destinations.
    Pods(&'a NetworkPolicyPeer),
}

/// The ports of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ports {
    /// No `ports`: every port of every protocol.
    Any,
    /// Every port of one protocol.
    AllOf(String),
    /// `first..=last` of one protocol.
    Range { protocol: String, first: i32, last: i32 },
    /// A named port: resolved per destination Pod, so never provably inside the allowlist.
    Named { protocol: String, name: String },
}

/// The openings of one egress rule: every destination and port pair the allowance does not
/// cover, grouped by destination.
fn rule_openings(rule: &NetworkPolicyEgressRule, allowance: &Allowance<'_>) -> Vec<String> {
    let destinations: Vec<Destination<'_>> = match rule.to.as_deref() {
        None | Some([]) => vec![Destination::Anywhere],
        Some(peers) => peers.iter().map(destination).collect(),
    };
    let ports: Vec<Ports> = match rule.ports.as_deref() {
        None | Some([]) => vec![Ports::Any],
        Some(ports) => ports.iter().map(port).collect(),
    };
    destinations
        .iter()
        .filter_map(|dest| {
            let open: Vec<&Ports> = ports.iter().filter(|p| !covered(dest, p, allowance)).collect();
            (!open.is_empty()).then(|| {
                let ports: Vec<String> = open.iter().map(|p| describe_ports(p)).collect();
                format!("{} on {}", describe_destination(dest), ports.join(", "))
            })
        })
        .collect()
}

fn destination(peer: &NetworkPolicyPeer) -> Destination<'_> {
    match &peer.ip_block {
        Some(block) => Destination::Range {
            cidr: block.cidr.parse::<IpNet>().ok().map(|n| n.trunc()),
            text: &block.cidr,
            except: block.except.iter().flatten().filter_map(|e| e.parse().ok()).collect(),
        },
        None => Destination::Pods(peer),
    }
}

fn port(port: &NetworkPolicyPort) -> Ports {
    let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
    match &port.port {
        None => Ports::AllOf(protocol),
        Some(IntOrString::Int(first)) => {
            Ports::Range { protocol, first: *first, last: port.end_port.unwrap_or(*first) }
        }
        Some(IntOrString::String(name)) => Ports::Named { protocol, name: name.clone() },
    }
}

/// Whether every destination and port of the pair lies inside one allowlist entry, or is
/// cluster DNS exactly as Kennel's own policy allows it.
// Known shortcoming: a range covered only by several entries together (two /25s for a /24)
// is reported as widening; proving a union would need range arithmetic for a rare case.
fn covered(dest: &Destination<'_>, ports: &Ports, allowance: &Allowance<'_>) -> bool {
    match dest {
        Destination::Anywhere | Destination::Range { cidr: None, .. } => false,
        Destination::Range { cidr: Some(cidr), except, .. } => allowance
            .egress
            .iter()
            .any(|entry| range_inside(*cidr, except, entry) && ports_inside(ports, &entry.ports)),
        Destination::Pods(peer) => {
            is_cluster_dns(peer, allowance.dns) && dns_port(ports, allowance.dns)
        }
    }
}

/// Whether `cidr` minus `except` lies inside the entry's range minus the entry's exceptions.
fn range_inside(cidr: IpNet, except: &[IpNet], entry: &EgressPlan) -> bool {
    if !entry.cidr.contains(&cidr) {
        return false;
    }
    entry.except.iter().all(|closed| {
        if closed.contains(&cidr) {
            false
        } else if cidr.contains(closed) {
            except.iter().any(|e| e.contains(closed))
        } else {
            true
        }
    })
}

/// Whether the ports lie inside the entry's ports (none listed: every port).
fn ports_inside(ports: &Ports, allowed: &[(i32, crate::api::sandbox::Protocol)]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Ports::Range { protocol, first, last } = ports else {
        return false;
    };
    let count = usize::try_from(i64::from(*last) - i64::from(*first) + 1).unwrap_or(0);
    count > 0
        && count <= allowed.len()
        && (*first..=*last)
            .all(|n| allowed.iter().any(|(p, pr)| *p == n && pr.as_str() == protocol))
}

/// Whether the peer selects only cluster DNS pods: the DNS namespace by name and at least
/// the DNS pods' labels (further requirements only narrow it).
fn is_cluster_dns(peer: &NetworkPolicyPeer, dns: &DnsConfig) -> bool {
    let required = |selector: Option<&LabelSelector>, wanted: &BTreeMap<String, String>| {
        let labels = selector.and_then(|s| s.match_labels.as_ref());
        labels.is_some_and(|l| wanted.iter().all(|(k, v)| l.get(k) == Some(v)))
    };
    let namespace = BTreeMap::from([(NAMESPACE_NAME.to_owned(), dns.namespace.clone())]);
    peer.ip_block.is_none()
        && !dns.pod_labels.is_empty()
        && required(peer.namespace_selector.as_ref(), &namespace)
        && required(peer.pod_selector.as_ref(), &dns.pod_labels)
}

fn dns_port(ports: &Ports, dns: &DnsConfig) -> bool {
    matches!(ports, Ports::Range { protocol, first, last }
        if *first == dns.port && *last == dns.port && (protocol == "UDP" || protocol == "TCP"))
}

fn describe_destination(dest: &Destination<'_>) -> String {
    match dest {
        Destination::Anywhere => "any destination".to_owned(),
        Destination::Range { text, except, .. } if except.is_empty() => (*text).to_owned(),
        Destination::Range { text, except, .. } => {
            let except: Vec<String> = except.iter().map(ToString::to_string).collect();
            format!("{text} except {}", except.join(", "))
        }
        Destination::Pods(peer) => {
            let pods = selector_text(peer.pod_selector.as_ref(), "all pods");
            match &peer.namespace_selector {
                None => format!("pods in this namespace ({pods})"),
                Some(ns) => {
                    format!("pods ({pods}) in namespaces ({})", selector_text(Some(ns), "all"))
                }
            }
        }
    }
}

/// A selector as `kubectl` writes it, or `empty` when it selects everything.
fn selector_text(selector: Option<&LabelSelector>, empty: &str) -> String {
    match selector.map(|s| Selector::try_from(s.clone())) {
        None => empty.to_owned(),
        Some(Ok(s)) if s.selects_all() => empty.to_owned(),
        Some(Ok(s)) => s.to_string(),
        Some(Err(_)) => "a selector that cannot be evaluated".to_owned(),
    }
}

fn describe_ports(ports: &Ports) -> String {
    match ports {
        Ports::Any => "any port".to_owned(),
        Ports::AllOf(protocol) => format!("any {protocol} port"),
        Ports::Range { protocol, first, last } if first == last => format!("{protocol}/{first}"),
        Ports::Range { protocol, first, last } => format!("{protocol}/{first}-{last}"),
        Ports::Named { protocol, name } => format!("{protocol} named port {name:?}"),
    }
}

#[cfg(test)]
#[path = "overlap_tests.rs"]
mod tests;
