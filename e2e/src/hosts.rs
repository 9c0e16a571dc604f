//! Test hosts a sandbox can try to reach: small TCP servers in the test process on the
//! addresses `e2e/cluster/test-hosts.sh` puts on this machine, outside the pod, service
//! and API server ranges, so an allowlist can open one and not the other; and one on the
//! cloud metadata address, which that script makes local for traffic from pods only.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};
use tokio::{io::AsyncWriteExt, net::TcpListener, task::JoinHandle};

/// The address an allowlist opens in the tests.
pub const ALLOWED: &str = "10.250.0.1";
/// The address no allowlist opens; reachable from a pod without a policy.
pub const DENIED: &str = "10.250.0.2";
/// The cloud metadata address; reachable from a pod without a policy.
pub const METADATA: &str = "169.254.169.254";

/// One TCP server per test-host address, all on the same port, each writing a banner
/// naming its address to every connection and counting them. Stopped on drop.
#[derive(Debug)]
pub struct TestHosts {
    /// The port every server listens on.
    pub port: u16,
    tasks: Vec<JoinHandle<()>>,
    /// Connections accepted on [`ALLOWED`] and on [`DENIED`].
    accepted: [Arc<AtomicUsize>; 2],
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
                    let accepted: [Arc<AtomicUsize>; 2] = [Arc::default(), Arc::default()];
                    let tasks = vec![
                        serve(first, ALLOWED, accepted[0].clone()),
                        serve(second, DENIED, accepted[1].clone()),
                    ];
                    return Ok(Self { port, tasks, accepted });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.map_or_else(|| anyhow::anyhow!("no attempt"), Into::into))
            .with_context(|| format!("no port free on both {ALLOWED} and {DENIED}"))
    }

    /// How many connections the server on `addr` ([`ALLOWED`] or [`DENIED`]) accepted.
    pub fn accepted(&self, addr: &str) -> usize {
        let index = usize::from(addr == DENIED);
        self.accepted[index].load(Ordering::Relaxed)
    }

    /// The banner the server on `addr` writes.
    pub fn banner(addr: &str) -> String {
        format!("test-host {addr}")
    }
}

fn serve(listener: TcpListener, addr: &'static str, count: Arc<AtomicUsize>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let banner = format!("{}\n", TestHosts::banner(addr));
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
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

/// A TCP server on [`METADATA`] writing its banner, like [`TestHosts`]. The address is not
/// one of this machine's (only pod traffic is routed to it locally), so the socket is
/// transparent (`IP_TRANSPARENT`, which needs `CAP_NET_ADMIN`): it may bind there and
/// answer from there. Stopped on drop.
#[derive(Debug)]
pub struct MetadataHost {
    /// The port it listens on.
    pub port: u16,
    task: JoinHandle<()>,
    accepted: Arc<AtomicUsize>,
}

impl MetadataHost {
    /// Starts the server on a free port of [`METADATA`]; call it inside the test's runtime.
    pub fn start() -> Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket
            .set_ip_transparent_v4(true)
            .context("failed to make a transparent socket (needs CAP_NET_ADMIN)")?;
        socket.set_nonblocking(true)?;
        let addr: std::net::SocketAddr = format!("{METADATA}:0").parse()?;
        socket.bind(&addr.into()).context("failed to bind the metadata address")?;
        socket.listen(64)?;
        let listener = TcpListener::from_std(std::net::TcpListener::from(socket))?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = serve(listener, METADATA, accepted.clone());
        Ok(Self { port, task, accepted })
    }

    /// How many connections it accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for MetadataHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}
