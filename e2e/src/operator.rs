//! The operator under test, as a real process: the `kennel-operator` binary run against
//! the local cluster, scoped to one test's namespace, with a generated configuration that
//! names this cluster's ranges. Its log goes to `e2e/.cluster/logs/operator-<ns>.log`.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ClusterEnv;

/// What a test may change in the operator's configuration; the rest is derived from the
/// cluster (its pod, service and API server ranges, and the DNS pods' port).
#[derive(Clone, Debug, Default)]
pub struct OperatorSettings {
    /// `defaultTtl`, when the test needs one other than the operator's default.
    pub default_ttl: Option<String>,
    /// `runtimeClasses`, when the test maps isolation levels differently.
    pub runtime_classes: Option<BTreeMap<String, String>>,
    /// Leave `fenceGate` out even where [`fence_gate_image`] names an image, to measure
    /// what the gate changes.
    pub without_fence_gate: bool,
    /// `fenceGate.probe` and `fenceGate.timeout`, when the test points the gate elsewhere.
    pub fence_gate_probe: Option<(String, String)>,
}

/// The image of the fence gate every test operator configures: `$KENNEL_OPERATOR_IMAGE`,
/// the operator image `e2e/images/operator.sh` built and imported into the node. `None`
/// when unset: sandbox Pods then start without the gate.
pub fn fence_gate_image() -> Option<String> {
    std::env::var("KENNEL_OPERATOR_IMAGE").ok().filter(|image| !image.trim().is_empty())
}

/// A running `kennel-operator run --namespace <ns>`. Killed by [`OperatorProcess::stop`]
/// and on drop, so a failing test never leaves it behind.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Option<Child>,
    env: ClusterEnv,
    namespace: String,
    config: PathBuf,
    log: PathBuf,
    metrics_addr: SocketAddr,
}

impl OperatorProcess {
    /// Starts an operator for `namespace` with the default settings and waits until its
    /// watches are synced (`/readyz` answers 200).
    pub async fn start(env: &ClusterEnv, namespace: &str) -> Result<Self> {
        Self::start_with(env, namespace, &OperatorSettings::default()).await
    }

    /// Starts an operator for `namespace` with `settings` and waits until it is ready.
    pub async fn start_with(
        env: &ClusterEnv,
        namespace: &str,
        settings: &OperatorSettings,
    ) -> Result<Self> {
        let logs = logs_dir();
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("failed to create {}", logs.display()))?;
        let config = logs.join(format!("operator-{namespace}.config.yaml"));
        std::fs::write(&config, config_yaml(env, settings)?)
            .with_context(|| format!("failed to write {}", config.display()))?;
        let mut operator = Self {
            child: None,
            env: env.clone(),
            namespace: namespace.to_owned(),
            config,
            log: logs.join(format!("operator-{namespace}.log")),
            metrics_addr: free_local_addr()?,
        };
        operator.restart().await?;
        Ok(operator)
    }

    /// Starts the process again (after [`OperatorProcess::stop`]), appending to the same
    /// log, and waits until it is ready. A running process is stopped first.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("failed to open {}", self.log.display()))?;
        let binary = operator_binary();
        let child = Command::new(&binary)
            .args(["run", "--namespace", &self.namespace, "--config"])
            .arg(&self.config)
            .arg("--metrics-addr")
            .arg(self.metrics_addr.to_string())
            .env("KUBECONFIG", &self.env.kubeconfig)
            .env("KENNEL_LOG_LEVEL", "info,kennel=debug")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "failed to start {} (build it with `cargo build -p kennel-operator`, or \
                     set KENNEL_OPERATOR_BIN)",
                    binary.display()
                )
            })?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30)).await
    }

    /// Kills the process and reaps it. Does nothing when it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log file, for failure messages.
    pub fn log_path(&self) -> &PathBuf {
        &self.log
    }

    /// The last `lines` lines of the log, to attach to an assertion message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("the operator exited with {status} at start:\n{}", self.log_tail(20));
            }
            if http_status(self.metrics_addr, "/readyz").await == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the operator was not ready within {timeout:?}:\n{}", self.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `$KENNEL_OPERATOR_BIN`, or the debug build of this workspace.
fn operator_binary() -> PathBuf {
    std::env::var_os("KENNEL_OPERATOR_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/kennel-operator"),
        PathBuf::from,
    )
}

fn logs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster/logs")
}

/// The operator's configuration for this cluster. JSON is YAML, so no YAML writer needed.
fn config_yaml(env: &ClusterEnv, settings: &OperatorSettings) -> Result<String> {
    let api_ip = env
        .api_server_endpoint
        .rsplit_once(':')
        .map(|(ip, _)| ip.trim_matches(['[', ']']))
        .context("API_SERVER_ENDPOINT is not ip:port")?;
    let mut config = serde_json::json!({
        "cluster": {
            "podCidrs": [env.pod_cidr],
            "serviceCidrs": [env.service_cidr],
            "apiServerCidrs": [format!("{api_ip}/32")],
        },
        "dns": {
            "namespace": "kube-system",
            "podLabels": dns_labels(&env.dns_pod_label),
            "port": env.dns_pod_port,
        },
    });
    if let Some(ttl) = &settings.default_ttl {
        config["defaultTtl"] = ttl.clone().into();
    }
    if let Some(classes) = &settings.runtime_classes {
        config["runtimeClasses"] = serde_json::to_value(classes)?;
    }
    if let Some(image) = fence_gate_image().filter(|_| !settings.without_fence_gate) {
        config["fenceGate"] = serde_json::json!({ "image": image });
        if let Some((probe, timeout)) = &settings.fence_gate_probe {
            config["fenceGate"]["probe"] = probe.clone().into();
            config["fenceGate"]["timeout"] = timeout.clone().into();
        }
    }
    Ok(serde_json::to_string_pretty(&config)?)
}

fn dns_labels(label: &str) -> BTreeMap<String, String> {
    label
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// A loopback address with a port that was free a moment ago.
fn free_local_addr() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(listener.local_addr()?)
}

/// The status code of `GET path` on `addr`, or `None` when nothing answers.
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_clusters_ranges_and_the_api_servers_address() {
        let env = ClusterEnv::parse(
            "KUBECONFIG=/k\nKUBECTL=/k\nNODE_NAME=n\nNODE_IP=10.244.0.1\n\
             POD_CIDR=10.244.0.0/24\nSERVICE_CIDR=10.96.0.0/16\nAPI_SERVER_SERVICE_IP=10.96.0.1\n\
             API_SERVER_ENDPOINT=10.244.0.1:6443\nDNS_SERVICE_IP=10.96.0.10\n\
             DNS_POD_LABEL=k8s-app=kube-dns\nDNS_POD_PORT=5353\nBUSYBOX_IMAGE=b\n",
        )
        .expect("env parses");
        let settings = OperatorSettings {
            default_ttl: Some("5m".into()),
            without_fence_gate: true,
            ..OperatorSettings::default()
        };
        let config: serde_json::Value =
            serde_json::from_str(&config_yaml(&env, &settings).expect("config")).expect("json");
        assert_eq!(config["cluster"]["apiServerCidrs"][0], "10.244.0.1/32");
        assert_eq!(config["cluster"]["podCidrs"][0], "10.244.0.0/24");
        assert_eq!(config["dns"]["port"], 5353);
        assert_eq!(config["dns"]["podLabels"]["k8s-app"], "kube-dns");
        assert_eq!(config["defaultTtl"], "5m");
        assert!(config.get("runtimeClasses").is_none());
        assert!(config.get("fenceGate").is_none(), "left out when asked");
    }
}
