//! Load step: the sandbox's Pod, judged by owner UID, and whether its RuntimeClass exists.

use k8s_openapi::api::{core::v1::Pod, node::v1::RuntimeClass};
use kube::{Api, Client, ResourceExt};

use crate::error::{Error, Result};

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

/// Reads the Pod named after the sandbox and decides ownership by UID, never by name.
pub async fn pod(client: &Client, namespace: &str, name: &str, uid: &str) -> Result<PodState> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods.get_opt(name).await.map_err(|source| Error::Read {
        kind: "Pod".to_owned(),
        name: name.to_owned(),
        source,
    })?;
    Ok(match pod {
        None => PodState::Missing,
        Some(pod) if controlled_by(&pod, uid) => PodState::Ours(Box::new(pod)),
        Some(pod) => PodState::Foreign(Box::new(pod)),
    })
}

fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Whether the RuntimeClass exists on this cluster.
// Known shortcoming: one GET per Pod creation; a RuntimeClass reflector would save it, but
// Pods are created once per sandbox, so the cost is small next to the Pod itself.
pub async fn runtime_class_exists(client: &Client, name: &str) -> Result<bool> {
    let classes: Api<RuntimeClass> = Api::all(client.clone());
    classes.get_opt(name).await.map(|found| found.is_some()).map_err(|source| Error::Read {
        kind: "RuntimeClass".to_owned(),
        name: name.to_owned(),
        source,
    })
}
