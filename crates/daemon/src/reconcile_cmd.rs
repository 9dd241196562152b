//! `scimflow reconcile`: one reconciliation run of one target, offline (the daemon must not be
//! running on the same data directory). Reads the store and the live target, prints the summary
//! (or the JSON report), writes the report file, and with `--repair` commits the corrective
//! operations to the target's durable queue (`Enqueue` + an audit record `reconcile_queued` each,
//! in atomic batches) for the next `scimflow run` to deliver.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;

use scimflow_core::store::Mutation;
use scimflow_core::AuditEntry;
use scimflow_delivery::client::ScimClient;
use scimflow_reconcile::{Options, Outcome, Progress};
use scimflow_store::StoreOptions;

use crate::offline;

/// Audit outcome of a corrective operation put in the queue by `scimflow reconcile --repair`.
pub const OUTCOME_QUEUED: &str = "reconcile_queued";

/// Operations per committed batch when queueing repairs.
const REPAIR_BATCH: usize = 500;

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The config file (targets, mapping, data_dir).
    #[arg(long, short, env = "SCIMFLOW_CONFIG")]
    pub config: PathBuf,
    /// Directory of the durable store (overrides the config's `data_dir`).
    #[arg(long, env = "SCIMFLOW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The target to reconcile.
    #[arg(long, short)]
    pub target: String,
    /// Queue the corrective operations (delivered by the next `scimflow run`).
    #[arg(long)]
    pub repair: bool,
    /// List the corrective operations without queueing anything (wins over --repair).
    #[arg(long)]
    pub dry_run: bool,
    /// Write the JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the JSON report instead of the summary.
    #[arg(long)]
    pub json: bool,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

pub fn reconcile(args: ReconcileArgs) -> ExitCode {
    let (config, mapping) = match crate::tooling::load(&args.config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(target) = config.targets.iter().find(|t| t.name == args.target) else {
        let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        return fail(format!(
            "no target `{}` in {} (targets: {})",
            args.target,
            args.config.display(),
            names.join(", ")
        ));
    };
    let dir = match offline::data_dir(args.data_dir.clone(), Some(&args.config)) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    if !dir.exists() {
        return fail(format!("no store at {}", dir.display()));
    }
    let store =
        match scimflow_store::open(offline::detect_engine(&dir), &dir, StoreOptions::default()) {
            Ok(s) => s,
            Err(e) => {
                return fail(format!(
                    "cannot open the store at {} (is the daemon running?): {e}",
                    dir.display()
                ))
            }
        };
    let client = match ScimClient::new(target) {
        Ok(c) => c,
        Err(e) => return fail(format!("building the HTTP client failed: {e}")),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("starting the runtime failed: {e}")),
    };
    let now = Utc::now();
    let opts = Options::new(run_id(now), now);
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |p: Progress| {
        let line = match p {
            Progress::Subjects { read } => {
                format!("reconcile {}: {read} subject(s) read", args.target)
            }
            Progress::Users { read, total } => format!(
                "reconcile {}: {}{read}/{} account(s) scanned",
                args.target,
                bar(read, total),
                total.map_or("?".to_owned(), |t| t.to_string())
            ),
            Progress::Groups { read, total } => format!(
                "reconcile {}: {}{read}/{} group(s) scanned",
                args.target,
                bar(read, total),
                total.map_or("?".to_owned(), |t| t.to_string())
            ),
        };
        if terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    };
    let result = rt.block_on(scimflow_reconcile::reconcile(
        store.as_ref(),
        &mapping,
        target,
        &client,
        &opts,
        &mut progress,
    ));
    if terminal {
        eprintln!();
    }
    let Outcome { report, operations } = match result {
        Ok(o) => o,
        Err(e) => {
            store.close();
            return fail(e);
        }
    };
    if let Some(path) = &args.report {
        if let Err(e) = write_report(path, &report) {
            store.close();
            return fail(format!(
                "writing the report to {} failed: {e}",
                path.display()
            ));
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        );
    } else {
        println!("{}", report.human_summary());
    }
    let mut code = ExitCode::SUCCESS;
    if args.dry_run {
        let out = if args.json {
            &mut std::io::stderr() as &mut dyn std::io::Write
        } else {
            &mut std::io::stdout() as &mut dyn std::io::Write
        };
        let _ = writeln!(
            out,
            "dry run: {} corrective operation(s), none queued",
            operations.len()
        );
        for op in &operations {
            let _ = writeln!(
                out,
                "  {} {} {}{}",
                op.kind.as_str(),
                op.subject,
                op.id,
                op.group
                    .as_deref()
                    .map(|g| format!(" (group {g})"))
                    .unwrap_or_default()
            );
        }
    } else if args.repair {
        match rt.block_on(queue(store.as_ref(), &operations, &opts.run_id)) {
            Ok(()) => eprintln!(
                "queued {} corrective operation(s) for target `{}`; the next `scimflow run` delivers them",
                operations.len(),
                args.target
            ),
            Err(e) => code = fail(format!("queueing the corrective operations failed: {e}")),
        }
    }
    store.close();
    code
}

/// `YYYYMMDDTHHMMSSZ-xxxxxx`: sortable, and unique enough for operation ids of one target.
/// `[#######-------------]  35% ` for `read` of `total` (empty when the total is unknown).
fn bar(read: u64, total: Option<u64>) -> String {
    const WIDTH: u64 = 24;
    match total {
        Some(t) if t > 0 => {
            let done = (read.min(t) * WIDTH / t) as usize;
            format!(
                "[{}{}] {:>3}% ",
                "#".repeat(done),
                "-".repeat(WIDTH as usize - done),
                read.min(t) * 100 / t
            )
        }
        _ => String::new(),
    }
}

pub(crate) fn run_id(now: chrono::DateTime<Utc>) -> String {
    let mut r = [0u8; 3];
    let suffix = match getrandom::fill(&mut r) {
        Ok(()) => hex(&r),
        Err(_) => format!("{:06x}", now.timestamp_subsec_micros()),
    };
    format!("{}-{suffix}", now.format("%Y%m%dT%H%M%SZ"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Commits every operation to its queue with an audit record, in atomic batches.
pub(crate) async fn queue(
    store: &dyn scimflow_core::store::Store,
    ops: &[scimflow_core::Operation],
    run_id: &str,
) -> Result<(), scimflow_core::store::StoreError> {
    for chunk in ops.chunks(REPAIR_BATCH) {
        let mut batch = Vec::with_capacity(chunk.len() * 2);
        for op in chunk {
            let attributes = op
                .resource
                .as_object()
                .map(|m| {
                    m.keys()
                        .filter(|k| *k != "schemas")
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            batch.push(Mutation::Audit(AuditEntry {
                event_id: op.event_id.clone(),
                subject: op.subject.clone(),
                target: op.target.clone(),
                op_id: op.id.clone(),
                operation: op.kind.as_str().to_owned(),
                attributes,
                detail: Some(format!("reconcile run {run_id}")),
                ..AuditEntry::note(OUTCOME_QUEUED, &op.mapping_version)
            }));
            batch.push(Mutation::Enqueue(op.clone()));
        }
        store.commit(batch).await?;
    }
    Ok(())
}

/// Writes the report next to its final name, then renames it into place.
fn write_report(path: &Path, report: &scimflow_reconcile::Report) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer_pretty(&mut f, report)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod bar_tests {
    #[test]
    fn the_bar_fills_with_the_share_read() {
        assert_eq!(
            super::bar(0, Some(10)),
            format!("[{}]   0% ", "-".repeat(24))
        );
        assert_eq!(
            super::bar(5, Some(10)),
            format!("[{}{}]  50% ", "#".repeat(12), "-".repeat(12))
        );
        assert_eq!(
            super::bar(12, Some(10)),
            format!("[{}] 100% ", "#".repeat(24))
        );
        assert_eq!(super::bar(3, None), "");
    }
}
