//! Load step: the sandbox's Pod, judged by owner UID, and whether its RuntimeClass exists,
//! both read from the watch caches in [`Stores`], with the API server as the fallback.

use k8s_openapi::api::{core::v1::Pod, node::v1::RuntimeClass};
use kube::{Api, Client, ResourceExt};

use crate::{
    controller::stores::Stores,
    error::{Error, Result},
};

/// The Pod that carries the sandbox's name, and whose it is.
pub enum PodState {
    /// No Pod of that name.
    Missing,
    /// The Pod belongs to this sandbox (its controller owner has the sandbox's UID).
    Ours(Box<Pod>),
    /// A Pod of that name belongs to someone else, usually an earlier sandbox of the same
    /// name that the garbage collector has not removed yet. It is waited out, never adopted.
    Foreign(Box<Pod>),
}

impl PodState {
    /// The Pod, if it is this sandbox's.
    pub fn ours(&self) -> Option<&Pod> {
        match self {
            PodState::Ours(pod) => Some(pod),
            _ => None,
        }
    }
}

/// The Pod named after the sandbox, from the watch cache; ownership by UID, never by name.
pub fn pod(stores: &Stores, namespace: &str, name: &str, uid: &str) -> PodState {
    classify(stores.pod(namespace, name), uid)
}

/// The same, read from the API server: for when the cache and the server disagree.
pub async fn pod_from_server(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<PodState> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods.get_opt(name).await.map_err(|source| Error::Read {
        kind: "Pod".to_owned(),
        name: name.to_owned(),
        source,
    })?;
    Ok(classify(pod, uid))
}

fn classify(pod: Option<Pod>, uid: &str) -> PodState {
    match pod {
        None => PodState::Missing,
        Some(pod) if controlled_by(&pod, uid) => PodState::Ours(Box::new(pod)),
        Some(pod) => PodState::Foreign(Box::new(pod)),
    }
}

fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Whether the RuntimeClass exists on this cluster: the cache, or the API server when the
/// cache has not seen it (it may have been created a moment ago).
pub async fn runtime_class_exists(stores: &Stores, client: &Client, name: &str) -> Result<bool> {
    if stores.runtime_class_exists(name) {
        return Ok(true);
    }
    let classes: Api<RuntimeClass> = Api::all(client.clone());
    classes.get_opt(name).await.map(|found| found.is_some()).map_err(|source| Error::Read {
        kind: "RuntimeClass".to_owned(),
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_pod(controller_uid: &str) -> Pod {
        serde_yaml::from_str(&format!(
            "metadata: {{name: demo, ownerReferences: [{{apiVersion: kennel.dev/v1alpha1, \
             kind: AgentSandbox, name: demo, uid: {controller_uid}, controller: true}}]}}"
        ))
        .expect("test Pod parses")
    }

    #[test]
    fn a_pod_is_ours_only_when_its_controller_owner_has_the_sandbox_uid() {
        assert!(matches!(classify(Some(owned_pod("u-1")), "u-1"), PodState::Ours(_)));
        assert!(matches!(classify(Some(owned_pod("u-0")), "u-1"), PodState::Foreign(_)));
        assert!(matches!(classify(None, "u-1"), PodState::Missing));
    }
}
