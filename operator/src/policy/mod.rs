//! Pure policy: turns a sandbox spec and the operator's configuration into a
//! [`SandboxPlan`], or into field errors a person can act on.

pub mod plan;

pub use plan::SandboxPlan;
