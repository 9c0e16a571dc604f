//! Test hosts a sandbox can try to reach: small TCP servers in the test process on the
//! addresses `e2e/cluster/test-hosts.sh` puts on this machine, outside the pod, service
//! and API server ranges, so an allowlist can open one and not the other.

use anyhow::{Context, Result};
use tokio::{io::AsyncWriteExt, net::TcpListener, task::JoinHandle};

/// The address an allowlist opens in the tests.
pub const ALLOWED: &str = "10.250.0.1";
/// The address no allowlist opens; reachable from a pod without a policy.
pub const DENIED: &str = "10.250.0.2";

/// One TCP server per test-host address, all on the same port, each writing a banner
/// naming its address to every connection. Stopped on drop.
#[derive(Debug)]
pub struct TestHosts {
    /// The port every server listens on.
    pub port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl TestHosts {
    /// Starts servers on [`ALLOWED`] and [`DENIED`] on a port free on both.
    pub async fn start() -> Result<Self> {
        let mut last_error = None;
        for _ in 0..20 {
            let first = TcpListener::bind((ALLOWED, 0)).await.with_context(|| {
                format!("failed to listen on {ALLOWED}; run `e2e/cluster/test-hosts.sh up`")
            })?;
            let port = first.local_addr()?.port();
            match TcpListener::bind((DENIED, port)).await {
                Ok(second) => {
                    let tasks = vec![serve(first, ALLOWED), serve(second, DENIED)];
                    return Ok(Self { port, tasks });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.map_or_else(|| anyhow::anyhow!("no attempt"), Into::into))
            .with_context(|| format!("no port free on both {ALLOWED} and {DENIED}"))
    }

    /// The banner the server on `addr` writes.
    pub fn banner(addr: &str) -> String {
        format!("test-host {addr}")
    }
}

fn serve(listener: TcpListener, addr: &'static str) -> JoinHandle<()> {
    tokio::spawn(async move {
        let banner = format!("{}\n", TestHosts::banner(addr));
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.write_all(banner.as_bytes()).await;
        }
    })
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
