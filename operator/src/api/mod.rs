//! Kennel's custom resources (`kennel.dev/v1alpha1`) and the names shared by their users.

pub mod conditions;
pub mod sandbox;

pub use sandbox::{AgentSandbox, AgentSandboxSpec, AgentSandboxStatus, Isolation, Phase};

/// The API group of every Kennel resource.
pub const GROUP: &str = "kennel.dev";
