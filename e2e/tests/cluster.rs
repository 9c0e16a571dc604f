//! End-to-end tests of the local cluster itself: the node, DNS, Services, both runtime
//! handlers and `NetworkPolicy` enforcement. Each test owns a namespace and proves one
//! behaviour the operator's own tests rely on. Run with `make test-cluster`.

use std::{
    io::Write,
    net::TcpListener as StdTcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{
    core::v1::{Node, Service},
    networking::v1::NetworkPolicy,
};
use kennel_e2e::{
    ClusterEnv, TestNamespace, client,
    kubectl::{exec, kubectl_ok, sh},
    pods::{create_running, shell_container, shell_pod},
};
use kube::{Api, Client, api::PostParams};

// Busybox 1.35's `wget -T` crashes (SIGSEGV); tests bound wget with `timeout` instead.
const SLEEP: &str = "trap 'exit 0' TERM; while :; do sleep 1; done";

async fn setup(prefix: &str) -> Result<(ClusterEnv, Client, TestNamespace)> {
    let env = ClusterEnv::load()?;
    let client = client(&env).await?;
    let ns = TestNamespace::create(&client, &env, prefix).await?;
    Ok((env, client, ns))
}

fn host_kernel_release() -> Result<String> {
    let out = std::process::Command::new("uname").arg("-r").output().context("uname -r")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test]
async fn the_node_reports_ready() -> Result<()> {
    let env = ClusterEnv::load()?;
    let client = client(&env).await?;
    let node = Api::<Node>::all(client).get(&env.node_name).await?;
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .context("node has no Ready condition")?;
    assert_eq!(ready.status, "True", "node not Ready: {:?}", ready.message);
    Ok(())
}

#[tokio::test]
async fn cluster_dns_resolves_kubernetes_default_from_a_pod() -> Result<()> {
    let (env, client, ns) = setup("dns").await?;
    let pod = shell_pod("dns-client", &env.busybox_image, None, SLEEP);
    create_running(&client, &ns.name, &pod).await?;

    // The pod's own resolver (search path from the kubelet's resolv.conf) turns the short
    // name into the Service's address; busybox wget names the address it connects to.
    let api_ip = &env.api_server_service_ip;
    let connect = sh(
        &env,
        &ns.name,
        "dns-client",
        "timeout 5 wget -O /dev/null http://kubernetes.default:443/ 2>&1; true",
    )?;
    assert!(
        connect.contains(&format!("({api_ip}:443)")),
        "kubernetes.default did not resolve to {api_ip}: {connect}"
    );
    // CoreDNS itself answers for the fully qualified name.
    let answer = sh(
        &env,
        &ns.name,
        "dns-client",
        &format!("nslookup kubernetes.default.svc.cluster.local {}", env.dns_service_ip),
    )?;
    assert!(answer.contains(api_ip.as_str()), "CoreDNS answered: {answer}");
    Ok(())
}

#[tokio::test]
async fn a_cluster_ip_service_reaches_its_pod() -> Result<()> {
    let (env, client, ns) = setup("svc").await?;
    let server = shell_pod(
        "web",
        &env.busybox_image,
        None,
        "mkdir -p /tmp/www && echo served-by-web > /tmp/www/index.html && \
         exec httpd -f -p 8080 -h /tmp/www",
    );
    create_running(&client, &ns.name, &server).await?;
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] }
    }))?;
    let svc = Api::<Service>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &svc)
        .await?;
    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).context("service has no cluster IP")?;

    let client_pod = shell_pod("client", &env.busybox_image, None, SLEEP);
    create_running(&client, &ns.name, &client_pod).await?;
    // The endpoints and kube-proxy's rules follow the Service within a moment.
    let body = retry(20, || {
        sh(&env, &ns.name, "client", &format!("timeout 5 wget -q -O - http://{cluster_ip}/"))
    })
    .await?;
    assert_eq!(body.trim(), "served-by-web");
    // The Service's DNS name leads to the same pod.
    let by_name = sh(&env, &ns.name, "client", "timeout 5 wget -q -O - http://web/")?;
    assert_eq!(by_name.trim(), "served-by-web");
    Ok(())
}

#[tokio::test]
async fn a_gvisor_pod_runs_on_gvisors_kernel_not_the_hosts() -> Result<()> {
    let (env, client, ns) = setup("gvisor").await?;
    let pod = shell_pod("sandboxed", &env.busybox_image, Some("gvisor"), SLEEP);
    create_running(&client, &ns.name, &pod).await?;

    let host = host_kernel_release()?;
    let inside = sh(&env, &ns.name, "sandboxed", "uname -r")?;
    assert_ne!(inside.trim(), host, "a gVisor pod must not see the host kernel {host}");
    let dmesg = sh(&env, &ns.name, "sandboxed", "dmesg")?;
    assert!(dmesg.contains("gVisor"), "dmesg inside gVisor should name it: {dmesg}");
    Ok(())
}

#[tokio::test]
async fn a_runc_pod_shares_the_hosts_kernel() -> Result<()> {
    let (env, client, ns) = setup("runc").await?;
    let pod = shell_pod("plain", &env.busybox_image, Some("runc"), SLEEP);
    create_running(&client, &ns.name, &pod).await?;

    let inside = sh(&env, &ns.name, "plain", "uname -r")?;
    assert_eq!(inside.trim(), host_kernel_release()?);
    Ok(())
}

#[tokio::test]
async fn a_two_container_gvisor_pod_shares_its_volume_and_supports_logs_and_exec() -> Result<()> {
    let (env, client, ns) = setup("gvisor-pair").await?;
    let writer = format!("echo written-by-writer > /shared/note; echo writer-started; {SLEEP}");
    let reader =
        format!("until [ -f /shared/note ]; do sleep 0.2; done; cat /shared/note; {SLEEP}");
    let mut pod = shell_pod("pair", &env.busybox_image, Some("gvisor"), &writer);
    let spec = pod.spec.as_mut().context("pod spec")?;
    spec.containers[0].name = "writer".into();
    spec.containers.push(shell_container("reader", &env.busybox_image, &reader));
    let volume: k8s_openapi::api::core::v1::Volume =
        serde_json::from_value(serde_json::json!({ "name": "shared", "emptyDir": {} }))?;
    spec.volumes = Some(vec![volume]);
    for c in &mut spec.containers {
        c.volume_mounts = Some(vec![serde_json::from_value(
            serde_json::json!({ "name": "shared", "mountPath": "/shared" }),
        )?]);
    }
    create_running(&client, &ns.name, &pod).await?;

    let reader_log = retry(20, || {
        let log = kubectl_ok(&env, &["logs", "-n", &ns.name, "pair", "-c", "reader"])?;
        if log.contains("written-by-writer") { Ok(log) } else { bail!("reader log: {log}") }
    })
    .await?;
    assert!(reader_log.contains("written-by-writer"));
    let writer_log = kubectl_ok(&env, &["logs", "-n", &ns.name, "pair", "-c", "writer"])?;
    assert!(writer_log.contains("writer-started"), "writer log: {writer_log}");

    let out =
        exec(&env, &ns.name, "pair", Some("reader"), &["sh", "-c", "echo back > /shared/reply"])?;
    assert!(out.success(), "exec into reader failed: {}", out.stderr);
    let reply = exec(&env, &ns.name, "pair", Some("writer"), &["cat", "/shared/reply"])?;
    assert_eq!(reply.stdout.trim(), "back", "exec into writer: {}", reply.stderr);
    Ok(())
}

#[tokio::test]
async fn a_default_deny_egress_policy_blocks_a_gvisor_pods_connection_that_worked_before()
-> Result<()> {
    Box::pin(default_deny_egress_blocks_a_working_connection("gvisor")).await
}

#[tokio::test]
async fn a_default_deny_egress_policy_blocks_a_runc_pods_connection_that_worked_before()
-> Result<()> {
    Box::pin(default_deny_egress_blocks_a_working_connection("runc")).await
}

/// A pod under `runtime` reaches a server on the node; once a default-deny egress policy
/// selects it, the same connection fails.
async fn default_deny_egress_blocks_a_working_connection(runtime: &str) -> Result<()> {
    let (env, client, ns) = setup(&format!("netpol-{runtime}")).await?;
    // A server on the node's bridge address, which pods reach without any policy.
    let server = NodeServer::start(&env.node_ip)?;
    let port = server.port;
    let pod = shell_pod("agent", &env.busybox_image, Some(runtime), SLEEP);
    create_running(&client, &ns.name, &pod).await?;
    let probe = format!("nc -w 2 {} {port} </dev/null", env.node_ip);

    let before = sh(&env, &ns.name, "agent", &probe)?;
    assert!(before.contains("reached-node-server"), "no policy yet, yet: {before}");

    let policy: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "default-deny-egress" },
        "spec": { "podSelector": {}, "policyTypes": ["Egress"] }
    }))?;
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &policy)
        .await?;
    // The enforcer applies policies asynchronously; give it a bounded while.
    let blocked = retry(30, || {
        let out = exec(&env, &ns.name, "agent", None, &["sh", "-c", &probe])?;
        if out.stdout.contains("reached-node-server") {
            bail!("still connected");
        }
        Ok(())
    })
    .await;
    drop(server);
    blocked.context("the default-deny egress policy never blocked the connection")?;
    Ok(())
}

/// A TCP server on the node network that greets each connection with one line. It runs
/// on its own thread because the tests block on kubectl, and stops when dropped.
struct NodeServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl NodeServer {
    fn start(ip: &str) -> Result<Self> {
        let listener = StdTcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}"))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.write_all(b"reached-node-server\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Self { port, stop })
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `f` up to `attempts` times, a second apart, until it succeeds.
async fn retry<T>(attempts: u32, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut last = None;
    for _ in 0..attempts {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
}
