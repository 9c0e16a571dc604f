//! With the `otel` feature, the subscriber `logging::init` installs exports its spans to an
//! OTLP/HTTP collector: here a local HTTP server that records what is posted to it.
#![cfg(feature = "otel")]

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    routing::post,
};
use kennel::telemetry::{LogFormat, logging};

/// One POST to `/v1/traces`: its content type and body.
type Export = (String, Bytes);

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Export>>>);

impl Collector {
    fn exports(&self) -> Vec<Export> {
        self.0.lock().expect("collector lock").clone()
    }
}

/// Accepts an export as a collector does: 200 with an empty protobuf response.
async fn accept(
    State(collector): State<Collector>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1]) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    collector.0.lock().expect("collector lock").push((content_type, body));
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")])
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn reconcile_span_and_its_fields_reach_the_otlp_collector_when_the_guard_drops() {
    let collector = Collector::default();
    let app = Router::new().route("/v1/traces", post(accept)).with_state(collector.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let endpoint = format!("http://{addr}");
    let guard = logging::init(LogFormat::Json, "info", Some(&endpoint)).expect("init");
    {
        let span = tracing::info_span!("reconcile", sandbox = "agent-7", ns = "team-a");
        let _entered = span.enter();
        tracing::info!(phase = "Running", "sandbox ready");
    }

    // Dropping the guard exports what is queued; it blocks, so off the runtime's thread,
    // which has to keep serving the collector meanwhile.
    tokio::task::spawn_blocking(move || drop(guard)).await.expect("shutdown");

    let exports = collector.exports();
    assert!(!exports.is_empty(), "no POST reached /v1/traces");
    for (content_type, body) in &exports {
        assert_eq!(content_type, "application/x-protobuf");
        assert!(!body.is_empty(), "an export with an empty body");
    }
    let body: Vec<u8> = exports.iter().flat_map(|(_, body)| body.iter().copied()).collect();
    // Protobuf keeps strings as UTF-8 bytes: the span's name, its fields, its event and
    // the resource's service attributes are all in the export as written.
    for expected in
        ["reconcile", "agent-7", "team-a", "sandbox ready", "kennel-operator", "service.version"]
    {
        assert!(contains(&body, expected), "{expected:?} is not in the exported traces");
    }
}
