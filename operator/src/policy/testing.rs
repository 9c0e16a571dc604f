//! Test helpers: sandboxes from small inline YAML, with the metadata the API server sets.
// Test-only code: a helper that cannot produce its fixture fails the test loudly.
#![allow(clippy::panic)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::AgentSandbox,
    config::Config,
    policy::{Rejection, SandboxPlan, plan},
};

/// Creation time of every test sandbox.
pub(crate) const CREATED: &str = "2030-01-01T00:00:00Z";

/// A sandbox named `demo` in `team-a` with a fixed UID and creation time, whose spec is the
/// given YAML: a first line, then lines sharing any indentation.
pub(crate) fn sandbox(spec_yaml: &str) -> AgentSandbox {
    let text = format!(
        "apiVersion: kennel.dev/v1alpha1\nkind: AgentSandbox\nmetadata: {{}}\nspec:\n{}",
        indent(spec_yaml)
    );
    let mut sandbox: AgentSandbox = serde_yaml::from_str(&text).expect("test YAML is a sandbox");
    sandbox.metadata.name = Some("demo".to_owned());
    sandbox.metadata.namespace = Some("team-a".to_owned());
    sandbox.metadata.uid = Some("0b5c6f4e-1111-2222-3333-444455556666".to_owned());
    sandbox.metadata.creation_timestamp = Some(time(CREATED));
    sandbox
}

/// A Kubernetes timestamp from RFC 3339 text.
pub(crate) fn time(text: &str) -> Time {
    Time(text.parse().expect("test time is RFC 3339"))
}

/// A config with a pod, service and API server range, as a real cluster has.
pub(crate) fn config() -> Config {
    Config::from_yaml(
        "cluster:\n  podCidrs: [10.244.0.0/16]\n  serviceCidrs: [10.96.0.0/12]\n  \
         apiServerCidrs: [192.0.2.10/32]\n",
    )
    .expect("test config parses")
}

/// The plan of a sandbox with this spec under [`config`], which must be accepted.
pub(crate) fn accepted(spec_yaml: &str) -> SandboxPlan {
    plan(&sandbox(spec_yaml), &config()).unwrap_or_else(|e| panic!("expected acceptance, got: {e}"))
}

/// The rejection of a sandbox with this spec under [`config`].
pub(crate) fn rejected(spec_yaml: &str) -> Rejection {
    match plan(&sandbox(spec_yaml), &config()) {
        Ok(plan) => panic!("expected a rejection, got a plan: {plan:?}"),
        Err(rejection) => rejection,
    }
}

/// Asserts that the rejection names `field` and its message mentions `words`.
pub(crate) fn assert_names(rejection: &Rejection, field: &str, words: &str) {
    let hit = rejection.errors.iter().find(|e| e.field == field);
    let hit = hit.unwrap_or_else(|| panic!("no error on {field}; got: {rejection}"));
    assert!(
        hit.message.contains(words),
        "error on {field} should mention {words:?}: {}",
        hit.message
    );
}

/// Re-indents YAML written inside a Rust string so that it sits under `spec:`.
fn indent(yaml: &str) -> String {
    let mut lines = yaml.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default().trim();
    let rest: Vec<&str> = lines.collect();
    let margin = rest.iter().map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let rest = rest.iter().map(|line| format!("  {}\n", &line[margin..]));
    std::iter::once(format!("  {first}\n")).chain(rest).collect()
}
