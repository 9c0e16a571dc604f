//! What the benchmark creates (sandboxes, and bare Pods with the spec Kennel builds), how
//! it creates them (a burst at fixed client concurrency), and the Pod timeline it watches.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    api::core::v1::{Pod, ServiceAccount},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, PostParams, WatchEvent, WatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use kennel::{api::AgentSandbox, config::Config};

/// Wall-clock seconds since the Unix epoch: the one clock every timestamp here uses, so
/// that client-side times compare with `expiresAt`.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An RFC 3339 UTC timestamp for whole epoch seconds.
pub fn rfc3339(epoch_s: u64) -> String {
    let secs = i64::try_from(epoch_s).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs).map_or_else(|_| String::new(), |t| t.to_string())
}

/// A sandbox the way a tenant writes it: busybox sleeping, expiring at `expires_at`.
pub fn sandbox(name: &str, image: &str, expires_at: Option<&str>) -> Result<AgentSandbox> {
    let lifetime = match expires_at {
        Some(at) => json!({"expiresAt": at, "onExpiry": "Delete"}),
        None => json!({"ttl": "1h", "onExpiry": "Delete"}),
    };
    let object = json!({
        "apiVersion": "kennel.dev/v1alpha1",
        "kind": "AgentSandbox",
        "metadata": {"name": name},
        "spec": {
            "image": image,
            "command": ["sh", "-c", "sleep 3600"],
            "isolation": "gvisor",
            "lifetime": lifetime,
        },
    });
    serde_json::from_value(object).context("failed to build the benchmark sandbox")
}

/// The Pod Kennel builds for `sandbox` under `config`, without its owner: what a client
/// that skips the operator would create. The floor of every comparison.
pub fn bare_pod(sandbox: &AgentSandbox, namespace: &str, config: &Config) -> Result<Pod> {
    let mut sandbox = sandbox.clone();
    sandbox.metadata.namespace = Some(namespace.to_owned());
    sandbox.metadata.uid = Some("00000000-0000-0000-0000-000000000000".to_owned());
    sandbox.metadata.creation_timestamp = Some(Time(jiff::Timestamp::now()));
    let plan = kennel::policy::validate::plan(&sandbox, config)
        .map_err(|rejection| anyhow::anyhow!("the benchmark sandbox is invalid: {rejection}"))?;
    let owner = kennel::build::owner_reference(&sandbox).context("sandbox without uid")?;
    let mut pod = kennel::build::pod::pod(&plan, owner);
    pod.metadata.owner_references = None;
    // Without Kennel's label the operator's Pod watch never sees these Pods.
    pod.metadata.labels = Some([("kennel.dev/bench".to_owned(), "floor".to_owned())].into());
    Ok(pod)
}

/// The ServiceAccount bare Pods run as: Kennel creates it for sandboxes; the floor needs
/// its own copy, or admission refuses the Pods.
pub async fn service_account(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let account: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": name}, "automountServiceAccountToken": false,
    }))?;
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &account).await.context("failed to create SA")?;
    Ok(())
}

/// Creates `objects` with `concurrency` requests in flight; returns, per object, the time
/// its create call started.
pub async fn burst<K>(
    api: &Api<K>,
    objects: Vec<K>,
    concurrency: usize,
) -> Result<HashMap<String, f64>>
where
    K: Resource + Clone + std::fmt::Debug + serde::Serialize + DeserializeOwned,
{
    let results: Vec<Result<(String, f64)>> = stream::iter(objects)
        .map(|object| {
            let api = api.clone();
            async move {
                let name = object.name_any();
                let started = now();
                api.create(&PostParams::default(), &object)
                    .await
                    .with_context(|| format!("failed to create {name}"))?;
                Ok((name, started))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// When each Pod of a namespace was first seen, Running, being deleted, and gone.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodTimes {
    /// First watch event of the Pod.
    pub created: Option<f64>,
    /// First event with phase `Running`.
    pub running: Option<f64>,
    /// First event with a deletion timestamp.
    pub deleting: Option<f64>,
    /// The delete event.
    pub gone: Option<f64>,
}

/// A watch on a namespace's Pods that timestamps each step of their lives.
pub struct PodTimeline {
    times: Arc<Mutex<HashMap<String, PodTimes>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodTimeline {
    /// Starts watching and returns once the watch's initial list is done.
    pub async fn start(client: &Client, namespace: &str) -> Result<Self> {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let times = Arc::new(Mutex::new(HashMap::new()));
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(watch(api, times.clone(), synced_tx));
        tokio::time::timeout(Duration::from_secs(30), synced_rx)
            .await
            .context("the Pod watch did not sync within 30 s")?
            .context("the Pod watch stopped before its first list")??;
        Ok(Self { times, task })
    }

    /// A copy of every Pod's times.
    pub fn snapshot(&self) -> HashMap<String, PodTimes> {
        self.times.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits until `count` Pods satisfy `done`, or fails after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        count: usize,
        timeout: Duration,
        done: impl Fn(&PodTimes) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reached = self.snapshot().values().filter(|t| done(t)).count();
            if reached >= count {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("only {reached} of {count} Pods {what} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PodTimeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(
    api: Api<Pod>,
    times: Arc<Mutex<HashMap<String, PodTimes>>>,
    synced: tokio::sync::oneshot::Sender<Result<()>>,
) {
    let mut synced = Some(synced);
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let at = now();
        let Ok(event) = event else { continue };
        let Ok(mut times) = times.lock() else { return };
        match event {
            watcher::Event::InitDone => {
                if let Some(tx) = synced.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let entry = times.entry(pod.name_any()).or_default();
                entry.created.get_or_insert(at);
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Running") {
                    entry.running.get_or_insert(at);
                }
                if pod.metadata.deletion_timestamp.is_some() {
                    entry.deleting.get_or_insert(at);
                }
            }
            watcher::Event::Delete(pod) => {
                let entry = times.entry(pod.name_any()).or_default();
                entry.deleting.get_or_insert(at);
                entry.gone.get_or_insert(at);
            }
            watcher::Event::Init => {}
        }
    }
}

/// Counts the writes (added, modified, deleted objects) the API server reports for `api`
/// during `secs` seconds, starting from a fresh list.
pub async fn count_writes<K>(api: Api<K>, secs: u32) -> Result<usize>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + 'static,
{
    let list = api.list_metadata(&ListParams::default()).await.context("failed to list")?;
    let version = list.metadata.resource_version.unwrap_or_default();
    let params = WatchParams::default().timeout(secs);
    let events = api.watch(&params, &version).await.context("failed to watch")?;
    let counted = events
        .try_fold(0usize, |n, event| async move {
            Ok(match event {
                WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_) => n + 1,
                WatchEvent::Bookmark(_) | WatchEvent::Error(_) => n,
            })
        })
        .await
        .context("the idle watch failed")?;
    Ok(counted)
}

/// Runs `f` for each of `0..n`, one after another, returning each result.
pub async fn one_by_one<T, F, Fut>(n: usize, mut f: F) -> Result<Vec<T>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(f(i).await?);
    }
    Ok(out)
}
