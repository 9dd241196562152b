//! `scimflow-loadgen`: a load generator that measures scimflow against a bare HTTP client in the
//! same run, on loopback, and prints a plain-text report.
//!
//! Each scenario starts what it needs itself: the in-process [`scimflow_testkit::TestServer`] as
//! the SCIM target, a Tansu broker ([`scimflow_testkit::procs::Tansu`]) and the real `scimflow`
//! binary as a child process with a generated config. It is bounded in event count and time and
//! stops by itself. See `docs/performance.md` for what each scenario measures.
//!
//! - `throughput`: bare reqwest client (lookup + create per person) vs events through Kafka →
//!   scimflow → SCIM 2xx → audit; prints both rates and their ratio (target ≥ 0.80).
//! - `latency`: a steady produce rate; time to provision = the server's `meta.created` of the
//!   account − the event's `time` (set to the produce time); p50/p90/p99/max (target p99 < 250 ms).
//! - `consume`: events produced first, then the daemon started with a throttled target; how fast
//!   events are consumed and durably queued.
//! - `adaptive`: a slow target that defers (429) above 100 requests/s, no `rate_limit`, a high
//!   `concurrency`: delivered requests/s, 429s and the concurrency limit over time, with adaptive
//!   concurrency on and off in the same run.

mod events;
mod harness;
mod report;
mod scenarios;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Load generator for scimflow (loopback only; starts its own SCIM server, broker and daemon).
#[derive(Debug, Parser)]
#[command(name = "scimflow-loadgen")]
pub struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    #[command(flatten)]
    common: Common,
}

/// Options every scenario takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The `scimflow` binary (default: `$SCIMFLOW_BIN`, else next to this binary).
    #[arg(long, global = true)]
    scimflow: Option<PathBuf>,
    /// Partitions of the benchmark topic.
    #[arg(long, global = true, default_value_t = 3)]
    partitions: u32,
    /// The daemon's `SCIMFLOW_LOG` filter.
    #[arg(long, global = true, default_value = "warn")]
    daemon_log: String,
    /// Keep the temporary directory (config, data dir, daemon log) after the run.
    #[arg(long, global = true)]
    keep: bool,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// scimflow end-to-end throughput vs a bare HTTP client against the same SCIM test server.
    Throughput(scenarios::throughput::Args),
    /// Time to provision at a sustained produce rate.
    Latency(scenarios::latency::Args),
    /// Consume-to-durable throughput from a pre-filled topic, delivery throttled.
    Consume(scenarios::consume::Args),
    /// Restart with a large durable backlog: time to first dispatch and peak memory.
    Backlog(scenarios::backlog::Args),
    /// Request rate against a configured `rate_limit`, over whole windows, and 429s caused by us.
    Rate(scenarios::rate::Args),
    /// Adaptive concurrency against a slow target that defers above a rate, on vs off.
    Adaptive(scenarios::adaptive::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = rt.block_on(async {
        match cli.scenario {
            Scenario::Throughput(a) => scenarios::throughput::run(&cli.common, a).await,
            Scenario::Latency(a) => scenarios::latency::run(&cli.common, a).await,
            Scenario::Consume(a) => scenarios::consume::run(&cli.common, a).await,
            Scenario::Rate(a) => scenarios::rate::run(&cli.common, a).await,
            Scenario::Backlog(a) => scenarios::backlog::run(&cli.common, a).await,
            Scenario::Adaptive(a) => scenarios::adaptive::run(&cli.common, a).await,
        }
    })?;
    println!();
    println!("{summary}");
    Ok(())
}
