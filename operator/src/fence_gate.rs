//! The fence gate: `kennel-operator fence-gate`, run as the sandbox Pod's init container,
//! holds the agent back until the Pod's egress fence is in force.
//!
//! The operator applies the `NetworkPolicy` before the Pod, but the enforcer (kube-router,
//! Calico, Cilium ...) can only program a Pod's rules once it has seen the Pod with its
//! address, which is after the kubelet has created the Pod's network. An agent whose first
//! action is a connection could race ahead of its own policy. The gate closes that window:
//! it connects, again and again, to an address every sandbox policy denies (the API server
//! by default) and exits 0 only once that connection is blocked. An enforcer does not
//! filter a Pod it does not know yet, so a blocked probe means the Pod's rules are in place.
//!
//! Assumption: the probe answers whenever no fence stands in the way. If it is down (an API
//! server restart), the gate passes without proof; the next section of the agent's life is
//! still fenced as soon as the enforcer catches up. Known shortcoming: a stronger gate would
//! also require an address the policy allows (cluster DNS) to answer, proving the network
//! is up; that couples every start to DNS being healthy, so it is not done.

use std::{
    io::{self, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    process::ExitCode,
    time::{Duration, Instant},
};

/// Name of the init container that runs the gate.
pub const CONTAINER: &str = "fence-gate";
/// Pause between two probes that still got through.
const INTERVAL: Duration = Duration::from_millis(50);

/// Command-line arguments of `kennel-operator fence-gate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address (`ip:port` or `host:port`) that the sandbox's policy denies. Default: the
    /// `kubernetes` Service, from `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`,
    /// which the kubelet sets in every container.
    #[arg(long)]
    probe: Option<String>,
    /// Seconds to wait for the fence before failing the Pod.
    #[arg(long, default_value_t = 60)]
    timeout_seconds: u64,
    /// Milliseconds one connection attempt may take; a timed-out attempt counts as blocked
    /// (enforcers that drop rather than reject).
    #[arg(long, default_value_t = 300)]
    attempt_timeout_millis: u64,
}

/// What one connection attempt to the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The connection was accepted: no fence yet.
    Open,
    /// The connection was refused, timed out or found no route: the fence stands.
    Blocked(String),
}

/// How the wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The probe was blocked on attempt `attempts`, after `waited`, with `how`.
    Fenced {
        /// Attempts made, the blocked one included.
        attempts: u32,
        /// Time from the first attempt to the blocked one.
        waited: Duration,
        /// Why the attempt failed (`connection refused`, `timed out` ...).
        how: String,
    },
    /// Every attempt until the deadline got through.
    NotFenced {
        /// Attempts made.
        attempts: u32,
    },
}

/// Probes until one attempt is blocked or `timeout` has passed; `probe` makes one attempt.
pub fn wait_for_fence(timeout: Duration, mut probe: impl FnMut() -> Probe) -> Outcome {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Probe::Blocked(how) = probe() {
            return Outcome::Fenced { attempts, waited: start.elapsed(), how };
        }
        if start.elapsed() + INTERVAL > timeout {
            return Outcome::NotFenced { attempts };
        }
        std::thread::sleep(INTERVAL);
    }
}

/// One TCP connection attempt to `addr`, closed at once if it succeeds.
pub fn probe_tcp(addr: SocketAddr, attempt_timeout: Duration) -> Probe {
    match TcpStream::connect_timeout(&addr, attempt_timeout) {
        Ok(_) => Probe::Open,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Probe::Blocked("timed out".to_owned()),
        Err(e) => Probe::Blocked(e.to_string()),
    }
}

/// The probe address from `--probe`, or from the kubelet's `kubernetes` Service variables.
fn probe_address(args: &Args) -> Result<SocketAddr, String> {
    let text = if let Some(probe) = &args.probe {
        probe.clone()
    } else {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        host_port(&var("KUBERNETES_SERVICE_HOST")?, &var("KUBERNETES_SERVICE_PORT")?)
    };
    text.to_socket_addrs()
        .map_err(|e| format!("cannot resolve the probe {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("the probe {text:?} resolves to no address"))
}

/// `host:port`, with brackets around an IPv6 address so that it parses as one.
fn host_port(host: &str, port: &str) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Runs the gate: exit 0 once the fence is in force, 1 (with a message for the Pod's
/// status) when it never appears or the probe is unusable.
pub fn run(args: &Args) -> ExitCode {
    let addr = match probe_address(args) {
        Ok(addr) => addr,
        Err(message) => return say(&format!("fence gate: {message}; pass --probe"), false),
    };
    let attempt = Duration::from_millis(args.attempt_timeout_millis);
    let timeout = Duration::from_secs(args.timeout_seconds);
    match wait_for_fence(timeout, || probe_tcp(addr, attempt)) {
        Outcome::Fenced { attempts, waited, how } => say(
            &format!(
                "fence gate: egress fence in force: {addr} blocked ({how}) on attempt \
                 {attempts}, after {} ms",
                waited.as_millis()
            ),
            true,
        ),
        Outcome::NotFenced { attempts } => say(
            &format!(
                "fence gate: the egress fence was not in force within {}s: {addr} stayed \
                 reachable over {attempts} attempts; check that the cluster's NetworkPolicy \
                 enforcer is running and that no policy or allowlist opens {addr}",
                timeout.as_secs()
            ),
            false,
        ),
    }
}

/// Writes the gate's one line (stdout on success, stderr on failure, which the kubelet
/// keeps as the termination message) and returns the exit code.
fn say(line: &str, ok: bool) -> ExitCode {
    if ok {
        let _ = writeln!(io::stdout().lock(), "{line}");
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(io::stderr().lock(), "{line}");
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn gate_passes_on_the_first_blocked_probe_after_open_ones() {
        let mut script = vec![Probe::Open, Probe::Open, Probe::Blocked("refused".into())];
        script.reverse();
        let outcome = wait_for_fence(Duration::from_secs(5), || script.pop().expect("probe"));
        assert!(
            matches!(&outcome, Outcome::Fenced { attempts: 3, how, .. } if how == "refused"),
            "expected the fence on the third attempt, got {outcome:?}"
        );
    }

    #[test]
    fn gate_fails_when_the_probe_stays_open_until_the_deadline() {
        let mut calls = 0;
        let started = Instant::now();
        let outcome = wait_for_fence(Duration::from_millis(300), || {
            calls += 1;
            Probe::Open
        });
        assert_eq!(outcome, Outcome::NotFenced { attempts: calls });
        assert!(calls >= 2, "it retried before giving up: {calls}");
        assert!(started.elapsed() < Duration::from_secs(2), "the deadline bounds the wait");
    }

    #[test]
    fn a_listening_address_is_open_and_a_closed_port_is_blocked() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = listener.local_addr().expect("addr");
        assert_eq!(probe_tcp(open, Duration::from_millis(500)), Probe::Open);
        drop(listener);
        // Nothing listens there any more: the kernel refuses, as a rejecting enforcer does.
        assert!(matches!(probe_tcp(open, Duration::from_millis(500)), Probe::Blocked(_)));
    }

    #[test]
    fn probe_is_ip_and_port_with_ipv6_in_brackets() {
        let args = |probe: Option<&str>| Args {
            probe: probe.map(str::to_owned),
            timeout_seconds: 1,
            attempt_timeout_millis: 1,
        };
        assert_eq!(
            probe_address(&args(Some("10.96.0.1:443"))),
            Ok("10.96.0.1:443".parse().expect("addr"))
        );
        assert_eq!(
            probe_address(&args(Some("[fd00::1]:443"))),
            Ok("[fd00::1]:443".parse().expect("addr"))
        );
        assert!(probe_address(&args(Some("no-port"))).is_err());
        assert_eq!(host_port("fd00::1", "443"), "[fd00::1]:443");
        assert_eq!(host_port("10.96.0.1", "443"), "10.96.0.1:443");
    }
}
