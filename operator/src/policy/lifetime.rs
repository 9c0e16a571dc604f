//! Lifetime: when a sandbox expires, computed once and then read back from status so that
//! neither a restart nor a changed default can move it.

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::AgentSandbox,
    config::{Config, parse_ttl},
    policy::validate::Errors,
};

/// The expiry time, or `None` after recording why it cannot be computed.
///
/// Order: `status.expiresAt` unchanged if set (it was computed once); else
/// `spec.lifetime.expiresAt`; else `metadata.creationTimestamp` plus `spec.lifetime.ttl`
/// or the configured default TTL. An absolute time before creation, a zero TTL and a TTL
/// that overflows the calendar are refused.
pub(crate) fn expires_at(
    sandbox: &AgentSandbox,
    config: &Config,
    errors: &mut Errors,
) -> Option<DateTime<Utc>> {
    let lifetime = sandbox.spec.lifetime.as_ref();
    let ttl = lifetime.and_then(|l| l.ttl.as_deref());
    let absolute = lifetime.and_then(|l| l.expires_at.as_ref());
    if ttl.is_some() && absolute.is_some() {
        errors.add("spec.lifetime", "set either ttl or expiresAt, not both");
        return None;
    }
    let created = sandbox.metadata.creation_timestamp.as_ref().and_then(to_chrono);
    let Some(created) = created else {
        errors.add("metadata.creationTimestamp", "is missing; the API server sets it");
        return None;
    };
    // The spec's lifetime is judged even when an expiry is stored: a rejected sandbox
    // stores a fallback expiry, which must not make its invalid lifetime valid later.
    let computed = from_spec(created, absolute, ttl, config, errors);
    if let Some(stored) = sandbox.status.as_ref().and_then(|s| s.expires_at.as_ref()) {
        return from_time(stored, "status.expiresAt", errors);
    }
    computed
}

/// The expiry the spec asks for: the absolute time, or creation plus the TTL or default.
fn from_spec(
    created: DateTime<Utc>,
    absolute: Option<&Time>,
    ttl: Option<&str>,
    config: &Config,
    errors: &mut Errors,
) -> Option<DateTime<Utc>> {
    if let Some(absolute) = absolute {
        let at = from_time(absolute, "spec.lifetime.expiresAt", errors)?;
        if at < created {
            errors.add(
                "spec.lifetime.expiresAt",
                format!(
                    "{} is before the sandbox was created ({}); give a later time",
                    at.to_rfc3339(),
                    created.to_rfc3339()
                ),
            );
            return None;
        }
        return Some(at);
    }
    let (text, field) = match ttl {
        Some(text) => (text, "spec.lifetime.ttl"),
        None => (config.default_ttl.as_str(), "spec.lifetime.ttl (the operator's defaultTtl)"),
    };
    after(created, text, field, errors)
}

/// Creation time plus a TTL, refusing zero and overflow.
fn after(
    created: DateTime<Utc>,
    ttl: &str,
    field: &str,
    errors: &mut Errors,
) -> Option<DateTime<Utc>> {
    let duration = match parse_ttl(ttl) {
        Ok(duration) => duration,
        Err(message) => {
            errors.add(field, message);
            return None;
        }
    };
    if duration.is_zero() {
        errors.add(field, "is zero; give a lifetime such as 30m or 2h");
        return None;
    }
    let at = TimeDelta::from_std(duration).ok().and_then(|d| created.checked_add_signed(d));
    if at.is_none() {
        errors.add(field, format!("{ttl:?} is too long; give a lifetime such as 30m or 2h"));
    }
    at
}

fn from_time(time: &Time, field: &str, errors: &mut Errors) -> Option<DateTime<Utc>> {
    let converted = to_chrono(time);
    if converted.is_none() {
        errors.add(field, "is outside the range of supported times");
    }
    converted
}

/// Converts a Kubernetes timestamp to `chrono`, or `None` outside chrono's range.
pub fn to_chrono(time: &Time) -> Option<DateTime<Utc>> {
    let mut seconds = time.0.as_second();
    let mut nanos = time.0.subsec_nanosecond();
    if nanos < 0 {
        seconds = seconds.checked_sub(1)?;
        nanos += 1_000_000_000;
    }
    DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)
}
