//! Observe step (pure): what the sandbox's Pod says about the agent.

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time};

use crate::{
    api::{Phase, conditions::reason},
    fence_gate,
};

/// The agent's state as read from its Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Phase the sandbox is in because of this Pod.
    pub phase: Phase,
    /// Whether the agent's container is ready.
    pub ready: bool,
    /// Reason for the `Ready` condition.
    pub reason: &'static str,
    /// A sentence for people: what the Pod is doing and, if stuck, why.
    pub message: String,
    /// Node the Pod was scheduled to.
    pub node_name: Option<String>,
    /// When the kubelet started the Pod.
    pub start_time: Option<Time>,
    /// When the container became ready.
    pub ready_time: Option<Time>,
    /// Exit code, once the agent has finished.
    pub exit_code: Option<i32>,
    /// `Recursive` or `TopLevel` once the runtime has said how read-only inputs are held.
    pub read_only_mounts: Option<&'static str>,
}

/// The name of the agent's container in every sandbox Pod.
pub const AGENT_CONTAINER: &str = "agent";

/// Reads the sandbox's state from its Pod.
pub fn observe(pod: &Pod) -> Observation {
    let status = pod.status.as_ref();
    let pod_phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let agent = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == AGENT_CONTAINER));
    let terminated = agent.and_then(|c| c.state.as_ref()).and_then(|s| s.terminated.as_ref());
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let ready = ready_condition.is_some_and(|c| c.status == "True");

    let mut observation = Observation {
        phase: Phase::Pending,
        ready,
        reason: reason::POD_PENDING,
        message: String::new(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        start_time: status.and_then(|s| s.start_time.clone()),
        ready_time: ready_condition.filter(|_| ready).and_then(|c| c.last_transition_time.clone()),
        exit_code: terminated.map(|t| t.exit_code),
        read_only_mounts: read_only_mode(pod),
    };
    let pod_reason = status.and_then(|s| s.reason.as_deref());
    let term_reason = terminated.and_then(|t| t.reason.as_deref());
    match pod_phase {
        "Running" if ready => {
            observation.phase = Phase::Running;
            observation.reason = reason::POD_READY;
            observation.message = "the agent is running".to_owned();
        }
        "Running" => {
            observation.phase = Phase::Running;
            observation.reason = reason::POD_NOT_READY;
            observation.message = "the agent's container is running but not ready".to_owned();
        }
        "Succeeded" => {
            observation.phase = Phase::Succeeded;
            observation.reason = reason::COMPLETED;
            observation.message = "the agent exited with code 0".to_owned();
        }
        "Failed" => failed(&mut observation, pod_reason, term_reason, pod),
        _ => pending(&mut observation, pod, agent),
    }
    observation
}

fn failed(obs: &mut Observation, pod_reason: Option<&str>, term: Option<&str>, pod: &Pod) {
    obs.phase = Phase::Failed;
    let pod_message = pod.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default();
    if pod_reason == Some("Evicted") {
        obs.reason = reason::EVICTED;
        obs.message = format!("the kubelet evicted the agent: {pod_message}");
    } else if let Some(message) = gate_failure(pod) {
        obs.reason = reason::FENCE_NOT_IN_FORCE;
        obs.message = message;
    } else if term == Some("OOMKilled") {
        obs.reason = reason::OOM_KILLED;
        obs.message = "the agent was killed for exceeding its memory limit; raise \
                       spec.resources.limits.memory"
            .to_owned();
    } else {
        obs.reason = reason::ERROR;
        obs.message = match obs.exit_code {
            Some(code) => format!("the agent exited with code {code}"),
            None => format!("the agent's Pod failed: {pod_message}"),
        };
    }
}

/// The fence gate's own message when it failed, from its termination message (its stderr).
fn gate_failure(pod: &Pod) -> Option<String> {
    let gate = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    let gate = gate.iter().find(|c| c.name == fence_gate::CONTAINER)?;
    let terminated = gate.state.as_ref()?.terminated.as_ref()?;
    (terminated.exit_code != 0).then(|| {
        let message = terminated.message.as_deref().map(str::trim).unwrap_or_default();
        if message.is_empty() {
            format!("the fence gate exited with code {}", terminated.exit_code)
        } else {
            message.to_owned()
        }
    })
}

fn pending(
    obs: &mut Observation,
    pod: &Pod,
    agent: Option<&k8s_openapi::api::core::v1::ContainerStatus>,
) {
    let unschedulable = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"));
    let waiting = agent.and_then(|c| c.state.as_ref()).and_then(|s| s.waiting.as_ref());
    obs.message = if let Some(cond) = unschedulable {
        format!("the Pod cannot be scheduled: {}", cond.message.clone().unwrap_or_default())
    } else if let Some(waiting) = waiting {
        let why = waiting.reason.clone().unwrap_or_default();
        match &waiting.message {
            Some(detail) => format!("the agent's container is waiting: {why}: {detail}"),
            None => format!("the agent's container is waiting: {why}"),
        }
    } else if obs.node_name.is_some() {
        "the Pod is starting".to_owned()
    } else {
        "the Pod is waiting to be scheduled".to_owned()
    };
}

/// How the runtime holds read-only inputs, from the kubelet's report per mount.
fn read_only_mode(pod: &Pod) -> Option<&'static str> {
    let agent = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == AGENT_CONTAINER)?;
    // Until the container has started, the kubelet has not learnt what the runtime did.
    let state = agent.state.as_ref()?;
    if state.running.is_none() && state.terminated.is_none() {
        return None;
    }
    let mounts = agent.volume_mounts.as_ref()?;
    let modes: Vec<&str> = mounts.iter().filter_map(|m| m.recursive_read_only.as_deref()).collect();
    if modes.is_empty() {
        None
    } else if modes.iter().all(|m| *m == "Enabled") {
        Some("Recursive")
    } else {
        Some("TopLevel")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("test pod parses")
    }

    #[test]
    fn ready_running_pod_is_running_and_ready() {
        let obs = observe(&pod(r"
spec: {nodeName: node-a, containers: [{name: agent}]}
status:
  phase: Running
  startTime: 2026-01-01T00:00:00Z
  conditions: [{type: Ready, status: 'True', lastTransitionTime: 2026-01-01T00:00:02Z}]
"));
        assert_eq!(obs.phase, Phase::Running);
        assert!(obs.ready);
        assert_eq!(obs.reason, reason::POD_READY);
        assert_eq!(obs.node_name.as_deref(), Some("node-a"));
        assert!(obs.ready_time.is_some());
    }

    #[test]
    fn oom_killed_agent_is_failed_with_oom_reason_and_exit_code() {
        let obs = observe(&pod(r"
status:
  phase: Failed
  containerStatuses:
  - name: agent
    ready: false
    restartCount: 0
    image: x
    imageID: x
    state: {terminated: {exitCode: 137, reason: OOMKilled}}
"));
        assert_eq!(obs.phase, Phase::Failed);
        assert_eq!(obs.reason, reason::OOM_KILLED);
        assert_eq!(obs.exit_code, Some(137));
    }

    #[test]
    fn evicted_pod_is_failed_with_evicted_reason() {
        let obs = observe(&pod(r"
status: {phase: Failed, reason: Evicted, message: ephemeral storage over limit}
"));
        assert_eq!(obs.reason, reason::EVICTED);
        assert!(obs.message.contains("ephemeral storage"));
    }

    #[test]
    fn failed_fence_gate_is_reported_with_its_own_message() {
        let obs = observe(&pod(r"
status:
  phase: Failed
  initContainerStatuses:
  - {name: fence-gate, ready: false, restartCount: 0, image: x, imageID: x,
     state: {terminated: {exitCode: 1, reason: Error,
       message: 'fence gate: the egress fence was not in force within 60s'}}}
  containerStatuses:
  - {name: agent, ready: false, restartCount: 0, image: x, imageID: x,
     state: {waiting: {reason: PodInitializing}}}
"));
        assert_eq!(obs.phase, Phase::Failed);
        assert_eq!(obs.reason, reason::FENCE_NOT_IN_FORCE);
        assert_eq!(obs.message, "fence gate: the egress fence was not in force within 60s");
    }

    #[test]
    fn finished_agent_records_its_exit_code() {
        let obs = observe(&pod(r"
status:
  phase: Succeeded
  containerStatuses:
  - {name: agent, ready: false, restartCount: 0, image: x, imageID: x,
     state: {terminated: {exitCode: 0, reason: Completed}}}
"));
        assert_eq!(obs.phase, Phase::Succeeded);
        assert_eq!(obs.exit_code, Some(0));
    }

    #[test]
    fn waiting_container_explains_why_in_the_message() {
        let obs = observe(&pod(r"
spec: {nodeName: n, containers: [{name: agent}]}
status:
  phase: Pending
  containerStatuses:
  - {name: agent, ready: false, restartCount: 0, image: x, imageID: x,
     state: {waiting: {reason: ErrImageNeverPull, message: image not present}}}
"));
        assert_eq!(obs.phase, Phase::Pending);
        assert!(obs.message.contains("ErrImageNeverPull"), "{}", obs.message);
    }

    #[test]
    fn runtime_without_recursive_read_only_is_reported_as_top_level() {
        let obs = observe(&pod(r"
status:
  phase: Running
  containerStatuses:
  - name: agent
    ready: true
    restartCount: 0
    image: x
    imageID: x
    state: {running: {startedAt: 2026-01-01T00:00:00Z}}
    volumeMounts:
    - {name: inputs, mountPath: /inputs, readOnly: true, recursiveReadOnly: Disabled}
    - {name: workspace, mountPath: /workspace}
"));
        assert_eq!(obs.read_only_mounts, Some("TopLevel"));
    }
}
