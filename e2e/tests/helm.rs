//! The Helm chart, `charts/kennel`, proven the way a platform team uses it.
//!
//! Rendering tests (no cluster needed, only the pinned Helm): lint, the values schema,
//! least-privilege RBAC, the CRD copies, the operator accepting the chart's config, the
//! alerts naming real metrics. Cluster tests: the server accepts every rendered object,
//! and one release goes through install, a sandbox under gVisor, an upgrade, a leader
//! handover and an uninstall that leaves nothing behind.
//!
//! The cluster tests install the operator image that `e2e/images/operator.sh` builds
//! (or `KENNEL_OPERATOR_IMAGE` names). By default the release watches only its own
//! tenant namespace, so other engineers' operators on the same cluster are untouched;
//! `KENNEL_HELM_CLUSTER_WIDE=1` (set by e2e/run-all-tests.sh, which runs this last)
//! installs it cluster-wide with the chart's CRD, as a real install would.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Pod, ResourceQuota},
    networking::v1::NetworkPolicy,
};
use kennel::{api::Phase, config::Config};
use kennel_e2e::{
    ClusterEnv, TestNamespace, client,
    kubectl::{kubectl, kubectl_ok},
    sandbox,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams},
};
use serde_yaml::Value;

const RELEASE: &str = "kennel";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> String {
    repo_root().join("charts/kennel").display().to_string()
}

/// Runs the pinned Helm; fails with its output when it exits non-zero.
fn helm(args: &[&str]) -> Result<String> {
    let (ok, stdout, stderr) = helm_status(args)?;
    ensure!(ok, "helm {args:?} failed:\n{stderr}{stdout}");
    Ok(stdout)
}

fn helm_status(args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(repo_root().join("e2e/tools/helm/helm.sh"))
        .args(args)
        .output()
        .context("failed to run e2e/tools/helm/helm.sh")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `helm template` with `--set` pairs, parsed into one YAML value per object.
fn render(sets: &[&str]) -> Result<Vec<Value>> {
    let chart = chart();
    let mut args = vec!["template", RELEASE, chart.as_str(), "--namespace", "kennel-system"];
    for set in sets {
        args.extend(["--set", *set]);
    }
    let text = helm(&args)?;
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde::Deserialize::deserialize(doc).context("helm rendered invalid YAML")?;
        if !matches!(value, Value::Null) {
            objects.push(value);
        }
    }
    Ok(objects)
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn of_kind<'a>(objects: &'a [Value], wanted: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind(o) == wanted).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Every grant in a Role or `ClusterRole` that least privilege forbids, as sentences.
fn forbidden_grants(role: &Value) -> Vec<String> {
    const DANGEROUS_VERBS: [&str; 3] = ["escalate", "bind", "impersonate"];
    const DANGEROUS_RESOURCES: [&str; 6] =
        ["secrets", "pods/exec", "pods/attach", "pods/portforward", "nodes/proxy", "tokenreviews"];
    let name = role["metadata"]["name"].as_str().unwrap_or("?");
    let mut found = Vec::new();
    for rule in role["rules"].as_sequence().into_iter().flatten() {
        let (groups, resources, verbs) =
            (strings(&rule["apiGroups"]), strings(&rule["resources"]), strings(&rule["verbs"]));
        for field in [&groups, &resources, &verbs] {
            if field.iter().any(|v| v.contains('*')) {
                found.push(format!("{name}: wildcard in {rule:?}"));
            }
        }
        for verb in verbs.iter().filter(|v| DANGEROUS_VERBS.contains(&v.as_str())) {
            found.push(format!("{name}: verb {verb}"));
        }
        for res in resources.iter().filter(|r| DANGEROUS_RESOURCES.contains(&r.as_str())) {
            found.push(format!("{name}: access to {res}"));
        }
        if rule.get("nonResourceURLs").is_some() {
            found.push(format!("{name}: non-resource URLs"));
        }
    }
    found
}

fn roles(objects: &[Value]) -> Vec<&Value> {
    objects.iter().filter(|o| matches!(kind(o), "Role" | "ClusterRole")).collect()
}

#[test]
fn chart_passes_helm_lint_with_default_and_full_values() -> Result<()> {
    helm(&["lint", "--strict", &chart()])?;
    let full = [
        "replicaCount=2",
        "watchNamespace=tenant-a",
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "runtimeClasses.gvisor.create=true",
        "runtimeClasses.kata.create=true",
    ];
    let mut args = vec!["lint", "--strict"];
    let chart = chart();
    args.push(&chart);
    for set in &full {
        args.extend(["--set", *set]);
    }
    helm(&args)?;
    Ok(())
}

#[test]
fn values_schema_rejects_unknown_keys_and_wrong_types() -> Result<()> {
    for bad in ["replicaCount=0", "unknownKey=1", "config.dns.port=70000", "config.defaultTTL=1h"] {
        let (ok, _, stderr) = helm_status(&["template", RELEASE, chart().as_str(), "--set", bad])?;
        ensure!(!ok, "the schema accepted {bad}");
        ensure!(stderr.contains("schema"), "{bad} failed, but not on the schema: {stderr}");
    }
    Ok(())
}

#[test]
fn rendered_rbac_grants_nothing_least_privilege_forbids() -> Result<()> {
    let cases: [&[&str]; 3] =
        [&[], &["watchNamespace=tenant-a"], &["leaderElection.enabled=false"]];
    for sets in cases {
        let objects = render(sets)?;
        let roles = roles(&objects);
        ensure!(roles.len() >= 2, "expected the operator's roles, found {}", roles.len());
        let found: Vec<String> = roles.iter().flat_map(|r| forbidden_grants(r)).collect();
        ensure!(found.is_empty(), "forbidden grants with {sets:?}: {found:#?}");
    }
    Ok(())
}

#[test]
fn rbac_check_catches_each_kind_of_forbidden_grant() -> Result<()> {
    let bad: Value = serde_yaml::from_str(
        "kind: ClusterRole\nmetadata: {name: bad}\nrules:\n\
         - {apiGroups: [''], resources: [secrets], verbs: [get]}\n\
         - {apiGroups: [''], resources: [pods/exec], verbs: [create]}\n\
         - {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles],\n\
         \x20  verbs: [bind, escalate]}\n\
         - {apiGroups: [''], resources: [users], verbs: [impersonate]}\n\
         - {apiGroups: ['*'], resources: [pods], verbs: [get]}\n",
    )?;
    assert_eq!(forbidden_grants(&bad).len(), 6, "{:#?}", forbidden_grants(&bad));
    Ok(())
}

#[test]
fn watch_namespace_turns_sandbox_rights_into_a_role_in_that_namespace() -> Result<()> {
    let objects = render(&["watchNamespace=tenant-a"])?;
    let role = of_kind(&objects, "Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "tenant-a")
        .context("no Role in tenant-a")?;
    ensure!(serde_yaml::to_string(role)?.contains("agentsandboxes"), "Role lacks sandboxes");
    // The operator's own ClusterRoles; the tenant roles (deploy/rbac) are for people.
    let cluster_roles: Vec<_> = of_kind(&objects, "ClusterRole")
        .into_iter()
        .filter(|r| r["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
        .collect();
    ensure!(!cluster_roles.is_empty(), "no operator ClusterRole");
    ensure!(
        cluster_roles
            .iter()
            .all(|r| !serde_yaml::to_string(r).unwrap_or_default().contains("pods")),
        "a namespace-scoped install still has cluster-wide pod rights"
    );
    let args = strings(
        &of_kind(&objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    ensure!(args.contains(&"--namespace=tenant-a".to_owned()), "args: {args:?}");
    Ok(())
}

#[test]
fn operator_accepts_the_configuration_the_chart_mounts() -> Result<()> {
    let objects = render(&["config.cluster.podCidrs[0]=10.244.0.0/16", "config.defaultTtl=30m"])?;
    let map = of_kind(&objects, "ConfigMap");
    let text = map[0]["data"]["config.yaml"].as_str().context("no config.yaml")?;
    let path =
        std::env::temp_dir().join(format!("kennel-chart-config-{}.yaml", std::process::id()));
    std::fs::write(&path, text)?;
    let loaded = Config::load(Some(path.as_path()));
    let _ = std::fs::remove_file(&path);
    let config = loaded.context("the operator refuses the chart's configuration")?;
    assert_eq!(config.default_ttl, "30m");
    assert_eq!(config.cluster.pod_cidrs, vec!["10.244.0.0/16".to_owned()]);
    Ok(())
}

#[test]
fn chart_crds_match_the_generated_crds() -> Result<()> {
    let out = Command::new(repo_root().join("charts/sync.sh")).arg("--check").output()?;
    ensure!(
        out.status.success(),
        "charts/kennel/templates/crds drifted from crds/: run charts/sync.sh\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = render(&[])?;
    let crds = of_kind(&objects, "CustomResourceDefinition");
    ensure!(!crds.is_empty(), "crds.install=true renders no CRD");
    for crd in crds {
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    }
    ensure!(of_kind(&render(&["crds.install=false"])?, "CustomResourceDefinition").is_empty());
    Ok(())
}

#[test]
fn disruption_budget_exists_only_with_two_replicas() -> Result<()> {
    ensure!(of_kind(&render(&[])?, "PodDisruptionBudget").is_empty());
    ensure!(of_kind(&render(&["replicaCount=2"])?, "PodDisruptionBudget").len() == 1);
    Ok(())
}

#[test]
fn alerts_name_only_metrics_the_operator_documents() -> Result<()> {
    let docs = std::fs::read_to_string(repo_root().join("docs/metrics.md"))?;
    let objects = render(&["metrics.prometheusRule.enabled=true"])?;
    let rule = serde_yaml::to_string(of_kind(&objects, "PrometheusRule")[0])?;
    let mut named = 0;
    for word in rule.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(base) = word.strip_prefix("kennel_") {
            let metric = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| base.strip_suffix(s))
                .unwrap_or(base);
            ensure!(docs.contains(&format!("`kennel_{metric}`")), "undocumented metric {word}");
            named += 1;
        }
    }
    ensure!(named >= 3, "the rules name only {named} metrics");
    for alert in ["KennelSandboxesPastExpiry", "KennelReconcileErrors"] {
        ensure!(rule.contains(alert), "no {alert} alert");
    }
    Ok(())
}

// ---- cluster tests -------------------------------------------------------------------

/// The operator image in the cluster: `KENNEL_OPERATOR_IMAGE`, or built and imported now.
fn operator_image() -> Result<(String, String)> {
    let reference = match std::env::var("KENNEL_OPERATOR_IMAGE") {
        Ok(r) if !r.is_empty() => r,
        _ => {
            let out = Command::new(repo_root().join("e2e/images/operator.sh")).output()?;
            ensure!(
                out.status.success(),
                "e2e/images/operator.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    let (repo, tag) = reference.rsplit_once(':').context("image reference without a tag")?;
    Ok((repo.to_owned(), tag.to_owned()))
}

fn cluster_wide() -> bool {
    std::env::var("KENNEL_HELM_CLUSTER_WIDE").is_ok_and(|v| v == "1")
}

/// `--set` pairs that point the chart at the local cluster.
fn local_values(env: &ClusterEnv, image: &(String, String), watch: &str) -> Vec<String> {
    let (dns_key, dns_value) = env.dns_pod_label.split_once('=').unwrap_or(("k8s-app", "kube-dns"));
    let api_ip = env.api_server_endpoint.split(':').next().unwrap_or_default();
    vec![
        format!("image.repository={}", image.0),
        format!("image.tag={}", image.1),
        "image.pullPolicy=Never".to_owned(),
        format!("watchNamespace={watch}"),
        format!("crds.install={}", cluster_wide()),
        format!("config.dns.podLabels.{dns_key}={dns_value}"),
        format!("config.dns.port={}", env.dns_pod_port),
        format!("config.cluster.podCidrs[0]={}", env.pod_cidr),
        format!("config.cluster.serviceCidrs[0]={}", env.service_cidr),
        format!("config.cluster.apiServerCidrs[0]={api_ip}/32"),
        "logFormat=text".to_owned(),
    ]
}

fn with_sets<'a>(mut args: Vec<&'a str>, sets: &'a [String]) -> Vec<&'a str> {
    for set in sets {
        args.extend(["--set", set.as_str()]);
    }
    args
}

#[tokio::test]
async fn api_server_accepts_every_rendered_object() -> Result<()> {
    let env = ClusterEnv::load()?;
    let image = ("kennel.local/operator".to_owned(), "dry-run".to_owned());
    let mut sets = local_values(&env, &image, "");
    sets.extend(
        [
            "crds.install=true",
            "replicaCount=2",
            "runtimeClasses.gvisor.create=true",
            "runtimeClasses.gvisor.name=kennel-dry-run-gvisor",
            "runtimeClasses.kata.create=true",
            "runtimeClasses.kata.name=kennel-dry-run-kata",
        ]
        .map(str::to_owned),
    );
    let chart = chart();
    let args = with_sets(vec!["template", RELEASE, &chart, "--namespace", "default"], &sets);
    let manifest = helm(&args)?;
    let file = std::env::temp_dir().join(format!("kennel-dry-run-{}.yaml", std::process::id()));
    std::fs::write(&file, &manifest)?;
    let file_arg = file.display().to_string();
    let out = kubectl(
        &env,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "--field-manager=kennel-helm-dry-run",
            "-f",
            file_arg.as_str(),
        ],
    );
    let _ = std::fs::remove_file(&file);
    let out = out?;
    ensure!(out.success(), "the API server refused the chart:\n{}", out.stderr);
    let applied = out.stdout.lines().count();
    ensure!(applied >= 12, "only {applied} objects applied:\n{}", out.stdout);
    Ok(())
}

struct Release<'a> {
    env: &'a ClusterEnv,
    client: Client,
    namespace: String,
    sets: Vec<String>,
}

impl Release<'_> {
    fn helm(&self, verb: &str, extra: &[&str]) -> Result<String> {
        let chart = chart();
        let mut args = vec![verb, RELEASE, chart.as_str(), "--namespace", self.namespace.as_str()];
        args.extend(extra);
        helm(&with_sets(args, &self.sets))
    }

    fn deployment(&self) -> String {
        format!("deployment/{RELEASE}")
    }

    fn rollout(&self) -> Result<Duration> {
        let start = Instant::now();
        let deployment = self.deployment();
        let args = ["rollout", "status", "-n", self.namespace.as_str(), deployment.as_str()];
        kubectl_ok(self.env, &[&args[..], &["--timeout=180s"]].concat())?;
        Ok(start.elapsed())
    }

    async fn pods(&self) -> Result<Vec<Pod>> {
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(api.list(&ListParams::default().labels(&selector)).await?.items)
    }

    /// The release's Pods once none of `old` is left (terminating ones included).
    async fn pods_replacing(&self, old: &[String]) -> Result<Vec<Pod>> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let pods = self.pods().await?;
            if pods.iter().all(|p| !old.contains(&p.metadata.name.clone().unwrap_or_default())) {
                return Ok(pods);
            }
            ensure!(Instant::now() < deadline, "old Pods still present: {:?}", pod_names(&pods));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn lease_holder(&self) -> Result<Option<String>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(api.get_opt(RELEASE).await?.and_then(|l| l.spec).and_then(|s| s.holder_identity))
    }
}

/// One release's whole life on the local cluster. The steps share the release, so they
/// run in order in one test; each prints what it measured.
#[tokio::test]
async fn release_installs_runs_a_gvisor_sandbox_upgrades_hands_over_and_uninstalls_cleanly()
-> Result<()> {
    let env = ClusterEnv::load()?;
    let client = client(&env).await?;
    let system = TestNamespace::create(&client, &env, "kennel-helm").await?;
    let tenant = TestNamespace::create(&client, &env, "kennel-helm-tenant").await?;
    let image = operator_image()?;
    let watch = if cluster_wide() { String::new() } else { tenant.name.clone() };
    let mut sets = local_values(&env, &image, &watch);
    if cluster_wide() {
        adopt_existing_objects(&env, &system.name, &sets)?;
    } else {
        // Shared cluster objects stay as the other engineers' tests applied them.
        sets.extend(["admission.install=false", "tenantRoles.install=false"].map(str::to_owned));
        let crds = repo_root().join("crds").display().to_string();
        kubectl_ok(&env, &["apply", "--server-side", "-f", crds.as_str()])?;
    }
    let mut release =
        Release { env: &env, client: client.clone(), namespace: system.name.clone(), sets };

    // Adopted objects' fields belong to kubectl's field managers until Helm's server-side
    // apply takes them over.
    release.helm("install", if cluster_wide() { &["--force-conflicts"] } else { &[] })?;
    println!("install: operator Ready after {:?}", release.rollout()?);

    let mut cleanup =
        Cleanup { env: env.clone(), release_namespace: system.name.clone(), policy: None };
    let policy = govern_with_quota(&env, &client, &tenant.name).await?;
    cleanup.policy = Some(policy);
    let name = run_sandbox(&client, &tenant.name).await?;

    release.sets.push("logLevel=debug".to_owned());
    let before = pod_names(&release.pods().await?);
    release.helm("upgrade", &[])?;
    println!("upgrade: rolled out in {:?}", release.rollout()?);
    let after = release.pods_replacing(&before).await?;
    ensure!(
        after.iter().all(|p| {
            let args = p.spec.as_ref().map(|s| s.containers[0].args.clone());
            format!("{args:?}").contains("--log-level=debug")
        }),
        "the new Pods do not carry the changed value"
    );

    release.sets.push("replicaCount=2".to_owned());
    release.helm("upgrade", &[])?;
    release.rollout()?;
    let handover = kill_leader_and_time_handover(&release).await?;
    println!("leader handover after killing the leader's Pod: {handover:?}");
    ensure!(handover < Duration::from_secs(25), "handover took {handover:?}");
    sandbox::wait_for_phase(&client, &tenant.name, &name, Phase::Running, Duration::from_secs(30))
        .await?;

    helm(&["uninstall", RELEASE, "--namespace", &system.name, "--wait", "--timeout=120s"])?;
    check_uninstall_leaves_nothing(&env, &client, &system.name, &tenant.name, &name).await
}

/// Removes what a failed run would leave outside its namespaces: the release (its
/// `ClusterRoles`) and the cluster-scoped SandboxPolicy. Both steps are idempotent.
struct Cleanup {
    env: ClusterEnv,
    release_namespace: String,
    policy: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ns = self.release_namespace.as_str();
        let _ = helm_status(&["uninstall", RELEASE, "--namespace", ns, "--ignore-not-found"]);
        if let Some(policy) = &self.policy {
            let _ = kubectl(&self.env, &["delete", "sandboxpolicy", policy, "--ignore-not-found"]);
        }
    }
}

/// A SandboxPolicy (cluster-scoped, selecting only this test's tenant namespace by a
/// label) with a quota: the installed operator must realise it as a ResourceQuota,
/// which proves the chart's RBAC for the tenant controller. Returns the policy's name.
async fn govern_with_quota(env: &ClusterEnv, client: &Client, tenant: &str) -> Result<String> {
    let policy = format!("helm-{tenant}");
    kubectl_ok(
        env,
        &["label", "--overwrite", "namespace", tenant, &format!("kennel.dev/tenant={tenant}")],
    )?;
    let yaml = format!(
        "apiVersion: kennel.dev/v1alpha1\nkind: SandboxPolicy\nmetadata: {{name: {policy}}}\n\
         spec:\n  namespaceSelector:\n    matchLabels: {{kennel.dev/tenant: {tenant}}}\n\
         \x20 quota: {{sandboxes: 5, cpu: '8', memory: 16Gi, ephemeralStorage: 20Gi}}\n"
    );
    let file = std::env::temp_dir().join(format!("{policy}.yaml"));
    std::fs::write(&file, yaml)?;
    let applied = kubectl_ok(env, &["apply", "-f", &file.display().to_string()]);
    let _ = std::fs::remove_file(&file);
    applied?;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), tenant);
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=kennel");
    let start = Instant::now();
    while quotas.list(&managed).await?.items.is_empty() {
        ensure!(start.elapsed() < Duration::from_mins(1), "no ResourceQuota from {policy}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("policy: ResourceQuota in place after {:?}", start.elapsed());
    Ok(policy)
}

/// Objects applied earlier with kubectl (the CRDs, admission policies and tenant roles
/// that other tests apply) become the release's: Helm adopts an existing object only
/// when it carries the release's ownership metadata.
fn adopt_existing_objects(env: &ClusterEnv, namespace: &str, sets: &[String]) -> Result<()> {
    let chart = chart();
    let args = vec!["template", RELEASE, chart.as_str(), "--namespace", namespace];
    let manifest = helm(&with_sets(args, sets))?;
    let file = std::env::temp_dir().join(format!("kennel-adopt-{}.yaml", std::process::id()));
    std::fs::write(&file, manifest)?;
    let file_arg = file.display().to_string();
    let existing = kubectl_ok(env, &["get", "-f", &file_arg, "-o", "name", "--ignore-not-found"]);
    let _ = std::fs::remove_file(&file);
    let name = format!("meta.helm.sh/release-name={RELEASE}");
    let ns = format!("meta.helm.sh/release-namespace={namespace}");
    for object in existing?.lines().filter(|l| !l.trim().is_empty()) {
        kubectl_ok(env, &["label", "--overwrite", object, "app.kubernetes.io/managed-by=Helm"])?;
        kubectl_ok(env, &["annotate", "--overwrite", object, name.as_str(), ns.as_str()])?;
    }
    Ok(())
}

async fn run_sandbox(client: &Client, namespace: &str) -> Result<String> {
    let yaml = "apiVersion: kennel.dev/v1alpha1\nkind: AgentSandbox\n\
        metadata: {name: helm-agent}\nspec:\n  image: kennel.local/busybox:1.0\n\
        \x20 command: [sh, -c, 'sleep 3600']\n  isolation: gvisor\n  lifetime: {ttl: 15m}\n";
    let start = Instant::now();
    sandbox::create(client, namespace, yaml).await?;
    let running = sandbox::wait_for_phase(
        client,
        namespace,
        "helm-agent",
        Phase::Running,
        Duration::from_mins(2),
    )
    .await?;
    println!("sandbox: Running under the installed operator after {:?}", start.elapsed());
    let pod_name =
        running.status.as_ref().and_then(|s| s.pod_name.clone()).context("no pod name")?;
    let pod = Api::<Pod>::namespaced(client.clone(), namespace).get(&pod_name).await?;
    let class = pod.spec.and_then(|s| s.runtime_class_name);
    ensure!(class.as_deref() == Some("gvisor"), "sandbox Pod runs under {class:?}, not gvisor");
    Ok("helm-agent".to_owned())
}

fn pod_names(pods: &[Pod]) -> Vec<String> {
    pods.iter().filter_map(|p| p.metadata.name.clone()).collect()
}

/// Kills the Lease holder's Pod without a grace period (a crash: no release) and
/// measures until the standby holds the Lease.
async fn kill_leader_and_time_handover(release: &Release<'_>) -> Result<Duration> {
    let holder = wait_for_holder(release, None).await?;
    let pods = pod_names(&release.pods().await?);
    ensure!(pods.len() == 2 && pods.contains(&holder), "pods {pods:?}, holder {holder}");
    let start = Instant::now();
    let (ns, pod) = (release.namespace.as_str(), holder.as_str());
    let args = ["delete", "pod", "-n", ns, pod, "--grace-period=0", "--force", "--wait=false"];
    kubectl_ok(release.env, &args)?;
    let next = wait_for_holder(release, Some(&holder)).await?;
    let elapsed = start.elapsed();
    // The standby and the replacement Pod both wait for the Lease to expire; either may
    // win, and either is a correct handover as long as it is a live replica.
    let live = pod_names(&release.pods().await?);
    ensure!(live.contains(&next), "the Lease went to {next}, not a live replica of {live:?}");
    let role = if pods.contains(&next) { "the standby" } else { "the replacement Pod" };
    println!("leader handover: the Lease went to {role}");
    release.rollout()?;
    Ok(elapsed)
}

async fn wait_for_holder(release: &Release<'_>, not: Option<&str>) -> Result<String> {
    let deadline = Instant::now() + Duration::from_mins(1);
    while Instant::now() < deadline {
        if let Some(holder) = release.lease_holder().await?
            && Some(holder.as_str()) != not
        {
            return Ok(holder);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no new Lease holder within 60 s (previous: {not:?})")
}

/// After `helm uninstall`: the CRD and the live sandbox stay (documented); deleting the
/// sandbox without an operator still removes its Pod and NetworkPolicy (owner
/// references); no quota is left; both namespaces delete completely.
async fn check_uninstall_leaves_nothing(
    env: &ClusterEnv,
    client: &Client,
    system: &str,
    tenant: &str,
    name: &str,
) -> Result<()> {
    ensure!(kubectl(env, &["get", "crd", "agentsandboxes.kennel.dev"])?.success(), "CRD deleted");
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let kinds = "deployment,replicaset,pod,service,configmap,serviceaccount,role,rolebinding,pdb";
    wait_until_none(env, &["get", kinds, "-n", system, "-l", &selector, "-o", "name"]).await?;
    let kinds = "clusterrole,clusterrolebinding";
    wait_until_none(env, &["get", kinds, "-l", &selector, "-o", "name"]).await?;

    ensure!(sandbox::sandboxes(client, tenant).get_opt(name).await?.is_some(), "sandbox vanished");
    let start = Instant::now();
    sandbox::delete(client, tenant, name).await?;
    sandbox::wait_until_gone(client, tenant, name, Duration::from_secs(30)).await?;
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=kennel");
    let pods: Api<Pod> = Api::namespaced(client.clone(), tenant);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), tenant);
    loop {
        let (p, n) =
            (pods.list(&managed).await?.items.len(), policies.list(&managed).await?.items.len());
        if p == 0 && n == 0 {
            break;
        }
        ensure!(start.elapsed() < Duration::from_mins(1), "{p} Pods, {n} NetworkPolicies orphaned");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The quota belongs to the SandboxPolicy, which the kept CRD keeps: it stays, and
    // goes with the namespace below.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), tenant);
    ensure!(quotas.list(&managed).await?.items.len() == 1, "the policy's quota vanished");
    println!("uninstall: sandbox children gone {:?} after deleting the sandbox", start.elapsed());

    for ns in [tenant, system] {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        api.delete(ns, &DeleteParams::default()).await?;
        let deadline = Instant::now() + Duration::from_secs(90);
        while api.get_opt(ns).await?.is_some() {
            ensure!(Instant::now() < deadline, "namespace {ns} stuck terminating");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Polls a `kubectl get -o name` until it lists nothing (Pods take a moment to go).
async fn wait_until_none(env: &ClusterEnv, args: &[&str]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let left = kubectl_ok(env, args)?;
        if left.trim().is_empty() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "uninstall left behind:\n{left}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
