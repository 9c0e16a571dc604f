//! Egress allowlist: each entry parsed with `ipnet`, its ports checked, and the ranges no
//! allowlist may open either refused (entry wholly inside one) or carved out as `except`.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{
    api::sandbox::{EgressRule, NetworkSpec},
    config::Config,
    policy::{plan::EgressPlan, validate::Errors},
};

/// Most allowlist entries, and most ports in one entry.
const MAX_ENTRIES: usize = 64;
const MAX_PORTS: usize = 32;

/// IPv4-mapped IPv6 ranges are refused rather than carved out. Traffic to them leaves the
/// node as IPv4 and meets the IPv4 rules, so an entry here would open nothing while looking
/// as if it did; and Kubernetes' strict CIDR validation refuses such ranges in `except`.
/// Known shortcoming: NAT64 (`64:ff9b::/96`) reaches IPv4 addresses through a translator;
/// it is not denied because IPv6-only clusters rely on it to reach the outside.
const IPV4_MAPPED: &str = "::ffff:0:0/96";

/// Link-local ranges, where cloud metadata services answer: named as such in messages.
const LINK_LOCAL: [&str; 2] = ["169.254.0.0/16", "fe80::/10"];

/// A range no allowlist entry may open, with why, for the message.
#[derive(Clone, Debug)]
struct Denied {
    net: IpNet,
    why: String,
    /// Carved out of wider entries as `except` (true), or only refused when an entry lies
    /// inside it (false).
    carve: bool,
}

/// The allowlist as NetworkPolicy-ready entries; errors recorded per field.
pub(crate) fn resolve(
    network: Option<&NetworkSpec>,
    config: &Config,
    errors: &mut Errors,
) -> Vec<EgressPlan> {
    let entries = network.map(|n| n.egress.as_slice()).unwrap_or_default();
    if entries.is_empty() {
        return Vec::new();
    }
    if entries.len() > MAX_ENTRIES {
        errors.add(
            "spec.network.egress",
            format!("has {} entries; at most {MAX_ENTRIES} are allowed", entries.len()),
        );
    }
    let denied = match denied_ranges(config) {
        Ok(denied) => denied,
        Err(bad) => {
            // Fail closed: with a broken denied list, no entry can be proven safe.
            errors.add(
                "spec.network.egress",
                format!("the operator's denied range {bad:?} is not a CIDR; ask the platform team"),
            );
            return Vec::new();
        }
    };
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| plan_entry(i, entry, &denied, errors))
        .collect()
}

fn plan_entry(
    i: usize,
    entry: &EgressRule,
    denied: &[Denied],
    errors: &mut Errors,
) -> Option<EgressPlan> {
    let ports = ports(i, entry, errors);
    let field = format!("spec.network.egress[{i}].cidr");
    let cidr = match parse_cidr(&entry.cidr) {
        Ok(cidr) => cidr,
        Err(message) => {
            errors.add(field, message);
            return None;
        }
    };
    let same_family = denied.iter().filter(|d| d.net.addr().is_ipv4() == cidr.addr().is_ipv4());
    let mut except = Vec::new();
    for range in same_family {
        if range.net.contains(&cidr) {
            errors.add(
                field,
                format!("{cidr} lies inside {} ({}); remove this entry", range.net, range.why),
            );
            return None;
        }
        if range.carve && cidr.contains(&range.net) {
            except.push(range.net);
        }
    }
    Some(EgressPlan { cidr, except: minimal(except), ports: ports? })
}

fn ports(
    i: usize,
    entry: &EgressRule,
    errors: &mut Errors,
) -> Option<Vec<(i32, crate::api::sandbox::Protocol)>> {
    if entry.ports.len() > MAX_PORTS {
        errors.add(
            format!("spec.network.egress[{i}].ports"),
            format!("has more than {MAX_PORTS} entries"),
        );
        return None;
    }
    let mut ok = true;
    for (j, port) in entry.ports.iter().enumerate() {
        if !(1..=65535).contains(&port.port) {
            errors.add(
                format!("spec.network.egress[{i}].ports[{j}].port"),
                format!("{} is not a port; use 1 to 65535", port.port),
            );
            ok = false;
        }
    }
    ok.then(|| entry.ports.iter().map(|p| (p.port, p.protocol)).collect())
}

/// Parses a CIDR, refusing host bits and bare addresses with the text to write instead.
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text.parse().map_err(|_| match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(addr)) => {
            format!("{text:?} has no prefix length; write {addr}/32 for one address")
        }
        Ok(IpAddr::V6(addr)) => {
            format!("{text:?} has no prefix length; write {addr}/128 for one address")
        }
        Err(_) => {
            format!("{text:?} is not a CIDR; write a range such as 203.0.113.0/24 or 2001:db8::/64")
        }
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set; write the network {} (or {}/{} for the single address)",
            net.trunc(),
            net.addr(),
            net.max_prefix_len()
        ));
    }
    Ok(net)
}

/// Every range no allowlist may open, or the first one that does not parse.
fn denied_ranges(config: &Config) -> Result<Vec<Denied>, String> {
    let link_local: Vec<IpNet> = LINK_LOCAL.iter().filter_map(|t| t.parse().ok()).collect();
    let always = config.always_denied_cidrs.iter().map(|c| {
        let why = |net: &IpNet| {
            if link_local.iter().any(|l| l.contains(net) || net.contains(l)) {
                "cloud metadata / link-local, always denied"
            } else {
                "always denied by the operator's configuration"
            }
        };
        (c.as_str(), why)
    });
    let mut denied = Vec::new();
    for (text, why) in always {
        let net = parse_config(text)?;
        denied.push(Denied { net, why: why(&net).to_owned(), carve: true });
    }
    let mapped = parse_config(IPV4_MAPPED)?;
    denied.push(Denied {
        net: mapped,
        why: "IPv4-mapped IPv6, which network policies do not match; write the IPv4 CIDR"
            .to_owned(),
        carve: false,
    });
    if !config.allow_cluster_egress {
        let cluster = [
            (&config.cluster.pod_cidrs, "the cluster's pod range"),
            (&config.cluster.service_cidrs, "the cluster's service range"),
            (&config.cluster.api_server_cidrs, "the API server"),
        ];
        for (list, what) in cluster {
            for text in list {
                let why = format!("{what}, denied unless the operator sets allowClusterEgress");
                denied.push(Denied { net: parse_config(text)?, why, carve: true });
            }
        }
    }
    Ok(denied)
}

/// A configured range; a host-bit form such as `10.0.0.1/8` counts as its network.
fn parse_config(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| text.to_owned())
}

/// Sorted, without duplicates or ranges inside another: `except` stays short and valid.
fn minimal(mut nets: Vec<IpNet>) -> Vec<IpNet> {
    nets.sort();
    nets.dedup();
    let all = nets.clone();
    nets.retain(|net| !all.iter().any(|other| other != net && other.contains(net)));
    nets
}
