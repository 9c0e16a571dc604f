//! The `SandboxPolicy` resource: a platform team's guardrails for the sandboxes of the
//! namespaces it selects.
//!
//! Exactly one policy applies to a namespace: among the policies whose `namespaceSelector`
//! matches its labels, the one with the highest `priority`, ties broken by the smallest
//! name. Policies are never merged: a field a policy leaves out takes the value of the
//! operator's `defaultPolicy`, never another policy's. Namespaces no policy selects get the
//! operator's `defaultPolicy` as a whole.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::api::Isolation;

/// Guardrails for every AgentSandbox in the namespaces this policy selects: which isolation
/// levels, how long sandboxes live, how much they may consume together, which images,
/// which egress ranges, which mount sources and paths.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kennel.dev",
    version = "v1alpha1",
    kind = "SandboxPolicy",
    shortname = "sbp",
    category = "kennel",
    doc = "Guardrails for the AgentSandboxes of the namespaces this policy selects.",
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"MaxTTL","type":"string","jsonPath":".spec.lifetime.maxTtl"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPolicySpec {
    /// Namespaces this policy governs, by label. An empty selector selects every namespace.
    pub namespace_selector: LabelSelector,

    /// Decides between policies that select the same namespace: the highest priority
    /// applies, and between equal priorities the policy whose name sorts first. Policies
    /// are never merged.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,

    /// The rules. Every field left out takes the operator's `defaultPolicy` value.
    #[serde(flatten)]
    pub rules: PolicyRules,
}

/// The rules of a tenant policy; shared by `SandboxPolicy` and the operator's
/// `defaultPolicy`. Every section is optional: a missing one falls back to the default.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRules {
    /// Which isolation levels sandboxes may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationRules>,
    /// Default and maximum lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<LifetimeRules>,
    /// What the sandboxes of one namespace may consume together, realised as a
    /// ResourceQuota and a LimitRange in each selected namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaRules>,
    /// Which images sandboxes may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageRules>,
    /// Which address ranges an egress allowlist may open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressRules>,
    /// Which volume sources sandboxes may mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<MountRules>,
    /// Container paths no mount may use, added to the built-in credential locations
    /// (`.ssh`, `.aws`, `.docker`, `.gnupg`, `.netrc`, `.npmrc`, `.cargo`, `.config`,
    /// `.kube` under any home). A mount is refused at, under or above any of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    #[x_kube(validation = Rule::new("self.all(p, p.startsWith('/') && !p.contains('..'))")
        .message("blockedMountPaths must be absolute paths without '..'"))]
    pub blocked_mount_paths: Option<Vec<String>>,
}

/// Allowed isolation levels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "!has(self.default) || !has(self.allowed) || self.allowed.exists(a, a == self.default)")
    .message("isolation.default must be one of isolation.allowed"))]
pub struct IsolationRules {
    /// Levels sandboxes may ask for (`gvisor`, `kata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2))]
    pub allowed: Option<Vec<Isolation>>,
    /// Level of a sandbox that names none; one of `allowed`. Left out, the operator's
    /// `defaultPolicy` default applies, and a sandbox naming no level is refused if that is
    /// not one of `allowed`. The level chosen is recorded in the sandbox's
    /// `status.isolation` and never changes for it, whatever this field later says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Isolation>,
}

/// Default and maximum lifetime, written like an AgentSandbox's `ttl` (`30m`, `8h`, `2d`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LifetimeRules {
    /// Lifetime of a sandbox that names none. Never above `maxTtl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(s|m|h|d))+$')")
        .message("defaultTtl must look like 90s, 30m, 2h or 1d"))]
    #[schemars(length(max = 32))]
    pub default_ttl: Option<String>,
    /// Longest lifetime a sandbox may ask for, by `ttl` or by `expiresAt`. A longer one is
    /// refused (never shortened in silence): the sandbox ends `Rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(s|m|h|d))+$')")
        .message("maxTtl must look like 90s, 30m, 2h or 1d"))]
    #[schemars(length(max = 32))]
    pub max_ttl: Option<String>,
}

/// Totals for one namespace. Each field left out is not limited.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaRules {
    /// Most AgentSandboxes in the namespace (also the most Pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100_000))]
    pub sandboxes: Option<i64>,
    /// Total CPU requested and total CPU limits (`8`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::api::QUANTITY_PATTERN))]
    pub cpu: Option<String>,
    /// Total memory requested and total memory limits (`16Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::api::QUANTITY_PATTERN))]
    pub memory: Option<String>,
    /// Total ephemeral storage requested (`20Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::api::QUANTITY_PATTERN))]
    pub ephemeral_storage: Option<String>,
}

/// Allowed images.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRules {
    /// Prefixes an image reference must start with (`registry.example/agents/`). Empty
    /// allows every image. Write a prefix that ends with `/` or `:`, or a registry host
    /// named `registry.example` also admits `registry.example.attacker.test`.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub allowed_prefixes: Vec<String>,
}

/// Egress bounds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRules {
    /// Every allowlist entry of a sandbox must lie inside one of these ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))")
        .message("allowedCidrs entries must be CIDRs such as 203.0.113.0/24"))]
    pub allowed_cidrs: Option<Vec<String>>,
    /// Ranges that stay closed: an entry inside one is refused, and one that contains it
    /// gets it carved out (`except`). Added to the operator's always-denied ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))")
        .message("deniedCidrs entries must be CIDRs such as 10.0.0.0/8"))]
    pub denied_cidrs: Option<Vec<String>>,
}

/// Allowed volume sources.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountRules {
    /// Which ConfigMaps may be mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_maps: Option<MountSourceRule>,
    /// Which Secrets may be mounted (read-only). A Secret that holds a service-account
    /// token (annotated `kubernetes.io/service-account.name`) is refused whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<MountSourceRule>,
    /// Which PersistentVolumeClaims may be mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claims: Option<MountSourceRule>,
    /// Whether a PersistentVolumeClaim mount may ask to be writable (`writable: true`).
    /// ConfigMaps and Secrets are always read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_writable: Option<bool>,
}

/// Which objects of one kind may be mounted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountSourceRule {
    /// Whether this kind of source may be mounted at all.
    #[serde(default)]
    pub allowed: bool,
    /// Names that may be mounted; a trailing `*` matches any suffix. Empty allows every
    /// name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub names: Vec<String>,
    /// Labels the object must carry, besides matching `names`. The operator reads the
    /// object's metadata (never its data) to check them; while the object does not exist
    /// the sandbox waits `Pending`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}
