//! Kennel: runs AI coding agents in disposable, fenced sandboxes on Kubernetes.
//!
//! Data flows downward: [`controller`] loads, validates, builds, applies and reports;
//! [`build`] and [`policy`] are pure; [`telemetry`] records what happened.

pub mod api;
pub mod build;
pub mod config;
pub mod controller;
pub mod error;
pub mod fence_gate;
pub mod leader;
pub mod policy;
pub mod telemetry;
