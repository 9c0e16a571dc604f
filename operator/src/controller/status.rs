//! Status step: compose the sandbox's status and write it only when it has changed.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};

use crate::{
    api::{AgentSandbox, AgentSandboxStatus, Phase},
    controller::FIELD_MANAGER,
    error::{Error, Result},
};

/// Sets a condition, keeping its `lastTransitionTime` unless its status flips, so that a
/// status recomputed from unchanged facts compares equal to the stored one.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" };
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = existing
        .map(|i| &conditions[i])
        .filter(|c| c.status == status)
        .map_or_else(|| Time(jiff::Timestamp::now()), |c| c.last_transition_time.clone());
    let condition = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time,
        observed_generation: generation,
    };
    match existing {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Removes a condition that no longer applies.
pub fn clear_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// A Kubernetes timestamp for a `chrono` time (whole nanoseconds are kept).
pub fn to_time(at: DateTime<Utc>) -> Time {
    let nanos = i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0);
    Time(jiff::Timestamp::new(at.timestamp(), nanos).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// The phase the sandbox's stored status shows, if any.
pub fn current_phase(sandbox: &AgentSandbox) -> Option<Phase> {
    sandbox.status.as_ref().and_then(|s| s.phase)
}

/// Writes `status` with server-side apply unless it equals what is stored. Returns
/// whether a write happened. An idle sandbox therefore costs no writes.
pub async fn write_if_changed(
    api: &Api<AgentSandbox>,
    sandbox: &AgentSandbox,
    mut status: AgentSandboxStatus,
) -> Result<bool> {
    status.observed_generation = sandbox.metadata.generation;
    if sandbox.status.as_ref() == Some(&status) {
        tracing::debug!("status unchanged, not written");
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": "kennel.dev/v1alpha1",
        "kind": "AgentSandbox",
        "status": status,
    });
    let name = sandbox.name_any();
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Status { name, source })?;
    tracing::debug!(phase = ?status.phase, "status written");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_condition_keeps_its_transition_time() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, "Ready", false, "PodPending", "waiting", Some(1));
        let first = conditions.clone();
        set_condition(&mut conditions, "Ready", false, "PodPending", "waiting", Some(1));
        assert_eq!(conditions, first);
    }

    #[test]
    fn flipped_condition_gets_a_new_transition_time_and_reason() {
        let old = to_time(Utc::now() - chrono::Duration::hours(1));
        let mut conditions = vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: "PodPending".into(),
            message: String::new(),
            last_transition_time: old.clone(),
            observed_generation: Some(1),
        }];
        set_condition(&mut conditions, "Ready", true, "PodReady", "running", Some(1));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].reason, "PodReady");
        assert!(conditions[0].last_transition_time.0 > old.0);
    }

    #[test]
    fn cleared_condition_is_gone() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, "Expired", true, "LifetimeElapsed", "", None);
        clear_condition(&mut conditions, "Expired");
        assert!(conditions.is_empty());
    }
}
