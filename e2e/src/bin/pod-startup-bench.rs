//! Pod create-to-Running latency on the local cluster, per runtime handler.
//!
//! Creates pods one after another (default 20 per `RuntimeClass`, `runc` and `gvisor`),
//! times each from the create call to the watch event that shows phase `Running`, and
//! prints p50, p90 and max. Run with `make cluster-up` first:
//! `e2e/cluster/pod-startup-bench.sh [COUNT]`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kennel_e2e::{
    ClusterEnv, TestNamespace, client,
    pods::{create_running, shell_pod},
};

#[tokio::main]
async fn main() -> Result<()> {
    let count: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("COUNT must be a number")?,
        None => 20,
    };
    let env = ClusterEnv::load()?;
    let client = client(&env).await?;
    println!("pod create-to-Running, {count} pods per runtime, one at a time");
    for runtime in ["runc", "gvisor"] {
        let ns = TestNamespace::create(&client, &env, &format!("bench-{runtime}")).await?;
        let mut samples = Vec::with_capacity(count);
        for i in 0..count {
            let pod = shell_pod(&format!("p{i}"), &env.busybox_image, Some(runtime), "sleep 600");
            let start = Instant::now();
            create_running(&client, &ns.name, &pod).await?;
            samples.push(start.elapsed());
        }
        samples.sort();
        println!(
            "{runtime:>7}: p50 {} ms  p90 {} ms  max {} ms",
            millis(percentile(&samples, 50)),
            millis(percentile(&samples, 90)),
            millis(samples.last().copied().unwrap_or_default()),
        );
    }
    Ok(())
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}
