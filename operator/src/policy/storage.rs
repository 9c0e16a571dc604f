//! Storage: the workspace, `/tmp`, the read-only inputs and the working directory, placed
//! so that nothing hides the workspace, `/tmp` or a path the runtime mounts.

use std::collections::BTreeSet;

use crate::{
    api::sandbox::{Mount, Workspace, WorkspaceRetention},
    config::Config,
    policy::{
        paths::{self, TMP_PATH},
        plan::{MountPlan, MountSource, WorkspacePlan},
        resources,
        validate::{Errors, is_dns_label, is_dns_subdomain},
    },
};

/// The workspace claim is named after the sandbox with this suffix.
pub const CLAIM_SUFFIX: &str = "-workspace";
/// Where the workspace is mounted unless the spec says otherwise.
pub const DEFAULT_WORKSPACE_PATH: &str = "/workspace";
/// Volume names the builders use themselves.
pub const RESERVED_VOLUMES: [&str; 2] = ["workspace", "tmp"];

/// The workspace: size parsed and positive, path normalised and clear of `/tmp` and the
/// runtime's paths.
pub(crate) fn workspace(
    spec: Option<&Workspace>,
    config: &Config,
    errors: &mut Errors,
) -> WorkspacePlan {
    let default = Workspace::default();
    let spec = spec.unwrap_or(&default);
    let size = spec.size.clone().unwrap_or_else(|| config.default_workspace_size.clone());
    if let Err(message) = resources::size(&size) {
        let origin = if spec.size.is_some() { "" } else { " (the operator's default)" };
        errors.add("spec.workspace.size", format!("{message}{origin}"));
    }
    let field = "spec.workspace.mountPath";
    let raw = spec.mount_path.as_deref().unwrap_or(DEFAULT_WORKSPACE_PATH);
    let mount_path = match paths::normalize(raw) {
        Ok(path) => {
            if paths::overlaps(&path, TMP_PATH) {
                errors.add(
                    field,
                    format!(
                        "{path:?} would hide /tmp or sit inside it; choose another path \
                     such as /workspace"
                    ),
                );
            } else if let Some(runtime) = paths::runtime_path_clash(&path) {
                errors.add(
                    field,
                    format!(
                        "{path:?} clashes with {runtime}, which the runtime mounts; \
                     choose another path"
                    ),
                );
            }
            path
        }
        Err(message) => {
            errors.add(field, message);
            DEFAULT_WORKSPACE_PATH.to_owned()
        }
    };
    if spec.storage_class_name.as_deref().is_some_and(|c| !is_dns_subdomain(c)) {
        errors.add("spec.workspace.storageClassName", "must be a DNS subdomain");
    }
    WorkspacePlan {
        size,
        mount_path,
        persistent: spec.persistent,
        storage_class: spec.storage_class_name.clone(),
        retain: spec.on_expiry == WorkspaceRetention::Retain,
    }
}

/// The size limit of `/tmp`, from the configuration.
pub(crate) fn tmp_size(config: &Config, errors: &mut Errors) -> String {
    if let Err(message) = resources::size(&config.tmp_size) {
        errors.add("spec", format!("the operator's tmpSize {message}; ask the platform team"));
    }
    config.tmp_size.clone()
}

/// The inputs, each with a unique, unreserved name, one source and a path that
/// neither hides nor is hidden by the workspace, `/tmp`, a runtime path or another input.
pub(crate) fn mounts(
    mounts: &[Mount],
    workspace: &WorkspacePlan,
    errors: &mut Errors,
) -> Vec<MountPlan> {
    let mut names = BTreeSet::new();
    let mut taken: Vec<String> = Vec::new();
    let mut plans = Vec::new();
    for (i, mount) in mounts.iter().enumerate() {
        let at = |field: &str| format!("spec.mounts[{i}].{field}");
        check_mount_name(&mount.name, &mut names, &at("name"), errors);
        let path = mount_path(&mount.mount_path, workspace, &taken, &at("mountPath"), errors);
        let source = source(mount, i, errors);
        if let (Some(path), Some(source)) = (path, source) {
            taken.push(path.clone());
            // Whether the policy allows a writable claim is the tenant check's to judge.
            let writable = mount.persistent_volume_claim.as_ref().is_some_and(|c| c.writable);
            plans.push(MountPlan { name: mount.name.clone(), mount_path: path, source, writable });
        }
    }
    plans
}

fn check_mount_name<'a>(
    name: &'a str,
    names: &mut BTreeSet<&'a str>,
    field: &str,
    errors: &mut Errors,
) {
    if !is_dns_label(name) {
        errors.add(
            field,
            format!("{name:?} is not a DNS label; use lowercase letters, digits and '-'"),
        );
    } else if RESERVED_VOLUMES.contains(&name) {
        errors.add(
            field,
            format!("{name:?} is reserved for Kennel's own volume; choose another name"),
        );
    } else if !names.insert(name) {
        errors.add(field, format!("{name:?} is used by another mount; names must be unique"));
    }
}

fn mount_path(
    raw: &str,
    workspace: &WorkspacePlan,
    taken: &[String],
    field: &str,
    errors: &mut Errors,
) -> Option<String> {
    let path = match paths::normalize(raw) {
        Ok(path) => path,
        Err(message) => {
            errors.add(field, message);
            return None;
        }
    };
    let ws = workspace.mount_path.as_str();
    let problem = if paths::is_within(ws, &path) {
        Some(format!("{path:?} would hide the workspace at {ws}"))
    } else if paths::is_within(&path, ws) {
        Some(format!("{path:?} is inside the workspace at {ws}, which would hide it"))
    } else if paths::overlaps(&path, TMP_PATH) {
        Some(format!("{path:?} would hide /tmp or sit inside it"))
    } else if let Some(runtime) = paths::runtime_path_clash(&path) {
        Some(format!("{path:?} clashes with {runtime}, which the runtime mounts"))
    } else if taken.contains(&path) {
        Some(format!("{path:?} is used by another mount"))
    } else {
        None
    };
    match problem {
        Some(problem) => {
            errors.add(field, format!("{problem}; choose another path, such as /inputs/<name>"));
            None
        }
        None => Some(path),
    }
}

fn source(mount: &Mount, i: usize, errors: &mut Errors) -> Option<MountSource> {
    let sources = [
        mount.config_map.as_ref().map(|m| ("configMap.name", "ConfigMap", &m.name)),
        mount.secret.as_ref().map(|s| ("secret.secretName", "Secret", &s.secret_name)),
        mount
            .persistent_volume_claim
            .as_ref()
            .map(|c| ("persistentVolumeClaim.claimName", "claim", &c.claim_name)),
    ];
    let mut given = sources.into_iter().flatten();
    let (Some((field, kind, name)), None) = (given.next(), given.next()) else {
        errors.add(
            format!("spec.mounts[{i}]"),
            "needs exactly one source: configMap, secret or persistentVolumeClaim",
        );
        return None;
    };
    if !is_dns_subdomain(name) {
        errors.add(
            format!("spec.mounts[{i}].{field}"),
            format!("must be a {kind} name (a DNS subdomain)"),
        );
        return None;
    }
    Some(match kind {
        "ConfigMap" => MountSource::ConfigMap(name.clone()),
        "Secret" => MountSource::Secret(name.clone()),
        _ => MountSource::Claim(name.clone()),
    })
}

/// The working directory: absolute, the workspace path unless the spec says otherwise.
pub(crate) fn working_dir(
    raw: Option<&str>,
    workspace: &WorkspacePlan,
    errors: &mut Errors,
) -> String {
    match raw.map(paths::normalize) {
        None => workspace.mount_path.clone(),
        Some(Ok(path)) => path,
        Some(Err(message)) => {
            errors.add("spec.workingDir", message);
            workspace.mount_path.clone()
        }
    }
}
