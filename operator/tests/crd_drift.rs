//! The committed CRD YAML under `crds/` must be exactly what the Rust types generate.

use kube::CustomResourceExt;

use kennel::api::AgentSandbox;

#[test]
fn committed_crd_matches_the_rust_types() {
    let generated = serde_yaml::to_string(&AgentSandbox::crd()).expect("CRD serialises");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/agentsandboxes.kennel.dev.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/ file is readable");
    assert!(
        generated == committed,
        "crds/agentsandboxes.kennel.dev.yaml is stale: run \
         `cargo run -p kennel-operator -- crd > crds/agentsandboxes.kennel.dev.yaml`"
    );
}
