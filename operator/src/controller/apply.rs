//! Apply step: server-side apply of the sandbox's children, NetworkPolicy before Pod.

use k8s_openapi::{
    api::{
        core::v1::{PersistentVolumeClaim, Pod, ServiceAccount},
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    build,
    controller::FIELD_MANAGER,
    error::{Error, Result},
    policy::SandboxPlan,
};

/// What happened when the Pod was applied.
pub enum PodOutcome {
    /// The Pod exists now.
    Created(Box<Pod>),
    /// The API server refused it (quota, admission, validation): its message, verbatim.
    Refused(String),
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

/// Applies the sandbox's NetworkPolicy. Its owners are the sandbox and, once it exists, the
/// Pod: the garbage collector removes a dependent only when every owner is gone, so the
/// policy outlives a terminating Pod however the sandbox is deleted.
pub async fn network_policy(
    client: &Client,
    plan: &SandboxPlan,
    sandbox_owner: &OwnerReference,
    pod: Option<&Pod>,
) -> Result<NetworkPolicy> {
    let mut owners = vec![sandbox_owner.clone()];
    if let Some(pod_owner) = pod.and_then(pod_owner_reference) {
        owners.push(pod_owner);
    }
    let api = Api::namespaced(client.clone(), &plan.namespace);
    apply(&api, &build::network_policy::network_policy(plan, owners)).await
}

/// Creates everything a new Pod needs and then the Pod itself, in this order: service
/// account, NetworkPolicy, workspace claim, Pod. The Pod is never applied before its
/// policy exists.
pub async fn pod_and_prerequisites(
    client: &Client,
    plan: &SandboxPlan,
    owner: &OwnerReference,
) -> Result<PodOutcome> {
    let ns = plan.namespace.as_str();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    apply(&accounts, &build::service_account::service_account(ns, &plan.service_account)).await?;
    network_policy(client, plan, owner, None).await?;
    if let Some(claim) = build::workspace_claim::workspace_claim(plan, owner.clone()) {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        apply(&claims, &claim).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match apply(&pods, &build::pod::pod(plan, owner.clone())).await {
        Ok(pod) => Ok(PodOutcome::Created(Box::new(pod))),
        Err(Error::Apply { source: kube::Error::Api(response), .. })
            if matches!(response.code, 400 | 403 | 422) =>
        {
            Ok(PodOutcome::Refused(response.message))
        }
        Err(other) => Err(other),
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
