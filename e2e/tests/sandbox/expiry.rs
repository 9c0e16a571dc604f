//! Expiry: the Pod goes at `status.expiresAt`, then the rest; Retain keeps a record; an
//! operator restart neither delays an expiry nor forgets one that fell while it was down.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kennel::api::{AgentSandbox, Phase};
use kennel_e2e::sandbox::{self, expires_at_millis, now_millis, pod_deletion_seen};
use kube::Api;

use crate::{Fixture, START_TIMEOUT};

/// The bound on the lag from `expiresAt` to the Pod's deletion request.
const MAX_LAG_MS: i64 = 2000;

fn ttl(seconds: u32, on_expiry: &str) -> String {
    format!("  lifetime: {{ttl: {seconds}s, onExpiry: {on_expiry}}}\n")
}

async fn running(f: &Fixture, name: &str) -> Result<AgentSandbox> {
    sandbox::wait_for_phase(&f.client, f.ns(), name, Phase::Running, START_TIMEOUT)
        .await
        .context(f.log_hint())
}

/// Waits until `name` has no `NetworkPolicy`; returns how long that took.
async fn policy_gone(f: &Fixture, name: &str, timeout: Duration) -> Result<Duration> {
    let api: Api<NetworkPolicy> = Api::namespaced(f.client.clone(), f.ns());
    let start = std::time::Instant::now();
    while api.get_opt(name).await?.is_some() {
        if start.elapsed() > timeout {
            bail!("the NetworkPolicy {name} still exists after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(start.elapsed())
}

/// The lag from `expires_at` to `seen`, printed, and checked against the bound.
fn check_lag(what: &str, expires_at: i64, seen: i64) {
    let lag = seen - expires_at;
    println!("{what}: pod deletion seen {lag} ms after expiresAt");
    assert!(lag >= 0, "{what}: the Pod was deleted {} ms before expiresAt", -lag);
    assert!(lag <= MAX_LAG_MS, "{what}: pod deletion lagged expiresAt by {lag} ms");
}

#[tokio::test]
async fn an_expired_sandboxs_pod_is_deleted_within_two_seconds_and_the_sandbox_and_policy_follow()
-> Result<()> {
    let f = Fixture::new("asb-ttl").await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("shortlived", &ttl(20, "Delete"))).await?;
    let live = running(&f, "shortlived").await?;
    let expires_at = expires_at_millis(&live)?;
    let created = live.metadata.creation_timestamp.as_ref().map(sandbox::millis);
    assert_eq!(created.map(|c| c + 20_000), Some(expires_at), "expiresAt is not creation + ttl");
    let seen = pod_deletion_seen(&f.client, f.ns(), "shortlived");

    let seen = seen.await??;
    check_lag("ttl 20s", expires_at, seen);
    sandbox::wait_until_gone(&f.client, f.ns(), "shortlived", Duration::from_secs(30))
        .await
        .context(f.log_hint())?;
    let sandbox_gone = now_millis() - expires_at;
    let policy = policy_gone(&f, "shortlived", Duration::from_secs(30)).await?;
    println!(
        "ttl 20s: sandbox gone {sandbox_gone} ms after expiresAt, its NetworkPolicy {} ms later",
        policy.as_millis()
    );
    assert!(f.pods().get_opt("shortlived").await?.is_none(), "the Pod outlived its sandbox");
    Ok(())
}

#[tokio::test]
async fn an_expired_sandbox_with_on_expiry_retain_stays_as_an_expired_record_without_pod_or_policy()
-> Result<()> {
    let f = Fixture::new("asb-retain").await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("kept", &ttl(15, "Retain"))).await?;
    let live = running(&f, "kept").await?;
    let expires_at = expires_at_millis(&live)?;
    let seen = pod_deletion_seen(&f.client, f.ns(), "kept");
    check_lag("retain", expires_at, seen.await??);

    let expired =
        sandbox::wait_for_phase(&f.client, f.ns(), "kept", Phase::Expired, Duration::from_mins(1))
            .await
            .context(f.log_hint())?;
    println!("retain: phase Expired {} ms after expiresAt", now_millis() - expires_at);
    let condition = sandbox::condition(&expired, "Expired").context("no Expired condition")?;
    assert_eq!(condition.status, "True", "{condition:?}");
    assert!(f.pods().get_opt("kept").await?.is_none(), "an Expired sandbox still has its Pod");
    policy_gone(&f, "kept", Duration::from_secs(10)).await?;

    // It stays a record: still there, still Expired, its expiresAt unmoved.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = sandbox::sandboxes(&f.client, f.ns()).get("kept").await?;
    assert_eq!(sandbox::phase(&later), Some(Phase::Expired));
    assert_eq!(expires_at_millis(&later)?, expires_at);
    assert!(f.pods().get_opt("kept").await?.is_none(), "the Pod came back after expiry");
    Ok(())
}

#[tokio::test]
async fn an_operator_restarted_mid_ttl_expires_on_time_and_at_once_expires_what_fell_due_while_down()
-> Result<()> {
    let mut f = Fixture::new("asb-restart").await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("outlives", &ttl(60, "Delete"))).await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("missed", &ttl(30, "Delete"))).await?;
    let outlives = expires_at_millis(&running(&f, "outlives").await?)?;
    let missed = expires_at_millis(&running(&f, "missed").await?)?;
    if now_millis() > missed - 5000 {
        bail!("the sandboxes took too long to start for this test's timing; see {}", f.log_hint());
    }

    f.operator.stop();
    let down_at = now_millis();
    let wait = u64::try_from(missed + 3000 - down_at).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let pod = f.pods().get_opt("missed").await?;
    assert!(
        pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
        "the Pod of `missed` was deleted while no operator ran"
    );

    let seen_missed = pod_deletion_seen(&f.client, f.ns(), "missed");
    let seen_outlives = pod_deletion_seen(&f.client, f.ns(), "outlives");
    let restarted_at = now_millis();
    f.operator.restart().await?;
    let ready_ms = now_millis() - restarted_at;
    let caught_up = seen_missed.await?? - restarted_at;
    println!(
        "restart: operator down {} ms, ready {ready_ms} ms after start; the sandbox that \
         expired while it was down had its pod deletion seen {caught_up} ms after start",
        restarted_at - down_at
    );
    assert!(caught_up <= 5000, "a missed expiry was handled {caught_up} ms after start");

    check_lag("restarted mid-TTL", outlives, seen_outlives.await??);
    sandbox::wait_until_gone(&f.client, f.ns(), "outlives", Duration::from_secs(30)).await?;
    sandbox::wait_until_gone(&f.client, f.ns(), "missed", Duration::from_secs(30)).await?;
    Ok(())
}
