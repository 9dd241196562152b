//! `backlog`: a restart with a large durable backlog (PRODUCT.md §9: one million queued operations,
//! resume within 5 s, bounded memory). The store (redb) is filled offline with N queued upserts for one
//! target (distinct people, ~600-byte resources, as the planner produces them), then the real daemon
//! is started on it. Measured: time from process start to the first SCIM request reaching the test
//! server (restart → first dispatch), the daemon's peak RSS (`VmHWM`) after `--run-seconds` of
//! delivering, and how many operations it finished meanwhile.

use std::time::{Duration, Instant};

use chrono::Utc;
use scimflow_core::op::MatchKey;
use scimflow_core::store::Mutation;
use scimflow_core::{OpKind, Operation};

use crate::harness::{Env, TARGET};
use crate::report::thousands;
use crate::Common;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Operations queued before the start.
    #[arg(long, default_value_t = 1_000_000)]
    operations: u64,
    /// How long the daemon delivers before its memory is read.
    #[arg(long, default_value_t = 15)]
    run_seconds: u64,
}

fn operation(i: u64) -> Operation {
    let subject = format!("B{i:07}");
    Operation {
        id: format!("backlog-{i:07}@{TARGET}"),
        target: TARGET.to_owned(),
        subject: subject.clone(),
        event_id: format!("backlog-{i:07}"),
        event_kind: "hr.worker.hired".into(),
        event_time: Some(Utc::now()),
        planned_at: Utc::now(),
        kind: OpKind::Upsert,
        resource: serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("{}@example.com", subject.to_lowercase()),
            "externalId": subject,
            "displayName": "Alexandra Fitzgerald-Smith",
            "name": { "givenName": "Alexandra", "familyName": "Fitzgerald-Smith" },
            "emails": [{ "value": format!("{}@example.com", subject.to_lowercase()), "type": "work" }],
            "title": "Engineer",
        }),
        matching: vec![MatchKey {
            attribute: "externalId".into(),
            value: subject,
            case_exact: true,
        }],
        mapping_version: String::new(),
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

/// The peak resident set of process `pid`, in MiB (`VmHWM` of /proc/PID/status).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<String> {
    let env = Env::start(common).await?;
    let data = env.dir.path().join("backlog-data");
    let t = Instant::now();
    {
        // redb: this process lets go of the file when it closes it (sled would hold its lock).
        let store = scimflow_store::open(
            scimflow_store::Engine::Redb,
            &data,
            scimflow_store::StoreOptions::default(),
        )?;
        let mut pending = Vec::new();
        let mut i = 0;
        while i < args.operations {
            let end = (i + 2_000).min(args.operations);
            pending.push(store.commit((i..end).map(|k| Mutation::Enqueue(operation(k))).collect()));
            i = end;
            if pending.len() >= 8 {
                for p in pending.drain(..) {
                    p.await?;
                }
            }
        }
        for p in pending {
            p.await?;
        }
        anyhow::ensure!(
            store.queue_len(TARGET)? == args.operations,
            "the backlog was not stored whole"
        );
        store.close();
    }
    let on_disk = dir_size(&data);
    println!(
        "queued {} operations in {:.1} s ({:.0} MiB on disk); starting scimflow on that store",
        thousands(args.operations as f64),
        t.elapsed().as_secs_f64(),
        on_disk as f64 / (1024.0 * 1024.0)
    );
    let yaml = crate::harness::config_yaml(
        &env.tansu.bootstrap,
        "backlog",
        env.server.base_url(),
        16,
        None,
    ) + "store: { engine: redb }\n";
    let mut daemon = env.start_daemon_yaml("backlog", &yaml)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.server.request_count() == 0 {
        daemon.check_alive()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "no request reached the server in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = env.server.requests()[0].at;
    let to_first = first.duration_since(daemon.started);
    tokio::time::sleep(Duration::from_secs(args.run_seconds)).await;
    daemon.check_alive()?;
    let rss = peak_rss_mib(daemon.pid()).unwrap_or(f64::NAN);
    let s = daemon.stats().await?;
    daemon.stop();
    println!(
        "    first SCIM request {:.2} s after the process started; after {} s of delivery: {} operations done, {} still queued; peak RSS {rss:.0} MiB",
        to_first.as_secs_f64(),
        args.run_seconds,
        thousands(s.done() as f64),
        thousands(s.queue_depth as f64)
    );
    env.finish();
    let met = to_first < Duration::from_secs(5) && rss < 300.0;
    Ok(format!(
        "backlog: {} queued → first dispatch {:.2} s after restart, peak RSS {rss:.0} MiB (targets < 5 s, < 300 MB: {})",
        thousands(args.operations as f64),
        to_first.as_secs_f64(),
        if met { "met" } else { "MISSED" }
    ))
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
