//! OpenTelemetry trace export: the operator's tracing spans, sent to a collector over OTLP/HTTP.
//!
//! Built only with the `otel` feature. [`layer`] gives a tracing layer for the operator's
//! subscriber and an [`OtelGuard`]; the spans go through the SDK's batch processor, so a
//! reconcile never waits on the collector, and dropping the guard exports what is queued.
//!
//! Missing: TLS to the collector. The exporter is built without a TLS stack to keep the
//! feature small, so the endpoint must be plain `http://` (a collector in the cluster or
//! beside the operator); an `https://` endpoint is refused at start-up rather than failing
//! on every export.

use std::time::Duration;

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{ExporterBuildError, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::{Layer, filter::FilterFn, registry::LookupSpan};

/// The `service.name` every exported span carries.
pub const SERVICE_NAME: &str = "kennel-operator";

/// Where the trace signal is posted below the collector's base URL (the OTLP/HTTP default).
const TRACES_PATH: &str = "/v1/traces";

/// How long one export may take before the batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Span targets never exported: the exporter's own HTTP stack and the SDK. Exporting the
/// spans of an export would feed itself at `trace` level.
const TRANSPORT_TARGETS: [&str; 5] = ["opentelemetry", "reqwest", "hyper", "h2", "tower"];

/// Trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The endpoint is not a plain `http://` URL.
    #[error(
        "failed to use {endpoint:?} as the OTLP endpoint: give the collector's plain-HTTP \
         base URL, such as `http://otel-collector.observability:4318` (TLS is not built in)"
    )]
    UnsupportedEndpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// The OTLP exporter refused its configuration. The message repeats the cause: start-up
    /// errors are printed without their chain.
    #[error("failed to build the OTLP span exporter for {endpoint:?}: {source}")]
    BuildExporter {
        /// The traces URL the exporter was given.
        endpoint: String,
        /// What the exporter reported.
        #[source]
        source: ExporterBuildError,
    },
}

/// Keeps trace export running. Dropping it exports the spans still queued (waiting up to
/// five seconds) and stops the exporter, so hold it until the operator stops.
#[derive(Debug)]
#[must_use = "dropping the guard stops trace export"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "failed to export the last traces");
        }
    }
}

/// A layer that exports every span it sees (those of the exporter's transport aside) to the
/// collector at `endpoint`, a base URL such as `http://otel-collector:4318`.
pub fn layer<S>(endpoint: &str) -> Result<(impl Layer<S> + Send + Sync, OtelGuard), OtelError>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let url = traces_url(endpoint)?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|source| OtelError::BuildExporter { endpoint: url, source })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("kennel"))
        .with_filter(FilterFn::new(|metadata: &Metadata<'_>| exported(metadata.target())));
    Ok((layer, OtelGuard { provider }))
}

/// Who sends the spans: this operator and its version, plus whatever the standard
/// `OTEL_RESOURCE_ATTRIBUTES` adds (a Pod name, a cluster name).
fn resource() -> Resource {
    Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

fn exported(target: &str) -> bool {
    !TRANSPORT_TARGETS.iter().any(|transport| target.starts_with(transport))
}

/// The traces URL below a collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read by
/// the OTLP specification; a URL that already names the traces path is kept as it is.
fn traces_url(endpoint: &str) -> Result<String, OtelError> {
    let base = endpoint.trim().trim_end_matches('/');
    let host = base.strip_prefix("http://").unwrap_or_default();
    if host.is_empty() || host.starts_with('/') {
        return Err(OtelError::UnsupportedEndpoint { endpoint: endpoint.to_owned() });
    }
    if base.ends_with(TRACES_PATH) {
        Ok(base.to_owned())
    } else {
        Ok(format!("{base}{TRACES_PATH}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_gets_the_traces_path() {
        let url = traces_url("http://collector:4318").expect("valid");
        assert_eq!(url, "http://collector:4318/v1/traces");
        let url = traces_url(" http://collector:4318/ ").expect("valid");
        assert_eq!(url, "http://collector:4318/v1/traces", "trailing slash and spaces");
    }

    #[test]
    fn url_naming_the_traces_path_is_kept() {
        let url = traces_url("http://collector:4318/v1/traces").expect("valid");
        assert_eq!(url, "http://collector:4318/v1/traces");
    }

    #[test]
    fn https_and_schemeless_endpoints_are_refused_naming_them() {
        for endpoint in ["https://collector:4318", "collector:4318", "http://", ""] {
            let err = traces_url(endpoint).expect_err(endpoint);
            assert!(err.to_string().contains(&format!("{endpoint:?}")), "{err}");
        }
    }

    #[test]
    fn spans_of_the_exporters_transport_are_not_exported() {
        assert!(exported("kennel::controller::reconcile"));
        assert!(exported("kube_runtime::controller"));
        for target in ["hyper_util::client", "reqwest::connect", "opentelemetry_sdk", "h2::proto"] {
            assert!(!exported(target), "{target}");
        }
    }
}
