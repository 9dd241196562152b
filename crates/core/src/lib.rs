//! Domain vocabulary of scimflow, with no I/O.
//!
//! Everything that crosses a stage boundary is defined here:
//!
//! * [`Event`] — a decoded change event (CloudEvents 1.0 attributes plus the subject's current state),
//!   produced by the sources (`scimflow-kafka`, the embedded source in the daemon) via [`decode`].
//! * [`Operation`] — one SCIM effect wanted on one target for one subject, produced by the mapping stage
//!   and carried through the durable queue to the delivery stage.
//! * [`Outcome`] / [`ErrorClass`] — the closed set of results that drives retries, dead letters and the
//!   bounded `error_type` metric label.
//! * [`AuditEntry`] / [`AuditRecord`] — what is appended to the hash-chained audit log.
//! * The ports: [`store::Store`] (everything durable) and [`plan::Planner`] (the mapping stage).
//!
//! Invariants: types here are plain data (serde), cheap to clone, and never hold secrets.

pub mod audit;
pub mod decode;
pub mod event;
pub mod op;
pub mod outcome;
pub mod partition;
pub mod plan;
pub mod source;
pub mod store;
pub mod trace;

pub use audit::{AuditCheckpoint, AuditEntry, AuditRecord};
pub use event::{Event, EventOrigin, RejectedEvent, Staleness, SubjectState};
pub use op::{OpKind, Operation, QueuedOp, RetryState, ScheduledOp};
pub use outcome::{ErrorClass, Outcome};
