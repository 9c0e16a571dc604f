//! Pure builders: one file per Kubernetes kind, each turning a [`SandboxPlan`] into the
//! object Kennel applies.
//!
//! [`SandboxPlan`]: crate::policy::SandboxPlan
