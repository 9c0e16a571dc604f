//! The pinned `kubectl`, for what users do with it: `exec`, `logs`, `apply`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ClusterEnv;

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Exit status code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `kubectl ARGS` against the cluster and returns its output whatever the status.
pub fn kubectl(env: &ClusterEnv, args: &[&str]) -> Result<Output> {
    let out = Command::new(&env.kubectl)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .output()
        .with_context(|| format!("failed to run {} {args:?}", env.kubectl.display()))?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `kubectl ARGS` and fails, with its stderr, unless it exits with 0.
pub fn kubectl_ok(env: &ClusterEnv, args: &[&str]) -> Result<String> {
    let out = kubectl(env, args)?;
    if !out.success() {
        bail!("kubectl {args:?} failed ({:?}): {}", out.code, out.stderr.trim());
    }
    Ok(out.stdout)
}

/// Runs `COMMAND` in a pod's container through `kubectl exec`, whatever its status.
pub fn exec(
    env: &ClusterEnv,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    command: &[&str],
) -> Result<Output> {
    let mut args = vec!["exec", "-n", namespace, pod];
    if let Some(c) = container {
        args.extend(["-c", c]);
    }
    args.push("--");
    args.extend(command);
    kubectl(env, &args)
}

/// A shell snippet run by `sh -c` in a pod's first container; fails unless it exits 0.
pub fn sh(env: &ClusterEnv, namespace: &str, pod: &str, script: &str) -> Result<String> {
    let out = exec(env, namespace, pod, None, &["sh", "-c", script])?;
    if !out.success() {
        bail!(
            "`{script}` in {namespace}/{pod} exited with {:?}: {}{}",
            out.code,
            out.stdout,
            out.stderr
        );
    }
    Ok(out.stdout)
}
