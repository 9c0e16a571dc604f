//! Operator configuration: the platform team's settings, read once at start from a YAML file.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::Deserialize;

use crate::api::{
    Isolation, PolicyRules,
    policy::{EgressRules, IsolationRules, LifetimeRules, MountRules, MountSourceRule},
};

/// Everything the platform team can set for the operator as a whole. Every field has a
/// safe default, so an empty file (or none) gives a working, locked-down operator.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Config {
    /// RuntimeClass name for each isolation level (`gvisor`, `kata`).
    pub runtime_classes: BTreeMap<String, String>,
    /// Lifetime of a sandbox that names none, such as `1h`.
    pub default_ttl: String,
    /// Grace period, in seconds, given to an agent's Pod when its sandbox expires.
    pub expiry_grace_seconds: i64,
    /// Requests used where a sandbox names none.
    pub default_requests: Amounts,
    /// Limits used where a sandbox names none.
    pub default_limits: Amounts,
    /// Workspace size where a sandbox names none.
    pub default_workspace_size: String,
    /// Size limit of the writable `/tmp` every sandbox gets.
    pub tmp_size: String,
    /// Service account every sandbox Pod runs as; the operator creates it with no
    /// permissions and no token.
    pub sandbox_service_account: String,
    /// User and group id the agent runs as (never 0).
    pub run_as_user: i64,
    /// Where the cluster's DNS servers are, for the one egress rule every sandbox gets.
    pub dns: DnsConfig,
    /// The cluster's own address ranges, which an allowlist never opens unless
    /// `allowClusterEgress` is true.
    pub cluster: ClusterRanges,
    /// Address ranges no allowlist can ever open, whatever else is configured: link-local
    /// addresses, where cloud metadata services live, by default.
    pub always_denied_cidrs: Vec<String>,
    /// Let allowlists open the cluster's pod, service and API server ranges.
    pub allow_cluster_egress: bool,
    /// The tenant policy of namespaces no SandboxPolicy selects, and the value of every
    /// field a SandboxPolicy leaves out. Safe by default: gVisor only, at most one hour,
    /// no writable inputs, no Secrets.
    pub default_policy: PolicyRules,
    /// The init container that holds each agent back until its Pod's egress fence is in
    /// force ([`crate::fence_gate`]). Off when absent: the agent then starts as soon as the
    /// Pod does, and may race ahead of the NetworkPolicy enforcer for its first moments.
    pub fence_gate: Option<FenceGateConfig>,
    /// Most sandboxes reconciled at once. Each reconcile in flight holds a connection to
    /// the API server, so a burst beyond this waits in the queue instead of opening more.
    pub reconcile_concurrency: u16,
}

/// Where the fence gate comes from and what it probes.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FenceGateConfig {
    /// An image whose entrypoint is `kennel-operator`: the operator's own image.
    pub image: String,
    /// `ip:port` that every sandbox's policy denies and that answers when nothing blocks
    /// it. Default: the `kubernetes` Service (the API server).
    #[serde(default)]
    pub probe: Option<String>,
    /// How long the gate waits for the fence before it fails the Pod (`60s`).
    #[serde(default = "default_gate_timeout")]
    pub timeout: String,
}

fn default_gate_timeout() -> String {
    "60s".to_owned()
}

impl FenceGateConfig {
    /// The timeout in whole seconds; `check` proved it parses.
    pub fn timeout_seconds(&self) -> u64 {
        parse_ttl(&self.timeout).map_or(60, |d| d.as_secs())
    }
}

/// Resource amounts in Kubernetes notation.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Amounts {
    /// CPU (`500m`).
    pub cpu: String,
    /// Memory (`512Mi`).
    pub memory: String,
    /// Ephemeral storage (`1Gi`).
    pub ephemeral_storage: String,
}

/// How sandbox Pods reach cluster DNS.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsConfig {
    /// Namespace of the DNS pods.
    pub namespace: String,
    /// Labels that select the DNS pods.
    pub pod_labels: BTreeMap<String, String>,
    /// Port the DNS pods listen on (the target port, not the Service port): network
    /// policies see traffic after the Service address has been translated.
    pub port: i32,
}

/// The cluster's own address ranges.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ClusterRanges {
    /// Pod ranges (`10.244.0.0/16`).
    pub pod_cidrs: Vec<String>,
    /// Service ranges (`10.96.0.0/12`).
    pub service_cidrs: Vec<String>,
    /// Addresses of the API server endpoints (`192.0.2.10/32`).
    pub api_server_cidrs: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            runtime_classes: BTreeMap::from([
                ("gvisor".to_owned(), "gvisor".to_owned()),
                ("kata".to_owned(), "kata".to_owned()),
            ]),
            default_ttl: "1h".to_owned(),
            expiry_grace_seconds: 1,
            default_requests: Amounts {
                cpu: "100m".to_owned(),
                memory: "128Mi".to_owned(),
                ephemeral_storage: "128Mi".to_owned(),
            },
            default_limits: Amounts {
                cpu: "1".to_owned(),
                memory: "1Gi".to_owned(),
                ephemeral_storage: "1Gi".to_owned(),
            },
            default_workspace_size: "1Gi".to_owned(),
            tmp_size: "64Mi".to_owned(),
            sandbox_service_account: "kennel-sandbox".to_owned(),
            run_as_user: 65532,
            dns: DnsConfig {
                namespace: "kube-system".to_owned(),
                pod_labels: BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())]),
                port: 53,
            },
            cluster: ClusterRanges::default(),
            always_denied_cidrs: vec!["169.254.0.0/16".to_owned(), "fe80::/10".to_owned()],
            allow_cluster_egress: false,
            default_policy: builtin_default_policy(),
            fence_gate: None,
            reconcile_concurrency: 32,
        }
    }
}

/// The built-in tenant policy: gVisor only, a one-hour maximum lifetime, any image,
/// egress to any range the operator does not deny, ConfigMaps and claims read-only, no
/// Secrets, nothing writable, no quota.
pub fn builtin_default_policy() -> PolicyRules {
    let any = MountSourceRule { allowed: true, ..MountSourceRule::default() };
    PolicyRules {
        isolation: Some(IsolationRules {
            allowed: Some(vec![Isolation::Gvisor]),
            default: Some(Isolation::Gvisor),
        }),
        lifetime: Some(LifetimeRules { default_ttl: None, max_ttl: Some("1h".to_owned()) }),
        quota: None,
        images: None,
        egress: Some(EgressRules {
            allowed_cidrs: Some(vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()]),
            denied_cidrs: Some(Vec::new()),
        }),
        mounts: Some(MountRules {
            config_maps: Some(any.clone()),
            secrets: Some(MountSourceRule::default()),
            persistent_volume_claims: Some(any),
            allow_writable: Some(false),
        }),
        blocked_mount_paths: Some(Vec::new()),
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid YAML for [`Config`].
    #[error("failed to parse the configuration file {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        source: serde_yaml::Error,
    },
    /// A value is out of range or malformed.
    #[error("invalid configuration: {0}; fix the operator's configuration file")]
    Invalid(String),
}

impl Config {
    /// Reads the configuration from a YAML file, or the defaults without one.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config = match path {
            None => Self::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::from_yaml(&text).map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    source,
                })?
            }
        };
        config.check()?;
        Ok(config)
    }

    /// Parses the configuration from YAML text; missing fields keep their defaults.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }

    /// The default lifetime as a duration.
    pub fn default_ttl(&self) -> Duration {
        // `check` proved this parses; the fallback only guards against a future caller
        // that skips `check`.
        parse_ttl(&self.default_ttl).unwrap_or(Duration::from_hours(1))
    }

    /// The RuntimeClass configured for an isolation level.
    pub fn runtime_class(&self, isolation: Isolation) -> Option<&str> {
        self.runtime_classes.get(isolation.as_str()).map(String::as_str)
    }

    fn check(&self) -> Result<(), ConfigError> {
        parse_ttl(&self.default_ttl)
            .map_err(|e| ConfigError::Invalid(format!("defaultTtl: {e}")))?;
        crate::policy::tenant::resolve(None, self)
            .map_err(|e| ConfigError::Invalid(format!("defaultPolicy: {e}")))?;
        if self.run_as_user <= 0 {
            return Err(ConfigError::Invalid("runAsUser must be a non-root id (> 0)".into()));
        }
        if !(1..=65535).contains(&self.dns.port) {
            return Err(ConfigError::Invalid("dns.port must be 1..65535".into()));
        }
        if let Some(gate) = &self.fence_gate {
            check_fence_gate(gate)?;
        }
        if self.expiry_grace_seconds < 0 {
            return Err(ConfigError::Invalid("expiryGraceSeconds must be >= 0".into()));
        }
        let cidrs = self
            .always_denied_cidrs
            .iter()
            .chain(&self.cluster.pod_cidrs)
            .chain(&self.cluster.service_cidrs)
            .chain(&self.cluster.api_server_cidrs);
        for cidr in cidrs {
            cidr.parse::<ipnet::IpNet>()
                .map_err(|e| ConfigError::Invalid(format!("{cidr:?} is not a CIDR: {e}")))?;
        }
        Ok(())
    }
}

fn check_fence_gate(gate: &FenceGateConfig) -> Result<(), ConfigError> {
    if gate.image.trim().is_empty() {
        return Err(ConfigError::Invalid("fenceGate.image must name an image".into()));
    }
    match parse_ttl(&gate.timeout) {
        Ok(t) if t.as_secs() >= 1 => {}
        Ok(_) => return Err(ConfigError::Invalid("fenceGate.timeout must be at least 1s".into())),
        Err(e) => return Err(ConfigError::Invalid(format!("fenceGate.timeout: {e}"))),
    }
    if let Some(probe) = &gate.probe
        && probe.parse::<std::net::SocketAddr>().is_err()
    {
        return Err(ConfigError::Invalid(format!(
            "fenceGate.probe {probe:?} is not ip:port (an IPv6 address in brackets)"
        )));
    }
    Ok(())
}

/// Parses a lifetime such as `90s`, `30m`, `1h30m` or `2d`: the notation the CRD accepts.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            other => return Err(format!("unknown unit {other:?} in {text:?}; use s, m, h or d")),
        };
        let n: u64 = digits.parse().map_err(|_| format!("missing number before {c:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!("{text:?} ends without a unit; use s, m, h or d"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_sums_each_unit() {
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_mins(90)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_hours(48)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn ttl_without_unit_or_with_unknown_unit_is_refused() {
        assert!(parse_ttl("30").is_err());
        assert!(parse_ttl("5w").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn ttl_that_overflows_is_refused_not_wrapped() {
        assert!(parse_ttl("99999999999999999999d").is_err());
        assert!(parse_ttl("999999999999999d").is_err());
    }

    #[test]
    fn empty_file_gives_safe_defaults() {
        let config = Config::from_yaml("").expect("empty config parses");
        assert_eq!(config, Config::default());
        assert_eq!(config.runtime_class(Isolation::Gvisor), Some("gvisor"));
        assert!(config.always_denied_cidrs.contains(&"169.254.0.0/16".to_owned()));
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let config = Config::from_yaml("defaultTtl: 10m\ncluster:\n  podCidrs: [10.0.0.0/16]\n")
            .expect("parses");
        assert_eq!(config.default_ttl(), Duration::from_mins(10));
        assert_eq!(config.cluster.pod_cidrs, vec!["10.0.0.0/16".to_owned()]);
        assert_eq!(config.tmp_size, "64Mi");
    }

    #[test]
    fn fence_gate_is_off_by_default_and_checked_when_set() {
        assert_eq!(Config::default().fence_gate, None);
        let gate = |yaml: &str| Config::from_yaml(yaml).expect("parses").check();
        assert!(gate("fenceGate: {image: kennel/operator:1}\n").is_ok());
        let config =
            Config::from_yaml("fenceGate: {image: i, probe: '10.96.0.1:443'}\n").expect("parses");
        let set = config.fence_gate.expect("set");
        assert_eq!((set.timeout_seconds(), set.probe.as_deref()), (60, Some("10.96.0.1:443")));
        assert!(gate("fenceGate: {image: ''}\n").is_err());
        assert!(gate("fenceGate: {image: i, timeout: 0s}\n").is_err());
        assert!(gate("fenceGate: {image: i, probe: kubernetes}\n").is_err());
        assert!(Config::from_yaml("fenceGate: {image: i, timeoutSeconds: 5}\n").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_cidrs_are_refused() {
        assert!(Config::from_yaml("defaultTTL: 1h\n").is_err());
        let bad = Config::from_yaml("alwaysDeniedCidrs: [not-a-cidr]\n").expect("parses");
        assert!(matches!(bad.check(), Err(ConfigError::Invalid(_))));
    }
}
