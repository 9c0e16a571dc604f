//! Kennel's custom resources (`kennel.dev/v1alpha1`) and the names shared by their users.

pub mod conditions;
pub mod policy;
pub mod sandbox;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use policy::{PolicyRules, SandboxPolicy, SandboxPolicySpec};
pub use sandbox::{AgentSandbox, AgentSandboxSpec, AgentSandboxStatus, Isolation, Phase};

/// What a Kubernetes quantity field accepts (`500m`, `2`, `1.5Gi`): no sign, no exponent.
pub const QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$";

/// The API group of every Kennel resource.
pub const GROUP: &str = "kennel.dev";

/// Every CustomResourceDefinition Kennel installs, in the order `kennel-operator crd`
/// prints them and with the file each is committed to under `crds/`.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("agentsandboxes.kennel.dev.yaml", AgentSandbox::crd()),
        ("sandboxpolicies.kennel.dev.yaml", SandboxPolicy::crd()),
    ]
}
