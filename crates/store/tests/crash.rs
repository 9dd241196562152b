//! kill -9 in the middle of committing: every acknowledged commit is on disk after a restart, and
//! no commit is partially applied. Runs against both engines.
//!
//! The parent test re-executes this test binary with `CHILD_DIR_ENV` set; the child (`crash_child`)
//! commits batches from several tasks in a loop and prints `ACK <id> <queue seq>` after each commit
//! future resolves. The parent SIGKILLs it mid-run, several times over the same directory, then reopens
//! the store and checks it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use scimflow_core::audit::{verify_chain, GENESIS_HASH};
use scimflow_core::store::Mutation;
use scimflow_core::{AuditEntry, OpKind, Operation, SubjectState};
use scimflow_store::{Engine, StoreOptions};

const CHILD_DIR_ENV: &str = "SCIMFLOW_STORE_CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "SCIMFLOW_STORE_CRASH_CHILD_ROUND";
const CHILD_ENGINE_ENV: &str = "SCIMFLOW_STORE_CRASH_CHILD_ENGINE";
const TARGET: &str = "t";
const COMMITTERS: u64 = 8;
const ROUNDS: u32 = 3;
const ACKS_BEFORE_KILL: usize = 300;

fn time() -> chrono::DateTime<chrono::Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn op(id: &str) -> Operation {
    Operation {
        id: id.into(),
        target: TARGET.into(),
        subject: format!("S{id}"),
        event_id: format!("e{id}"),
        event_kind: "hr.worker.updated".into(),
        event_time: None,
        planned_at: time(),
        kind: OpKind::Upsert,
        resource: serde_json::json!({ "userName": id, "padding": "x".repeat(200) }),
        matching: Vec::new(),
        mapping_version: "m".into(),
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

fn entry(id: &str) -> AuditEntry {
    AuditEntry {
        time: time(),
        outcome: "applied".into(),
        event_id: format!("e{id}"),
        subject: format!("S{id}"),
        target: TARGET.into(),
        op_id: id.into(),
        operation: "upsert".into(),
        requests: Vec::new(),
        status: Some(201),
        error_class: None,
        scim_type: None,
        detail: None,
        attempts: 1,
        latency_ms: 1,
        attributes: Vec::new(),
        mapping_version: "m".into(),
        trace_id: None,
    }
}

/// Everything one commit writes; all of it or none of it must survive.
fn batch(id: &str) -> Vec<Mutation> {
    vec![
        Mutation::PutSubject(SubjectState {
            subject: format!("S{id}"),
            last_event_id: format!("e{id}"),
            last_time: None,
            last_kind: "hr.worker.updated".into(),
            data: serde_json::json!({ "id": id }),
            recent_event_ids: vec![format!("e{id}")],
            mapping_version: String::new(),
            position: None,
        }),
        Mutation::Enqueue(op(id)),
        Mutation::Bind {
            target: TARGET.into(),
            subject: format!("S{id}"),
            id: format!("r{id}"),
        },
        Mutation::Audit(entry(id)),
        Mutation::LogAppend(format!("{id}/a").into_bytes()),
        Mutation::LogAppend(format!("{id}/b").into_bytes()),
    ]
}

/// The child half: commits until killed. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let round: u32 = std::env::var(CHILD_ROUND_ENV).unwrap().parse().unwrap();
    let engine: Engine = std::env::var(CHILD_ENGINE_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = scimflow_store::open(engine, Path::new(&dir), StoreOptions::default()).unwrap();
        let next = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..COMMITTERS)
            .map(|_| {
                let (store, next) = (Arc::clone(&store), Arc::clone(&next));
                tokio::spawn(async move {
                    loop {
                        let id = format!("{round}-{}", next.fetch_add(1, Ordering::SeqCst));
                        let receipt = store.commit(batch(&id)).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {id} {}", receipt.queue_seqs[0].1).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Runs one child until it has acknowledged `ACKS_BEFORE_KILL` commits, SIGKILLs it, and returns
/// every acknowledgement it printed.
fn run_and_kill(engine: Engine, dir: &Path, round: u32) -> Vec<(String, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ROUND_ENV, round.to_string())
        .env(CHILD_ENGINE_ENV, engine.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the crash child");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acks = Vec::new();
    let mut killed = false;
    for line in stdout.lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let (id, seq) = rest.split_once(' ').unwrap();
        acks.push((id.to_owned(), seq.parse().unwrap()));
        if !killed && acks.len() >= ACKS_BEFORE_KILL {
            // SIGKILL on unix: no destructors, no final flush.
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed && !status.success(),
        "child exited on its own: {status:?}"
    );
    acks
}

#[test]
fn sled_acknowledged_commits_survive_sigkill_and_none_is_partial() {
    if std::env::var_os(CHILD_DIR_ENV).is_none() {
        acknowledged_commits_survive_sigkill_and_none_is_partial(Engine::Sled);
    }
}

#[test]
fn redb_acknowledged_commits_survive_sigkill_and_none_is_partial() {
    if std::env::var_os(CHILD_DIR_ENV).is_none() {
        acknowledged_commits_survive_sigkill_and_none_is_partial(Engine::Redb);
    }
}

fn acknowledged_commits_survive_sigkill_and_none_is_partial(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut highest_id = HashMap::new();
    for round in 0..ROUNDS {
        let acks = run_and_kill(engine, dir.path(), round);
        let max = acks
            .iter()
            .map(|(id, _)| id.split_once('-').unwrap().1.parse::<u64>().unwrap())
            .max()
            .unwrap();
        highest_id.insert(round, max);
        acked.extend(acks);
    }

    let store = scimflow_store::open(engine, dir.path(), StoreOptions::default()).unwrap();
    let queued = store.queue_scan(TARGET, None, usize::MAX).unwrap();
    let present: HashMap<String, u64> = queued.iter().map(|q| (q.op.id.clone(), q.seq)).collect();
    assert_eq!(
        present.len(),
        queued.len(),
        "an operation was enqueued twice"
    );
    assert_eq!(store.queue_len(TARGET).unwrap(), queued.len() as u64);

    // 1. Every acknowledged commit is there, with the queue position its receipt named.
    for (id, seq) in &acked {
        assert_eq!(
            present.get(id),
            Some(seq),
            "acknowledged commit {id} was lost"
        );
    }

    // 2. No commit is partial: each part of every commit is present exactly when its queue entry is.
    let audit = store.audit_scan(None, usize::MAX).unwrap();
    let n = verify_chain(&audit, 1, GENESIS_HASH).expect("the audit chain verifies after crashes");
    assert_eq!(n as usize, audit.len());
    let audited: HashSet<String> = audit.iter().map(|r| r.entry.op_id.clone()).collect();
    assert_eq!(
        audited.len(),
        audit.len(),
        "an audit entry was written twice"
    );
    let logged: Vec<String> = store
        .log_scan(None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, b)| String::from_utf8(b).unwrap())
        .collect();
    let log_ids: BTreeSet<&str> = logged
        .iter()
        .map(|l| l.split_once('/').unwrap().0)
        .collect();
    assert_eq!(
        logged.len(),
        2 * log_ids.len(),
        "a commit's log entries were split"
    );
    let present_ids: BTreeSet<&str> = present.keys().map(String::as_str).collect();
    assert_eq!(
        audited.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        present_ids
    );
    assert_eq!(
        log_ids, present_ids,
        "log entries and queue entries disagree"
    );
    for (round, max) in &highest_id {
        // Commits submitted but not acknowledged may or may not be there; check a margin past them.
        for i in 0..max + 10 * COMMITTERS {
            let id = format!("{round}-{i}");
            let here = present.contains_key(&id);
            assert_eq!(
                store.subject(&format!("S{id}")).unwrap().is_some(),
                here,
                "subject of {id}"
            );
            assert_eq!(
                store.binding(TARGET, &format!("S{id}")).unwrap(),
                here.then(|| format!("r{id}")),
                "binding of {id}"
            );
        }
    }
    eprintln!(
        "crash test ({engine}): {} rounds, {} acknowledged, {} present",
        ROUNDS,
        acked.len(),
        present.len()
    );
}
