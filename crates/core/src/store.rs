//! The storage port: everything durable goes through [`Store`].
//!
//! Writes are expressed as batches of [`Mutation`]s. A batch is applied atomically and is durable
//! (flushed to disk) when [`Store::commit`] resolves; implementations funnel all batches through one
//! writer that group-commits many batches per flush. Reads are synchronous and see every committed batch.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    AuditCheckpoint, AuditEntry, AuditRecord, ErrorClass, Operation, QueuedOp, RejectedEvent,
    ScheduledOp, SubjectState,
};

/// A boxed, sendable future (keeps the port object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One change in a write batch.
// Mutations live only for the moment between building a batch and the writer applying it; boxing the
// large variants would cost an allocation per mutation for no memory benefit.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Records the subject's latest state (and so marks its event as applied).
    PutSubject(SubjectState),
    /// Appends an operation to its target's queue; the writer assigns the queue position.
    Enqueue(Operation),
    /// Removes a finished operation from its target's queue.
    Dequeue { target: String, seq: u64 },
    /// Replaces the queued operation at `seq` in place, keeping its position (a parked retry
    /// records its [`RetryState`](crate::RetryState)); nothing happens if it is no longer queued.
    Requeue { seq: u64, op: Operation },
    /// Binds a subject to its resource id on a target.
    Bind {
        target: String,
        subject: String,
        id: String,
    },
    /// Forgets a binding (the resource is gone from the target).
    Unbind { target: String, subject: String },
    /// Appends to the audit log; the writer numbers and hash-chains it.
    Audit(AuditEntry),
    /// Keeps an input that could not be decoded.
    Reject(RejectedEvent),
    /// Keeps an operation that failed for good.
    DeadLetter(DeadLetter),
    /// Appends raw event bytes to the embedded log; the writer assigns the sequence number.
    LogAppend(Vec<u8>),
    /// Marks embedded-log entries up to and including `upto` as consumed and drops them.
    LogConsumed { upto: u64 },
    /// Holds an operation until its due time; replaces whatever was scheduled for the same
    /// `(op.target, op.subject, slot)`.
    Schedule(ScheduledOp),
    /// Cancels the operation scheduled for `(target, subject, slot)`, if any (idempotent).
    Unschedule {
        target: String,
        subject: String,
        slot: String,
    },
    /// Removes dead letter `seq` (after a redrive or a discard; idempotent).
    RemoveDeadLetter { seq: u64 },
    /// Keeps a signed checkpoint of the audit chain (replaces one stored for the same `seq`).
    AuditCheckpoint(AuditCheckpoint),
}

/// What the writer assigned while applying a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReceipt {
    /// Sequence numbers given to `LogAppend`s, in batch order.
    pub log_seqs: Vec<u64>,
    /// Sequence numbers given to `Audit` entries, in batch order.
    pub audit_seqs: Vec<u64>,
    /// `(target, queue seq)` given to `Enqueue`s, in batch order.
    pub queue_seqs: Vec<(String, u64)>,
}

/// An operation that could not be delivered, with the target's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub op: Operation,
    pub failed_at: DateTime<Utc>,
    pub class: ErrorClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    pub detail: String,
    pub attempts: u32,
    /// For mapping failures: the event, so a redrive can plan it again after the mapping is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<crate::Event>,
}

/// A storage failure. Any of these stops intake: nothing unpersisted is acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage i/o failed: {0}")]
    Io(String),
    #[error("stored data is corrupt at key {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("the store's writer has stopped (after an earlier error or at shutdown)")]
    Closed,
}

/// Everything scimflow keeps on disk.
pub trait Store: Send + Sync + 'static {
    /// Applies `batch` atomically and resolves once it is durable.
    fn commit(&self, batch: Vec<Mutation>)
        -> BoxFuture<'static, Result<CommitReceipt, StoreError>>;

    /// The latest state of `subject`.
    fn subject(&self, subject: &str) -> Result<Option<SubjectState>, StoreError>;

    /// Up to `limit` subject states with a subject id after `after` (byte order of the ids), in
    /// that order: pages through every known subject (reconciliation's desired state).
    fn subject_scan(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SubjectState>, StoreError>;

    /// The resource id `subject` is bound to on `target`.
    fn binding(&self, target: &str, subject: &str) -> Result<Option<String>, StoreError>;

    /// Up to `limit` queued operations of `target` with a position after `after`, in queue order.
    fn queue_scan(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QueuedOp>, StoreError>;

    /// The source positions of up to `limit` queued operations of `target` with a position after
    /// `after`, in queue order, without decoding the rest of each operation (rebuilding the
    /// partition ledger at start reads the whole queue).
    fn queue_origins(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Option<crate::partition::SourcePosition>)>, StoreError> {
        Ok(self
            .queue_scan(target, after, limit)?
            .into_iter()
            .map(|q| (q.seq, q.op.origin))
            .collect())
    }

    /// Number of queued operations of `target`.
    fn queue_len(&self, target: &str) -> Result<u64, StoreError>;

    /// Up to `limit` unconsumed embedded-log entries after `after`.
    fn log_scan(&self, after: Option<u64>, limit: usize)
        -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The last consumed embedded-log sequence number.
    fn log_consumed(&self) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` audit records with a sequence number after `after`.
    fn audit_scan(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditRecord>, StoreError>;

    /// Up to `limit` rejected inputs after position `after`, with their positions.
    fn rejected_scan(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, RejectedEvent)>, StoreError>;

    /// Up to `limit` dead letters after position `after`, with their positions.
    fn dead_letter_scan(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError>;

    /// Up to `limit` scheduled operations due at or before `now`, earliest first.
    fn scheduled_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ScheduledOp>, StoreError>;

    /// Up to `limit` scheduled operations (all, or of one target), earliest first.
    fn scheduled_list(
        &self,
        target: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScheduledOp>, StoreError>;

    /// The operation scheduled for `(target, subject, slot)`, if any.
    fn scheduled_get(
        &self,
        target: &str,
        subject: &str,
        slot: &str,
    ) -> Result<Option<ScheduledOp>, StoreError>;

    /// How many subjects are bound to an account on `target` (the accounts scimflow knows there).
    /// Counts keys: O(bindings).
    fn binding_count(&self, target: &str) -> Result<u64, StoreError>;

    /// The last stored audit record (the chain head), if any.
    fn audit_last(&self) -> Result<Option<AuditRecord>, StoreError>;

    /// The highest audit sequence number ever assigned (a counter written atomically with the
    /// records, so a log whose tail was deleted still says how far it went).
    fn audit_assigned(&self) -> Result<u64, StoreError>;

    /// Up to `limit` stored audit records after `after`, undecoded: `(seq in the key, bytes)`. For
    /// verification, which must name a record whose bytes no longer decode instead of failing.
    fn audit_scan_raw(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Up to `limit` signed audit checkpoints covering a sequence number after `after`, in order.
    fn audit_checkpoints(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditCheckpoint>, StoreError>;
}
