//! Pure policy: turns a sandbox spec and the operator's configuration into a
//! [`SandboxPlan`], or into field errors a person can act on.

mod egress;
pub mod lifetime;
pub mod overlap;
pub mod paths;
pub mod plan;
pub mod quantity;
mod resources;
pub mod sources;
pub mod storage;
pub mod tenant;
pub mod tenant_env;
pub mod validate;

#[cfg(test)]
mod tenant_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod validate_tests;

pub use plan::SandboxPlan;
pub use validate::{FieldError, Rejection, plan};
