//! Tracing set-up: a level or `RUST_LOG` filter, human-readable or JSON output, and, in
//! builds with the `otel` feature, the same spans exported as OpenTelemetry traces.

use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// The environment variable whose filter, when set, overrides the `--log-level` flag.
pub const FILTER_ENV: &str = "RUST_LOG";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, with the current span's fields, for log pipelines.
    Json,
}

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The level or `RUST_LOG` is not a valid filter.
    #[error(
        "failed to parse log filter {directives:?}; use a level such as `info` or \
         `kennel=debug,kube=warn`"
    )]
    InvalidFilter {
        /// The filter as given.
        directives: String,
        /// What the parser reported.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("failed to install the log subscriber")]
    Install(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Trace export was asked for and could not be set up.
    #[cfg(feature = "otel")]
    #[error(transparent)]
    Otel(#[from] super::otel::OtelError),
}

/// Keeps what [`init`] started. With trace export on, dropping it exports the spans still
/// queued and stops the exporter, so hold it until the operator stops.
#[derive(Debug, Default)]
#[must_use = "dropping the guard stops trace export"]
pub struct LoggingGuard {
    #[cfg(feature = "otel")]
    _otel: Option<super::otel::OtelGuard>,
}

/// Installs the global subscriber. `level` (e.g. `info`) is the filter unless `RUST_LOG`
/// is set and non-empty, in which case that wins. With an `otlp_endpoint` (a collector's
/// base URL) the spans the filter lets through are also exported as traces; a build without
/// the `otel` feature says so in a warning and only logs.
pub fn init(
    format: LogFormat,
    level: &str,
    otlp_endpoint: Option<&str>,
) -> Result<LoggingGuard, LoggingError> {
    let filter = filter(level, std::env::var(FILTER_ENV).ok())?;
    let endpoint = otlp_endpoint.map(str::trim).filter(|e| !e.is_empty());
    let (traces, guard) = trace_export(endpoint)?;
    let output = match format {
        LogFormat::Text => fmt::layer().boxed(),
        LogFormat::Json => fmt::layer().json().with_current_span(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(traces)
        .with(output)
        .try_init()
        .map_err(|error| LoggingError::Install(error.into()))?;
    if cfg!(not(feature = "otel"))
        && let Some(endpoint) = endpoint
    {
        tracing::warn!(
            endpoint,
            "traces are not exported: this build lacks the `otel` feature (cargo build \
             --features otel)"
        );
    }
    Ok(guard)
}

/// The trace-export layer for `endpoint`, if one is given.
#[cfg(feature = "otel")]
fn trace_export<S>(
    endpoint: Option<&str>,
) -> Result<(Option<impl Layer<S> + Send + Sync>, LoggingGuard), LoggingError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    S: Send + Sync,
{
    let Some(endpoint) = endpoint else {
        return Ok((None, LoggingGuard::default()));
    };
    let (layer, guard) = super::otel::layer(endpoint)?;
    Ok((Some(layer), LoggingGuard { _otel: Some(guard) }))
}

/// Without the `otel` feature there is nothing to export to.
#[cfg(not(feature = "otel"))]
#[allow(clippy::unnecessary_wraps)] // the same signature as the `otel` build's
fn trace_export(
    _endpoint: Option<&str>,
) -> Result<(Option<tracing_subscriber::layer::Identity>, LoggingGuard), LoggingError> {
    Ok((None, LoggingGuard::default()))
}

/// The filter from the level flag, overridden by a non-empty `RUST_LOG` value.
fn filter(level: &str, env: Option<String>) -> Result<EnvFilter, LoggingError> {
    let directives = env.filter(|v| !v.trim().is_empty()).unwrap_or_else(|| level.to_owned());
    EnvFilter::try_new(&directives)
        .map_err(|source| LoggingError::InvalidFilter { directives, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_flag_is_the_filter_without_rust_log() {
        let f = filter("debug", None).expect("valid");
        assert_eq!(f.to_string(), "debug");
        let f = filter("warn", Some("  ".into())).expect("valid");
        assert_eq!(f.to_string(), "warn", "an empty RUST_LOG does not override the flag");
    }

    #[test]
    fn rust_log_overrides_the_level_flag() {
        let f = filter("info", Some("kennel=trace".into())).expect("valid");
        assert_eq!(f.to_string(), "kennel=trace");
    }

    #[test]
    fn invalid_filter_is_an_error_naming_it() {
        let err = filter("info", Some("kennel=loud".into())).expect_err("invalid");
        assert!(err.to_string().contains("kennel=loud"), "{err}");
    }
}
