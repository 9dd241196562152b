//! `rate`: how exactly scimflow keeps to a target's `rate_limit`. The daemon is given far more work
//! than the limit allows (hire events for `rate × (warmup + seconds + 10) / 3` people, three
//! requests each), with `rate_limit: { per_second: R, burst: 1 }`; the SCIM test server, which
//! admits at most `R × 1.05` requests in any one-second window and answers 429 above it, records
//! every request's arrival. After a warm-up, the requests that arrived in the next `seconds` are
//! counted: the achieved rate against R (PRODUCT.md §9: within ±2% per 60 s window), the busiest
//! one-second window, and the 429s (target: none — each would be one we caused).

use std::time::{Duration, Instant};

use scimflow_testkit::{RetryAfterStyle, ServerOptions};

use crate::harness::Env;
use crate::report::thousands;
use crate::Common;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The target's configured requests per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Length of the measured window.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds after the first request before the window starts.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// The limit's burst (tokens that may be saved up).
    #[arg(long, default_value_t = 1)]
    burst: u32,
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<String> {
    let server_cap = args.rate + args.rate.div_ceil(20);
    let env = Env::start_with(
        common,
        ServerOptions {
            rate_limit: Some((server_cap, RetryAfterStyle::Seconds)),
            ..ServerOptions::default()
        },
    )
    .await?;
    let people = (args.rate as u64 * (args.warmup + args.seconds + 10)).div_ceil(3) as usize;
    let t = Instant::now();
    env.produce_hires("R", 0..people, 2_000).await?;
    println!(
        "produced {people} hire events in {:.2} s; limit {} requests/s (burst {}), the server answers 429 above {server_cap}/s",
        t.elapsed().as_secs_f64(),
        args.rate,
        args.burst
    );
    let mut daemon = env.start_daemon("rate", 16, Some((args.rate, args.burst)))?;
    // Wait for the first request, then the warm-up and the window.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.server.request_count() == 0 {
        daemon.check_alive()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "no request reached the server in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = env.server.requests()[0].at;
    let window_start = first + Duration::from_secs(args.warmup);
    let window_end = window_start + Duration::from_secs(args.seconds);
    while Instant::now() < window_end + Duration::from_millis(200) {
        daemon.check_alive()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = env.server.requests();
    daemon.stop();
    let in_window: Vec<_> = log
        .iter()
        .filter(|r| r.at >= window_start && r.at < window_end)
        .collect();
    let n = in_window.len() as f64;
    let achieved = n / args.seconds as f64;
    let deviation = (achieved / args.rate as f64 - 1.0) * 100.0;
    let throttled = log.iter().filter(|r| r.status == 429).count();
    let mut per_second = vec![0u32; args.seconds as usize];
    for r in &in_window {
        let s = r.at.duration_since(window_start).as_secs() as usize;
        if let Some(c) = per_second.get_mut(s) {
            *c += 1;
        }
    }
    let busiest = per_second.iter().copied().max().unwrap_or(0);
    let quietest = per_second.iter().copied().min().unwrap_or(0);
    println!(
        "    {} requests in the {} s window: {:.2} requests/s ({deviation:+.2}% of the limit); one-second windows between {quietest} and {busiest}; 429s in the whole run: {throttled}",
        thousands(n),
        args.seconds,
        achieved
    );
    env.finish();
    let met = deviation.abs() <= 2.0 && throttled == 0;
    Ok(format!(
        "rate: {achieved:.2} requests/s against a limit of {}/s (burst {}) over {} s = {deviation:+.2}%, {throttled} 429s (target within ±2%, zero 429s: {})",
        args.rate,
        args.burst,
        args.seconds,
        if met { "met" } else { "MISSED" }
    ))
}
