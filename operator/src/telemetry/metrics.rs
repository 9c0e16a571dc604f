//! Prometheus metrics: one struct that registers every metric once and records them.
//!
//! Labels are bounded by construction: error categories and refusal reasons are
//! `&'static str` constants, phases and isolation levels are enums. No label ever carries
//! an object name, so the number of series does not grow with the number of sandboxes.

use std::time::Instant;

use kube::runtime::reflector::Store;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder, core::Collector,
};

use super::sandbox_gauge::SandboxCollector;
use crate::api::AgentSandbox;

/// Buckets of the reconcile duration, 1 ms to 10 s: a reconcile is a few API calls.
const RECONCILE_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets of the time from a sandbox's creation to its Pod being created, scheduled or
/// running, 50 ms to 120 s: the upper end covers an image pull on a cold node.
const POD_LIFECYCLE_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

/// Buckets of the expiry lag, 1 ms to 30 s: the target is well under a second.
const EXPIRY_LAG_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// A metric could not be created, registered or encoded.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be created or registered (a bug: names or labels clash).
    #[error("failed to register metric {name}")]
    Register {
        /// The metric's name.
        name: &'static str,
        /// What prometheus reported.
        #[source]
        source: prometheus::Error,
    },
    /// The gathered metrics could not be written in the text format.
    #[error("failed to encode metrics in the Prometheus text format")]
    Encode(#[source] prometheus::Error),
}

/// Every metric Kennel exports, registered once in its own registry.
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounter,
    reconcile_errors: IntCounterVec,
    reconcile_duration: Histogram,
    pod_created: Histogram,
    pod_scheduled: Histogram,
    pod_running: Histogram,
    expiry_lag: Histogram,
    refusals: IntCounterVec,
    warnings: IntCounterVec,
    sandboxes: SandboxCollector,
}

impl Metrics {
    /// Creates and registers every metric; `kennel_build_info` is set at once.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let reg = Registrar(&registry);
        let build_info = reg.int_gauge_vec(
            "kennel_build_info",
            "Always 1; the version label says which Kennel build is running",
            &["version"],
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let sandboxes = SandboxCollector::new()?;
        reg.collector("kennel_sandboxes", Box::new(sandboxes.clone()))?;
        Ok(Self {
            reconciles: reg.int_counter("kennel_reconcile_total", "Reconciles run")?,
            reconcile_errors: reg.int_counter_vec(
                "kennel_reconcile_errors_total",
                "Reconciles that failed, by error category",
                &["category"],
            )?,
            reconcile_duration: reg.histogram(
                "kennel_reconcile_duration_seconds",
                "Time one reconcile took",
                RECONCILE_BUCKETS,
            )?,
            pod_created: reg.histogram(
                "kennel_sandbox_pod_created_seconds",
                "Time from a sandbox's creation to the creation of its Pod",
                POD_LIFECYCLE_BUCKETS,
            )?,
            pod_scheduled: reg.histogram(
                "kennel_sandbox_pod_scheduled_seconds",
                "Time from a sandbox's creation to its Pod being bound to a node",
                POD_LIFECYCLE_BUCKETS,
            )?,
            pod_running: reg.histogram(
                "kennel_sandbox_pod_running_seconds",
                "Time from a sandbox's creation to its agent container running",
                POD_LIFECYCLE_BUCKETS,
            )?,
            expiry_lag: reg.histogram(
                "kennel_sandbox_expiry_lag_seconds",
                "Time from a sandbox's expiresAt to the deletion request of its Pod",
                EXPIRY_LAG_BUCKETS,
            )?,
            refusals: reg.int_counter_vec(
                "kennel_sandbox_refusals_total",
                "Sandboxes refused, by condition reason",
                &["reason"],
            )?,
            warnings: reg.int_counter_vec(
                "kennel_sandbox_warnings_total",
                "Warnings raised about accepted sandboxes, by condition reason",
                &["reason"],
            )?,
            sandboxes,
            registry,
        })
    }

    /// Starts timing one reconcile. When the returned guard drops, the reconcile count goes
    /// up by one and the elapsed time is observed in the duration histogram.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer {
            start: Instant::now(),
            count: self.reconciles.clone(),
            duration: self.reconcile_duration.clone(),
        }
    }

    /// Counts one failed reconcile under its error's stable category (e.g. `kube_api`).
    pub fn record_error(&self, category: &'static str) {
        self.reconcile_errors.with_label_values(&[category]).inc();
    }

    /// Counts one refused sandbox under its condition reason (`api::conditions::reason`).
    pub fn record_refusal(&self, reason: &'static str) {
        self.refusals.with_label_values(&[reason]).inc();
    }

    /// Counts one warning about an accepted sandbox under its condition reason, e.g. a
    /// foreign `NetworkPolicy` that widens its egress (`api::conditions::reason`).
    pub fn record_warning(&self, reason: &'static str) {
        self.warnings.with_label_values(&[reason]).inc();
    }

    /// Observes the seconds from a sandbox's creation to the creation of its Pod.
    pub fn observe_pod_created(&self, secs: f64) {
        self.pod_created.observe(non_negative(secs));
    }

    /// Observes the seconds from a sandbox's creation to its Pod being scheduled.
    pub fn observe_pod_scheduled(&self, secs: f64) {
        self.pod_scheduled.observe(non_negative(secs));
    }

    /// Observes the seconds from a sandbox's creation to its agent running.
    pub fn observe_pod_running(&self, secs: f64) {
        self.pod_running.observe(non_negative(secs));
    }

    /// Observes the seconds from a sandbox's `expiresAt` to the deletion request of its Pod.
    pub fn observe_expiry_lag(&self, secs: f64) {
        self.expiry_lag.observe(non_negative(secs));
    }

    /// Lets `kennel_sandboxes` count the sandboxes in the operator's cache at each scrape.
    /// Until this is called the gauge has no series. A later call replaces the store.
    pub fn watch_cache(&self, store: Store<AgentSandbox>) {
        self.sandboxes.set_store(store);
    }

    /// Gathers every metric in the Prometheus text exposition format.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(MetricsError::Encode)?;
        // The text encoder writes only UTF-8 (names, labels and numbers); lossy conversion
        // cannot change it.
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// The registry, for a caller that wants to add its own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Clock skew between the API server and the operator can make a duration negative; such
/// an observation is recorded as zero rather than lowering the histogram's sum.
fn non_negative(secs: f64) -> f64 {
    secs.max(0.0)
}

/// Guard returned by [`Metrics::reconcile_timer`]: records the reconcile when dropped.
pub struct ReconcileTimer {
    start: Instant,
    count: IntCounter,
    duration: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.duration.observe(self.start.elapsed().as_secs_f64());
        self.count.inc();
    }
}

/// Creates metrics and registers them, naming the metric in any error.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn collector(&self, name: &'static str, c: Box<dyn Collector>) -> Result<(), MetricsError> {
        self.0.register(c).map_err(|source| MetricsError::Register { name, source })
    }

    fn int_counter(&self, name: &'static str, help: &str) -> Result<IntCounter, MetricsError> {
        let metric = IntCounter::new(name, help)
            .map_err(|source| MetricsError::Register { name, source })?;
        self.collector(name, Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn int_counter_vec(
        &self,
        name: &'static str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        let metric = IntCounterVec::new(Opts::new(name, help), labels)
            .map_err(|source| MetricsError::Register { name, source })?;
        self.collector(name, Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn int_gauge_vec(
        &self,
        name: &'static str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricsError> {
        let metric = IntGaugeVec::new(Opts::new(name, help), labels)
            .map_err(|source| MetricsError::Register { name, source })?;
        self.collector(name, Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn histogram(
        &self,
        name: &'static str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let metric =
            Histogram::with_opts(opts).map_err(|source| MetricsError::Register { name, source })?;
        self.collector(name, Box::new(metric.clone()))?;
        Ok(metric)
    }
}

#[cfg(test)]
pub(in crate::telemetry) mod tests {
    use super::*;

    pub(in crate::telemetry) fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn recorded_error_appears_with_its_category() {
        let metrics = Metrics::new().expect("metrics register");
        metrics.record_error("kube_api");
        metrics.record_error("kube_api");
        metrics.record_error("invalid_spec");
        let text = metrics.encode().expect("encodes");
        let kube = r#"kennel_reconcile_errors_total{category="kube_api"}"#;
        assert_eq!(line_value(&text, kube), Some(2.0));
        let invalid = r#"kennel_reconcile_errors_total{category="invalid_spec"}"#;
        assert_eq!(line_value(&text, invalid), Some(1.0));
    }

    #[test]
    fn timer_counts_and_observes_once_when_dropped() {
        let metrics = Metrics::new().expect("metrics register");
        drop(metrics.reconcile_timer());
        let text = metrics.encode().expect("encodes");
        assert_eq!(line_value(&text, "kennel_reconcile_total "), Some(1.0));
        assert_eq!(line_value(&text, "kennel_reconcile_duration_seconds_count "), Some(1.0));
        let inf = r#"kennel_reconcile_duration_seconds_bucket{le="+Inf"}"#;
        assert_eq!(line_value(&text, inf), Some(1.0));
    }

    #[test]
    fn negative_durations_are_observed_as_zero() {
        let metrics = Metrics::new().expect("metrics register");
        metrics.observe_expiry_lag(-3.0);
        metrics.record_refusal(crate::api::conditions::reason::INVALID_SPEC);
        let text = metrics.encode().expect("encodes");
        assert_eq!(line_value(&text, "kennel_sandbox_expiry_lag_seconds_sum "), Some(0.0));
        let first = r#"kennel_sandbox_expiry_lag_seconds_bucket{le="0.001"}"#;
        assert_eq!(line_value(&text, first), Some(1.0));
        let refusal = r#"kennel_sandbox_refusals_total{reason="InvalidSpec"}"#;
        assert_eq!(line_value(&text, refusal), Some(1.0));
        let build = format!(r#"kennel_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"));
        assert_eq!(line_value(&text, &build), Some(1.0));
    }

    #[test]
    fn recorded_warning_appears_under_its_reason() {
        let metrics = Metrics::new().expect("metrics register");
        metrics.record_warning(crate::api::conditions::reason::FOREIGN_NETWORK_POLICY);
        let text = metrics.encode().expect("encodes");
        let warning = r#"kennel_sandbox_warnings_total{reason="ForeignNetworkPolicy"}"#;
        assert_eq!(line_value(&text, warning), Some(1.0));
    }
}
