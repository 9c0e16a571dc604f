//! The hostile-input matrix: malformed or hostile `AgentSandbox` specs, each of which must be
//! refused by `kubectl apply` (schema, strict field validation or an admission policy) or
//! end with `Accepted=False`, in both cases with a message naming the field.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use kennel::api::AgentSandbox;
use kennel_e2e::{ClusterEnv, sandbox};

use crate::{Tenant, apply_output};

/// One hostile spec.
struct Case {
    /// Short name, also the sandbox's name unless the case is about names.
    id: String,
    /// What the case tries, for the table.
    what: &'static str,
    /// Lines under `spec:` (two-space indent), replacing the image line when they set one.
    extra: String,
    /// Text the refusal must contain: the field.
    field: String,
    /// `metadata.name` when the case is about the name itself.
    name: Option<String>,
}

/// What became of one case.
pub struct Outcome {
    /// Case id.
    pub case: String,
    /// What it tried.
    pub what: &'static str,
    /// Where it was stopped.
    pub stage: String,
    /// The field named.
    pub field: String,
    /// The refusal's message (first line).
    pub message: String,
    /// Refused or rejected, with the field named.
    pub ok: bool,
}

/// The policy of the matrix's namespace: gVisor only, at most 30 minutes, images under
/// `kennel.local/`, no cluster ranges, ConfigMaps `inputs` and `task-*`, Secrets `task-*`
/// labelled `kennel.dev/input=true`, claims `shared-*`, nothing writable.
pub fn policy_rules(env: &ClusterEnv) -> String {
    let api = env.api_server_endpoint.rsplit_once(':').map_or("", |(ip, _)| ip);
    format!(
        "  isolation: {{allowed: [gvisor]}}\n  lifetime: {{defaultTtl: 10m, maxTtl: 30m}}\n  \
         images: {{allowedPrefixes: [kennel.local/]}}\n  egress:\n    allowedCidrs: [0.0.0.0/0]\n    \
         deniedCidrs: [{}, {}, {api}/32]\n  mounts:\n    configMaps: {{allowed: true, names: [inputs, task-*]}}\n    \
         secrets: {{allowed: true, names: [task-*], matchLabels: {{kennel.dev/input: 'true'}}}}\n    \
         persistentVolumeClaims: {{allowed: true, names: [shared-*]}}\n    allowWritable: false\n  \
         blockedMountPaths: [/etc/kennel]\n",
        env.pod_cidr, env.service_cidr
    )
}

fn case(id: &str, what: &'static str, extra: &str, field: &str) -> Case {
    Case { id: id.to_owned(), what, extra: extra.to_owned(), field: field.to_owned(), name: None }
}

fn mount(path: &str) -> String {
    format!("  mounts:\n  - {{name: m, mountPath: '{path}', configMap: {{name: inputs}}}}\n")
}

fn env_var(name: &str) -> String {
    format!("  env:\n  - {{name: {name}, value: x}}\n")
}

fn egress(cidr: &str) -> String {
    format!("  network:\n    egress:\n    - {{cidr: '{cidr}'}}\n")
}

#[allow(clippy::too_many_lines)] // a table, one line per case
fn cases(env: &ClusterEnv) -> Vec<Case> {
    let api = env.api_server_endpoint.rsplit_once(':').map_or("", |(ip, _)| ip);
    let long_label = |c: char| c.to_string().repeat(63);
    let name_253 =
        format!("{}.{}.{}.{}", long_label('a'), long_label('b'), long_label('c'), "d".repeat(61));
    let name_254 = format!("{name_253}d");
    let many_env = (0..129).fold(String::new(), |mut text, i| {
        let _ = writeln!(text, "  - {{name: V{i}, value: x}}");
        text
    });
    let mut cases = vec![
        case(
            "hostpath-mount",
            "hostPath as a mount source",
            "  mounts:\n  - {name: h, mountPath: /host, hostPath: {path: /}}\n",
            "spec.mounts[0].hostPath",
        ),
        case(
            "hostpath-volume",
            "hostPath as a Pod volume",
            "  volumes:\n  - {name: h, hostPath: {path: /}}\n",
            "spec.volumes",
        ),
        case(
            "privileged",
            "privileged container",
            "  securityContext: {privileged: true}\n",
            "spec.securityContext",
        ),
        case(
            "capabilities",
            "added capabilities (SYS_ADMIN)",
            "  capabilities: {add: [SYS_ADMIN]}\n",
            "spec.capabilities",
        ),
        case("run-as-root", "runAsUser: 0", "  runAsUser: 0\n", "spec.runAsUser"),
        case("host-network", "hostNetwork", "  hostNetwork: true\n", "spec.hostNetwork"),
        case("host-pid", "hostPID", "  hostPID: true\n", "spec.hostPID"),
        case("host-ipc", "hostIPC", "  hostIPC: true\n", "spec.hostIPC"),
        case(
            "host-port",
            "hostPort",
            "  ports: [{containerPort: 22, hostPort: 22}]\n",
            "spec.ports",
        ),
        case(
            "subpath",
            "subPath escaping the mount",
            "  mounts:\n  - {name: s, mountPath: /in, subPath: ../../etc, configMap: {name: inputs}}\n",
            "spec.mounts[0].subPath",
        ),
        case(
            "projected-token",
            "projected service-account token",
            "  mounts:\n  - {name: t, mountPath: /var/run/secrets/tokens, projected: {sources: [{serviceAccountToken: {path: token}}]}}\n",
            "spec.mounts[0].projected",
        ),
        case(
            "automount-token",
            "automountServiceAccountToken",
            "  automountServiceAccountToken: true\n",
            "spec.automountServiceAccountToken",
        ),
        case(
            "secret-not-allowed",
            "a Secret outside the allowed names",
            "  mounts:\n  - {name: s, mountPath: /s, secret: {secretName: db}}\n",
            "spec.mounts[].secret.secretName",
        ),
        case(
            "secret-label-mismatch",
            "a Secret of an allowed name without the required label",
            "  mounts:\n  - {name: s, mountPath: /s, secret: {secretName: task-plain}}\n",
            "spec.mounts[0].secret.secretName",
        ),
        case(
            "secret-sa-token",
            "a Secret holding a service-account token",
            "  mounts:\n  - {name: s, mountPath: /s, secret: {secretName: task-token}}\n",
            "spec.mounts[0].secret.secretName",
        ),
        case(
            "claim-writable",
            "a writable claim where the policy allows none",
            "  mounts:\n  - {name: d, mountPath: /d, persistentVolumeClaim: {claimName: shared-data, writable: true}}\n",
            "spec.mounts[].persistentVolumeClaim.writable",
        ),
        case(
            "unknown-field",
            "unknown top-level field",
            "  sidecars: [{image: evil}]\n",
            "spec.sidecars",
        ),
        case(
            "cred-root-ssh",
            "mount at /root/.ssh",
            &mount("/root/.ssh"),
            "spec.mounts[].mountPath",
        ),
        case(
            "cred-home-aws",
            "mount at /home/agent/.aws",
            &mount("/home/agent/.aws"),
            "spec.mounts[].mountPath",
        ),
        case(
            "cred-docker",
            "mount at /opt/app/.docker",
            &mount("/opt/app/.docker"),
            "spec.mounts[].mountPath",
        ),
        case(
            "cred-kube",
            "mount under /home/agent/.kube/cache",
            &mount("/home/agent/.kube/cache"),
            "spec.mounts[].mountPath",
        ),
        case(
            "cred-home",
            "mount over a home directory",
            &mount("/home/agent"),
            "spec.mounts[].mountPath",
        ),
        case(
            "cred-sneaky-path",
            "credential path written with double slashes",
            &mount("//root//.netrc"),
            "spec.mounts[].mountPath",
        ),
        case("env-github", "env GITHUB_TOKEN", &env_var("GITHUB_TOKEN"), "spec.env[].name"),
        case(
            "env-aws",
            "env AWS_SECRET_ACCESS_KEY",
            &env_var("AWS_SECRET_ACCESS_KEY"),
            "spec.env[].name",
        ),
        case("env-api-key", "env OPENAI_API_KEY", &env_var("OPENAI_API_KEY"), "spec.env[].name"),
        case(
            "env-lowercase",
            "env db_password (lower case)",
            &env_var("db_password"),
            "spec.env[].name",
        ),
        case("env-invalid", "env name starting with a digit", &env_var("1BAD"), "spec.env[0].name"),
        case(
            "env-duplicate",
            "the same env name twice",
            "  env:\n  - {name: A, value: one}\n  - {name: A, value: two}\n",
            "spec.env[1].name",
        ),
        case("env-too-many", "129 env entries", &format!("  env:\n{many_env}"), "spec.env"),
        case(
            "image-registry",
            "image outside the allowed prefixes",
            "  image: docker.io/library/busybox:1.36\n",
            "spec.image",
        ),
        case(
            "image-lookalike",
            "image on a look-alike registry host",
            "  image: kennel.local.attacker.test/busybox:1\n",
            "spec.image",
        ),
        case(
            "image-space",
            "image with a space",
            "  image: 'kennel.local/busybox 1'\n",
            "spec.image",
        ),
        case("image-empty", "empty image", "  image: ''\n", "spec.image"),
        case(
            "ttl-past-max",
            "ttl of a day past a 30m maximum",
            "  lifetime: {ttl: 1d}\n",
            "spec.lifetime.ttl",
        ),
        case(
            "ttl-absurd",
            "ttl of 10^15 days",
            "  lifetime: {ttl: 999999999999999d}\n",
            "spec.lifetime.ttl",
        ),
        case("ttl-zero", "ttl of zero", "  lifetime: {ttl: 0s}\n", "spec.lifetime.ttl"),
        case(
            "ttl-unit",
            "ttl with an unknown unit",
            "  lifetime: {ttl: 2w}\n",
            "spec.lifetime.ttl",
        ),
        case(
            "ttl-split-days",
            "ttl with days written twice",
            "  lifetime: {ttl: 0d1d}\n",
            "spec.lifetime.ttl",
        ),
        case(
            "expires-far",
            "expiresAt in 2100",
            "  lifetime: {expiresAt: '2100-01-01T00:00:00Z'}\n",
            "spec.lifetime.expiresAt",
        ),
        case(
            "expires-past",
            "expiresAt before creation",
            "  lifetime: {expiresAt: '2001-01-01T00:00:00Z'}\n",
            "spec.lifetime.expiresAt",
        ),
        case(
            "lifetime-both",
            "both ttl and expiresAt",
            "  lifetime: {ttl: 5m, expiresAt: '2100-01-01T00:00:00Z'}\n",
            "spec.lifetime",
        ),
        case(
            "cpu-negative",
            "negative cpu",
            "  resources: {limits: {cpu: '-1'}}\n",
            "spec.resources.limits.cpu",
        ),
        case(
            "memory-absurd",
            "memory of 999999Ei",
            "  resources: {limits: {memory: 999999Ei}}\n",
            "spec.resources.limits.memory",
        ),
        case(
            "request-over-limit",
            "cpu request above its limit",
            "  resources: {requests: {cpu: '2'}, limits: {cpu: 500m}}\n",
            "spec.resources",
        ),
        case(
            "workspace-zero",
            "workspace of size 0",
            "  workspace: {size: '0'}\n",
            "spec.workspace.size",
        ),
        case(
            "workspace-absurd",
            "workspace of 10^6 Ti",
            "  workspace: {size: 1000000Ti}\n",
            "spec.workspace.size",
        ),
        case(
            "cidr-invalid",
            "egress to a non-CIDR",
            &egress("not-a-cidr"),
            "spec.network.egress[].cidr",
        ),
        case(
            "cidr-host-bits",
            "egress CIDR with host bits",
            &egress("203.0.113.7/24"),
            "spec.network.egress[0].cidr",
        ),
        case(
            "egress-metadata",
            "egress to 169.254.169.254",
            &egress("169.254.169.254/32"),
            "spec.network.egress[].cidr",
        ),
        case(
            "egress-metadata-v6",
            "egress to IPv4-mapped metadata",
            &egress("::ffff:169.254.169.254/128"),
            "spec.network.egress[].cidr",
        ),
        case(
            "egress-apiserver",
            "egress to the API server endpoint",
            &egress(&format!("{api}/32")),
            "spec.network.egress[].cidr",
        ),
        case(
            "egress-apiserver-svc",
            "egress to the API server Service IP",
            &egress(&format!("{}/32", env.api_server_service_ip)),
            "spec.network.egress[].cidr",
        ),
        case(
            "egress-pod-range",
            "egress to the pod range",
            &egress(&env.pod_cidr),
            "spec.network.egress[].cidr",
        ),
        case(
            "egress-ipv6-outside",
            "egress to an IPv6 range the policy does not allow",
            &egress("2001:db8::/32"),
            "spec.network.egress[].cidr",
        ),
        case(
            "egress-port-zero",
            "egress port 0",
            "  network:\n    egress:\n    - {cidr: 203.0.113.0/24, ports: [{port: 0}]}\n",
            "spec.network.egress[0].ports[0].port",
        ),
        case(
            "egress-port-high",
            "egress port 70000",
            "  network:\n    egress:\n    - {cidr: 203.0.113.0/24, ports: [{port: 70000}]}\n",
            "spec.network.egress[0].ports[0].port",
        ),
        case(
            "isolation-kata",
            "isolation the policy does not allow",
            "  isolation: kata\n",
            "spec.isolation",
        ),
        case(
            "isolation-runc",
            "isolation runc (no sandbox)",
            "  isolation: runc\n",
            "spec.isolation",
        ),
        case("mount-proc", "mount over /proc", &mount("/proc/sys"), "spec.mounts[0].mountPath"),
        case("mount-relative", "relative mount path", &mount("etc"), "spec.mounts[0].mountPath"),
        case(
            "mount-dotdot",
            "mount path with ..",
            &mount("/in/../etc"),
            "spec.mounts[0].mountPath",
        ),
        case(
            "mount-workspace",
            "mount hiding the workspace",
            &mount("/"),
            "spec.mounts[0].mountPath",
        ),
        case(
            "mount-two-sources",
            "mount with two sources",
            "  mounts:\n  - {name: m, mountPath: /in, configMap: {name: inputs}, persistentVolumeClaim: {claimName: c}}\n",
            "spec.mounts[0]",
        ),
        case(
            "configmap-not-allowed",
            "ConfigMap outside the allowed names",
            "  mounts:\n  - {name: m, mountPath: /in, configMap: {name: kube-root-ca.crt}}\n",
            "spec.mounts[].configMap.name",
        ),
        case(
            "claim-not-allowed",
            "PVC where the policy allows none",
            "  mounts:\n  - {name: m, mountPath: /in, persistentVolumeClaim: {claimName: data}}\n",
            "spec.mounts[].persistentVolumeClaim.claimName",
        ),
        case(
            "blocked-path",
            "mount under a path the platform blocks",
            &mount("/etc/kennel/conf"),
            "spec.mounts[].mountPath",
        ),
    ];
    cases.push(Case {
        name: Some(name_253),
        ..case(
            "name-253-persistent",
            "253-character name with a persistent workspace",
            "  workspace: {persistent: true}\n",
            "metadata.name",
        )
    });
    cases.push(Case {
        name: Some(name_254),
        ..case("name-254", "254-character name", "", "metadata.name")
    });
    cases
}

/// The manifest of a case: the sleeper, with the case's lines (and image, name) applied.
fn manifest(tenant: &Tenant, case: &Case) -> String {
    let name = case.name.clone().unwrap_or_else(|| case.id.clone());
    let text = tenant.sleeper(&name, &case.extra);
    if case.extra.trim_start().starts_with("image:") {
        // The case's own image line replaces the sleeper's.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.retain(|l| !l.starts_with(&format!("  image: {}", tenant.env.busybox_image)));
        return lines.join("\n") + "\n";
    }
    text
}

/// The Secrets some cases name: one of an allowed name without the required label, and a
/// labelled service-account token.
const SECRETS: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: task-plain}\n\
    stringData: {x: plain}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: task-token\n  \
    labels: {kennel.dev/input: 'true'}\n  annotations: {kubernetes.io/service-account.name: default}\n\
    type: kubernetes.io/service-account-token\n";

/// Applies every case as a tenant would, then waits for the admitted ones to be rejected.
pub async fn run(tenant: &Tenant) -> Result<Vec<Outcome>> {
    crate::apply_text(&tenant.env, Some(tenant.ns()), SECRETS)?;
    let mut outcomes = Vec::new();
    let mut admitted = Vec::new();
    for case in cases(&tenant.env) {
        let out = apply_output(&tenant.env, Some(tenant.ns()), &manifest(tenant, &case), false)?;
        if out.success() {
            admitted.push(case);
            continue;
        }
        let stage = if out.stderr.contains("ValidatingAdmissionPolicy 'kennel-sandbox-object'") {
            "apply: VAP kennel-sandbox-object"
        } else if out.stderr.contains("ValidatingAdmissionPolicy 'kennel-tenant-policy'") {
            "apply: VAP kennel-tenant-policy"
        } else if out.stderr.contains("unknown field") {
            "apply: strict schema (unknown field)"
        } else {
            "apply: CRD schema"
        };
        outcomes.push(Outcome {
            ok: out.stderr.contains(&case.field),
            message: excerpt(&out.stderr, &case.field),
            case: case.id,
            what: case.what,
            stage: stage.to_owned(),
            field: case.field,
        });
    }
    for case in admitted {
        outcomes.push(rejected(tenant, case).await?);
    }
    // The table stays the same from run to run: no namespace suffix, no creation time.
    for outcome in &mut outcomes {
        outcome.message = outcome.message.replace(tenant.ns(), "guard-matrix-<id>");
        if let Some(at) = outcome.message.find("was created (") {
            let from = at + "was created (".len();
            if let Some(len) = outcome.message[from..].find(')') {
                outcome.message.replace_range(from..from + len, "<creation time>");
            }
        }
    }
    Ok(outcomes)
}

/// Waits for an admitted case to show `Accepted=False`, and judges its message.
async fn rejected(tenant: &Tenant, case: Case) -> Result<Outcome> {
    let name = case.name.clone().unwrap_or_else(|| case.id.clone());
    let refused = |s: &AgentSandbox| {
        sandbox::condition(s, "Accepted").is_some_and(|c| c.status == "False")
            || sandbox::condition(s, "Accepted").is_some_and(|c| c.status == "True")
    };
    let seen = sandbox::wait_for(
        &tenant.client,
        tenant.ns(),
        &name,
        "a verdict",
        Duration::from_mins(1),
        refused,
    )
    .await
    .context(tenant.log_hint());
    let (ok, stage, message) = match seen {
        Ok(sandbox) => {
            let condition = sandbox::condition(&sandbox, "Accepted").context("no Accepted")?;
            let phase = sandbox::phase(&sandbox).map_or("none", |p| p.as_str());
            let ok = condition.status == "False" && condition.message.contains(&case.field);
            (ok, format!("operator: {phase}, {}", condition.reason), condition.message.clone())
        }
        Err(error) => (false, "no verdict".to_owned(), error.to_string()),
    };
    let message = excerpt(&message, &case.field);
    Ok(Outcome { case: case.id, what: case.what, stage, field: case.field, message, ok })
}

/// The part of a refusal that names `field` (or its first line), short, table-safe.
fn excerpt(text: &str, field: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // From the clause that names the field: after the `: ` before it, if any.
    let at = flat.find(field).unwrap_or(0);
    let start = flat[..at].rfind(": ").map_or(at, |colon| colon + 2);
    let cut: String = flat[start..].chars().take(220).collect();
    cut.replace('|', "\\|")
}

/// Writes the table of outcomes into `docs/security.md`, between its matrix markers.
pub fn write_table(outcomes: &[Outcome]) -> Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
    let doc = std::fs::read_to_string(&path).context("docs/security.md is missing")?;
    let (begin, end) = ("<!-- matrix:begin -->", "<!-- matrix:end -->");
    let (Some(start), Some(stop)) = (doc.find(begin), doc.find(end)) else {
        anyhow::bail!("docs/security.md lacks the {begin} / {end} markers");
    };
    let refused_at_apply = outcomes.iter().filter(|o| o.stage.starts_with("apply")).count();
    let mut table = format!(
        "{begin}\n{} cases: {} refused at `kubectl apply`, {} rejected by the operator, {} not \
         refused with the field named.\n\n| # | Case | Tried | Stopped by | Field named | Message, from the field named |\n|---|---|---|---|---|---|\n",
        outcomes.len(),
        refused_at_apply,
        outcomes.len() - refused_at_apply,
        outcomes.iter().filter(|o| !o.ok).count(),
    );
    for (i, o) in outcomes.iter().enumerate() {
        let mark = if o.ok { "yes" } else { "**NO**" };
        let _ = writeln!(
            table,
            "| {} | `{}` | {} | {} | {mark}: `{}` | {} |",
            i + 1,
            o.case,
            o.what,
            o.stage,
            o.field,
            o.message
        );
    }
    let updated = format!("{}{table}{}", &doc[..start], &doc[stop..]);
    if updated != doc {
        std::fs::write(&path, updated)?;
    }
    Ok(())
}
