//! The tenant `LimitRange`: default requests and limits for containers that name none, so
//! that a namespace under a cpu or memory quota still admits Pods that were not written
//! for it (the quota refuses Pods without requests and limits).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec},
    apimachinery::pkg::api::resource::Quantity,
};

use crate::{
    build::resource_quota::tenant_meta,
    config::{Amounts, Config},
};

/// Name of the `LimitRange` Kennel manages in each namespace with a quota.
pub const NAME: &str = "kennel-tenant-limits";

/// The `LimitRange` of a namespace under `policy`: the operator's default requests and
/// limits for every container. Sandbox Pods always set both, so it never changes them.
pub fn limit_range(namespace: &str, policy: &str, config: &Config) -> LimitRange {
    LimitRange {
        metadata: tenant_meta(NAME, namespace, policy),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(amounts(&config.default_limits)),
                default_request: Some(amounts(&config.default_requests)),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

fn amounts(amounts: &Amounts) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(amounts.cpu.clone())),
        ("memory".to_owned(), Quantity(amounts.memory.clone())),
        ("ephemeral-storage".to_owned(), Quantity(amounts.ephemeral_storage.clone())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_get_the_operator_defaults_as_request_and_limit() {
        let range = limit_range("team-a", "gold", &Config::default());
        let item = &range.spec.expect("spec").limits[0];
        assert_eq!(item.type_, "Container");
        let limit = item.default.clone().unwrap_or_default();
        assert_eq!(limit.get("memory").map(|q| q.0.as_str()), Some("1Gi"));
        let request = item.default_request.clone().unwrap_or_default();
        assert_eq!(request.get("cpu").map(|q| q.0.as_str()), Some("100m"));
        assert_eq!(range.metadata.namespace.as_deref(), Some("team-a"));
    }
}
