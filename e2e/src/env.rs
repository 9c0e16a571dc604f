//! The facts of the running cluster, read from `e2e/.cluster/env` (written by `up.sh`).

use std::{collections::HashMap, path::PathBuf};

use anyhow::{Context, Result};

/// What tests need to know about the local cluster: addresses, names and paths.
#[derive(Debug, Clone)]
pub struct ClusterEnv {
    /// The admin kubeconfig (its server is on 127.0.0.1).
    pub kubeconfig: PathBuf,
    /// The pinned kubectl binary; the machine's own `kubectl` may be something else.
    pub kubectl: PathBuf,
    /// The single node's name.
    pub node_name: String,
    /// The node's address on the pod bridge: pods reach the node here, and tests may run
    /// a server on it.
    pub node_ip: String,
    /// The pod network, e.g. `10.244.0.0/24`.
    pub pod_cidr: String,
    /// The Service network, e.g. `10.96.0.0/16`.
    pub service_cidr: String,
    /// The `kubernetes` Service's cluster IP.
    pub api_server_service_ip: String,
    /// The API server's real endpoint (`ip:port`) behind that Service.
    pub api_server_endpoint: String,
    /// The cluster DNS Service's IP.
    pub dns_service_ip: String,
    /// The label (`key=value`) of the cluster DNS pods.
    pub dns_pod_label: String,
    /// The port the DNS pods listen on.
    pub dns_pod_port: u16,
    /// The small test image (busybox) every node has.
    pub busybox_image: String,
    /// Every `KEY=value` of the file, including ones without a field here.
    pub raw: HashMap<String, String>,
}

impl ClusterEnv {
    /// The env file's path: `$KENNEL_CLUSTER_ENV`, or `e2e/.cluster/env` in this checkout.
    pub fn path() -> PathBuf {
        std::env::var_os("KENNEL_CLUSTER_ENV").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster/env"),
            PathBuf::from,
        )
    }

    /// Reads the env file of the running cluster.
    pub fn load() -> Result<Self> {
        let path = Self::path();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("failed to read {} (is the cluster up? run `make cluster-up`)", path.display())
        })?;
        Self::parse(&text)
    }

    /// Parses `KEY=value` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self> {
        let raw: HashMap<String, String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let get = |key: &str| {
            raw.get(key).cloned().with_context(|| format!("the cluster env file lacks {key}"))
        };
        Ok(Self {
            kubeconfig: get("KUBECONFIG")?.into(),
            kubectl: get("KUBECTL")?.into(),
            node_name: get("NODE_NAME")?,
            node_ip: get("NODE_IP")?,
            pod_cidr: get("POD_CIDR")?,
            service_cidr: get("SERVICE_CIDR")?,
            api_server_service_ip: get("API_SERVER_SERVICE_IP")?,
            api_server_endpoint: get("API_SERVER_ENDPOINT")?,
            dns_service_ip: get("DNS_SERVICE_IP")?,
            dns_pod_label: get("DNS_POD_LABEL")?,
            dns_pod_port: get("DNS_POD_PORT")?.parse().context("DNS_POD_PORT is not a port")?,
            busybox_image: get("BUSYBOX_IMAGE")?,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# written by up.sh\nKUBECONFIG=/k\nKUBECTL=/bin/kubectl\n\
        NODE_NAME=n\nNODE_IP=10.244.0.1\nPOD_CIDR=10.244.0.0/24\nSERVICE_CIDR=10.96.0.0/16\n\
        API_SERVER_SERVICE_IP=10.96.0.1\nAPI_SERVER_ENDPOINT=10.244.0.1:6443\n\
        DNS_SERVICE_IP=10.96.0.10\nDNS_POD_LABEL=k8s-app=kube-dns\nDNS_POD_PORT=53\n\
        BUSYBOX_IMAGE=kennel.local/busybox:1.0\nEXTRA=x\n";

    #[test]
    fn parse_reads_every_field_and_keeps_unknown_keys() {
        let env = ClusterEnv::parse(SAMPLE).expect("sample parses");
        assert_eq!(env.node_ip, "10.244.0.1");
        assert_eq!(env.dns_pod_label, "k8s-app=kube-dns");
        assert_eq!(env.dns_pod_port, 53);
        assert_eq!(env.raw.get("EXTRA").map(String::as_str), Some("x"));
    }

    #[test]
    fn parse_names_the_missing_key() {
        let err = ClusterEnv::parse("KUBECONFIG=/k\n").expect_err("incomplete file");
        assert!(err.to_string().contains("KUBECTL"), "{err}");
    }
}
