//! Condition types and reasons written to `AgentSandbox` status. Reasons are part of the
//! API: people and alerts match on them, so they only ever gain new values.

/// The spec was validated and the sandbox can be run.
pub const ACCEPTED: &str = "Accepted";
/// The agent's container is running and ready.
pub const READY: &str = "Ready";
/// The sandbox's lifetime has elapsed.
pub const EXPIRED: &str = "Expired";
/// Another `NetworkPolicy` selecting the sandbox's Pod opens egress beyond its allowlist.
/// Network policies add up, so the sandbox can reach more than its spec says.
pub const EGRESS_WIDENED: &str = "EgressWidened";

/// Reasons a person can act on. Each names what happened, not where in the code.
pub mod reason {
    /// The spec passed validation.
    pub const VALID: &str = "Valid";
    /// A field cannot be run as written; the message names the field.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The RuntimeClass of the isolation level does not exist on this cluster.
    pub const RUNTIME_UNAVAILABLE: &str = "RuntimeUnavailable";
    /// The API server refused the Pod (quota, admission); the message is the server's.
    pub const POD_REJECTED: &str = "PodRejected";
    /// A Pod of an earlier sandbox with the same name is still terminating.
    pub const WAITING_FOR_OLD_POD: &str = "WaitingForPreviousPod";
    /// An object a mount names (ConfigMap, Secret or claim) does not exist yet.
    pub const MOUNT_SOURCE_MISSING: &str = "MountSourceMissing";
    /// The Pod exists but is not running yet.
    pub const POD_PENDING: &str = "PodPending";
    /// The agent's container is running and ready.
    pub const POD_READY: &str = "PodReady";
    /// The container is running but not ready.
    pub const POD_NOT_READY: &str = "PodNotReady";
    /// The agent exited with code 0.
    pub const COMPLETED: &str = "Completed";
    /// The agent exited with a non-zero code.
    pub const ERROR: &str = "Error";
    /// The agent was killed for exceeding its memory limit.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// The fence gate gave up: the Pod's egress fence was not in force in time, so the
    /// agent never started.
    pub const FENCE_NOT_IN_FORCE: &str = "FenceNotInForce";
    /// The kubelet evicted the Pod (node pressure or ephemeral storage over its limit).
    pub const EVICTED: &str = "Evicted";
    /// The Pod disappeared after the agent had finished, or while the sandbox was expiring.
    pub const POD_LOST: &str = "PodLost";
    /// The Pod was deleted from outside and has been created again.
    pub const POD_RECREATED: &str = "PodRecreated";
    /// The lifetime has elapsed.
    pub const TTL_ELAPSED: &str = "LifetimeElapsed";
    /// The lifetime has not elapsed yet.
    pub const ALIVE: &str = "WithinLifetime";
    /// A `NetworkPolicy` Kennel does not manage opens egress beyond the allowlist; the
    /// message names each policy and what it opens.
    pub const FOREIGN_NETWORK_POLICY: &str = "ForeignNetworkPolicy";
    /// No other `NetworkPolicy` opens egress beyond the allowlist.
    pub const ALLOWLIST_ONLY: &str = "AllowlistOnly";
}
