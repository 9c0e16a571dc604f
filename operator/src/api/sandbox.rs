//! The `AgentSandbox` resource: a tenant's request for one disposable, fenced agent Pod.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Fields that shape the Pod cannot change once the sandbox exists: the Pod is immutable,
/// and `expiresAt` is computed once from the lifetime. Only `network` may change. An unset
/// `isolation` cannot be set later either: the level chosen for it is fixed in status.
const IMMUTABLE_SPEC: &str = "self.image == oldSelf.image \
    && has(self.isolation) == has(oldSelf.isolation) \
    && (!has(self.isolation) || self.isolation == oldSelf.isolation) \
    && has(self.command) == has(oldSelf.command) \
    && (!has(self.command) || self.command == oldSelf.command) \
    && has(self.args) == has(oldSelf.args) && (!has(self.args) || self.args == oldSelf.args) \
    && has(self.env) == has(oldSelf.env) && (!has(self.env) || self.env == oldSelf.env) \
    && has(self.workingDir) == has(oldSelf.workingDir) \
    && (!has(self.workingDir) || self.workingDir == oldSelf.workingDir) \
    && has(self.resources) == has(oldSelf.resources) \
    && (!has(self.resources) || self.resources == oldSelf.resources) \
    && has(self.workspace) == has(oldSelf.workspace) \
    && (!has(self.workspace) || self.workspace == oldSelf.workspace) \
    && has(self.mounts) == has(oldSelf.mounts) \
    && (!has(self.mounts) || self.mounts == oldSelf.mounts) \
    && has(self.lifetime) == has(oldSelf.lifetime) \
    && (!has(self.lifetime) || self.lifetime == oldSelf.lifetime)";

/// An AgentSandbox runs one AI coding agent in a disposable Pod under a sandboxing runtime
/// (gVisor unless the tenant's policy says otherwise), with a default-deny network,
/// read-only inputs, a size-limited workspace and a fixed lifetime after which everything
/// is removed.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kennel.dev",
    version = "v1alpha1",
    kind = "AgentSandbox",
    namespaced,
    shortname = "asb",
    status = "AgentSandboxStatus",
    category = "kennel",
    doc = "A disposable, fenced Pod for one AI coding agent. See spec for what it may do.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Isolation","type":"string","jsonPath":".status.isolation"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(IMMUTABLE_SPEC).message(
    "only spec.network can change after creation; delete the sandbox and create a new one"
))]
#[serde(rename_all = "camelCase")]
pub struct AgentSandboxSpec {
    /// Container image the agent runs in. It must already be present on the node or be
    /// pullable by the cluster; the tenant's policy may restrict it to approved prefixes.
    #[x_kube(validation = Rule::new("self.size() > 0 && !self.contains(' ')")
        .message("image must be a non-empty image reference without spaces"))]
    #[schemars(length(max = 512))]
    pub image: String,

    /// Entrypoint array, replacing the image's ENTRYPOINT. Not run in a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub command: Option<Vec<String>>,

    /// Arguments to the entrypoint, replacing the image's CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub args: Option<Vec<String>>,

    /// Plain environment variables for the agent. Values are literal: references to
    /// Secrets, ConfigMaps or Pod fields are not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub env: Option<Vec<EnvVar>>,

    /// Working directory of the agent. Defaults to the workspace mount path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub working_dir: Option<String>,

    /// Isolation level: `gvisor` (a user-space kernel) or `kata` (a micro-VM). Left out, the
    /// tenant's SandboxPolicy `isolation.default` applies, else the operator's (`gvisor`
    /// unless configured otherwise); the level chosen is recorded in `status.isolation` and
    /// kept for the sandbox's life. The operator maps each level to a RuntimeClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,

    /// CPU, memory and ephemeral storage. Requests and limits are always set on the Pod:
    /// whatever is left out here comes from the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<SandboxResources>,

    /// The agent's workspace: the only writable place besides a size-limited `/tmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,

    /// Extra inputs: ConfigMaps, Secrets and PersistentVolumeClaims, as the tenant's policy
    /// allows. Read-only, except a claim that asks to be writable where the policy allows
    /// it. Host paths and projected volumes are never accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub mounts: Option<Vec<Mount>>,

    /// Network access. Ingress is always closed; egress is denied except cluster DNS and
    /// the allowlist given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,

    /// How long the sandbox lives and what happens when it expires. Without it the
    /// operator's default TTL applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Lifetime>,
}

/// One plain environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct EnvVar {
    /// Variable name: letters, digits and underscores, not starting with a digit.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')")
        .message("env names must match ^[A-Za-z_][A-Za-z0-9_]*$"))]
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Literal value.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub value: String,
}

/// Isolation level of the sandbox: which kernel boundary sits between the agent and the
/// node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// gVisor: the agent's system calls are served by a user-space kernel.
    #[default]
    Gvisor,
    /// Kata Containers: the agent runs in a lightweight virtual machine.
    Kata,
}

impl Isolation {
    /// The lowercase name used in the API and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Gvisor => "gvisor",
            Isolation::Kata => "kata",
        }
    }
}

/// Compute resources. Quantities use the Kubernetes notation (`500m`, `1Gi`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxResources {
    /// Guaranteed amounts. Defaults to the operator's default requests, capped at the
    /// limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// Hard caps. Defaults to the operator's default limits, raised to the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// An amount of each resource a sandbox consumes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU, in cores (`2`) or millicores (`500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::api::QUANTITY_PATTERN))]
    pub cpu: Option<String>,
    /// Memory, in bytes with a suffix (`512Mi`, `2Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::api::QUANTITY_PATTERN))]
    pub memory: Option<String>,
    /// Node-local disk for the container's writable layers and logs (`1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::api::QUANTITY_PATTERN))]
    pub ephemeral_storage: Option<String>,
}

/// The agent's writable workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Size limit of the workspace (`1Gi`). Defaults to the operator's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::api::QUANTITY_PATTERN))]
    pub size: Option<String>,
    /// Where the workspace is mounted. Defaults to `/workspace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('..')")
        .message("mountPath must be an absolute path without '..'"))]
    #[schemars(length(max = 512))]
    pub mount_path: Option<String>,
    /// Keep the workspace on a PersistentVolumeClaim instead of a node-local emptyDir.
    #[serde(default)]
    pub persistent: bool,
    /// StorageClass of the workspace claim when persistent; the cluster default if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
    /// What happens to a persistent workspace when the sandbox expires or is deleted:
    /// `Delete` (default) or `Retain` (the claim outlives the sandbox).
    #[serde(default)]
    pub on_expiry: WorkspaceRetention,
}

/// Fate of a persistent workspace at the end of the sandbox.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[derive(schemars::JsonSchema)]
pub enum WorkspaceRetention {
    /// The claim is deleted with the sandbox.
    #[default]
    Delete,
    /// The claim is released from the sandbox and kept.
    Retain,
}

/// An input mounted into the agent's container. Exactly one source is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.configMap), has(self.secret), has(self.persistentVolumeClaim)]\
    .filter(x, x).size() == 1")
    .message("a mount needs exactly one source: configMap, secret or persistentVolumeClaim"))]
pub struct Mount {
    /// Name of the mount, unique within the sandbox (a DNS label).
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')")
        .message("mount names must be DNS labels (lowercase letters, digits, '-')"))]
    #[schemars(length(max = 63))]
    pub name: String,
    /// Absolute path inside the container. Must not hide the workspace or `/tmp`.
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('..')")
        .message("mountPath must be an absolute path without '..'"))]
    #[schemars(length(max = 512))]
    pub mount_path: String,
    /// A ConfigMap in the sandbox's namespace, mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// A Secret in the sandbox's namespace, mounted read-only; only where the tenant's
    /// policy allows it (`mounts.secrets`), and never one holding a service-account token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSource>,
    /// A PersistentVolumeClaim in the sandbox's namespace, mounted read-only unless it asks
    /// to be writable and the tenant's policy allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimSource>,
}

/// A ConfigMap to mount.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct ConfigMapSource {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A Secret to mount.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretSource {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// A PersistentVolumeClaim to mount.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSource {
    /// Name of the claim.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Mount the claim writable. Refused unless the tenant's policy sets
    /// `mounts.allowWritable: true`; without it (the default) the claim is read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable: bool,
}

/// Network access of the sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
pub struct NetworkSpec {
    /// Destinations the agent may connect to, besides cluster DNS. Empty means none.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub egress: Vec<EgressRule>,
}

/// One allowlist entry: an address range and, optionally, ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
pub struct EgressRule {
    /// Destination range in CIDR notation (`203.0.113.0/24`, `2001:db8::/64`). Ranges that
    /// the operator always denies (link-local and cloud metadata, the API server, the
    /// cluster's pod and service ranges) stay closed even inside a wider range.
    #[schemars(length(min = 1, max = 64))]
    pub cidr: String,
    /// Destination ports. Empty means every port.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub ports: Vec<EgressPort>,
}

/// A destination port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct EgressPort {
    /// Port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Transport protocol of an egress port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[derive(schemars::JsonSchema)]
pub enum Protocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// Lifetime of the sandbox. Set at most one of `ttl` and `expiresAt`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.ttl) && has(self.expiresAt))")
    .message("set either lifetime.ttl or lifetime.expiresAt, not both"))]
pub struct Lifetime {
    /// Time to live, counted from the sandbox's creation: a sequence of numbers with the
    /// units `s`, `m`, `h` or `d`, such as `90s`, `30m` or `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(s|m|h|d))+$')")
        .message("ttl must look like 90s, 30m, 2h or 1h30m"))]
    #[schemars(length(max = 32))]
    pub ttl: Option<String>,
    /// Absolute expiry time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// What happens at expiry: `Delete` the AgentSandbox (default), or `Retain` it as an
    /// `Expired` record once its Pod and network policy are gone.
    #[serde(default)]
    pub on_expiry: ExpiryAction,
}

/// What happens to the AgentSandbox object at expiry.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[derive(schemars::JsonSchema)]
pub enum ExpiryAction {
    /// Delete the AgentSandbox object.
    #[default]
    Delete,
    /// Keep the AgentSandbox as an `Expired` record.
    Retain,
}

/// Observed state of an AgentSandbox.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSandboxStatus {
    /// Where the sandbox is in its life: Pending, Running, Succeeded, Failed, Expired or
    /// Rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// When the sandbox expires. Computed once, at first sight, and never moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Name of the sandbox's Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Node the Pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Isolation level the sandbox runs under: the spec's, or the default chosen when the
    /// sandbox was first accepted. Fixed from then on, whatever later policy changes say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// RuntimeClass the Pod runs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// When the kubelet started the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the agent's container first became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_time: Option<Time>,
    /// Exit code of the agent once it has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How read-only inputs are enforced: `Recursive` when every submount is read-only
    /// too, `TopLevel` when the runtime could only make the mount itself read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_mounts: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions `Accepted`, `Ready` and `Expired`, with reasons a person can act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Where a sandbox is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[derive(schemars::JsonSchema)]
pub enum Phase {
    /// Accepted; the Pod is being created, scheduled or started.
    Pending,
    /// The agent's container is running.
    Running,
    /// The agent exited with code 0.
    Succeeded,
    /// The agent exited with a non-zero code, was killed, or its Pod was lost.
    Failed,
    /// The lifetime has elapsed; the Pod and its network policy are gone.
    Expired,
    /// The spec cannot be run as written; see the `Accepted` condition.
    Rejected,
}

impl Phase {
    /// The name used in status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Expired => "Expired",
            Phase::Rejected => "Rejected",
        }
    }

    /// Whether the agent has finished for good: its Pod is never created again.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Expired)
    }
}
