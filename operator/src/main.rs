//! The `kennel-operator` command: `run` the controller, print the `crd` YAML, or, inside a
//! sandbox Pod, hold the agent back until its egress fence is in force (`fence-gate`).

use std::{io::Write, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use kube::Client;

use kennel::{
    config::Config,
    controller::{self, Context, Scope},
    fence_gate, leader,
    telemetry::{self, EventPublisher, Health, LogFormat, Metrics},
};

// jemalloc hands freed pages back to the system and fragments less than glibc's malloc
// across tokio's threads: resident memory per cached sandbox is a figure the operator is
// judged by (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "kennel-operator", version, about = "Kennel: fenced sandboxes for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Inside a sandbox Pod (init container): exit 0 once the Pod's egress fence blocks a
    /// probe address, 1 if it does not within the timeout.
    FenceGate(fence_gate::Args),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Operator configuration file (YAML); the safe defaults without it.
    #[arg(long, env = "KENNEL_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the metrics and health endpoints.
    #[arg(long, env = "KENNEL_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,
    /// Watch only this namespace instead of the whole cluster.
    #[arg(long, env = "KENNEL_NAMESPACE")]
    namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "KENNEL_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level (`info`, `debug`, ...); `RUST_LOG` overrides it.
    #[arg(long, env = "KENNEL_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// OpenTelemetry collector to export traces to, over OTLP/HTTP (its base URL, such as
    /// `http://otel-collector:4318`); needs a build with the `otel` feature.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(flatten)]
    leader: leader::Settings,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => print_crds(),
        Command::FenceGate(args) => fence_gate::run(&args),
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
            match runtime {
                Ok(runtime) => runtime.block_on(run(*args)),
                Err(error) => report(&format!("failed to start the async runtime: {error}")),
            }
        }
    }
}

/// Prints every CRD, separated by `---`; each part is its committed file under `crds/`.
fn print_crds() -> ExitCode {
    let mut parts = Vec::new();
    for (_, crd) in kennel::api::crds() {
        match serde_yaml::to_string(&crd) {
            Ok(text) => parts.push(text),
            Err(error) => return report(&format!("failed to serialise the CRD: {error}")),
        }
    }
    match std::io::stdout().lock().write_all(parts.join("---\n").as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&format!("failed to write the CRDs: {error}")),
    }
}

async fn run(args: RunArgs) -> ExitCode {
    let endpoint = args.otlp_endpoint.as_deref();
    // Held to the end: dropping it exports the last queued spans.
    let _logging = match telemetry::logging::init(args.log_format, &args.log_level, endpoint) {
        Ok(guard) => guard,
        Err(error) => return report(&format!("failed to set up logging: {error}")),
    };
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = error.as_ref() as &dyn std::error::Error, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: RunArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::load(args.config.as_deref())?;
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::new()?);
    let health = Arc::new(Health::new());
    let events = EventPublisher::new(client.clone());
    let lease_client = client.clone();
    let ctx = Arc::new(Context::new(client, config, metrics.clone(), events));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), metrics = %args.metrics_addr, "starting");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(telemetry::serve(args.metrics_addr, metrics, health.clone(), async {
            let _ = stop_rx.await;
        }));
    let scope = args.namespace.map_or(Scope::Cluster, Scope::Namespace);
    let run = controller::run(ctx, health.clone(), scope);
    let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = if args.leader.enabled {
        match leader::lead(lease_client, &args.leader, &health, run).await {
            Ok(output) => output.unwrap_or(Ok(())).map_err(Into::into),
            Err(error) => Err(error.into()),
        }
    } else {
        run.await.map_err(Into::into)
    };
    let _ = stop_tx.send(());
    if let Ok(Err(error)) = server.await {
        tracing::warn!(error = &error as &dyn std::error::Error, "metrics server failed");
    }
    result
}

/// Prints a fatal error before logging exists. The only place that writes to stderr.
fn report(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "kennel-operator: {message}");
    ExitCode::FAILURE
}
