//! SCIM bulk (RFC 7644 §3.7) as a transport: the writes of concurrent operations on one target
//! are collected and sent together as one `POST /Bulk`; each write gets its own result back, as if
//! it had been sent alone, so each operation keeps its own retries, conflict handling and audit.
//!
//! The first writer to arrive *leads*: it waits up to `linger` (less when `max_operations` writes
//! are waiting), sends what is queued — at most `max_operations` and `max_payload_bytes` per
//! request — and keeps sending until nothing is left; the others wait for their result. Every
//! operation carries a `bulkId` (RFC 7644 §3.7.1 requires it on POST; scimflow sets it on all, to
//! match results), results are matched by it, and an operation the response does not mention is
//! retried (a create is then found by lookup, never made twice).
//!
//! A target that refuses the endpoint (404, 405, 501) turns bulk off for the executor: its writes
//! are retried one by one. A 413 halves the operations per request.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

use scimflow_config::BulkConfig;
use scimflow_core::ErrorClass;

use crate::classify::StatusRules;
use crate::client::{CallError, Reply};

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// One write waiting to go out.
struct Item {
    method: Method,
    path: String,
    body: Option<Value>,
    size: usize,
    reply: oneshot::Sender<Result<Reply, CallError>>,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Item>,
    leading: bool,
}

/// One target's bulk sender.
pub struct Bulk {
    linger: Duration,
    max_payload: usize,
    max_operations: AtomicUsize,
    enabled: AtomicBool,
    state: Mutex<State>,
    full: Notify,
    next_id: AtomicU64,
}

/// What a writer does after queuing its write.
pub enum Queued {
    /// Lead: send batches ([`Bulk::take_batch`]) until there are none, then await the result.
    Lead(oneshot::Receiver<Result<Reply, CallError>>),
    /// Await the result.
    Wait(oneshot::Receiver<Result<Reply, CallError>>),
}

/// Writes taken for one bulk request, and its body.
pub struct Batch {
    items: Vec<Item>,
    ids: Vec<String>,
    pub body: Value,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Bulk {
    pub fn new(config: &BulkConfig) -> Self {
        Bulk {
            linger: config.linger,
            max_payload: config.max_payload_bytes,
            max_operations: AtomicUsize::new(config.max_operations.max(1)),
            enabled: AtomicBool::new(true),
            state: Mutex::default(),
            full: Notify::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Whether a request with `method` goes through bulk (writes only, while the target takes it).
    pub fn takes(&self, method: &Method) -> bool {
        *method != Method::GET && self.enabled.load(Ordering::Relaxed)
    }

    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// Resolves when a full batch is waiting.
    pub async fn full(&self) {
        self.full.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a write.
    pub fn queue(&self, method: Method, path: &str, body: Option<&Value>) -> Queued {
        let (tx, rx) = oneshot::channel();
        let size = body.map_or(0, |b| b.to_string().len()) + path.len() + 64;
        let mut st = self.lock();
        st.pending.push_back(Item {
            method,
            path: path.to_owned(),
            body: body.cloned(),
            size,
            reply: tx,
        });
        if st.pending.len() >= self.max_operations.load(Ordering::Relaxed) {
            self.full.notify_waiters();
        }
        if st.leading {
            Queued::Wait(rx)
        } else {
            st.leading = true;
            Queued::Lead(rx)
        }
    }

    /// The next batch to send, or `None` when nothing is queued (the leader then stops leading).
    pub fn take_batch(&self) -> Option<Batch> {
        let mut st = self.lock();
        if st.pending.is_empty() {
            st.leading = false;
            return None;
        }
        let max_ops = self.max_operations.load(Ordering::Relaxed);
        let mut items = Vec::new();
        let mut bytes = 0;
        while let Some(next) = st.pending.front() {
            if items.len() >= max_ops || (!items.is_empty() && bytes + next.size > self.max_payload)
            {
                break;
            }
            bytes += next.size;
            items.push(st.pending.pop_front().expect("front exists"));
        }
        drop(st);
        let ids: Vec<String> = items
            .iter()
            .map(|_| format!("sf{}", self.next_id.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let operations: Vec<Value> = items
            .iter()
            .zip(&ids)
            .map(|(item, id)| {
                let mut op =
                    json!({"method": item.method.as_str(), "path": item.path, "bulkId": id});
                if let Some(b) = &item.body {
                    op["data"] = b.clone();
                }
                op
            })
            .collect();
        let body = json!({"schemas": [BULK_REQUEST], "Operations": operations});
        Some(Batch { items, ids, body })
    }

    /// Fails every queued write and stops leading (the leader was cancelled mid-way).
    pub fn abandon(&self) {
        let mut st = self.lock();
        st.leading = false;
        for item in st.pending.drain(..) {
            let _ = item.reply.send(Err(retry_now(
                "the bulk request carrying this write was cancelled".into(),
            )));
        }
    }

    /// Hands each write of `batch` its result from the bulk response `answer`; returns how many
    /// succeeded, failed with their own status, and got no result.
    pub fn distribute(
        &self,
        batch: Batch,
        answer: Result<Reply, CallError>,
        rules: &StatusRules,
    ) -> Tally {
        let mut tally = Tally::default();
        let reply = match answer {
            Ok(r) => r,
            Err(e) => {
                let refused = matches!(e.status, Some(404 | 405 | 501));
                if refused {
                    tracing::warn!(status = ?e.status, "the target refuses SCIM bulk requests; sending writes one by one");
                    self.enabled.store(false, Ordering::Relaxed);
                } else if e.status == Some(413) {
                    let now = self.max_operations.load(Ordering::Relaxed);
                    self.max_operations
                        .store((now / 2).max(1), Ordering::Relaxed);
                }
                tally.unanswered = batch.items.len();
                for item in batch.items {
                    let r = if refused || e.status == Some(413) {
                        retry_now(format!("the bulk request was refused ({})", e.detail))
                    } else {
                        e.clone()
                    };
                    let _ = item.reply.send(Err(r));
                }
                return tally;
            }
        };
        let mut results: HashMap<String, Value> = reply
            .body
            .as_ref()
            .and_then(|b| b.get("Operations"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| Some((o.get("bulkId")?.as_str()?.to_owned(), o.clone())))
            .collect();
        for (item, id) in batch.items.into_iter().zip(batch.ids) {
            let r = match results.remove(&id) {
                Some(result) => {
                    let r = item_result(&item, &result, rules);
                    match &r {
                        Ok(_) => tally.succeeded += 1,
                        Err(e) if e.status.is_some() => tally.failed += 1,
                        Err(_) => tally.unanswered += 1,
                    }
                    r
                }
                None => {
                    tally.unanswered += 1;
                    Err(retry_now(format!(
                        "the bulk response has no result for {} {}",
                        item.method, item.path
                    )))
                }
            };
            let _ = item.reply.send(r);
        }
        tally
    }
}

/// What came of the operations of one bulk request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub succeeded: usize,
    pub failed: usize,
    pub unanswered: usize,
}

/// A retryable error to be retried at once.
fn retry_now(detail: String) -> CallError {
    CallError {
        class: ErrorClass::Retryable,
        status: None,
        scim_type: None,
        detail,
        retry_after: Some(Duration::ZERO),
    }
}

/// One bulk operation's result as the answer to its write.
fn item_result(item: &Item, result: &Value, rules: &StatusRules) -> Result<Reply, CallError> {
    let status = match result.get("status") {
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    };
    let Some(status) = status else {
        return Err(CallError {
            class: ErrorClass::Retryable,
            status: None,
            scim_type: None,
            detail: format!(
                "the bulk result for {} {} has no valid status",
                item.method, item.path
            ),
            retry_after: None,
        });
    };
    let response = result.get("response").filter(|r| r.is_object()).cloned();
    let location = result
        .get("location")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if (200..300).contains(&status) {
        return Ok(Reply {
            status,
            body: response,
            location,
        });
    }
    let scim_type = response
        .as_ref()
        .and_then(|r| r.get("scimType"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let detail = response
        .as_ref()
        .and_then(|r| r.get("detail"))
        .and_then(Value::as_str)
        .map(|d| d.chars().take(512).collect::<String>());
    let creates = item.method == Method::POST;
    let mut class = rules.classify(status, creates);
    if status == 400 && scim_type.as_deref() == Some("uniqueness") {
        class = ErrorClass::Conflict;
    }
    Err(CallError {
        class,
        status: Some(status),
        scim_type,
        detail: match detail {
            Some(d) => format!("{status}: {d} (in a bulk request)"),
            None => format!("{status} (in a bulk request)"),
        },
        retry_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(max: usize, payload: usize) -> Bulk {
        Bulk::new(&BulkConfig {
            max_operations: max,
            max_payload_bytes: payload,
            linger: Duration::from_millis(5),
        })
    }

    #[test]
    fn the_first_writer_leads_and_batches_respect_both_limits() {
        let b = bulk(2, 1_000_000);
        let body = json!({"userName": "x"});
        assert!(matches!(
            b.queue(Method::POST, "/Users", Some(&body)),
            Queued::Lead(_)
        ));
        for _ in 0..4 {
            assert!(matches!(
                b.queue(Method::PATCH, "/Users/1", Some(&body)),
                Queued::Wait(_)
            ));
        }
        let first = b.take_batch().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first.body["Operations"][0]["method"], "POST");
        assert_eq!(first.body["Operations"][0]["data"], body);
        assert!(first.body["Operations"][1]["bulkId"].is_string());
        assert_eq!(b.take_batch().unwrap().len(), 2);
        assert_eq!(b.take_batch().unwrap().len(), 1);
        assert!(b.take_batch().is_none());
        // Nothing left: the next writer leads again.
        assert!(matches!(
            b.queue(Method::DELETE, "/Users/1", None),
            Queued::Lead(_)
        ));
        // A tight payload limit: one per request (never zero).
        let small = bulk(10, 10);
        let _ = small.queue(Method::POST, "/Users", Some(&body));
        let _ = small.queue(Method::POST, "/Users", Some(&body));
        assert_eq!(small.take_batch().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn results_are_matched_by_bulk_id_and_classified_per_operation() {
        let b = bulk(10, 1_000_000);
        let rx: Vec<_> = ["/Users", "/Users", "/Users/9"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let m = if i < 2 { Method::POST } else { Method::PATCH };
                match b.queue(m, p, Some(&json!({}))) {
                    Queued::Lead(rx) | Queued::Wait(rx) => rx,
                }
            })
            .collect();
        let batch = b.take_batch().unwrap();
        let ids: Vec<String> = batch.ids.clone();
        // Answered out of order; the third one is missing.
        let answer = Reply {
            status: 200,
            body: Some(json!({"Operations": [
                {"method": "POST", "bulkId": ids[1], "status": "409",
                 "response": {"status": "409", "scimType": "uniqueness", "detail": "taken"}},
                {"method": "POST", "bulkId": ids[0], "status": "201",
                 "location": "https://t.example/scim/v2/Users/abc"},
            ]})),
            location: None,
        };
        let tally = b.distribute(batch, Ok(answer), &StatusRules::default());
        assert_eq!(
            tally,
            Tally {
                succeeded: 1,
                failed: 1,
                unanswered: 1
            }
        );
        let mut rx = rx.into_iter();
        let created = rx.next().unwrap().await.unwrap().unwrap();
        assert_eq!(created.status, 201);
        assert_eq!(
            created.location.as_deref(),
            Some("https://t.example/scim/v2/Users/abc")
        );
        let conflict = rx.next().unwrap().await.unwrap().unwrap_err();
        assert_eq!(conflict.class, ErrorClass::Conflict);
        assert_eq!(conflict.scim_type.as_deref(), Some("uniqueness"));
        let missing = rx.next().unwrap().await.unwrap().unwrap_err();
        assert_eq!(missing.class, ErrorClass::Retryable);
    }

    #[tokio::test]
    async fn a_target_without_bulk_turns_it_off_and_every_write_is_retried() {
        let b = bulk(10, 1_000_000);
        let rx = match b.queue(Method::POST, "/Users", None) {
            Queued::Lead(rx) | Queued::Wait(rx) => rx,
        };
        let batch = b.take_batch().unwrap();
        let refused = CallError {
            class: ErrorClass::Permanent,
            status: Some(501),
            scim_type: None,
            detail: "501: Not Implemented".into(),
            retry_after: None,
        };
        b.distribute(batch, Err(refused), &StatusRules::default());
        let e = rx.await.unwrap().unwrap_err();
        assert_eq!(
            (e.class, e.retry_after),
            (ErrorClass::Retryable, Some(Duration::ZERO))
        );
        assert!(!b.takes(&Method::POST), "bulk is off for this target now");
    }
}
