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
//! Both processes raise their soft file-descriptor limit to the hard limit first; N beyond
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
use ward_store::{Device, EnrollmentCode, Session, User, UserStore};

/// File descriptors kept free for the process's own files, listeners and database.
const FD_MARGIN: u64 = 200;
/// Handshakes in flight at once.
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
    /// Machine description.
    pub machine: String,
}

/// Run the idle-connection measurement.
pub async fn run(n: usize, idle_secs: u64, json_out: bool) -> anyhow::Result<ConnectionsReport> {
    let fd_limit = raise_fd_limit()?;
    let needed = (n + WARM_UP_CONNECTIONS) as u64 + FD_MARGIN;
    if needed > fd_limit {
        bail!(
            "--idle-connections {n} needs about {needed} file descriptors in each process, but \
             the hard limit here is {fd_limit} (raise it with `ulimit -Hn` as a privileged user)"
        );
    }
    let dir = std::env::temp_dir().join(format!("ward-conns-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, n, idle_secs, fd_limit, json_out).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    dir: &Path,
    n: usize,
    idle_secs: u64,
    fd_limit: u64,
    json_out: bool,
) -> anyhow::Result<ConnectionsReport> {
    let say = |m: &str| {
        if !json_out {
            eprintln!("{m}");
        }
    };
    let total = n + WARM_UP_CONNECTIONS;
    let mut server = Server::start(dir, total)?;
    say(&format!(
        "server pid {} at {}",
        server.child.id(),
        server.addr
    ));

    say(&format!(
        "writing {total} sessions into the server's database"
    ));
    let tokens = sessions(&dir.join("ward.db"), total).await?;
    let ca = std::fs::read_to_string(dir.join("tls").join("ca.pem")).context("server CA")?;
    let tls = ward_client::tls_config(&ca).map_err(|e| anyhow::anyhow!("server CA: {e}"))?;

    let (warm, key_exchange) =
        connect_all(&server.addr, &tls, &tokens[..WARM_UP_CONNECTIONS]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.rss_kib()?;
    say(&format!(
        "warm-up done; server RSS {before} KiB; opening {n} connections"
    ));

    let started = Instant::now();
    let (conns, _) = connect_all(&server.addr, &tls, &tokens[WARM_UP_CONNECTIONS..]).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    say(&format!(
        "{n} connected in {connect_secs:.1} s; idle {idle_secs} s"
    ));
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let after = server.rss_kib()?;
    let alive = ping_all(conns).await;
    drop(warm);
    server.stop();
    if alive < n {
        bail!("only {alive} of {n} connections answered a ping after {idle_secs} s idle");
    }
    Ok(ConnectionsReport {
        connections: n,
        alive_at_end: alive,
        server_rss_before_kib: before,
        server_rss_after_kib: after,
        server_kib_per_connection: (after.saturating_sub(before)) as f64 / n as f64,
        connect_secs,
        connects_per_sec: n as f64 / connect_secs.max(1e-9),
        idle_secs,
        key_exchange,
        fd_limit,
        machine: super::machine(),
    })
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
}

impl Server {
    /// `ward serve` on 127.0.0.1 with TLS, limits raised for `connections`.
    pub(super) fn start(dir: &Path, connections: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("path of this binary")?;
        let mut child = Command::new(exe)
            .env_remove("WARD_MASTER_KEY")
            .env("WARD_LOG", "warn")
            .env(
                "WARD_LIMITS__MAX_CONNECTIONS",
                (connections + FD_MARGIN as usize).to_string(),
            )
            .env("WARD_LIMITS__REQUESTS_PER_SECOND", "10000000")
            .env("WARD_LIMITS__REQUEST_BURST", "10000000")
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start ward serve")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("ward serve exited before printing its URL");
            };
            if let Some(u) = line?.strip_prefix("Ward is listening on ") {
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
        Ok(Self { child, addr })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory of the server so far (VmHWM), KiB.
    pub(super) fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{field} of the server"))
    }

    pub(super) fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One active user with one device and a live session per token, written straight into the
/// server's SQLite database (the server runs in WAL mode, so both processes can write).
async fn sessions(db: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let store = ward_store_sqlite::SqliteStore::open(db)
        .await
        .map_err(|e| anyhow::anyhow!("open the server's database: {e}"))?;
    let now = OffsetDateTime::now_utc();
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let user_id = UserId::random();
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let code = rand::random::<[u8; 32]>();
        let user = User {
            id: user_id,
            username: Username::parse(&format!("conn-{i:06}"))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
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
        tokens.push(token);
    }
    store.close().await;
    Ok(tokens)
}

type Conn =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Open one WebSocket per token, `CONNECT_CONCURRENCY` at a time; fails on the first error.
async fn connect_all(
    addr: &SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    tokens: &[String],
) -> anyhow::Result<(Vec<Conn>, String)> {
    let next_source = Arc::new(AtomicUsize::new(0));
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
            .buffer_unordered(CONNECT_CONCURRENCY)
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
