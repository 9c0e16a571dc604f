//! End-to-end proof of the tenant guardrails (issue 4) on the local cluster: the
//! hostile-input matrix (every case refused at `kubectl apply` or ending `Rejected`, with
//! the field named), per-tenant quota, re-checks when a policy changes, and the roles and
//! admission policy that keep tenants from going around the operator.
//!
//! Each test has its own namespace, its own `SandboxPolicy` selecting it and its own
//! namespace-scoped operator. The admission policies of `deploy/admission/` are installed
//! as shipped, except that the bindings of the two object-wide policies are scoped to this
//! test's namespaces (label `kennel.dev/guardrails-e2e`), so that other tests on the same
//! cluster are not judged by them.
//!
//! The matrix's table of cases and outcomes is written to `docs/security.md`.

#[path = "guardrails/egress_overlap.rs"]
mod egress_overlap;
#[path = "guardrails/first_connection.rs"]
mod first_connection;
#[path = "guardrails/inside.rs"]
mod inside;
#[path = "guardrails/matrix.rs"]
mod matrix;
#[path = "guardrails/mounts.rs"]
mod mounts;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    core::v1::{LimitRange, Namespace, ResourceQuota},
};
use kennel::api::{AgentSandbox, SandboxPolicy};
use kennel_e2e::{
    ClusterEnv, TestNamespace, client,
    kubectl::{Output, kubectl, kubectl_ok},
    operator::{OperatorProcess, OperatorSettings},
    sandbox,
};
use kube::{Api, Client, api::DeleteParams};

/// The label that scopes this test's admission bindings to its own namespaces.
const E2E_LABEL: &str = "kennel.dev/guardrails-e2e";
/// The label each test's policy selects its namespace by.
const TENANT_LABEL: &str = "kennel.dev/tenant";
/// The label the operator writes on each namespace with its governing policy.
const POLICY_LABEL: &str = "kennel.dev/sandbox-policy";

/// One test's world: operator (killed first on drop), policy, namespace, client.
pub struct Tenant {
    /// The operator, watching only `ns`.
    pub operator: OperatorProcess,
    /// The namespace, deleted on drop.
    pub ns: TestNamespace,
    /// Admin client.
    pub client: Client,
    /// The cluster's facts.
    pub env: ClusterEnv,
}

impl Tenant {
    /// Installs the CRDs and admission policies, creates `PREFIX-…` labelled for this test,
    /// a SandboxPolicy named after it with `rules` (YAML lines under `spec:`, two-space
    /// indented) selecting it, and an operator watching it; waits until the operator has
    /// labelled the namespace and bound the policy.
    pub async fn new(prefix: &str, rules: &str) -> Result<Self> {
        Self::new_with(prefix, rules, &OperatorSettings::default()).await
    }

    /// [`Tenant::new`] with an operator started with `settings`.
    pub async fn new_with(prefix: &str, rules: &str, settings: &OperatorSettings) -> Result<Self> {
        let env = ClusterEnv::load()?;
        let client = client(&env).await?;
        install_admission(&env)?;
        let ns = TestNamespace::create(&client, &env, prefix).await?;
        let name = ns.name.clone();
        kubectl_ok(&env, &["label", "namespace", &name, &format!("{E2E_LABEL}=true")])?;
        kubectl_ok(&env, &["label", "namespace", &name, &format!("{TENANT_LABEL}={name}")])?;
        let policy = format!(
            "apiVersion: kennel.dev/v1alpha1\nkind: SandboxPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  namespaceSelector: {{matchLabels: {{{TENANT_LABEL}: {name}}}}}\n{rules}"
        );
        apply_text(&env, None, &policy).context("failed to apply the test's SandboxPolicy")?;
        let operator = OperatorProcess::start_with(&env, &name, settings).await?;
        let tenant = Self { operator, ns, client, env };
        tenant.wait_governed().await?;
        Ok(tenant)
    }

    /// The namespace's name, also the policy's.
    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    /// Waits until the operator labelled the namespace and created the policy's binding.
    async fn wait_governed(&self) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(self.client.clone());
        let binding = format!("kennel-tenant-{}", self.ns());
        for _ in 0..300 {
            let ns = namespaces.get(self.ns()).await?;
            let labelled = ns.metadata.labels.unwrap_or_default().get(POLICY_LABEL).cloned();
            let bound = bindings.get_opt(&binding).await?.is_some();
            if labelled.as_deref() == Some(self.ns()) && bound {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the operator did not label {} or bind its policy within 30 s; {}",
            self.ns(),
            self.log_hint()
        )
    }

    /// A sandbox manifest named `name` running `sleep` in the cluster's busybox, with
    /// `extra` lines under `spec:`.
    pub fn sleeper(&self, name: &str, extra: &str) -> String {
        format!(
            "apiVersion: kennel.dev/v1alpha1\nkind: AgentSandbox\nmetadata: {{name: {name}}}\n\
             spec:\n  image: {}\n  command: [sleep, '3600']\n{extra}",
            self.env.busybox_image
        )
    }

    /// Where to look when a test fails.
    pub fn log_hint(&self) -> String {
        format!("operator log: {}", self.operator.log_path().display())
    }

    /// Fails when the operator's log shows a panic.
    pub fn assert_no_panic(&self) -> Result<()> {
        let log = std::fs::read_to_string(self.operator.log_path()).unwrap_or_default();
        if log.contains("panicked") {
            bail!("the operator panicked; {}", self.log_hint());
        }
        Ok(())
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        let _ = kubectl(&self.env, &["delete", "sandboxpolicy", &self.ns.name, "--wait=false"]);
    }
}

/// Applies the CRDs and the admission policies of `deploy/admission/`; the bindings of the
/// object-wide policies are replaced by ones scoped to this test's namespaces, and the
/// Pod policy exempts the admin user the test operators run as.
fn install_admission(env: &ClusterEnv) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let crds = root.join("crds");
    kubectl_ok(
        env,
        &["apply", "--server-side", "--force-conflicts", "-f", &crds.to_string_lossy()],
    )?;
    let roles = root.join("deploy/rbac/tenant-roles.yaml");
    kubectl_ok(
        env,
        &["apply", "--server-side", "--force-conflicts", "-f", &roles.to_string_lossy()],
    )?;
    let admission = root.join("deploy/admission");
    let read =
        |file: &str| std::fs::read_to_string(admission.join(file)).context("deploy/admission");
    apply_text(env, None, &read("tenant-policy.yaml")?)?;
    let object = read("sandbox-object.yaml")?;
    let object_policy = object.split("\n---\n").next().context("sandbox-object.yaml is empty")?;
    apply_text(env, None, object_policy)?;
    apply_text(env, None, &scoped_binding("kennel-sandbox-object", "kennel-sandbox-object"))?;
    let admin = kubectl_ok(env, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])?;
    let pods = read("pod-runtime-class.yaml")?;
    let pods_policy = pods.split("\n---\n").next().context("pod-runtime-class.yaml is empty")?;
    let pods_policy = pods_policy
        .replace("system:serviceaccount:kennel-system:kennel-operator", admin.trim())
        .replace("name: kennel-tenant-pods", "name: kennel-tenant-pods-e2e");
    apply_text(env, None, &pods_policy)?;
    apply_text(env, None, &scoped_binding("kennel-tenant-pods-e2e", "kennel-tenant-pods-e2e"))?;
    Ok(())
}

/// A binding of `policy` limited to this test's namespaces.
fn scoped_binding(name: &str, policy: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\n\
         metadata: {{name: {name}-e2e-scope}}\nspec:\n  policyName: {policy}\n  \
         validationActions: [Deny]\n  matchResources:\n    namespaceSelector:\n      \
         matchLabels: {{{E2E_LABEL}: 'true'}}\n"
    )
}

/// `kubectl apply --server-side` of YAML text (in `namespace` if given); fails with
/// kubectl's message.
pub fn apply_text(env: &ClusterEnv, namespace: Option<&str>, yaml: &str) -> Result<String> {
    let out = apply_output(env, namespace, yaml, true)?;
    if !out.success() {
        bail!("kubectl apply failed: {}", out.stderr.trim());
    }
    Ok(out.stdout)
}

/// Runs `kubectl apply` (server-side or the default client-side, as a tenant would) on
/// YAML text, whatever the outcome.
pub fn apply_output(
    env: &ClusterEnv,
    namespace: Option<&str>,
    yaml: &str,
    server_side: bool,
) -> Result<Output> {
    let file = std::env::temp_dir().join(format!(
        "kennel-guardrails-{}-{}.yaml",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos()
    ));
    std::fs::write(&file, yaml)?;
    let path = file.to_string_lossy().into_owned();
    let mut args = vec!["apply", "-f", &path];
    if server_side {
        args.extend(["--server-side", "--force-conflicts"]);
    }
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    let out = kubectl(env, &args);
    let _ = std::fs::remove_file(&file);
    out
}

/// Applies YAML until the API server refuses it, for admission bindings that take a moment
/// to be enforced; returns kubectl's message. Anything created meanwhile is deleted.
async fn wait_refused(tenant: &Tenant, name: &str, yaml: &str) -> Result<String> {
    for _ in 0..60 {
        let out = apply_output(&tenant.env, Some(tenant.ns()), yaml, false)?;
        if !out.success() {
            return Ok(out.stderr);
        }
        let api = sandbox::sandboxes(&tenant.client, tenant.ns());
        let _ = api.delete(name, &DeleteParams::default()).await;
        sandbox::wait_until_gone(&tenant.client, tenant.ns(), name, Duration::from_secs(30))
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("{name} was never refused at admission")
}

#[tokio::test]
async fn hostile_sandbox_specs_are_refused_at_apply_or_rejected_naming_the_field() -> Result<()> {
    let tenant = Tenant::new("guard-matrix", &matrix::policy_rules(&ClusterEnv::load()?)).await?;
    // The bindings of the admission policies take a moment to be enforced.
    wait_refused(&tenant, "canary", &tenant.sleeper("canary", "  isolation: kata\n")).await?;
    let outcomes = matrix::run(&tenant).await?;
    matrix::write_table(&outcomes)?;
    let failures: Vec<String> =
        outcomes.iter().filter(|o| !o.ok).map(|o| format!("{}: {}", o.case, o.message)).collect();
    tenant.assert_no_panic()?;
    assert!(outcomes.len() >= 40, "only {} cases", outcomes.len());
    assert!(
        failures.is_empty(),
        "cases not refused with their field named:\n{}",
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn the_sandbox_past_the_quota_is_refused_naming_the_quota_and_the_quota_goes_with_the_policy()
-> Result<()> {
    let tenant =
        Tenant::new("guard-quota", "  quota: {sandboxes: 2, cpu: '2', memory: 2Gi}\n").await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(tenant.client.clone(), tenant.ns());
    let ranges: Api<LimitRange> = Api::namespaced(tenant.client.clone(), tenant.ns());
    let mut counted = false;
    for _ in 0..100 {
        let quota = quotas.get_opt("kennel-tenant-quota").await?;
        let hard = quota.and_then(|q| q.status).and_then(|s| s.hard).unwrap_or_default();
        if hard.contains_key("count/agentsandboxes.kennel.dev") {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(counted, "no ResourceQuota counting sandboxes; {}", tenant.log_hint());
    assert!(ranges.get_opt("kennel-tenant-limits").await?.is_some(), "no LimitRange");
    for name in ["first", "second"] {
        apply_text(&tenant.env, Some(tenant.ns()), &tenant.sleeper(name, ""))?;
    }
    let out = apply_output(&tenant.env, Some(tenant.ns()), &tenant.sleeper("third", ""), false)?;
    assert!(!out.success(), "the third sandbox was admitted past a quota of 2");
    assert!(
        out.stderr.contains("kennel-tenant-quota")
            && out.stderr.contains("count/agentsandboxes.kennel.dev"),
        "the refusal does not name the quota: {}",
        out.stderr
    );
    // The namespace stops matching: its quota objects are removed.
    kubectl_ok(&tenant.env, &["label", "namespace", tenant.ns(), &format!("{TENANT_LABEL}-")])?;
    for _ in 0..150 {
        let quota = quotas.get_opt("kennel-tenant-quota").await?;
        let range = ranges.get_opt("kennel-tenant-limits").await?;
        if quota.is_none() && range.is_none() {
            tenant.assert_no_panic()?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the quota objects stayed after the namespace stopped matching; {}", tenant.log_hint())
}

#[tokio::test]
async fn tightening_a_policy_rechecks_the_sandboxes_it_governs() -> Result<()> {
    let tenant =
        Tenant::new("guard-recheck", "  images: {allowedPrefixes: [kennel.local/]}\n").await?;
    apply_text(&tenant.env, Some(tenant.ns()), &tenant.sleeper("drifter", ""))?;
    let accepted =
        |s: &AgentSandbox| sandbox::condition(s, "Accepted").is_some_and(|c| c.status == "True");
    sandbox::wait_for(
        &tenant.client,
        tenant.ns(),
        "drifter",
        "Accepted",
        Duration::from_mins(1),
        accepted,
    )
    .await
    .context(tenant.log_hint())?;
    let policies: Api<SandboxPolicy> = Api::all(tenant.client.clone());
    let mut policy = policies.get(tenant.ns()).await?;
    if let Some(images) = policy.spec.rules.images.as_mut() {
        images.allowed_prefixes = vec!["registry.example/approved/".to_owned()];
    }
    policies.replace(tenant.ns(), &Default::default(), &policy).await?;
    let refused = |s: &AgentSandbox| {
        sandbox::condition(s, "Accepted")
            .is_some_and(|c| c.status == "False" && c.message.contains("spec.image"))
    };
    sandbox::wait_for(
        &tenant.client,
        tenant.ns(),
        "drifter",
        "Accepted=False on spec.image",
        Duration::from_mins(1),
        refused,
    )
    .await
    .context(tenant.log_hint())?;
    tenant.assert_no_panic()
}

#[tokio::test]
async fn tenants_cannot_create_pods_without_a_sandboxing_runtime_or_write_what_fences_them()
-> Result<()> {
    let tenant = Tenant::new("guard-bypass", "").await?;
    let env = &tenant.env;
    let ns = tenant.ns();
    kubectl_ok(
        env,
        &[
            "create",
            "rolebinding",
            "agents",
            "--clusterrole=kennel-tenant",
            "--user=agent-launcher",
            "-n",
            ns,
        ],
    )?;
    let can = |verb: &str, resource: &str| -> Result<bool> {
        let out =
            kubectl(env, &["auth", "can-i", verb, resource, "-n", ns, "--as=agent-launcher"])?;
        Ok(out.stdout.trim() == "yes")
    };
    assert!(can("create", "agentsandboxes.kennel.dev")?, "a tenant cannot create sandboxes");
    assert!(can("get", "pods/log")?, "a tenant cannot read its sandboxes' logs");
    for (verb, resource) in [
        ("create", "pods"),
        ("delete", "pods"),
        ("create", "networkpolicies.networking.k8s.io"),
        ("delete", "networkpolicies.networking.k8s.io"),
        ("update", "resourcequotas"),
        ("delete", "limitranges"),
        ("create", "pods/exec"),
    ] {
        assert!(!can(verb, resource)?, "a tenant may {verb} {resource}");
    }
    // Even a user allowed to create Pods (here: any group with the rights) gets none
    // without a sandboxing RuntimeClass in a governed namespace.
    let pod = |runtime: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: bypass}}\nspec:\n{runtime}  containers:\n  \
             - {{name: c, image: {}, command: [sleep, '60']}}\n",
            env.busybox_image
        )
    };
    let file = std::env::temp_dir().join(format!("kennel-bypass-{}.yaml", std::process::id()));
    let mut refused = String::new();
    for _ in 0..60 {
        std::fs::write(&file, pod(""))?;
        let out = kubectl(
            env,
            &[
                "create",
                "--dry-run=server",
                "-n",
                ns,
                "-f",
                &file.to_string_lossy(),
                "--as=someone",
                "--as-group=system:masters",
            ],
        )?;
        if !out.success() {
            refused = out.stderr;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        refused.contains("spec.runtimeClassName"),
        "a Pod without RuntimeClass was admitted: {refused}"
    );
    std::fs::write(&file, pod("  runtimeClassName: gvisor\n"))?;
    let out = kubectl(
        env,
        &[
            "create",
            "--dry-run=server",
            "-n",
            ns,
            "-f",
            &file.to_string_lossy(),
            "--as=someone",
            "--as-group=system:masters",
        ],
    )?;
    let _ = std::fs::remove_file(&file);
    assert!(out.success(), "a gVisor Pod was refused: {}", out.stderr);
    Ok(())
}
