//! The behaviour every [`Store`] engine must have, written against the port only.
//!
//! Each function creates its own temporary directory, opens a store there with `make`, and panics with
//! a message naming the broken behaviour. Reopening is done by dropping every handle and calling `make`
//! again on the same directory, so `make` must open existing data (and the engine must release the
//! directory when its last handle is dropped). Functions that spawn tasks need a tokio runtime.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn conformance() {
//!     scimflow_store::conformance::run_all(|p| MyStore::open(p).unwrap()).await;
//! }
//! ```

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use scimflow_core::audit::{verify_chain, GENESIS_HASH};
use scimflow_core::store::{DeadLetter, Mutation, Store};
use scimflow_core::{
    AuditEntry, AuditRecord, ErrorClass, EventOrigin, OpKind, Operation, RejectedEvent,
    ScheduledOp, SubjectState,
};

/// Runs every behaviour of this module in turn.
pub async fn run_all<S: Store + Clone>(make: impl Fn(&Path) -> S) {
    atomic_batch(&make).await;
    receipts_in_batch_order(&make).await;
    queue_order_and_isolation(&make).await;
    dequeue_is_idempotent(&make).await;
    requeue_in_place(&make).await;
    bindings(&make).await;
    subjects(&make).await;
    subject_scan_pages(&make).await;
    audit_numbering_and_chain(&make).await;
    log_append_and_consume(&make).await;
    counters_survive_reopen(&make).await;
    rejected_and_dead_letter_scans(&make).await;
    concurrent_committers(&make).await;
    schedule_replace_and_cancel(&make).await;
    scheduled_reads(&make).await;
    remove_dead_letter(&make).await;
    audit_checkpoints_and_head(&make).await;
}

fn time() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().expect("valid timestamp")
}

/// An operation for `target` whose id is `id`.
fn op(target: &str, id: &str) -> Operation {
    Operation {
        id: id.into(),
        target: target.into(),
        subject: format!("subject-of-{id}"),
        event_id: format!("event-of-{id}"),
        event_kind: "hr.worker.updated".into(),
        event_time: Some(time()),
        planned_at: time(),
        kind: OpKind::Upsert,
        resource: serde_json::json!({ "userName": id }),
        matching: Vec::new(),
        mapping_version: "m1".into(),
        traceparent: None,
        group: None,
        create_only: Vec::new(),
        patch: None,
        manager_subject: None,
        alternatives: Default::default(),
        origin: None,
        retry: None,
    }
}

fn entry(event_id: &str) -> AuditEntry {
    AuditEntry {
        time: time(),
        outcome: "applied".into(),
        event_id: event_id.into(),
        subject: "E1".into(),
        target: "crm".into(),
        op_id: format!("op-{event_id}"),
        operation: "upsert".into(),
        requests: vec!["POST /Users".into()],
        status: Some(201),
        error_class: None,
        scim_type: None,
        detail: None,
        attempts: 1,
        latency_ms: 5,
        attributes: vec!["userName".into()],
        mapping_version: "m1".into(),
        trace_id: None,
    }
}

fn state(subject: &str, event_id: &str) -> SubjectState {
    SubjectState {
        subject: subject.into(),
        last_event_id: event_id.into(),
        last_time: Some(time()),
        last_kind: "hr.worker.updated".into(),
        data: serde_json::json!({ "event": event_id }),
        recent_event_ids: vec![event_id.into()],
        mapping_version: String::new(),
        position: None,
    }
}

fn rejected(reason: &str) -> RejectedEvent {
    RejectedEvent {
        at: time(),
        origin: EventOrigin::Embedded { seq: 1 },
        event_id: None,
        reason: reason.into(),
        excerpt: "{not json".into(),
    }
}

fn dead_letter(id: &str) -> DeadLetter {
    DeadLetter {
        op: op("crm", id),
        failed_at: time(),
        class: ErrorClass::Permanent,
        status: Some(400),
        scim_type: Some("invalidValue".into()),
        detail: "bad".into(),
        attempts: 3,
        event: None,
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("conformance: creating a temporary directory")
}

async fn commit<S: Store>(store: &S, batch: Vec<Mutation>) -> scimflow_core::store::CommitReceipt {
    store
        .commit(batch)
        .await
        .expect("conformance: commit should succeed")
}

fn all_audit<S: Store>(store: &S) -> Vec<AuditRecord> {
    store.audit_scan(None, usize::MAX).expect("audit_scan")
}

/// A batch with every kind of mutation is visible as a whole once its commit resolves.
pub async fn atomic_batch<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    let receipt = commit(
        &store,
        vec![
            Mutation::PutSubject(state("E1", "ev1")),
            Mutation::Enqueue(op("crm", "o1")),
            Mutation::Bind {
                target: "crm".into(),
                subject: "E1".into(),
                id: "res-1".into(),
            },
            Mutation::Audit(entry("ev1")),
            Mutation::Reject(rejected("bad json")),
            Mutation::DeadLetter(dead_letter("o0")),
            Mutation::LogAppend(b"raw".to_vec()),
        ],
    )
    .await;
    assert_eq!(
        receipt.queue_seqs.len(),
        1,
        "atomic batch: one queue seq per Enqueue"
    );
    assert_eq!(
        receipt.audit_seqs,
        vec![1],
        "atomic batch: first audit record is #1"
    );
    assert_eq!(
        receipt.log_seqs.len(),
        1,
        "atomic batch: one log seq per LogAppend"
    );
    assert_eq!(store.subject("E1").unwrap(), Some(state("E1", "ev1")));
    let q = store.queue_scan("crm", None, 10).unwrap();
    assert_eq!(
        q.len(),
        1,
        "atomic batch: the enqueued operation is visible"
    );
    assert_eq!(
        (q[0].seq, &q[0].op),
        (receipt.queue_seqs[0].1, &op("crm", "o1"))
    );
    assert_eq!(store.queue_len("crm").unwrap(), 1);
    assert_eq!(
        store.binding("crm", "E1").unwrap().as_deref(),
        Some("res-1")
    );
    assert_eq!(all_audit(&store).len(), 1);
    assert_eq!(store.rejected_scan(None, 10).unwrap().len(), 1);
    assert_eq!(store.dead_letter_scan(None, 10).unwrap().len(), 1);
    assert_eq!(
        store.log_scan(None, 10).unwrap(),
        vec![(receipt.log_seqs[0], b"raw".to_vec())]
    );
    // An empty batch is a valid (durable) no-op.
    assert_eq!(commit(&store, Vec::new()).await, Default::default());
}

/// Receipts list assigned numbers in batch order, increasing, across batches and targets.
pub async fn receipts_in_batch_order<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    let r1 = commit(
        &store,
        vec![
            Mutation::Enqueue(op("a", "1")),
            Mutation::LogAppend(b"x".to_vec()),
            Mutation::Audit(entry("e1")),
            Mutation::Enqueue(op("b", "2")),
            Mutation::Audit(entry("e2")),
            Mutation::LogAppend(b"y".to_vec()),
            Mutation::Enqueue(op("a", "3")),
        ],
    )
    .await;
    let targets: Vec<&str> = r1.queue_seqs.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        targets,
        ["a", "b", "a"],
        "receipts: queue seqs in batch order"
    );
    let increasing = |v: &[u64]| v.windows(2).all(|w| w[0] < w[1]);
    let qs: Vec<u64> = r1.queue_seqs.iter().map(|(_, s)| *s).collect();
    assert!(
        increasing(&qs),
        "receipts: queue seqs increase within a batch: {qs:?}"
    );
    assert!(
        increasing(&r1.log_seqs),
        "receipts: log seqs increase: {:?}",
        r1.log_seqs
    );
    assert_eq!(
        r1.audit_seqs,
        vec![1, 2],
        "receipts: audit seqs in batch order"
    );
    let r2 = commit(
        &store,
        vec![
            Mutation::LogAppend(b"z".to_vec()),
            Mutation::Enqueue(op("a", "4")),
            Mutation::Audit(entry("e3")),
        ],
    )
    .await;
    assert!(
        r2.log_seqs[0] > r1.log_seqs[1],
        "receipts: log seqs increase across batches"
    );
    assert!(
        r2.queue_seqs[0].1 > qs[2],
        "receipts: queue seqs increase across batches"
    );
    assert_eq!(r2.audit_seqs, vec![3]);
    let log: Vec<(u64, Vec<u8>)> = store.log_scan(None, 10).unwrap();
    let want = vec![
        (r1.log_seqs[0], b"x".to_vec()),
        (r1.log_seqs[1], b"y".to_vec()),
        (r2.log_seqs[0], b"z".to_vec()),
    ];
    assert_eq!(log, want, "receipts: log seqs match log_scan");
    let a: Vec<(u64, String)> = store
        .queue_scan("a", None, 10)
        .unwrap()
        .into_iter()
        .map(|q| (q.seq, q.op.id))
        .collect();
    assert_eq!(
        a,
        vec![
            (qs[0], "1".into()),
            (qs[2], "3".into()),
            (r2.queue_seqs[0].1, "4".into())
        ],
        "receipts: queue seqs match queue_scan"
    );
}

/// Each target's queue is FIFO by position, pages with `after`, and never shows other targets' ops.
pub async fn queue_order_and_isolation<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    // "crm" is a prefix of "crm2": their queues must still be separate.
    for i in 0..10 {
        commit(
            &store,
            vec![
                Mutation::Enqueue(op("crm", &format!("c{i}"))),
                Mutation::Enqueue(op("crm2", &format!("d{i}"))),
            ],
        )
        .await;
    }
    commit(&store, vec![Mutation::Enqueue(op("hr", "h0"))]).await;
    assert_eq!(store.queue_len("crm").unwrap(), 10);
    assert_eq!(store.queue_len("crm2").unwrap(), 10);
    assert_eq!(store.queue_len("hr").unwrap(), 1);
    assert_eq!(store.queue_len("unknown").unwrap(), 0);
    assert!(store.queue_scan("unknown", None, 10).unwrap().is_empty());
    assert!(
        store.queue_scan("cr", None, 10).unwrap().is_empty(),
        "queue: prefix target is empty"
    );

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.queue_scan("crm", after, 3).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3, "queue: limit is respected");
        after = Some(page.last().unwrap().seq);
        seen.extend(page);
    }
    let ids: Vec<String> = seen.iter().map(|q| q.op.id.clone()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    assert_eq!(
        ids, want,
        "queue: FIFO order, only this target's operations"
    );
    assert!(
        seen.windows(2).all(|w| w[0].seq < w[1].seq),
        "queue: positions increase"
    );
    assert!(seen.iter().all(|q| q.op.target == "crm"));

    // Dequeue the head of one target: the other is untouched.
    commit(
        &store,
        vec![Mutation::Dequeue {
            target: "crm".into(),
            seq: seen[0].seq,
        }],
    )
    .await;
    assert_eq!(store.queue_len("crm").unwrap(), 9);
    assert_eq!(store.queue_len("crm2").unwrap(), 10);
    let head = &store.queue_scan("crm", None, 1).unwrap()[0];
    assert_eq!(head.op.id, "c1", "queue: dequeued head is gone");
    assert_eq!(
        store.queue_scan("crm", Some(u64::MAX), 10).unwrap(),
        Vec::new()
    );
    assert_eq!(store.queue_scan("crm", None, 0).unwrap(), Vec::new());
}

/// A requeue overwrites the entry at its position (order and count unchanged), survives a reopen,
/// and never brings back an entry already dequeued (in an earlier batch or the same one).
pub async fn requeue_in_place<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    let r = commit(
        &store,
        vec![
            Mutation::Enqueue(op("t", "1")),
            Mutation::Enqueue(op("t", "2")),
            Mutation::Enqueue(op("t", "3")),
        ],
    )
    .await;
    let (s1, s2, s3) = (r.queue_seqs[0].1, r.queue_seqs[1].1, r.queue_seqs[2].1);
    let mut parked = op("t", "1");
    parked.origin = Some(scimflow_core::partition::SourcePosition {
        topic: "hr".into(),
        partition: 2,
        offset: 41,
    });
    parked.retry = Some(scimflow_core::RetryState {
        attempts: 3,
        parks: 1,
        first_failure: time(),
        next_try: time() + chrono::Duration::seconds(30),
        last_error: "retryable 503".into(),
    });
    commit(
        &store,
        vec![Mutation::Requeue {
            seq: s1,
            op: parked.clone(),
        }],
    )
    .await;
    let q = store.queue_scan("t", None, 10).unwrap();
    assert_eq!(q.len(), 3, "requeue: the count is unchanged");
    assert_eq!(store.queue_len("t").unwrap(), 3);
    assert_eq!(q[0].seq, s1, "requeue: the position is kept");
    assert_eq!(q[0].op, parked, "requeue: the entry is replaced");
    assert_eq!(
        store.queue_origins("t", None, 10).unwrap(),
        vec![(s1, parked.origin.clone()), (s2, None), (s3, None)],
        "queue_origins: the positions alone, in queue order"
    );
    assert_eq!(
        store.queue_origins("t", Some(s1), 1).unwrap(),
        vec![(s2, None)]
    );
    // Dequeued earlier, or dequeued then requeued in one batch: stays gone.
    commit(
        &store,
        vec![Mutation::Dequeue {
            target: "t".into(),
            seq: s2,
        }],
    )
    .await;
    commit(
        &store,
        vec![
            Mutation::Requeue {
                seq: s2,
                op: op("t", "2"),
            },
            Mutation::Dequeue {
                target: "t".into(),
                seq: s3,
            },
            Mutation::Requeue {
                seq: s3,
                op: op("t", "3"),
            },
        ],
    )
    .await;
    assert_eq!(
        store.queue_len("t").unwrap(),
        1,
        "requeue: never resurrects"
    );
    drop(store);
    let store = make(dir.path());
    let q = store.queue_scan("t", None, 10).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].op, parked, "requeue: durable across a reopen");
}

/// Dequeuing a missing or already-dequeued position succeeds and leaves the count right.
pub async fn dequeue_is_idempotent<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    let r = commit(
        &store,
        vec![
            Mutation::Enqueue(op("t", "1")),
            Mutation::Enqueue(op("t", "2")),
        ],
    )
    .await;
    let (s1, s2) = (r.queue_seqs[0].1, r.queue_seqs[1].1);
    let deq = |seq| Mutation::Dequeue {
        target: "t".into(),
        seq,
    };
    commit(&store, vec![deq(s1)]).await;
    commit(&store, vec![deq(s1)]).await;
    commit(&store, vec![deq(s1), deq(s1), deq(9_999_999)]).await;
    commit(
        &store,
        vec![Mutation::Dequeue {
            target: "never-seen".into(),
            seq: 1,
        }],
    )
    .await;
    assert_eq!(
        store.queue_len("t").unwrap(),
        1,
        "dequeue: repeated dequeues count once"
    );
    assert_eq!(store.queue_len("never-seen").unwrap(), 0);
    assert_eq!(store.queue_scan("t", None, 10).unwrap()[0].seq, s2);

    // Enqueue and dequeue in one batch, and in concurrently submitted batches.
    let r = commit(&store, vec![Mutation::Enqueue(op("t", "3"))]).await;
    let s3 = r.queue_seqs[0].1;
    let (a, b) = tokio::join!(store.commit(vec![deq(s3)]), store.commit(vec![deq(s3)]));
    a.expect("dequeue commit");
    b.expect("dequeue commit");
    assert_eq!(
        store.queue_len("t").unwrap(),
        1,
        "dequeue: concurrent duplicates count once"
    );
    commit(&store, vec![deq(s2)]).await;
    assert_eq!(store.queue_len("t").unwrap(), 0);
    assert!(store.queue_scan("t", None, 10).unwrap().is_empty());

    // The count agrees with the data after a reopen.
    drop(store);
    let store = make(dir.path());
    assert_eq!(
        store.queue_len("t").unwrap(),
        0,
        "dequeue: count after reopen"
    );
}

/// Bindings are per (target, subject), can be replaced and removed.
pub async fn bindings<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    let bind = |t: &str, s: &str, id: &str| Mutation::Bind {
        target: t.into(),
        subject: s.into(),
        id: id.into(),
    };
    assert_eq!(store.binding("crm", "E1").unwrap(), None);
    commit(
        &store,
        vec![
            bind("crm", "E1", "a"),
            bind("crm2", "E1", "b"),
            bind("crm", "E2", "c"),
        ],
    )
    .await;
    assert_eq!(store.binding("crm", "E1").unwrap().as_deref(), Some("a"));
    assert_eq!(store.binding("crm2", "E1").unwrap().as_deref(), Some("b"));
    assert_eq!(store.binding("crm", "E2").unwrap().as_deref(), Some("c"));
    assert_eq!(
        store.binding("cr", "mE1").unwrap(),
        None,
        "bindings: keys are unambiguous"
    );
    commit(&store, vec![bind("crm", "E1", "a2")]).await;
    assert_eq!(
        store.binding("crm", "E1").unwrap().as_deref(),
        Some("a2"),
        "bindings: rebind"
    );
    commit(
        &store,
        vec![
            Mutation::Unbind {
                target: "crm".into(),
                subject: "E1".into(),
            },
            Mutation::Unbind {
                target: "crm".into(),
                subject: "missing".into(),
            },
        ],
    )
    .await;
    assert_eq!(
        store.binding("crm", "E1").unwrap(),
        None,
        "bindings: unbind"
    );
    assert_eq!(store.binding("crm2", "E1").unwrap().as_deref(), Some("b"));
    // Bind then unbind in one batch: the later mutation wins.
    commit(
        &store,
        vec![
            bind("crm", "E3", "x"),
            Mutation::Unbind {
                target: "crm".into(),
                subject: "E3".into(),
            },
        ],
    )
    .await;
    assert_eq!(
        store.binding("crm", "E3").unwrap(),
        None,
        "bindings: last mutation wins"
    ); // Counted per target: crm holds E2 only now, crm2 holds E1; a target that is a prefix of
       // another counts nothing of it.
    assert_eq!(store.binding_count("crm").unwrap(), 1, "bindings: count");
    assert_eq!(store.binding_count("crm2").unwrap(), 1, "bindings: count");
    assert_eq!(
        store.binding_count("cr").unwrap(),
        0,
        "bindings: count by exact target"
    );
}

/// The latest `PutSubject` wins; unknown subjects are `None`.
pub async fn subjects<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    assert_eq!(store.subject("E1").unwrap(), None);
    commit(&store, vec![Mutation::PutSubject(state("E1", "a"))]).await;
    commit(
        &store,
        vec![
            Mutation::PutSubject(state("E1", "b")),
            Mutation::PutSubject(state("E2", "c")),
            Mutation::PutSubject(state("E1", "d")),
        ],
    )
    .await;
    assert_eq!(
        store.subject("E1").unwrap(),
        Some(state("E1", "d")),
        "subjects: latest wins"
    );
    assert_eq!(store.subject("E2").unwrap(), Some(state("E2", "c")));
    assert_eq!(store.subject("E").unwrap(), None);
}

/// `subject_scan` returns every subject once, in id order, paging with `after` (also after an id that
/// is a prefix of others), and only subjects (not other keys).
pub async fn subject_scan_pages<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    assert!(store.subject_scan(None, 10).unwrap().is_empty());
    let ids = ["E1", "E10", "E2", "E1\u{e9}", "A"];
    let mut batch: Vec<Mutation> = ids
        .iter()
        .map(|id| Mutation::PutSubject(state(id, "a")))
        .collect();
    batch.push(Mutation::Bind {
        target: "crm".into(),
        subject: "E1".into(),
        id: "x".into(),
    });
    batch.push(Mutation::Enqueue(op("crm", "o1")));
    commit(&store, batch).await;
    commit(&store, vec![Mutation::PutSubject(state("E2", "b"))]).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.subject_scan(after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2, "subject_scan: more than `limit` states");
        let Some(last) = page.last() else { break };
        after = Some(last.subject.clone());
        seen.extend(page);
    }
    let got: Vec<&str> = seen.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(
        got,
        vec!["A", "E1", "E10", "E1\u{e9}", "E2"],
        "subject_scan: every subject once, in byte order of the ids"
    );
    assert_eq!(seen[4], state("E2", "b"), "subject_scan: the latest state");
    assert_eq!(
        store.subject_scan(Some("E1"), 10).unwrap().len(),
        3,
        "subject_scan: `after` excludes that id only"
    );
}

/// Audit records are numbered from 1 without gaps, chained from the genesis hash, and page with `after`.
pub async fn audit_numbering_and_chain<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    assert!(all_audit(&store).is_empty());
    let mut seqs = Vec::new();
    for i in 0..5 {
        let batch = (0..i)
            .map(|j| Mutation::Audit(entry(&format!("e{i}-{j}"))))
            .collect();
        seqs.extend(commit(&store, batch).await.audit_seqs);
    }
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<u64>>(),
        "audit: numbered 1.. without gaps"
    );
    let records = all_audit(&store);
    assert_eq!(
        verify_chain(&records, 1, GENESIS_HASH),
        Ok(10),
        "audit: chain verifies"
    );
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    assert_eq!(
        records[2].entry.event_id, "e2-1",
        "audit: stored in commit order"
    );
    let page = store.audit_scan(Some(4), 3).unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![5, 6, 7],
        "audit: paging"
    );
    assert_eq!(
        verify_chain(&page, 5, &records[3].hash),
        Ok(3),
        "audit: a page verifies from the previous hash"
    );
}

/// Log entries come back in order; `LogConsumed` drops entries up to and including `upto`.
pub async fn log_append_and_consume<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    assert_eq!(
        store.log_consumed().unwrap(),
        None,
        "log: no cursor initially"
    );
    assert!(store.log_scan(None, 10).unwrap().is_empty());
    let mut seqs = Vec::new();
    for i in 0..5u8 {
        seqs.extend(
            commit(&store, vec![Mutation::LogAppend(vec![i])])
                .await
                .log_seqs,
        );
    }
    let all = store.log_scan(None, 10).unwrap();
    assert_eq!(all.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs);
    assert_eq!(
        all.iter().map(|(_, b)| b[0]).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(
        store.log_scan(Some(seqs[1]), 2).unwrap(),
        all[2..4].to_vec(),
        "log: paging"
    );

    commit(&store, vec![Mutation::LogConsumed { upto: seqs[1] }]).await;
    assert_eq!(
        store.log_consumed().unwrap(),
        Some(seqs[1]),
        "log: cursor recorded"
    );
    assert_eq!(
        store.log_scan(None, 10).unwrap(),
        all[2..].to_vec(),
        "log: consumed entries dropped"
    );

    // Append and consume in one batch.
    let r = commit(
        &store,
        vec![
            Mutation::LogAppend(vec![5]),
            Mutation::LogConsumed { upto: seqs[3] },
            Mutation::LogAppend(vec![6]),
        ],
    )
    .await;
    let rest: Vec<u8> = store
        .log_scan(None, 10)
        .unwrap()
        .iter()
        .map(|(_, b)| b[0])
        .collect();
    assert_eq!(rest, vec![4, 5, 6], "log: consume within a batch");
    commit(
        &store,
        vec![Mutation::LogConsumed {
            upto: r.log_seqs[1],
        }],
    )
    .await;
    assert!(
        store.log_scan(None, 10).unwrap().is_empty(),
        "log: all consumed"
    );
    assert_eq!(store.log_consumed().unwrap(), Some(r.log_seqs[1]));
    let next = commit(&store, vec![Mutation::LogAppend(vec![7])])
        .await
        .log_seqs[0];
    assert!(
        next > r.log_seqs[1],
        "log: seqs keep increasing after a full consume"
    );
}

/// After a reopen, every counter continues above what was assigned before, even if the entries that
/// carried the highest numbers were removed, and the audit chain continues unbroken.
pub async fn counters_survive_reopen<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    let r = commit(
        &store,
        vec![
            Mutation::Enqueue(op("t", "1")),
            Mutation::Enqueue(op("t", "2")),
            Mutation::Enqueue(op("u", "3")),
            Mutation::LogAppend(b"a".to_vec()),
            Mutation::LogAppend(b"b".to_vec()),
            Mutation::Audit(entry("e1")),
            Mutation::Audit(entry("e2")),
            Mutation::Reject(rejected("r1")),
            Mutation::DeadLetter(dead_letter("d1")),
        ],
    )
    .await;
    let (rej_before, dl_before) = (
        store.rejected_scan(None, 10).unwrap()[0].0,
        store.dead_letter_scan(None, 10).unwrap()[0].0,
    );
    // Remove the entries carrying the highest queue and log numbers.
    commit(
        &store,
        vec![
            Mutation::Dequeue {
                target: "t".into(),
                seq: r.queue_seqs[1].1,
            },
            Mutation::Dequeue {
                target: "u".into(),
                seq: r.queue_seqs[2].1,
            },
            Mutation::LogConsumed {
                upto: r.log_seqs[1],
            },
        ],
    )
    .await;
    drop(store);

    let store = make(dir.path());
    assert_eq!(
        store.queue_len("t").unwrap(),
        1,
        "reopen: queue count recovered"
    );
    assert_eq!(store.queue_len("u").unwrap(), 0);
    assert_eq!(
        store.log_consumed().unwrap(),
        Some(r.log_seqs[1]),
        "reopen: log cursor kept"
    );
    let r2 = commit(
        &store,
        vec![
            Mutation::Enqueue(op("u", "4")),
            Mutation::LogAppend(b"c".to_vec()),
            Mutation::Audit(entry("e3")),
            Mutation::Reject(rejected("r2")),
            Mutation::DeadLetter(dead_letter("d2")),
        ],
    )
    .await;
    assert!(
        r2.queue_seqs[0].1 > r.queue_seqs[2].1,
        "reopen: queue seq went backwards ({} after {})",
        r2.queue_seqs[0].1,
        r.queue_seqs[2].1
    );
    assert!(
        r2.log_seqs[0] > r.log_seqs[1],
        "reopen: log seq went backwards ({} after {})",
        r2.log_seqs[0],
        r.log_seqs[1]
    );
    assert_eq!(r2.audit_seqs, vec![3], "reopen: audit numbering continues");
    assert_eq!(
        verify_chain(&all_audit(&store), 1, GENESIS_HASH),
        Ok(3),
        "reopen: chain continues"
    );
    let rej = store.rejected_scan(None, 10).unwrap();
    assert!(
        rej.len() == 2 && rej[1].0 > rej_before,
        "reopen: rejected positions increase"
    );
    let dl = store.dead_letter_scan(None, 10).unwrap();
    assert!(
        dl.len() == 2 && dl[1].0 > dl_before,
        "reopen: dead-letter positions increase"
    );
    assert_eq!(store.queue_len("u").unwrap(), 1);
}

/// Rejected inputs and dead letters come back in order with increasing positions and page with `after`.
pub async fn rejected_and_dead_letter_scans<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    assert!(store.rejected_scan(None, 10).unwrap().is_empty());
    assert!(store.dead_letter_scan(None, 10).unwrap().is_empty());
    for i in 0..3 {
        commit(
            &store,
            vec![
                Mutation::Reject(rejected(&format!("r{i}"))),
                Mutation::DeadLetter(dead_letter(&format!("d{i}"))),
                Mutation::Reject(rejected(&format!("r{i}b"))),
            ],
        )
        .await;
    }
    let rej = store.rejected_scan(None, 100).unwrap();
    let reasons: Vec<&str> = rej.iter().map(|(_, r)| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["r0", "r0b", "r1", "r1b", "r2", "r2b"],
        "rejected: in commit order"
    );
    assert!(
        rej.windows(2).all(|w| w[0].0 < w[1].0),
        "rejected: positions increase"
    );
    assert_eq!(rej[0].1, rejected("r0"), "rejected: round-trips");
    assert_eq!(
        store.rejected_scan(Some(rej[1].0), 2).unwrap(),
        rej[2..4].to_vec()
    );
    let dl = store.dead_letter_scan(None, 100).unwrap();
    let ids: Vec<&str> = dl.iter().map(|(_, d)| d.op.id.as_str()).collect();
    assert_eq!(ids, ["d0", "d1", "d2"], "dead letters: in commit order");
    assert_eq!(dl[1].1, dead_letter("d1"), "dead letters: round-trip");
    assert_eq!(
        store.dead_letter_scan(Some(dl[0].0), 1).unwrap(),
        dl[1..2].to_vec()
    );
}

/// 50 tasks committing at once all get receipts, with distinct numbers, and everything is there.
pub async fn concurrent_committers<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .commit(vec![
                        Mutation::Enqueue(op("t", &format!("o{i}"))),
                        Mutation::Audit(entry(&format!("e{i}"))),
                        Mutation::LogAppend(format!("{i}").into_bytes()),
                        Mutation::PutSubject(state(&format!("S{i}"), &format!("e{i}"))),
                    ])
                    .await
            })
        })
        .collect();
    let mut queue_seqs = HashSet::new();
    let mut audit_seqs = HashSet::new();
    for t in tasks {
        let r = t
            .await
            .expect("committer task")
            .expect("concurrent commit should succeed");
        assert!(
            queue_seqs.insert(r.queue_seqs[0].1),
            "concurrent: duplicate queue seq"
        );
        assert!(
            audit_seqs.insert(r.audit_seqs[0]),
            "concurrent: duplicate audit seq"
        );
    }
    assert_eq!(
        audit_seqs,
        (1..=50).collect(),
        "concurrent: audit seqs are 1..=50"
    );
    assert_eq!(store.queue_len("t").unwrap(), 50);
    assert_eq!(store.queue_scan("t", None, 100).unwrap().len(), 50);
    assert_eq!(store.log_scan(None, 100).unwrap().len(), 50);
    let records = all_audit(&store);
    assert_eq!(
        verify_chain(&records, 1, GENESIS_HASH),
        Ok(50),
        "concurrent: chain verifies"
    );
    for i in 0..50 {
        assert!(store.subject(&format!("S{i}")).unwrap().is_some());
    }
    // Each commit's audit record and queue entry belong together (same batch).
    for q in store.queue_scan("t", None, 100).unwrap() {
        let n = &q.op.id[1..];
        assert!(records.iter().any(|r| r.entry.event_id == format!("e{n}")));
    }
    drop(store);
    let store = make(dir.path());
    assert_eq!(
        store.queue_len("t").unwrap(),
        50,
        "concurrent: durable across reopen"
    );
    assert_eq!(verify_chain(&all_audit(&store), 1, GENESIS_HASH), Ok(50));
}

fn at(day: u32) -> DateTime<Utc> {
    format!("2026-02-{day:02}T09:00:00Z")
        .parse()
        .expect("valid timestamp")
}

/// An operation of `subject` on `target`, scheduled in `slot` for 2026-02-`day`.
fn scheduled(target: &str, subject: &str, slot: &str, day: u32) -> ScheduledOp {
    let mut op = op(target, &format!("{target}-{subject}-{slot}-{day}"));
    op.subject = subject.into();
    ScheduledOp {
        due: at(day),
        slot: slot.into(),
        op,
    }
}

fn unschedule(target: &str, subject: &str, slot: &str) -> Mutation {
    Mutation::Unschedule {
        target: target.into(),
        subject: subject.into(),
        slot: slot.into(),
    }
}

/// Scheduling again in the same `(target, subject, slot)` moves the operation; other slots,
/// subjects and targets are independent; `Unschedule` cancels one and is idempotent.
pub async fn schedule_replace_and_cancel<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    assert_eq!(store.scheduled_get("crm", "E1", "hire").unwrap(), None);
    commit(
        &store,
        vec![
            Mutation::Schedule(scheduled("crm", "E1", "hire", 10)),
            Mutation::Schedule(scheduled("crm", "E1", "leave", 20)),
            Mutation::Schedule(scheduled("crm", "E2", "hire", 11)),
            Mutation::Schedule(scheduled("crm2", "E1", "hire", 12)),
        ],
    )
    .await;
    assert_eq!(
        store.scheduled_get("crm", "E1", "hire").unwrap(),
        Some(scheduled("crm", "E1", "hire", 10)),
        "schedule: round-trips"
    );
    // Move: same slot, new due time and operation.
    commit(
        &store,
        vec![Mutation::Schedule(scheduled("crm", "E1", "hire", 5))],
    )
    .await;
    assert_eq!(
        store.scheduled_get("crm", "E1", "hire").unwrap(),
        Some(scheduled("crm", "E1", "hire", 5)),
        "schedule: same slot replaces"
    );
    assert_eq!(
        store.scheduled_list(None, 100).unwrap().len(),
        4,
        "schedule: a move does not add an entry"
    );
    assert_eq!(
        store.scheduled_get("crm", "E1", "leave").unwrap(),
        Some(scheduled("crm", "E1", "leave", 20)),
        "schedule: other slot untouched"
    );
    assert_eq!(
        store.scheduled_get("crm2", "E1", "hire").unwrap(),
        Some(scheduled("crm2", "E1", "hire", 12)),
        "schedule: other target untouched"
    );
    assert_eq!(
        store.scheduled_get("crm", "E2", "hire").unwrap(),
        Some(scheduled("crm", "E2", "hire", 11)),
        "schedule: other subject untouched"
    );
    assert_eq!(
        store.scheduled_get("cr", "mE1", "hire").unwrap(),
        None,
        "schedule: keys are unambiguous"
    );

    // Cancel, again, and a slot that never existed: all succeed.
    commit(&store, vec![unschedule("crm", "E1", "hire")]).await;
    commit(
        &store,
        vec![
            unschedule("crm", "E1", "hire"),
            unschedule("crm", "E9", "nothing"),
        ],
    )
    .await;
    assert_eq!(
        store.scheduled_get("crm", "E1", "hire").unwrap(),
        None,
        "unschedule: cancelled"
    );
    assert!(store.scheduled_get("crm", "E1", "leave").unwrap().is_some());
    assert!(store.scheduled_get("crm2", "E1", "hire").unwrap().is_some());
    // Schedule then cancel in one batch: the later mutation wins; and the reverse.
    commit(
        &store,
        vec![
            Mutation::Schedule(scheduled("crm", "E3", "hire", 1)),
            unschedule("crm", "E3", "hire"),
            unschedule("crm", "E4", "hire"),
            Mutation::Schedule(scheduled("crm", "E4", "hire", 2)),
        ],
    )
    .await;
    assert_eq!(store.scheduled_get("crm", "E3", "hire").unwrap(), None);
    assert!(store.scheduled_get("crm", "E4", "hire").unwrap().is_some());
    // Durable across a reopen.
    drop(store);
    let store = make(dir.path());
    let slots: Vec<(String, String, String)> = store
        .scheduled_list(None, 100)
        .unwrap()
        .into_iter()
        .map(|s| (s.op.target, s.op.subject, s.slot))
        .collect();
    let want = [
        ("crm", "E4", "hire"),
        ("crm", "E2", "hire"),
        ("crm2", "E1", "hire"),
        ("crm", "E1", "leave"),
    ]
    .map(|(t, s, l)| (t.to_owned(), s.to_owned(), l.to_owned()));
    assert_eq!(slots, want, "schedule: what remains after a reopen");
}

/// `scheduled_due` returns only what is due, earliest first, up to `limit`; `scheduled_list`
/// lists one target or all, earliest first, up to `limit`.
pub async fn scheduled_reads<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    assert!(store.scheduled_due(at(28), 10).unwrap().is_empty());
    assert!(store.scheduled_list(None, 10).unwrap().is_empty());
    // Inserted out of due order, across targets whose names are prefixes of each other.
    commit(
        &store,
        vec![
            Mutation::Schedule(scheduled("crm", "E1", "a", 15)),
            Mutation::Schedule(scheduled("crm2", "E2", "a", 3)),
            Mutation::Schedule(scheduled("crm", "E3", "a", 9)),
            Mutation::Schedule(scheduled("hr", "E4", "a", 1)),
            Mutation::Schedule(scheduled("crm", "E5", "a", 20)),
        ],
    )
    .await;
    let days = |v: Vec<ScheduledOp>| -> Vec<String> {
        v.into_iter()
            .map(|s| format!("{}/{}", s.op.target, s.op.subject))
            .collect()
    };
    assert_eq!(
        days(store.scheduled_due(at(9), 100).unwrap()),
        ["hr/E4", "crm2/E2", "crm/E3"],
        "due: only due ones (due == now included), earliest first"
    );
    assert_eq!(
        days(store.scheduled_due(at(28), 2).unwrap()),
        ["hr/E4", "crm2/E2"],
        "due: limit keeps the earliest"
    );
    assert!(
        store
            .scheduled_due(at(1) - chrono::Duration::seconds(1), 10)
            .unwrap()
            .is_empty(),
        "due: nothing before the earliest"
    );
    assert!(store.scheduled_due(at(28), 0).unwrap().is_empty());
    assert_eq!(
        days(store.scheduled_list(Some("crm"), 100).unwrap()),
        ["crm/E3", "crm/E1", "crm/E5"],
        "list: one target only (not its prefix-sharing neighbour), earliest first"
    );
    assert_eq!(
        days(store.scheduled_list(Some("crm"), 2).unwrap()),
        ["crm/E3", "crm/E1"],
        "list: limit"
    );
    assert!(store.scheduled_list(Some("cr"), 100).unwrap().is_empty());
    assert!(store.scheduled_list(Some("nope"), 100).unwrap().is_empty());
    assert_eq!(
        days(store.scheduled_list(None, 100).unwrap()),
        ["hr/E4", "crm2/E2", "crm/E3", "crm/E1", "crm/E5"],
        "list: all targets, earliest first"
    );
    // Moving one changes its place in the order; cancelling removes it from both reads.
    commit(
        &store,
        vec![
            Mutation::Schedule(scheduled("crm", "E5", "a", 2)),
            unschedule("hr", "E4", "a"),
        ],
    )
    .await;
    assert_eq!(
        days(store.scheduled_due(at(9), 100).unwrap()),
        ["crm/E5", "crm2/E2", "crm/E3"],
        "due: follows moves and cancellations"
    );
}

/// `RemoveDeadLetter` removes one dead letter (idempotently); scans no longer show it, and its
/// position is never reused.
pub async fn remove_dead_letter<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    let dir = tempdir();
    let store = make(dir.path());
    commit(
        &store,
        vec![
            Mutation::DeadLetter(dead_letter("d0")),
            Mutation::DeadLetter(dead_letter("d1")),
            Mutation::DeadLetter(dead_letter("d2")),
        ],
    )
    .await;
    let dl = store.dead_letter_scan(None, 10).unwrap();
    let seqs: Vec<u64> = dl.iter().map(|(s, _)| *s).collect();
    commit(&store, vec![Mutation::RemoveDeadLetter { seq: seqs[1] }]).await;
    let ids = |store: &S| -> Vec<String> {
        store
            .dead_letter_scan(None, 10)
            .unwrap()
            .into_iter()
            .map(|(_, d)| d.op.id)
            .collect()
    };
    assert_eq!(
        ids(&store),
        ["d0", "d2"],
        "remove dead letter: gone from the scan"
    );
    assert_eq!(
        store.dead_letter_scan(Some(seqs[0]), 10).unwrap(),
        vec![dl[2].clone()],
        "remove dead letter: paging skips it"
    );
    // Again, plus a position that never existed: both succeed and change nothing.
    commit(
        &store,
        vec![
            Mutation::RemoveDeadLetter { seq: seqs[1] },
            Mutation::RemoveDeadLetter { seq: 9_999_999 },
        ],
    )
    .await;
    assert_eq!(ids(&store), ["d0", "d2"], "remove dead letter: idempotent");
    // Removing the newest one does not let its position be reused, even after a reopen.
    commit(&store, vec![Mutation::RemoveDeadLetter { seq: seqs[2] }]).await;
    drop(store);
    let store = make(dir.path());
    assert_eq!(ids(&store), ["d0"], "remove dead letter: durable");
    commit(&store, vec![Mutation::DeadLetter(dead_letter("d3"))]).await;
    let dl = store.dead_letter_scan(None, 10).unwrap();
    assert!(
        dl.len() == 2 && dl[1].0 > seqs[2],
        "remove dead letter: positions are not reused: {:?}",
        dl.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
}

/// Signed checkpoints are kept under their sequence number (a second one for the same number
/// replaces the first), scan in order and survive a reopen; `audit_last`, `audit_assigned` and
/// `audit_scan_raw` see what the writer numbered and chained.
pub async fn audit_checkpoints_and_head<S: Store + Clone>(make: &impl Fn(&Path) -> S) {
    use scimflow_core::audit::SigningKey;
    use scimflow_core::AuditCheckpoint;
    let dir = tempdir();
    let store = make(dir.path());
    assert_eq!(store.audit_last().unwrap(), None, "head: empty log");
    assert_eq!(store.audit_assigned().unwrap(), 0, "assigned: empty log");
    assert!(store.audit_checkpoints(None, 10).unwrap().is_empty());
    let batch = (0..5)
        .map(|i| Mutation::Audit(entry(&format!("c{i}"))))
        .collect();
    commit(&store, batch).await;
    let records = all_audit(&store);
    assert_eq!(
        store.audit_last().unwrap().as_ref(),
        records.last(),
        "head: the last record"
    );
    assert_eq!(store.audit_assigned().unwrap(), 5, "assigned: counter");
    let raw = store.audit_scan_raw(Some(1), 10).unwrap();
    assert_eq!(
        raw.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![2, 3, 4, 5],
        "raw scan: positions after `after`"
    );
    let decoded: AuditRecord = serde_json::from_slice(&raw[0].1).unwrap();
    assert_eq!(
        decoded, records[1],
        "raw scan: the stored JSON of the record"
    );

    let key = SigningKey::from_bytes(&[7; 32]);
    let cp = |seq: u64, at: &str| {
        AuditCheckpoint::sign(
            seq,
            &records[seq as usize - 1].hash,
            at.parse().unwrap(),
            &key,
        )
    };
    commit(
        &store,
        vec![
            Mutation::AuditCheckpoint(cp(5, "2026-01-01T00:00:05Z")),
            Mutation::AuditCheckpoint(cp(3, "2026-01-01T00:00:03Z")),
        ],
    )
    .await;
    let later = cp(5, "2026-01-01T00:01:00Z");
    commit(&store, vec![Mutation::AuditCheckpoint(later.clone())]).await;
    let all = store.audit_checkpoints(None, 10).unwrap();
    assert_eq!(
        all.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![3, 5],
        "checkpoints: ordered by seq, one per seq"
    );
    assert_eq!(
        all[1], later,
        "checkpoints: a later one for the same seq replaces"
    );
    assert_eq!(
        store.audit_checkpoints(Some(3), 10).unwrap(),
        vec![later.clone()],
        "checkpoints: paging"
    );
    assert_eq!(
        all_audit(&store).len(),
        5,
        "checkpoints are not audit records"
    );
    drop(store);

    let store = make(dir.path());
    assert_eq!(
        store.audit_checkpoints(None, 10).unwrap(),
        all,
        "checkpoints: durable"
    );
    assert!(all.iter().all(|c| c.verify(&key.verifying_key()).is_ok()));
    let r = commit(&store, vec![Mutation::Audit(entry("c5"))]).await;
    assert_eq!(r.audit_seqs, vec![6]);
    assert_eq!(store.audit_assigned().unwrap(), 6);
}
