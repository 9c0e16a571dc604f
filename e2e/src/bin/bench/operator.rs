//! The operator under test: a release build started as a child process, scoped to the
//! benchmark's namespace, with its resident memory and CPU time sampled from `/proc`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use kennel_e2e::ClusterEnv;

use crate::say;

/// One sample of the operator's resources.
#[derive(Serialize, Clone, Copy, Debug, Default)]
pub struct ResourceSample {
    /// Seconds since the operator started.
    pub t_s: f64,
    /// Resident set size, MiB.
    pub rss_mib: f64,
    /// User plus system CPU seconds so far.
    pub cpu_s: f64,
}

/// A running operator. Dropping it kills the process.
pub struct Operator {
    child: Child,
    /// Where its metrics are served.
    pub metrics_addr: SocketAddr,
    samples: Arc<Mutex<Vec<ResourceSample>>>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Operator {
    /// Starts `OPERATOR_BIN` (or `target/release/kennel-operator`) with `config`, scoped
    /// to `namespace`, and waits until it reports ready.
    pub async fn start(
        env: &ClusterEnv,
        config: &Path,
        namespace: &str,
        log: &Path,
    ) -> Result<Self> {
        let bin = std::env::var_os("OPERATOR_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/kennel-operator"),
            PathBuf::from,
        );
        let metrics_addr = free_loopback_port()?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        let child = Command::new(&bin)
            .args(["run", "--namespace", namespace, "--log-level", "warn"])
            .arg(format!("--config={}", config.display()))
            .arg(format!("--metrics-addr={metrics_addr}"))
            .env("KUBECONFIG", &env.kubeconfig)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!("failed to start {} (cargo build --release)", bin.display())
            })?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sampler = tokio::spawn(sample_forever(child.id(), samples.clone()));
        let mut operator = Self { child, metrics_addr, samples, sampler };
        operator.wait_ready().await?;
        Ok(operator)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        for attempt in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                bail!("the operator exited ({status}) before it was ready; see its log");
            }
            if http_get(self.metrics_addr, "/readyz").await.is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            // A readiness probe that never turns green is reported, not fatal: the run
            // itself shows whether the controller works.
            let healthy = http_get(self.metrics_addr, "/healthz").await.is_ok_and(|r| r.0 == 200);
            if attempt >= 150 && healthy {
                say("bench: WARNING: the operator is live but /readyz never answered 200");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the operator was not ready within 30 s; see its log")
    }

    /// The operator's `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        match http_get(self.metrics_addr, "/metrics").await? {
            (200, body) => Ok(body),
            (code, _) => bail!("the operator's /metrics answered {code}"),
        }
    }

    /// Every resource sample so far.
    pub fn samples(&self) -> Vec<ResourceSample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The latest sample.
    pub fn last_sample(&self) -> ResourceSample {
        self.samples().last().copied().unwrap_or_default()
    }

    /// Peak resident memory (the kernel's high-water mark), MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        read_status_kib(self.child.id(), "VmHWM:").map_or(0.0, kib_to_mib)
    }

    /// Stops the operator.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        self.sampler.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_loopback_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr()?)
}

async fn sample_forever(pid: u32, samples: Arc<Mutex<Vec<ResourceSample>>>) {
    let start = Instant::now();
    let ticks = clock_ticks();
    loop {
        let rss = read_status_kib(pid, "VmRSS:").map_or(0.0, kib_to_mib);
        let cpu = read_cpu_ticks(pid).map_or(0.0, |t| t / ticks);
        let sample =
            ResourceSample { t_s: start.elapsed().as_secs_f64(), rss_mib: rss, cpu_s: cpu };
        if let Ok(mut all) = samples.lock() {
            all.push(sample);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[allow(clippy::cast_precision_loss)]
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `VmRSS:`-style line of `/proc/PID/status`, in KiB.
fn read_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` of `/proc/PID/stat`, in clock ticks.
fn read_cpu_ticks(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A plain HTTP/1.0 GET on loopback: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        Ok((code, body.to_owned()))
    })
    .await?
}
