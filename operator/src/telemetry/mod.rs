//! Telemetry: what the operator tells the people who run it.
//!
//! - [`metrics`]: every Prometheus metric, registered once in [`Metrics`].
//! - [`events`]: Kubernetes Events for sandboxes, from one [`EventPublisher`].
//! - [`logging`]: the tracing subscriber, text or JSON.
//! - `otel` (with the `otel` feature): the subscriber's spans exported as OTLP traces.
//! - [`server`]: `/metrics`, `/healthz` and `/readyz` over HTTP.
//!
//! The metric names, labels and what to alert on are listed in `docs/metrics.md`.

pub mod events;
pub mod logging;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
mod sandbox_gauge;
pub mod server;

pub use events::EventPublisher;
pub use logging::{LogFormat, LoggingError, LoggingGuard};
pub use metrics::{Metrics, MetricsError, ReconcileTimer};
pub use server::{Health, ServeError, serve};
