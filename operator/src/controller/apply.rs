//! Apply step: the sandbox's children, NetworkPolicy before Pod. What the watch caches show
//! already in place is not written again, so an unchanged sandbox costs no request.

use k8s_openapi::{
    api::{
        core::v1::{PersistentVolumeClaim, Pod, ServiceAccount},
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    build,
    config::FenceGateConfig,
    controller::{FIELD_MANAGER, stores::Stores},
    error::{Error, Result},
    policy::SandboxPlan,
};

/// What happened when the Pod was applied.
pub enum PodOutcome {
    /// The Pod exists now.
    Created(Box<Pod>),
    /// The API server refused it (quota, admission, validation): its message, verbatim.
    Refused(String),
    /// A Pod of that name exists already, which the cache had not shown: look it up.
    AlreadyExists,
}

/// Applies one object with the operator's field manager, taking ownership of its fields.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let name = object.name_any();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply { kind: K::kind(&()).into_owned(), name, source })
}

/// Applies the sandbox's NetworkPolicy unless the cached one already has everything it
/// would set. Its owners are the sandbox and, once it exists, the Pod: the garbage collector
/// removes a dependent only when every owner is gone, so the policy outlives a terminating
/// Pod however the sandbox is deleted.
pub async fn network_policy(
    client: &Client,
    stores: &Stores,
    plan: &SandboxPlan,
    sandbox_owner: &OwnerReference,
    pod: Option<&Pod>,
) -> Result<()> {
    let mut owners = vec![sandbox_owner.clone()];
    if let Some(pod_owner) = pod.and_then(pod_owner_reference) {
        owners.push(pod_owner);
    }
    let desired = build::network_policy::network_policy(plan, owners);
    if let Some(current) = stores.network_policy(&plan.namespace, &plan.name)
        && policy_in_place(&current, &desired)
    {
        tracing::trace!("network policy already in place");
        return Ok(());
    }
    let api = Api::namespaced(client.clone(), &plan.namespace);
    apply(&api, &desired).await?;
    tracing::debug!("network policy applied");
    Ok(())
}

/// Whether `current` carries every owner, label, annotation and spec field of `desired`
/// (fields the API server defaults, like a port's protocol, do not count as differences).
fn policy_in_place(current: &NetworkPolicy, desired: &NetworkPolicy) -> bool {
    let owners_present = desired
        .owner_references()
        .iter()
        .all(|want| current.owner_references().iter().any(|have| have.uid == want.uid));
    owners_present
        && covers(&to_value(&current.metadata.labels), &to_value(&desired.metadata.labels))
        && covers(
            &to_value(&current.metadata.annotations),
            &to_value(&desired.metadata.annotations),
        )
        && covers(&to_value(&current.spec), &to_value(&desired.spec))
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Whether `actual` has every field of `desired` with the same value; lists must match
/// element by element. A field `desired` leaves out (or null) may have any value.
fn covers(actual: &Value, desired: &Value) -> bool {
    match (actual, desired) {
        (_, Value::Null) => true,
        (Value::Object(actual), Value::Object(desired)) => desired
            .iter()
            .all(|(key, want)| want.is_null() || actual.get(key).is_some_and(|a| covers(a, want))),
        (Value::Array(actual), Value::Array(desired)) => {
            actual.len() == desired.len() && actual.iter().zip(desired).all(|(a, d)| covers(a, d))
        }
        (actual, desired) => actual == desired,
    }
}

/// Creates everything a new Pod needs and then the Pod itself, in this order: service
/// account, NetworkPolicy, workspace claim, Pod. The Pod is never created before its
/// policy exists, and with a fence `gate` the agent waits until the policy is enforced.
/// The Pod is created, not applied: a Pod of the same name that belongs to
/// someone else must make this fail, never be taken over.
pub async fn pod_and_prerequisites(
    client: &Client,
    stores: &Stores,
    plan: &SandboxPlan,
    owner: &OwnerReference,
    gate: Option<&FenceGateConfig>,
) -> Result<PodOutcome> {
    let ns = plan.namespace.as_str();
    let account = plan.service_account.as_str();
    if !stores.account_applied(ns, account) {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        apply(&accounts, &build::service_account::service_account(ns, account)).await?;
        stores.set_account_applied(ns, account, true);
    }
    network_policy(client, stores, plan, owner, None).await?;
    if let Some(claim) = build::workspace_claim::workspace_claim(plan, owner.clone()) {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        apply(&claims, &claim).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), dry_run: false };
    match pods.create(&params, &build::pod::gated_pod(plan, owner.clone(), gate)).await {
        Ok(pod) => {
            stores.pod_created(&pod);
            Ok(PodOutcome::Created(Box::new(pod)))
        }
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(PodOutcome::AlreadyExists),
        Err(kube::Error::Api(response)) if matches!(response.code, 400 | 403 | 422) => {
            // The account may have been deleted since it was applied: apply it next time.
            stores.set_account_applied(ns, account, false);
            Ok(PodOutcome::Refused(response.message))
        }
        Err(source) => {
            Err(Error::Apply { kind: "Pod".to_owned(), name: plan.name.clone(), source })
        }
    }
}

/// A non-controlling owner reference to a Pod, used to keep its policy alive.
fn pod_owner_reference(pod: &Pod) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Pod".to_owned(),
        name: pod.metadata.name.clone()?,
        uid: pod.metadata.uid.clone()?,
        controller: Some(false),
        block_owner_deletion: Some(false),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn server_defaults_do_not_count_as_a_difference() {
        let desired = json!({"egress": [{"ports": [{"port": 443}]}], "policyTypes": ["Egress"]});
        let actual = json!({
            "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
            "policyTypes": ["Egress"],
        });
        assert!(covers(&actual, &desired));
    }

    #[test]
    fn a_changed_missing_or_extra_list_entry_is_a_difference() {
        let desired = json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]});
        let changed = json!({"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]});
        let missing = json!({"egress": []});
        let extra = json!({"egress": [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
        ]});
        assert!(!covers(&changed, &desired));
        assert!(!covers(&missing, &desired));
        assert!(!covers(&extra, &desired));
        assert!(!covers(&json!({}), &desired));
    }

    #[test]
    fn a_policy_missing_the_pod_owner_is_applied_again() {
        let policy = |owners: &[&str]| NetworkPolicy {
            metadata: kube::api::ObjectMeta {
                owner_references: Some(
                    owners
                        .iter()
                        .map(|uid| OwnerReference { uid: (*uid).to_owned(), ..Default::default() })
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(policy_in_place(&policy(&["sandbox", "pod"]), &policy(&["sandbox"])));
        assert!(policy_in_place(&policy(&["sandbox", "pod"]), &policy(&["sandbox", "pod"])));
        assert!(!policy_in_place(&policy(&["sandbox"]), &policy(&["sandbox", "pod"])));
    }
}
