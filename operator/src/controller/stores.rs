//! The watch caches the sandbox reconcile reads instead of the API server: the sandboxes'
//! Pods, every NetworkPolicy of the watched namespaces, and the cluster's RuntimeClasses.
//! With them, reconciling a sandbox whose world has not changed makes no API request.
//!
//! Objects are trimmed before they are stored: managed fields and the client-side apply
//! annotation always, and for Pods everything but the metadata, the node name and the
//! status, which is all the reconcile reads. Most of the operator's memory per sandbox is
//! these caches, so what is dropped here is what lets it hold many thousands.
//!
//! A watch cache lags the API server by the watch latency. The one lag that matters is a
//! Pod the operator has just created and its watch has not delivered yet: [`Stores`]
//! remembers such Pods for a short while, so the next reconcile does not create it again.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    core::v1::{Pod, PodSpec},
    networking::v1::NetworkPolicy,
    node::v1::RuntimeClass,
};
use kube::{
    Resource, ResourceExt,
    runtime::reflector::{self, ObjectRef, Store, store::Writer},
};

/// The annotation `kubectl apply` (client-side) stores a copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// How long a Pod just created counts as existing while its watch event is on its way.
const CREATED_GRACE: Duration = Duration::from_secs(30);

/// The writers that feed the stores; taken once, when the watches start.
pub struct Writers {
    /// Feeds [`Stores::pods`].
    pub pods: Writer<Pod>,
    /// Feeds [`Stores::network_policies`].
    pub network_policies: Writer<NetworkPolicy>,
    /// Feeds [`Stores::runtime_classes`].
    pub runtime_classes: Writer<RuntimeClass>,
}

/// Watch caches of the sandboxes' children and of what their Pods need.
pub struct Stores {
    /// Pods labelled as managed by Kennel, trimmed by [`trim_pod`].
    pub pods: Store<Pod>,
    /// Every NetworkPolicy in the watched namespaces, Kennel's and others'.
    pub network_policies: Store<NetworkPolicy>,
    /// Every RuntimeClass.
    pub runtime_classes: Store<RuntimeClass>,
    writers: Mutex<Option<Writers>>,
    /// Pods created by this process and not yet seen by the Pod watch.
    created: Mutex<HashMap<ObjectRef<Pod>, (Instant, Pod)>>,
    /// Namespaces whose sandbox ServiceAccount this process has applied.
    accounts: Mutex<HashSet<(String, String)>>,
}

impl Default for Stores {
    fn default() -> Self {
        let (pods, pod_writer) = reflector::store();
        let (network_policies, policy_writer) = reflector::store();
        let (runtime_classes, class_writer) = reflector::store();
        let writers = Writers {
            pods: pod_writer,
            network_policies: policy_writer,
            runtime_classes: class_writer,
        };
        Self {
            pods,
            network_policies,
            runtime_classes,
            writers: Mutex::new(Some(writers)),
            created: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashSet::new()),
        }
    }
}

impl Stores {
    /// The writers, the first time only.
    pub fn take_writers(&self) -> Option<Writers> {
        self.writers.lock().ok()?.take()
    }

    /// The Pod of that name: from the watch cache or, if the cache has not seen it yet, the
    /// one this process created in the last few seconds.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let key = ObjectRef::new(name).within(namespace);
        if let Some(pod) = self.pods.get(&key) {
            return Some((*pod).clone());
        }
        let mut created = self.created.lock().ok()?;
        match created.get(&key) {
            Some((at, pod)) if at.elapsed() < CREATED_GRACE => Some(pod.clone()),
            Some(_) => {
                created.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a Pod this process has just created, until the watch delivers it.
    pub fn pod_created(&self, pod: &Pod) {
        let (Some(name), Some(namespace)) = (pod.metadata.name.as_deref(), pod.namespace()) else {
            return;
        };
        if let Ok(mut created) = self.created.lock() {
            created.retain(|_, (at, _)| at.elapsed() < CREATED_GRACE);
            let mut pod = pod.clone();
            trim_pod(&mut pod);
            created.insert(ObjectRef::new(name).within(&namespace), (Instant::now(), pod));
        }
    }

    /// Forgets a created Pod once its watch has delivered it (added, changed or deleted).
    pub fn pod_seen(&self, pod: &Pod) {
        let (Some(name), Some(namespace)) = (pod.metadata.name.as_deref(), pod.namespace()) else {
            return;
        };
        if let Ok(mut created) = self.created.lock() {
            created.remove(&ObjectRef::new(name).within(&namespace));
        }
    }

    /// The cached NetworkPolicy of that name.
    pub fn network_policy(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        let key = ObjectRef::new(name).within(namespace);
        self.network_policies.get(&key).map(|policy| (*policy).clone())
    }

    /// Whether the RuntimeClass is in the cache.
    pub fn runtime_class_exists(&self, name: &str) -> bool {
        self.runtime_classes.get(&ObjectRef::new(name)).is_some()
    }

    /// Whether this process has already applied that ServiceAccount.
    pub fn account_applied(&self, namespace: &str, name: &str) -> bool {
        self.accounts
            .lock()
            .is_ok_and(|accounts| accounts.contains(&(namespace.to_owned(), name.to_owned())))
    }

    /// Records (or, with `applied` false, forgets) an applied ServiceAccount.
    pub fn set_account_applied(&self, namespace: &str, name: &str, applied: bool) {
        if let Ok(mut accounts) = self.accounts.lock() {
            let key = (namespace.to_owned(), name.to_owned());
            if applied {
                accounts.insert(key);
            } else {
                accounts.remove(&key);
            }
        }
    }
}

/// Drops what no reader of any cache uses: managed fields and the client-side apply copy.
pub fn trim_metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Keeps of a Pod only what the reconcile reads: metadata (owners, labels, deletion),
/// the node it runs on, and its status.
pub fn trim_pod(pod: &mut Pod) {
    trim_metadata(pod);
    let node_name = pod.spec.as_mut().and_then(|spec| spec.node_name.take());
    pod.spec = Some(PodSpec { node_name, ..PodSpec::default() });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("test Pod parses")
    }

    const FULL_POD: &str = r"
metadata:
  name: demo
  namespace: team-a
  uid: u-1
  labels: {app: x}
  annotations:
    kennel.dev/expires-at: '2030-01-01T00:00:00Z'
    kubectl.kubernetes.io/last-applied-configuration: '{}'
  managedFields: [{manager: kubelet, operation: Update}]
spec:
  nodeName: node-a
  containers: [{name: agent, image: busybox, command: [sleep, '3600']}]
  volumes: [{name: workspace, emptyDir: {}}]
status: {phase: Running}
";

    #[test]
    fn trimmed_pod_keeps_what_the_reconcile_reads_and_drops_the_rest() {
        let mut trimmed = pod(FULL_POD);
        trim_pod(&mut trimmed);
        assert!(trimmed.metadata.managed_fields.is_none());
        let annotations = trimmed.metadata.annotations.clone().unwrap_or_default();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert!(annotations.contains_key("kennel.dev/expires-at"));
        assert_eq!(trimmed.metadata.uid.as_deref(), Some("u-1"));
        let spec = trimmed.spec.clone().unwrap_or_default();
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        assert!(spec.containers.is_empty() && spec.volumes.is_none());
        assert_eq!(trimmed.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }

    #[test]
    fn a_pod_just_created_counts_as_existing_until_the_watch_sees_it() {
        let stores = Stores::default();
        assert!(stores.pod("team-a", "demo").is_none());
        stores.pod_created(&pod(FULL_POD));
        let remembered = stores.pod("team-a", "demo").expect("remembered after creation");
        assert_eq!(remembered.metadata.uid.as_deref(), Some("u-1"));
        assert!(remembered.metadata.managed_fields.is_none(), "remembered Pods are trimmed");
        assert!(stores.pod("team-a", "other").is_none());
        assert!(stores.pod("team-b", "demo").is_none());
        stores.pod_seen(&pod(FULL_POD));
        assert!(stores.pod("team-a", "demo").is_none(), "the watch cache answers from now on");
    }

    #[test]
    fn service_account_memory_can_be_forgotten() {
        let stores = Stores::default();
        assert!(!stores.account_applied("team-a", "kennel-sandbox"));
        stores.set_account_applied("team-a", "kennel-sandbox", true);
        assert!(stores.account_applied("team-a", "kennel-sandbox"));
        assert!(!stores.account_applied("team-b", "kennel-sandbox"));
        stores.set_account_applied("team-a", "kennel-sandbox", false);
        assert!(!stores.account_applied("team-a", "kennel-sandbox"));
    }
}
