//! `AgentSandbox` objects from a test's point of view: apply one from inline YAML, wait for a
//! phase or any other state, and read its conditions.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kennel::api::{AgentSandbox, Phase};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
    runtime::wait::await_condition,
};

/// The sandboxes of one namespace.
pub fn sandboxes(client: &Client, namespace: &str) -> Api<AgentSandbox> {
    Api::namespaced(client.clone(), namespace)
}

/// Creates an `AgentSandbox` from YAML (`metadata.name` and `spec`; the namespace is the
/// test's). Fails with the API server's message when the schema refuses it.
pub async fn create(client: &Client, namespace: &str, yaml: &str) -> Result<AgentSandbox> {
    let mut sandbox: AgentSandbox =
        serde_yaml::from_str(yaml).context("the test's sandbox YAML does not parse")?;
    sandbox.metadata.namespace = Some(namespace.to_owned());
    sandboxes(client, namespace)
        .create(&PostParams::default(), &sandbox)
        .await
        .with_context(|| format!("failed to create AgentSandbox in {namespace}"))
}

/// Deletes a sandbox without waiting for it to go.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<()> {
    sandboxes(client, namespace).delete(name, &DeleteParams::default()).await?;
    Ok(())
}

/// The sandbox's phase, if its status has one.
pub fn phase(sandbox: &AgentSandbox) -> Option<Phase> {
    sandbox.status.as_ref().and_then(|s| s.phase)
}

/// The condition of `type_`, if present.
pub fn condition<'a>(sandbox: &'a AgentSandbox, type_: &str) -> Option<&'a Condition> {
    sandbox.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until the sandbox satisfies `done`; `what` names the wait in the error, which
/// also shows the sandbox's last status.
pub async fn wait_for(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&AgentSandbox) -> bool,
) -> Result<AgentSandbox> {
    let api = sandboxes(client, namespace);
    let cond = move |s: Option<&AgentSandbox>| s.is_some_and(&done);
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(sandbox))) => Ok(sandbox),
        Ok(Ok(None)) => bail!("sandbox {namespace}/{name} vanished while waiting for {what}"),
        Ok(Err(e)) => Err(e).context("failed to watch the sandbox"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten().and_then(|s| s.status);
            bail!("sandbox {namespace}/{name}: no {what} within {timeout:?}; status: {last:#?}")
        }
    }
}

/// Waits until the sandbox shows `wanted`. Fails at once when it settles in another
/// phase it cannot leave (Failed, Succeeded, Expired, Rejected).
pub async fn wait_for_phase(
    client: &Client,
    namespace: &str,
    name: &str,
    wanted: Phase,
    timeout: Duration,
) -> Result<AgentSandbox> {
    let what = format!("phase {}", wanted.as_str());
    let sandbox = wait_for(client, namespace, name, &what, timeout, |s| {
        phase(s).is_some_and(|p| p == wanted || p.is_finished() || p == Phase::Rejected)
    })
    .await?;
    if phase(&sandbox) != Some(wanted) {
        bail!(
            "sandbox {namespace}/{name} ended {:?} instead of {}: {:#?}",
            phase(&sandbox),
            wanted.as_str(),
            sandbox.status
        );
    }
    Ok(sandbox)
}

/// Waits until the sandbox object is gone.
pub async fn wait_until_gone(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let api = sandboxes(client, namespace);
    let gone = await_condition(api.clone(), name, |s: Option<&AgentSandbox>| s.is_none());
    if let Ok(result) = tokio::time::timeout(timeout, gone).await {
        return result.map(|_| ()).context("failed to watch the sandbox");
    }
    let last = api.get_opt(name).await.ok().flatten().and_then(|s| s.status);
    bail!("sandbox {namespace}/{name} still exists after {timeout:?}; status: {last:#?}")
}

/// Milliseconds since the epoch of a Kubernetes timestamp.
pub fn millis(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    time.0.as_millisecond()
}

/// Milliseconds since the epoch, now, on this machine's clock (the cluster's too).
pub fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `status.expiresAt` in milliseconds since the epoch.
pub fn expires_at_millis(sandbox: &AgentSandbox) -> Result<i64> {
    sandbox
        .status
        .as_ref()
        .and_then(|s| s.expires_at.as_ref())
        .map(millis)
        .context("the sandbox's status has no expiresAt")
}

/// Watches Pod `name` and returns when (milliseconds since the epoch, this machine's
/// clock) its deletion was first seen: a `deletionTimestamp` appeared, or it vanished.
/// Start it before the deletion is due; the answer is an upper bound on the request time.
pub fn pod_deletion_seen(
    client: &Client,
    namespace: &str,
    name: &str,
) -> tokio::task::JoinHandle<Result<i64>> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::watcher::{self, Event};

    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(api, config));
        let mut seen = false;
        while let Some(event) = events.next().await {
            match event.context("failed to watch the pod")? {
                Event::Apply(pod) | Event::InitApply(pod) => {
                    seen = true;
                    if pod.metadata.deletion_timestamp.is_some() {
                        return Ok(now_millis());
                    }
                }
                // The initial list ended without the pod: it is already gone.
                Event::InitDone if !seen => return Ok(now_millis()),
                Event::Delete(_) => return Ok(now_millis()),
                Event::Init | Event::InitDone => {}
            }
        }
        bail!("the watch of pod {name} ended")
    })
}
