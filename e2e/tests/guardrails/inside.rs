//! From inside a running gVisor sandbox: another tenant's sandbox and plain Pods are out
//! of reach, and `/tmp` cannot grow past its limit. Each refusal has a control that
//! shows the same connection working where no fence stands, so a broken network cannot
//! pass for a fence.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kennel::api::Phase;
use kennel_e2e::{
    hosts::{METADATA, MetadataHost, TestHosts},
    kubectl::exec,
    pods::{create_running, pod_ip, shell_pod},
    sandbox,
};
use kube::Api;

use crate::{Tenant, apply_text};

/// How long a gVisor sandbox may take to start on a busy two-core node.
const START: Duration = Duration::from_mins(2);
/// A TCP server answering `hello` on port 8080, with busybox.
const LISTEN: &str = "while true; do echo hello | nc -l -p 8080; done";

/// Connects from a Pod's first container to `ip:8080`; true when it read `hello`.
fn reaches(tenant: &Tenant, pod: &str, ip: &str) -> Result<bool> {
    let script = format!("echo | nc -w 3 {ip} 8080");
    let out = exec(&tenant.env, tenant.ns(), pod, None, &["sh", "-c", &script])?;
    Ok(out.stdout.contains("hello"))
}

async fn running_sandbox(tenant: &Tenant, name: &str, spec: &str) -> Result<Pod> {
    apply_text(
        &tenant.env,
        Some(tenant.ns()),
        &format!(
            "apiVersion: kennel.dev/v1alpha1\nkind: AgentSandbox\nmetadata: {{name: {name}}}\nspec:\n  \
         image: {}\n{spec}",
            tenant.env.busybox_image
        ),
    )?;
    sandbox::wait_for_phase(&tenant.client, tenant.ns(), name, Phase::Running, START)
        .await
        .context(tenant.log_hint())?;
    let pods: Api<Pod> = Api::namespaced(tenant.client.clone(), tenant.ns());
    Ok(pods.get(name).await?)
}

#[tokio::test]
async fn a_sandbox_cannot_reach_another_tenants_sandbox_or_pods_while_plain_pods_can() -> Result<()>
{
    let a = Tenant::new("guard-net-a", "").await?;
    let b = Tenant::new("guard-net-b", "").await?;
    let listener =
        running_sandbox(&b, "listener", &format!("  command: [sh, -c, '{LISTEN}']\n")).await?;
    let open =
        create_running(&b.client, b.ns(), &shell_pod("open", &b.env.busybox_image, None, LISTEN))
            .await?;
    let control = create_running(
        &a.client,
        a.ns(),
        &shell_pod("control", &a.env.busybox_image, None, "sleep 3600"),
    )
    .await?;
    let agent = running_sandbox(
        &a,
        "agent",
        "  command: [sleep, '3600']\n  network:\n    egress:\n    - {cidr: 0.0.0.0/0}\n",
    )
    .await?;
    let (listener_ip, open_ip) = (pod_ip(&listener)?, pod_ip(&open)?);
    let control_name = control.metadata.name.clone().unwrap_or_default();
    let agent_name = agent.metadata.name.clone().unwrap_or_default();
    ensure!(reaches(&a, &control_name, &open_ip)?, "control: a plain Pod cannot reach a plain Pod");
    ensure!(
        !reaches(&a, &control_name, &listener_ip)?,
        "a plain Pod reached a sandbox: its ingress is open"
    );
    ensure!(
        !reaches(&a, &agent_name, &open_ip)?,
        "the sandbox reached another tenant's Pod through an allowlist of 0.0.0.0/0"
    );
    ensure!(
        !reaches(&a, &agent_name, &listener_ip)?,
        "the sandbox reached another tenant's sandbox"
    );
    a.assert_no_panic()?;
    b.assert_no_panic()
}

#[tokio::test]
async fn a_sandbox_that_fills_tmp_past_its_limit_is_stopped() -> Result<()> {
    let tenant = Tenant::new("guard-tmp", "").await?;
    // The operator's default /tmp is 64Mi; the agent writes 160 MiB into it.
    let agent = running_sandbox(&tenant, "filler", "  command: [sleep, '3600']\n").await?;
    let name = agent.metadata.name.clone().unwrap_or_default();
    let write = "dd if=/dev/zero of=/tmp/fill bs=1M count=160 2>&1; sync; echo wrote";
    let out = exec(&tenant.env, tenant.ns(), &name, None, &["sh", "-c", write])?;
    let stopped = sandbox::wait_for(
        &tenant.client,
        tenant.ns(),
        "filler",
        "Failed after filling /tmp",
        Duration::from_mins(3),
        |s| sandbox::phase(s) == Some(Phase::Failed),
    )
    .await;
    let full = out.stdout.contains("No space left") || out.stderr.contains("No space left");
    ensure!(
        full || stopped.is_ok(),
        "160 MiB went into a 64Mi /tmp and the sandbox kept running: {}{}; {}",
        out.stdout,
        out.stderr,
        tenant.log_hint()
    );
    let how = if stopped.is_ok() { "evicted by the kubelet" } else { "refused (ENOSPC)" };
    eprintln!("/tmp past its limit: {how}; dd said: {}", out.stdout.trim());
    if let Ok(sandbox) = stopped {
        let ready = sandbox::condition(&sandbox, "Ready").context("no Ready condition")?;
        ensure!(ready.reason == "Evicted", "the sandbox failed for another reason: {ready:?}");
    }
    tenant.assert_no_panic()
}

// Two workers: `exec` blocks its thread while the metadata server must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_cannot_reach_cloud_metadata_that_a_plain_pod_reaches() -> Result<()> {
    // A server on 169.254.169.254 (local for pod traffic only, see test-hosts.sh), so the
    // refusal is the fence's and not an empty address.
    let metadata = MetadataHost::start()?;
    let tenant = Tenant::new("guard-meta", "").await?;
    let script = format!("nc -w 3 {METADATA} {} </dev/null", metadata.port);
    let control = create_running(
        &tenant.client,
        tenant.ns(),
        &shell_pod("control", &tenant.env.busybox_image, None, "sleep 3600"),
    )
    .await?;
    let control_name = control.metadata.name.clone().unwrap_or_default();
    let banner = TestHosts::banner(METADATA);
    let plain = exec(&tenant.env, tenant.ns(), &control_name, None, &["sh", "-c", &script])?;
    ensure!(
        plain.stdout.contains(&banner),
        "control: a plain Pod cannot reach {METADATA}: {}{}",
        plain.stdout,
        plain.stderr
    );
    let reached_by_control = metadata.accepted();
    // The widest allowlist: the metadata range is carved out of it.
    let agent = running_sandbox(
        &tenant,
        "agent",
        "  command: [sleep, '3600']\n  network:\n    egress:\n    - {cidr: 0.0.0.0/0}\n",
    )
    .await?;
    let agent_name = agent.metadata.name.clone().unwrap_or_default();
    let inside = exec(&tenant.env, tenant.ns(), &agent_name, None, &["sh", "-c", &script])?;
    ensure!(
        !inside.stdout.contains(&banner) && metadata.accepted() == reached_by_control,
        "the sandbox reached {METADATA} through an allowlist of 0.0.0.0/0: {}",
        inside.stdout
    );
    tenant.assert_no_panic()
}
