//! The figures of a run: JSON in `docs/bench/results.json`, a plot next to it, and the
//! table between the markers of `docs/benchmarks.md`.

use std::{fmt::Write as _, path::PathBuf, process::Command};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{Settings, floor::Floor, gvisor::RealNode, kennel_run::KennelRun, plot};

const BEGIN: &str = "<!-- bench:begin (written by make bench) -->";
const END: &str = "<!-- bench:end -->";

/// The simulated half of a run.
pub struct Simulated {
    /// The bare-Pod floor.
    pub floor: Floor,
    /// Kennel.
    pub kennel: KennelRun,
}

/// Everything a run measured, and where.
#[derive(Serialize)]
pub struct Results {
    /// When the run ended (RFC 3339).
    pub generated_at: String,
    /// The machine.
    pub machine: Machine,
    /// Versions of what ran.
    pub versions: Versions,
    /// Sandboxes, concurrency, idle window, fake nodes, real-node count.
    pub settings: serde_json::Value,
    /// The bare-Pod floor on kwok's nodes.
    pub floor: Floor,
    /// Kennel on kwok's nodes.
    pub kennel: KennelRun,
    /// The real node under gVisor, when run.
    pub real_node: Option<RealNode>,
    /// Each target of issue 6 and whether this run met it.
    pub targets: Vec<Target>,
}

/// The machine the run was on.
#[derive(Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// `uname -r`.
    pub kernel: String,
}

/// Versions of what ran.
#[derive(Serialize)]
pub struct Versions {
    /// Kubernetes (pinned in e2e/tools/kubernetes).
    pub kubernetes: String,
    /// gVisor (pinned in e2e/tools/gvisor).
    pub gvisor: String,
    /// kwok (pinned in e2e/tools/kwok).
    pub kwok: String,
    /// The operator's commit; `-dirty` when operator/ had uncommitted changes.
    pub operator_commit: String,
}

/// One target and this run's figure.
#[derive(Serialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The goal, in words.
    pub goal: String,
    /// This run's figure.
    pub value: f64,
    /// Whether the figure meets the goal.
    pub met: bool,
}

impl Results {
    /// Collects a run's figures with the machine's facts.
    pub fn new(settings: &Settings, sim: Simulated, real_node: Option<RealNode>) -> Self {
        let Simulated { floor, kennel } = sim;
        let targets = vec![
            Target {
                name: "throughput / floor".into(),
                goal: ">= 0.8".into(),
                value: kennel.ratio_to_floor,
                met: kennel.ratio_to_floor >= 0.8,
            },
            Target {
                name: "expiry lag p99 (ms)".into(),
                goal: "< 1000".into(),
                value: kennel.expiry.lag_to_delete_requested.p99_ms,
                met: kennel.expiry.lag_to_delete_requested.p99_ms < 1000.0,
            },
            Target {
                name: "operator RSS at 10,000 sandboxes (MiB, extrapolated)".into(),
                goal: "< 100".into(),
                value: kennel.operator.extrapolated_rss_10k_mib,
                met: kennel.operator.extrapolated_rss_10k_mib < 100.0,
            },
            Target {
                name: "writes per idle sandbox per hour".into(),
                goal: "0".into(),
                value: kennel.idle.writes_per_sandbox_per_hour,
                met: kennel.idle.writes_per_sandbox_per_hour == 0.0,
            },
        ];
        Self {
            generated_at: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .map_or_else(|_| String::new(), |t| t.to_string()),
            machine: machine(),
            versions: versions(),
            settings: serde_json::json!({
                "sandboxes": settings.n, "concurrency": settings.concurrency,
                "idle_window_s": settings.idle_secs, "fake_nodes": settings.nodes,
                "real_node_sandboxes": settings.gvisor_n,
            }),
            floor,
            kennel,
            real_node,
            targets,
        }
    }
}

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// Writes the JSON, the plot and the table.
pub fn write(results: &Results) -> Result<()> {
    let dir = docs_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_string_pretty(results)? + "\n";
    std::fs::write(dir.join("results.json"), json)?;
    plot::draw(&dir.join("results.png"), &results.floor, &results.kennel)?;
    let page = docs_dir().join("benchmarks.md");
    let text = std::fs::read_to_string(&page).unwrap_or_default();
    let table = format!("{BEGIN}\n{}{END}", table(results));
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(a), Some(b)) if b > a => format!("{}{table}{}", &text[..a], &text[b + END.len()..]),
        _ => format!("{text}\n{table}\n"),
    };
    std::fs::write(&page, updated).with_context(|| format!("failed to write {}", page.display()))
}

/// The table for `docs/benchmarks.md`: the setting, the figures, the request breakdown.
pub fn table(r: &Results) -> String {
    let (m, v, k) = (&r.machine, &r.versions, &r.kennel);
    let mut out = format!(
        "Run of {}: {} CPUs, {:.0} GiB, kernel `{}`; Kubernetes {}, gVisor {}, kwok {}, \
         operator `{}`. {} sandboxes, {} requests in flight, {} fake nodes.\n\n\
         | Figure | Kennel | Bare Pods (floor) | Target |\n|---|---|---|---|\n",
        r.generated_at,
        m.cpus,
        m.memory_gib,
        m.kernel,
        v.kubernetes,
        v.gvisor,
        v.kwok,
        v.operator_commit,
        k.n,
        r.settings["concurrency"],
        r.settings["fake_nodes"]
    );
    for [name, kennel, floor, target] in latency_rows(r).into_iter().chain(cost_rows(r)) {
        let _ = writeln!(out, "| {name} | {kennel} | {floor} | {target} |");
    }
    for shortfall in &k.shortfalls {
        let _ = writeln!(out, "\n**Incomplete run:** {shortfall}; figures cover what got there.");
    }
    out.push_str("\nAPI requests per sandbox in Kennel's run, by resource and verb ");
    out.push_str("(all components):\n\n| Request | Per sandbox |\n|---|---|\n");
    for (key, per) in k.requests.breakdown.iter().take(14) {
        let _ = writeln!(out, "| `{key}` | {per} |");
    }
    out
}

/// Rows of `[figure, Kennel, floor, target]` about speed.
fn latency_rows(r: &Results) -> Vec<[String; 4]> {
    let (k, f, e) = (&r.kennel, &r.floor, &r.kennel.expiry);
    let na = || "n/a".to_owned();
    let mut rows = vec![
        [
            "Throughput to Pod created".into(),
            format!("{:.0}/s ({:.2} of floor)", k.throughput_per_s, k.ratio_to_floor),
            format!("{:.0}/s", f.throughput_per_s),
            ">= 0.8 of floor".into(),
        ],
        [
            "Apply to Pod created, p50 / p99".into(),
            ms2(k.apply_to_created.p50_ms, k.apply_to_created.p99_ms),
            ms2(f.apply_to_created.p50_ms, f.apply_to_created.p99_ms),
            String::new(),
        ],
        [
            "Apply to Pod Running (kwok), p50 / p99".into(),
            ms2(k.apply_to_running.p50_ms, k.apply_to_running.p99_ms),
            ms2(f.apply_to_running.p50_ms, f.apply_to_running.p99_ms),
            String::new(),
        ],
        [
            "Expiry lag to Pod deletion, p50 / p99".into(),
            ms2(e.lag_to_delete_requested.p50_ms, e.lag_to_delete_requested.p99_ms),
            na(),
            "p99 < 1 s".into(),
        ],
        [
            "Expiry lag, operator histogram, p50 / p99".into(),
            opt_ms2(e.metric_lag_ms),
            na(),
            String::new(),
        ],
        [
            "Expiry lag to Pod gone, p50 / p99".into(),
            ms2(e.lag_to_pod_gone.p50_ms, e.lag_to_pod_gone.p99_ms),
            na(),
            String::new(),
        ],
    ];
    if let Some(real) = &r.real_node {
        let (a, b) = (&real.kennel_apply_to_running, &real.bare_apply_to_running);
        rows.push([
            format!("Real node, gVisor, {} one by one: apply to Running p50 / p90", real.n),
            ms2(a.p50_ms, a.p90_ms),
            ms2(b.p50_ms, b.p90_ms),
            String::new(),
        ]);
    }
    rows
}

/// Rows of `[figure, Kennel, floor, target]` about cost.
fn cost_rows(r: &Results) -> Vec<[String; 4]> {
    let (k, o) = (&r.kennel, &r.kennel.operator);
    let na = || "n/a".to_owned();
    let idle_writes = k.idle.sandbox_writes + k.idle.pod_writes + k.idle.network_policy_writes;
    vec![
        [
            "Operator RSS: idle / all Running / peak".into(),
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                o.baseline_rss_mib, o.steady_rss_mib, o.peak_rss_mib
            ),
            na(),
            String::new(),
        ],
        [
            "Operator RSS at 10,000 sandboxes (extrapolated)".into(),
            format!(
                "{:.1} MiB ({:.1} KiB per sandbox)",
                o.extrapolated_rss_10k_mib, o.rss_per_sandbox_kib
            ),
            na(),
            "< 100 MiB".into(),
        ],
        [
            "Operator CPU: burst / expiry / whole run".into(),
            format!("{:.1} / {:.1} / {:.1} s", o.cpu_s_burst, o.cpu_s_expiry, o.cpu_s_total),
            na(),
            String::new(),
        ],
        [
            "API requests per sandbox (all components)".into(),
            format!(
                "{:.1} (+{:.1} over floor)",
                k.requests.per_object, k.requests_over_floor_per_sandbox
            ),
            format!("{:.1}", r.floor.requests.per_object),
            String::new(),
        ],
        [
            "Writes per idle sandbox per hour".into(),
            format!(
                "{} ({idle_writes} writes in {} s)",
                k.idle.writes_per_sandbox_per_hour, k.idle.window_s
            ),
            na(),
            "0".into(),
        ],
        [
            "Reconciles (errors)".into(),
            format!("{:.0} ({:.0})", k.reconciles, k.reconcile_errors),
            na(),
            String::new(),
        ],
    ]
}

fn ms2(a: f64, b: f64) -> String {
    format!("{a:.0} / {b:.0} ms")
}

fn opt_ms2(pair: (Option<f64>, Option<f64>)) -> String {
    match pair {
        (Some(a), Some(b)) => ms2(a, b),
        _ => "no samples".into(),
    }
}

/// A few lines for the terminal.
pub fn summary(r: &Results) -> String {
    let mut s = String::from(
        "bench: wrote docs/bench/results.json, docs/bench/results.png, docs/benchmarks.md\n",
    );
    for target in &r.targets {
        let _ = writeln!(
            s,
            "  {:<55} {:>10.2}  goal {:<7} {}",
            target.name,
            target.value,
            target.goal,
            if target.met { "met" } else { "NOT met" }
        );
    }
    s
}

fn machine() -> Machine {
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0);
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn versions() -> Versions {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "unknown".into());
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_default();
    let dirty = git(&["status", "--porcelain", "--", "../operator"]).is_some_and(|s| !s.is_empty());
    Versions {
        kubernetes: var("KUBERNETES_VERSION"),
        gvisor: var("GVISOR_VERSION"),
        kwok: var("KWOK_VERSION"),
        operator_commit: if dirty { format!("{commit}-dirty") } else { commit },
    }
}
