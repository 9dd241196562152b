//! W3C Trace Context (`traceparent`) as it flows from an event to the SCIM requests it causes.
//!
//! An event's `traceparent` (a Kafka header or the CloudEvents `traceparent` extension) names the
//! producer's span. Every SCIM request scimflow makes for that event carries a `traceparent` with
//! the **same trace id** and a **new span id** (a child of the producer's span), so a tracing
//! backend links the HR change to each call on each target.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A parsed `traceparent` header: `{version}-{trace id}-{parent span id}-{flags}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero.
    pub span_id: String,
    /// 2 hex digits (`01` = sampled).
    pub flags: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` when it is not valid W3C Trace Context (version `ff`,
    /// all-zero ids, wrong lengths or non-hex digits). Future versions are read as version 00.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = is_hex(version, 2)
            && !version.eq_ignore_ascii_case("ff")
            && (version != "00" || parts.next().is_none())
            && is_hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && is_hex(span_id, 16)
            && span_id.bytes().any(|b| b != b'0')
            && is_hex(flags, 2);
        valid.then(|| TraceParent {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: span_id.to_ascii_lowercase(),
            flags: flags.to_ascii_lowercase(),
        })
    }

    /// A child: same trace id and flags, a fresh span id.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id.clone(),
            span_id: new_span_id(),
            flags: self.flags.clone(),
        }
    }

    /// The header value (version 00).
    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// A random, non-zero 64-bit span id as 16 hex digits.
pub fn new_span_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS once per process and per-thread keys differ; mixing in a
    // counter and the time makes ids unique within the process.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let id = h.finish().max(1);
    format!("{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_makes_children_in_the_same_trace() {
        let p = TraceParent::parse(TP).unwrap();
        assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.header(), TP);
        let c = p.child();
        let d = p.child();
        assert_eq!(c.trace_id, p.trace_id);
        assert_eq!(c.flags, "01");
        assert_ne!(c.span_id, p.span_id);
        assert_ne!(c.span_id, d.span_id, "each request its own span");
        assert!(TraceParent::parse(&c.header()).is_some());
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A future version may append fields.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }
}
