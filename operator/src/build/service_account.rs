//! The `ServiceAccount` sandbox Pods run as: no permissions are ever bound to it, and it
//! never mounts a token.

use k8s_openapi::{api::core::v1::ServiceAccount, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use crate::build::labels;

/// The sandbox service account of a namespace, shared by every sandbox in it.
pub fn service_account(namespace: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::managed_labels()),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_never_automounts_a_token_and_is_labelled_managed() {
        let account = service_account("team-a", "kennel-sandbox");
        assert_eq!(account.automount_service_account_token, Some(false));
        assert_eq!(account.metadata.name.as_deref(), Some("kennel-sandbox"));
        assert_eq!(account.metadata.namespace.as_deref(), Some("team-a"));
        let labels = account.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(labels::MANAGED_BY).map(String::as_str), Some("kennel"));
        assert!(account.secrets.is_none() && account.image_pull_secrets.is_none());
    }
}
