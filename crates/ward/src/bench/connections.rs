//! `ward bench --idle-connections N`: memory per idle authenticated TLS WebSocket (BENCH.md).
//!
//! Starts `ward serve` as a child process (TLS on, its generated CA, SQLite in a temporary
//! directory), so the server's resident memory is measured apart from the load generator's.
//! Sessions are written straight into the server's database (one user and device each, no
//! Argon2 or TOTP: login speed is not what is measured), then the generator opens N TLS
//! WebSockets with those tokens, spreading source addresses over 127.0.0.1–127.0.0.250 so no
//! source runs out of ephemeral ports, and holds them idle. It reports the server's RSS before
//! and after, the difference per connection, and checks at the end that every connection is
//! still open (a WebSocket ping answered by a pong on each).
//!
//! With `--server-workers K` (PostgreSQL and NATS) the server is `ward serve --workers K`:
//! K processes sharing the port with SO_REUSEPORT (ADR 0021), and the memory per connection
//! is the sum of the workers' RSS growth divided by N. With `--client-processes M` the
//! measured connections are held by M child processes (`ward bench idle-client`, hidden), so
//! neither side needs more file descriptors per process than the 20,000 this sandbox allows;
//! each continues the round-robin over source addresses where the previous one stopped.
//!
//! Every process raises their soft file-descriptor limit to the hard limit first; N beyond
//! that limit (less a margin) is refused with a message naming it.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::{DeviceId, DeviceStatus, Role, UserId, UserStatus, Username};
use ward_store::{Device, EnrollmentCode, Session, User};

/// File descriptors kept free for the process's own files, listeners and database.
const FD_MARGIN: u64 = 200;
/// Handshakes in flight at once (in all: split over the client processes).
const CONNECT_CONCURRENCY: usize = 64;
/// Connections opened (and kept) before the baseline RSS is read, so one-time allocations of
/// the first connections (TLS session cache, task pools) do not count per connection.
const WARM_UP_CONNECTIONS: usize = 100;

/// The report, also printed as JSON with `--json`.
#[derive(Serialize, Debug)]
pub struct ConnectionsReport {
    /// Connections measured (after the warm-up ones).
    pub connections: usize,
    /// Connections open at the end that answered a ping.
    pub alive_at_end: usize,
    /// Server RSS after the warm-up connections, KiB.
    pub server_rss_before_kib: u64,
    /// Server RSS with every connection open and idle, KiB.
    pub server_rss_after_kib: u64,
    /// (after − before) / connections, KiB.
    pub server_kib_per_connection: f64,
    /// Wall time to open all connections, seconds.
    pub connect_secs: f64,
    /// Connections opened per second.
    pub connects_per_sec: f64,
    /// How long the connections were held idle before measuring, seconds.
    pub idle_secs: u64,
    /// The TLS key exchange the server negotiated (on the first connection).
    pub key_exchange: String,
    /// The file-descriptor limit each process ran with.
    pub fd_limit: u64,
    /// Each server worker process: its RSS before and after and its open file descriptors
    /// (about one per connection it holds: how SO_REUSEPORT spread them).
    pub server_workers: Vec<WorkerReport>,
    /// Processes that held the measured connections (1: the bench process itself).
    pub client_processes: usize,
    /// Machine description.
    pub machine: String,
}

/// One server worker process in [`ConnectionsReport`].
#[derive(Serialize, Debug)]
pub struct WorkerReport {
    /// Process id.
    pub pid: u32,
    /// RSS after the warm-up connections, KiB.
    pub rss_before_kib: u64,
    /// RSS with every connection open and idle, KiB.
    pub rss_after_kib: u64,
    /// Open file descriptors at the measurement.
    pub open_fds: usize,
}

/// How the idle-connection measurement is laid out over processes.
#[derive(Debug, Clone)]
pub struct IdlePlan {
    /// Connections measured (after the warm-up ones).
    pub n: usize,
    /// Seconds to hold them idle before measuring.
    pub idle_secs: u64,
    /// Server worker processes sharing the port (`ward serve --workers K`); 1: one `ward
    /// serve`.
    pub server_workers: usize,
    /// Client processes holding the connections; 1: this process.
    pub client_processes: usize,
    /// PostgreSQL URL (a fresh schema is used); required with several server workers.
    pub database_url: Option<String>,
    /// NATS for the workers' fan-out (with several server workers).
    pub nats_url: String,
}

/// Run the idle-connection measurement.
pub async fn run(plan: IdlePlan, json_out: bool) -> anyhow::Result<ConnectionsReport> {
    let fd_limit = raise_fd_limit()?;
    let n = plan.n;
    let (k, m) = (plan.server_workers.max(1), plan.client_processes.max(1));
    // The first process holds the warm-up connections as well as its share.
    let per_client = if m == 1 { n } else { n.div_ceil(m) };
    let needed_client = (per_client + WARM_UP_CONNECTIONS) as u64 + FD_MARGIN;
    // SO_REUSEPORT spreads by a hash: allow 5 % above an even share per worker.
    let per_worker = n.div_ceil(k) + n.div_ceil(k) / 20 + WARM_UP_CONNECTIONS;
    let needed_worker = per_worker as u64 + FD_MARGIN;
    if needed_client > fd_limit {
        bail!(
            "--idle-connections {n} over {m} client process(es) needs about {needed_client} file \
             descriptors in each, but the hard limit here is {fd_limit}: use more \
             --client-processes (or raise the limit with `ulimit -Hn` as a privileged user)"
        );
    }
    if needed_worker > fd_limit {
        bail!(
            "--idle-connections {n} over {k} server worker(s) needs about {needed_worker} file \
             descriptors in each, but the hard limit here is {fd_limit}: use more \
             --server-workers (with PostgreSQL and NATS), or raise the limit with `ulimit -Hn` \
             as a privileged user"
        );
    }
    let postgres = match &plan.database_url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Some(u),
        Some(_) => bail!("--database-url must be a postgres:// URL (default: SQLite)"),
        None if k > 1 => bail!(
            "--server-workers {k} needs --database-url postgres://…: each worker is its own \
             node over one PostgreSQL, and SQLite stays a single process (ADR 0021)"
        ),
        None => None,
    };
    let dir = std::env::temp_dir().join(format!("ward-conns-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let schema = match postgres {
        Some(url) => {
            let schema = format!("ward_conns_{}", uuid::Uuid::new_v4().simple());
            ward_store_postgres::PgStore::connect_isolated(url, &schema)
                .await
                .map_err(|e| anyhow::anyhow!("PostgreSQL at --database-url: {e}"))?
                .close()
                .await;
            Some((url.clone(), schema))
        }
        None => None,
    };
    let database_url = match &schema {
        Some((url, schema)) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}options[search_path]={schema}")
        }
        None => format!("sqlite://{}", dir.join("ward.db").display()),
    };
    let setup = Setup {
        dir: dir.clone(),
        database_url,
        nats_url: plan.nats_url.clone(),
        workers: k,
        per_worker_connections: (fd_limit - FD_MARGIN) as usize,
    };
    let result = measure(&setup, &plan, fd_limit, json_out).await;
    if let Some((url, schema)) = &schema
        && let Err(e) = ward_store_postgres::PgStore::drop_schema(url, schema).await
    {
        eprintln!("warning: could not drop schema {schema}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Where the server runs.
struct Setup {
    dir: std::path::PathBuf,
    database_url: String,
    nats_url: String,
    workers: usize,
    per_worker_connections: usize,
}

async fn measure(
    setup: &Setup,
    plan: &IdlePlan,
    fd_limit: u64,
    json_out: bool,
) -> anyhow::Result<ConnectionsReport> {
    let say = |m: &str| {
        if !json_out {
            eprintln!("{m}");
        }
    };
    let n = plan.n;
    let idle_secs = plan.idle_secs;
    let total = n + WARM_UP_CONNECTIONS;
    let mut server = Server::start_workers(setup)?;
    say(&format!(
        "server pid(s) {:?} at {}",
        server.pids, server.addr
    ));

    say(&format!(
        "writing {total} sessions into the server's database"
    ));
    let tokens = sessions(&setup.database_url, total).await?;
    let ca_file = setup.dir.join("tls").join("ca.pem");
    let ca = std::fs::read_to_string(&ca_file).context("server CA")?;
    let tls = ward_client::tls_config(&ca).map_err(|e| anyhow::anyhow!("server CA: {e}"))?;

    let (warm, key_exchange) = connect_all(
        &server.addr,
        &tls,
        &tokens[..WARM_UP_CONNECTIONS],
        0,
        CONNECT_CONCURRENCY,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.rss_each_kib()?;
    say(&format!(
        "warm-up done; server RSS {} KiB; opening {n} connections from {} process(es)",
        before.iter().sum::<u64>(),
        plan.client_processes.max(1)
    ));

    let rest = &tokens[WARM_UP_CONNECTIONS..];
    let started = Instant::now();
    let mut holders = if plan.client_processes <= 1 {
        let (conns, _) = connect_all(
            &server.addr,
            &tls,
            rest,
            WARM_UP_CONNECTIONS,
            CONNECT_CONCURRENCY,
        )
        .await?;
        Holders::InProcess(conns)
    } else {
        Holders::Children(
            spawn_clients(
                &setup.dir,
                &server.addr,
                &ca_file,
                rest,
                plan.client_processes,
            )
            .await?,
        )
    };
    let connect_secs = started.elapsed().as_secs_f64();
    say(&format!(
        "{n} connected in {connect_secs:.1} s; idle {idle_secs} s"
    ));
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let after = server.rss_each_kib()?;
    let fds = server.fds_each();
    let alive = match &mut holders {
        Holders::InProcess(conns) => ping_all(std::mem::take(conns)).await,
        Holders::Children(children) => ping_children(children).await?,
    };
    drop(warm);
    server.stop();
    if alive < n {
        bail!("only {alive} of {n} connections answered a ping after {idle_secs} s idle");
    }
    let before_sum: u64 = before.iter().sum();
    let after_sum: u64 = after.iter().sum();
    let grown: u64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b))
        .sum();
    Ok(ConnectionsReport {
        connections: n,
        alive_at_end: alive,
        server_rss_before_kib: before_sum,
        server_rss_after_kib: after_sum,
        server_kib_per_connection: grown as f64 / n as f64,
        connect_secs,
        connects_per_sec: n as f64 / connect_secs.max(1e-9),
        idle_secs,
        key_exchange,
        fd_limit,
        server_workers: server
            .pids
            .iter()
            .zip(before.iter().zip(&after))
            .zip(&fds)
            .map(|((pid, (b, a)), f)| WorkerReport {
                pid: *pid,
                rss_before_kib: *b,
                rss_after_kib: *a,
                open_fds: *f,
            })
            .collect(),
        client_processes: plan.client_processes.max(1),
        machine: super::machine(),
    })
}

/// Who holds the measured connections.
enum Holders {
    InProcess(Vec<Conn>),
    Children(Vec<ClientChild>),
}

/// Print a short human summary.
pub fn print_summary(r: &ConnectionsReport) {
    println!(
        "{} idle TLS WebSockets ({}): server RSS {} → {} KiB, {:.1} KiB per connection; \
         connected in {:.1} s ({:.0}/s); {} alive after {} s idle",
        r.connections,
        r.key_exchange,
        r.server_rss_before_kib,
        r.server_rss_after_kib,
        r.server_kib_per_connection,
        r.connect_secs,
        r.connects_per_sec,
        r.alive_at_end,
        r.idle_secs,
    );
    if r.server_workers.len() > 1 || r.client_processes > 1 {
        println!(
            "{} server worker(s) (open fds: {}), {} client process(es)",
            r.server_workers.len(),
            r.server_workers
                .iter()
                .map(|w| w.open_fds.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            r.client_processes
        );
    }
}

/// Raise this process's soft file-descriptor limit to its hard limit; returns the limit.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    let (_, hard) = rlimit::Resource::NOFILE
        .get()
        .context("read RLIMIT_NOFILE")?;
    rlimit::Resource::NOFILE
        .set(hard, hard)
        .context("raise RLIMIT_NOFILE")?;
    Ok(hard)
}

pub(super) struct Server {
    child: Child,
    pub(super) addr: SocketAddr,
    /// The processes serving: the child itself, or its workers.
    pids: Vec<u32>,
}

impl Server {
    /// `ward serve` on 127.0.0.1 with TLS, limits raised for `connections`.
    pub(super) fn start(dir: &Path, connections: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("path of this binary")?;
        let mut cmd = Command::new(exe);
        cmd.env(
            "WARD_LIMITS__MAX_CONNECTIONS",
            (connections + FD_MARGIN as usize).to_string(),
        )
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir);
        Self::spawn(cmd)
    }

    /// `ward serve --workers K` (K > 1, over PostgreSQL and NATS) or one `ward serve`.
    fn start_workers(setup: &Setup) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("path of this binary")?;
        let mut cmd = Command::new(exe);
        cmd.env(
            "WARD_LIMITS__MAX_CONNECTIONS",
            setup.per_worker_connections.to_string(),
        )
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&setup.dir)
        .arg("--database-url")
        .arg(&setup.database_url);
        if setup.workers > 1 {
            cmd.arg("--workers")
                .arg(setup.workers.to_string())
                .env("WARD_CLUSTER__NATS_URL", &setup.nats_url)
                // A subject of this run's own, so parallel runs and tests do not mix.
                .env(
                    "WARD_CLUSTER__SUBJECT",
                    format!("ward.bench.{}", uuid::Uuid::new_v4().simple()),
                );
        }
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .env_remove("WARD_MASTER_KEY")
            .env("WARD_LOG", "warn")
            .env("WARD_LIMITS__REQUESTS_PER_SECOND", "10000000")
            .env("WARD_LIMITS__REQUEST_BURST", "10000000")
            // Every simulated device enrolls and logs in from this one address.
            .env("WARD_LIMITS__LOGINS_PER_MINUTE", "10000000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start ward serve")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut pids = vec![child.id()];
        let url = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("ward serve exited before printing its URL");
            };
            let line = line?;
            if let Some(p) = line.strip_prefix("Ward worker pids: ") {
                pids = p
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("worker pids")?;
            }
            if let Some(u) = line.strip_prefix("Ward is listening on ") {
                break u.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let addr = url
            .strip_prefix("https://")
            .context("server URL is not https")?
            .trim_end_matches('/')
            .parse()
            .context("server address")?;
        Ok(Self { child, addr, pids })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// RSS of each serving process, KiB.
    fn rss_each_kib(&self) -> anyhow::Result<Vec<u64>> {
        self.pids.iter().map(|p| status_kib(*p, "VmRSS:")).collect()
    }

    /// Open file descriptors of each serving process (0 when unreadable).
    fn fds_each(&self) -> Vec<usize> {
        self.pids
            .iter()
            .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |d| d.count()))
            .collect()
    }

    /// Peak resident memory of the server so far (VmHWM), KiB.
    pub(super) fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        status_kib(self.child.id(), "VmHWM:")
    }

    pub(super) fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }

    fn kill(&mut self) {
        for p in self.pids.iter().filter(|p| **p != self.child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} of server process {pid}"))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// One active user with one device and a live session per token, written straight into the
/// server's database (SQLite in WAL mode, so both processes can write, or PostgreSQL), 16 at
/// a time.
async fn sessions(database_url: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let store = ward_server::open_store(database_url)
        .await
        .context("open the server's database")?;
    let now = OffsetDateTime::now_utc();
    let results: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move { one_session(store.as_ref(), i, now).await }
        })
        .buffered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn one_session(
    store: &dyn ward_store::Store,
    i: usize,
    now: OffsetDateTime,
) -> anyhow::Result<String> {
    let user_id = UserId::random();
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let code = rand::random::<[u8; 32]>();
    let user = User {
        id: user_id,
        username: Username::parse(&format!("conn-{i:06}")).map_err(|e| anyhow::anyhow!("{e}"))?,
        display_name: String::new(),
        role: Role::Nurse,
        status: UserStatus::Pending,
        password_hash: None,
        totp_secret_enc: None,
        failed_logins: 0,
        locked_until: None,
        created_at: now,
    };
    store
        .create_user(
            &user,
            &EnrollmentCode {
                code_hash: Sha256::digest(code).into(),
                expires_at: now + time::Duration::hours(1),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("create user: {e}"))?;
    let device = Device {
        id: DeviceId::random(),
        user_id,
        name: "conn".into(),
        signature_key: vec![0; 32],
        credential: Vec::new(),
        status: DeviceStatus::Active,
        created_at: now,
        revoked_at: None,
        last_seen_at: None,
    };
    let session = Session {
        token_hash: Sha256::digest(token.as_bytes()).into(),
        user_id,
        device_id: device.id,
        created_at: now,
        last_used_at: now,
        expires_at: now + time::Duration::hours(2),
    };
    store
        .complete_enrollment(&ward_store::Enrollment {
            user_id,
            code_hash: Sha256::digest(code).into(),
            password_hash: "unusable: benchmark account".into(),
            totp_secret_enc: Vec::new(),
            device,
            session,
            now,
        })
        .await
        .map_err(|e| anyhow::anyhow!("activate user: {e}"))?;
    Ok(token)
}

// ---------------------------------------------------------------------------------------------
// Client processes: `ward bench idle-client` (hidden), one per share of the connections.

/// `ward bench idle-client`: hold idle WebSockets for a parent `ward bench
/// --idle-connections … --client-processes M` (not for direct use). Protocol on stdout, one
/// JSON object per line: `{"connected":N,"secs":S}` once all are open (or `{"error":…}`),
/// then, after a line on stdin, `{"alive":K}`.
#[derive(clap::Args, Debug, Clone)]
pub struct IdleClientArgs {
    /// Server address (IP:PORT).
    #[arg(long)]
    addr: SocketAddr,
    /// The server's CA certificate (PEM).
    #[arg(long)]
    ca: std::path::PathBuf,
    /// File with one session token per line.
    #[arg(long)]
    tokens: std::path::PathBuf,
    /// Index of the first connection overall, so source addresses continue round-robin.
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Handshakes in flight at once in this process.
    #[arg(long, default_value_t = CONNECT_CONCURRENCY)]
    concurrency: usize,
}

#[derive(Serialize, serde::Deserialize, Debug, Default)]
struct ClientLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connected: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alive: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The child side.
pub async fn idle_client(a: IdleClientArgs) -> anyhow::Result<()> {
    raise_fd_limit()?;
    let say = |l: &ClientLine| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string(l)?);
        Ok(())
    };
    let tokens: Vec<String> = std::fs::read_to_string(&a.tokens)
        .with_context(|| format!("read {}", a.tokens.display()))?
        .lines()
        .map(str::to_owned)
        .collect();
    let ca = std::fs::read_to_string(&a.ca).context("server CA")?;
    let tls = ward_client::tls_config(&ca).map_err(|e| anyhow::anyhow!("server CA: {e}"))?;
    let started = Instant::now();
    let conns = match connect_all(&a.addr, &tls, &tokens, a.first, a.concurrency).await {
        Ok((c, _)) => c,
        Err(e) => {
            say(&ClientLine {
                error: Some(format!("{e:#}")),
                ..Default::default()
            })?;
            bail!("connect: {e:#}");
        }
    };
    say(&ClientLine {
        connected: Some(conns.len()),
        secs: Some(started.elapsed().as_secs_f64()),
        ..Default::default()
    })?;
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(
        &mut tokio::io::BufReader::new(tokio::io::stdin()),
        &mut line,
    )
    .await
    .context("read the parent's ping request")?;
    let alive = ping_all(conns).await;
    say(&ClientLine {
        alive: Some(alive),
        ..Default::default()
    })?;
    Ok(())
}

struct ClientChild {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stdin: Option<tokio::process::ChildStdin>,
    count: usize,
}

impl ClientChild {
    async fn next(&mut self) -> anyhow::Result<ClientLine> {
        let line = self
            .lines
            .next_line()
            .await?
            .context("a client process exited early (see its errors above)")?;
        let l: ClientLine =
            serde_json::from_str(&line).with_context(|| format!("client process said {line:?}"))?;
        if let Some(e) = l.error {
            bail!("a client process failed: {e}");
        }
        Ok(l)
    }
}

/// Start `m` client processes, each with its share of `tokens`, and wait until all have
/// connected.
async fn spawn_clients(
    dir: &Path,
    addr: &SocketAddr,
    ca: &Path,
    tokens: &[String],
    m: usize,
) -> anyhow::Result<Vec<ClientChild>> {
    let exe = std::env::current_exe().context("path of this binary")?;
    let share = tokens.len().div_ceil(m);
    let mut children = Vec::with_capacity(m);
    for (i, chunk) in tokens.chunks(share.max(1)).enumerate() {
        let file = dir.join(format!("tokens-{i}"));
        std::fs::write(&file, chunk.join("\n")).context("write a token file")?;
        let mut child = tokio::process::Command::new(&exe)
            .env("WARD_LOG", "warn")
            .args(["bench", "idle-client", "--addr", &addr.to_string(), "--ca"])
            .arg(ca)
            .arg("--tokens")
            .arg(&file)
            .arg("--first")
            .arg((WARM_UP_CONNECTIONS + i * share).to_string())
            // The same handshakes in flight in all as with one process, so the servers'
            // database pools see the same concurrency however many client processes.
            .arg("--concurrency")
            .arg(CONNECT_CONCURRENCY.div_ceil(m).max(8).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start a client process")?;
        let stdout = child.stdout.take().context("client stdout")?;
        let stdin = child.stdin.take();
        children.push(ClientChild {
            child,
            lines: tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout)),
            stdin,
            count: chunk.len(),
        });
    }
    let connected = futures_util::future::join_all(children.iter_mut().map(|c| async {
        let l = c.next().await?;
        match l.connected {
            Some(k) if k == c.count => Ok(()),
            other => bail!("a client process connected {other:?} of {}", c.count),
        }
    }))
    .await;
    for r in connected {
        r?;
    }
    Ok(children)
}

/// Ask every client process to ping its connections; the number that answered.
async fn ping_children(children: &mut [ClientChild]) -> anyhow::Result<usize> {
    for c in children.iter_mut() {
        if let Some(mut stdin) = c.stdin.take() {
            tokio::io::AsyncWriteExt::write_all(&mut stdin, b"ping\n").await?;
        }
    }
    let answers = futures_util::future::join_all(children.iter_mut().map(|c| async {
        let l = c.next().await?;
        let _ = c.child.wait().await;
        l.alive.context("a client process did not report its pings")
    }))
    .await;
    answers.into_iter().sum()
}

type Conn =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Open one WebSocket per token, `concurrency` at a time; fails on the first error.
async fn connect_all(
    addr: &SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    tokens: &[String],
    first: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<Conn>, String)> {
    let next_source = Arc::new(AtomicUsize::new(first));
    let results: Vec<anyhow::Result<(Conn, String)>> =
        futures_util::stream::iter(tokens.iter().cloned())
            .map(|token| {
                let tls = tls.clone();
                let next_source = next_source.clone();
                let addr = *addr;
                async move {
                    let i = next_source.fetch_add(1, Ordering::Relaxed);
                    connect(addr, tls, &token, source(i)).await
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let mut conns = Vec::with_capacity(results.len());
    let mut key_exchange = String::new();
    for r in results {
        let (c, kx) = r?;
        if key_exchange.is_empty() {
            key_exchange = kx;
        }
        conns.push(c);
    }
    Ok((conns, key_exchange))
}

/// 127.0.0.1 to 127.0.0.250 in turn.
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, (i % 250) as u8 + 1))
}

async fn connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
    from: IpAddr,
) -> anyhow::Result<(Conn, String)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect from {from}"))?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("TLS handshake")?;
    let kx = tls
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
        .unwrap_or_default();
    let mut req = format!("wss://localhost:{}/v1/ws", addr.port()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .context("WebSocket upgrade")?;
    Ok((ws, kx))
}

/// Ping every connection; count those that answer with a pong within 30 s.
async fn ping_all(conns: Vec<Conn>) -> usize {
    futures_util::stream::iter(conns)
        .map(|mut ws| async move {
            if ws
                .send(WsMessage::Ping(b"idle?".to_vec().into()))
                .await
                .is_err()
            {
                return false;
            }
            let answer = tokio::time::timeout(Duration::from_secs(30), async {
                while let Some(msg) = ws.next().await {
                    match msg {
                        Ok(WsMessage::Pong(_)) => return true,
                        Ok(_) => continue,
                        Err(_) => return false,
                    }
                }
                false
            })
            .await;
            let _ = ws.close(None).await;
            matches!(answer, Ok(true))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await
}
