//! Kubernetes Events for sandboxes, published from one place so every phase change and
//! refusal reads the same in `kubectl describe`.
//!
//! Publishing is best effort: a failure is logged and swallowed, because an Event that
//! cannot be written must never fail or delay the reconcile that wanted to report it. So
//! Events are written in the background, up to [`IN_FLIGHT`] at once; past that the caller
//! writes its own, so a slow API server slows reconciles instead of piling up tasks. An
//! Event still in flight when the operator stops is lost.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client, Resource as _,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tokio::sync::Semaphore;

use crate::api::{AgentSandbox, Phase};

/// The `reportingController` of every Event Kennel writes.
pub const CONTROLLER_NAME: &str = "kennel-operator";

/// Action of a phase-change Event.
const ACTION_PHASE: &str = "UpdatePhase";
/// Action of a refusal Event: the spec was checked and could not be run.
const ACTION_VALIDATE: &str = "Validate";
/// Events written in the background at once. Written inline, an Event was one of the four
/// API round trips of a new sandbox's first reconcile, holding a slot the next sandbox
/// waited for.
const IN_FLIGHT: usize = 32;
/// The API server refuses an Event note over 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

/// Publishes Events about `AgentSandbox` objects.
#[derive(Clone)]
pub struct EventPublisher {
    recorder: Recorder,
    in_flight: Arc<Semaphore>,
}

impl EventPublisher {
    /// A publisher reporting as `kennel-operator`, with the Pod name (`HOSTNAME`) as the
    /// instance so Events from different replicas can be told apart.
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()),
        };
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        Self { recorder: Recorder::new(client, reporter), in_flight }
    }

    /// Reports a phase change: `Normal`, or `Warning` when the sandbox failed or was
    /// rejected. `reason` is the condition reason behind the change.
    pub async fn phase_changed(
        &self,
        sandbox: &AgentSandbox,
        from: Option<Phase>,
        to: Phase,
        reason: &str,
        message: &str,
    ) {
        self.publish(sandbox, phase_event(from, to, reason, message)).await;
    }

    /// Reports that the sandbox was refused (`Warning`); `reason` is the condition reason.
    pub async fn refused(&self, sandbox: &AgentSandbox, reason: &str, message: &str) {
        let event = event(EventType::Warning, reason, ACTION_VALIDATE, message);
        self.publish(sandbox, event).await;
    }

    /// Reports any other problem (`Warning`), e.g. a child object that could not be
    /// applied; `action` names what was being done (`ApplyPod`, `DeletePod`).
    pub async fn warning(&self, sandbox: &AgentSandbox, reason: &str, action: &str, message: &str) {
        self.publish(sandbox, event(EventType::Warning, reason, action, message)).await;
    }

    async fn publish(&self, sandbox: &AgentSandbox, event: Event) {
        let reference = sandbox.object_ref(&());
        match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let recorder = self.recorder.clone();
                tokio::spawn(async move {
                    write(&recorder, &event, &reference).await;
                    drop(permit);
                });
            }
            Err(_) => write(&self.recorder, &event, &reference).await,
        }
    }
}

async fn write(recorder: &Recorder, event: &Event, reference: &ObjectReference) {
    if let Err(error) = recorder.publish(event, reference).await {
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            reason = %event.reason,
            "Failed to publish event"
        );
    }
}

/// The Event for a phase change; pure so its content can be tested without a cluster.
fn phase_event(from: Option<Phase>, to: Phase, reason: &str, message: &str) -> Event {
    let type_ = match to {
        Phase::Failed | Phase::Rejected => EventType::Warning,
        Phase::Pending | Phase::Running | Phase::Succeeded | Phase::Expired => EventType::Normal,
    };
    let from = from.map_or("(none)", Phase::as_str);
    let note = format!("{from} -> {}: {message}", to.as_str());
    event(type_, reason, ACTION_PHASE, &note)
}

fn event(type_: EventType, reason: &str, action: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, MAX_NOTE_BYTES).to_owned()),
        action: action.to_owned(),
        secondary: None,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_and_rejection_are_warnings_other_phases_normal() {
        let warn = |to| phase_event(Some(Phase::Running), to, "R", "m").type_;
        assert_eq!(warn(Phase::Failed), EventType::Warning);
        assert_eq!(warn(Phase::Rejected), EventType::Warning);
        assert_eq!(warn(Phase::Running), EventType::Normal);
        assert_eq!(warn(Phase::Expired), EventType::Normal);
    }

    #[test]
    fn phase_event_note_names_both_phases_and_keeps_the_reason() {
        let ev = phase_event(None, Phase::Pending, "Valid", "creating pod");
        assert_eq!(ev.note.as_deref(), Some("(none) -> Pending: creating pod"));
        assert_eq!(ev.reason, "Valid");
        assert_eq!(ev.action, ACTION_PHASE);
    }

    #[test]
    fn long_notes_are_cut_to_the_api_limit_on_a_char_boundary() {
        let long = "é".repeat(MAX_NOTE_BYTES);
        let ev = event(EventType::Warning, "PodRejected", "ApplyPod", &long);
        let note = ev.note.expect("note set");
        assert!(note.len() <= MAX_NOTE_BYTES);
        assert_eq!(note.len(), MAX_NOTE_BYTES, "two-byte chars fill 1024 bytes exactly");
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }
}
