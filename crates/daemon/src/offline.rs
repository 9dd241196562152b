//! Commands that read the store directly (the daemon must not hold it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use scimflow_core::audit::{AuditFilter, LogVerifier, VerifyingKey};
use scimflow_core::AuditRecord;
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
    /// Print the audit records (all, or those matching the filters) as JSON lines.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Show audit records matching the filters: a table, or JSON lines with --json.
    Query {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many records (the newest are not preferred: records come in order).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Ask the running daemon's admin API instead of opening the store (needs
        /// `SCIMFLOW_ADMIN_URL` / `--admin-url` and a token).
        #[arg(long)]
        live: bool,
        #[command(flatten)]
        admin: crate::admin_cli::AdminArgs,
    },
    /// Check the hash chain and the signed checkpoints; report the first bad record.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// The Ed25519 public key checkpoints are checked against (SPKI PEM, from `audit keygen`).
        /// Without it, the public half of the config's `audit.signing_key` is used when readable.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the signed checkpoints (sequence number, hash, time, key id, signature) as JSON lines.
    Checkpoints {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create an Ed25519 key pair for signing checkpoints: FILE (private, mode 0600) and
    /// FILE.pub (public, for `audit verify --public-key`).
    Keygen {
        /// Where to write the private key (PKCS#8 PEM); refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Which audit records to show.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only records about this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only records about this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only records with this outcome (`applied`, `failed`, `stale`, …).
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only records at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only records before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

impl FilterArgs {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            subject: self.subject.clone(),
            target: self.target.clone(),
            outcome: self.outcome.clone(),
            since: self.since,
            until: self.until,
        }
    }
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
        AuditCommand::Export { store, filter } => {
            let s = match open(&store) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let f = filter.filter();
            match print_all(|after| matching_page(s.as_ref(), &f, after)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        AuditCommand::Query {
            store,
            filter,
            limit,
            json,
            live,
            admin,
        } => {
            let records = if live {
                crate::admin_cli::audit_query(&admin, &filter.filter(), limit)
            } else {
                match open(&store) {
                    Ok(s) => query(s.as_ref(), &filter.filter(), limit),
                    Err(e) => Err(e),
                }
            };
            match records {
                Ok(records) if json => {
                    for r in &records {
                        println!("{}", serde_json::to_string(r).expect("serializes"));
                    }
                    ExitCode::SUCCESS
                }
                Ok(records) => {
                    print!("{}", audit_table(&records));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        AuditCommand::Verify {
            store,
            public_key,
            json,
        } => verify(&store, public_key.as_deref(), json),
        AuditCommand::Checkpoints { store } => {
            let s = match open(&store) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            match print_all(|after| {
                s.audit_checkpoints(after, 1000)
                    .map(|v| v.into_iter().map(|c| (c.seq, c)).collect())
                    .map_err(|e| e.to_string())
            }) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        AuditCommand::Keygen { out } => keygen(&out),
    }
}

/// One page of records after `after` that match `f` (the page may be empty before the end: the
/// position moves on regardless).
fn matching_page(
    s: &dyn ManagedStore,
    f: &AuditFilter,
    mut after: Option<u64>,
) -> Result<Vec<(u64, AuditRecord)>, String> {
    loop {
        let page = s.audit_scan(after, 1000).map_err(|e| e.to_string())?;
        let Some(last) = page.last().map(|r| r.seq) else {
            return Ok(Vec::new());
        };
        let hits: Vec<_> = page
            .into_iter()
            .filter(|r| f.matches(&r.entry))
            .map(|r| (r.seq, r))
            .collect();
        if !hits.is_empty() {
            return Ok(hits);
        }
        after = Some(last);
    }
}

fn query(s: &dyn ManagedStore, f: &AuditFilter, limit: usize) -> Result<Vec<AuditRecord>, String> {
    let mut out = Vec::new();
    let mut after = None;
    while out.len() < limit {
        let page = matching_page(s, f, after)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        out.extend(page.into_iter().map(|(_, r)| r));
    }
    out.truncate(limit);
    Ok(out)
}

/// `s` with control characters escaped, so a stored value cannot rewrite the terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Records as an aligned text table.
fn audit_table(records: &[AuditRecord]) -> String {
    let mut rows = vec![[
        "SEQ",
        "TIME",
        "SUBJECT",
        "TARGET",
        "OPERATION",
        "OUTCOME",
        "STATUS",
        "ATTEMPTS",
    ]
    .map(String::from)
    .to_vec()];
    for r in records {
        let e = &r.entry;
        rows.push(vec![
            r.seq.to_string(),
            e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            printable(&e.subject),
            e.target.clone(),
            e.operation.clone(),
            e.outcome.clone(),
            e.status.map_or_else(|| "-".into(), |s| s.to_string()),
            e.attempts.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!("{} records\n", records.len()));
    out
}

/// The key checkpoints are checked against: the flag, else the public half of the configured
/// signing key (if there is one and it can be read).
fn verifying_key(args: &StoreArgs, flag: Option<&Path>) -> Result<Option<VerifyingKey>, String> {
    if let Some(p) = flag {
        return crate::checkpoint::load_verifying_key(p)
            .map(Some)
            .map_err(|e| format!("{e:#}"));
    }
    let Some(c) = args.config.as_deref() else {
        return Ok(None);
    };
    let cfg = scimflow_config::load(c).map_err(|d| d.to_string())?;
    match &cfg.audit.signing_key {
        Some(r) => crate::checkpoint::load_signing_key(r)
            .map(|k| Some(k.verifying_key()))
            .map_err(|e| format!("{e:#}")),
        None => Ok(None),
    }
}

fn verify(args: &StoreArgs, public_key: Option<&Path>, json: bool) -> ExitCode {
    let s = match open(args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let key = match verifying_key(args, public_key) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let result = (|| -> Result<Result<_, scimflow_core::audit::ChainBreak>, String> {
        let mut checkpoints = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .audit_checkpoints(after, 1024)
                .map_err(|e| format!("a stored checkpoint cannot be read: {e}"))?;
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            checkpoints.extend(page);
        }
        let mut v = match LogVerifier::new(checkpoints, key.as_ref()) {
            Ok(v) => v,
            Err(b) => return Ok(Err(b)),
        };
        let mut after = None;
        loop {
            let page = s.audit_scan_raw(after, 1000).map_err(|e| e.to_string())?;
            let Some(&(last, _)) = page.last() else { break };
            for (pos, bytes) in page {
                let rec = serde_json::from_slice::<AuditRecord>(&bytes)
                    .map_err(|e| format!("record #{pos} cannot be decoded ({e})"));
                if let Err(b) = v.push(pos, rec) {
                    return Ok(Err(b));
                }
            }
            after = Some(last);
        }
        let assigned = s.audit_assigned().map_err(|e| e.to_string())?;
        Ok(v.finish(assigned))
    })();
    match result {
        Err(e) => fail(e),
        Ok(Ok(sum)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "intact": true,
                        "records": sum.records,
                        "checkpoints": sum.checkpoints,
                        "head_seq": sum.head_seq,
                        "head_hash": sum.head_hash,
                        "newest_checkpoint": sum.newest_checkpoint,
                        "unsigned_tail": sum.unsigned_tail(),
                    })
                );
            } else {
                let signed = match sum.newest_checkpoint {
                    Some(n) => format!(
                        "{} signed checkpoints (newest covers #{n}; {} records after it)",
                        sum.checkpoints,
                        sum.unsigned_tail()
                    ),
                    None => "no signed checkpoints".to_owned(),
                };
                println!(
                    "audit chain intact: {} records, {signed}, head {}",
                    sum.records, sum.head_hash
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Err(b)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "intact": false,
                        "seq": b.seq,
                        "kind": b.kind.as_str(),
                        "reason": b.reason,
                    })
                );
            } else {
                eprintln!("audit log TAMPERED: first bad {b}");
            }
            ExitCode::FAILURE
        }
    }
}

fn keygen(out: &Path) -> ExitCode {
    let public_path = {
        let mut p = out.as_os_str().to_owned();
        p.push(".pub");
        PathBuf::from(p)
    };
    for p in [out, public_path.as_path()] {
        if p.exists() {
            return fail(format!("{} exists; not overwriting a key", p.display()));
        }
    }
    let (private, public, id) = match crate::checkpoint::generate() {
        Ok(k) => k,
        Err(e) => return fail(format!("{e:#}")),
    };
    let write_private = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)?;
        f.write_all(private.as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write_private() {
        return fail(format!("cannot write {}: {e}", out.display()));
    }
    if let Err(e) = std::fs::write(&public_path, public) {
        return fail(format!("cannot write {}: {e}", public_path.display()));
    }
    println!(
        "wrote {} (private, keep it secret: `audit: {{ signing_key: {{ file: {} }} }}`) and {} (public, for `scimflow audit verify --public-key`); key id {id}",
        out.display(),
        out.display(),
        public_path.display()
    );
    ExitCode::SUCCESS
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

/// One queued operation as JSON (for `scimflow queue`): position, what, and its retry state when
/// it is parked.
pub fn queued_json(q: &scimflow_core::QueuedOp) -> serde_json::Value {
    let mut v = serde_json::json!({
        "seq": q.seq,
        "target": q.op.target,
        "subject": q.op.subject,
        "operation": q.op.kind.as_str(),
        "group": q.op.group,
        "event_id": q.op.event_id,
        "op_id": q.op.id,
        "planned_at": q.op.planned_at,
    });
    if let Some(r) = &q.op.retry {
        v["attempts"] = r.attempts.into();
        v["parks"] = r.parks.into();
        v["first_failure"] = serde_json::json!(r.first_failure);
        v["next_try"] = serde_json::json!(r.next_try);
        v["last_error"] = r.last_error.clone().into();
    }
    v
}

/// `scimflow queue --target T`: a stopped daemon's queued operations for one target, in delivery
/// order, as JSON lines (parked ones with their attempts and next try); at most `limit`.
pub fn queue(args: &StoreArgs, target: &str, limit: usize) -> ExitCode {
    let s = match open(args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut cursor = None;
    let mut left = limit;
    while left > 0 {
        match s.queue_scan(target, cursor, left.min(1000)) {
            Ok(items) if items.is_empty() => break,
            Ok(items) => {
                for q in &items {
                    println!("{}", queued_json(q));
                    cursor = Some(q.seq);
                }
                left -= items.len();
            }
            Err(e) => return fail(e.to_string()),
        }
    }
    ExitCode::SUCCESS
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
