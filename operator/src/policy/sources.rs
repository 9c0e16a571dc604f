//! Mount sources: the objects a sandbox's mounts name, which of them the operator must look
//! at (metadata only, never data) before judging them, and what it found.
//!
//! The read itself happens in the controller (`controller::sources`); this module stays pure:
//! it says what to read and judges what was read, so tests need no API server.

use std::collections::BTreeMap;

use crate::{
    api::{AgentSandbox, policy::MountSourceRule},
    policy::tenant::TenantPolicy,
};

/// Annotation the service-account token controller reads on a token Secret: such a Secret
/// holds (or will hold) a token of that service account.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// The kinds of object a mount can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// A `ConfigMap`.
    ConfigMap,
    /// A Secret.
    Secret,
    /// A `PersistentVolumeClaim`.
    Claim,
}

impl SourceKind {
    /// The Kubernetes kind, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "ConfigMap",
            SourceKind::Secret => "Secret",
            SourceKind::Claim => "PersistentVolumeClaim",
        }
    }

    /// The spec field under `spec.mounts[i]` that names the object.
    pub fn field(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "configMap.name",
            SourceKind::Secret => "secret.secretName",
            SourceKind::Claim => "persistentVolumeClaim.claimName",
        }
    }

    /// The tenant's rule for this kind.
    pub fn rule(self, policy: &TenantPolicy) -> &MountSourceRule {
        match self {
            SourceKind::ConfigMap => &policy.config_maps,
            SourceKind::Secret => &policy.secrets,
            SourceKind::Claim => &policy.claims,
        }
    }
}

/// One mount's source, as the spec names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRef {
    /// Position of the mount in `spec.mounts`.
    pub index: usize,
    /// Name of the mount.
    pub mount: String,
    /// Kind of the object.
    pub kind: SourceKind,
    /// Name of the object, in the sandbox's namespace.
    pub name: String,
}

/// What the operator found when it looked at one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The object exists; its labels and, for a token Secret, the service account named.
    Object {
        /// The object's labels.
        labels: BTreeMap<String, String>,
        /// The `kubernetes.io/service-account.name` annotation, if any.
        service_account: Option<String>,
    },
    /// No object of that name in the namespace.
    Missing,
    /// The API server would not show it (RBAC); the text says why.
    Unreadable(String),
}

/// What was found of each object the operator looked at. An object not in here was not
/// read: rules that need a look at it fail closed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceFacts(BTreeMap<(SourceKind, String), Found>);

impl SourceFacts {
    /// Records what was found of one object.
    pub fn insert(&mut self, kind: SourceKind, name: &str, found: Found) {
        self.0.insert((kind, name.to_owned()), found);
    }

    /// What was found of one object, if it was read.
    pub fn get(&self, kind: SourceKind, name: &str) -> Option<&Found> {
        self.0.get(&(kind, name.to_owned()))
    }
}

/// Every mount's source, in the order of the spec; a mount naming no or several sources is
/// left to validation.
pub fn sources(sandbox: &AgentSandbox) -> Vec<SourceRef> {
    let mut refs = Vec::new();
    for (index, mount) in sandbox.spec.mounts.iter().flatten().enumerate() {
        let named = [
            mount.config_map.as_ref().map(|m| (SourceKind::ConfigMap, &m.name)),
            mount.secret.as_ref().map(|s| (SourceKind::Secret, &s.secret_name)),
            mount.persistent_volume_claim.as_ref().map(|c| (SourceKind::Claim, &c.claim_name)),
        ];
        let mut named = named.into_iter().flatten();
        if let (Some((kind, name)), None) = (named.next(), named.next()) {
            let mount = mount.name.clone();
            refs.push(SourceRef { index, mount, kind, name: name.clone() });
        }
    }
    refs
}

/// The sources the operator must look at before judging: every Secret the policy admits by
/// kind and name (a token Secret is refused whatever the rule says), and every source whose
/// rule requires labels. Sources the policy refuses anyway are not read.
pub fn to_read(sandbox: &AgentSandbox, policy: &TenantPolicy) -> Vec<SourceRef> {
    sources(sandbox)
        .into_iter()
        .filter(|s| {
            let rule = s.kind.rule(policy);
            rule.allowed
                && names_admit(rule, &s.name)
                && (s.kind == SourceKind::Secret || !rule.match_labels.is_empty())
        })
        .collect()
}

/// Whether a rule's names admit an object name (a trailing `*` matches any suffix; no
/// names admits every name).
pub fn names_admit(rule: &MountSourceRule, name: &str) -> bool {
    rule.names.is_empty()
        || rule.names.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        })
}

/// Why a rule refuses this source, or `None` when it admits it. An object that was found
/// missing is not refused here: the sandbox waits for it ([`missing`]).
pub fn refusal(rule: &MountSourceRule, source: &SourceRef, facts: &SourceFacts) -> Option<String> {
    if !rule.allowed {
        return Some("this kind of source is not allowed".to_owned());
    }
    if !names_admit(rule, &source.name) {
        return Some("the name is not in the allowed names".to_owned());
    }
    let must_look = source.kind == SourceKind::Secret || !rule.match_labels.is_empty();
    if !must_look {
        return None;
    }
    match facts.get(source.kind, &source.name) {
        None => Some("its metadata was not read, so it cannot be checked".to_owned()),
        Some(Found::Unreadable(why)) => Some(format!("the operator may not read it ({why})")),
        Some(Found::Missing) => None,
        Some(Found::Object { labels, service_account }) => {
            if let Some(account) =
                service_account.as_ref().filter(|_| source.kind == SourceKind::Secret)
            {
                return Some(format!(
                    "it holds a token of the service account {account:?} (annotation \
                     {SERVICE_ACCOUNT_ANNOTATION}), and service-account tokens are never \
                     mounted"
                ));
            }
            let lacking: Vec<String> = rule
                .match_labels
                .iter()
                .filter(|(key, value)| labels.get(*key) != Some(*value))
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            (!lacking.is_empty()).then(|| {
                format!("it lacks the label(s) {} that the rule requires", lacking.join(", "))
            })
        }
    }
}

/// The sources found missing, each as a sentence naming the mount and the object.
pub fn missing(sandbox: &AgentSandbox, facts: &SourceFacts) -> Vec<String> {
    sources(sandbox)
        .into_iter()
        .filter(|s| facts.get(s.kind, &s.name) == Some(&Found::Missing))
        .map(|s| {
            format!(
                "mount {:?} (spec.mounts[{}].{}) names {} {:?}, which does not exist in this \
                 namespace; the sandbox starts once it does",
                s.mount,
                s.index,
                s.kind.field(),
                s.kind.as_str(),
                s.name
            )
        })
        .collect()
}
