//! The `kennel_sandboxes{phase,isolation}` gauge, counted from the operator's watch cache
//! at each scrape instead of being kept up to date on every change.

use std::sync::{Arc, PoisonError, RwLock};

use kube::runtime::reflector::Store;
use prometheus::{
    IntGaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::metrics::MetricsError;
use crate::api::{AgentSandbox, Isolation, Phase};

/// Every phase, in the order the `kennel_sandboxes` gauge emits them.
const PHASES: [Phase; 6] = [
    Phase::Pending,
    Phase::Running,
    Phase::Succeeded,
    Phase::Failed,
    Phase::Expired,
    Phase::Rejected,
];

/// Every isolation level, in the order the `kennel_sandboxes` gauge emits them.
const ISOLATIONS: [Isolation; 2] = [Isolation::Gvisor, Isolation::Kata];

/// `kennel_sandboxes{phase,isolation}`: computed at scrape time from the reflector's
/// store, so a scrape costs no API call. Every phase x isolation pair is emitted, zeros
/// included, so series do not appear and vanish as sandboxes come and go.
#[derive(Clone)]
pub(super) struct SandboxCollector {
    store: Arc<RwLock<Option<Store<AgentSandbox>>>>,
    gauge: IntGaugeVec,
}

impl SandboxCollector {
    pub(super) fn new() -> Result<Self, MetricsError> {
        let name = "kennel_sandboxes";
        let opts = Opts::new(name, "Sandboxes in the operator's cache, by phase and isolation");
        let gauge = IntGaugeVec::new(opts, &["phase", "isolation"])
            .map_err(|source| MetricsError::Register { name, source })?;
        Ok(Self { store: Arc::default(), gauge })
    }

    pub(super) fn set_store(&self, store: Store<AgentSandbox>) {
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    /// Counts the cached sandboxes, indexed like [`PHASES`] x [`ISOLATIONS`].
    fn count(store: &Store<AgentSandbox>) -> [[i64; ISOLATIONS.len()]; PHASES.len()] {
        let mut counts = [[0; ISOLATIONS.len()]; PHASES.len()];
        for sandbox in store.state() {
            let phase = sandbox.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Pending);
            // A sandbox whose level is not decided yet counts under the built-in default.
            let recorded = sandbox.status.as_ref().and_then(|s| s.isolation);
            let isolation = sandbox.spec.isolation.or(recorded).unwrap_or(Isolation::Gvisor);
            counts[phase_index(phase)][isolation_index(isolation)] += 1;
        }
        counts
    }
}

impl Collector for SandboxCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Held for the whole collect so two concurrent scrapes cannot interleave their sets.
        let guard = self.store.write().unwrap_or_else(PoisonError::into_inner);
        let Some(store) = guard.as_ref() else {
            return Vec::new();
        };
        let counts = Self::count(store);
        for (phase, row) in PHASES.iter().zip(counts) {
            for (isolation, n) in ISOLATIONS.iter().zip(row) {
                self.gauge.with_label_values(&[phase.as_str(), isolation.as_str()]).set(n);
            }
        }
        self.gauge.collect()
    }
}

/// Position of a phase in [`PHASES`]. The exhaustive match makes a new phase a compile
/// error here until the gauge knows about it.
fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Pending => 0,
        Phase::Running => 1,
        Phase::Succeeded => 2,
        Phase::Failed => 3,
        Phase::Expired => 4,
        Phase::Rejected => 5,
    }
}

/// Position of an isolation level in [`ISOLATIONS`]; exhaustive for the same reason.
fn isolation_index(isolation: Isolation) -> usize {
    match isolation {
        Isolation::Gvisor => 0,
        Isolation::Kata => 1,
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector::store::Writer, watcher};

    use super::*;
    use crate::{
        api::{AgentSandboxSpec, AgentSandboxStatus},
        telemetry::metrics::{Metrics, tests::line_value},
    };

    fn sandbox(name: &str, isolation: Isolation, phase: Option<Phase>) -> AgentSandbox {
        let spec: AgentSandboxSpec =
            serde_json::from_value(serde_json::json!({ "image": "agent:1" }))
                .expect("minimal spec parses");
        let mut obj =
            AgentSandbox::new(name, AgentSandboxSpec { isolation: Some(isolation), ..spec });
        obj.metadata.namespace = Some("team-a".into());
        obj.status =
            phase.map(|phase| AgentSandboxStatus { phase: Some(phase), ..Default::default() });
        obj
    }

    #[test]
    fn sandbox_gauge_counts_cached_objects_by_phase_and_isolation() {
        let metrics = Metrics::new().expect("metrics register");
        let mut writer = Writer::<AgentSandbox>::default();
        for obj in [
            sandbox("a", Isolation::Gvisor, Some(Phase::Running)),
            sandbox("b", Isolation::Gvisor, Some(Phase::Running)),
            sandbox("c", Isolation::Kata, None),
            sandbox("d", Isolation::Gvisor, Some(Phase::Rejected)),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }
        metrics.watch_cache(writer.as_reader());
        let text = metrics.encode().expect("encodes");
        let value = |phase: &str, iso: &str| {
            line_value(&text, &format!(r#"kennel_sandboxes{{isolation="{iso}",phase="{phase}"}}"#))
        };
        assert_eq!(value("Running", "gvisor"), Some(2.0));
        assert_eq!(value("Pending", "kata"), Some(1.0));
        assert_eq!(value("Rejected", "gvisor"), Some(1.0));
        assert_eq!(value("Expired", "kata"), Some(0.0), "zeros are emitted too");
        let series = text.lines().filter(|l| l.starts_with("kennel_sandboxes{")).count();
        assert_eq!(series, PHASES.len() * ISOLATIONS.len());
    }

    #[test]
    fn sandbox_gauge_follows_deletions_from_the_cache() {
        let metrics = Metrics::new().expect("metrics register");
        let mut writer = Writer::<AgentSandbox>::default();
        let obj = sandbox("a", Isolation::Kata, Some(Phase::Running));
        writer.apply_watcher_event(&watcher::Event::Apply(obj.clone()));
        metrics.watch_cache(writer.as_reader());
        let running = r#"kennel_sandboxes{isolation="kata",phase="Running"}"#;
        assert_eq!(line_value(&metrics.encode().expect("encodes"), running), Some(1.0));
        writer.apply_watcher_event(&watcher::Event::Delete(obj));
        assert_eq!(line_value(&metrics.encode().expect("encodes"), running), Some(0.0));
    }
}
