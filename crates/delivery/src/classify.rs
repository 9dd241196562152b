//! Classification of SCIM responses into the closed [`ErrorClass`] set, and `Retry-After` parsing.
//!
//! [`classify_status`] is the RFC behaviour; [`StatusRules`] adds what a target's connector
//! profile says about its statuses (`throttle_statuses`, `duplicate_statuses`).

use std::time::{Duration, SystemTime};

use scimflow_config::ConnectorProfile;
use scimflow_core::ErrorClass;

/// The class of a non-success HTTP status.
///
/// | status | class |
/// |---|---|
/// | 408, 5xx (except 501) | retryable |
/// | 429 | rate limited |
/// | 401 | auth |
/// | 409 | conflict |
/// | everything else (400, 403, 404, 412, 501, …) | permanent |
pub fn classify_status(status: u16) -> ErrorClass {
    match status {
        408 => ErrorClass::Retryable,
        429 => ErrorClass::RateLimited,
        401 => ErrorClass::Auth,
        409 => ErrorClass::Conflict,
        501 => ErrorClass::Permanent,
        500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// What one target's statuses mean beyond [`classify_status`], from its connector profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRules {
    /// Statuses that mean "slow down" (generic: 429; some services throttle with 403).
    throttle: Vec<u16>,
    /// Statuses that mean "already exists" when answering a create (generic: 409; some services
    /// answer a duplicate with another status).
    duplicate: Vec<u16>,
}

impl StatusRules {
    pub fn new(profile: &ConnectorProfile) -> Self {
        StatusRules {
            throttle: profile.throttle_statuses.clone(),
            duplicate: profile.duplicate_statuses.clone(),
        }
    }

    /// The class of a non-success `status`; `create` says whether the request created a resource
    /// (a POST to a resource endpoint), the only request for which a duplicate status is a
    /// uniqueness conflict (then looked up, bound and converged). Throttle statuses are rate
    /// limited (retried, `Retry-After` honoured) whatever the request.
    pub fn classify(&self, status: u16, create: bool) -> ErrorClass {
        if self.throttle.contains(&status) {
            ErrorClass::RateLimited
        } else if create && self.duplicate.contains(&status) {
            ErrorClass::Conflict
        } else {
            classify_status(status)
        }
    }
}

impl Default for StatusRules {
    /// The generic profile's rules: 429 throttles, 409 answers a duplicate create.
    fn default() -> Self {
        StatusRules {
            throttle: vec![429],
            duplicate: vec![409],
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), relative to `now`.
/// A date in the past means "now" (zero); anything unparsable is ignored. Capped at one hour.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let d = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify_status(503), ErrorClass::Retryable);
        assert_eq!(classify_status(429), ErrorClass::RateLimited);
        assert_eq!(classify_status(401), ErrorClass::Auth);
        assert_eq!(classify_status(409), ErrorClass::Conflict);
        assert_eq!(classify_status(400), ErrorClass::Permanent);
        assert_eq!(classify_status(403), ErrorClass::Permanent);
    }

    fn rules(connector: &str) -> StatusRules {
        match scimflow_config::profile::embedded(connector) {
            Some(Ok(p)) => StatusRules::new(&p),
            other => panic!("{connector}: {other:?}"),
        }
    }

    #[test]
    fn classify_generic_rules_are_the_rfc_ones() {
        let g = rules("generic");
        assert_eq!(g, StatusRules::default());
        for (status, create) in [
            (503, false),
            (429, true),
            (401, false),
            (400, true),
            (403, true),
        ] {
            assert_eq!(
                g.classify(status, create),
                classify_status(status),
                "{status}"
            );
        }
        assert_eq!(g.classify(409, true), ErrorClass::Conflict);
        assert_eq!(g.classify(500, true), ErrorClass::Retryable);
    }

    #[test]
    fn classify_403_throttles_where_the_profile_says_so() {
        // GitHub: "If you exceed your primary rate limit, you will receive a 403 or 429 response".
        let gh = rules("github-emu");
        assert_eq!(gh.classify(403, false), ErrorClass::RateLimited);
        assert_eq!(gh.classify(403, true), ErrorClass::RateLimited);
        assert_eq!(gh.classify(429, false), ErrorClass::RateLimited);
        assert!(gh.classify(403, false).is_transient());
        // Elsewhere a 403 is permanent.
        assert_eq!(rules("slack").classify(403, false), ErrorClass::Permanent);
    }

    #[test]
    fn classify_a_declared_duplicate_status_is_a_conflict_on_create_only() {
        let p = scimflow_config::profile::parse(
            "name: acme\nversion: 1\ndescription: Acme\nsources: [https://acme.example/scim]\nduplicate_statuses: [409, 500]\n",
            "acme.yaml",
        )
        .unwrap();
        let r = StatusRules::new(&p);
        assert_eq!(r.classify(500, true), ErrorClass::Conflict);
        assert_eq!(
            r.classify(500, false),
            ErrorClass::Retryable,
            "not a create: a 5xx"
        );
        assert_eq!(r.classify(409, true), ErrorClass::Conflict);
        assert_eq!(r.classify(502, true), ErrorClass::Retryable);
    }

    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("999999", now),
            Some(Duration::from_secs(3600))
        );
    }
}
