//! The validated, fully defaulted form of a sandbox: what the builders turn into objects.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::api::{
    Isolation,
    sandbox::{ExpiryAction, Protocol},
};

/// A sandbox that passed validation, with every default resolved from the operator's
/// configuration. Builders take only this, never the raw spec, so nothing unvalidated can
/// reach a Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxPlan {
    /// The sandbox's name; also the name of its Pod and NetworkPolicy.
    pub name: String,
    /// The sandbox's namespace.
    pub namespace: String,
    /// The sandbox's UID: children are selected and owned by it.
    pub uid: String,
    /// Container image.
    pub image: String,
    /// Entrypoint, empty for the image's own.
    pub command: Vec<String>,
    /// Arguments, empty for the image's own.
    pub args: Vec<String>,
    /// Literal environment variables, in the order given.
    pub env: Vec<(String, String)>,
    /// Working directory (the workspace unless the spec says otherwise).
    pub working_dir: String,
    /// Isolation level in force: the spec's, the one recorded in status, or the default.
    pub isolation: Isolation,
    /// RuntimeClass of the isolation level.
    pub runtime_class: String,
    /// Requests, by resource name (`cpu`, `memory`, `ephemeral-storage`).
    pub requests: BTreeMap<String, String>,
    /// Limits, by resource name; never below the requests.
    pub limits: BTreeMap<String, String>,
    /// The writable workspace.
    pub workspace: WorkspacePlan,
    /// Size limit of `/tmp`.
    pub tmp_size: String,
    /// Inputs, read-only unless a claim was allowed to be writable.
    pub mounts: Vec<MountPlan>,
    /// How read-only mounts are asked of the runtime.
    pub read_only_mode: ReadOnlyMode,
    /// Egress allowlist, with the always-denied ranges already carved out.
    pub egress: Vec<EgressPlan>,
    /// Where cluster DNS is.
    pub dns: crate::config::DnsConfig,
    /// Service account the Pod runs as (no permissions, no token).
    pub service_account: String,
    /// User and group id of the agent.
    pub run_as_user: i64,
    /// When the sandbox expires.
    pub expires_at: DateTime<Utc>,
    /// What happens to the sandbox object at expiry.
    pub on_expiry: ExpiryAction,
}

/// The workspace volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspacePlan {
    /// Size limit (`1Gi`).
    pub size: String,
    /// Mount path inside the container.
    pub mount_path: String,
    /// A PersistentVolumeClaim (true) or an emptyDir (false).
    pub persistent: bool,
    /// StorageClass of the claim, the cluster default when `None`.
    pub storage_class: Option<String>,
    /// Keep the claim after the sandbox is gone.
    pub retain: bool,
}

/// One input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPlan {
    /// Volume name (a DNS label, unique in the Pod).
    pub name: String,
    /// Absolute path in the container.
    pub mount_path: String,
    /// Where the data comes from.
    pub source: MountSource,
    /// Mounted writable: only a claim, and only where the tenant's policy allows it.
    pub writable: bool,
}

/// Source of an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// A ConfigMap, by name.
    ConfigMap(String),
    /// A Secret, by name.
    Secret(String),
    /// A PersistentVolumeClaim, by name.
    Claim(String),
}

/// How read-only mounts are requested from the container runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOnlyMode {
    /// `recursiveReadOnly: Enabled`: the runtime must make submounts read-only too, or the
    /// container fails to start.
    Recursive,
    /// `recursiveReadOnly: IfPossible`: recursive where the runtime supports it (containerd
    /// reports no support for runsc), the mount itself read-only in any case.
    IfPossible,
}

/// One egress allowlist entry, ready for a NetworkPolicy `ipBlock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPlan {
    /// Destination range.
    pub cidr: IpNet,
    /// Sub-ranges of `cidr` that stay closed (always-denied ranges inside it).
    pub except: Vec<IpNet>,
    /// Ports with their protocols; empty for every port.
    pub ports: Vec<(i32, Protocol)>,
}
