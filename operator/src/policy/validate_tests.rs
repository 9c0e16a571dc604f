//! Validation tests: accepted specs and their defaults, then hostile inputs, each refused
//! with an error naming the field.

use std::collections::BTreeMap;

use crate::{
    api::{AgentSandboxStatus, Isolation, sandbox::Protocol},
    config::Config,
    policy::{
        plan,
        plan::{MountSource, ReadOnlyMode},
        testing::{accepted, assert_names, config, rejected, sandbox, time},
    },
};

fn amounts(cpu: &str, memory: &str, storage: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cpu".to_owned(), cpu.to_owned()),
        ("memory".to_owned(), memory.to_owned()),
        ("ephemeral-storage".to_owned(), storage.to_owned()),
    ])
}

#[test]
fn minimal_sandbox_gets_every_default_from_configuration() {
    let plan = accepted("image: busybox:1.36");
    assert_eq!(plan.runtime_class, "gvisor");
    assert_eq!(plan.requests, amounts("100m", "128Mi", "128Mi"));
    assert_eq!(plan.limits, amounts("1", "1Gi", "1Gi"));
    assert_eq!(plan.workspace.mount_path, "/workspace");
    assert_eq!(plan.workspace.size, "1Gi");
    assert!(!plan.workspace.persistent);
    assert_eq!(plan.working_dir, "/workspace");
    assert_eq!(plan.tmp_size, "64Mi");
    assert_eq!(plan.read_only_mode, ReadOnlyMode::IfPossible);
    assert_eq!(plan.service_account, "kennel-sandbox");
    assert_eq!(plan.expires_at.to_rfc3339(), "2030-01-01T01:00:00+00:00");
}

#[test]
fn limit_alone_caps_the_default_request() {
    let plan = accepted("image: x\nresources:\n  limits: {cpu: 50m, memory: 64Mi}");
    assert_eq!(plan.requests["cpu"], "50m");
    assert_eq!(plan.requests["memory"], "64Mi");
    assert_eq!(plan.limits["cpu"], "50m");
    assert_eq!(plan.requests["ephemeral-storage"], "128Mi");
}

#[test]
fn request_alone_raises_the_default_limit() {
    let plan = accepted("image: x\nresources:\n  requests: {cpu: '4', memory: 256Mi}");
    assert_eq!(plan.limits["cpu"], "4");
    assert_eq!(plan.limits["memory"], "1Gi");
    assert_eq!(plan.requests["memory"], "256Mi");
}

#[test]
fn kata_maps_to_its_configured_runtime_class() {
    let mut config = config();
    config.runtime_classes.insert("kata".into(), "kata-qemu".into());
    let kata = plan(&sandbox("image: x\nisolation: kata"), &config).expect("accepted");
    assert_eq!(kata.runtime_class, "kata-qemu");
}

#[test]
fn mounts_are_normalised_and_keep_their_source() {
    let plan = accepted(
        "image: x
        mounts:
        - {name: repo, mountPath: //inputs/./repo/, configMap: {name: repo-files}}
        - {name: data, mountPath: /data, persistentVolumeClaim: {claimName: shared}}",
    );
    assert_eq!(plan.mounts[0].mount_path, "/inputs/repo");
    assert_eq!(plan.mounts[0].source, MountSource::ConfigMap("repo-files".into()));
    assert_eq!(plan.mounts[1].source, MountSource::Claim("shared".into()));
}

#[test]
fn secret_mounts_keep_their_source_and_only_a_claim_asking_for_it_is_writable() {
    let plan = accepted(
        "image: x
        mounts:
        - {name: creds, mountPath: /inputs/creds, secret: {secretName: api-key}}
        - {name: ro, mountPath: /ro, persistentVolumeClaim: {claimName: shared}}
        - {name: rw, mountPath: /rw, persistentVolumeClaim: {claimName: scratch, writable: true}}",
    );
    assert_eq!(plan.mounts[0].source, MountSource::Secret("api-key".into()));
    let writable: Vec<bool> = plan.mounts.iter().map(|m| m.writable).collect();
    assert_eq!(writable, [false, false, true]);
}

#[test]
fn isolation_comes_from_the_spec_then_the_status_then_the_default() {
    let unset = accepted("image: x");
    assert_eq!((unset.isolation, unset.runtime_class.as_str()), (Isolation::Gvisor, "gvisor"));
    let mut recorded = sandbox("image: x");
    recorded.status = Some(AgentSandboxStatus {
        isolation: Some(Isolation::Kata),
        ..AgentSandboxStatus::default()
    });
    let plan = plan(&recorded, &config()).expect("accepted");
    assert_eq!((plan.isolation, plan.runtime_class.as_str()), (Isolation::Kata, "kata"));
}

#[test]
fn unknown_isolation_level_does_not_parse() {
    let text = "apiVersion: kennel.dev/v1alpha1\nkind: AgentSandbox\nmetadata: {}\n\
                spec: {image: x, isolation: runc}\n";
    assert!(serde_yaml::from_str::<crate::api::AgentSandbox>(text).is_err());
}

#[test]
fn ttl_counts_from_creation_and_stored_expiry_is_never_moved() {
    let fresh = accepted("image: x\nlifetime: {ttl: 1h30m}");
    assert_eq!(fresh.expires_at.to_rfc3339(), "2030-01-01T01:30:00+00:00");
    let mut stored = sandbox("image: x\nlifetime: {ttl: 1h30m}");
    stored.status = Some(crate::api::AgentSandboxStatus::default());
    if let Some(status) = stored.status.as_mut() {
        status.expires_at = Some(time("2030-01-01T00:05:00Z"));
    }
    let kept = plan(&stored, &config()).expect("accepted");
    assert_eq!(kept.expires_at.to_rfc3339(), "2030-01-01T00:05:00+00:00");
}

#[test]
fn absolute_expiry_is_used_as_given() {
    let plan =
        accepted("image: x\nlifetime: {expiresAt: '2030-01-02T00:00:00Z', onExpiry: Retain}");
    assert_eq!(plan.expires_at.to_rfc3339(), "2030-01-02T00:00:00+00:00");
    assert_eq!(plan.on_expiry, crate::api::sandbox::ExpiryAction::Retain);
}

#[test]
fn allowlist_containing_metadata_range_gets_it_as_except() {
    let plan =
        accepted("image: x\nnetwork:\n  egress:\n  - {cidr: 0.0.0.0/0, ports: [{port: 443}]}");
    let except: Vec<String> = plan.egress[0].except.iter().map(ToString::to_string).collect();
    assert_eq!(except, ["10.96.0.0/12", "10.244.0.0/16", "169.254.0.0/16", "192.0.2.10/32"]);
    assert_eq!(plan.egress[0].ports, vec![(443, Protocol::Tcp)]);
}

#[test]
fn ipv6_allowlist_excludes_link_local() {
    let plan = accepted("image: x\nnetwork:\n  egress:\n  - {cidr: '::/0'}");
    let except: Vec<String> = plan.egress[0].except.iter().map(ToString::to_string).collect();
    assert_eq!(except, ["fe80::/10"]);
    assert!(plan.egress[0].ports.is_empty());
}

#[test]
fn cluster_ranges_open_only_when_configuration_allows_cluster_egress() {
    let mut config = config();
    config.allow_cluster_egress = true;
    let spec = "image: x\nnetwork:\n  egress:\n  - {cidr: 10.244.1.0/24}";
    let open = plan(&sandbox(spec), &config).expect("accepted");
    assert!(open.egress[0].except.is_empty());
    assert_names(&rejected(spec), "spec.network.egress[0].cidr", "pod range");
}

// Hostile inputs. Each asserts the field the error names.

#[test]
fn empty_image_is_refused() {
    assert_names(&rejected("image: ''"), "spec.image", "empty");
}

#[test]
fn image_with_whitespace_or_huge_length_is_refused() {
    assert_names(&rejected("image: 'busybox; rm -rf /'"), "spec.image", "whitespace");
    assert_names(&rejected(&format!("image: {}", "a".repeat(600))), "spec.image", "longer");
}

#[test]
fn invalid_and_duplicate_env_names_are_refused() {
    let r =
        rejected("image: x\nenv: [{name: 1BAD, value: a}, {name: OK}, {name: OK}, {name: 'A=B'}]");
    assert_names(&r, "spec.env[0].name", "not a valid name");
    assert_names(&r, "spec.env[2].name", "twice");
    assert_names(&r, "spec.env[3].name", "not a valid name");
}

#[test]
fn relative_or_dotted_working_dir_is_refused() {
    assert_names(&rejected("image: x\nworkingDir: src"), "spec.workingDir", "absolute");
    assert_names(&rejected("image: x\nworkingDir: /workspace/../etc"), "spec.workingDir", "..");
}

#[test]
fn isolation_without_a_runtime_class_is_refused() {
    let mut config = Config::default();
    config.runtime_classes.remove("kata");
    let r = plan(&sandbox("image: x\nisolation: kata"), &config).expect_err("refused");
    assert_names(&r, "spec.isolation", "kata");
}

#[test]
fn negative_zero_and_malformed_quantities_are_refused() {
    let r = rejected(
        "image: x\nresources:\n  requests: {cpu: '-1', memory: '0', ephemeralStorage: lots}",
    );
    assert_names(&r, "spec.resources.requests.cpu", "negative");
    assert_names(&r, "spec.resources.requests.memory", "zero");
    assert_names(&r, "spec.resources.requests.ephemeralStorage", "not a Kubernetes quantity");
}

#[test]
fn absurd_cpu_and_memory_limits_are_refused() {
    let r = rejected("image: x\nresources:\n  limits: {cpu: '2000', memory: 5Ti}");
    assert_names(&r, "spec.resources.limits.cpu", "1024 cores");
    assert_names(&r, "spec.resources.limits.memory", "4Ti");
    let r = rejected("image: x\nresources:\n  limits: {memory: 99999999999999999999999999Ei}");
    assert_names(&r, "spec.resources.limits.memory", "");
}

#[test]
fn request_above_limit_is_refused() {
    let r = rejected("image: x\nresources:\n  requests: {memory: 2Gi}\n  limits: {memory: 1Gi}");
    assert_names(&r, "spec.resources.requests.memory", "above the limit");
}

#[test]
fn zero_or_malformed_workspace_size_is_refused() {
    assert_names(&rejected("image: x\nworkspace: {size: '0'}"), "spec.workspace.size", "zero");
    assert_names(&rejected("image: x\nworkspace: {size: 1GB}"), "spec.workspace.size", "quantity");
}

#[test]
fn workspace_at_root_or_tmp_or_proc_is_refused() {
    let field = "spec.workspace.mountPath";
    assert_names(&rejected("image: x\nworkspace: {mountPath: /}"), field, "/tmp");
    assert_names(&rejected("image: x\nworkspace: {mountPath: /tmp/ws}"), field, "/tmp");
    assert_names(&rejected("image: x\nworkspace: {mountPath: /proc}"), field, "/proc");
}

#[test]
fn duplicate_and_reserved_mount_names_are_refused() {
    let r = rejected(
        "image: x
        mounts:
        - {name: a, mountPath: /a, configMap: {name: a}}
        - {name: a, mountPath: /b, configMap: {name: b}}
        - {name: workspace, mountPath: /c, configMap: {name: c}}
        - {name: tmp, mountPath: /d, configMap: {name: d}}
        - {name: Bad_Name, mountPath: /e, configMap: {name: e}}",
    );
    assert_names(&r, "spec.mounts[1].name", "unique");
    assert_names(&r, "spec.mounts[2].name", "reserved");
    assert_names(&r, "spec.mounts[3].name", "reserved");
    assert_names(&r, "spec.mounts[4].name", "DNS label");
}

#[test]
fn mounts_that_hide_or_sit_in_the_workspace_or_tmp_are_refused() {
    let r = rejected(
        "image: x
        mounts:
        - {name: a, mountPath: /, configMap: {name: a}}
        - {name: b, mountPath: /workspace/in, configMap: {name: b}}
        - {name: c, mountPath: /tmp, configMap: {name: c}}
        - {name: d, mountPath: /tmp/x, configMap: {name: d}}
        - {name: e, mountPath: /workspace, configMap: {name: e}}",
    );
    assert_names(&r, "spec.mounts[0].mountPath", "hide the workspace");
    assert_names(&r, "spec.mounts[1].mountPath", "inside the workspace");
    assert_names(&r, "spec.mounts[2].mountPath", "/tmp");
    assert_names(&r, "spec.mounts[3].mountPath", "/tmp");
    assert_names(&r, "spec.mounts[4].mountPath", "hide the workspace");
}

#[test]
fn mounts_with_relative_dotted_runtime_or_repeated_paths_are_refused() {
    let r = rejected(
        "image: x
        mounts:
        - {name: a, mountPath: etc/cfg, configMap: {name: a}}
        - {name: b, mountPath: /in/../etc, configMap: {name: b}}
        - {name: c, mountPath: /dev/shm, configMap: {name: c}}
        - {name: d, mountPath: /in, configMap: {name: d}}
        - {name: e, mountPath: /in/, configMap: {name: e}}",
    );
    assert_names(&r, "spec.mounts[0].mountPath", "absolute");
    assert_names(&r, "spec.mounts[1].mountPath", "..");
    assert_names(&r, "spec.mounts[2].mountPath", "/dev");
    assert_names(&r, "spec.mounts[4].mountPath", "another mount");
}

#[test]
fn mount_with_no_source_or_two_sources_is_refused() {
    let r = rejected(
        "image: x
        mounts:
        - {name: a, mountPath: /a}
        - {name: b, mountPath: /b, configMap: {name: b}, persistentVolumeClaim: {claimName: b}}
        - {name: c, mountPath: /c, configMap: {name: c}, secret: {secretName: c}}",
    );
    assert_names(&r, "spec.mounts[0]", "exactly one source");
    assert_names(&r, "spec.mounts[1]", "exactly one source");
    assert_names(&r, "spec.mounts[2]", "exactly one source");
}

#[test]
fn malformed_cidrs_are_refused_with_an_example() {
    let r = rejected(
        "image: x\nnetwork:\n  egress: [{cidr: example.com}, {cidr: 10.0.0.0/33}, {cidr: 8.8.8.8}]",
    );
    assert_names(&r, "spec.network.egress[0].cidr", "not a CIDR");
    assert_names(&r, "spec.network.egress[1].cidr", "not a CIDR");
    assert_names(&r, "spec.network.egress[2].cidr", "8.8.8.8/32");
}

#[test]
fn cidr_with_host_bits_is_refused_naming_the_network() {
    let r = rejected("image: x\nnetwork:\n  egress: [{cidr: 10.0.0.1/8}]");
    assert_names(&r, "spec.network.egress[0].cidr", "write the network 10.0.0.0/8");
}

#[test]
fn metadata_address_is_refused_as_always_denied() {
    let r = rejected("image: x\nnetwork:\n  egress: [{cidr: 169.254.169.254/32}]");
    assert_names(&r, "spec.network.egress[0].cidr", "cloud metadata / link-local, always denied");
}

#[test]
fn ipv6_link_local_and_ipv4_mapped_metadata_are_refused() {
    let r = rejected(
        "image: x\nnetwork:\n  egress:\n  \
         - {cidr: 'fe80::1/128'}\n  - {cidr: '::ffff:169.254.169.254/128'}",
    );
    assert_names(&r, "spec.network.egress[0].cidr", "link-local");
    assert_names(&r, "spec.network.egress[1].cidr", "IPv4-mapped");
}

#[test]
fn pod_service_and_api_server_ranges_are_refused() {
    let r = rejected(
        "image: x\nnetwork:\n  egress:\n  \
         - {cidr: 10.244.3.0/24}\n  - {cidr: 10.96.0.1/32}\n  - {cidr: 192.0.2.10/32}",
    );
    assert_names(&r, "spec.network.egress[0].cidr", "pod range");
    assert_names(&r, "spec.network.egress[1].cidr", "service range");
    assert_names(&r, "spec.network.egress[2].cidr", "API server");
}

#[test]
fn ports_zero_and_above_65535_are_refused() {
    let r = rejected(
        "image: x\nnetwork:\n  egress: [{cidr: 203.0.113.0/24, ports: [{port: 0}, {port: 70000}]}]",
    );
    assert_names(&r, "spec.network.egress[0].ports[0].port", "1 to 65535");
    assert_names(&r, "spec.network.egress[0].ports[1].port", "1 to 65535");
}

#[test]
fn missing_creation_timestamp_is_refused() {
    let mut sandbox = sandbox("image: x");
    sandbox.metadata.creation_timestamp = None;
    let r = plan(&sandbox, &config()).expect_err("refused");
    assert_names(&r, "metadata.creationTimestamp", "missing");
}

#[test]
fn missing_name_namespace_or_uid_is_refused() {
    let mut sandbox = sandbox("image: x");
    sandbox.metadata.name = None;
    sandbox.metadata.namespace = None;
    sandbox.metadata.uid = Some("not a uid!".into());
    let r = plan(&sandbox, &config()).expect_err("refused");
    assert_names(&r, "metadata.name", "DNS subdomain");
    assert_names(&r, "metadata.namespace", "missing");
    assert_names(&r, "metadata.uid", "malformed");
}

#[test]
fn persistent_workspace_needs_room_for_the_claim_suffix() {
    let mut sandbox = sandbox("image: x\nworkspace: {persistent: true}");
    sandbox.metadata.name = Some(vec!["a".repeat(62); 4].join("."));
    let r = plan(&sandbox, &config()).expect_err("refused");
    assert_names(&r, "metadata.name", "243");
}

#[test]
fn expiry_before_creation_is_refused() {
    let r = rejected("image: x\nlifetime: {expiresAt: '2029-12-31T23:59:59Z'}");
    assert_names(&r, "spec.lifetime.expiresAt", "before the sandbox was created");
}

#[test]
fn zero_malformed_and_overflowing_ttls_are_refused() {
    assert_names(&rejected("image: x\nlifetime: {ttl: 0s}"), "spec.lifetime.ttl", "zero");
    assert_names(&rejected("image: x\nlifetime: {ttl: 5w}"), "spec.lifetime.ttl", "unit");
    let r = rejected("image: x\nlifetime: {ttl: 999999999999999d}");
    assert_names(&r, "spec.lifetime.ttl", "too long");
    let r = rejected("image: x\nlifetime: {ttl: 99999999999d}");
    assert_names(&r, "spec.lifetime.ttl", "too long");
}

#[test]
fn ttl_and_expiry_together_are_refused() {
    let r = rejected("image: x\nlifetime: {ttl: 1h, expiresAt: '2030-01-02T00:00:00Z'}");
    assert_names(&r, "spec.lifetime", "not both");
}

#[test]
fn every_field_error_is_reported_at_once() {
    let r =
        rejected("image: ''\nworkingDir: rel\nnetwork:\n  egress: [{cidr: 169.254.169.254/32}]");
    assert_eq!(r.errors.len(), 3, "{r}");
    let text = r.to_string();
    assert!(text.starts_with("spec.image: "), "{text}");
    assert!(text.contains("; spec.workingDir: "), "{text}");
}
