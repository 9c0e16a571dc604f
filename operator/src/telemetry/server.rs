//! The operator's HTTP endpoint: `/metrics` for Prometheus, `/healthz` for liveness and
//! `/readyz` for readiness (healthy watches).

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// Whether the operator's watches are healthy; shared between the controller, which
/// flips it, and `/readyz`, which reports it.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Not ready until the controller says its first watch sync is done.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the watches healthy (`true`) or failing (`false`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the watches are healthy.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, or not local).
    #[error("failed to bind the metrics and health endpoint to {addr}; pick a free port")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("failed to serve the metrics and health endpoint")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds `addr` and serves until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    serve_on(listener, metrics, health, shutdown).await
}

/// Serves on an already bound listener until `shutdown` completes, letting requests in
/// flight finish.
pub async fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "Serving metrics and health");
    }
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve)
}

/// The routes, separate from the listener so they can be exercised on their own.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(error) => {
            tracing::warn!(error = &error as &dyn std::error::Error, "Failed to encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "failed to encode metrics\n").into_response()
        }
    }
}

async fn ready_handler(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "watches not synced or failing\n")
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use tokio::sync::oneshot;

    use super::*;

    /// A minimal HTTP/1.0 GET: the server closes the connection after the response. Blocking
    /// std I/O on a blocking thread keeps tokio's `io-util` feature out of the build.
    async fn get(addr: SocketAddr, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connects");
            stream.write_all(request.as_bytes()).expect("writes");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("reads");
            response
        })
        .await
        .expect("client thread joins")
    }

    #[tokio::test]
    async fn endpoints_report_metrics_liveness_and_readiness() {
        let metrics = Arc::new(Metrics::new().expect("metrics register"));
        metrics.record_error("kube_api");
        let health = Arc::new(Health::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, metrics, health.clone(), async {
            let _ = stopped.await;
        }));

        let body = get(addr, "/metrics").await;
        assert!(body.starts_with("HTTP/1.0 200"), "{body}");
        assert!(body.contains("content-type: text/plain; version=0.0.4"), "{body}");
        assert!(body.contains(r#"kennel_reconcile_errors_total{category="kube_api"} 1"#));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.0 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.0 503"));
        health.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.0 200"));
        health.set_ready(false);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.0 503"));

        stop.send(()).expect("server still running");
        server.await.expect("joins").expect("stops cleanly");
    }

    #[tokio::test]
    async fn binding_a_used_port_is_a_bind_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = taken.local_addr().expect("has address");
        let metrics = Arc::new(Metrics::new().expect("metrics register"));
        let err = serve(addr, metrics, Arc::new(Health::new()), async {}).await;
        assert!(matches!(err, Err(ServeError::Bind { .. })), "{err:?}");
    }
}
