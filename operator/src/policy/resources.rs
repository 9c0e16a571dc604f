//! Compute resources: every sandbox gets requests and limits for cpu, memory and
//! ephemeral storage, defaulted from the configuration and bounded.

use std::collections::BTreeMap;

use crate::{
    api::sandbox::{ResourceAmounts, SandboxResources},
    config::{Amounts, Config},
    policy::{quantity::Quantity, validate::Errors},
};

/// One resource: its Kubernetes name, its field name in the spec, and its upper bound.
struct Kind {
    key: &'static str,
    field: &'static str,
    max: Quantity,
    max_text: &'static str,
}

/// Upper bounds: far above any real sandbox, low enough to catch a typo in a suffix.
fn kinds() -> [Kind; 3] {
    [
        Kind { key: "cpu", field: "cpu", max: Quantity::units(1024), max_text: "1024 cores" },
        Kind { key: "memory", field: "memory", max: Quantity::units(4 << 40), max_text: "4Ti" },
        Kind {
            key: "ephemeral-storage",
            field: "ephemeralStorage",
            max: Quantity::units(64 << 40),
            max_text: "64Ti",
        },
    ]
}

/// Requests and limits by resource name, or empty maps after recording errors.
///
/// A limit alone lowers the default request to it; a request alone raises the default
/// limit to it; a request above its limit is refused.
///
/// Known shortcoming: the kubelet counts emptyDir usage (workspace and `/tmp`) against the
/// Pod's ephemeral-storage limit too, so a limit below workspace plus `/tmp` evicts the Pod
/// before the workspace is full. Nothing here raises the limit to match yet.
pub(crate) fn resolve(
    spec: Option<&SandboxResources>,
    config: &Config,
    errors: &mut Errors,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for kind in kinds() {
        let field = |side: &str| format!("spec.resources.{side}.{}", kind.field);
        let asked = |amounts: Option<&ResourceAmounts>| {
            amounts.and_then(|a| pick(a, kind.key)).map(ToOwned::to_owned)
        };
        let request = asked(spec.and_then(|s| s.requests.as_ref()))
            .and_then(|text| given(&text, &kind, &field("requests"), errors).map(|q| (text, q)));
        let limit = asked(spec.and_then(|s| s.limits.as_ref()))
            .and_then(|text| given(&text, &kind, &field("limits"), errors).map(|q| (text, q)));
        let default_request = default(&config.default_requests, &kind, "defaultRequests", errors);
        let default_limit = default(&config.default_limits, &kind, "defaultLimits", errors);
        let (Some(default_request), Some(default_limit)) = (default_request, default_limit) else {
            continue;
        };
        let (request, limit) = match (request, limit) {
            (Some(r), Some(l)) => (r, l),
            (None, Some(l)) => (smaller(default_request, l.clone()), l),
            (Some(r), None) => (r.clone(), larger(default_limit, r)),
            (None, None) => (smaller(default_request, default_limit.clone()), default_limit),
        };
        if request.1 > limit.1 {
            errors.add(
                field("requests"),
                format!(
                    "{} is above the limit {}; lower the request or raise the limit",
                    request.0, limit.0
                ),
            );
        }
        requests.insert(kind.key.to_owned(), request.0);
        limits.insert(kind.key.to_owned(), limit.0);
    }
    (requests, limits)
}

type Amount = (String, Quantity);

fn smaller(a: Amount, b: Amount) -> Amount {
    if a.1 <= b.1 { a } else { b }
}

fn larger(a: Amount, b: Amount) -> Amount {
    if a.1 >= b.1 { a } else { b }
}

fn pick<'a>(amounts: &'a ResourceAmounts, key: &str) -> Option<&'a str> {
    match key {
        "cpu" => amounts.cpu.as_deref(),
        "memory" => amounts.memory.as_deref(),
        _ => amounts.ephemeral_storage.as_deref(),
    }
}

/// A tenant's amount: a quantity, above zero, within the bound.
fn given(text: &str, kind: &Kind, field: &str, errors: &mut Errors) -> Option<Quantity> {
    match bounded(text, kind) {
        Ok(quantity) => Some(quantity),
        Err(message) => {
            errors.add(field, message);
            None
        }
    }
}

/// An operator default; a bad one is reported against the spec field it stands in for,
/// since that is where the status condition points a person.
fn default(amounts: &Amounts, kind: &Kind, setting: &str, errors: &mut Errors) -> Option<Amount> {
    let text = match kind.key {
        "cpu" => &amounts.cpu,
        "memory" => &amounts.memory,
        _ => &amounts.ephemeral_storage,
    };
    match bounded(text, kind) {
        Ok(quantity) => Some((text.clone(), quantity)),
        Err(message) => {
            errors.add(
                format!("spec.resources.{}", kind.field),
                format!("the operator's {setting}.{} {message}; ask the platform team", kind.field),
            );
            None
        }
    }
}

fn bounded(text: &str, kind: &Kind) -> Result<Quantity, String> {
    let quantity = Quantity::parse(text).map_err(|e| e.to_string())?;
    if quantity.is_zero() {
        return Err(format!("{text:?} is zero; give a positive amount"));
    }
    if quantity > kind.max {
        return Err(format!(
            "{text:?} is above the most a sandbox may ask for ({})",
            kind.max_text
        ));
    }
    Ok(quantity)
}

/// Parses a size (workspace, `/tmp`): a positive quantity of at most 64Ti.
pub(crate) fn size(text: &str) -> Result<Quantity, String> {
    let storage = &kinds()[2];
    bounded(text, storage)
}
