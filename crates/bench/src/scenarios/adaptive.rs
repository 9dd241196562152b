//! `adaptive`: delivery against a target that is slow and defers work above a rate, with no
//! `rate_limit` configured — what adaptive concurrency is for. The SCIM test server answers every
//! request after `--latency-ms` (100 ms) and admits at most `--server-rate` (100) requests in any
//! sliding second; a request above that is *deferred*: answered 429 with `Retry-After: 1` (seconds
//! until the window has room, rounded up, at least 1), without being carried out and without
//! counting toward the window. The daemon gets a high `concurrency` (64: at 100 ms per request it
//! could send 640 requests/s) and hire events for more people than the run can deliver.
//!
//! The same run is done twice, each against a fresh server, broker and daemon: with
//! `adaptive_concurrency` on (the default, `initial` 4) and off (`enabled: false`: always 64 in
//! flight). After `--warmup` seconds from the first request, for `--seconds`: requests answered
//! 2xx per second at the server ("delivered"), 429s, operations applied, and the daemon's
//! `scimflow_target_concurrency_limit` scraped from `/metrics` every 250 ms (the limit over time).

use std::time::{Duration, Instant};

use anyhow::Context;
use scimflow_testkit::{RecordedRequest, RetryAfterStyle, ServerOptions};

use crate::harness::{config_yaml, Daemon, Env, TARGET};
use crate::report::{thousands, verdict};
use crate::Common;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Length of the measured window.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds after the first request before the window starts.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Requests the server admits in any sliding second (429 above).
    #[arg(long, default_value_t = 100)]
    server_rate: u32,
    /// The server's latency for every request.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// The target's `concurrency` (the adaptive limit's ceiling).
    #[arg(long, default_value_t = 64)]
    target_concurrency: usize,
    /// `adaptive_concurrency.decrease_factor` (default: the product default, 0.5).
    #[arg(long)]
    decrease_factor: Option<f64>,
    /// Run only with adaptive concurrency on (skip the comparison run).
    #[arg(long)]
    only_adaptive: bool,
}

/// What one run measured.
struct Measured {
    delivered: f64,
    throttled: usize,
    other_errors: usize,
    applied: u64,
    /// (seconds into the window, limit)
    limits: Vec<(f64, i64)>,
    decreases: Vec<(String, u64)>,
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<String> {
    let on = measure(common, &args, true).await?;
    if args.only_adaptive {
        return Ok(format!(
            "adaptive: {:.1} requests/s delivered with adaptive concurrency ({} 429s in {} s; target ≥ 60/s: {})",
            on.delivered,
            on.throttled,
            args.seconds,
            verdict(on.delivered >= 60.0)
        ));
    }
    let off = measure(common, &args, false).await?;
    Ok(format!(
        "adaptive: {:.1} requests/s delivered with adaptive concurrency ({} 429s, {} operations applied in {} s) vs {:.1}/s at a fixed concurrency of {} ({} 429s, {} applied) = {:.2}× the requests, {:.0}× fewer 429s (target ≥ 60/s: {})",
        on.delivered,
        thousands(on.throttled as f64),
        thousands(on.applied as f64),
        args.seconds,
        off.delivered,
        args.target_concurrency,
        thousands(off.throttled as f64),
        thousands(off.applied as f64),
        on.delivered / off.delivered.max(f64::MIN_POSITIVE),
        off.throttled as f64 / (on.throttled.max(1)) as f64,
        verdict(on.delivered >= 60.0)
    ))
}

async fn measure(common: &Common, args: &Args, adaptive: bool) -> anyhow::Result<Measured> {
    let env = Env::start_with(
        common,
        ServerOptions {
            latency: Duration::from_millis(args.latency_ms),
            rate_limit: Some((args.server_rate, RetryAfterStyle::Seconds)),
            ..ServerOptions::default()
        },
    )
    .await?;
    // More people than the run can deliver at the server's rate (two requests each).
    let people = (u64::from(args.server_rate) * (args.warmup + args.seconds + 15)).div_ceil(2);
    let people = usize::try_from(people)?;
    let run = if adaptive { "A" } else { "F" };
    env.produce_hires(run, 0..people, 2_000).await?;
    let section = if adaptive {
        match args.decrease_factor {
            Some(f) => format!("    adaptive_concurrency: {{ decrease_factor: {f} }}\n"),
            None => String::new(),
        }
    } else {
        "    adaptive_concurrency: { enabled: false }\n".to_owned()
    };
    let group = if adaptive {
        "adaptive-on"
    } else {
        "adaptive-off"
    };
    let yaml = config_yaml(
        &env.tansu.bootstrap,
        group,
        env.server.base_url(),
        args.target_concurrency,
        None,
    )
    .replacen("    lifecycle:\n", &format!("{section}    lifecycle:\n"), 1);
    println!(
        "{}: {people} hire events queued; target concurrency {}, no rate_limit; the server answers after {} ms and defers (429, Retry-After: 1) above {} requests per sliding second",
        if adaptive {
            "adaptive concurrency on"
        } else {
            "adaptive concurrency off"
        },
        args.target_concurrency,
        args.latency_ms,
        args.server_rate
    );
    let mut daemon = env.start_daemon_yaml(group, &yaml)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.server.request_count() == 0 {
        daemon.check_alive()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "no request reached the server in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = env.server.requests().first().map(|r| r.at);
    let first = first.unwrap_or_else(Instant::now);
    let window_start = first + Duration::from_secs(args.warmup);
    let window_end = window_start + Duration::from_secs(args.seconds);
    let mut limits = Vec::new();
    let mut applied_at_start = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        daemon.check_alive()?;
        if now >= window_start {
            if applied_at_start.is_none() {
                applied_at_start = Some(daemon.stats().await?.applied);
            }
            let text = scrape(&env, &daemon).await?;
            if let Some(l) = gauge(&text) {
                limits.push(((now - window_start).as_secs_f64(), l));
            }
        }
    }
    let applied = daemon.stats().await?.applied - applied_at_start.unwrap_or(0);
    let text = scrape(&env, &daemon).await?;
    let decreases = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&format!(
                "scimflow_target_concurrency_decreases_total{{target=\"{TARGET}\",reason=\""
            ))?;
            let (reason, n) = rest.split_once("\"} ")?;
            Some((reason.to_owned(), n.trim().parse().ok()?))
        })
        .collect::<Vec<(String, u64)>>();
    let log = env.server.requests();
    daemon.stop();
    let in_window: Vec<&RecordedRequest> = log
        .iter()
        .filter(|r| r.at >= window_start && r.at < window_end)
        .collect();
    let ok = in_window
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .count();
    let throttled = in_window.iter().filter(|r| r.status == 429).count();
    let other_errors = in_window.len() - ok - throttled;
    let m = Measured {
        delivered: ok as f64 / args.seconds as f64,
        throttled,
        other_errors,
        applied,
        limits,
        decreases,
    };
    report(args, &m, &in_window, window_start);
    env.finish();
    Ok(m)
}

async fn scrape(env: &Env, daemon: &Daemon) -> anyhow::Result<String> {
    env.http
        .get(format!("{}/metrics", daemon.url))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
        .context("GET /metrics")
}

/// `scimflow_target_concurrency_limit{target="bench"}` from a scrape.
fn gauge(text: &str) -> Option<i64> {
    let prefix = format!("scimflow_target_concurrency_limit{{target=\"{TARGET}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn report(args: &Args, m: &Measured, in_window: &[&RecordedRequest], start: Instant) {
    println!(
        "    {} requests in the {} s window: {} answered 2xx = {:.1} delivered/s, {} deferred (429), {} other; {} operations applied",
        thousands(in_window.len() as f64),
        args.seconds,
        thousands((m.delivered * args.seconds as f64).round()),
        m.delivered,
        thousands(m.throttled as f64),
        m.other_errors,
        thousands(m.applied as f64)
    );
    if !m.decreases.is_empty() {
        let d: Vec<String> = m
            .decreases
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        println!("    limit decreases over the whole run: {}", d.join(", "));
    }
    // Per 5 s: the limit (mean, min–max of the 250 ms samples), 2xx/s and 429/s.
    println!("    second   limit mean (min–max)   2xx/s   429/s");
    let buckets = args.seconds.div_ceil(5);
    for b in 0..buckets {
        let (lo, hi) = ((b * 5) as f64, ((b + 1) * 5) as f64);
        let samples: Vec<i64> = m
            .limits
            .iter()
            .filter(|(t, _)| *t >= lo && *t < hi)
            .map(|(_, l)| *l)
            .collect();
        let in_bucket = |pred: &dyn Fn(&RecordedRequest) -> bool| {
            in_window
                .iter()
                .filter(|r| {
                    let t = r.at.duration_since(start).as_secs_f64();
                    t >= lo && t < hi && pred(r)
                })
                .count() as f64
                / 5.0
        };
        let ok = in_bucket(&|r| (200..300).contains(&r.status));
        let throttled = in_bucket(&|r| r.status == 429);
        let limit = if samples.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.1} ({}–{})",
                samples.iter().sum::<i64>() as f64 / samples.len() as f64,
                samples.iter().min().unwrap_or(&0),
                samples.iter().max().unwrap_or(&0)
            )
        };
        println!("    {lo:>3}–{hi:<3}  {limit:<21}  {ok:>6.1}  {throttled:>6.1}");
    }
}
