//! Churn benchmark for the storage engines: enqueue N operations from concurrent tasks, then
//! dequeue them all the way the delivery pool does (one commit per operation holding its `Dequeue`
//! and its `Audit` entry), and report throughput, peak RSS and the on-disk size after the churn and
//! after a reopen in a fresh process.
//!
//! ```text
//! cargo run --release -p scimflow-store --example churn -- --engine sled|redb --ops 1000000
//! ```
//!
//! Options: `--targets 10` `--subjects 100000` `--batch 100` (enqueues per commit) `--tasks 16`
//! (concurrent enqueuers) `--inflight 512` (commits in flight per target while dequeuing)
//! `--dir PATH` (default: a new temporary directory, removed at the end) `--keep`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use scimflow_core::op::MatchKey;
use scimflow_core::store::Mutation;
use scimflow_core::{AuditEntry, OpKind, Operation};
use scimflow_store::{Engine, ManagedStore, StoreOptions};

struct Args {
    engine: Engine,
    ops: u64,
    targets: u64,
    subjects: u64,
    batch: u64,
    tasks: u64,
    inflight: usize,
    dir: Option<PathBuf>,
    keep: bool,
    /// Internal: only reopen `dir` and report (the second half, in a fresh process image).
    reopen_only: bool,
    /// Internal: remove `dir` after the reopen report.
    remove_after: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        engine: Engine::Sled,
        ops: 1_000_000,
        targets: 10,
        subjects: 100_000,
        batch: 100,
        tasks: 16,
        inflight: 512,
        dir: None,
        keep: false,
        reopen_only: false,
        remove_after: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|e| format!("bad number {v:?}: {e}"))
        };
        match flag.as_str() {
            "--engine" => a.engine = value()?.parse()?,
            "--ops" => a.ops = num(value()?)?,
            "--targets" => a.targets = num(value()?)?.max(1),
            "--subjects" => a.subjects = num(value()?)?.max(1),
            "--batch" => a.batch = num(value()?)?.max(1),
            "--tasks" => a.tasks = num(value()?)?.max(1),
            "--inflight" => a.inflight = num(value()?)?.max(1) as usize,
            "--dir" => a.dir = Some(value()?.into()),
            "--keep" => a.keep = true,
            "--reopen-only" => a.reopen_only = true,
            "--remove-after" => a.remove_after = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// A realistic operation: a SCIM user as the mapping stage produces it (about 600-700 bytes of
/// JSON; the run prints the exact size).
fn operation(i: u64, a: &Args) -> Operation {
    let subject = format!("E{:06}", i % a.subjects);
    let target = format!("target-{:02}", i % a.targets);
    Operation {
        id: format!("{i:016x}-{target}"),
        target,
        subject: subject.clone(),
        event_id: format!("evt-{i:012}"),
        event_kind: "hr.worker.updated".into(),
        event_time: Some(Utc::now()),
        planned_at: Utc::now(),
        kind: OpKind::Upsert,
        resource: serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("{subject}@example.com"),
            "externalId": subject,
            "name": { "givenName": "Alexandra", "familyName": "Fitzgerald-Smith" },
            "emails": [{ "value": format!("{subject}@example.com"), "type": "work", "primary": true }],
            "active": true,
        }),
        matching: vec![MatchKey {
            attribute: "externalId".into(),
            value: subject,
            case_exact: true,
        }],
        mapping_version: "5f2a9c0e".into(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        group: None,
        create_only: Vec::new(),
        patch: None,
        manager_subject: None,
        alternatives: Default::default(),
        origin: None,
        retry: None,
    }
}

fn audit(op: &Operation) -> AuditEntry {
    AuditEntry {
        time: Utc::now(),
        outcome: "applied".into(),
        event_id: op.event_id.clone(),
        subject: op.subject.clone(),
        target: op.target.clone(),
        op_id: op.id.clone(),
        operation: op.kind.as_str().into(),
        requests: vec!["GET /Users".into(), "PATCH /Users/{id}".into()],
        status: Some(200),
        error_class: None,
        scim_type: None,
        detail: None,
        attempts: 1,
        latency_ms: 42,
        attributes: vec!["userName".into(), "name".into(), "emails".into()],
        mapping_version: op.mapping_version.clone(),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// (apparent bytes, allocated bytes) of every file under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                let (a, b) = disk_usage(&e.path());
                total = (total.0 + a, total.1 + b);
            } else {
                total = (total.0 + m.len(), total.1 + m.blocks() * 512);
            }
        }
    }
    total
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report_size(what: &str, dir: &Path) {
    let (apparent, allocated) = disk_usage(dir);
    println!(
        "{what}: {:.1} MiB apparent, {:.1} MiB allocated",
        mib(apparent),
        mib(allocated)
    );
}

/// In a fresh process: open, check, measure live data and size, close.
fn reopen_only(a: &Args, dir: &Path) {
    let started = Instant::now();
    let store = scimflow_store::open(a.engine, dir, StoreOptions::default()).expect("reopen");
    let opened = started.elapsed();
    let mut queued = 0;
    for t in 0..a.targets {
        queued += store.queue_len(&format!("target-{t:02}")).unwrap();
    }
    let mut live = 0u64;
    let mut records = 0u64;
    let mut after = None;
    loop {
        let page = store.audit_scan(after, 10_000).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        records += page.len() as u64;
        live += page
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap().len() as u64 + 14)
            .sum::<u64>();
    }
    println!(
        "reopen: opened in {:.2}s; {queued} still queued; {records} audit records = {:.1} MiB of live keys+values",
        opened.as_secs_f64(),
        mib(live)
    );
    store.close();
    drop(store);
    report_size("on disk after reopen", dir);
}

fn main() {
    let a = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("churn: {e}");
            std::process::exit(2);
        }
    };
    if a.reopen_only {
        let dir = a.dir.as_deref().expect("--reopen-only needs --dir");
        reopen_only(&a, dir);
        if a.remove_after {
            std::fs::remove_dir_all(dir).expect("removing the benchmark directory");
        }
        return;
    }
    let tmp = match &a.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("scimflow-churn-")
                .tempdir_in(std::env::current_dir().unwrap())
                .unwrap(),
        ),
    };
    let dir = match (&a.dir, &tmp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("a temporary directory exists when --dir is absent"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let op_bytes = serde_json::to_vec(&operation(0, &a)).unwrap().len();
    println!(
        "churn: engine {}, {} ops, {} targets, {} subjects, {} ops/enqueue commit, {} enqueuers, {} dequeue commits in flight per target; ~{op_bytes} B per operation; dir {}",
        a.engine, a.ops, a.targets, a.subjects, a.batch, a.tasks, a.inflight, dir.display()
    );

    let total = Instant::now();
    let store: Arc<dyn ManagedStore> =
        scimflow_store::open(a.engine, &dir, StoreOptions::default()).expect("open");

    // Enqueue: `tasks` tasks, each committing batches of `batch` operations.
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..a.tasks)
            .map(|t| {
                let (store, a) = (Arc::clone(&store), Arc::clone(&a));
                tokio::spawn(async move {
                    let mut i = t * a.batch;
                    while i < a.ops {
                        let end = (i + a.batch).min(a.ops);
                        let batch = (i..end)
                            .map(|n| Mutation::Enqueue(operation(n, &a)))
                            .collect();
                        store.commit(batch).await.expect("enqueue commit");
                        i += a.tasks * a.batch;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let enqueue = started.elapsed().as_secs_f64();
    let stats = store.stats();
    println!(
        "enqueue: {:.0} ops/s ({:.1}s; {} commits in {} group commits)",
        a.ops as f64 / enqueue,
        enqueue,
        stats.commits,
        stats.batches_flushed
    );
    report_size("on disk after enqueue", &dir);

    // Dequeue as the pool does: per target, page through the queue; per operation one commit of
    // `Dequeue` + `Audit`, `inflight` of them submitted before awaiting.
    let started = Instant::now();
    let before = store.stats();
    rt.block_on(async {
        let tasks: Vec<_> = (0..a.targets)
            .map(|t| {
                let (store, a) = (Arc::clone(&store), Arc::clone(&a));
                tokio::spawn(async move {
                    let target = format!("target-{t:02}");
                    let mut after = None;
                    loop {
                        let page = store.queue_scan(&target, after, a.inflight).unwrap();
                        let Some(last) = page.last() else { break };
                        after = Some(last.seq);
                        let commits: Vec<_> = page
                            .into_iter()
                            .map(|q| {
                                store.commit(vec![
                                    Mutation::Dequeue {
                                        target: target.clone(),
                                        seq: q.seq,
                                    },
                                    Mutation::Audit(audit(&q.op)),
                                ])
                            })
                            .collect();
                        for c in commits {
                            c.await.expect("dequeue commit");
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let dequeue = started.elapsed().as_secs_f64();
    let stats = store.stats();
    println!(
        "dequeue+audit: {:.0} ops/s ({:.1}s; {} commits in {} group commits)",
        a.ops as f64 / dequeue,
        dequeue,
        stats.commits - before.commits,
        stats.batches_flushed - before.batches_flushed
    );
    let queued: u64 = (0..a.targets)
        .map(|t| store.queue_len(&format!("target-{t:02}")).unwrap())
        .sum();
    assert_eq!(queued, 0, "everything dequeued");
    store.close();
    drop(store);
    println!(
        "total elapsed: {:.1}s; peak RSS (VmHWM): {:.0} MiB",
        total.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    report_size("on disk after churn", &dir);

    // Reopen in a fresh process image: sled keeps every database it opened open (and locked) for
    // the life of the process, so replace this process (its descriptors are close-on-exec).
    let remove = match tmp {
        Some(tmp) if !a.keep => {
            let _ = tmp.keep();
            true
        }
        Some(tmp) => {
            println!("keeping {}", tmp.keep().display());
            false
        }
        None => false,
    };
    let mut reopen = std::process::Command::new(std::env::current_exe().unwrap());
    reopen
        .args(["--engine", a.engine.as_str(), "--reopen-only", "--dir"])
        .arg(&dir)
        .args(["--targets", &a.targets.to_string()]);
    if remove {
        reopen.arg("--remove-after");
    }
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    let err = std::os::unix::process::CommandExt::exec(&mut reopen);
    panic!("re-executing for the reopen failed: {err}");
}
