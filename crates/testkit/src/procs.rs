//! Real external components for integration tests, started as child processes on loopback.
//!
//! - [`Tansu`]: a Kafka-protocol broker (in-memory, or durable SQLite storage with the libsql
//!   build), with topic creation, restart and kill.
//! - [`Scim2Server`]: the python-scim `scim2-server`, a standards-conformant SCIM 2.0 server,
//!   with small async helpers over reqwest.
//!
//! Binaries come from `TANSU_BIN` / `SCIM2_SERVER_BIN`, else from the tools directory
//! (`$SCIMFLOW_TOOLS`, default `$HOME/.cache/scimflow/tools`) that `scripts/install-test-deps.sh`
//! fills. Readiness is polled against a deadline, never slept for. Each process writes its output
//! to a log file in its own temp dir ([`Tansu::log_path`], [`Scim2Server::log_path`]) and is killed
//! on drop. Start functions are synchronous (they block for at most the readiness deadline).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

/// How long a component gets to become ready.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str =
    "run scripts/install-test-deps.sh (then `. ~/.cache/scimflow/tools/env.sh`)";

/// A currently free TCP port on 127.0.0.1 (bound, read, released; another process may take it).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// The tools directory: `$SCIMFLOW_TOOLS`, else `$HOME/.cache/scimflow/tools`.
pub fn tools_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SCIMFLOW_TOOLS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/scimflow/tools")
}

fn find_bin(env: &str, rel: &str, what: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "{env}={} does not exist; unset it or {INSTALL_HINT}",
            p.display()
        );
    }
    let p = tools_dir().join(rel);
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "{what} not found ({env} unset, no {}); {INSTALL_HINT}",
        p.display()
    )
}

/// Is a Tansu binary able to use SQLite storage? `None` when unknown.
fn tansu_is_durable(bin: &Path) -> Option<bool> {
    let kind = std::env::var("TANSU_KIND")
        .ok()
        .filter(|k| !k.is_empty())
        .or_else(|| {
            std::fs::read_to_string(tools_dir().join("bin/tansu.kind"))
                .ok()
                .filter(|_| std::env::var_os("TANSU_BIN").is_none() || bin.starts_with(tools_dir()))
        })?;
    match kind.trim() {
        "durable" => Some(true),
        "memory" => Some(false),
        _ => None,
    }
}

fn wait_tcp(
    addr: SocketAddr,
    deadline: Instant,
    child: &mut Child,
    log: &Path,
    what: &str,
) -> anyhow::Result<()> {
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        check_alive(child, log, what)?;
        if Instant::now() >= deadline {
            bail!(
                "{what} did not listen on {addr} within {READY_DEADLINE:?}; log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn check_alive(child: &mut Child, log: &Path, what: &str) -> anyhow::Result<()> {
    if let Some(status) = child.try_wait()? {
        bail!(
            "{what} exited early ({status}); log {}:\n{}",
            log.display(),
            tail(log, 20)
        );
    }
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn log_file(path: &Path) -> anyhow::Result<(File, File)> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open log {}", path.display()))?;
    let g = f.try_clone()?;
    Ok((f, g))
}

/// Run a short command with a deadline; returns its combined output on success.
fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> anyhow::Result<String> {
    let out = tempfile::NamedTempFile::new()?;
    let (a, b) = (out.reopen()?, out.reopen()?);
    let mut child = cmd.stdin(Stdio::null()).stdout(a).stderr(b).spawn()?;
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    File::open(out.path())?.read_to_string(&mut text)?;
    if !status.success() {
        bail!("{status}: {}", text.trim());
    }
    Ok(text)
}

fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A Tansu broker on `127.0.0.1:PORT`.
pub struct Tansu {
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub bootstrap: String,
    port: u16,
    bin: PathBuf,
    /// Working directory and `sqlite://` URL for durable storage.
    storage: Option<(PathBuf, String)>,
    child: Option<Child>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Start an in-memory broker.
    pub fn start() -> anyhow::Result<Tansu> {
        Self::launch(None)
    }

    /// Start a broker with SQLite storage in `dir` (`dir/tansu.db`), which survives
    /// [`restart`](Self::restart) and can be reused by a later `start_durable` on the same `dir`.
    /// Needs the libsql-enabled build. Create topics explicitly with [`create_topic`](Self::create_topic).
    pub fn start_durable(dir: &Path) -> anyhow::Result<Tansu> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        Self::launch(Some((dir, "sqlite://tansu.db".to_string())))
    }

    fn launch(storage: Option<(PathBuf, String)>) -> anyhow::Result<Tansu> {
        let bin = find_bin("TANSU_BIN", "bin/tansu", "the tansu broker binary")?;
        if storage.is_some() && tansu_is_durable(&bin) == Some(false) {
            bail!("{} is the in-memory-only Tansu build (TANSU_KIND=memory); durable storage needs the libsql build: run scripts/install-test-deps.sh --durable (a 20-30 minute cargo build)", bin.display());
        }
        let dir = tempfile::Builder::new()
            .prefix("scimflow-tansu-")
            .tempdir()?;
        let log_path = dir.path().join("tansu.log");
        let port = free_port();
        let mut t = Tansu {
            bootstrap: format!("127.0.0.1:{port}"),
            port,
            bin,
            storage,
            child: None,
            log_path,
            _dir: dir,
        };
        t.spawn_and_wait()?;
        Ok(t)
    }

    fn broker_url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.log_path)?;
        let url = self.broker_url();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some((dir, engine)) = &self.storage {
            cmd.arg("--storage-engine").arg(engine).current_dir(dir);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        let addr: SocketAddr = self.bootstrap.parse()?;
        let child = self.child.as_mut().expect("just spawned");
        let r = wait_tcp(addr, deadline, child, &self.log_path, "tansu broker").and_then(|()| {
            // Listening is not serving: wait until an admin request succeeds.
            loop {
                let last = run_with_deadline(
                    Command::new(&self.bin).args(["topic", "list", "--broker", &url]),
                    Duration::from_secs(5),
                );
                match last {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        check_alive(self.child.as_mut().expect("spawned"), &self.log_path, "tansu broker")?;
                        if Instant::now() >= deadline {
                            bail!("tansu broker on {url} not ready within {READY_DEADLINE:?}: {e}; log: {}", self.log_path.display());
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
        if let Err(e) = r {
            kill_child(&mut self.child);
            let log = tail(&self.log_path, 50);
            if log.contains("FeatureNotEnabled") && log.contains("libsql") {
                bail!("{} was built without libsql, so durable (sqlite) storage is unavailable: run scripts/install-test-deps.sh --durable (a 20-30 minute cargo build)", self.bin.display());
            }
            return Err(e);
        }
        Ok(())
    }

    /// `tansu topic create --broker tcp://... --partitions N NAME`. Succeeds when the topic
    /// already exists (e.g. after a durable restart).
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        let r = run_with_deadline(
            Command::new(&self.bin)
                .args([
                    "topic",
                    "create",
                    "--broker",
                    &self.broker_url(),
                    "--partitions",
                ])
                .arg(partitions.to_string())
                .arg(name),
            READY_DEADLINE,
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("already exists") => Ok(()),
            Err(e) => Err(e.context(format!("create topic {name} on {}", self.bootstrap))),
        }
    }

    /// Names of the topics the broker has (`tansu topic list`).
    pub fn list_topics(&self) -> anyhow::Result<Vec<String>> {
        let out = run_with_deadline(
            Command::new(&self.bin).args(["topic", "list", "--broker", &self.broker_url()]),
            READY_DEADLINE,
        )?;
        let json = out
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('['))
            .ok_or_else(|| anyhow!("tansu topic list printed no JSON: {out}"))?;
        let v: Value = serde_json::from_str(json)?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect())
    }

    /// Kill the broker (SIGKILL, like a crash) and start it again on the same port and storage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn_and_wait()
    }

    /// Kill the broker (SIGKILL). [`restart`](Self::restart) brings it back.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Is the broker process running?
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the broker's stdout/stderr go (kept across restarts; deleted on drop).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether it runs with durable storage.
    pub fn is_durable(&self) -> bool {
        self.storage.is_some()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A python-scim `scim2-server` on `127.0.0.1:PORT`, base URL `http://127.0.0.1:PORT/v2`.
pub struct Scim2Server {
    /// `http://127.0.0.1:PORT/v2`.
    pub base_url: String,
    /// The bearer token it requires.
    pub token: String,
    port: u16,
    child: Option<Child>,
    client: reqwest::Client,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scim2Server {
    /// Start a fresh (empty, in-memory) server requiring `token`.
    pub fn start(token: &str) -> anyhow::Result<Self> {
        let bin = match std::env::var_os("SCIM2_SERVER_BIN").filter(|p| !p.is_empty()) {
            Some(_) => find_bin("SCIM2_SERVER_BIN", "", "scim2-server")?,
            None => find_bin(
                "SCIM2_SERVER_BIN",
                "scim2-venv/bin/scim2-server",
                "scim2-server",
            )?,
        };
        let dir = tempfile::Builder::new()
            .prefix("scimflow-scim2-")
            .tempdir()?;
        let log_path = dir.path().join("scim2-server.log");
        let (out, err) = log_file(&log_path)?;
        let port = free_port();
        let child = Command::new(&bin)
            .args(["--hostname", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--bearer-token")
            .arg(token)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut s = Scim2Server {
            base_url: format!("http://127.0.0.1:{port}/v2"),
            token: token.to_string(),
            port,
            child: Some(child),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            log_path,
            _dir: dir,
        };
        s.wait_ready()?;
        Ok(s)
    }

    /// Poll `GET /v2/ServiceProviderConfig` (plain blocking HTTP/1.0, so this works inside or
    /// outside a tokio runtime) until it answers 200.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_http_200(
            addr,
            "/v2/ServiceProviderConfig",
            &self.token,
            deadline,
            &mut self.child,
            &self.log_path,
            "scim2-server",
        )
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A reqwest client (30 s timeout) for raw requests; add [`auth`](Self::auth) yourself.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `Authorization` header value.
    pub fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(u16, Option<Value>)> {
        let resp = req
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .header(reqwest::header::ACCEPT, "application/scim+json")
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow!(
                    "status {status}, body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })?)
        };
        Ok((status, body))
    }

    fn expect_ok(what: &str, status: u16, body: Option<Value>) -> anyhow::Result<Option<Value>> {
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            bail!(
                "{what} answered {status}: {}",
                body.map(|b| b.to_string()).unwrap_or_default()
            )
        }
    }

    async fn list_all(&self, endpoint: &str, filter: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut start = 1usize;
        loop {
            let mut q = vec![
                ("startIndex", start.to_string()),
                ("count", "100".to_string()),
            ];
            if let Some(f) = filter {
                q.push(("filter", f.to_string()));
            }
            let (status, body) = self
                .send(self.client.get(self.url(endpoint)).query(&q))
                .await?;
            let body = Self::expect_ok(&format!("GET {endpoint}"), status, body)?
                .ok_or_else(|| anyhow!("GET {endpoint}: empty body"))?;
            let total = body["totalResults"].as_u64().unwrap_or(0) as usize;
            let page = body["Resources"].as_array().cloned().unwrap_or_default();
            let n = page.len();
            out.extend(page);
            if n == 0 || out.len() >= total {
                return Ok(out);
            }
            start += n;
        }
    }

    /// All users (follows `startIndex`/`count` pages until `totalResults` are read).
    pub async fn list_users(&self) -> anyhow::Result<Vec<Value>> {
        self.list_all("/Users", None).await
    }

    /// Users matching a SCIM filter (all pages).
    pub async fn find_users(&self, filter: &str) -> anyhow::Result<Vec<Value>> {
        self.list_all("/Users", Some(filter)).await
    }

    /// All groups (all pages).
    pub async fn list_groups(&self) -> anyhow::Result<Vec<Value>> {
        self.list_all("/Groups", None).await
    }

    /// `POST /Users`; the created resource.
    pub async fn create_user(&self, body: Value) -> anyhow::Result<Value> {
        let (s, b) = self
            .send(self.client.post(self.url("/Users")).json(&body))
            .await?;
        Self::expect_ok("POST /Users", s, b)?.ok_or_else(|| anyhow!("POST /Users: empty body"))
    }

    /// `POST /Groups`; the created resource.
    pub async fn create_group(&self, body: Value) -> anyhow::Result<Value> {
        let (s, b) = self
            .send(self.client.post(self.url("/Groups")).json(&body))
            .await?;
        Self::expect_ok("POST /Groups", s, b)?.ok_or_else(|| anyhow!("POST /Groups: empty body"))
    }

    /// `GET /Users/{id}`; `None` on 404.
    pub async fn get_user(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let (s, b) = self
            .send(self.client.get(self.url(&format!("/Users/{id}"))))
            .await?;
        if s == 404 {
            return Ok(None);
        }
        Self::expect_ok("GET /Users/{id}", s, b)
    }

    /// `PATCH /Users/{id}` with a full PatchOp body; the resource if the server returned one
    /// (scim2-server answers 204 without a body).
    pub async fn patch_user(&self, id: &str, body: Value) -> anyhow::Result<Option<Value>> {
        let (s, b) = self
            .send(
                self.client
                    .patch(self.url(&format!("/Users/{id}")))
                    .json(&body),
            )
            .await?;
        Self::expect_ok("PATCH /Users/{id}", s, b)
    }

    /// `DELETE /Users/{id}`.
    pub async fn delete_user(&self, id: &str) -> anyhow::Result<()> {
        let (s, b) = self
            .send(self.client.delete(self.url(&format!("/Users/{id}"))))
            .await?;
        Self::expect_ok("DELETE /Users/{id}", s, b).map(|_| ())
    }

    /// Kill the server (its data is lost).
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the child listens on `addr` and `GET path` answers 200; kills it on the deadline.
fn wait_http_200(
    addr: SocketAddr,
    path: &str,
    token: &str,
    deadline: Instant,
    child: &mut Option<Child>,
    log: &Path,
    what: &str,
) -> anyhow::Result<()> {
    wait_tcp(addr, deadline, child.as_mut().expect("spawned"), log, what)?;
    loop {
        let last = match http10_status(addr, path, token) {
            Ok(200) => return Ok(()),
            Ok(s) => format!("status {s}"),
            Err(e) => e.to_string(),
        };
        check_alive(child.as_mut().expect("spawned"), log, what)?;
        if Instant::now() >= deadline {
            kill_child(child);
            bail!(
                "{what} not ready within {READY_DEADLINE:?} ({last}); log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Status code of a blocking HTTP/1.0 GET with a bearer token.
fn http10_status(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: application/scim+json\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP answer {head:?}"))
}

/// A Prometheus server (Debian's package, unpacked by scripts/install-test-deps.sh) on
/// `127.0.0.1:PORT`, with its TSDB in a temporary directory.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (prometheus.yml text; relative `rule_files` resolve against
    /// `config_dir`, where the config is written) and waits until `/-/ready` answers 200.
    pub fn start(config: &str, config_dir: &Path) -> anyhow::Result<Prometheus> {
        let bin = find_bin(
            "PROMETHEUS_BIN",
            "prometheus/usr/bin/prometheus",
            "prometheus",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("scimflow-prometheus-")
            .tempdir()?;
        let config_path = config_dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.path().join("prometheus.log");
        let (out, err) = log_file(&log_path)?;
        let port = free_port();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child: Some(child),
            log_path,
            _dir: dir,
        };
        let deadline = Instant::now() + READY_DEADLINE;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, p.port));
        wait_http_200(
            addr,
            "/-/ready",
            "",
            deadline,
            &mut p.child,
            &p.log_path,
            "prometheus",
        )?;
        Ok(p)
    }

    /// Where Prometheus logs.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `GET /api/v1/{path}` → the `data` of a successful answer.
    pub async fn api(&self, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        let v: serde_json::Value = reqwest::get(format!("{}/api/v1/{path_and_query}", self.url))
            .await?
            .json()
            .await?;
        anyhow::ensure!(v["status"] == "success", "prometheus answered {v}");
        Ok(v["data"].clone())
    }

    /// An instant query → its result vector.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let q: String = url_encode(promql);
        let data = self.api(&format!("query?query={q}")).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
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

impl Drop for Prometheus {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}
