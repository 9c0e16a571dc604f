//! Tenant policy tests: which policy governs a namespace, how its rules resolve, and each
//! rule refusing a sandbox with an error naming the field.
// Test-only code: a fixture that does not parse fails the test loudly.
#![allow(clippy::panic)]

use std::collections::BTreeMap;

use crate::{
    api::{Isolation, SandboxPolicy},
    policy::{
        FieldError,
        sources::{Found, SourceFacts, SourceKind},
        tenant::{self, InvalidPolicy, TenantPolicy, blocked_path, check},
        testing::{config, sandbox},
    },
};

/// A `SandboxPolicy` named `name` from the YAML of its spec.
fn policy(name: &str, spec_yaml: &str) -> SandboxPolicy {
    let text = format!(
        "apiVersion: kennel.dev/v1alpha1\nkind: SandboxPolicy\nmetadata: {{name: {name}}}\n\
         spec: {spec_yaml}\n"
    );
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("test policy parses: {e}"))
}

fn resolved(spec_yaml: &str) -> TenantPolicy {
    tenant::resolve(Some(&policy("p", spec_yaml)), &config()).expect("policy resolves")
}

/// Nothing read of any mounted object.
fn none() -> SourceFacts {
    SourceFacts::default()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The errors of a sandbox spec under a policy spec.
fn errors(policy_yaml: &str, sandbox_yaml: &str) -> Vec<FieldError> {
    check(&sandbox(sandbox_yaml), &resolved(policy_yaml), &SourceFacts::default())
}

fn assert_field(errors: &[FieldError], field: &str, words: &str) {
    let hit = errors.iter().find(|e| e.field == field);
    let hit = hit.unwrap_or_else(|| panic!("no error on {field}; got {errors:?}"));
    assert!(hit.message.contains(words), "{field}: {:?} lacks {words:?}", hit.message);
}

#[test]
fn highest_priority_wins_and_ties_go_to_the_first_name() {
    let low = policy("a-low", "{namespaceSelector: {matchLabels: {team: a}}, priority: 1}");
    let high = policy("z-high", "{namespaceSelector: {matchLabels: {team: a}}, priority: 9}");
    let tie = policy("b-tie", "{namespaceSelector: {}, priority: 9}");
    let other = policy("c-other", "{namespaceSelector: {matchLabels: {team: b}}, priority: 99}");
    let all = [low.clone(), high, tie, other];
    let ns = labels(&[("team", "a")]);
    let chosen = tenant::select(&ns, &all).and_then(|p| p.metadata.name.clone());
    assert_eq!(chosen.as_deref(), Some("b-tie"));
    let chosen = tenant::select(&ns, [&low]).and_then(|p| p.metadata.name.clone());
    assert_eq!(chosen.as_deref(), Some("a-low"));
}

#[test]
fn namespace_no_policy_selects_gets_the_safe_default() {
    let ns = labels(&[("team", "nobody")]);
    let only_b = [policy("b", "{namespaceSelector: {matchLabels: {team: b}}}")];
    let tenant = tenant::for_namespace(&ns, &only_b, &config()).expect("default resolves");
    assert_eq!(tenant.name, None);
    assert_eq!(tenant.allowed_isolation, vec![Isolation::Gvisor]);
    assert_eq!(tenant.max_ttl.1, "1h");
    assert!(!tenant.allow_writable);
    assert!(!tenant.secrets.allowed);
}

#[test]
fn match_expressions_select_too_and_a_broken_selector_selects_nothing() {
    let expr = policy(
        "e",
        "{namespaceSelector: {matchExpressions: [{key: tier, operator: In, values: [gold]}]}}",
    );
    assert!(tenant::selects(&expr, &labels(&[("tier", "gold")])));
    assert!(!tenant::selects(&expr, &labels(&[("tier", "tin")])));
    let broken = policy(
        "x",
        "{namespaceSelector: {matchExpressions: [{key: tier, operator: Near, values: [a]}]}}",
    );
    assert!(!tenant::selects(&broken, &labels(&[("tier", "a")])));
}

#[test]
fn omitted_fields_fall_back_to_the_default_policy_field_by_field() {
    let tenant = resolved("{namespaceSelector: {}, lifetime: {maxTtl: 8h}}");
    assert_eq!(tenant.max_ttl.1, "8h");
    assert_eq!(tenant.default_ttl, "1h", "the operator's defaultTtl");
    assert_eq!(tenant.allowed_isolation, vec![Isolation::Gvisor], "from defaultPolicy");
    let short = resolved("{namespaceSelector: {}, lifetime: {maxTtl: 10m}}");
    assert_eq!(short.default_ttl, "10m", "a default above the maximum is lowered to it");
}

#[test]
fn malformed_policy_refuses_its_sandboxes_naming_the_policy() {
    let broken = policy("broken", "{namespaceSelector: {}, egress: {allowedCidrs: [nope]}}");
    let tenant = tenant::for_namespace(&labels(&[]), [&broken], &config());
    assert!(matches!(&tenant, Err(InvalidPolicy { name, .. }) if name == "broken"));
    let rejection =
        tenant::plan(&sandbox("image: x"), &config(), &tenant, &none()).expect_err("refused");
    assert!(rejection.errors[0].message.contains("\"broken\""), "{rejection}");
}

#[test]
fn unknown_rule_fields_are_refused_when_parsing_a_policy() {
    let text = "apiVersion: kennel.dev/v1alpha1\nkind: SandboxPolicy\nmetadata: {name: u}\n\
                spec: {namespaceSelector: {}, lifetime: {maxTTL: 1h}}\n";
    assert!(serde_yaml::from_str::<SandboxPolicy>(text).is_err());
}

#[test]
fn isolation_outside_the_allowed_levels_is_refused() {
    let errs = errors("{namespaceSelector: {}}", "image: x\nisolation: kata");
    assert_field(&errs, "spec.isolation", "not allowed");
    let ok = errors(
        "{namespaceSelector: {}, isolation: {allowed: [gvisor, kata]}}",
        "image: x\nisolation: kata",
    );
    assert!(ok.is_empty(), "{ok:?}");
}

#[test]
fn lifetime_past_the_maximum_is_refused_never_clamped() {
    let policy = "{namespaceSelector: {}, lifetime: {maxTtl: 2h}}";
    assert_field(&errors(policy, "image: x\nlifetime: {ttl: 1d}"), "spec.lifetime.ttl", "refused");
    assert!(errors(policy, "image: x\nlifetime: {ttl: 2h}").is_empty());
    let late = "image: x\nlifetime: {expiresAt: '2030-01-01T03:00:00Z'}";
    assert_field(&errors(policy, late), "spec.lifetime.expiresAt", "maximum lifetime 2h");
    let plan = tenant::plan(&sandbox("image: x"), &config(), &Ok(resolved(policy)), &none())
        .expect("no lifetime asked: the default applies");
    assert_eq!(plan.expires_at.to_rfc3339(), "2030-01-01T01:00:00+00:00");
}

#[test]
fn policy_default_ttl_sets_the_expiry_of_a_sandbox_that_names_none() {
    let policy = resolved("{namespaceSelector: {}, lifetime: {defaultTtl: 20m, maxTtl: 1h}}");
    let plan =
        tenant::plan(&sandbox("image: x"), &config(), &Ok(policy), &none()).expect("accepted");
    assert_eq!(plan.expires_at.to_rfc3339(), "2030-01-01T00:20:00+00:00");
}

#[test]
fn image_outside_the_allowed_prefixes_is_refused() {
    let policy = "{namespaceSelector: {}, images: {allowedPrefixes: ['registry.example/agents/']}}";
    assert!(errors(policy, "image: registry.example/agents/claude:1").is_empty());
    let errs = errors(policy, "image: registry.example.attacker.test/agents/x:1");
    assert_field(&errs, "spec.image", "does not start with");
}

#[test]
fn egress_must_lie_inside_allowed_ranges_and_outside_denied_ones() {
    let policy = "{namespaceSelector: {}, egress: {allowedCidrs: [203.0.113.0/24, 0.0.0.0/0], \
                  deniedCidrs: [203.0.113.128/25]}}";
    let inside_denied = "image: x\nnetwork: {egress: [{cidr: 203.0.113.200/32}]}";
    assert_field(&errors(policy, inside_denied), "spec.network.egress[0].cidr", "denied by");
    let narrow = "{namespaceSelector: {}, egress: {allowedCidrs: [203.0.113.0/24]}}";
    let outside = "image: x\nnetwork: {egress: [{cidr: 198.51.100.0/24}]}";
    assert_field(&errors(narrow, outside), "spec.network.egress[0].cidr", "outside the ranges");
}

#[test]
fn denied_ranges_are_carved_out_of_wider_entries() {
    let policy = resolved(
        "{namespaceSelector: {}, \
          egress: {allowedCidrs: [0.0.0.0/0], deniedCidrs: [198.51.100.0/24]}}",
    );
    let sandbox = sandbox("image: x\nnetwork: {egress: [{cidr: 198.51.0.0/16}]}");
    let plan = tenant::plan(&sandbox, &config(), &Ok(policy), &none()).expect("accepted");
    let except: Vec<String> = plan.egress[0].except.iter().map(ToString::to_string).collect();
    assert_eq!(except, vec!["198.51.100.0/24".to_owned()]);
}

#[test]
fn mount_sources_the_policy_does_not_allow_are_refused() {
    let policy = "{namespaceSelector: {}, mounts: {configMaps: {allowed: true, names: ['task-*']}, \
                  persistentVolumeClaims: {allowed: false}}}";
    let ok = "image: x\nmounts: [{name: t, mountPath: /inputs, configMap: {name: task-1}}]";
    assert!(errors(policy, ok).is_empty());
    let other = "image: x\nmounts: [{name: t, mountPath: /inputs, configMap: {name: kubeconfig}}]";
    assert_field(&errors(policy, other), "spec.mounts[0].configMap.name", "allowed names");
    let claim =
        "image: x\nmounts: [{name: d, mountPath: /data, persistentVolumeClaim: {claimName: db}}]";
    assert_field(
        &errors(policy, claim),
        "spec.mounts[0].persistentVolumeClaim.claimName",
        "not allowed",
    );
}

#[test]
fn credential_locations_and_homes_are_blocked_mount_paths() {
    for path in [
        "/root/.ssh",
        "/home/dev/.aws",
        "/home/dev/.config/gcloud",
        "/opt/x/.kube",
        "/root",
        "/home/dev",
    ] {
        assert!(blocked_path(path, &[]).is_some(), "{path} should be blocked");
    }
    for path in ["/inputs", "/home/dev/src", "/data/sshkeys", "/opt/config"] {
        assert_eq!(blocked_path(path, &[]), None, "{path} is not a credential location");
    }
    let extra = ["/etc/secrets".to_owned()];
    assert!(blocked_path("/etc", &extra).is_some(), "above a blocked path");
    assert!(blocked_path("/etc/secrets/x", &extra).is_some(), "under a blocked path");
    let errs = errors(
        "{namespaceSelector: {}}",
        "image: x\nmounts: [{name: k, mountPath: /root/.ssh, configMap: {name: k}}]",
    );
    assert_field(&errs, "spec.mounts[0].mountPath", "credential location");
}

#[test]
fn credential_like_env_names_are_refused() {
    let errs = errors(
        "{namespaceSelector: {}}",
        "image: x\nenv: [{name: LANG, value: C}, {name: GITHUB_TOKEN, value: ghp}]",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_field(&errs, "spec.env[1].name", "credential");
}

#[test]
fn plan_reports_tenant_and_operator_errors_together_once_per_field() {
    let policy = resolved("{namespaceSelector: {}}");
    let sandbox =
        sandbox("image: x\nisolation: kata\nnetwork: {egress: [{cidr: 169.254.169.254/32}]}");
    let rejection = tenant::plan(&sandbox, &config(), &Ok(policy), &none()).expect_err("refused");
    assert!(rejection.names("spec.isolation"), "{rejection}");
    assert!(rejection.names("spec.network.egress[0].cidr"), "{rejection}");
}

#[test]
fn example_policy_parses_and_resolves() {
    let text = include_str!("../../../examples/policy.yaml");
    let policy: SandboxPolicy = serde_yaml::from_str(text).expect("examples/policy.yaml parses");
    let tenant = tenant::resolve(Some(&policy), &config()).expect("example resolves");
    assert_eq!(tenant.allowed_isolation, vec![Isolation::Gvisor, Isolation::Kata]);
    assert_eq!(tenant.default_ttl, "30m");
    assert_eq!(tenant.quota.and_then(|q| q.sandboxes), Some(5));
}

#[test]
fn zero_and_backwards_lifetimes_are_refused_under_a_tenant_policy() {
    let policy = resolved("{namespaceSelector: {}, lifetime: {defaultTtl: 10m, maxTtl: 30m}}");
    for spec in
        ["image: x\nlifetime: {ttl: 0s}", "image: x\nlifetime: {expiresAt: '2001-01-01T00:00:00Z'}"]
    {
        let result = tenant::plan(&sandbox(spec), &config(), &Ok(policy.clone()), &none());
        assert!(result.is_err(), "{spec} was accepted: {result:?}");
    }
}

#[test]
fn a_stored_fallback_expiry_does_not_make_an_invalid_lifetime_valid() {
    // A rejected sandbox gets a fallback `status.expiresAt`; its next reconcile must still
    // refuse the lifetime it asked for.
    let policy = resolved("{namespaceSelector: {}}");
    for spec in
        ["image: x\nlifetime: {ttl: 0s}", "image: x\nlifetime: {expiresAt: '2001-01-01T00:00:00Z'}"]
    {
        let mut sandbox = sandbox(spec);
        sandbox.status = Some(crate::api::AgentSandboxStatus {
            expires_at: Some(crate::policy::testing::time("2030-01-01T01:00:00Z")),
            ..Default::default()
        });
        let result = tenant::plan(&sandbox, &config(), &Ok(policy.clone()), &none());
        assert!(result.is_err(), "{spec} was accepted once an expiry was stored");
    }
}

/// What the operator found of one object: it exists with these labels.
fn found(kind: SourceKind, name: &str, labels_of: &[(&str, &str)]) -> SourceFacts {
    let mut facts = SourceFacts::default();
    let labels = labels(labels_of);
    facts.insert(kind, name, Found::Object { labels, service_account: None });
    facts
}

fn plan_with(
    policy_yaml: &str,
    sandbox_yaml: &str,
    facts: &SourceFacts,
) -> Result<crate::policy::SandboxPlan, crate::policy::Rejection> {
    tenant::plan(&sandbox(sandbox_yaml), &config(), &Ok(resolved(policy_yaml)), facts)
}

const SECRET_MOUNT: &str =
    "image: x\nmounts: [{name: creds, mountPath: /inputs/creds, secret: {secretName: api-key}}]";

#[test]
fn policy_default_isolation_applies_to_a_sandbox_that_names_none() {
    let policy = "{namespaceSelector: {}, isolation: {allowed: [gvisor, kata], default: kata}}";
    let plan = plan_with(policy, "image: x", &none()).expect("accepted");
    assert_eq!((plan.isolation, plan.runtime_class.as_str()), (Isolation::Kata, "kata"));
    let named = plan_with(policy, "image: x\nisolation: gvisor", &none()).expect("accepted");
    assert_eq!(named.isolation, Isolation::Gvisor, "a named level beats the default");
}

#[test]
fn a_level_recorded_in_status_stays_when_the_policy_default_changes() {
    let mut running = sandbox("image: x");
    running.status = Some(crate::api::AgentSandboxStatus {
        isolation: Some(Isolation::Kata),
        ..Default::default()
    });
    let now_gvisor =
        resolved("{namespaceSelector: {}, isolation: {allowed: [gvisor, kata], default: gvisor}}");
    let plan = tenant::plan(&running, &config(), &Ok(now_gvisor), &none()).expect("accepted");
    assert_eq!(plan.isolation, Isolation::Kata);
    let kata_gone = resolved("{namespaceSelector: {}, isolation: {allowed: [gvisor]}}");
    let errs = check(&running, &kata_gone, &none());
    assert_field(&errs, "spec.isolation", "status.isolation");
}

#[test]
fn an_inherited_default_the_policy_does_not_allow_refuses_only_sandboxes_naming_no_level() {
    let policy = "{namespaceSelector: {}, isolation: {allowed: [kata]}}";
    let errs = errors(policy, "image: x");
    assert_field(&errs, "spec.isolation", "is not set, and the default level \"gvisor\"");
    assert!(errors(policy, "image: x\nisolation: kata").is_empty());
    let own_bad =
        policy_named("{namespaceSelector: {}, isolation: {allowed: [kata], default: gvisor}}");
    assert!(tenant::resolve(Some(&own_bad), &config()).is_err(), "its own default must be allowed");
}

fn policy_named(spec_yaml: &str) -> SandboxPolicy {
    policy("p", spec_yaml)
}

#[test]
fn the_default_policy_refuses_secrets_and_reads_nothing_to_say_so() {
    let tenant = tenant::resolve(None, &config()).expect("default resolves");
    assert!(crate::policy::sources::to_read(&sandbox(SECRET_MOUNT), &tenant).is_empty());
    let errs = check(&sandbox(SECRET_MOUNT), &tenant, &none());
    assert_field(&errs, "spec.mounts[0].secret.secretName", "not allowed");
}

#[test]
fn a_secret_allowed_by_name_is_accepted_read_only_once_its_metadata_was_read() {
    let policy = "{namespaceSelector: {}, mounts: {secrets: {allowed: true, names: [api-*]}}}";
    let facts = found(SourceKind::Secret, "api-key", &[]);
    let plan = plan_with(policy, SECRET_MOUNT, &facts).expect("accepted");
    assert_eq!(plan.mounts[0].source, crate::policy::plan::MountSource::Secret("api-key".into()));
    assert!(!plan.mounts[0].writable);
    let unread = plan_with(policy, SECRET_MOUNT, &none()).expect_err("fails closed unread");
    assert!(unread.names("spec.mounts[0].secret.secretName"), "{unread}");
    let other = SECRET_MOUNT.replace("api-key", "db-password");
    let errs = errors(policy, &other);
    assert_field(&errs, "spec.mounts[0].secret.secretName", "allowed names");
}

#[test]
fn a_service_account_token_secret_is_refused_whatever_the_rule_says() {
    let policy = "{namespaceSelector: {}, mounts: {secrets: {allowed: true}}}";
    let mut facts = SourceFacts::default();
    let token = Found::Object {
        labels: BTreeMap::new(),
        service_account: Some("kennel-sandbox".to_owned()),
    };
    facts.insert(SourceKind::Secret, "api-key", token);
    let refused = plan_with(policy, SECRET_MOUNT, &facts).expect_err("token refused");
    assert!(refused.to_string().contains("service-account tokens are never mounted"), "{refused}");
}

#[test]
fn label_rules_admit_objects_with_the_labels_and_refuse_others() {
    let policy = "{namespaceSelector: {}, mounts: {configMaps: {allowed: true, \
                  matchLabels: {kennel.dev/input: 'true'}}}}";
    let spec = "image: x\nmounts: [{name: task, mountPath: /inputs, configMap: {name: task-1}}]";
    let tenant = resolved(policy);
    let wanted = crate::policy::sources::to_read(&sandbox(spec), &tenant);
    assert_eq!(wanted.len(), 1, "the labelled rule needs a read: {wanted:?}");
    let labelled = found(SourceKind::ConfigMap, "task-1", &[("kennel.dev/input", "true")]);
    assert!(plan_with(policy, spec, &labelled).is_ok());
    let plain = found(SourceKind::ConfigMap, "task-1", &[("kennel.dev/input", "no")]);
    let refused = plan_with(policy, spec, &plain).expect_err("labels do not match");
    assert!(refused.to_string().contains("kennel.dev/input=true"), "{refused}");
    let unread = plan_with(policy, spec, &none()).expect_err("fails closed unread");
    assert!(unread.names("spec.mounts[0].configMap.name"), "{unread}");
}

#[test]
fn a_missing_object_is_not_a_rejection_but_a_wait_naming_the_mount_and_the_object() {
    let policy = "{namespaceSelector: {}, mounts: {secrets: {allowed: true}}}";
    let mut facts = SourceFacts::default();
    facts.insert(SourceKind::Secret, "api-key", Found::Missing);
    assert!(plan_with(policy, SECRET_MOUNT, &facts).is_ok());
    let missing = crate::policy::sources::missing(&sandbox(SECRET_MOUNT), &facts);
    assert_eq!(missing.len(), 1);
    assert!(missing[0].contains("\"creds\"") && missing[0].contains("Secret \"api-key\""));
}

#[test]
fn an_unreadable_object_is_refused_with_the_reason() {
    let policy = "{namespaceSelector: {}, mounts: {secrets: {allowed: true}}}";
    let mut facts = SourceFacts::default();
    facts.insert(SourceKind::Secret, "api-key", Found::Unreadable("forbidden".into()));
    let refused = plan_with(policy, SECRET_MOUNT, &facts).expect_err("refused");
    assert!(refused.to_string().contains("may not read it (forbidden)"), "{refused}");
}

#[test]
fn a_writable_claim_is_refused_unless_the_policy_allows_writable_inputs() {
    let spec = "image: x\nmounts: [{name: d, mountPath: /data, \
                persistentVolumeClaim: {claimName: scratch, writable: true}}]";
    let strict = "{namespaceSelector: {}}";
    assert_field(
        &errors(strict, spec),
        "spec.mounts[0].persistentVolumeClaim.writable",
        "allowWritable",
    );
    let open = "{namespaceSelector: {}, mounts: {allowWritable: true}}";
    let plan = plan_with(open, spec, &none()).expect("accepted");
    assert!(plan.mounts[0].writable);
    let read_only = spec.replace(", writable: true", "");
    assert!(!plan_with(strict, &read_only, &none()).expect("accepted").mounts[0].writable);
}
