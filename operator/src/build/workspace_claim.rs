//! The `PersistentVolumeClaim` of a persistent workspace.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements},
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{ObjectMeta, OwnerReference},
    },
};

use crate::{
    build::labels,
    policy::{SandboxPlan, storage::CLAIM_SUFFIX},
};

/// Name of the workspace claim: `<sandbox>-workspace` (validation keeps it within 253).
pub fn workspace_claim_name(plan: &SandboxPlan) -> String {
    format!("{}{CLAIM_SUFFIX}", plan.name)
}

/// The workspace claim, or `None` when the workspace is an emptyDir.
///
/// A claim to `Retain` gets no owner reference: garbage collection would otherwise delete
/// it with the sandbox, which is the data loss `Retain` exists to prevent. It stays
/// findable by its labels.
pub fn workspace_claim(plan: &SandboxPlan, owner: OwnerReference) -> Option<PersistentVolumeClaim> {
    if !plan.workspace.persistent {
        return None;
    }
    let size = BTreeMap::from([("storage".to_owned(), Quantity(plan.workspace.size.clone()))]);
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(workspace_claim_name(plan)),
            namespace: Some(plan.namespace.clone()),
            labels: Some(labels::common_labels(plan)),
            annotations: Some(labels::common_annotations(plan)),
            owner_references: (!plan.workspace.retain).then(|| vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements { requests: Some(size), limits: None }),
            storage_class_name: plan.workspace.storage_class.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        build::owner_reference,
        policy::testing::{accepted, sandbox},
    };

    fn owner() -> OwnerReference {
        owner_reference(&sandbox("image: x")).expect("owner")
    }

    #[test]
    fn ephemeral_workspace_has_no_claim() {
        assert!(workspace_claim(&accepted("image: x"), owner()).is_none());
    }

    #[test]
    fn persistent_workspace_claim_is_read_write_once_with_the_size_as_request() {
        let plan =
            accepted("image: x\nworkspace: {persistent: true, size: 5Gi, storageClassName: fast}");
        let claim = workspace_claim(&plan, owner()).expect("persistent");
        assert_eq!(claim.metadata.name.as_deref(), Some("demo-workspace"));
        assert_eq!(claim.metadata.owner_references, Some(vec![owner()]));
        let spec = claim.spec.expect("spec");
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        let requests = spec.resources.and_then(|r| r.requests).expect("requests");
        assert_eq!(requests["storage"], Quantity("5Gi".into()));
    }

    #[test]
    fn retained_workspace_claim_is_not_owned_so_deletion_cannot_collect_it() {
        let plan = accepted("image: x\nworkspace: {persistent: true, onExpiry: Retain}");
        let claim = workspace_claim(&plan, owner()).expect("persistent");
        assert!(claim.metadata.owner_references.is_none());
        let labels = claim.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(labels::SANDBOX_UID), Some(&plan.uid));
    }
}
