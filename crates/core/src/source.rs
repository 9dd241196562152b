//! The port between sources (Kafka, the embedded log) and the pipeline.
//!
//! A source reads raw input in order, decodes it, and hands each item to an [`EventSink`]. `accept`
//! does the ordering-sensitive work (stale checks, planning) synchronously, in call order, and
//! returns a future that resolves once everything derived from the input is durably recorded. Only
//! then may the source acknowledge the input (store the Kafka offset, advance the log cursor).

use crate::store::{BoxFuture, Mutation, StoreError};
use crate::{Event, EventOrigin};

/// Why a source could not turn an input into an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The event id, when the input was readable enough to have one.
    pub event_id: Option<String>,
    /// What is wrong, naming the attribute or limit.
    pub reason: String,
    /// The first bytes of the raw input (lossy UTF-8).
    pub excerpt: String,
}

impl Rejection {
    /// Builds a rejection, keeping at most 512 bytes of the raw input as an excerpt.
    pub fn new(event_id: Option<String>, reason: impl Into<String>, raw: &[u8]) -> Self {
        let cut = raw.len().min(512);
        Rejection {
            event_id,
            reason: reason.into(),
            excerpt: String::from_utf8_lossy(&raw[..cut]).into_owned(),
        }
    }
}

/// Where sources deliver decoded input.
pub trait EventSink: Send + Sync + 'static {
    /// Whether the mapping handles this event type.
    fn accepts_type(&self, kind: &str) -> bool;

    /// Largest accepted event, in bytes.
    fn max_event_bytes(&self) -> usize;

    /// Takes one input. `extra` mutations (e.g. a log cursor advance) are committed atomically with
    /// what the input produces. The returned future resolves when all of it is durable.
    fn accept(
        &self,
        origin: EventOrigin,
        input: Result<Event, Rejection>,
        extra: Vec<Mutation>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
}
