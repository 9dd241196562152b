//! Audit records, the SHA-256 hash chain that makes the log tamper-evident, and the Ed25519-signed
//! checkpoints that pin it.
//!
//! The store's writer turns each [`AuditEntry`] into an [`AuditRecord`] by assigning the next sequence
//! number and chaining it to the previous record's hash:
//! `hash = sha256(prev_hash || seq BE || canonical_json(entry))`. Changing, removing or reordering any
//! record breaks every later link, which [`verify_chain`] detects.
//!
//! A chain alone does not stop someone with write access from rewriting a record and re-chaining
//! everything after it, or from dropping the tail. So the daemon periodically signs an
//! [`AuditCheckpoint`] `{seq, hash, time, key_id}` of the chain head with an Ed25519 key the store
//! never sees; [`LogVerifier`] checks every record against the chain *and* every checkpoint against
//! the public key and the record at its sequence number, and reports the first bad record
//! ([`ChainBreak`], with a [`BreakKind`]): changed, removed, reordered, or truncated (the log ends
//! before a signed checkpoint, or before the highest sequence number the store assigned).
//!
//! Records hold names, never attribute values ([`AuditEntry::attributes`]).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
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

/// What is wrong with the first bad record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// Its content no longer matches its hash, it cannot be decoded, it does not link to the record
    /// before it, or it was rewritten (the chain recomputed) so that it no longer matches a signed
    /// checkpoint.
    Changed,
    /// It is missing from the middle of the log.
    Removed,
    /// It is stored at another record's position.
    Reordered,
    /// The log ends before it, although a signed checkpoint or the store's counter says it existed.
    Truncated,
    /// A checkpoint's signature does not verify against the public key (forged or altered), or no key
    /// was given to check it with.
    BadCheckpoint,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Changed => "changed",
            BreakKind::Removed => "removed",
            BreakKind::Reordered => "reordered",
            BreakKind::Truncated => "truncated",
            BreakKind::BadCheckpoint => "bad checkpoint",
        }
    }
}

/// The first problem found in a sequence of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Sequence number (or position) of the first bad record (for [`BreakKind::BadCheckpoint`]: the
    /// sequence number the checkpoint claims to cover).
    pub seq: u64,
    pub kind: BreakKind,
    pub reason: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record #{} {}: {}",
            self.seq,
            self.kind.as_str(),
            self.reason
        )
    }
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
                kind: if r.seq > expect_seq {
                    BreakKind::Removed
                } else {
                    BreakKind::Reordered
                },
                reason: format!(
                    "expected record #{expect_seq} but found #{} (removed or reordered)",
                    r.seq
                ),
            });
        }
        if r.prev_hash != prev {
            return Err(ChainBreak {
                seq: r.seq,
                kind: BreakKind::Changed,
                reason: format!("record #{} does not link to the previous record", r.seq),
            });
        }
        let want = AuditRecord::compute_hash(r.seq, &r.entry, &r.prev_hash);
        if want != r.hash {
            return Err(ChainBreak {
                seq: r.seq,
                kind: BreakKind::Changed,
                reason: format!("record #{} was changed (hash mismatch)", r.seq),
            });
        }
        prev = r.hash.clone();
        n += 1;
    }
    Ok(n)
}

/// Domain separation for checkpoint signatures (a signature over these bytes means nothing else).
const CHECKPOINT_CONTEXT: &str = "scimflow-audit-checkpoint-v1";

/// The id of a public key as checkpoints record it: `ed25519:` + the first 16 hex digits of the
/// SHA-256 of the 32-byte public key. Says which key signed, so a verifier can refuse the wrong one.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", &hex::encode(digest)[..16])
}

/// A signed statement that the audit chain's record `seq` has hash `hash`: everything up to `seq`
/// is pinned. Written by the daemon's checkpointer through the store's single writer (keyspace
/// `ckpt:`), verified by `scimflow audit verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// The record this checkpoint covers (the chain head when it was signed), from 1.
    pub seq: u64,
    /// That record's hash.
    pub hash: String,
    /// When it was signed.
    pub time: DateTime<Utc>,
    /// [`key_id`] of the signing key.
    pub key_id: String,
    /// Ed25519 signature of [`AuditCheckpoint::message`], 64 bytes as hex.
    pub signature: String,
}

impl AuditCheckpoint {
    /// Signs `(seq, hash, time)` with `key`.
    pub fn sign(seq: u64, hash: &str, time: DateTime<Utc>, key: &SigningKey) -> AuditCheckpoint {
        let key_id = key_id(&key.verifying_key());
        let message = Self::message_for(seq, hash, &time, &key_id);
        AuditCheckpoint {
            seq,
            hash: hash.to_owned(),
            time,
            key_id,
            signature: hex::encode(key.sign(&message).to_bytes()),
        }
    }

    /// The bytes that are signed: `scimflow-audit-checkpoint-v1\n{seq}\n{hash}\n{time RFC 3339, ns}\n{key_id}`.
    pub fn message(&self) -> Vec<u8> {
        Self::message_for(self.seq, &self.hash, &self.time, &self.key_id)
    }

    fn message_for(seq: u64, hash: &str, time: &DateTime<Utc>, key_id: &str) -> Vec<u8> {
        format!(
            "{CHECKPOINT_CONTEXT}\n{seq}\n{hash}\n{}\n{key_id}",
            time.to_rfc3339_opts(SecondsFormat::Nanos, true)
        )
        .into_bytes()
    }

    /// Checks the signature against `key` (strict Ed25519 verification). The error says why, for
    /// the checkpoint at `seq`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        let want = key_id(key);
        if self.key_id != want {
            return Err(format!(
                "the checkpoint at #{} was signed by key {}, not by the given public key {want}",
                self.seq, self.key_id
            ));
        }
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "the checkpoint at #{} has a malformed signature (not 64 bytes of hex)",
                    self.seq
                )
            })?;
        key.verify_strict(&self.message(), &Signature::from_bytes(&bytes))
            .map_err(|_| {
                format!(
                    "the checkpoint at #{} has an invalid signature for key {want} (forged or altered)",
                    self.seq
                )
            })
    }
}

/// What [`LogVerifier::finish`] found in an intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Records checked.
    pub records: u64,
    /// Checkpoints checked (signature and the record they cover).
    pub checkpoints: u64,
    /// The last record's sequence number (0 for an empty log) and hash.
    pub head_seq: u64,
    pub head_hash: String,
    /// The newest checkpoint's sequence number, if any.
    pub newest_checkpoint: Option<u64>,
}

impl VerifySummary {
    /// Records after the newest checkpoint: chained but not yet pinned by a signature.
    pub fn unsigned_tail(&self) -> u64 {
        self.head_seq - self.newest_checkpoint.unwrap_or(0)
    }
}

/// Checks a whole audit log, streamed in key order, against its chain and its signed checkpoints.
///
/// Feed every stored record with [`push`](Self::push) — its position (the sequence number in its
/// key) and the decoded record, or why it could not be decoded — then call
/// [`finish`](Self::finish). The first problem is returned as a [`ChainBreak`] naming the record.
#[derive(Debug)]
pub struct LogVerifier {
    /// Checkpoints whose record has not been reached yet, by sequence number (signatures checked).
    pending: BTreeMap<u64, AuditCheckpoint>,
    newest_checkpoint: Option<u64>,
    /// The newest checkpoint matched so far (the start of the range a rewrite may have touched).
    last_matched: u64,
    next: u64,
    prev: String,
    records: u64,
    checkpoints: u64,
}

impl LogVerifier {
    /// Checks every checkpoint's signature against `key` first. Checkpoints need a key: without one,
    /// any checkpoint is reported as unverifiable.
    pub fn new(
        checkpoints: impl IntoIterator<Item = AuditCheckpoint>,
        key: Option<&VerifyingKey>,
    ) -> Result<LogVerifier, ChainBreak> {
        let mut pending: BTreeMap<u64, AuditCheckpoint> = BTreeMap::new();
        for c in checkpoints {
            let bad = |reason: String| ChainBreak {
                seq: c.seq,
                kind: BreakKind::BadCheckpoint,
                reason,
            };
            let Some(key) = key else {
                return Err(bad(format!(
                    "the checkpoint at #{} cannot be checked: no public key was given",
                    c.seq
                )));
            };
            if c.seq == 0 {
                return Err(bad("a checkpoint claims to cover record #0".into()));
            }
            c.verify(key).map_err(bad)?;
            if let Some(other) = pending.get(&c.seq) {
                if other.hash != c.hash {
                    return Err(bad(format!(
                        "two validly signed checkpoints disagree about record #{} ({} and {})",
                        c.seq, other.hash, c.hash
                    )));
                }
            }
            pending.insert(c.seq, c);
        }
        Ok(LogVerifier {
            newest_checkpoint: pending.keys().next_back().copied(),
            pending,
            last_matched: 0,
            next: 1,
            prev: GENESIS_HASH.to_owned(),
            records: 0,
            checkpoints: 0,
        })
    }

    /// Checks the record stored at `position` (records must come in ascending position order).
    pub fn push(
        &mut self,
        position: u64,
        record: Result<AuditRecord, String>,
    ) -> Result<(), ChainBreak> {
        let expect = self.next;
        let brk = |seq: u64, kind: BreakKind, reason: String| ChainBreak { seq, kind, reason };
        if position > expect {
            let missing = if position - expect == 1 {
                format!("record #{expect} is missing")
            } else {
                format!("records #{expect}..=#{} are missing", position - 1)
            };
            return Err(brk(
                expect,
                BreakKind::Removed,
                format!("{missing} (removed); the log continues at #{position}"),
            ));
        }
        if position < expect {
            return Err(brk(
                expect,
                BreakKind::Reordered,
                format!("position #{position} appears again after #{}", expect - 1),
            ));
        }
        let r = record.map_err(|e| {
            brk(
                position,
                BreakKind::Changed,
                format!("record #{position} cannot be decoded, its stored bytes were changed: {e}"),
            )
        })?;
        if r.seq != position {
            return Err(brk(
                position,
                BreakKind::Reordered,
                format!(
                    "position #{position} holds record #{} (records were reordered or moved)",
                    r.seq
                ),
            ));
        }
        let want = AuditRecord::compute_hash(r.seq, &r.entry, &r.prev_hash);
        if want != r.hash {
            return Err(brk(
                position,
                BreakKind::Changed,
                format!("record #{position} was changed (its content does not match its hash)"),
            ));
        }
        if r.prev_hash != self.prev {
            return Err(brk(
                position,
                BreakKind::Changed,
                format!(
                    "record #{position} does not link to record #{} (one of the two was \
                     rewritten, or a record was inserted or moved here)",
                    position - 1
                ),
            ));
        }
        if let Some(c) = self.pending.remove(&position) {
            if c.hash != r.hash {
                return Err(brk(
                    position,
                    BreakKind::Changed,
                    format!(
                        "record #{position} does not match the checkpoint signed at {} \
                         (signed hash {}, stored {}): records #{}..=#{position} were rewritten \
                         and the chain recomputed",
                        c.time.to_rfc3339_opts(SecondsFormat::Secs, true),
                        c.hash,
                        r.hash,
                        self.last_matched + 1
                    ),
                ));
            }
            self.last_matched = position;
            self.checkpoints += 1;
        }
        self.prev = r.hash;
        self.next += 1;
        self.records += 1;
        Ok(())
    }

    /// Ends the check. `assigned` is the highest sequence number the store ever assigned (its
    /// counter); a log that ends before it, or before a signed checkpoint, was truncated.
    pub fn finish(self, assigned: u64) -> Result<VerifySummary, ChainBreak> {
        let last = self.next - 1;
        if let Some((&seq, c)) = self.pending.iter().next_back() {
            return Err(ChainBreak {
                seq: last + 1,
                kind: BreakKind::Truncated,
                reason: format!(
                    "the log ends at #{last}, but a checkpoint signed at {} covers #{seq}: \
                     records #{}..=#{seq} (at least) were removed",
                    c.time.to_rfc3339_opts(SecondsFormat::Secs, true),
                    last + 1
                ),
            });
        }
        if assigned > last {
            return Err(ChainBreak {
                seq: last + 1,
                kind: BreakKind::Truncated,
                reason: format!(
                    "the log ends at #{last}, but the store assigned sequence numbers up to \
                     #{assigned}: records #{}..=#{assigned} were removed",
                    last + 1
                ),
            });
        }
        Ok(VerifySummary {
            records: self.records,
            checkpoints: self.checkpoints,
            head_seq: last,
            head_hash: self.prev,
            newest_checkpoint: self.newest_checkpoint,
        })
    }
}

/// Which records `scimflow audit query` / `export` show. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<String>,
    /// Records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Records before this time.
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.subject.as_ref().is_none_or(|s| *s == e.subject)
            && self.target.as_ref().is_none_or(|t| *t == e.target)
            && self.outcome.as_ref().is_none_or(|o| *o == e.outcome)
            && self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time < t)
    }
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

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// Checks `records` (position = stored seq) with checkpoints at `at`, signed by `signer`,
    /// verified against `verifier`.
    fn verify_log(
        records: &[(u64, Result<AuditRecord, String>)],
        checkpoints: Vec<AuditCheckpoint>,
        verifier: &SigningKey,
        assigned: u64,
    ) -> Result<VerifySummary, ChainBreak> {
        let vk = verifier.verifying_key();
        let mut v = LogVerifier::new(checkpoints, Some(&vk))?;
        for (pos, r) in records {
            v.push(*pos, r.clone())?;
        }
        v.finish(assigned)
    }

    fn stored(c: &[AuditRecord]) -> Vec<(u64, Result<AuditRecord, String>)> {
        c.iter().map(|r| (r.seq, Ok(r.clone()))).collect()
    }

    fn ckpts(c: &[AuditRecord], at: &[u64], k: &SigningKey) -> Vec<AuditCheckpoint> {
        let t = "2026-01-02T03:04:05.123456789Z".parse().unwrap();
        at.iter()
            .map(|s| AuditCheckpoint::sign(*s, &c[*s as usize - 1].hash, t, k))
            .collect()
    }

    #[test]
    fn checkpoint_signature_round_trips_through_json_and_rejects_the_wrong_key() {
        let c = chain(3);
        let cp = AuditCheckpoint::sign(3, &c[2].hash, Utc::now(), &key(1));
        let back: AuditCheckpoint =
            serde_json::from_str(&serde_json::to_string(&cp).unwrap()).unwrap();
        assert_eq!(back.verify(&key(1).verifying_key()), Ok(()));
        let err = back.verify(&key(2).verifying_key()).unwrap_err();
        assert!(err.contains("not by the given public key"), "{err}");
        // Same key id claimed, different signer: the signature itself fails.
        let mut forged = AuditCheckpoint::sign(3, &c[2].hash, cp.time, &key(2));
        forged.key_id = cp.key_id.clone();
        assert!(forged
            .verify(&key(1).verifying_key())
            .unwrap_err()
            .contains("invalid signature"));
        // Altering a signed field breaks the signature.
        let mut moved = cp.clone();
        moved.seq = 2;
        assert!(moved.verify(&key(1).verifying_key()).is_err());
    }

    #[test]
    fn an_intact_log_with_checkpoints_verifies() {
        let c = chain(10);
        let s = verify_log(&stored(&c), ckpts(&c, &[4, 8], &key(1)), &key(1), 10).unwrap();
        assert_eq!(s.records, 10);
        assert_eq!(s.checkpoints, 2);
        assert_eq!(s.head_seq, 10);
        assert_eq!(s.head_hash, c[9].hash);
        assert_eq!(s.unsigned_tail(), 2);
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_record() {
        let c = chain(10);
        let k = key(1);
        let run = |recs: Vec<(u64, Result<AuditRecord, String>)>, assigned| {
            verify_log(&recs, ckpts(&c, &[4, 8], &k), &k, assigned).unwrap_err()
        };
        // changed content
        let mut recs = stored(&c);
        if let Ok(r) = &mut recs[5].1 {
            r.entry.subject = "someone else".into();
        }
        let b = run(recs, 10);
        assert_eq!((b.seq, b.kind), (6, BreakKind::Changed), "{b}");
        // undecodable
        let mut recs = stored(&c);
        recs[2].1 = Err("expected value at line 1".into());
        let b = run(recs, 10);
        assert_eq!((b.seq, b.kind), (3, BreakKind::Changed), "{b}");
        // removed
        let mut recs = stored(&c);
        let _ = recs.remove(6);
        let b = run(recs, 10);
        assert_eq!((b.seq, b.kind), (7, BreakKind::Removed), "{b}");
        // swapped values
        let mut recs = stored(&c);
        let (a, bb) = (recs[1].1.clone(), recs[2].1.clone());
        recs[1].1 = bb;
        recs[2].1 = a;
        let b = run(recs, 10);
        assert_eq!((b.seq, b.kind), (2, BreakKind::Reordered), "{b}");
        // truncated past a checkpoint (counter also dropped)
        let b = run(stored(&c[..6]), 6);
        assert_eq!((b.seq, b.kind), (7, BreakKind::Truncated), "{b}");
        assert!(b.reason.contains("covers #8"), "{b}");
        // the unsigned tail after the newest checkpoint dropped: the store's counter says so
        let b = run(stored(&c[..8]), 10);
        assert_eq!((b.seq, b.kind), (9, BreakKind::Truncated), "{b}");
    }

    #[test]
    fn a_rewritten_and_rechained_log_fails_at_the_checkpoint() {
        let c = chain(10);
        let k = key(1);
        let cps = ckpts(&c, &[4, 8], &k);
        // Rewrite record 6 and recompute every later hash: the chain itself is consistent again.
        let mut prev = c[4].hash.clone();
        let mut rewritten = c[..5].to_vec();
        for r in &c[5..] {
            let mut e = r.entry.clone();
            if r.seq == 6 {
                e.outcome = "noop".into();
            }
            let n = AuditRecord::chain(r.seq, e, &prev);
            prev = n.hash.clone();
            rewritten.push(n);
        }
        assert_eq!(verify_chain(&rewritten, 1, GENESIS_HASH), Ok(10));
        let b = verify_log(&stored(&rewritten), cps, &k, 10).unwrap_err();
        assert_eq!((b.seq, b.kind), (8, BreakKind::Changed), "{b}");
        assert!(b.reason.contains("records #5..=#8 were rewritten"), "{b}");
    }

    #[test]
    fn forged_or_unverifiable_checkpoints_fail() {
        let c = chain(5);
        let b = verify_log(&stored(&c), ckpts(&c, &[3], &key(2)), &key(1), 5).unwrap_err();
        assert_eq!((b.seq, b.kind), (3, BreakKind::BadCheckpoint), "{b}");
        let b = LogVerifier::new(ckpts(&c, &[3], &key(1)), None).unwrap_err();
        assert_eq!(b.kind, BreakKind::BadCheckpoint);
        assert!(b.reason.contains("no public key"), "{b}");
    }

    #[test]
    fn filter_matches_every_set_field() {
        let mut e = entry(1);
        e.time = "2026-03-01T10:00:00Z".parse().unwrap();
        let all = AuditFilter::default();
        assert!(all.matches(&e));
        let f = AuditFilter {
            subject: Some("s".into()),
            target: Some("t".into()),
            outcome: Some("applied".into()),
            since: Some("2026-03-01T10:00:00Z".parse().unwrap()),
            until: Some("2026-03-01T10:00:01Z".parse().unwrap()),
        };
        assert!(f.matches(&e));
        for g in [
            AuditFilter {
                subject: Some("x".into()),
                ..Default::default()
            },
            AuditFilter {
                target: Some("x".into()),
                ..Default::default()
            },
            AuditFilter {
                outcome: Some("failed".into()),
                ..Default::default()
            },
            AuditFilter {
                since: Some("2026-03-01T10:00:01Z".parse().unwrap()),
                ..Default::default()
            },
            AuditFilter {
                until: Some("2026-03-01T10:00:00Z".parse().unwrap()),
                ..Default::default()
            },
        ] {
            assert!(!g.matches(&e), "{g:?}");
        }
    }
}
