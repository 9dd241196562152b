//! Audit records and the SHA-256 hash chain that makes the log tamper-evident.
//!
//! The store's writer turns each [`AuditEntry`] into an [`AuditRecord`] by assigning the next sequence
//! number and chaining it to the previous record's hash:
//! `hash = sha256(prev_hash || canonical_json(seq, entry))`. Changing, removing or reordering any record
//! breaks every later link, which [`verify_chain`] detects.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash that precedes the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as reported by the stage that did it. Holds no attribute values and no secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub time: DateTime<Utc>,
    /// `applied`, `noop`, `failed`, `stale`, `duplicate`, `rejected`, `plan_error`, …
    pub outcome: String,
    pub event_id: String,
    pub subject: String,
    /// Target name, empty for records that concern no target.
    pub target: String,
    /// Operation id, empty for records that concern no operation.
    pub op_id: String,
    /// `upsert`, `deactivate`, …
    pub operation: String,
    /// Every HTTP request the operation needed, e.g. `GET /Users`, `POST /Users` (no query strings).
    #[serde(default)]
    pub requests: Vec<String>,
    /// Final HTTP status, if a request was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    /// Error detail (never contains secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub attempts: u32,
    pub latency_ms: u64,
    /// Names (not values) of the attributes the operation set.
    #[serde(default)]
    pub attributes: Vec<String>,
    pub mapping_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl AuditEntry {
    /// An entry stamped now with `outcome` and nothing else set: no target, operation, requests or
    /// error. Callers fill in what their record is about (struct update syntax).
    pub fn note(outcome: &str, mapping_version: &str) -> AuditEntry {
        AuditEntry {
            time: Utc::now(),
            outcome: outcome.to_owned(),
            event_id: String::new(),
            subject: String::new(),
            target: String::new(),
            op_id: String::new(),
            operation: String::new(),
            requests: Vec::new(),
            status: None,
            error_class: None,
            scim_type: None,
            detail: None,
            attempts: 0,
            latency_ms: 0,
            attributes: Vec::new(),
            mapping_version: mapping_version.to_owned(),
            trace_id: None,
        }
    }
}

/// An [`AuditEntry`] as stored: numbered and chained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// Chains `entry` after a record whose hash is `prev_hash`.
    pub fn chain(seq: u64, entry: AuditEntry, prev_hash: &str) -> Self {
        let hash = Self::compute_hash(seq, &entry, prev_hash);
        AuditRecord {
            seq,
            entry,
            prev_hash: prev_hash.to_owned(),
            hash,
        }
    }

    /// The hash this record must carry.
    pub fn compute_hash(seq: u64, entry: &AuditEntry, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(seq.to_be_bytes());
        // serde_json output of a derived struct is deterministic (field order is declaration order).
        h.update(serde_json::to_vec(entry).expect("audit entry serializes"));
        hex::encode(h.finalize())
    }
}

/// The first problem found in a sequence of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Sequence number (or position) of the first bad record.
    pub seq: u64,
    pub reason: String,
}

/// Checks that `records` form an unbroken chain starting after `prev_hash` at sequence `first_seq`.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    first_seq: u64,
    prev_hash: &str,
) -> Result<u64, ChainBreak> {
    let mut prev = prev_hash.to_owned();
    let mut n = 0;
    for (expect_seq, r) in (first_seq..).zip(records) {
        if r.seq != expect_seq {
            return Err(ChainBreak {
                seq: expect_seq,
                reason: format!(
                    "expected record #{expect_seq} but found #{} (removed or reordered)",
                    r.seq
                ),
            });
        }
        if r.prev_hash != prev {
            return Err(ChainBreak {
                seq: r.seq,
                reason: format!("record #{} does not link to the previous record", r.seq),
            });
        }
        let want = AuditRecord::compute_hash(r.seq, &r.entry, &r.prev_hash);
        if want != r.hash {
            return Err(ChainBreak {
                seq: r.seq,
                reason: format!("record #{} was changed (hash mismatch)", r.seq),
            });
        }
        prev = r.hash.clone();
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> AuditEntry {
        AuditEntry {
            time: "2026-01-01T00:00:00Z".parse().unwrap(),
            outcome: "applied".into(),
            event_id: format!("e{i}"),
            subject: "s".into(),
            target: "t".into(),
            op_id: format!("o{i}"),
            operation: "upsert".into(),
            requests: vec!["POST /Users".into()],
            status: Some(201),
            error_class: None,
            scim_type: None,
            detail: None,
            attempts: 1,
            latency_ms: 3,
            attributes: vec!["userName".into()],
            mapping_version: "v".into(),
            trace_id: None,
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|i| {
                let r = AuditRecord::chain(i, entry(i), &prev);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5), 1, GENESIS_HASH), Ok(5));
    }

    #[test]
    fn tampering_is_detected_and_located() {
        let mut c = chain(5);
        c[2].entry.status = Some(500);
        assert_eq!(verify_chain(&c, 1, GENESIS_HASH).unwrap_err().seq, 3);

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify_chain(&c, 1, GENESIS_HASH).unwrap_err().seq, 2);

        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify_chain(&c, 1, GENESIS_HASH).unwrap_err().seq, 2);
    }
}
