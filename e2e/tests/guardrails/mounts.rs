//! Mount sources and isolation defaults on the real cluster: Secrets mounted read-only only
//! where the tenant's policy allows them (by name and by label, read from metadata), a
//! missing Secret shown as a wait naming the mount, writable claims only where the policy
//! allows them, and the policy's default isolation applied and kept for the sandbox's life.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kennel::api::{AgentSandbox, Isolation, Phase, SandboxPolicy};
use kennel_e2e::{kubectl::exec, operator::OperatorSettings, sandbox};
use kube::Api;

use crate::{Tenant, apply_output, apply_text, wait_refused};

/// How long a gVisor sandbox may take to start on a busy two-core node.
const START: Duration = Duration::from_mins(2);
/// How long the operator may take to judge a sandbox.
const VERDICT: Duration = Duration::from_mins(1);

/// A Secret `name` holding `token`, with `labels` (YAML flow map).
fn secret(name: &str, labels: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, labels: {labels}}}\n\
         stringData: {{token: {token}}}\n"
    )
}

/// A sleeper mounting the Secret `secret` at `/inputs/key`.
fn with_secret(tenant: &Tenant, name: &str, secret: &str) -> String {
    tenant.sleeper(
        name,
        &format!("  mounts:\n  - {{name: key, mountPath: /inputs/key, secret: {{secretName: {secret}}}}}\n"),
    )
}

fn accepted_false_naming(
    field: &'static str,
    words: &'static str,
) -> impl Fn(&AgentSandbox) -> bool {
    move |s| {
        sandbox::condition(s, "Accepted").is_some_and(|c| {
            c.status == "False" && c.message.contains(field) && c.message.contains(words)
        })
    }
}

#[tokio::test]
async fn secrets_mount_read_only_only_by_allowed_name_and_label_and_a_missing_one_is_awaited()
-> Result<()> {
    let rules = "  mounts:\n    secrets: {allowed: true, names: [agent-*], \
                 matchLabels: {kennel.dev/input: 'true'}}\n";
    let tenant = Tenant::new("guard-secret", rules).await?;
    let (env, ns) = (&tenant.env, tenant.ns());
    let labelled = "{kennel.dev/input: 'true'}";
    apply_text(env, Some(ns), &secret("agent-key", labelled, "s3cret-value"))?;
    apply_text(env, Some(ns), &secret("agent-plain", "{}", "nope"))?;
    apply_text(env, Some(ns), &secret("other-key", labelled, "nope"))?;

    // Allowed by name and label: mounted, readable, not writable.
    apply_text(env, Some(ns), &with_secret(&tenant, "reader", "agent-key"))?;
    sandbox::wait_for_phase(&tenant.client, ns, "reader", Phase::Running, START)
        .await
        .context(tenant.log_hint())?;
    let read = exec(env, ns, "reader", None, &["cat", "/inputs/key/token"])?;
    ensure!(read.stdout.trim() == "s3cret-value", "secret not readable: {read:?}");
    let write = exec(env, ns, "reader", None, &["sh", "-c", "echo x > /inputs/key/new"])?;
    ensure!(!write.success(), "the Secret mount was writable: {write:?}");

    // Right name, wrong labels: rejected naming the field and the label.
    apply_text(env, Some(ns), &with_secret(&tenant, "unlabelled", "agent-plain"))?;
    let field = "spec.mounts[0].secret.secretName";
    sandbox::wait_for(&tenant.client, ns, "unlabelled", "label refusal", VERDICT, {
        accepted_false_naming(field, "kennel.dev/input=true")
    })
    .await
    .context(tenant.log_hint())?;

    // Labelled, but a name the rule does not allow: refused at apply by the tenant policy.
    let misnamed = with_secret(&tenant, "misnamed", "other-key");
    let refusal = wait_refused(&tenant, "misnamed", &misnamed).await?;
    ensure!(refusal.contains("spec.mounts[].secret.secretName"), "{refusal}");

    // Missing: Pending, naming the mount and the Secret, until it exists.
    apply_text(env, Some(ns), &with_secret(&tenant, "early", "agent-later"))?;
    let waiting = |s: &AgentSandbox| {
        sandbox::condition(s, "Ready").is_some_and(|c| {
            c.reason == "MountSourceMissing"
                && c.message.contains("\"key\"")
                && c.message.contains("Secret \"agent-later\"")
        })
    };
    sandbox::wait_for(&tenant.client, ns, "early", "MountSourceMissing", VERDICT, waiting)
        .await
        .context(tenant.log_hint())?;
    apply_text(env, Some(ns), &secret("agent-later", labelled, "later"))?;
    sandbox::wait_for_phase(&tenant.client, ns, "early", Phase::Running, START)
        .await
        .context(tenant.log_hint())?;
    tenant.assert_no_panic()
}

#[tokio::test]
async fn the_default_policy_refuses_secrets_and_service_account_tokens_are_never_mounted()
-> Result<()> {
    let tenant = Tenant::new("guard-nosecret", "").await?;
    let (env, ns) = (&tenant.env, tenant.ns());
    apply_text(env, Some(ns), &secret("plain", "{}", "x"))?;
    apply_text(env, Some(ns), &with_secret(&tenant, "refused", "plain"))?;
    let field = "spec.mounts[0].secret.secretName";
    sandbox::wait_for(&tenant.client, ns, "refused", "refusal", VERDICT, {
        accepted_false_naming(field, "not allowed")
    })
    .await
    .context(tenant.log_hint())?;

    let open = Tenant::new("guard-token", "  mounts:\n    secrets: {allowed: true}\n").await?;
    let token = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sa-token\n  annotations: \
                 {kubernetes.io/service-account.name: default}\ntype: \
                 kubernetes.io/service-account-token\n";
    apply_text(&open.env, Some(open.ns()), token)?;
    apply_text(&open.env, Some(open.ns()), &with_secret(&open, "thief", "sa-token"))?;
    sandbox::wait_for(&open.client, open.ns(), "thief", "token refusal", VERDICT, {
        accepted_false_naming(field, "service-account tokens are never mounted")
    })
    .await
    .context(open.log_hint())?;
    let pods: Api<Pod> = Api::namespaced(open.client.clone(), open.ns());
    ensure!(pods.get_opt("thief").await?.is_none(), "a Pod was created for the token thief");
    tenant.assert_no_panic()?;
    open.assert_no_panic()
}

/// A sleeper mounting claim `scratch` at `/data`, writable.
fn writable_claim(tenant: &Tenant, name: &str) -> String {
    tenant.sleeper(
        name,
        "  mounts:\n  - {name: data, mountPath: /data, \
         persistentVolumeClaim: {claimName: scratch, writable: true}}\n",
    )
}

#[tokio::test]
async fn a_writable_claim_is_refused_unless_the_policy_allows_writable_inputs() -> Result<()> {
    let strict = Tenant::new("guard-ro", "  mounts:\n    allowWritable: false\n").await?;
    let refusal = wait_refused(&strict, "w", &writable_claim(&strict, "w")).await?;
    ensure!(
        refusal.contains("spec.mounts[].persistentVolumeClaim.writable"),
        "a writable claim was not refused naming the field: {refusal}"
    );

    // Known shortcoming of this test: the dev cluster has no storage provisioner, so the
    // claim stays unbound and the Pod unscheduled; the proof is the Pod the operator built.
    let open = Tenant::new("guard-rw", "  mounts:\n    allowWritable: true\n").await?;
    apply_text(&open.env, Some(open.ns()), &writable_claim(&open, "w"))?;
    apply_text(
        &open.env,
        Some(open.ns()),
        &open.sleeper(
            "r",
            "  mounts:\n  - {name: data, \
        mountPath: /data, persistentVolumeClaim: {claimName: scratch}}\n",
        ),
    )?;
    let pods: Api<Pod> = Api::namespaced(open.client.clone(), open.ns());
    for (name, writable) in [("w", true), ("r", false)] {
        let mut pod = None;
        for _ in 0..300 {
            pod = pods.get_opt(name).await?;
            if pod.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let pod = pod.with_context(|| format!("no Pod for {name}; {}", open.log_hint()))?;
        let spec = pod.spec.context("pod without spec")?;
        let volume = spec.volumes.unwrap_or_default().into_iter().find(|v| v.name == "data");
        let claim = volume.and_then(|v| v.persistent_volume_claim).context("no claim volume")?;
        let mount = spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "data")
            .context("no data mount")?;
        // The API server drops `readOnly: false`, the default.
        let (claim_ro, mount_ro) =
            (claim.read_only.unwrap_or(false), mount.read_only.unwrap_or(false));
        ensure!(claim_ro != writable, "{name}: claim readOnly {:?}", claim.read_only);
        ensure!(mount_ro != writable, "{name}: mount readOnly {:?}", mount.read_only);
    }
    strict.assert_no_panic()?;
    open.assert_no_panic()
}

#[tokio::test]
async fn the_policy_default_isolation_is_applied_recorded_and_kept_when_the_default_changes()
-> Result<()> {
    // Kata cannot run on the dev machine: the operator maps `kata` to gVisor's class, so
    // the sandbox runs and the test still sees which level was chosen.
    let settings = OperatorSettings {
        runtime_classes: Some(BTreeMap::from([
            ("gvisor".to_owned(), "gvisor".to_owned()),
            ("kata".to_owned(), "gvisor".to_owned()),
        ])),
        ..OperatorSettings::default()
    };
    let rules = "  isolation: {allowed: [gvisor, kata], default: kata}\n";
    let tenant = Tenant::new_with("guard-iso", rules, &settings).await?;
    let (env, ns) = (&tenant.env, tenant.ns());
    apply_text(env, Some(ns), &tenant.sleeper("defaulted", ""))?;
    let running = sandbox::wait_for_phase(&tenant.client, ns, "defaulted", Phase::Running, START)
        .await
        .context(tenant.log_hint())?;
    let recorded = running.status.as_ref().and_then(|s| s.isolation);
    ensure!(recorded == Some(Isolation::Kata), "status.isolation is {recorded:?}");
    let column = kennel_e2e::kubectl::kubectl_ok(
        env,
        &["get", "agentsandbox", "defaulted", "-n", ns, "--no-headers", "-o", "wide"],
    )?;
    ensure!(column.contains("kata"), "the Isolation column does not show kata: {column}");

    // The spec cannot gain a level later.
    let set = tenant.sleeper("defaulted", "  isolation: gvisor\n");
    let out = apply_output(env, Some(ns), &set, true)?;
    ensure!(!out.success() && out.stderr.contains("only spec.network can change"), "{out:?}");

    // The default changes: the running sandbox keeps its level; a new one gets the new one.
    let policies: Api<SandboxPolicy> = Api::all(tenant.client.clone());
    let mut policy = policies.get(ns).await?;
    if let Some(isolation) = policy.spec.rules.isolation.as_mut() {
        isolation.default = Some(Isolation::Gvisor);
    }
    policies.replace(ns, &kube::api::PostParams::default(), &policy).await?;
    // Let the operator's policy cache see the change before the next sandbox arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    apply_text(env, Some(ns), &tenant.sleeper("later", ""))?;
    let later = sandbox::wait_for(&tenant.client, ns, "later", "isolation", VERDICT, |s| {
        s.status.as_ref().and_then(|st| st.isolation).is_some()
    })
    .await
    .context(tenant.log_hint())?;
    let level = later.status.and_then(|s| s.isolation);
    ensure!(level == Some(Isolation::Gvisor), "the new sandbox got {level:?}");
    let kept = sandbox::sandboxes(&tenant.client, ns).get("defaulted").await?;
    let accepted = sandbox::condition(&kept, "Accepted").is_some_and(|c| c.status == "True");
    let level = kept.status.as_ref().and_then(|s| s.isolation);
    ensure!(accepted && level == Some(Isolation::Kata), "the running sandbox changed: {level:?}");
    tenant.assert_no_panic()
}
