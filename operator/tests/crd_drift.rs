//! The committed CRD YAML under `crds/` must be exactly what the Rust types generate.

#[test]
fn committed_crds_match_the_rust_types() {
    for (file, crd) in kennel::api::crds() {
        let generated = serde_yaml::to_string(&crd).expect("CRD serialises");
        let path = format!("{}/../crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).expect("crds/ file is readable");
        assert!(
            generated == committed,
            "crds/{file} is stale: run `cargo run -p kennel-operator -- crd` and copy each \
             `---`-separated part into its file under crds/"
        );
    }
}
