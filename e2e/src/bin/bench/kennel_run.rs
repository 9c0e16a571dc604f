//! The Kennel run on kwok's nodes: a burst of sandboxes through the operator, an idle
//! window with every sandbox Running, then all of them expiring at the same instant.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{core::v1::Pod, networking::v1::NetworkPolicy};
use kube::{Api, Client, api::ListParams};
use serde::Serialize;

use kennel::{
    api::{AgentSandbox, Phase},
    config::Config,
};
use kennel_e2e::ClusterEnv;

use crate::{
    Settings,
    apiserver::{self, round2},
    floor::Floor,
    kwok,
    operator::{Operator, ResourceSample},
    prom, say,
    stats::{Summary, histogram_quantile},
    workload::{self, PodTimeline, PodTimes, now},
};

/// Sandboxes the memory figure is extrapolated to.
const MEMORY_TARGET_SANDBOXES: f64 = 10_000.0;

/// What the Kennel run measured.
#[derive(Serialize, Clone, Debug)]
pub struct KennelRun {
    /// Sandboxes applied.
    pub n: usize,
    /// Seconds from the first apply to the last Pod seen.
    pub burst_s: f64,
    /// Sandboxes whose Pod was created, per second.
    pub throughput_per_s: f64,
    /// `throughput_per_s` over the floor's.
    pub ratio_to_floor: f64,
    /// Apply to the Pod's first watch event.
    pub apply_to_created: Summary,
    /// Apply to the Pod seen `Running` (kwok).
    pub apply_to_running: Summary,
    /// The operator's own `kennel_sandbox_pod_created_seconds`, p50 and p99 in ms.
    pub metric_pod_created_ms: (Option<f64>, Option<f64>),
    /// The mass expiry.
    pub expiry: Expiry,
    /// The operator's memory and CPU.
    pub operator: OperatorCost,
    /// Writes while nothing happens.
    pub idle: Idle,
    /// API requests over the whole life (create, run, expire), all components.
    pub requests: apiserver::RequestDelta,
    /// `requests.per_object` minus the floor's: what the operator adds per sandbox.
    pub requests_over_floor_per_sandbox: f64,
    /// What did not happen in time (empty when the run is complete); figures that depend
    /// on it cover only the sandboxes that got there.
    pub shortfalls: Vec<String>,
    /// `kennel_reconcile_total` at the end.
    pub reconciles: f64,
    /// `kennel_reconcile_errors_total` at the end (all categories).
    pub reconcile_errors: f64,
    /// Raw samples for the plot.
    #[serde(skip)]
    pub samples: Samples,
}

/// Raw samples for the plot, in milliseconds (resources as sampled).
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Apply to Pod created.
    pub created: Vec<f64>,
    /// `expiresAt` to the Pod's deletion being requested.
    pub expiry_lag: Vec<f64>,
    /// The operator's resident memory and CPU over time.
    pub resources: Vec<ResourceSample>,
    /// Seconds since the operator started at which the burst began and expiry was due.
    pub marks: (f64, f64),
}

/// The mass expiry.
#[derive(Serialize, Clone, Debug)]
pub struct Expiry {
    /// The instant every sandbox expired at (RFC 3339).
    pub expires_at: String,
    /// `expiresAt` to the Pod's deletion timestamp seen by a watch.
    pub lag_to_delete_requested: Summary,
    /// `expiresAt` to the Pod gone from the API server.
    pub lag_to_pod_gone: Summary,
    /// The operator's `kennel_sandbox_expiry_lag_seconds`, p50 and p99 in ms.
    pub metric_lag_ms: (Option<f64>, Option<f64>),
    /// Seconds from `expiresAt` until every sandbox object was gone.
    pub all_sandboxes_gone_s: Option<f64>,
}

/// The operator's cost.
#[derive(Serialize, Clone, Debug)]
pub struct OperatorCost {
    /// Resident memory once ready, before any sandbox, MiB.
    pub baseline_rss_mib: f64,
    /// Resident memory with every sandbox Running, MiB.
    pub steady_rss_mib: f64,
    /// Peak resident memory (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Memory added per sandbox, KiB (steady minus baseline, over n).
    pub rss_per_sandbox_kib: f64,
    /// Baseline plus 10,000 times the per-sandbox memory: an extrapolation, MiB.
    pub extrapolated_rss_10k_mib: f64,
    /// CPU seconds from the burst's start until every sandbox was Running.
    pub cpu_s_burst: f64,
    /// CPU seconds over the expiry.
    pub cpu_s_expiry: f64,
    /// CPU seconds over the whole run.
    pub cpu_s_total: f64,
}

/// Writes counted during the idle window.
#[derive(Serialize, Clone, Debug)]
pub struct Idle {
    /// Length of the window, seconds.
    pub window_s: u32,
    /// AgentSandbox writes.
    pub sandbox_writes: usize,
    /// Pod writes.
    pub pod_writes: usize,
    /// NetworkPolicy writes.
    pub network_policy_writes: usize,
    /// All of them per sandbox, extrapolated to an hour.
    pub writes_per_sandbox_per_hour: f64,
}

/// The operator configuration of the simulated run: `gvisor` maps to kwok's RuntimeClass.
pub fn operator_config_text() -> String {
    // The shipped default unless `BENCH_RECONCILE_CONCURRENCY` asks for another, to see
    // whether the operator's own concurrency bounds the burst.
    let concurrency = std::env::var("BENCH_RECONCILE_CONCURRENCY")
        .ok()
        .and_then(|v| v.trim().parse::<u16>().ok())
        .map(|n| format!("reconcileConcurrency: {n}\n"))
        .unwrap_or_default();
    format!("runtimeClasses:\n  gvisor: {}\n{concurrency}", kwok::RUNTIME_CLASS)
}

/// [`operator_config_text`] parsed, for building the floor's Pods.
pub fn operator_config() -> Result<Config> {
    Config::from_yaml(&operator_config_text()).context("the benchmark's operator config")
}

/// Runs the Kennel side in `namespace`: burst, idle window, mass expiry.
pub async fn run(
    client: &Client,
    env: &ClusterEnv,
    namespace: &str,
    settings: &Settings,
    floor: &Floor,
) -> Result<KennelRun> {
    let config = settings.work_dir.join("operator-kwok.yaml");
    std::fs::write(&config, operator_config_text())?;
    let log = settings.work_dir.join("operator-kwok.log");
    let op = Operator::start(env, &config, namespace, &log).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = op.last_sample();
    let timeline = PodTimeline::start(client, namespace).await?;
    let before = apiserver::scrape(client).await?;
    let sandboxes: Api<AgentSandbox> = Api::namespaced(client.clone(), namespace);
    let expires_at = expiry_instant(floor, settings);

    let burst = burst(&sandboxes, settings, &op, &timeline, expires_at.clone()).await?;
    say("kennel: burst done; idle window");
    let idle = idle_window(client, namespace, settings, expires_at.1).await?;
    let steady = op.last_sample();
    say("kennel: waiting for the mass expiry");
    let (before_expiry, all_gone, expiry_shortfalls) =
        expire(&sandboxes, settings, &op, &timeline, expires_at.1).await;
    let after = apiserver::scrape(client).await?;
    let measured = Measured {
        baseline,
        steady,
        before_expiry,
        end: op.last_sample(),
        peak_rss_mib: op.peak_rss_mib(),
        resources: op.samples(),
        metrics: op.metrics().await?,
        requests: before.delta(&after, settings.n),
        times: timeline.snapshot(),
        all_gone,
        expiry_shortfalls,
    };
    op.stop();
    let run = assemble(settings, floor, expires_at, burst, idle, measured);
    say(&format!(
        "kennel: {:.0} sandboxes/s ({:.2} of the floor); expiry lag p99 {:.0} ms; RSS {:.1} MiB",
        run.throughput_per_s,
        run.ratio_to_floor,
        run.expiry.lag_to_delete_requested.p99_ms,
        run.operator.steady_rss_mib
    ));
    Ok(run)
}

/// One instant for all, as RFC 3339 and epoch seconds: after the burst (allowing fifteen
/// times the floor's, at least 90 s), the wait for Running and the idle window. The spec
/// is immutable, so it is fixed before the first sandbox is applied; a generous margin
/// only delays the expiry phase, a short one aborts the run.
fn expiry_instant(floor: &Floor, settings: &Settings) -> (String, f64) {
    let margin = (15.0 * floor.burst_s).max(90.0) + 20.0 + f64::from(settings.idle_secs) + 10.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let at = (now() + margin).ceil() as u64;
    #[allow(clippy::cast_precision_loss)]
    (workload::rfc3339(at), at as f64)
}

/// What the burst left behind.
struct Burst {
    applied: HashMap<String, f64>,
    created: HashMap<String, PodTimes>,
    start: ResourceSample,
    running: ResourceSample,
    shortfalls: Vec<String>,
}

/// Applies every sandbox and waits until each Pod is Running and each status says so.
async fn burst(
    sandboxes: &Api<AgentSandbox>,
    settings: &Settings,
    op: &Operator,
    timeline: &PodTimeline,
    (expires_text, expires_at): (String, f64),
) -> Result<Burst> {
    let objects = (0..settings.n)
        .map(|i| workload::sandbox(&format!("sb-{i:05}"), &settings.image, Some(&expires_text)))
        .collect::<Result<Vec<_>>>()?;
    let start = op.last_sample();
    let applied = workload::burst(sandboxes, objects, settings.concurrency).await?;
    // Waits stop early enough to leave the idle window its room before expiry.
    let reserve = f64::from(settings.idle_secs) + 15.0;
    let left = || Duration::from_secs_f64((expires_at - now() - reserve).max(1.0));
    let mut shortfalls = Vec::new();
    let created = timeline.wait_for("created", settings.n, left(), |t| t.created.is_some()).await;
    shortfalls.extend(created.err().map(|e| e.to_string()));
    let created = timeline.snapshot();
    let running = timeline.wait_for("Running", settings.n, left(), |t| t.running.is_some()).await;
    shortfalls.extend(running.err().map(|e| e.to_string()));
    if shortfalls.is_empty() {
        let phase = wait_for_phase(sandboxes, settings.n, Phase::Running, expires_at - 5.0).await;
        shortfalls.extend(phase.err().map(|e| e.to_string()));
    }
    for shortfall in &shortfalls {
        say(&format!("kennel: WARNING: {shortfall}; the run goes on, its figures are partial"));
    }
    Ok(Burst { applied, created, start, running: op.last_sample(), shortfalls })
}

/// Waits for the expiry, then until every Pod and sandbox is gone. Returns the operator's
/// resources at expiry and the seconds from expiry until the last sandbox was gone.
async fn expire(
    sandboxes: &Api<AgentSandbox>,
    settings: &Settings,
    op: &Operator,
    timeline: &PodTimeline,
    expires_at: f64,
) -> (ResourceSample, Option<f64>, Vec<String>) {
    tokio::time::sleep(Duration::from_secs_f64((expires_at - now()).max(0.0))).await;
    let before_expiry = op.last_sample();
    let wait = Duration::from_mins(3);
    let gone = timeline.wait_for("gone after expiry", settings.n, wait, |t| t.gone.is_some()).await;
    let mut shortfalls: Vec<String> = gone.err().map(|e| e.to_string()).into_iter().collect();
    let empty = wait_until_empty(sandboxes, Duration::from_mins(2)).await;
    let all_gone = empty.is_ok().then(|| round2(now() - expires_at));
    shortfalls.extend(empty.err().map(|e| e.to_string()));
    for shortfall in &shortfalls {
        say(&format!("kennel: WARNING: {shortfall}"));
    }
    // The operator's last Events and deletes land before the API server is scraped.
    tokio::time::sleep(Duration::from_secs(1)).await;
    (before_expiry, all_gone, shortfalls)
}

/// What was read once the sandboxes were gone.
struct Measured {
    baseline: ResourceSample,
    steady: ResourceSample,
    before_expiry: ResourceSample,
    end: ResourceSample,
    peak_rss_mib: f64,
    resources: Vec<ResourceSample>,
    metrics: String,
    requests: apiserver::RequestDelta,
    times: HashMap<String, PodTimes>,
    all_gone: Option<f64>,
    expiry_shortfalls: Vec<String>,
}

fn assemble(
    settings: &Settings,
    floor: &Floor,
    (expires_text, expires_at): (String, f64),
    burst: Burst,
    idle: Idle,
    m: Measured,
) -> KennelRun {
    let since = |pick: fn(&PodTimes) -> Option<f64>, times: &HashMap<String, PodTimes>| {
        let at = |(name, start): (&String, &f64)| {
            times.get(name).and_then(pick).map(|t| (t - start) * 1e3)
        };
        burst.applied.iter().filter_map(at).collect::<Vec<f64>>()
    };
    let after_expiry = |pick: fn(&PodTimes) -> Option<f64>| {
        m.times.values().filter_map(pick).map(|t| (t - expires_at) * 1e3).collect::<Vec<f64>>()
    };
    let quantiles = |name: &str| {
        let h = prom::histogram(&m.metrics, name);
        let q = |x| histogram_quantile(x, &h).map(|s| round2(s * 1e3));
        (q(0.5), q(0.99))
    };
    let created = since(|t| t.created, &burst.created);
    let first = burst.applied.values().copied().fold(f64::INFINITY, f64::min);
    let last = burst.created.values().filter_map(|t| t.created).fold(0.0, f64::max);
    #[allow(clippy::cast_precision_loss)]
    let throughput = created.len() as f64 / (last - first).max(1e-3);
    let expiry_lag = after_expiry(|t| t.deleting);
    let (start, running) = (burst.start, burst.running);
    KennelRun {
        n: settings.n,
        burst_s: round2(last - first),
        throughput_per_s: round2(throughput),
        ratio_to_floor: round2(throughput / floor.throughput_per_s.max(1e-3)),
        apply_to_created: Summary::of(&created),
        apply_to_running: Summary::of(&since(|t| t.running, &m.times)),
        metric_pod_created_ms: quantiles("kennel_sandbox_pod_created_seconds"),
        expiry: Expiry {
            expires_at: expires_text,
            lag_to_delete_requested: Summary::of(&expiry_lag),
            lag_to_pod_gone: Summary::of(&after_expiry(|t| t.gone)),
            metric_lag_ms: quantiles("kennel_sandbox_expiry_lag_seconds"),
            all_sandboxes_gone_s: m.all_gone,
        },
        operator: cost(settings, &m, start, running),
        idle,
        requests_over_floor_per_sandbox: round2(m.requests.per_object - floor.requests.per_object),
        shortfalls: burst.shortfalls.iter().chain(&m.expiry_shortfalls).cloned().collect(),
        reconciles: prom::total(&m.metrics, "kennel_reconcile_total"),
        reconcile_errors: prom::total(&m.metrics, "kennel_reconcile_errors_total"),
        requests: m.requests,
        samples: Samples {
            created,
            expiry_lag,
            resources: m.resources,
            marks: (start.t_s, start.t_s + (expires_at - first)),
        },
    }
}

fn cost(
    settings: &Settings,
    m: &Measured,
    start: ResourceSample,
    running: ResourceSample,
) -> OperatorCost {
    #[allow(clippy::cast_precision_loss)]
    let per_sandbox_mib = (m.steady.rss_mib - m.baseline.rss_mib).max(0.0) / settings.n as f64;
    OperatorCost {
        baseline_rss_mib: round2(m.baseline.rss_mib),
        steady_rss_mib: round2(m.steady.rss_mib),
        peak_rss_mib: round2(m.peak_rss_mib),
        rss_per_sandbox_kib: round2(per_sandbox_mib * 1024.0),
        extrapolated_rss_10k_mib: round2(
            m.baseline.rss_mib + per_sandbox_mib * MEMORY_TARGET_SANDBOXES,
        ),
        cpu_s_burst: round2(running.cpu_s - start.cpu_s),
        cpu_s_expiry: round2(m.end.cpu_s - m.before_expiry.cpu_s),
        cpu_s_total: round2(m.end.cpu_s),
    }
}

/// Counts writes to sandboxes, Pods and NetworkPolicies while every sandbox is Running,
/// for `idle_secs` or until five seconds before expiry, whichever is shorter.
async fn idle_window(
    client: &Client,
    namespace: &str,
    settings: &Settings,
    expires_at: f64,
) -> Result<Idle> {
    // Let the last status writes of the burst land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let room = (expires_at - now() - 5.0).max(0.0) as u32;
    let window = settings.idle_secs.min(room);
    if window < 5 {
        bail!("no time left for the idle window before expiry; raise the margin");
    }
    let (sandboxes, pods, policies) = tokio::try_join!(
        workload::count_writes(Api::<AgentSandbox>::namespaced(client.clone(), namespace), window),
        workload::count_writes(Api::<Pod>::namespaced(client.clone(), namespace), window),
        workload::count_writes(Api::<NetworkPolicy>::namespaced(client.clone(), namespace), window),
    )?;
    let total = sandboxes + pods + policies;
    #[allow(clippy::cast_precision_loss)]
    let per_hour = total as f64 / settings.n as f64 * 3600.0 / f64::from(window);
    Ok(Idle {
        window_s: window,
        sandbox_writes: sandboxes,
        pod_writes: pods,
        network_policy_writes: policies,
        writes_per_sandbox_per_hour: round2(per_hour),
    })
}

/// Waits until `count` sandboxes show `phase` in their status, or the deadline passes.
async fn wait_for_phase(
    api: &Api<AgentSandbox>,
    count: usize,
    phase: Phase,
    deadline: f64,
) -> Result<()> {
    loop {
        let list = api.list(&ListParams::default()).await?;
        let reached = list
            .items
            .iter()
            .filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(phase))
            .count();
        if reached >= count {
            return Ok(());
        }
        if now() > deadline {
            bail!("only {reached} of {count} sandboxes reached {phase:?} before expiry");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_until_empty(api: &Api<AgentSandbox>, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = api.list_metadata(&ListParams::default()).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{left} expired sandboxes still exist {timeout:?} after expiry");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
