//! Pure builders: one file per Kubernetes kind, each turning a [`SandboxPlan`] into the
//! object Kennel applies.
//!
//! [`SandboxPlan`]: crate::policy::SandboxPlan

pub mod admission;
pub mod labels;
pub mod limit_range;
pub mod network_policy;
pub mod pod;
pub mod resource_quota;
pub mod service_account;
pub mod volumes;
pub mod workspace_claim;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

pub use network_policy::network_policy;
pub use pod::pod;
pub use service_account::service_account;
pub use workspace_claim::{workspace_claim, workspace_claim_name};

use crate::api::AgentSandbox;

/// The controller owner reference children of this sandbox carry (`controller: true`,
/// `blockOwnerDeletion: true`), or `None` when the sandbox has no name or UID yet.
pub fn owner_reference(sandbox: &AgentSandbox) -> Option<OwnerReference> {
    let owner = sandbox.controller_owner_ref(&())?;
    Some(OwnerReference { block_owner_deletion: Some(true), ..owner })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::sandbox;

    #[test]
    fn owner_reference_is_a_blocking_controller_reference_by_uid() {
        let owner = owner_reference(&sandbox("image: x")).expect("named sandbox has one");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(owner.kind, "AgentSandbox");
        assert_eq!(owner.api_version, "kennel.dev/v1alpha1");
        assert_eq!(owner.uid, "0b5c6f4e-1111-2222-3333-444455556666");
    }

    #[test]
    fn sandbox_without_uid_has_no_owner_reference() {
        let mut sandbox = sandbox("image: x");
        sandbox.metadata.uid = None;
        assert!(owner_reference(&sandbox).is_none());
    }
}
