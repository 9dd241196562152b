//! The embedded source: `POST /api/v1/events` appends to a durable local log in the store, and a
//! tailer feeds the log to the pipeline with the same semantics as a Kafka partition — in order, and
//! the log cursor advances atomically with the effects of each event (exactly once in effect).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use scimflow_core::decode::{decode_structured, decode_value, DecodeOptions};
use scimflow_core::source::{EventSink, Rejection};
use scimflow_core::store::{Mutation, Store, StoreError};
use scimflow_core::EventOrigin;

use crate::pipeline::rejection_batch;

/// Outcome of one ingest request.
#[derive(Debug)]
pub struct IngestResult {
    pub accepted: Vec<String>,
    pub rejected: Vec<(usize, Option<String>, String)>,
}

/// Validates a request body (one event or an array) and durably appends every valid event to the log;
/// invalid ones are kept in the rejected-events store. Resolves once all of it is durable.
pub async fn ingest(
    body: &[u8],
    store: &dyn Store,
    sink: &dyn EventSink,
    mapping_version: &str,
) -> Result<IngestResult, IngestError> {
    let max = sink.max_event_bytes();
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| IngestError::Body(format!("request body is not valid JSON: {e}")))?;
    let items = match parsed {
        Value::Array(a) => a,
        other => vec![other],
    };
    if items.is_empty() {
        return Err(IngestError::Body("request body is an empty array".into()));
    }
    let accepts = |t: &str| sink.accepts_type(t);
    let opts = DecodeOptions {
        max_bytes: max,
        accepts_type: &accepts,
    };
    let mut batch = Vec::new();
    let mut result = IngestResult {
        accepted: Vec::new(),
        rejected: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        let raw = serde_json::to_vec(&item).expect("json values serialize");
        let id = scimflow_core::decode::event_id_of(&item);
        let checked = if raw.len() > max {
            Err(format!(
                "event is {} bytes, over the {max}-byte limit",
                raw.len()
            ))
        } else {
            decode_value(item, &opts, None).map_err(|e| e.to_string())
        };
        match checked {
            Ok(ev) => {
                result.accepted.push(ev.id);
                batch.push(Mutation::LogAppend(raw));
            }
            Err(reason) => {
                let origin = EventOrigin::HttpIngest { index };
                batch.extend(rejection_batch(
                    origin,
                    Rejection::new(id.clone(), reason.clone(), &raw),
                    mapping_version,
                ));
                result.rejected.push((index, id, reason));
            }
        }
    }
    store.commit(batch).await.map_err(IngestError::Store)?;
    Ok(result)
}

/// Why an ingest request failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Body(String),
    #[error("events could not be stored: {0}")]
    Store(StoreError),
}

/// A SCIM-style error body naming every rejected event.
pub fn rejection_body(r: &IngestResult) -> Value {
    let detail = r
        .rejected
        .iter()
        .map(|(i, id, reason)| match id {
            Some(id) => format!("event #{i} (id {id}): {reason}"),
            None => format!("event #{i}: {reason}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "400",
        "scimType": "invalidValue",
        "detail": format!("{} of {} events rejected: {detail}", r.rejected.len(), r.rejected.len() + r.accepted.len()),
        "accepted": r.accepted.len(),
        "rejected": r.rejected.iter().map(|(i, id, reason)| json!({"index": i, "id": id, "reason": reason})).collect::<Vec<_>>(),
    })
}

/// Feeds the embedded log to the pipeline until `shutdown`.
pub async fn tail(
    store: Arc<dyn Store>,
    sink: Arc<dyn EventSink>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let mut after = store.log_consumed()?;
    loop {
        let entries = store.log_scan(after, 512)?;
        if entries.is_empty() {
            tokio::select! {
                _ = wake.notified() => continue,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        let mut last = None;
        for (seq, bytes) in entries {
            let accepts = |t: &str| sink.accepts_type(t);
            let opts = DecodeOptions {
                max_bytes: usize::MAX,
                accepts_type: &accepts,
            };
            // Entries were validated on the way in; a mapping reload may since have dropped a type.
            let input = decode_structured(&bytes, &opts, None)
                .map_err(|e| Rejection::new(None, e.to_string(), &bytes));
            last = Some(sink.accept(
                EventOrigin::Embedded { seq },
                input,
                vec![Mutation::LogConsumed { upto: seq }],
            ));
            after = Some(seq);
            if shutdown.is_cancelled() {
                break;
            }
        }
        // Commits complete in submission order: the last one resolving means all did.
        if let Some(done) = last {
            done.await?;
        }
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}
