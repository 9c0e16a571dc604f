//! Policy before Pod: sandboxes whose very first action is a forbidden connection never
//! get it through, although the `NetworkPolicy` enforcer (kube-router) programs a Pod's rules
//! only once it has seen the Pod with its address. The fence gate (an init container) holds
//! the agent back until the Pod's fence blocks a probe; these tests count what gets through
//! and what the gate costs at start.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::future::try_join_all;
use k8s_openapi::api::core::v1::Pod;
use kennel::api::Phase;
use kennel_e2e::{
    hosts::{ALLOWED, DENIED, TestHosts},
    kubectl::{kubectl, kubectl_ok},
    operator::{OperatorSettings, fence_gate_image},
    pods::{shell_pod, wait_for_phase},
    sandbox,
};
use kube::{Api, api::PostParams};

use crate::Tenant;

/// Sandbox starts in the proof.
const STARTS: usize = 100;
/// Sandboxes started at once: a batch of gVisor Pods a two-core node starts in seconds.
const BATCH: usize = 20;
/// How long one batch may take to start and finish.
const BATCH_TIMEOUT: Duration = Duration::from_mins(4);

/// The agent's command: first thing, connect to the denied test host, print what it
/// answered (its banner, the marker of a connection that got through), then exit 0.
fn first_connection(port: u16) -> String {
    format!("nc -w 2 {DENIED} {port} </dev/null; echo first-connection-done")
}

/// Set to run the proof without the gate, to measure the race the gate closes.
fn gate_off() -> bool {
    std::env::var("KENNEL_E2E_WITHOUT_FENCE_GATE").is_ok_and(|v| v == "1")
}

#[tokio::test]
async fn a_hundred_sandboxes_whose_first_action_is_a_forbidden_connection_never_connect()
-> Result<()> {
    let gated = !gate_off();
    if gated && fence_gate_image().is_none() {
        bail!(
            "KENNEL_OPERATOR_IMAGE is not set: the operator would start sandboxes without the \
             fence gate (run e2e/images/operator.sh, or set KENNEL_E2E_WITHOUT_FENCE_GATE=1 \
             to measure the race)"
        );
    }
    let hosts = TestHosts::start().await?;
    let settings = OperatorSettings { without_fence_gate: !gated, ..OperatorSettings::default() };
    let tenant = Tenant::new_with("guard-first", "", &settings).await?;
    let script = first_connection(hosts.port);
    let marker = TestHosts::banner(DENIED);
    control_connects(&tenant, &script, &marker).await?;
    let before = hosts.accepted(DENIED);

    let mut leaks = Vec::new();
    let mut gate_waits = Vec::new();
    for batch in 0..STARTS / BATCH {
        let names: Vec<String> = (0..BATCH).map(|i| format!("first-{batch}-{i}")).collect();
        let starts = names.iter().map(|name| start(&tenant, name, &script));
        try_join_all(starts).await?;
        for name in &names {
            let agent = logs(&tenant, name, "agent")?;
            ensure!(
                agent.contains("first-connection-done"),
                "{name}: the agent did not run its command: {agent}"
            );
            if agent.contains(&marker) {
                leaks.push(name.clone());
            }
            if gated {
                gate_waits.push(gate_report(&logs(&tenant, name, "fence-gate")?)?);
            }
        }
        for name in &names {
            sandbox::delete(&tenant.client, tenant.ns(), name).await?;
        }
    }
    let seen = hosts.accepted(DENIED) - before;
    let open_at_start = gate_waits.iter().filter(|(attempts, _)| *attempts > 1).count();
    let mut waits: Vec<u64> = gate_waits.iter().map(|(_, ms)| *ms).collect();
    waits.sort_unstable();
    let (p50, max) = (waits.get(waits.len() / 2), waits.last());
    eprintln!(
        "policy before pod ({}): {} of {STARTS} first connections got through \
         (the denied host accepted {seen}); the gate found the probe still open at start in \
         {open_at_start} of {} Pods and waited p50 {} ms, max {} ms for the fence",
        if gated { "fence gate on" } else { "fence gate off" },
        leaks.len(),
        waits.len(),
        p50.copied().unwrap_or(0),
        max.copied().unwrap_or(0),
    );
    tenant.assert_no_panic()?;
    ensure!(
        leaks.is_empty() && seen == 0,
        "first connections got through the fence in {leaks:?} ({seen} seen by the host)"
    );
    Ok(())
}

/// A gVisor Pod without any policy, running the same command, prints the marker: the test
/// can see a connection that gets through.
async fn control_connects(tenant: &Tenant, script: &str, marker: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(tenant.client.clone(), tenant.ns());
    let mut pod = shell_pod("control", &tenant.env.busybox_image, Some("gvisor"), script);
    if let Some(spec) = pod.spec.as_mut() {
        spec.restart_policy = Some("Never".to_owned());
    }
    pods.create(&PostParams::default(), &pod).await.context("failed to create the control")?;
    wait_for_phase(&tenant.client, tenant.ns(), "control", "Succeeded", BATCH_TIMEOUT).await?;
    let out = logs(tenant, "control", "control")?;
    ensure!(out.contains(marker), "control: a Pod without policy did not connect: {out}");
    Ok(())
}

/// Creates a sandbox running `script` and waits until it has finished.
async fn start(tenant: &Tenant, name: &str, script: &str) -> Result<()> {
    let yaml = format!(
        "metadata: {{name: {name}}}\nspec:\n  image: {}\n  command: [sh, -c, '{script}']\n",
        tenant.env.busybox_image
    );
    sandbox::create(&tenant.client, tenant.ns(), &yaml).await?;
    sandbox::wait_for_phase(&tenant.client, tenant.ns(), name, Phase::Succeeded, BATCH_TIMEOUT)
        .await
        .context(tenant.log_hint())?;
    Ok(())
}

/// A container's log.
fn logs(tenant: &Tenant, pod: &str, container: &str) -> Result<String> {
    kubectl_ok(&tenant.env, &["logs", "-n", tenant.ns(), pod, "-c", container])
}

/// The gate's attempts and wait in milliseconds, from its one line: `... on attempt N,
/// after T ms`.
fn gate_report(line: &str) -> Result<(u32, u64)> {
    let number_after = |word: &str| -> Option<u64> {
        let rest = line.split(word).nth(1)?;
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let attempts = number_after("on attempt").context("no attempt count")?;
    let waited = number_after("after").context("no wait")?;
    Ok((u32::try_from(attempts)?, waited))
}

/// Creates `count` sandboxes running `sleep` one after another and returns, for each, the
/// milliseconds from the create call until the watch saw it `Running`.
async fn sequential_starts(tenant: &Tenant, count: usize) -> Result<Vec<u64>> {
    let mut millis = Vec::new();
    for i in 0..count {
        let name = format!("start-{i}");
        let yaml = format!(
            "metadata: {{name: {name}}}\nspec:\n  image: {}\n  command: [sleep, '600']\n",
            tenant.env.busybox_image
        );
        let began = Instant::now();
        sandbox::create(&tenant.client, tenant.ns(), &yaml).await?;
        sandbox::wait_for_phase(&tenant.client, tenant.ns(), &name, Phase::Running, BATCH_TIMEOUT)
            .await
            .context(tenant.log_hint())?;
        millis.push(u64::try_from(began.elapsed().as_millis())?);
        sandbox::delete(&tenant.client, tenant.ns(), &name).await?;
    }
    millis.sort_unstable();
    Ok(millis)
}

#[tokio::test]
async fn the_fence_gate_start_up_cost_is_measured_against_starts_without_it() -> Result<()> {
    const COUNT: usize = 10;
    if fence_gate_image().is_none() {
        bail!("KENNEL_OPERATOR_IMAGE is not set: no fence gate to measure");
    }
    let plain = OperatorSettings { without_fence_gate: true, ..OperatorSettings::default() };
    let ungated = Tenant::new_with("guard-cost0", "", &plain).await?;
    let without = sequential_starts(&ungated, COUNT).await?;
    let gated = Tenant::new_with("guard-cost1", "", &OperatorSettings::default()).await?;
    let with = sequential_starts(&gated, COUNT).await?;
    let p50 = |v: &[u64]| v[v.len() / 2];
    eprintln!(
        "sandbox create to Running, {COUNT} sequential starts: without the gate p50 {} ms, \
         max {} ms; with the gate p50 {} ms, max {} ms",
        p50(&without),
        without[COUNT - 1],
        p50(&with),
        with[COUNT - 1]
    );
    gated.assert_no_panic()
}

#[tokio::test]
async fn a_gate_whose_probe_stays_reachable_fails_the_sandbox_before_the_agent_runs() -> Result<()>
{
    if fence_gate_image().is_none() {
        bail!("KENNEL_OPERATOR_IMAGE is not set: no fence gate to fail");
    }
    // The gate probes the allowlisted test host, which the fence never blocks: it must give
    // up, and the agent must never start.
    let hosts = TestHosts::start().await?;
    let settings = OperatorSettings {
        fence_gate_probe: Some((format!("{ALLOWED}:{}", hosts.port), "4s".to_owned())),
        ..OperatorSettings::default()
    };
    let tenant = Tenant::new_with("guard-gatefail", "", &settings).await?;
    let yaml = format!(
        "metadata: {{name: open}}\nspec:\n  image: {}\n  command: [sh, -c, 'echo agent-ran; \
         sleep 600']\n  network:\n    egress:\n    - {{cidr: {ALLOWED}/32}}\n",
        tenant.env.busybox_image
    );
    sandbox::create(&tenant.client, tenant.ns(), &yaml).await?;
    let failed =
        sandbox::wait_for_phase(&tenant.client, tenant.ns(), "open", Phase::Failed, BATCH_TIMEOUT)
            .await
            .context(tenant.log_hint())?;
    let ready = sandbox::condition(&failed, "Ready").context("no Ready condition")?;
    ensure!(
        ready.reason == "FenceNotInForce" && ready.message.contains("was not in force"),
        "the gate's failure is not what the sandbox shows: {ready:?}"
    );
    let agent = kubectl(&tenant.env, &["logs", "-n", tenant.ns(), "open", "-c", "agent"])?;
    ensure!(!agent.stdout.contains("agent-ran"), "the agent ran past a failed gate");
    ensure!(hosts.accepted(ALLOWED) > 0, "the gate never reached its probe");
    tenant.assert_no_panic()
}
