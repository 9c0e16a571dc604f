//! Errors of the reconcile pipeline, each with a stable category for metrics and Events.

/// A failure that stops one reconcile. Invalid specs are not errors: they end as a
/// `Rejected` status. What remains here is transient (the API server, the network) and is
/// retried with a growing delay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an object failed.
    #[error("failed to read {kind} {name}: {source}; retrying")]
    Read {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// What the API server or client said.
        #[source]
        source: kube::Error,
    },
    /// A server-side apply failed.
    #[error("failed to apply {kind} {name}: {source}; retrying")]
    Apply {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// What the API server or client said.
        #[source]
        source: kube::Error,
    },
    /// A delete failed.
    #[error("failed to delete {kind} {name}: {source}; retrying")]
    Delete {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// What the API server or client said.
        #[source]
        source: kube::Error,
    },
    /// Writing the sandbox's status failed.
    #[error("failed to update the status of AgentSandbox {name}: {source}; retrying")]
    Status {
        /// Name of the sandbox.
        name: String,
        /// What the API server or client said.
        #[source]
        source: kube::Error,
    },
    /// The object from the API server lacks a field the API server always sets.
    #[error("failed to reconcile: the object has no {0}; it did not come from an API server")]
    MissingField(&'static str),
}

impl Error {
    /// A short, stable name for the kind of failure: the metric label and Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read_failed",
            Error::Apply { .. } => "apply_failed",
            Error::Delete { .. } => "delete_failed",
            Error::Status { .. } => "status_failed",
            Error::MissingField(_) => "malformed_object",
        }
    }
}

/// What one reconcile returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_names_the_failed_action_and_has_a_category() {
        let missing = Error::MissingField("metadata.uid");
        assert!(missing.to_string().starts_with("failed to "));
        assert_eq!(missing.category(), "malformed_object");
    }
}
