//! `consume`: consume-to-durable throughput. N hire events are produced first; then the daemon is
//! started with its target throttled to 1 request/s (the daemon has no pause switch), so delivery
//! hardly moves and what is measured is Kafka consume → decode → plan → durable record (subject
//! state + queued operation + audit in one store batch). Progress = `queue_depth + finished` from
//! `GET /api/v1/targets`, polled every 20 ms; the rate is taken between the first poll that shows
//! progress and the poll that shows all N recorded.

use std::time::{Duration, Instant};

use crate::harness::Env;
use crate::report::thousands;
use crate::Common;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events produced before the daemon starts.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Give up when nothing new is recorded for this many seconds.
    #[arg(long, default_value_t = 30)]
    stall_seconds: u64,
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<String> {
    let n = args.events as u64;
    let env = Env::start(common).await?;
    let t = Instant::now();
    env.produce_hires("C", 0..args.events, 2_000).await?;
    println!(
        "produced {n} events in {:.2} s; starting scimflow (target throttled to 1 request/s)",
        t.elapsed().as_secs_f64()
    );
    let mut daemon = env.start_daemon("consume", 4, Some((1, 1)))?;
    let listening = daemon.started.elapsed().as_secs_f64();
    let mut first: Option<(Instant, u64)> = None;
    let mut last_change = (Instant::now(), 0u64);
    let mut end = None;
    loop {
        let s = daemon.stats().await?;
        let now = Instant::now();
        let recorded = s.queue_depth + s.done();
        if recorded > 0 && first.is_none() {
            first = Some((now, recorded));
        }
        if recorded != last_change.1 {
            last_change = (now, recorded);
        }
        if recorded >= n {
            end = Some((now, s));
            break;
        }
        daemon.check_alive()?;
        if now - last_change.0 > Duration::from_secs(args.stall_seconds) {
            println!(
                "    stalled at {recorded} of {n} recorded ({s:?}); daemon log {}",
                daemon.log.display()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = daemon.started;
    daemon.stop();
    let (first_t, first_n) = first.ok_or_else(|| anyhow::anyhow!("nothing was consumed"))?;
    let (end_t, end_s) = end.ok_or_else(|| anyhow::anyhow!("not all events were consumed"))?;
    let secs = (end_t - first_t).as_secs_f64();
    let rate = (n - first_n) as f64 / secs;
    let total = (end_t - started).as_secs_f64();
    println!(
        "    daemon listening after {listening:.2} s; first progress after {:.2} s ({first_n} recorded)",
        (first_t - started).as_secs_f64()
    );
    println!(
        "    all {n} recorded {secs:.2} s after first progress: {} events/s ({:.2} s from process start, {} events/s including startup and group join); final {end_s:?}",
        thousands(rate),
        total,
        thousands(n as f64 / total)
    );
    env.finish();
    Ok(format!(
        "consume: scimflow consume-to-durable {} events/s ({n} events, {} events/s including startup and group join; no target in PRODUCT.md §9)",
        thousands(rate),
        thousands(n as f64 / total)
    ))
}
