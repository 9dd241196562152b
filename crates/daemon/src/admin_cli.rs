//! The CLI side of the admin API: `scimflow targets …`, `scimflow dlq list|redrive|discard`,
//! `scimflow provision`. Human tables by default, `--json` for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Where the admin API is and how to authenticate.
#[derive(Debug, Args, Clone)]
pub struct AdminArgs {
    /// Base URL of the daemon's admin listener (`admin.listen`; default http://127.0.0.1:8081).
    #[arg(long, env = "SCIMFLOW_ADMIN_URL", global = true)]
    pub admin_url: Option<String>,
    /// A file holding the admin bearer token (else `$SCIMFLOW_ADMIN_TOKEN`).
    #[arg(long, env = "SCIMFLOW_ADMIN_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// Stop starting operations for TARGET (in-flight ones finish; new work keeps queueing).
    Pause { target: String },
    /// Start operations for TARGET again.
    Resume { target: String },
    /// Reconcile TARGET now in the running daemon and wait for the result (drift summary).
    Reconcile {
        target: String,
        /// Queue the corrective operations (they go through normal delivery and the deletion guard).
        #[arg(long)]
        repair: bool,
        /// Return once the run started instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
    },
}

/// Which dead letters.
#[derive(Debug, Args, Clone, Default)]
pub struct DlqFilter {
    /// Dead letter sequence numbers (repeatable).
    #[arg(long = "seq")]
    pub seqs: Vec<u64>,
    #[arg(long)]
    pub target: Option<String>,
    /// Error class: retryable, rate_limited, auth, conflict, permanent.
    #[arg(long)]
    pub class: Option<String>,
    #[arg(long)]
    pub subject: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (from the running daemon).
    List {
        #[command(flatten)]
        filter: DlqFilter,
        #[arg(long)]
        json: bool,
    },
    /// Plan the selected dead letters' subjects again from their latest state and queue the result.
    Redrive {
        #[command(flatten)]
        filter: DlqFilter,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Drop the selected dead letters (audited).
    Discard {
        #[command(flatten)]
        filter: DlqFilter,
        #[arg(long)]
        all: bool,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    rt: tokio::runtime::Runtime,
}

impl Client {
    fn new(args: &AdminArgs) -> Result<Client, String> {
        let token = match &args.token_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the token file {}: {e}", p.display()))?
                .trim()
                .to_owned(),
            None => std::env::var("SCIMFLOW_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or("no admin token: pass --token-file or set SCIMFLOW_ADMIN_TOKEN")?,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            http,
            base: args
                .admin_url
                .as_deref()
                .unwrap_or("http://127.0.0.1:8081")
                .trim_end_matches('/')
                .to_owned(),
            token,
            rt,
        })
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let mut req = self.http.request(method, &url).bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| format!("{url}: {}", without_url(&e)))?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                Ok(v)
            } else {
                Err(format!(
                    "{url}: {status}: {}",
                    v["error"].as_str().unwrap_or("(no detail)")
                ))
            }
        })
    }
}

/// A reqwest error's reason without the URL it repeats.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" for url ({u})"), "");
    }
    if e.is_connect() {
        s.push_str(" (is the daemon running with an `admin:` section?)");
    }
    s
}

fn fail(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

/// Rows as an aligned text table (first row = header).
pub fn table(rows: &[Vec<String>]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let widths: Vec<usize> = (0..first.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => crate::offline::printable(s),
        other => other.to_string(),
    }
}

/// `scimflow targets [pause|resume T]`.
pub fn targets(args: &AdminArgs, cmd: Option<TargetsCommand>, json_out: bool) -> ExitCode {
    let c = match Client::new(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Some(TargetsCommand::Reconcile {
        target,
        repair,
        no_wait,
    }) = &cmd
    {
        return reconcile(&c, target, *repair, *no_wait, json_out);
    }
    let (path, verb) = match &cmd {
        None => (None, ""),
        Some(TargetsCommand::Reconcile { .. }) => unreachable!("handled above"),
        Some(TargetsCommand::Pause { target }) => {
            (Some(format!("/api/v1/targets/{target}/pause")), "paused")
        }
        Some(TargetsCommand::Resume { target }) => {
            (Some(format!("/api/v1/targets/{target}/resume")), "resumed")
        }
    };
    if let Some(p) = path {
        return match c.call(reqwest::Method::POST, &p, None) {
            Ok(v) if json_out => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Ok(v) => {
                let changed = v["changed"].as_bool().unwrap_or(false);
                println!(
                    "{} {}{verb}",
                    cell(&v["target"]),
                    if changed { "" } else { "was already " }
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    match c.call(reqwest::Method::GET, "/api/v1/targets", None) {
        Ok(v) if json_out => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let mut rows = vec![[
                "TARGET",
                "QUEUE",
                "OLDEST(s)",
                "PAUSED",
                "STOPPED",
                "BREAKER",
                "APPLIED",
                "NOOP",
                "FAILED",
            ]
            .map(String::from)
            .to_vec()];
            for t in v["targets"].as_array().into_iter().flatten() {
                rows.push(vec![
                    cell(&t["name"]),
                    cell(&t["queue_depth"]),
                    format!("{:.1}", t["oldest_age_seconds"].as_f64().unwrap_or(0.0)),
                    cell(&t["paused"]),
                    cell(&t["stopped"]),
                    cell(&t["breaker"]),
                    cell(&t["applied"]),
                    cell(&t["noop"]),
                    cell(&t["failed"]),
                ]);
            }
            print!("{}", table(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn selector(f: &DlqFilter, all: bool) -> Value {
    let mut s = json!({});
    if !f.seqs.is_empty() {
        s["seqs"] = json!(f.seqs);
    }
    for (k, v) in [
        ("target", &f.target),
        ("class", &f.class),
        ("subject", &f.subject),
    ] {
        if let Some(v) = v {
            s[k] = json!(v);
        }
    }
    if all {
        s["all"] = json!(true);
    }
    s
}

/// `scimflow dlq list|redrive|discard`.
pub fn dlq(args: &AdminArgs, cmd: DlqCommand) -> ExitCode {
    let c = match Client::new(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match cmd {
        DlqCommand::List { filter, json } => {
            let mut q = Vec::new();
            for (k, v) in [
                ("target", &filter.target),
                ("class", &filter.class),
                ("subject", &filter.subject),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", url_encode(v)));
                }
            }
            let path = format!("/api/v1/dead-letters?{}", q.join("&"));
            match c.call(reqwest::Method::GET, &path, None) {
                Ok(v) => {
                    let items: Vec<&Value> = v["dead_letters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|d| {
                            filter.seqs.is_empty()
                                || d["seq"].as_u64().is_some_and(|s| filter.seqs.contains(&s))
                        })
                        .collect();
                    if json {
                        for d in items {
                            println!("{d}");
                        }
                    } else {
                        let mut rows = vec![[
                            "SEQ",
                            "FAILED AT",
                            "TARGET",
                            "SUBJECT",
                            "OPERATION",
                            "CLASS",
                            "STATUS",
                            "DETAIL",
                        ]
                        .map(String::from)
                        .to_vec()];
                        for d in &items {
                            let mut detail = cell(&d["detail"]);
                            if detail.chars().count() > 60 {
                                detail = detail.chars().take(57).collect::<String>() + "...";
                            }
                            rows.push(vec![
                                cell(&d["seq"]),
                                cell(&d["failed_at"]),
                                cell(&d["target"]),
                                cell(&d["subject"]),
                                cell(&d["operation"]),
                                cell(&d["class"]),
                                cell(&d["status"]),
                                detail,
                            ]);
                        }
                        print!("{}", table(&rows));
                        println!("{} dead letters", items.len());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        DlqCommand::Redrive { filter, all } => {
            match c.call(
                reqwest::Method::POST,
                "/api/v1/dead-letters/redrive",
                Some(selector(&filter, all)),
            ) {
                Ok(v) => {
                    println!(
                        "redriven: {} dead letter(s), {} operation(s) queued",
                        cell(&v["redriven"]),
                        cell(&v["operations"])
                    );
                    let failed = v["failed"].as_array().cloned().unwrap_or_default();
                    for f in &failed {
                        eprintln!("not redriven: #{}: {}", cell(&f["seq"]), cell(&f["error"]));
                    }
                    if failed.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => fail(e),
            }
        }
        DlqCommand::Discard { filter, all } => {
            match c.call(
                reqwest::Method::POST,
                "/api/v1/dead-letters/discard",
                Some(selector(&filter, all)),
            ) {
                Ok(v) => {
                    println!("discarded: {} dead letter(s)", cell(&v["discarded"]));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

/// `scimflow provision SUBJECT [--target T]`.
pub fn provision(args: &AdminArgs, subject: &str, target: Option<&str>) -> ExitCode {
    let c = match Client::new(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let body = target.map(|t| json!({"target": t}));
    let path = format!("/api/v1/subjects/{}/provision", url_encode(subject));
    match c.call(reqwest::Method::POST, &path, body) {
        Ok(v) => {
            println!(
                "{}: {} operation(s) queued for {}",
                cell(&v["subject"]),
                cell(&v["operations"]),
                v["targets"]
                    .as_array()
                    .map(|t| t.iter().map(cell).collect::<Vec<_>>().join(", "))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "no target".into())
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum DeletionsCommand {
    /// Send the selected staged deprovisionings (each subject is planned again from its latest state).
    Approve {
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// Every staged deletion.
        #[arg(long)]
        all: bool,
    },
    /// Drop the selected staged deprovisionings: the accounts stay as they are.
    Reject {
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

/// `scimflow deletions [approve|reject]`: what the deletion guard staged.
pub fn deletions(
    args: &AdminArgs,
    cmd: Option<DeletionsCommand>,
    target: Option<&str>,
    json_out: bool,
) -> ExitCode {
    let c = match Client::new(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let select = |target: &Option<String>, subject: &Option<String>, all: bool| {
        let mut s = json!({});
        if let Some(t) = target {
            s["target"] = json!(t);
        }
        if let Some(x) = subject {
            s["subject"] = json!(x);
        }
        if all {
            s["all"] = json!(true);
        }
        s
    };
    match cmd {
        None => {
            let path = match target {
                Some(t) => format!("/api/v1/deletions?target={}", url_encode(t)),
                None => "/api/v1/deletions".to_owned(),
            };
            match c.call(reqwest::Method::GET, &path, None) {
                Ok(v) => {
                    let items = v["staged"].as_array().cloned().unwrap_or_default();
                    if json_out {
                        for i in &items {
                            println!("{i}");
                        }
                    } else {
                        let mut rows =
                            vec![["TARGET", "SUBJECT", "OPERATION", "PLANNED AT", "OP ID"]
                                .map(String::from)
                                .to_vec()];
                        for i in &items {
                            rows.push(vec![
                                cell(&i["target"]),
                                cell(&i["subject"]),
                                cell(&i["operation"]),
                                cell(&i["planned_at"]),
                                cell(&i["op_id"]),
                            ]);
                        }
                        print!("{}", table(&rows));
                        println!("{} staged deletions", items.len());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Some(DeletionsCommand::Approve {
            target,
            subject,
            all,
        }) => match c.call(
            reqwest::Method::POST,
            "/api/v1/deletions/approve",
            Some(select(&target, &subject, all)),
        ) {
            Ok(v) => {
                println!("approved: {} staged deletion(s)", cell(&v["approved"]));
                let failed = v["failed"].as_array().cloned().unwrap_or_default();
                for f in &failed {
                    eprintln!(
                        "not approved: {} on {}: {}",
                        cell(&f["subject"]),
                        cell(&f["target"]),
                        cell(&f["error"])
                    );
                }
                if failed.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => fail(e),
        },
        Some(DeletionsCommand::Reject {
            target,
            subject,
            all,
        }) => match c.call(
            reqwest::Method::POST,
            "/api/v1/deletions/reject",
            Some(select(&target, &subject, all)),
        ) {
            Ok(v) => {
                println!("rejected: {} staged deletion(s)", cell(&v["rejected"]));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}

/// Starts a reconciliation run and (unless `no_wait`) polls until it finished, with a progress
/// line on a terminal.
fn reconcile(c: &Client, target: &str, repair: bool, no_wait: bool, json_out: bool) -> ExitCode {
    use std::io::{IsTerminal as _, Write as _};
    let started = match c.call(
        reqwest::Method::POST,
        &format!("/api/v1/targets/{}/reconcile", url_encode(target)),
        Some(json!({"repair": repair})),
    ) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let run_id = started["run_id"].as_str().unwrap_or_default().to_owned();
    if no_wait {
        println!("reconciliation {run_id} of {target} started");
        return ExitCode::SUCCESS;
    }
    let tty = std::io::stderr().is_terminal();
    let begun = std::time::Instant::now();
    let spinner = ['|', '/', '-', '\\'];
    let mut i = 0;
    loop {
        let v = match c.call(reqwest::Method::GET, "/api/v1/reconcile", None) {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        let last = &v["last"][target];
        if last["run_id"] == run_id.as_str() {
            if tty {
                eprint!("\r\x1b[K");
            }
            if json_out {
                println!("{last}");
            } else {
                if let Some(s) = last["summary"].as_str() {
                    print!("{s}");
                    if !s.ends_with('\n') {
                        println!();
                    }
                }
                if repair {
                    println!(
                        "queued {} corrective operation(s)",
                        cell(&last["queued_operations"])
                    );
                }
            }
            return match last["error"].as_str() {
                Some(e) => fail(format!("reconciliation {run_id} failed: {e}")),
                None => ExitCode::SUCCESS,
            };
        }
        if tty {
            eprint!(
                "\r{} reconciling {target} ({:.0} s)",
                spinner[i % spinner.len()],
                begun.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            i += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// `scimflow audit query --live`: the records matching `f` from the running daemon
/// (`GET /api/v1/audit`, paged with `after`), at most `limit`.
pub fn audit_query(
    args: &AdminArgs,
    f: &scimflow_core::audit::AuditFilter,
    limit: usize,
) -> Result<Vec<scimflow_core::AuditRecord>, String> {
    let c = Client::new(args)?;
    let mut params: Vec<String> = Vec::new();
    for (k, v) in [
        ("subject", f.subject.clone()),
        ("target", f.target.clone()),
        ("outcome", f.outcome.clone()),
        ("since", f.since.map(|t| t.to_rfc3339())),
        ("until", f.until.map(|t| t.to_rfc3339())),
    ] {
        if let Some(v) = v {
            params.push(format!("{k}={}", url_encode(&v)));
        }
    }
    let mut out = Vec::new();
    let mut after: Option<u64> = None;
    while out.len() < limit {
        let mut q = params.clone();
        q.push(format!("limit={}", (limit - out.len()).min(1000)));
        if let Some(a) = after {
            q.push(format!("after={a}"));
        }
        let v = c.call(
            reqwest::Method::GET,
            &format!("/api/v1/audit?{}", q.join("&")),
            None,
        )?;
        let page: Vec<scimflow_core::AuditRecord> = serde_json::from_value(v["records"].clone())
            .map_err(|e| format!("the daemon answered records this build cannot read: {e}"))?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        after = Some(last);
        out.extend(page);
    }
    out.truncate(limit);
    Ok(out)
}
