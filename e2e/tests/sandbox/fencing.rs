//! What the agent can and cannot do from inside a running gVisor sandbox.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::{core::v1::ConfigMap, networking::v1::NetworkPolicy};
use kennel::api::Phase;
use kennel_e2e::{
    hosts::{ALLOWED, DENIED, TestHosts},
    kubectl::{Output, exec, sh},
    pods::{create_running, shell_pod},
    sandbox,
};
use kube::{Api, api::PostParams};

use crate::{Fixture, START_TIMEOUT};

const AGENT: &str = "agent";

/// Runs `script` with `sh -c` in the sandbox's agent container, whatever its status.
fn run(f: &Fixture, pod: &str, script: &str) -> Result<Output> {
    exec(&f.env, f.ns(), pod, Some(AGENT), &["sh", "-c", script])
}

fn host_file(path: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read the host's {path}"))
}

#[tokio::test]
async fn a_gvisor_sandbox_runs_with_only_its_workspace_and_tmp_writable_and_no_token() -> Result<()>
{
    let f = Fixture::new("asb-fs").await?;
    let inputs: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "inputs" }, "data": { "readme": "read-only input" }
    }))?;
    Api::<ConfigMap>::namespaced(f.client.clone(), f.ns())
        .create(&PostParams::default(), &inputs)
        .await?;
    let yaml = f.sleeper(
        "fenced",
        "  mounts:\n  - {name: inputs, mountPath: /inputs, configMap: {name: inputs}}\n",
    );
    sandbox::create(&f.client, f.ns(), &yaml).await?;
    let running =
        sandbox::wait_for_phase(&f.client, f.ns(), "fenced", Phase::Running, START_TIMEOUT)
            .await
            .context(f.log_hint())?;
    let status = running.status.clone().unwrap_or_default();
    assert_eq!(status.runtime_class_name.as_deref(), Some("gvisor"));
    let pod = f.pods().get("fenced").await?;
    let spec = pod.spec.context("pod has no spec")?;
    assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));

    let workspace = run(&f, "fenced", "echo agent-work > /workspace/out && cat /workspace/out")?;
    assert_eq!(workspace.stdout.trim(), "agent-work", "workspace not writable: {workspace:?}");
    let tmp = run(&f, "fenced", "echo scratch > /tmp/out && cat /tmp/out")?;
    assert_eq!(tmp.stdout.trim(), "scratch", "/tmp not writable: {tmp:?}");

    let input = run(&f, "fenced", "cat /inputs/readme")?;
    assert_eq!(input.stdout.trim(), "read-only input", "input not readable: {input:?}");
    let write_input = run(&f, "fenced", "echo tampered > /inputs/readme")?;
    assert!(!write_input.success(), "writing the ConfigMap mount succeeded: {write_input:?}");
    let new_input = run(&f, "fenced", "echo x > /inputs/new")?;
    assert!(!new_input.success(), "creating a file in the ConfigMap mount succeeded");
    let root = run(&f, "fenced", "echo x > /root-probe")?;
    assert!(!root.success(), "the root filesystem is writable: {root:?}");

    let token = run(&f, "fenced", "ls -la /var/run/secrets/kubernetes.io/serviceaccount")?;
    assert!(!token.success(), "a service-account token directory exists: {}", token.stdout);
    let uid = run(&f, "fenced", "id -u")?;
    assert_ne!(uid.stdout.trim(), "0", "the agent runs as root");

    // gVisor answers uname and /proc/version with its own kernel, not the host's.
    let host_version = host_file("/proc/version")?;
    let inside = run(&f, "fenced", "cat /proc/version")?;
    assert!(inside.success(), "cannot read /proc/version: {inside:?}");
    assert_ne!(inside.stdout.trim(), host_version.trim(), "the sandbox sees the host kernel");
    let host_release = host_file("/proc/sys/kernel/osrelease")?;
    let release = sh(&f.env, f.ns(), "fenced", "uname -r")?;
    assert_ne!(release.trim(), host_release.trim(), "uname -r is the host's");
    let dmesg = run(&f, "fenced", "dmesg")?;
    println!(
        "dmesg inside the sandbox ({:?}): {}",
        dmesg.code,
        dmesg.stdout.lines().next().unwrap_or("")
    );
    assert!(dmesg.stdout.contains("gVisor"), "dmesg does not name gVisor: {dmesg:?}");
    Ok(())
}

// Multi-threaded: the test hosts' servers must accept while this thread blocks in exec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_reaches_its_allowlisted_host_and_dns_but_not_other_hosts_or_the_api_server()
-> Result<()> {
    let f = Fixture::new("asb-net").await?;
    let hosts = TestHosts::start().await?;
    let port = hosts.port;
    let egress = format!(
        "  network:\n    egress:\n    - cidr: {ALLOWED}/32\n      ports: [{{port: {port}}}]\n"
    );
    sandbox::create(&f.client, f.ns(), &f.sleeper("netbox", &egress)).await?;
    // A plain pod (no policy) shows the denied host does answer pods on this cluster.
    let control = shell_pod("control", &f.env.busybox_image, Some("runc"), "sleep 3600");
    create_running(&f.client, f.ns(), &control).await?;
    sandbox::wait_for_phase(&f.client, f.ns(), "netbox", Phase::Running, START_TIMEOUT)
        .await
        .context(f.log_hint())?;
    let policies = Api::<NetworkPolicy>::namespaced(f.client.clone(), f.ns());
    assert!(policies.get_opt("netbox").await?.is_some(), "the sandbox has no NetworkPolicy");

    let probe = |addr: &str| format!("timeout 5 nc -w 2 {addr} {port} </dev/null");
    let control_reach = sh(&f.env, f.ns(), "control", &probe(DENIED))?;
    assert!(control_reach.contains(&TestHosts::banner(DENIED)), "control: {control_reach}");

    let allowed = run(&f, "netbox", &probe(ALLOWED))?;
    assert!(
        allowed.stdout.contains(&TestHosts::banner(ALLOWED)),
        "the allowlisted host did not answer: {allowed:?}"
    );
    // The enforcer programs rules asynchronously: measure how long the denied host stays
    // reachable after Running (printed), and require it closed within a bounded while.
    let since_running = Instant::now();
    let mut first_blocked = None;
    let mut reached = 0;
    for _ in 0..15 {
        let denied = run(&f, "netbox", &probe(DENIED))?;
        if !denied.stdout.contains(&TestHosts::banner(DENIED)) {
            first_blocked = Some(since_running.elapsed());
            break;
        }
        reached += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "denied host: reached by {reached} probe(s) after Running, blocked from {first_blocked:?}"
    );
    assert!(first_blocked.is_some(), "the non-allowlisted host stayed reachable for 15 s");
    let denied = run(&f, "netbox", &probe(DENIED))?;
    assert!(!denied.success(), "the non-allowlisted host answered: {denied:?}");

    let dns = run(&f, "netbox", "nslookup kubernetes.default.svc.cluster.local")?;
    assert!(
        dns.stdout.contains(&f.env.api_server_service_ip),
        "cluster DNS did not resolve kubernetes.default: {dns:?}"
    );
    // The API server, by Service IP and by endpoint: the control pod connects (so the
    // probe can tell), the sandbox does not.
    let (ip, api_port) =
        f.env.api_server_endpoint.rsplit_once(':').context("API_SERVER_ENDPOINT")?;
    let targets = [(f.env.api_server_service_ip.as_str(), "443"), (ip, api_port)];
    for (addr, p) in targets {
        let connect = format!("timeout 5 nc -w 2 {addr} {p} </dev/null");
        let control = exec(&f.env, f.ns(), "control", None, &["sh", "-c", &connect])?;
        assert!(control.success(), "control pod cannot reach {addr}:{p}: {control:?}");
        let inside = run(&f, "netbox", &connect)?;
        assert!(!inside.success(), "the sandbox reached the API server at {addr}:{p}");
    }
    drop(hosts);
    Ok(())
}
