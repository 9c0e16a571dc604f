//! The Pod's volumes and the agent's mounts: the workspace, `/tmp`, and the inputs
//! (read-only, but for a claim the tenant's policy let be writable). No mount ever uses
//! `subPath`, and no volume is a host path or a projected token.

use k8s_openapi::{
    api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource,
        SecretVolumeSource, Volume, VolumeMount,
    },
    apimachinery::pkg::api::resource::Quantity,
};

use crate::{
    build::workspace_claim::workspace_claim_name,
    policy::{
        SandboxPlan,
        paths::TMP_PATH,
        plan::{MountSource, ReadOnlyMode},
    },
};

/// Name of the workspace volume.
pub const WORKSPACE: &str = "workspace";
/// Name of the `/tmp` volume.
pub const TMP: &str = "tmp";
/// `ConfigMap` and Secret files are readable by everyone and writable by no one.
const CONFIG_MAP_MODE: i32 = 0o444;

/// Every volume of the sandbox Pod: workspace, `/tmp`, then the inputs in order.
pub fn volumes(plan: &SandboxPlan) -> Vec<Volume> {
    let workspace = if plan.workspace.persistent {
        Volume {
            name: WORKSPACE.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: workspace_claim_name(plan),
                read_only: Some(false),
            }),
            ..Volume::default()
        }
    } else {
        empty_dir(WORKSPACE, &plan.workspace.size)
    };
    let mut volumes = vec![workspace, empty_dir(TMP, &plan.tmp_size)];
    volumes.extend(plan.mounts.iter().map(|mount| {
        let mut volume = Volume { name: mount.name.clone(), ..Volume::default() };
        match &mount.source {
            MountSource::ConfigMap(name) => {
                volume.config_map = Some(ConfigMapVolumeSource {
                    name: name.clone(),
                    default_mode: Some(CONFIG_MAP_MODE),
                    ..ConfigMapVolumeSource::default()
                });
            }
            MountSource::Secret(name) => {
                volume.secret = Some(SecretVolumeSource {
                    secret_name: Some(name.clone()),
                    default_mode: Some(CONFIG_MAP_MODE),
                    optional: Some(false),
                    ..SecretVolumeSource::default()
                });
            }
            MountSource::Claim(claim_name) => {
                volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name.clone(),
                    read_only: Some(!mount.writable),
                });
            }
        }
        volume
    }));
    volumes
}

/// The agent container's mounts: workspace and `/tmp` writable, every input read-only but
/// a claim the plan marks writable (which the tenant's policy allowed).
pub fn volume_mounts(plan: &SandboxPlan) -> Vec<VolumeMount> {
    let recursive = match plan.read_only_mode {
        ReadOnlyMode::Recursive => "Enabled",
        ReadOnlyMode::IfPossible => "IfPossible",
    };
    let mut mounts = vec![writable(WORKSPACE, &plan.workspace.mount_path), writable(TMP, TMP_PATH)];
    mounts.extend(plan.mounts.iter().map(|mount| {
        if mount.writable {
            return writable(&mount.name, &mount.mount_path);
        }
        VolumeMount {
            name: mount.name.clone(),
            mount_path: mount.mount_path.clone(),
            read_only: Some(true),
            recursive_read_only: Some(recursive.to_owned()),
            ..VolumeMount::default()
        }
    }));
    mounts
}

fn empty_dir(name: &str, size: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(Quantity(size.to_owned())),
        }),
        ..Volume::default()
    }
}

fn writable(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(false),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::accepted;

    const WITH_INPUTS: &str = "image: x
        workspace: {size: 2Gi, mountPath: /work}
        mounts:
        - {name: repo, mountPath: /inputs/repo, configMap: {name: repo-files}}
        - {name: data, mountPath: /data, persistentVolumeClaim: {claimName: shared}}";

    #[test]
    fn workspace_and_tmp_are_size_limited_empty_dirs() {
        let volumes = volumes(&accepted(WITH_INPUTS));
        let sizes: Vec<_> = volumes[..2]
            .iter()
            .map(|v| (v.name.as_str(), v.empty_dir.as_ref().and_then(|e| e.size_limit.clone())))
            .collect();
        assert_eq!(
            sizes,
            [("workspace", Some(Quantity("2Gi".into()))), ("tmp", Some(Quantity("64Mi".into())))]
        );
    }

    #[test]
    fn inputs_are_read_only_and_config_maps_are_mode_0444() {
        let volumes = volumes(&accepted(WITH_INPUTS));
        let config_map = volumes[2].config_map.as_ref().expect("configMap");
        assert_eq!(config_map.default_mode, Some(0o444));
        let claim = volumes[3].persistent_volume_claim.as_ref().expect("claim");
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("shared", Some(true)));
        assert!(volumes.iter().all(|v| v.host_path.is_none() && v.projected.is_none()));
    }

    #[test]
    fn input_mounts_ask_for_recursive_read_only_if_possible_and_never_use_sub_path() {
        let mounts = volume_mounts(&accepted(WITH_INPUTS));
        let paths: Vec<_> = mounts.iter().map(|m| (m.mount_path.as_str(), m.read_only)).collect();
        assert_eq!(
            paths,
            [
                ("/work", Some(false)),
                ("/tmp", Some(false)),
                ("/inputs/repo", Some(true)),
                ("/data", Some(true))
            ]
        );
        for input in &mounts[2..] {
            assert_eq!(input.recursive_read_only.as_deref(), Some("IfPossible"));
        }
        assert!(mounts.iter().all(|m| m.sub_path.is_none() && m.sub_path_expr.is_none()));
    }

    #[test]
    fn recursive_mode_asks_the_runtime_to_enforce_it() {
        let mut plan = accepted(WITH_INPUTS);
        plan.read_only_mode = ReadOnlyMode::Recursive;
        assert_eq!(volume_mounts(&plan)[2].recursive_read_only.as_deref(), Some("Enabled"));
    }

    #[test]
    fn secrets_are_read_only_files_and_a_claim_is_writable_only_when_the_plan_says_so() {
        let mut plan = accepted(
            "image: x
            mounts:
            - {name: creds, mountPath: /inputs/creds, secret: {secretName: api}}
            - {name: data, mountPath: /data, persistentVolumeClaim: {claimName: shared}}",
        );
        let secret = volumes(&plan)[2].secret.clone().expect("secret volume");
        assert_eq!(
            (secret.secret_name.as_deref(), secret.default_mode, secret.optional),
            (Some("api"), Some(0o444), Some(false))
        );
        assert_eq!(volume_mounts(&plan)[2].read_only, Some(true));
        assert_eq!(volume_mounts(&plan)[3].read_only, Some(true));
        plan.mounts[1].writable = true;
        let claim = volumes(&plan)[3].persistent_volume_claim.clone().expect("claim");
        assert_eq!(claim.read_only, Some(false));
        let mount = &volume_mounts(&plan)[3];
        assert_eq!((mount.read_only, mount.recursive_read_only.as_deref()), (Some(false), None));
    }

    #[test]
    fn persistent_workspace_mounts_its_claim_writable() {
        let plan = accepted("image: x\nworkspace: {persistent: true}");
        let claim = volumes(&plan)[0].persistent_volume_claim.clone().expect("claim");
        assert_eq!(claim.claim_name, "demo-workspace");
        assert_eq!(claim.read_only, Some(false));
    }
}
