//! Building small test pods and waiting for them.

use std::{fmt::Write as _, time::Duration};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    runtime::wait::await_condition,
};

/// A single-container pod running `sh -c SCRIPT` in `image`, never pulled (images are
/// imported into the node), under `runtime_class` when one is given.
pub fn shell_pod(name: &str, image: &str, runtime_class: Option<&str>, script: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([("app".to_owned(), name.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            runtime_class_name: runtime_class.map(str::to_owned),
            termination_grace_period_seconds: Some(1),
            containers: vec![shell_container(name, image, script)],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// A container running `sh -c SCRIPT` with `imagePullPolicy: Never`.
pub fn shell_container(name: &str, image: &str, script: &str) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("Never".to_owned()),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
        ..Container::default()
    }
}

/// Creates `pod` in `namespace` and waits until its phase is `Running`.
pub async fn create_running(client: &Client, namespace: &str, pod: &Pod) -> Result<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let created = api.create(&PostParams::default(), pod).await.context("failed to create pod")?;
    let name = created.metadata.name.clone().unwrap_or_default();
    wait_for_phase(client, namespace, &name, "Running", Duration::from_secs(90)).await
}

/// Waits until pod `name` reaches `phase` (`Running`, `Succeeded`, ...). Fails early when
/// it reaches a different terminal phase, and names the pod's last state on time-out.
pub async fn wait_for_phase(
    client: &Client,
    namespace: &str,
    name: &str,
    phase: &str,
    timeout: Duration,
) -> Result<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let wanted = phase.to_owned();
    let cond = move |p: Option<&Pod>| {
        let current = p.and_then(|p| p.status.as_ref()).and_then(|s| s.phase.as_deref());
        // A terminal phase ends the wait too: the pod will never reach another.
        current == Some(wanted.as_str()) || matches!(current, Some("Succeeded" | "Failed"))
    };
    let done = tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await;
    let pod = match done {
        Ok(Ok(Some(pod))) => pod,
        Ok(Ok(None)) => bail!("pod {namespace}/{name} was deleted while waiting for {phase}"),
        Ok(Err(e)) => return Err(e).context("failed to watch pod"),
        Err(_) => {
            let last = api.get(name).await.ok().map_or_else(String::new, |p| describe(&p));
            bail!("pod {namespace}/{name} not {phase} within {timeout:?}: {last}")
        }
    };
    let got = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if got != phase {
        bail!("pod {namespace}/{name} ended {got} instead of {phase}: {:?}", pod.status);
    }
    Ok(pod)
}

/// A one-line summary of a pod's state: its phase and why each container waits.
pub fn describe(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else { return "no status yet".to_owned() };
    let mut out = format!("phase {}", status.phase.as_deref().unwrap_or("unknown"));
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("waiting");
            let _ = write!(out, "; {} {reason}", c.name);
            if let Some(m) = &w.message {
                let _ = write!(out, ": {m}");
            }
        }
    }
    out
}

/// The pod's IP once it has one.
pub fn pod_ip(pod: &Pod) -> Result<String> {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone()).context("pod has no IP")
}
