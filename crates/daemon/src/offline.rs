//! Commands that read the store directly (the daemon must not hold it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use scimflow_core::audit::{verify_chain, GENESIS_HASH};
use std::sync::Arc;

use scimflow_store::{Engine, ManagedStore, StoreOptions};

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The config file (for its data_dir).
    #[arg(long, short, env = "SCIMFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the durable store.
    #[arg(long, env = "SCIMFLOW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print every audit record as JSON lines.
    Export {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check the hash chain; report the first bad record.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The data directory: the flag, else the config's `data_dir`, else `./data`.
pub fn data_dir(flag: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(c) = config {
        let cfg = scimflow_config::load(c).map_err(|d| d.to_string())?;
        if let Some(d) = cfg.data_dir {
            return Ok(d);
        }
    }
    Ok(PathBuf::from("data"))
}

/// The engine whose data is in `dir` (redb keeps one file, `scimflow.redb`; sled a directory).
pub fn detect_engine(dir: &Path) -> Engine {
    if dir.join(scimflow_store::REDB_FILE).exists() {
        Engine::Redb
    } else {
        Engine::Sled
    }
}

fn open(args: &StoreArgs) -> Result<Arc<dyn ManagedStore>, String> {
    let dir = data_dir(args.data_dir.clone(), args.config.as_deref())?;
    if !dir.exists() {
        return Err(format!("no store at {}", dir.display()));
    }
    scimflow_store::open(detect_engine(&dir), &dir, StoreOptions::default()).map_err(|e| {
        format!(
            "cannot open the store at {} (is the daemon running?): {e}",
            dir.display()
        )
    })
}

fn fail(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

/// Prints every item as a JSON line; stops quietly when stdout is closed (e.g. piped into `head`).
fn print_all<T: serde::Serialize>(
    mut page: impl FnMut(Option<u64>) -> Result<Vec<(u64, T)>, String>,
) -> Result<u64, String> {
    use std::io::Write as _;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after = None;
    let mut n = 0;
    loop {
        let items = page(after)?;
        if items.is_empty() {
            let _ = out.flush();
            return Ok(n);
        }
        for (pos, item) in items {
            let line = serde_json::to_string(&item).expect("serializes");
            if writeln!(out, "{line}").is_err() {
                return Ok(n);
            }
            after = Some(pos);
            n += 1;
        }
    }
}

pub fn audit(cmd: AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Export { store } => {
            let s = match open(&store) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            match print_all(|after| {
                s.audit_scan(after, 1000)
                    .map(|v| v.into_iter().map(|r| (r.seq, r)).collect())
                    .map_err(|e| e.to_string())
            }) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        AuditCommand::Verify { store } => {
            let s = match open(&store) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let mut after = None;
            let mut prev = GENESIS_HASH.to_owned();
            let mut total = 0;
            loop {
                let page = match s.audit_scan(after, 1000) {
                    Ok(p) => p,
                    Err(e) => return fail(e.to_string()),
                };
                let Some(last) = page.last().cloned() else {
                    break;
                };
                match verify_chain(&page, after.map_or(1, |a| a + 1), &prev) {
                    Ok(n) => total += n,
                    Err(b) => {
                        eprintln!("audit chain broken at record #{}: {}", b.seq, b.reason);
                        return ExitCode::FAILURE;
                    }
                }
                after = Some(last.seq);
                prev = last.hash;
            }
            println!("audit chain intact: {total} records, head {prev}");
            ExitCode::SUCCESS
        }
    }
}

pub fn rejected(args: &StoreArgs) -> ExitCode {
    let s = match open(args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match print_all(|after| s.rejected_scan(after, 1000).map_err(|e| e.to_string())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

pub fn dead_letters(args: &StoreArgs) -> ExitCode {
    let s = match open(args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match print_all(|after| s.dead_letter_scan(after, 1000).map_err(|e| e.to_string())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// A scheduled operation as shown to operators: when, what, for whom (no attribute values).
pub fn scheduled_json(s: &scimflow_core::ScheduledOp) -> serde_json::Value {
    serde_json::json!({
        "due": s.due,
        "target": s.op.target,
        "subject": s.op.subject,
        "operation": s.op.kind.as_str(),
        "group": s.op.group,
        "slot": s.slot,
        "event_id": s.op.event_id,
        "op_id": s.op.id,
    })
}

/// `scimflow scheduled`: operations held for a future time, earliest first, as JSON lines.
pub fn scheduled(args: &StoreArgs, target: Option<&str>) -> ExitCode {
    let s = match open(args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match s.scheduled_list(target, usize::MAX) {
        Ok(items) => {
            for i in &items {
                println!("{}", scheduled_json(i));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}
