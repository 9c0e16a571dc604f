//! Shared helpers for Kennel's end-to-end tests against the local cluster that
//! `make cluster-up` starts: its facts (`env`), a client on its kubeconfig (`client`),
//! throwaway namespaces (`namespace`), pods and waiting on them (`pods`), the pinned
//! `kubectl` for exec and logs (`kubectl`), the operator as a process (`operator`), its
//! AgentSandboxes (`sandbox`) and servers for sandboxes to reach (`hosts`).
//!
//! Every helper returns `anyhow::Result` with a message that says what failed, so a
//! test's failure reads as the step that broke.

pub mod client;
pub mod env;
pub mod hosts;
pub mod kubectl;
pub mod namespace;
pub mod operator;
pub mod pods;
pub mod sandbox;

pub use client::client;
pub use env::ClusterEnv;
pub use namespace::TestNamespace;
