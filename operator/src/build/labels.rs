//! Labels and annotations on every object Kennel builds. The sandbox UID, not its name,
//! selects a sandbox's Pod: names may exceed the 63 characters of a label value.

use std::collections::BTreeMap;

use crate::policy::SandboxPlan;

/// Marks objects Kennel manages, so orphans can be found by selector.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "kennel";
/// UID of the owning sandbox: the selector of its Pod and `NetworkPolicy`.
pub const SANDBOX_UID: &str = "kennel.dev/sandbox-uid";
/// Name of the owning sandbox, as an annotation for people (it may be too long for a label).
pub const SANDBOX_NAME: &str = "kennel.dev/sandbox";
/// When the sandbox expires (RFC 3339), as an annotation for people.
pub const EXPIRES_AT: &str = "kennel.dev/expires-at";

/// The labels that select a sandbox's Pod.
pub fn selector_labels(plan: &SandboxPlan) -> BTreeMap<String, String> {
    BTreeMap::from([(SANDBOX_UID.to_owned(), plan.uid.clone())])
}

/// The labels every child object of a sandbox carries.
pub fn common_labels(plan: &SandboxPlan) -> BTreeMap<String, String> {
    let mut labels = selector_labels(plan);
    labels.insert(MANAGED_BY.to_owned(), MANAGER.to_owned());
    labels
}

/// The annotations every child object of a sandbox carries.
pub fn common_annotations(plan: &SandboxPlan) -> BTreeMap<String, String> {
    BTreeMap::from([(SANDBOX_NAME.to_owned(), plan.name.clone())])
}

/// Only the managed-by label, for objects shared by every sandbox in a namespace.
pub fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY.to_owned(), MANAGER.to_owned())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::accepted;

    #[test]
    fn selector_is_the_sandbox_uid_and_common_labels_add_managed_by() {
        let plan = accepted("image: x");
        assert_eq!(
            selector_labels(&plan),
            BTreeMap::from([(SANDBOX_UID.into(), plan.uid.clone())])
        );
        let labels = common_labels(&plan);
        assert_eq!(labels.get(MANAGED_BY).map(String::as_str), Some("kennel"));
        assert!(!labels.contains_key(SANDBOX_NAME), "the name is an annotation, not a label");
        assert_eq!(common_annotations(&plan)[SANDBOX_NAME], "demo");
    }
}
