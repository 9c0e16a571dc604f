//! Leader election through a `coordination.k8s.io` Lease, so that of several replicas
//! only one reconciles.
//!
//! The election itself is `kube-lease-manager`'s; this module decides what the process
//! does around it:
//! 1. a standby serves `/healthz` and reports ready (it is ready to take over) while it
//!    waits for the Lease;
//! 2. once it holds the Lease it reports not-ready until the controller's caches sync,
//!    then runs the controller;
//! 3. losing the Lease ends the process with an error: the Deployment restarts it as a
//!    standby, so two controllers never act at once for longer than the renew margin;
//! 4. a normal shutdown releases the Lease, so a rolling update hands over at once
//!    instead of after a full lease duration.
//!
//! Caveat: a leader cut off from the API server keeps running until the crate notices
//! the Lease changed hands; `renew_before_seconds` bounds the overlap only while the
//! leader can still read the Lease. The crate offers no hook to fence on renew failure.

use std::{future::Future, time::Duration};

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

use crate::telemetry::Health;

/// How long a normal shutdown may spend releasing the Lease before giving up on it.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Command-line settings of the election; the defaults suit one Deployment.
#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// Take part in leader election; only the holder of the Lease reconciles.
    #[arg(long = "leader-election", env = "KENNEL_LEADER_ELECTION")]
    pub enabled: bool,
    /// Name of the Lease.
    #[arg(long = "leader-election-lease", env = "KENNEL_LEADER_ELECTION_LEASE")]
    #[arg(default_value = "kennel-operator")]
    pub lease_name: String,
    /// Namespace of the Lease; the client's default namespace (in a Pod: its own) if unset.
    // Its own id: the flattened field name `namespace` would clash with `run --namespace`.
    #[arg(id = "leader_election_namespace", long = "leader-election-namespace")]
    #[arg(value_name = "NAMESPACE")]
    #[arg(env = "KENNEL_LEADER_ELECTION_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's identity in the Lease, normally the Pod name; random if unset.
    #[arg(long = "leader-election-identity", env = "KENNEL_LEADER_ELECTION_IDENTITY")]
    pub identity: Option<String>,
    /// Seconds the Lease stays valid after its last renewal: the longest a crashed
    /// leader blocks the standby.
    #[arg(long = "leader-election-lease-seconds", default_value_t = 15)]
    pub lease_seconds: u64,
    /// Seconds before expiry at which the leader renews: the tolerated clock skew.
    #[arg(long = "leader-election-renew-before-seconds", default_value_t = 5)]
    pub renew_before_seconds: u64,
}

/// Why the process stopped leading or could not take part in the election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The durations cannot work together.
    #[error(
        "invalid leader election timing: renew-before ({renew}s) must be above 0 and below \
         the lease duration ({lease}s); fix --leader-election-renew-before-seconds"
    )]
    Timing {
        /// Lease duration in seconds.
        lease: u64,
        /// Renew margin in seconds.
        renew: u64,
    },
    /// The Lease could not be read or created (RBAC on `leases`, or the API server).
    #[error("failed to set up the Lease {namespace}/{name}: {source}")]
    Setup {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The cause.
        source: LeaseManagerError,
    },
    /// Another replica took the Lease while this one was leading.
    #[error("failed to keep the leader Lease: another replica holds it now; exiting to restart")]
    Lost,
    /// The election task ended while this replica waited to lead.
    #[error("failed to wait for the leader Lease: the election task stopped")]
    ElectionStopped,
}

impl Settings {
    fn check(&self) -> Result<(), LeaderError> {
        let (lease, renew) = (self.lease_seconds, self.renew_before_seconds);
        if renew == 0 || renew >= lease {
            return Err(LeaderError::Timing { lease, renew });
        }
        Ok(())
    }
}

/// Runs `work` (the controller) only while this replica holds the Lease.
///
/// Returns `Ok(None)` when a shutdown signal arrived before this replica led,
/// `Ok(Some(output))` when `work` finished (a normal shutdown) and the Lease was
/// released, and [`LeaderError::Lost`] when another replica took the Lease.
pub async fn lead<F>(
    client: Client,
    settings: &Settings,
    health: &Health,
    work: F,
) -> Result<Option<F::Output>, LeaderError>
where
    F: Future,
{
    settings.check()?;
    let namespace =
        settings.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let mut builder = LeaseManagerBuilder::new(client, &settings.lease_name)
        .with_namespace(&namespace)
        .with_duration(settings.lease_seconds)
        .with_grace(settings.renew_before_seconds);
    if let Some(identity) = &settings.identity {
        builder = builder.with_identity(identity);
    }
    let manager = builder.build().await.map_err(|source| LeaderError::Setup {
        namespace: namespace.clone(),
        name: settings.lease_name.clone(),
        source,
    })?;
    let (mut leading, task) = manager.watch().await;

    health.set_ready(true);
    tracing::info!(lease = %settings.lease_name, %namespace, "standing by for the leader Lease");
    tokio::select! {
        acquired = wait_until(&mut leading, true) => acquired?,
        () = shutdown_signal() => {
            tracing::info!("shutdown signal while standing by");
            return Ok(None);
        }
    }

    health.set_ready(false);
    tracing::info!(lease = %settings.lease_name, "became leader");
    let started = tokio::time::Instant::now();
    let output = tokio::select! {
        output = work => output,
        _ = wait_until(&mut leading, false) => {
            tracing::error!(led_for_s = started.elapsed().as_secs(), "lost the leader Lease");
            return Err(LeaderError::Lost);
        }
    };

    // Closing the channel makes the election task release the Lease and end.
    drop(leading);
    match tokio::time::timeout(RELEASE_TIMEOUT, task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
        Ok(Ok(Err(error))) => {
            tracing::warn!(error = &error as &dyn std::error::Error, "failed to release the Lease");
        }
        Ok(Err(error)) => tracing::warn!(error = %error, "election task failed"),
        Err(_) => tracing::warn!("gave up releasing the Lease; it expires on its own"),
    }
    Ok(Some(output))
}

/// Waits until the election reports `want` (true: leading, false: not leading).
async fn wait_until(leading: &mut watch::Receiver<bool>, want: bool) -> Result<(), LeaderError> {
    leading.wait_for(|&now| now == want).await.map(|_| ()).map_err(|_| LeaderError::ElectionStopped)
}

/// Resolves on SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(lease_seconds: u64, renew_before_seconds: u64) -> Settings {
        Settings {
            enabled: true,
            lease_name: "kennel-operator".into(),
            namespace: None,
            identity: None,
            lease_seconds,
            renew_before_seconds,
        }
    }

    #[test]
    fn renew_margin_must_be_positive_and_shorter_than_the_lease() {
        assert!(settings(15, 5).check().is_ok());
        assert!(matches!(settings(15, 0).check(), Err(LeaderError::Timing { .. })));
        assert!(matches!(settings(15, 15).check(), Err(LeaderError::Timing { .. })));
        assert!(matches!(settings(5, 10).check(), Err(LeaderError::Timing { .. })));
    }

    #[tokio::test]
    async fn waiting_for_leadership_ends_when_the_election_reports_it() {
        let (tx, mut rx) = watch::channel(false);
        let waiter = tokio::spawn(async move { wait_until(&mut rx, true).await });
        tx.send(true).expect("receiver alive");
        assert!(waiter.await.expect("task joins").is_ok());
    }

    #[tokio::test]
    async fn waiting_fails_when_the_election_task_is_gone() {
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        assert!(matches!(wait_until(&mut rx, true).await, Err(LeaderError::ElectionStopped)));
    }
}
