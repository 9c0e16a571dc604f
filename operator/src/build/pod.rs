//! The sandbox Pod: one `agent` container under the isolation level's `RuntimeClass`, with
//! every hardening field set explicitly so it passes Pod Security "restricted" as written,
//! and, where configured, the fence gate as init container, so that the agent starts only
//! once the Pod's egress fence is in force.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, EnvVar, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
        SeccompProfile, SecurityContext,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{ObjectMeta, OwnerReference},
    },
};

use crate::{
    build::{labels, volumes},
    config::FenceGateConfig,
    fence_gate,
    policy::SandboxPlan,
};

/// Name of the agent's container.
pub const CONTAINER: &str = "agent";
/// Seconds the agent gets to stop: its workspace is thrown away anyway.
const GRACE_SECONDS: i64 = 5;

/// The fence gate's requests and limits: a single-threaded probe loop that holds a few MiB.
const GATE_REQUESTS: [(&str, &str); 3] =
    [("cpu", "10m"), ("memory", "16Mi"), ("ephemeral-storage", "1Mi")];
const GATE_LIMITS: [(&str, &str); 3] =
    [("cpu", "100m"), ("memory", "32Mi"), ("ephemeral-storage", "1Mi")];

/// The sandbox Pod without a fence gate, as [`gated_pod`] builds it with none configured.
pub fn pod(plan: &SandboxPlan, owner: OwnerReference) -> Pod {
    gated_pod(plan, owner, None)
}

/// The sandbox Pod, named after the sandbox and owned by it, with the fence gate as init
/// container when `gate` is set.
pub fn gated_pod(plan: &SandboxPlan, owner: OwnerReference, gate: Option<&FenceGateConfig>) -> Pod {
    let mut annotations = labels::common_annotations(plan);
    annotations.insert(labels::EXPIRES_AT.to_owned(), plan.expires_at.to_rfc3339());
    Pod {
        metadata: ObjectMeta {
            name: Some(plan.name.clone()),
            namespace: Some(plan.namespace.clone()),
            labels: Some(labels::common_labels(plan)),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            init_containers: gate.map(|gate| vec![fence_gate_container(plan, gate)]),
            ..pod_spec(plan)
        }),
        status: None,
    }
}

fn pod_spec(plan: &SandboxPlan) -> PodSpec {
    PodSpec {
        runtime_class_name: Some(plan.runtime_class.clone()),
        service_account_name: Some(plan.service_account.clone()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        share_process_namespace: Some(false),
        restart_policy: Some("Never".to_owned()),
        dns_policy: Some("ClusterFirst".to_owned()),
        termination_grace_period_seconds: Some(GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(plan.run_as_user),
            run_as_group: Some(plan.run_as_user),
            fs_group: Some(plan.run_as_user),
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        containers: vec![container(plan)],
        volumes: Some(volumes::volumes(plan)),
        ..PodSpec::default()
    }
}

fn container(plan: &SandboxPlan) -> Container {
    let env = plan
        .env
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        })
        .collect::<Vec<_>>();
    Container {
        name: CONTAINER.to_owned(),
        image: Some(plan.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: (!plan.command.is_empty()).then(|| plan.command.clone()),
        args: (!plan.args.is_empty()).then(|| plan.args.clone()),
        env: (!env.is_empty()).then_some(env),
        working_dir: Some(plan.working_dir.clone()),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&plan.requests)),
            limits: Some(quantities(&plan.limits)),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted()),
        volume_mounts: Some(volumes::volume_mounts(plan)),
        ..Container::default()
    }
}

/// The fence gate: `kennel-operator fence-gate` from the configured image, under the Pod's
/// `RuntimeClass`, user and (absent) token like the agent, with no volumes. Its failure
/// message (stderr) becomes the termination message the sandbox's status shows.
fn fence_gate_container(plan: &SandboxPlan, gate: &FenceGateConfig) -> Container {
    let mut args = vec![
        "fence-gate".to_owned(),
        "--timeout-seconds".to_owned(),
        gate.timeout_seconds().to_string(),
    ];
    if let Some(probe) = &gate.probe {
        args.extend(["--probe".to_owned(), probe.clone()]);
    }
    let amounts = |list: [(&str, &str); 3]| {
        list.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
    };
    Container {
        name: fence_gate::CONTAINER.to_owned(),
        image: Some(gate.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(args),
        resources: Some(ResourceRequirements {
            requests: Some(amounts(GATE_REQUESTS)),
            limits: Some(amounts(GATE_LIMITS)),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(plan.run_as_user),
            run_as_group: Some(plan.run_as_user),
            ..restricted()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The container security context of Pod Security "restricted", read-only root included.
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { add: None, drop: Some(vec!["ALL".to_owned()]) }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }
}

fn quantities(amounts: &BTreeMap<String, String>) -> BTreeMap<String, Quantity> {
    amounts.iter().map(|(k, v)| (k.clone(), Quantity(v.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        build::owner_reference,
        policy::testing::{accepted, sandbox},
    };

    fn build(spec: &str) -> Pod {
        let owner = owner_reference(&sandbox(spec)).expect("owner");
        gated_pod(&accepted(spec), owner, None)
    }

    fn gated(probe: Option<&str>) -> Pod {
        let owner = owner_reference(&sandbox("image: x")).expect("owner");
        let gate = FenceGateConfig {
            image: "kennel/operator:1".into(),
            probe: probe.map(str::to_owned),
            timeout: "45s".into(),
        };
        gated_pod(&accepted("image: x"), owner, Some(&gate))
    }

    fn spec_of(pod: &Pod) -> &PodSpec {
        pod.spec.as_ref().expect("pod spec")
    }

    #[test]
    fn pod_never_mounts_a_service_account_token() {
        let pod = build("image: x");
        let spec = spec_of(&pod);
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.service_account_name.as_deref(), Some("kennel-sandbox"));
        let volumes = spec.volumes.as_deref().unwrap_or_default();
        assert!(volumes.iter().all(|v| v.projected.is_none() && v.secret.is_none()));
    }

    #[test]
    fn pod_runs_under_the_runtime_class_with_no_host_namespaces() {
        let pod = build("image: x");
        let spec = spec_of(&pod);
        assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));
        assert_eq!(
            (spec.host_network, spec.host_pid, spec.host_ipc),
            (Some(false), Some(false), Some(false))
        );
        assert_eq!(spec.share_process_namespace, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(5));
        assert!(
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .all(|p| p.host_port.is_none())
        );
    }

    #[test]
    fn pod_security_context_is_non_root_with_runtime_default_seccomp() {
        let pod = build("image: x");
        let context = spec_of(&pod).security_context.clone().expect("pod security context");
        assert_eq!(context.run_as_non_root, Some(true));
        assert_eq!(
            (context.run_as_user, context.run_as_group, context.fs_group),
            (Some(65532), Some(65532), Some(65532))
        );
        assert_eq!(context.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
        assert_eq!(context.seccomp_profile, Some(runtime_default()));
    }

    #[test]
    fn agent_container_meets_pod_security_restricted() {
        let pod = build("image: x");
        let container = &spec_of(&pod).containers[0];
        let context = container.security_context.clone().expect("container security context");
        assert_eq!(context.allow_privilege_escalation, Some(false));
        assert_eq!(context.privileged, Some(false));
        assert_eq!(context.read_only_root_filesystem, Some(true));
        assert_eq!(context.run_as_non_root, Some(true));
        assert_eq!(
            context.capabilities,
            Some(Capabilities { add: None, drop: Some(vec!["ALL".into()]) })
        );
        assert_eq!(context.seccomp_profile, Some(runtime_default()));
        assert_eq!(spec_of(&pod).containers.len(), 1);
        assert!(
            spec_of(&pod).init_containers.is_none() && spec_of(&pod).ephemeral_containers.is_none()
        );
    }

    #[test]
    fn agent_container_carries_the_spec_and_all_resources() {
        let pod = build(
            "image: busybox:1.36\ncommand: [sh, -c]\nargs: [echo hi]\n\
             env: [{name: A, value: b}]\nworkingDir: /workspace/src",
        );
        let container = &spec_of(&pod).containers[0];
        assert_eq!(container.name, "agent");
        assert_eq!(container.image.as_deref(), Some("busybox:1.36"));
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(container.command, Some(vec!["sh".into(), "-c".into()]));
        assert_eq!(container.args, Some(vec!["echo hi".into()]));
        assert_eq!(
            container.env,
            Some(vec![EnvVar { name: "A".into(), value: Some("b".into()), value_from: None }])
        );
        assert_eq!(container.working_dir.as_deref(), Some("/workspace/src"));
        let resources = container.resources.clone().expect("resources");
        let keys = |m: Option<BTreeMap<String, Quantity>>| {
            m.unwrap_or_default().into_keys().collect::<Vec<_>>()
        };
        assert_eq!(keys(resources.requests), ["cpu", "ephemeral-storage", "memory"]);
        assert_eq!(keys(resources.limits), ["cpu", "ephemeral-storage", "memory"]);
    }

    #[test]
    fn pod_is_named_owned_selected_by_uid_and_annotated_with_expiry() {
        let pod = build("image: x");
        assert_eq!(pod.metadata.name.as_deref(), Some("demo"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("team-a"));
        let owners = pod.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].controller, Some(true));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[labels::SANDBOX_UID], "0b5c6f4e-1111-2222-3333-444455556666");
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations[labels::EXPIRES_AT], "2030-01-01T01:00:00+00:00");
        assert_eq!(annotations[labels::SANDBOX_NAME], "demo");
    }

    #[test]
    fn without_a_configured_gate_the_agent_is_the_only_container() {
        let pod = build("image: x");
        assert!(spec_of(&pod).init_containers.is_none());
    }

    #[test]
    fn the_fence_gate_runs_before_the_agent_from_the_configured_image() {
        let pod = gated(None);
        let spec = spec_of(&pod);
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        assert_eq!(inits.len(), 1, "one init container: the gate");
        let gate = &inits[0];
        assert_eq!(gate.name, "fence-gate");
        assert_eq!(gate.image.as_deref(), Some("kennel/operator:1"));
        assert_eq!(gate.command, None, "the image's entrypoint is kennel-operator");
        assert_eq!(
            gate.args,
            Some(vec!["fence-gate".into(), "--timeout-seconds".into(), "45".into()]),
            "no --probe: the gate uses the kubernetes Service"
        );
        assert_eq!(gate.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
        assert_eq!(spec.containers[0].name, "agent", "the agent is still the app container");
        let probe = gated(Some("10.96.0.1:443"));
        let args = spec_of(&probe).init_containers.as_deref().unwrap_or_default()[0].args.clone();
        assert_eq!(args.unwrap_or_default()[3..], ["--probe".to_owned(), "10.96.0.1:443".into()]);
    }

    #[test]
    fn the_fence_gate_is_as_fenced_as_the_agent_with_tight_resources() {
        let pod = gated(None);
        let spec = spec_of(&pod);
        let gate = &spec.init_containers.as_deref().unwrap_or_default()[0];
        // Same Pod: same RuntimeClass, no token, no host namespaces.
        assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert!(gate.volume_mounts.is_none(), "the gate mounts nothing");
        let context = gate.security_context.clone().expect("security context");
        assert_eq!(context.read_only_root_filesystem, Some(true));
        assert_eq!((context.run_as_non_root, context.run_as_user), (Some(true), Some(65532)));
        assert_eq!(context.allow_privilege_escalation, Some(false));
        assert_eq!(context.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_owned()]));
        assert_eq!(context.seccomp_profile, Some(runtime_default()));
        let resources = gate.resources.clone().expect("resources");
        let limits = resources.limits.unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        assert_eq!(limits.keys().collect::<Vec<_>>(), ["cpu", "ephemeral-storage", "memory"]);
        assert_eq!(requests.keys().collect::<Vec<_>>(), ["cpu", "ephemeral-storage", "memory"]);
        assert_eq!(limits["memory"], Quantity("32Mi".into()));
        assert_eq!(requests["cpu"], Quantity("10m".into()));
    }
}
