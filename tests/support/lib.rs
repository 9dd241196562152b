//! Support for the end-to-end suite: the real `scimflow` binary as a child process, a deterministic
//! HR event generator, and a checker for the end state on a SCIM server.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub use scimflow_testkit::procs::{Scim2Server, Tansu};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The `scimflow` binary: `$SCIMFLOW_BIN`, else the one next to this test binary's target dir.
pub fn scimflow_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SCIMFLOW_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/scimflow
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("scimflow");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build -p scimflow`) or set SCIMFLOW_BIN",
        bin.display()
    );
    bin
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The admin API's `http://127.0.0.1:PORT`, when the config has an `admin:` section.
    pub admin_url: Option<String>,
    pub data_dir: PathBuf,
    stderr_log: PathBuf,
}

impl Daemon {
    /// Starts `scimflow run --config CONFIG --listen 127.0.0.1:0 --data-dir DATA` with `env`, and
    /// waits for its "listening" line.
    pub fn start(config: &Path, data_dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Daemon> {
        let stderr_log = data_dir.with_extension(format!("{}.log", std::process::id()));
        Self::start_logging_to(config, data_dir, env, &stderr_log)
    }

    /// Like [`start`](Self::start), with the daemon's stderr appended to `stderr_log` (e.g. off a
    /// filesystem the test fills up, so the log itself is not lost).
    pub fn start_logging_to(
        config: &Path,
        data_dir: &Path,
        env: &[(&str, String)],
        stderr_log: &Path,
    ) -> anyhow::Result<Daemon> {
        let stderr_log = stderr_log.to_owned();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)?;
        let mut cmd = Command::new(scimflow_bin());
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("SCIMFLOW_CONFIG")
            .env("SCIMFLOW_LOG", "info,scimflow_delivery=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("cannot start scimflow")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The admin line (if any) comes first.
            let mut admin = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("scimflow admin listening on ") {
                    admin = Some(url.to_owned());
                } else if let Some(url) = line.strip_prefix("scimflow listening on ") {
                    let _ = tx.send((url.to_owned(), admin.clone()));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((url, admin_url)) => Ok(Daemon {
                child,
                url,
                admin_url,
                data_dir: data_dir.to_owned(),
                stderr_log,
            }),
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
                bail!("scimflow did not start listening within 30 s; its log:\n{log}")
            }
        }
    }

    /// SIGKILL: no chance to flush or commit anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait()? {
                anyhow::ensure!(
                    s.success(),
                    "scimflow exited with {s}; log:\n{}",
                    self.log()
                );
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "scimflow did not stop within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// `GET /api/v1/targets` → name → stats.
    pub async fn targets(&self) -> anyhow::Result<HashMap<String, Value>> {
        let v: Value = reqwest::get(format!("{}/api/v1/targets", self.url))
            .await?
            .json()
            .await?;
        Ok(v["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| (t["name"].as_str().unwrap_or_default().to_owned(), t.clone()))
            .collect())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an offline `scimflow` subcommand (e.g. `audit export`) on a data directory; returns stdout.
pub fn scimflow_offline(args: &[&str], data_dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(scimflow_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "scimflow {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// JSON lines → values.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// One person's expected final state.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: String,
    pub first: String,
    pub last: String,
    pub email: String,
    pub department: String,
    pub title: String,
    pub active: bool,
}

/// A deterministic HR scenario: `people` hires, then `updates` more events (1–3 per person; every fifth
/// person is terminated by their last event), interleaved across people; each person's events keep their
/// order and have strictly increasing times.
pub struct Scenario {
    pub events: Vec<Value>,
    pub expected: BTreeMap<String, Person>,
}

impl Scenario {
    pub fn hr(people: usize, total_events: usize, seed: u64) -> Scenario {
        assert!(total_events >= people * 2 && total_events <= people * 4);
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // Extra events per person: at least 1, at most 3, summing to total - people.
        let mut extra = vec![1usize; people];
        let mut left = total_events - 2 * people;
        while left > 0 {
            let i = (next() % people as u64) as usize;
            if extra[i] < 3 {
                extra[i] += 1;
                left -= 1;
            }
        }
        let depts = ["Engineering", "Research", "Sales", "Finance", "Support"];
        let titles = [
            "Engineer",
            "Senior Engineer",
            "Manager",
            "Analyst",
            "Director",
        ];
        let mut per_person: Vec<Vec<Value>> = Vec::new();
        let mut expected = BTreeMap::new();
        let mut n = 0;
        for (i, &k) in extra.iter().enumerate() {
            let id = format!("E{:05}", 10_000 + i);
            let first = format!("First{i}");
            let last = format!("Last{i}");
            let mut p = Person {
                id: id.clone(),
                first: first.clone(),
                last: last.clone(),
                email: format!("first{i}.last{i}@example.com"),
                department: depts[i % depts.len()].into(),
                title: titles[0].into(),
                active: true,
            };
            let mut evs = Vec::new();
            let mk = |n: &mut usize, kind: &str, p: &Person, step: usize| {
                *n += 1;
                json!({
                    "specversion": "1.0",
                    "id": format!("evt-{:06}", *n),
                    "source": "urn:example:hr",
                    "type": kind,
                    "subject": p.id,
                    "time": format!("2026-12-01T{:02}:{:02}:00Z", 8 + step, (i % 60)),
                    "datacontenttype": "application/json",
                    "data": {
                        "employeeId": p.id, "email": p.email, "firstName": p.first, "lastName": p.last,
                        "department": p.department, "title": p.title,
                        "status": if p.active { "active" } else { "terminated" }
                    }
                })
            };
            evs.push(mk(&mut n, "hr.worker.hired", &p, 0));
            for step in 1..=k {
                let terminate = i % 5 == 0 && step == k;
                if terminate {
                    p.active = false;
                    evs.push(mk(&mut n, "hr.worker.terminated", &p, step));
                } else {
                    p.title = titles[(step + i) % titles.len()].into();
                    p.department = depts[(step * 2 + i) % depts.len()].into();
                    evs.push(mk(&mut n, "hr.worker.updated", &p, step));
                }
            }
            expected.insert(id, p);
            per_person.push(evs);
        }
        // Interleave: repeatedly take the next event of a random person who has any left.
        let mut cursors = vec![0usize; people];
        let mut events = Vec::with_capacity(total_events);
        while events.len() < total_events {
            let i = (next() % people as u64) as usize;
            if cursors[i] < per_person[i].len() {
                events.push(per_person[i][cursors[i]].clone());
                cursors[i] += 1;
            }
        }
        Scenario { events, expected }
    }
}

/// Checks the users on a SCIM server against the expected people: exactly one account per person, no
/// other accounts, every mapped attribute as expected. Returns a list of differences (empty = equal).
pub fn diff_users(users: &[Value], expected: &BTreeMap<String, Person>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for u in users {
        let ext = u["externalId"].as_str().unwrap_or_default().to_owned();
        *seen.entry(ext.clone()).or_default() += 1;
        let Some(p) = expected.get(&ext) else {
            problems.push(format!("unexpected account {ext:?} ({})", u["userName"]));
            continue;
        };
        let checks = [
            ("userName", u["userName"].clone(), json!(p.email)),
            ("active", u["active"].clone(), json!(p.active)),
            (
                "name.givenName",
                u["name"]["givenName"].clone(),
                json!(p.first),
            ),
            (
                "name.familyName",
                u["name"]["familyName"].clone(),
                json!(p.last),
            ),
            (
                "displayName",
                u["displayName"].clone(),
                json!(format!("{} {}", p.first, p.last)),
            ),
            ("title", u["title"].clone(), json!(p.title)),
            (
                "emails[0].value",
                u["emails"][0]["value"].clone(),
                json!(p.email),
            ),
            (
                "department",
                u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"]
                    .clone(),
                json!(p.department),
            ),
        ];
        for (what, got, want) in checks {
            if got != want {
                problems.push(format!("{ext}: {what} is {got}, expected {want}"));
            }
        }
    }
    for (ext, n) in &seen {
        if *n > 1 {
            problems.push(format!("{ext}: {n} accounts (duplicates)"));
        }
    }
    for id in expected.keys() {
        if !seen.contains_key(id) {
            problems.push(format!("{id}: no account"));
        }
    }
    problems
}

/// Polls until the SCIM server holds exactly the expected users and the daemon's queues are empty.
pub async fn wait_for_end_state(
    scim: &Scim2Server,
    daemon: &Daemon,
    expected: &BTreeMap<String, Person>,
    deadline: Duration,
) -> anyhow::Result<Vec<Value>> {
    let until = Instant::now() + deadline;
    loop {
        let users = scim.list_users().await?;
        let problems = diff_users(&users, expected);
        let idle = daemon
            .targets()
            .await?
            .values()
            .all(|t| t["queue_depth"] == 0);
        if problems.is_empty() && idle {
            return Ok(users);
        }
        if Instant::now() > until {
            bail!(
                "end state not reached within {deadline:?}: {} problem(s), first: {:?}\ndaemon log tail:\n{}",
                problems.len(),
                problems.iter().take(5).collect::<Vec<_>>(),
                tail(&daemon.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The common daemon environment for the example configs.
pub fn example_env(scim: &Scim2Server, ingest_token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SCIM_BASE_URL", scim.base_url.clone()),
        ("SCIM_TOKEN", scim.token.clone()),
        ("SCIMFLOW_INGEST_TOKEN", ingest_token.to_owned()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Added for the issue-5 proofs (tests/kafka_soak.rs, tests/kafka_replicas.rs).
// ---------------------------------------------------------------------------------------------

impl Scenario {
    /// Like [`Scenario::hr`], but each person gets between 1 and `max_extra` events after the hire
    /// (`max_extra` ≤ 15), so `total_events` may be anywhere in `2 × people ..= (1 + max_extra) ×
    /// people` (e.g. 10,000 events for 2,000 people with `max_extra = 5`). Same event shapes, same
    /// per-person ordering and strictly increasing times, same "every fifth person is terminated by
    /// their last event" rule.
    pub fn hr_dense(people: usize, total_events: usize, max_extra: usize, seed: u64) -> Scenario {
        assert!((1..=15).contains(&max_extra), "max_extra must be 1..=15");
        assert!(total_events >= people * 2 && total_events <= people * (1 + max_extra));
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut extra = vec![1usize; people];
        let mut left = total_events - 2 * people;
        while left > 0 {
            let i = (next() % people as u64) as usize;
            if extra[i] < max_extra {
                extra[i] += 1;
                left -= 1;
            }
        }
        let depts = ["Engineering", "Research", "Sales", "Finance", "Support"];
        let titles = [
            "Engineer",
            "Senior Engineer",
            "Manager",
            "Analyst",
            "Director",
        ];
        let mut per_person: Vec<Vec<Value>> = Vec::new();
        let mut expected = BTreeMap::new();
        let mut n = 0;
        for (i, &k) in extra.iter().enumerate() {
            let mut p = Person {
                id: format!("E{:05}", 10_000 + i),
                first: format!("First{i}"),
                last: format!("Last{i}"),
                email: format!("first{i}.last{i}@example.com"),
                department: depts[i % depts.len()].into(),
                title: titles[0].into(),
                active: true,
            };
            let mut evs = Vec::new();
            evs.push(hr_event(&mut n, "hr.worker.hired", &p, 0, i));
            for step in 1..=k {
                if i % 5 == 0 && step == k {
                    p.active = false;
                    evs.push(hr_event(&mut n, "hr.worker.terminated", &p, step, i));
                } else {
                    p.title = titles[(step + i) % titles.len()].into();
                    p.department = depts[(step * 2 + i) % depts.len()].into();
                    evs.push(hr_event(&mut n, "hr.worker.updated", &p, step, i));
                }
            }
            expected.insert(p.id.clone(), p);
            per_person.push(evs);
        }
        let mut cursors = vec![0usize; people];
        let mut events = Vec::with_capacity(total_events);
        while events.len() < total_events {
            let i = (next() % people as u64) as usize;
            if cursors[i] < per_person[i].len() {
                events.push(per_person[i][cursors[i]].clone());
                cursors[i] += 1;
            }
        }
        Scenario { events, expected }
    }
}

/// One HR CloudEvent in the shape [`Scenario::hr`] produces (`step` sets the hour, `i` the minute).
pub fn hr_event(n: &mut usize, kind: &str, p: &Person, step: usize, i: usize) -> Value {
    *n += 1;
    json!({
        "specversion": "1.0",
        "id": format!("evt-{:06}", *n),
        "source": "urn:example:hr",
        "type": kind,
        "subject": p.id,
        "time": format!("2026-12-01T{:02}:{:02}:00Z", 8 + step, (i % 60)),
        "datacontenttype": "application/json",
        "data": {
            "employeeId": p.id, "email": p.email, "firstName": p.first, "lastName": p.last,
            "department": p.department, "title": p.title,
            "status": if p.active { "active" } else { "terminated" }
        }
    })
}

/// Produces `events` to `topic`, keyed by `subject`, keeping each key's order: consecutive events
/// with distinct keys are sent concurrently, and a round ends before a key repeats.
pub async fn produce_keyed(bootstrap: &str, topic: &str, events: &[Value]) -> anyhow::Result<()> {
    let producer = std::sync::Arc::new(scimflow_kafka::Producer::new(bootstrap)?);
    let mut i = 0;
    while i < events.len() {
        let mut keys = std::collections::HashSet::new();
        let mut round = tokio::task::JoinSet::new();
        while i < events.len() {
            let key = events[i]["subject"].as_str().unwrap_or("").to_owned();
            if !keys.insert(key.clone()) {
                break;
            }
            let (p, t, body) = (producer.clone(), topic.to_owned(), events[i].to_string());
            round.spawn(async move { p.send(&t, &key, body.as_bytes(), &[]).await });
            i += 1;
        }
        while let Some(r) = round.join_next().await {
            r??;
        }
    }
    Ok(())
}

/// Every operation id in the audit log (`scimflow audit export`) with its number of records.
pub fn audit_records_per_op(data_dir: &Path) -> anyhow::Result<HashMap<String, usize>> {
    let audit = json_lines(&scimflow_offline(&["audit", "export"], data_dir)?);
    let mut per_op = HashMap::new();
    for r in &audit {
        if let Some(op) = r["op_id"].as_str().filter(|s| !s.is_empty()) {
            *per_op.entry(op.to_owned()).or_default() += 1;
        }
    }
    Ok(per_op)
}

/// `applied + noop + failed` of one target (terminal outcomes since this daemon process started).
pub async fn terminal_count(daemon: &Daemon, target: &str) -> anyhow::Result<u64> {
    let t = daemon.targets().await?;
    let t = t
        .get(target)
        .with_context(|| format!("no target {target} in /api/v1/targets"))?;
    Ok(["applied", "noop", "failed"]
        .iter()
        .map(|k| t[*k].as_u64().unwrap_or(0))
        .sum())
}

/// Polls until the SCIM server holds exactly `expected` (no daemon check; for several daemons or
/// while a daemon is down). Returns the users.
pub async fn wait_for_users(
    scim: &Scim2Server,
    expected: &BTreeMap<String, Person>,
    deadline: Duration,
    context: impl Fn() -> String,
) -> anyhow::Result<Vec<Value>> {
    let until = Instant::now() + deadline;
    loop {
        let users = scim.list_users().await?;
        let problems = diff_users(&users, expected);
        if problems.is_empty() {
            return Ok(users);
        }
        if Instant::now() > until {
            bail!(
                "end state not reached within {deadline:?}: {} problem(s), first: {:?}\n{}",
                problems.len(),
                problems.iter().take(5).collect::<Vec<_>>(),
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
