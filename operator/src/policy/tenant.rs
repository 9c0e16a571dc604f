//! Tenant policy: which `SandboxPolicy` governs a namespace, its rules resolved against
//! the operator's `defaultPolicy`, and the checks a sandbox must pass under it.
//!
//! Conflict rule: among the policies whose selector matches the namespace's labels, the
//! highest `priority` applies; equal priorities go to the name that sorts first. One policy
//! applies whole; fields it leaves out take the operator's `defaultPolicy` value.
//!
//! Lifetime rule: a sandbox asking for more than `maxTtl` (by `ttl` or by `expiresAt`) is
//! refused, never shortened: a silently clamped lifetime surprises the tenant at expiry.

use std::{collections::BTreeMap, time::Duration};

use chrono::TimeDelta;
use ipnet::IpNet;
use kube::core::{Selector, SelectorExt};

use crate::{
    api::{
        AgentSandbox, Isolation, PolicyRules, SandboxPolicy,
        policy::{IsolationRules, MountSourceRule, QuotaRules},
    },
    config::{Config, builtin_default_policy, parse_ttl},
    policy::{
        FieldError, Rejection, SandboxPlan,
        lifetime::to_chrono,
        paths,
        sources::{self, SourceFacts},
        tenant_env, validate,
    },
};

/// Directory names where tools look for credentials, blocked as mount paths under any home
/// (and anywhere else: a mount path with one of these as a component is refused).
pub const CREDENTIAL_DIRS: [&str; 9] =
    [".ssh", ".aws", ".docker", ".gnupg", ".netrc", ".npmrc", ".cargo", ".config", ".kube"];

/// Home directories: a mount there would drop files such as `.netrc` where tools read them.
const HOMES: [&str; 2] = ["/root", "/home"];

/// A tenant policy with every field resolved: what [`check`] and the plan apply.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantPolicy {
    /// The governing `SandboxPolicy`, or `None` for the operator's `defaultPolicy`.
    pub name: Option<String>,
    /// Isolation levels sandboxes may use.
    pub allowed_isolation: Vec<Isolation>,
    /// Isolation level of a sandbox that names none: the policy's default, else the
    /// operator's. Not always one of `allowed_isolation` when the policy sets no default:
    /// then a sandbox naming no level is refused.
    pub default_isolation: Isolation,
    /// Lifetime of a sandbox that names none (`ttl` notation).
    pub default_ttl: String,
    /// Longest lifetime, and how it was written.
    pub max_ttl: (Duration, String),
    /// Image prefixes; empty allows every image.
    pub image_prefixes: Vec<String>,
    /// Ranges allowlist entries must lie inside.
    pub allowed_cidrs: Vec<IpNet>,
    /// Ranges that stay closed, on top of the operator's.
    pub denied_cidrs: Vec<IpNet>,
    /// `ConfigMaps` that may be mounted.
    pub config_maps: MountSourceRule,
    /// Secrets that may be mounted.
    pub secrets: MountSourceRule,
    /// Claims that may be mounted.
    pub claims: MountSourceRule,
    /// Whether inputs may be writable.
    pub allow_writable: bool,
    /// Mount paths the platform blocks, normalised, besides the credential locations.
    pub blocked_paths: Vec<String>,
    /// Namespace totals, realised as a `ResourceQuota`.
    pub quota: Option<QuotaRules>,
}

impl TenantPolicy {
    /// Who set the rules, for messages: `SandboxPolicy "x"` or the operator's default.
    pub fn source(&self) -> String {
        self.name.as_ref().map_or_else(
            || "the operator's defaultPolicy".to_owned(),
            |name| format!("SandboxPolicy {name:?}"),
        )
    }

    /// The operator's configuration as this tenant sees it: its default TTL and isolation
    /// level, and its denied ranges added to the always-denied ones (carved out of wider
    /// entries).
    pub fn overlay(&self, config: &Config) -> Config {
        let mut config = config.clone();
        config.default_ttl.clone_from(&self.default_ttl);
        config.default_policy.isolation = Some(IsolationRules {
            allowed: Some(self.allowed_isolation.clone()),
            default: Some(self.default_isolation),
        });
        config.always_denied_cidrs.extend(self.denied_cidrs.iter().map(ToString::to_string));
        config
    }
}

/// The policy that governs a namespace with these labels, if any (see the module doc).
/// A policy whose selector cannot be parsed selects nothing.
pub fn select<'a, P>(labels: &BTreeMap<String, String>, policies: P) -> Option<&'a SandboxPolicy>
where
    P: IntoIterator<Item = &'a SandboxPolicy>,
{
    policies.into_iter().filter(|policy| selects(policy, labels)).min_by(|a, b| {
        b.spec.priority.cmp(&a.spec.priority).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    })
}

/// Whether the policy's selector matches these labels.
pub fn selects(policy: &SandboxPolicy, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(policy.spec.namespace_selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// Resolves a policy (or the default, for `None`) against the operator's configuration.
/// Err names what is malformed: the sandboxes it governs are refused until it is fixed.
pub fn resolve(policy: Option<&SandboxPolicy>, config: &Config) -> Result<TenantPolicy, String> {
    let empty = PolicyRules::default();
    let rules = policy.map_or(&empty, |p| &p.spec.rules);
    let fallback = &config.default_policy;
    let builtin = builtin_default_policy();
    macro_rules! pick {
        ($section:ident . $field:ident) => {
            [rules, fallback, &builtin]
                .into_iter()
                .find_map(|r| r.$section.as_ref().and_then(|s| s.$field.clone()))
        };
    }
    let allowed_isolation = pick!(isolation.allowed).unwrap_or_else(|| vec![Isolation::Gvisor]);
    let default_isolation = pick!(isolation.default).unwrap_or(Isolation::Gvisor);
    // A default the policy sets itself must be allowed (the operator's own defaultPolicy is
    // judged whole). An inherited default that the policy does not allow only refuses the
    // sandboxes that name no level (see `check`).
    let own = if policy.is_some() { rules } else { fallback };
    let sets_default = own.isolation.as_ref().is_some_and(|i| i.default.is_some());
    if (sets_default || policy.is_none()) && !allowed_isolation.contains(&default_isolation) {
        return Err("isolation.default is not one of isolation.allowed".to_owned());
    }
    let max_text = pick!(lifetime.max_ttl).unwrap_or_else(|| "1h".to_owned());
    let max = parse_ttl(&max_text).map_err(|e| format!("lifetime.maxTtl: {e}"))?;
    let default_ttl = pick!(lifetime.default_ttl).unwrap_or_else(|| config.default_ttl.clone());
    let default = parse_ttl(&default_ttl).map_err(|e| format!("lifetime.defaultTtl: {e}"))?;
    // A default above the maximum would reject every sandbox that names no lifetime.
    let default_ttl = if default > max { max_text.clone() } else { default_ttl };
    let first = |r: &PolicyRules| r.images.as_ref().map(|i| i.allowed_prefixes.clone());
    let image_prefixes = [rules, fallback].into_iter().find_map(first).unwrap_or_default();
    let cidrs = |list: Option<Vec<String>>, what: &str| -> Result<Vec<IpNet>, String> {
        list.unwrap_or_default()
            .iter()
            .map(|c| c.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| format!("{what}: {c:?}")))
            .collect()
    };
    let allowed_cidrs = cidrs(pick!(egress.allowed_cidrs), "egress.allowedCidrs is no CIDR")?;
    let denied_cidrs = cidrs(pick!(egress.denied_cidrs), "egress.deniedCidrs is no CIDR")?;
    let blocked = [rules, fallback, &builtin]
        .into_iter()
        .find_map(|r| r.blocked_mount_paths.clone())
        .unwrap_or_default();
    let blocked_paths = blocked
        .iter()
        .map(|p| paths::normalize(p).map_err(|e| format!("blockedMountPaths: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(TenantPolicy {
        name: policy.and_then(|p| p.metadata.name.clone()),
        allowed_isolation,
        default_isolation,
        default_ttl,
        max_ttl: (max, max_text),
        image_prefixes,
        allowed_cidrs,
        denied_cidrs,
        config_maps: pick!(mounts.config_maps).unwrap_or_default(),
        secrets: pick!(mounts.secrets).unwrap_or_default(),
        claims: pick!(mounts.persistent_volume_claims).unwrap_or_default(),
        allow_writable: pick!(mounts.allow_writable).unwrap_or(false),
        blocked_paths,
        quota: rules.quota.clone().or_else(|| fallback.quota.clone()),
    })
}

/// A `SandboxPolicy` that selects the namespace but cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPolicy {
    /// The policy's name.
    pub name: String,
    /// What is malformed.
    pub problem: String,
}

/// The resolved policy of a namespace with these labels, among these policies.
pub fn for_namespace<'a, P>(
    labels: &BTreeMap<String, String>,
    policies: P,
    config: &Config,
) -> Result<TenantPolicy, InvalidPolicy>
where
    P: IntoIterator<Item = &'a SandboxPolicy>,
{
    let policy = select(labels, policies);
    resolve(policy, config).map_err(|problem| InvalidPolicy {
        name: policy.and_then(|p| p.metadata.name.clone()).unwrap_or_default(),
        problem,
    })
}

/// Validates a sandbox under its tenant policy: the operator's checks with the policy's
/// defaults and denied ranges ([`TenantPolicy::overlay`]), then [`check`] with what was
/// found of the mounted objects. Every error of both is reported, at most one per field.
pub fn plan(
    sandbox: &AgentSandbox,
    config: &Config,
    tenant: &Result<TenantPolicy, InvalidPolicy>,
    found: &SourceFacts,
) -> Result<SandboxPlan, Rejection> {
    let tenant = match tenant {
        Ok(tenant) => tenant,
        Err(InvalidPolicy { name, problem }) => {
            return Err(Rejection {
                errors: vec![FieldError {
                    field: "spec".to_owned(),
                    message: format!(
                        "the SandboxPolicy {name:?} governing this namespace is invalid \
                         ({problem}); ask the platform team to fix it"
                    ),
                }],
            });
        }
    };
    let mut errors = check(sandbox, tenant, found);
    let planned = validate::plan(sandbox, &tenant.overlay(config));
    if let Err(rejection) = &planned {
        for error in &rejection.errors {
            if !errors.iter().any(|e| e.field == error.field) {
                errors.push(error.clone());
            }
        }
    }
    if errors.is_empty() { planned } else { Err(Rejection { errors }) }
}

/// Every way the sandbox breaks its tenant policy, one error per field. `found` is what the
/// operator saw of the mounted objects (see [`sources::to_read`]).
pub fn check(
    sandbox: &AgentSandbox,
    policy: &TenantPolicy,
    found: &SourceFacts,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut add = |field: String, message: String| errors.push(FieldError { field, message });
    let spec = &sandbox.spec;
    if let Some(message) = isolation_problem(sandbox, policy) {
        add("spec.isolation".into(), message);
    }
    if let Some((field, message)) = lifetime_problem(sandbox, policy) {
        add(field.into(), message);
    }
    let prefixes = &policy.image_prefixes;
    if !prefixes.is_empty() && !prefixes.iter().any(|p| spec.image.starts_with(p.as_str())) {
        add(
            "spec.image".into(),
            format!(
                "{:?} does not start with a prefix allowed by {} ({})",
                spec.image,
                policy.source(),
                prefixes.join(", ")
            ),
        );
    }
    egress_problems(sandbox, policy, &mut add);
    mount_problems(sandbox, policy, found, &mut add);
    for (i, var) in spec.env.iter().flatten().enumerate() {
        if let Some(why) = tenant_env::credential_like(&var.name) {
            add(
                format!("spec.env[{i}].name"),
                format!(
                    "{:?} looks like a credential ({why}); sandboxes get no credentials \
                     through plain env: rename it or leave it out",
                    var.name
                ),
            );
        }
    }
    errors
}

/// The isolation level in force (spec, else status, else the policy's default) against the
/// allowed levels, with a message that says where the level came from.
fn isolation_problem(sandbox: &AgentSandbox, policy: &TenantPolicy) -> Option<String> {
    let recorded = sandbox.status.as_ref().and_then(|s| s.isolation);
    let level = sandbox.spec.isolation.or(recorded).unwrap_or(policy.default_isolation);
    if policy.allowed_isolation.contains(&level) {
        return None;
    }
    let allowed: Vec<&str> = policy.allowed_isolation.iter().map(|i| i.as_str()).collect();
    let (allowed, source) = (allowed.join(", "), policy.source());
    let level = level.as_str();
    Some(if sandbox.spec.isolation.is_some() {
        format!(
            "{level:?} is not allowed by {source} (allowed: {allowed}); choose an allowed level"
        )
    } else if recorded.is_some() {
        format!(
            "{level:?}, the level chosen when this sandbox was accepted (status.isolation), is \
             no longer allowed by {source} (allowed: {allowed}); create a new sandbox"
        )
    } else {
        format!(
            "is not set, and the default level {level:?} is not allowed by {source} \
             (allowed: {allowed}); name one of the allowed levels"
        )
    })
}

/// The requested lifetime against `maxTtl`: `ttl` directly, `expiresAt` from creation.
fn lifetime_problem(
    sandbox: &AgentSandbox,
    policy: &TenantPolicy,
) -> Option<(&'static str, String)> {
    let (max, max_text) = &policy.max_ttl;
    let lifetime = sandbox.spec.lifetime.as_ref()?;
    let refuse = |what: String| {
        format!(
            "{what} is longer than the maximum lifetime {max_text} set by {}; ask for \
             {max_text} or less (lifetimes are refused, never shortened)",
            policy.source()
        )
    };
    if let Some(ttl) = lifetime.ttl.as_deref() {
        // A malformed ttl is reported by validation; here only a parsed one is judged.
        let asked = parse_ttl(ttl).ok()?;
        return (asked > *max).then(|| ("spec.lifetime.ttl", refuse(format!("{ttl:?}"))));
    }
    let at = lifetime.expires_at.as_ref().and_then(to_chrono)?;
    let created = sandbox.metadata.creation_timestamp.as_ref().and_then(to_chrono)?;
    let limit = TimeDelta::from_std(*max).ok()?;
    (at - created > limit)
        .then(|| ("spec.lifetime.expiresAt", refuse(format!("{} after creation", at - created))))
}

fn egress_problems(
    sandbox: &AgentSandbox,
    policy: &TenantPolicy,
    add: &mut impl FnMut(String, String),
) {
    let entries = sandbox.spec.network.as_ref().map(|n| n.egress.as_slice()).unwrap_or_default();
    for (i, entry) in entries.iter().enumerate() {
        // Unparsable entries are reported by validation with the text to write instead.
        let Ok(cidr) = entry.cidr.parse::<IpNet>() else { continue };
        let field = format!("spec.network.egress[{i}].cidr");
        if let Some(denied) = policy.denied_cidrs.iter().find(|d| d.contains(&cidr)) {
            add(field, format!("{cidr} lies inside {denied}, denied by {}", policy.source()));
        } else if !policy.allowed_cidrs.iter().any(|a| a.contains(&cidr)) {
            let allowed: Vec<String> =
                policy.allowed_cidrs.iter().map(ToString::to_string).collect();
            add(
                field,
                format!(
                    "{cidr} is outside the ranges {} lets an allowlist open ({})",
                    policy.source(),
                    if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
                ),
            );
        }
    }
}

fn mount_problems(
    sandbox: &AgentSandbox,
    policy: &TenantPolicy,
    found: &SourceFacts,
    add: &mut impl FnMut(String, String),
) {
    for source in sources::sources(sandbox) {
        if let Some(why) = sources::refusal(source.kind.rule(policy), &source, found) {
            add(
                format!("spec.mounts[{}].{}", source.index, source.kind.field()),
                format!(
                    "{} {:?} may not be mounted: {why} (rule of {})",
                    source.kind.as_str(),
                    source.name,
                    policy.source()
                ),
            );
        }
    }
    for (i, mount) in sandbox.spec.mounts.iter().flatten().enumerate() {
        let writable = mount.persistent_volume_claim.as_ref().is_some_and(|c| c.writable);
        if writable && !policy.allow_writable {
            add(
                format!("spec.mounts[{i}].persistentVolumeClaim.writable"),
                format!(
                    "writable inputs are not allowed by {} (mounts.allowWritable); leave \
                     writable out to mount the claim read-only",
                    policy.source()
                ),
            );
        }
        let Ok(path) = paths::normalize(&mount.mount_path) else { continue };
        if let Some(why) = blocked_path(&path, &policy.blocked_paths) {
            add(format!("spec.mounts[{i}].mountPath"), format!("{path:?} is blocked: {why}"));
        }
    }
}

/// Why a normalised mount path is blocked: a credential location, a home directory, or a
/// path the platform blocks (at, under or above it).
pub fn blocked_path(path: &str, extra: &[String]) -> Option<String> {
    if let Some(dir) = path.split('/').find(|c| CREDENTIAL_DIRS.contains(c)) {
        return Some(format!(
            "{dir} is a credential location; mount inputs elsewhere, such as /inputs"
        ));
    }
    let is_home = HOMES.contains(&path)
        || path.strip_prefix("/home/").is_some_and(|user| !user.contains('/'));
    if is_home {
        return Some(
            "it is a home directory, where tools look for credential files; mount inputs \
             elsewhere, such as /inputs"
                .to_owned(),
        );
    }
    extra
        .iter()
        .find(|b| paths::overlaps(path, b))
        .map(|b| format!("it overlaps {b}, which the platform blocks; mount inputs elsewhere"))
}
