//! Tracing set-up: a level or `RUST_LOG` filter, and human-readable or JSON output.
//!
//! Missing: OpenTelemetry export (the `otel` feature of issue 6). It needs the
//! opentelemetry crates, an OTLP exporter and a collector to test against; it is left for
//! when traces are wanted more than lean dependencies.

use tracing_subscriber::EnvFilter;

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
}

/// Installs the global subscriber. `level` (e.g. `info`) is the filter unless `RUST_LOG`
/// is set and non-empty, in which case that wins.
pub fn init(format: LogFormat, level: &str) -> Result<(), LoggingError> {
    let filter = filter(level, std::env::var(FILTER_ENV).ok())?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    }
    .map_err(LoggingError::Install)
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
