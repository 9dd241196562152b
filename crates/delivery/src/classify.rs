//! Classification of SCIM responses into the closed [`ErrorClass`] set, and `Retry-After` parsing.

use std::time::{Duration, SystemTime};

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
