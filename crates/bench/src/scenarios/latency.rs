//! `latency`: hire events produced at a steady rate; time to provision per event = the test
//! server's `meta.created` of the account (set when the create request is handled, millisecond
//! resolution) − the event's `time`, which the generator sets to the moment it hands the event to
//! the producer. Both clocks are this process's wall clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::events;
use crate::harness::Env;
use crate::report::{quantile, thousands, verdict};
use crate::Common;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per second.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// How long to produce.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// The target's `concurrency` in the generated daemon config.
    #[arg(long, default_value_t = 16)]
    target_concurrency: usize,
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<String> {
    let n = args.rate as usize * args.seconds as usize;
    anyhow::ensure!(n > 0, "--rate and --seconds must be positive");
    let env = Env::start(common).await?;
    let mut daemon = env.start_daemon("latency", args.target_concurrency, None)?;
    env.produce_hires("W", 0..1, 1).await?;
    daemon
        .wait_done(1, Duration::from_millis(20), Duration::from_secs(60))
        .await
        .context("warm-up event")?;
    println!(
        "producing {n} hire events at {} events/s for {} s (target concurrency {})",
        args.rate, args.seconds, args.target_concurrency
    );

    // Paced: every 5 ms, send what the schedule says should have been sent by now.
    let mut sent_at: Vec<DateTime<Utc>> = Vec::with_capacity(n);
    let mut acks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while sent_at.len() < n {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * f64::from(args.rate)) as usize + 1).min(n);
        while sent_at.len() < due {
            let i = sent_at.len();
            let now = Utc::now();
            sent_at.push(now);
            let (key, payload) = events::hire("L", i, now);
            let p = env.producer.clone();
            acks.spawn(async move { p.send(crate::harness::TOPIC, &key, &payload, &[]).await });
        }
    }
    let produce_secs = start.elapsed().as_secs_f64();
    while let Some(r) = acks.join_next().await {
        r??;
    }
    let (stats, _) = daemon
        .wait_done(
            n as u64 + 1,
            Duration::from_millis(50),
            Duration::from_secs(120),
        )
        .await?;
    daemon.stop();
    anyhow::ensure!(stats.failed == 0, "failed operations: {stats:?}");

    let created: HashMap<String, DateTime<Utc>> = env
        .server
        .users()
        .iter()
        .filter_map(|u| {
            let ext = u["externalId"].as_str()?.to_owned();
            let c = u.pointer("/meta/created")?.as_str()?;
            Some((
                ext,
                DateTime::parse_from_rfc3339(c).ok()?.with_timezone(&Utc),
            ))
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    let (mut first, mut last) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    for (i, t) in sent_at.iter().enumerate() {
        let c = created
            .get(&events::employee_id("L", i))
            .with_context(|| format!("no account for event {i}"))?;
        lat.push((*c - *t).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
        first = Some(first.map_or(*c, |f| f.min(*c)));
        last = Some(last.map_or(*c, |l| l.max(*c)));
    }
    lat.sort_by(f64::total_cmp);
    let (p50, p90, p99, max) = (
        quantile(&lat, 0.5),
        quantile(&lat, 0.9),
        quantile(&lat, 0.99),
        quantile(&lat, 1.0),
    );
    let achieved = n as f64 / produce_secs;
    let delivered_secs = first
        .zip(last)
        .map_or(0.0, |(f, l)| (l - f).num_milliseconds() as f64 / 1000.0);
    println!(
        "    produced {n} in {produce_secs:.2} s = {} events/s; creates spread over {delivered_secs:.2} s",
        thousands(achieved)
    );
    println!(
        "    time to provision (ms, 1 ms resolution): p50 {p50:.0}  p90 {p90:.0}  p99 {p99:.0}  max {max:.0}"
    );
    env.finish();
    Ok(format!(
        "latency: p99 {p99:.0} ms (p50 {p50:.0}, p90 {p90:.0}, max {max:.0}) at {} events/s sustained for {:.0} s (target p99 < 250 ms at 1,000/s: {})",
        thousands(achieved),
        produce_secs,
        verdict(p99 < 250.0 && achieved >= 990.0)
    ))
}
