//! A sandbox's life besides expiry: a lost Pod, refusals, a finished agent, idleness.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{core::v1::Pod, events::v1::Event, networking::v1::NetworkPolicy};
use kennel::api::{AgentSandbox, Phase};
use kennel_e2e::{operator::OperatorSettings, sandbox};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};

use crate::{Fixture, START_TIMEOUT};

fn pod_uid(pod: &Pod) -> Option<String> {
    pod.metadata.uid.clone()
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// Whether the sandbox shows `phase` with condition `type_` False for `reason`.
fn shows(s: &AgentSandbox, phase: Phase, type_: &str, reason: &str) -> bool {
    sandbox::phase(s) == Some(phase)
        && sandbox::condition(s, type_).is_some_and(|c| c.status == "False" && c.reason == reason)
}

#[tokio::test]
async fn a_pod_deleted_from_outside_is_recreated_while_the_sandbox_lives() -> Result<()> {
    let f = Fixture::new("asb-recreate").await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("phoenix", "")).await?;
    sandbox::wait_for_phase(&f.client, f.ns(), "phoenix", Phase::Running, START_TIMEOUT)
        .await
        .context(f.log_hint())?;
    let first = f.pods().get("phoenix").await?;
    f.pods().delete("phoenix", &DeleteParams::default()).await?;

    let start = std::time::Instant::now();
    let second = loop {
        if let Some(pod) = f.pods().get_opt("phoenix").await?
            && pod_uid(&pod) != pod_uid(&first)
        {
            break pod;
        }
        if start.elapsed() > Duration::from_mins(1) {
            bail!("no new Pod within 60 s of the deletion; {}", f.log_hint());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("recreate: new pod {:.1} s after the deletion", start.elapsed().as_secs_f64());
    let owner = second.metadata.owner_references.clone().unwrap_or_default();
    assert!(owner.iter().any(|o| o.kind == "AgentSandbox" && o.controller == Some(true)));
    sandbox::wait_for_phase(&f.client, f.ns(), "phoenix", Phase::Running, START_TIMEOUT).await?;

    let events: Api<Event> = Api::namespaced(f.client.clone(), f.ns());
    let recreated = events.list(&ListParams::default()).await?.items.into_iter().any(|e| {
        e.reason.as_deref() == Some("PodRecreated")
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("phoenix")
    });
    assert!(recreated, "no PodRecreated Event for the sandbox; {}", f.log_hint());
    Ok(())
}

#[tokio::test]
async fn a_sandbox_whose_runtime_class_is_missing_stays_pending_as_runtime_unavailable_without_a_pod()
-> Result<()> {
    // The level is allowed, but this operator maps it to a class the cluster lacks (the
    // default policy allows only gvisor, so `kata` would be refused before the lookup).
    let missing = "kennel-e2e-missing";
    let classes = [("gvisor".to_owned(), missing.to_owned())].into();
    let settings = OperatorSettings { runtime_classes: Some(classes), ..Default::default() };
    let f = Fixture::with("asb-noruntime", &settings).await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("vm", "  isolation: gvisor\n")).await?;
    let pending = sandbox::wait_for(
        &f.client,
        f.ns(),
        "vm",
        "Pending with Ready=False RuntimeUnavailable",
        Duration::from_secs(30),
        |s| shows(s, Phase::Pending, "Ready", "RuntimeUnavailable"),
    )
    .await
    .context(f.log_hint())?;
    let ready = sandbox::condition(&pending, "Ready").context("no Ready condition")?;
    assert!(ready.message.contains(missing), "the message does not name the class: {ready:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(f.pods().get_opt("vm").await?.is_none(), "a Pod was created without its runtime");
    let later = sandbox::sandboxes(&f.client, f.ns()).get("vm").await?;
    assert!(shows(&later, Phase::Pending, "Ready", "RuntimeUnavailable"), "{:?}", later.status);
    Ok(())
}

#[tokio::test]
async fn an_invalid_spec_is_rejected_naming_the_field_without_a_pod_and_others_still_run()
-> Result<()> {
    let f = Fixture::new("asb-reject").await?;
    let metadata = "  network:\n    egress:\n    - cidr: 169.254.169.254/32\n";
    let host_bits = "  network:\n    egress:\n    - cidr: 10.0.0.1/8\n";
    sandbox::create(&f.client, f.ns(), &f.sleeper("metadata", metadata)).await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("hostbits", host_bits)).await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("valid", "")).await?;

    for name in ["metadata", "hostbits"] {
        let rejected = sandbox::wait_for(
            &f.client,
            f.ns(),
            name,
            "Rejected with Accepted=False",
            Duration::from_secs(30),
            |s| shows(s, Phase::Rejected, "Accepted", "InvalidSpec"),
        )
        .await
        .context(f.log_hint())?;
        let accepted = sandbox::condition(&rejected, "Accepted").context("no Accepted")?;
        println!("{name}: {}", accepted.message);
        assert!(
            accepted.message.contains("spec.network.egress[0].cidr"),
            "the message does not name the field: {}",
            accepted.message
        );
    }
    sandbox::wait_for_phase(&f.client, f.ns(), "valid", Phase::Running, START_TIMEOUT)
        .await
        .context(f.log_hint())?;
    for name in ["metadata", "hostbits"] {
        assert!(f.pods().get_opt(name).await?.is_none(), "rejected sandbox {name} has a Pod");
        let s = sandbox::sandboxes(&f.client, f.ns()).get(name).await?;
        assert_eq!(sandbox::phase(&s), Some(Phase::Rejected), "{name} left Rejected");
    }
    Ok(())
}

#[tokio::test]
async fn a_finished_agent_ends_failed_with_its_exit_code_and_is_never_restarted() -> Result<()> {
    let f = Fixture::new("asb-exit").await?;
    let yaml = format!(
        "metadata: {{name: quitter}}\nspec:\n  image: {}\n  command: [sh, -c, 'exit 3']\n",
        f.env.busybox_image
    );
    sandbox::create(&f.client, f.ns(), &yaml).await?;
    let failed =
        sandbox::wait_for_phase(&f.client, f.ns(), "quitter", Phase::Failed, START_TIMEOUT)
            .await
            .context(f.log_hint())?;
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(status.exit_code, Some(3), "{status:?}");
    let ready = sandbox::condition(&failed, "Ready").context("no Ready condition")?;
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Error"));
    let pod = f.pods().get("quitter").await?;

    tokio::time::sleep(Duration::from_secs(10)).await;
    let later = f.pods().get("quitter").await?;
    assert_eq!(pod_uid(&later), pod_uid(&pod), "the finished agent's Pod was replaced");
    assert_eq!(restart_count(&later), 0, "the finished agent was restarted");
    let s = sandbox::sandboxes(&f.client, f.ns()).get("quitter").await?;
    assert_eq!(sandbox::phase(&s), Some(Phase::Failed));
    Ok(())
}

#[tokio::test]
async fn an_idle_running_sandbox_causes_no_writes() -> Result<()> {
    let f = Fixture::new("asb-idle").await?;
    sandbox::create(&f.client, f.ns(), &f.sleeper("idle", "")).await?;
    let settled =
        sandbox::wait_for(&f.client, f.ns(), "idle", "Running and Ready", START_TIMEOUT, |s| {
            sandbox::phase(s) == Some(Phase::Running)
                && sandbox::condition(s, "Ready").is_some_and(|c| c.status == "True")
        })
        .await
        .context(f.log_hint())?;
    let before = settled.metadata.resource_version.clone();
    let policies: Api<NetworkPolicy> = Api::namespaced(f.client.clone(), f.ns());
    let policy_before = policies.get("idle").await?.metadata;
    let pod_before = f.pods().get("idle").await?.metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = sandbox::sandboxes(&f.client, f.ns()).get("idle").await?;
    assert_eq!(
        after.metadata.resource_version, before,
        "an idle sandbox was written: {:#?} became {:#?}",
        settled.status, after.status
    );
    // The children count too: a policy rewritten on every reconcile wakes the controller
    // again through its watch, which turns into a write loop.
    let policy_after = policies.get("idle").await?.metadata;
    assert_eq!(
        (policy_after.resource_version, policy_after.generation),
        (policy_before.resource_version, policy_before.generation),
        "an idle sandbox's NetworkPolicy was written"
    );
    let pod_after = f.pods().get("idle").await?.metadata.resource_version;
    assert_eq!(pod_after, pod_before, "an idle sandbox's Pod was written");
    Ok(())
}
