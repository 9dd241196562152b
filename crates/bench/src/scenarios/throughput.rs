//! `throughput`: (a) a bare reqwest client doing the SCIM work of one hire (lookup by externalId,
//! then create) for N people at a fixed concurrency; (b) N hire events through Kafka → scimflow →
//! SCIM 2xx → audit, timed from the first produce to the poll of `/api/v1/targets` that shows all N
//! operations finished. Both against the same in-process test server (emptied in between).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::events;
use crate::harness::Env;
use crate::report::{thousands, verdict};
use crate::Common;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// People (= events = operations) per side.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Concurrency of the bare client.
    #[arg(long, default_value_t = 16)]
    client_concurrency: usize,
    /// The target's `concurrency` in the generated daemon config.
    #[arg(long, default_value_t = 16)]
    target_concurrency: usize,
    /// Unacknowledged produce requests at once.
    #[arg(long, default_value_t = 2_000)]
    in_flight: usize,
    /// Send the daemon's writes as SCIM bulk requests of at most this many operations (the test
    /// server serves `/Bulk`); the bare client still sends one request per write.
    #[arg(long)]
    bulk: Option<usize>,
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<String> {
    let n = args.events;
    let env = Env::start_with(
        common,
        scimflow_testkit::ServerOptions {
            bulk_max_operations: Some(1000),
            ..Default::default()
        },
    )
    .await?;

    // (a) the bare client.
    println!(
        "(a) bare client: {n} people, lookup + create each, concurrency {}",
        args.client_concurrency
    );
    let before = env.server.request_count();
    let t0 = Instant::now();
    bare_client(&env, n, args.client_concurrency).await?;
    let bare_secs = t0.elapsed().as_secs_f64();
    let bare_reqs = env.server.request_count() - before;
    let bare_pps = n as f64 / bare_secs;
    println!(
        "    {bare_reqs} requests in {bare_secs:.2} s: {} req/s, {} persons/s",
        thousands(bare_reqs as f64 / bare_secs),
        thousands(bare_pps)
    );
    anyhow::ensure!(
        env.server.users().len() == n,
        "bare client: wrong user count"
    );
    env.server.clear();
    env.server.clear_requests();

    // (b) scimflow.
    println!(
        "(b) scimflow: {n} hire events through Kafka, target concurrency {}{}",
        args.target_concurrency,
        args.bulk
            .map(|b| format!(", writes in bulk requests of at most {b}"))
            .unwrap_or_default()
    );
    let mut yaml = crate::harness::config_yaml(
        &env.tansu.bootstrap,
        "throughput",
        env.server.base_url(),
        args.target_concurrency,
        None,
    );
    if let Some(b) = args.bulk {
        let line = format!("    concurrency: {}\n", args.target_concurrency);
        yaml = yaml.replacen(
            &line,
            &format!("{line}    bulk: {{ max_operations: {b}, linger_ms: 5 }}\n"),
            1,
        );
    }
    let mut daemon = env.start_daemon_yaml("throughput", &yaml)?;
    // Warm-up: one event through the whole path, so the consumer group has joined before timing.
    env.produce_hires("W", 0..1, 1).await?;
    daemon
        .wait_done(1, Duration::from_millis(20), Duration::from_secs(60))
        .await
        .context("warm-up event")?;
    let warm = env.server.requests().len();
    let t0 = Instant::now();
    env.produce_hires("T", 0..n, args.in_flight).await?;
    let produced = t0.elapsed().as_secs_f64();
    let (stats, t1) = daemon
        .wait_done(
            n as u64 + 1,
            Duration::from_millis(20),
            Duration::from_secs(600),
        )
        .await?;
    let flow_secs = (t1 - t0).as_secs_f64();
    let reqs = env.server.requests();
    let reqs = &reqs[warm.min(reqs.len())..];
    let gets = reqs.iter().filter(|r| r.method == "GET").count();
    let posts = reqs.iter().filter(|r| r.method == "POST").count();
    let bulks = env.server.bulk_log();
    let bulk_ops: usize = bulks.iter().map(Vec::len).sum();
    let non2xx = reqs.iter().filter(|r| r.status / 100 != 2).count();
    let users = env.server.users().len();
    daemon.stop();
    if stats.failed > 0 || users != n + 1 {
        bail!(
            "scimflow run incomplete: {stats:?}, {users} users on the server (expected {})",
            n + 1
        );
    }
    let flow_pps = n as f64 / flow_secs;
    println!(
        "    produced in {produced:.2} s; all {n} applied after {flow_secs:.2} s: {} persons/s",
        thousands(flow_pps)
    );
    println!(
        "    SCIM requests by scimflow: {} ({gets} GET, {posts} POST, {non2xx} non-2xx) = {:.2} per person; {} req/s",
        reqs.len(),
        reqs.len() as f64 / n as f64,
        thousands(reqs.len() as f64 / flow_secs)
    );
    if !bulks.is_empty() {
        println!(
            "    of the POSTs, {} were bulk requests carrying {bulk_ops} operations ({:.1} per request)",
            bulks.len(),
            bulk_ops as f64 / bulks.len() as f64
        );
    }
    env.finish();
    let ratio = flow_pps / bare_pps;
    Ok(format!(
        "throughput: scimflow {} persons/s vs bare client {} persons/s = {ratio:.2}× (target ≥ 0.80: {})",
        thousands(flow_pps),
        thousands(bare_pps),
        verdict(ratio >= 0.8)
    ))
}

/// Lookup + create for people `B0000000..` with `concurrency` workers.
async fn bare_client(env: &Env, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let base = env.server.base_url().to_owned();
    let token = env.server.token().to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, base, token, http) =
            (next.clone(), base.clone(), token.clone(), env.http.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let ext = events::employee_id("B", i);
                let found: Value = http
                    .get(format!("{base}/Users"))
                    .bearer_auth(&token)
                    .query(&[("filter", format!("externalId eq \"{ext}\""))])
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                anyhow::ensure!(found["totalResults"] == 0, "{ext} already exists");
                let r = http
                    .post(format!("{base}/Users"))
                    .bearer_auth(&token)
                    .json(&events::scim_user("B", i))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 201, "create {ext}: {}", r.status());
                r.bytes().await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
