//! Validation: turns an `AgentSandbox` and the operator's configuration into a
//! [`SandboxPlan`], or a [`Rejection`] listing every field that cannot be run as written.
//!
//! The CRD schema is not trusted: an object may predate a schema rule, or reach the
//! operator with the API server's validation bypassed. So everything the schema checks is
//! checked again here, and nothing in this module panics, whatever the input.

use std::{collections::BTreeSet, fmt};

use crate::{
    api::{AgentSandbox, Isolation, sandbox::EnvVar},
    config::Config,
    policy::{
        egress, lifetime,
        plan::{ReadOnlyMode, SandboxPlan},
        resources, storage,
    },
};

/// Longest image reference accepted.
const MAX_IMAGE_LEN: usize = 512;
/// Most environment variables accepted.
const MAX_ENV: usize = 128;
/// Longest environment value accepted.
const MAX_ENV_VALUE: usize = 32_768;
/// Most entries in `command` and in `args`.
const MAX_COMMAND: usize = 64;
const MAX_ARGS: usize = 256;
/// Longest object name: a DNS subdomain.
const MAX_NAME_LEN: usize = 253;

/// One field that cannot be run as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, as written in YAML (`spec.network.egress[1].cidr`).
    pub field: String,
    /// What is wrong and what to change.
    pub message: String,
}

/// Why a sandbox was refused: one or more field errors, in the order of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Every field error found; never empty.
    pub errors: Vec<FieldError>,
}

impl Rejection {
    /// Whether some error names exactly this field.
    pub fn names(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for Rejection {
    /// One line a person reads in a status condition: `field: message; field: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", error.field, error.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

/// Field errors gathered while validating, so a person sees all of them at once.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    /// Records that `field` is wrong.
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    fn finish(self) -> Result<(), Rejection> {
        if self.0.is_empty() { Ok(()) } else { Err(Rejection { errors: self.0 }) }
    }
}

/// Validates a sandbox and resolves every default from the configuration.
///
/// Flow: identity, container, isolation, resources, storage, egress, lifetime; each step
/// records its field errors and carries on, so the rejection lists every problem.
/// Guarantees: on `Ok`, requests and limits hold cpu, memory and ephemeral-storage with
/// requests never above limits; no path hides the workspace, `/tmp` or a runtime path; no
/// egress entry opens a denied range; `expires_at` is fixed.
pub fn plan(sandbox: &AgentSandbox, config: &Config) -> Result<SandboxPlan, Rejection> {
    let mut errors = Errors::default();
    let spec = &sandbox.spec;
    let (name, namespace, uid) = identity(sandbox, &mut errors);
    let persistent = spec.workspace.as_ref().is_some_and(|w| w.persistent);
    check_name_room(&name, persistent, &mut errors);
    check_image(&spec.image, &mut errors);
    let env = env(spec.env.as_deref().unwrap_or_default(), &mut errors);
    check_counts(spec.command.as_ref(), spec.args.as_ref(), &mut errors);
    let isolation = isolation(sandbox, config);
    let runtime_class = runtime_class(isolation, config, &mut errors);
    let (requests, limits) = resources::resolve(spec.resources.as_ref(), config, &mut errors);
    let workspace = storage::workspace(spec.workspace.as_ref(), config, &mut errors);
    let tmp_size = storage::tmp_size(config, &mut errors);
    let mounts =
        storage::mounts(spec.mounts.as_deref().unwrap_or_default(), &workspace, &mut errors);
    let working_dir = storage::working_dir(spec.working_dir.as_deref(), &workspace, &mut errors);
    let egress = egress::resolve(spec.network.as_ref(), config, &mut errors);
    let expires_at = lifetime::expires_at(sandbox, config, &mut errors);
    errors.finish()?;
    let expires_at = expires_at.ok_or_else(|| Rejection {
        errors: vec![FieldError {
            field: "spec.lifetime".to_owned(),
            message: "the expiry time could not be computed".to_owned(),
        }],
    })?;
    Ok(SandboxPlan {
        name,
        namespace,
        uid,
        image: spec.image.clone(),
        command: spec.command.clone().unwrap_or_default(),
        args: spec.args.clone().unwrap_or_default(),
        env,
        working_dir,
        isolation,
        runtime_class,
        requests,
        limits,
        workspace,
        tmp_size,
        mounts,
        read_only_mode: read_only_mode(),
        egress,
        dns: config.dns.clone(),
        service_account: config.sandbox_service_account.clone(),
        run_as_user: config.run_as_user,
        expires_at,
        on_expiry: spec.lifetime.as_ref().map(|l| l.on_expiry).unwrap_or_default(),
    })
}

/// How read-only inputs are asked of the runtime.
///
/// Always `IfPossible` for now: `Enabled` makes the Pod fail to start where the runtime
/// handler does not report recursive read-only support, and containerd reports none for
/// runsc (gVisor); Kata is not verified either. `IfPossible` still makes every mount
/// read-only at its top level. Known shortcoming: the node's `runtimeHandlers` status says
/// which handlers support it; reading it would let runc-backed levels get `Recursive`.
pub fn read_only_mode() -> ReadOnlyMode {
    ReadOnlyMode::IfPossible
}

/// Name, namespace and UID, which every child object needs.
fn identity(sandbox: &AgentSandbox, errors: &mut Errors) -> (String, String, String) {
    let meta = &sandbox.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    if !is_dns_subdomain(&name) {
        errors
            .add("metadata.name", "must be a DNS subdomain (lowercase letters, digits, '-', '.')");
    }
    if namespace.is_empty() {
        errors.add("metadata.namespace", "is missing; a sandbox lives in a namespace");
    }
    if !is_label_value(&uid) || uid.is_empty() {
        errors.add("metadata.uid", "is missing or malformed; the API server sets it");
    }
    (name, namespace, uid)
}

/// The workspace claim is named `<name>-workspace`, so a persistent sandbox needs room.
fn check_name_room(name: &str, persistent: bool, errors: &mut Errors) {
    let suffix = storage::CLAIM_SUFFIX.len();
    if persistent && name.len() + suffix > MAX_NAME_LEN {
        let most = MAX_NAME_LEN - suffix;
        errors.add(
            "metadata.name",
            format!("must be at most {most} characters with a persistent workspace"),
        );
    }
}

fn check_image(image: &str, errors: &mut Errors) {
    if image.is_empty() {
        errors.add("spec.image", "is empty; name the image the agent runs in");
    } else if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.add("spec.image", "contains whitespace or control characters; remove them");
    } else if image.len() > MAX_IMAGE_LEN {
        errors.add("spec.image", format!("is longer than {MAX_IMAGE_LEN} characters"));
    }
}

/// Literal environment variables, in order; names valid and unique.
fn env(vars: &[EnvVar], errors: &mut Errors) -> Vec<(String, String)> {
    if vars.len() > MAX_ENV {
        errors
            .add("spec.env", format!("has {} entries; at most {MAX_ENV} are allowed", vars.len()));
    }
    let mut seen = BTreeSet::new();
    for (i, var) in vars.iter().enumerate() {
        if !is_env_name(&var.name) {
            errors.add(
                format!("spec.env[{i}].name"),
                format!(
                    "{:?} is not a valid name; use letters, digits and '_', \
                     not starting with a digit",
                    var.name
                ),
            );
        } else if !seen.insert(var.name.as_str()) {
            errors.add(
                format!("spec.env[{i}].name"),
                format!("{:?} is set twice; keep one", var.name),
            );
        }
        if var.value.len() > MAX_ENV_VALUE {
            errors.add(
                format!("spec.env[{i}].value"),
                format!("is longer than {MAX_ENV_VALUE} bytes"),
            );
        }
    }
    vars.iter().map(|v| (v.name.clone(), v.value.clone())).collect()
}

fn check_counts(command: Option<&Vec<String>>, args: Option<&Vec<String>>, errors: &mut Errors) {
    if command.is_some_and(|c| c.len() > MAX_COMMAND) {
        errors.add("spec.command", format!("has more than {MAX_COMMAND} entries"));
    }
    if args.is_some_and(|a| a.len() > MAX_ARGS) {
        errors.add("spec.args", format!("has more than {MAX_ARGS} entries"));
    }
}

/// The isolation level in force: the spec's; else the one recorded in status when the
/// sandbox was first accepted, so that a later change of the default never switches a
/// sandbox's level; else the default of `config`'s `defaultPolicy` (which
/// [`crate::policy::tenant::TenantPolicy::overlay`] sets to the tenant's default).
pub fn isolation(sandbox: &AgentSandbox, config: &Config) -> Isolation {
    let recorded = sandbox.status.as_ref().and_then(|s| s.isolation);
    let default = config.default_policy.isolation.as_ref().and_then(|i| i.default);
    sandbox.spec.isolation.or(recorded).or(default).unwrap_or(Isolation::Gvisor)
}

/// The `RuntimeClass` the configuration maps the isolation level to.
fn runtime_class(isolation: Isolation, config: &Config, errors: &mut Errors) -> String {
    match config.runtime_class(isolation) {
        Some(class) if !class.is_empty() => class.to_owned(),
        _ => {
            let known: Vec<&str> = config.runtime_classes.keys().map(String::as_str).collect();
            errors.add(
                "spec.isolation",
                format!(
                    "{:?} is not offered by this operator (configured: {}); choose another level",
                    isolation.as_str(),
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            );
            String::new()
        }
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256
}

/// A DNS label: what Kubernetes requires of volume names.
pub(crate) fn is_dns_label(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS subdomain: what Kubernetes requires of most object names.
pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('.').all(is_dns_label)
}

fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && value.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}
