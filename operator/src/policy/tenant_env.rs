//! Environment variable names that look like credentials, refused in every tenant.
//!
//! Sandboxes get no credentials through plain env: values are visible to anyone who can
//! read the `AgentSandbox`, and an agent hands its env to every tool it runs. Names are
//! compared in upper case. The list (documented in `docs/security.md`):
//! - exact: `TOKEN`, `SECRET`, `PASSWORD`, `PASSWD`, `API_KEY`, `APIKEY`,
//!   `GITHUB_TOKEN`, `GH_TOKEN`, `GOOGLE_APPLICATION_CREDENTIALS`, `DOCKER_AUTH_CONFIG`,
//!   `NETRC`, `KUBECONFIG`;
//! - suffixes: `_TOKEN`, `_SECRET`, `_PASSWORD`, `_PASSWD`, `_KEY`, `_APIKEY`,
//!   `_CREDENTIAL`, `_CREDENTIALS`, `_AUTH`;
//! - prefixes: `AWS_`, `AZURE_`, `GCP_`, `GOOGLE_CLOUD_`, `VAULT_`.
//!
//! False positives (`SORT_KEY`, `AWS_REGION`) are accepted: renaming a variable is cheap,
//! a leaked key is not.

/// Names refused as a whole.
pub const EXACT: [&str; 12] = [
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "DOCKER_AUTH_CONFIG",
    "NETRC",
    "KUBECONFIG",
];
/// Endings that mark a credential.
pub const SUFFIXES: [&str; 9] = [
    "_TOKEN",
    "_SECRET",
    "_PASSWORD",
    "_PASSWD",
    "_KEY",
    "_APIKEY",
    "_CREDENTIAL",
    "_CREDENTIALS",
    "_AUTH",
];
/// Beginnings of cloud-provider credential variables.
pub const PREFIXES: [&str; 5] = ["AWS_", "AZURE_", "GCP_", "GOOGLE_CLOUD_", "VAULT_"];

/// Why a name looks like a credential, or `None`.
pub fn credential_like(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    if EXACT.contains(&upper.as_str()) {
        return Some(format!("{upper} is a credential name"));
    }
    if let Some(suffix) = SUFFIXES.iter().find(|s| upper.ends_with(*s)) {
        return Some(format!("names ending in {suffix} hold credentials"));
    }
    PREFIXES
        .iter()
        .find(|p| upper.starts_with(*p))
        .map(|p| format!("names starting with {p} hold cloud credentials"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_are_caught_by_exact_name_suffix_and_prefix_in_any_case() {
        for name in ["GITHUB_TOKEN", "github_token", "OPENAI_API_KEY", "DB_PASSWORD", "AWS_REGION"]
        {
            assert!(credential_like(name).is_some(), "{name} should be refused");
        }
        assert!(credential_like("aws_secret_access_key").is_some());
        assert!(credential_like("kubeconfig").is_some());
    }

    #[test]
    fn ordinary_names_pass() {
        for name in ["HOME", "PATH", "TASK", "TOKENIZER_MODEL", "KEYBOARD", "LANG"] {
            assert_eq!(credential_like(name), None, "{name} is not a credential");
        }
    }
}
