//! Ward server: the MLS Delivery Service (RFC 9420/9750) and the governance plane
//! (identity, devices, audit) behind an HTTPS and WebSocket API.
//!
//! Layout: [`service`] holds the logic without HTTP (also used by the admin CLI); [`http`] is
//! the thin axum layer; [`listener`] serves it over rustls; [`keys`] and [`tls`] manage the
//! secrets at rest; [`hub`] pushes envelopes to connected devices.
//!
//! The server never sees message plaintext: envelopes carry opaque MLS ciphertext.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod hub;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod objects;
pub mod ratelimit;
pub mod service;
pub mod tls;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ward_store::Store;

pub use config::Config;
pub use service::Services;

/// Open the store named by a database URL (`sqlite://PATH` or `postgres://…`).
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let s = ward_store_postgres::PgStore::connect(url).await.context(
            "could not connect to PostgreSQL (check database_url and that the server runs)",
        )?;
        Ok(Arc::new(s))
    } else if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("could not create database directory {}", dir.display())
            })?;
        }
        let s = ward_store_sqlite::SqliteStore::open(path)
            .await
            .with_context(|| format!("could not open SQLite database {}", path.display()))?;
        restrict_permissions(path);
        Ok(Arc::new(s))
    } else {
        anyhow::bail!("database URL must start with sqlite:// or postgres://")
    }
}

/// Create the data directory with mode 0700 (existing directories are left as they are).
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("could not restrict permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// Make the database files readable by the owner only (they hold ciphertext and metadata).
fn restrict_permissions(db: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut names = vec![db.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut n = db.as_os_str().to_owned();
            n.push(suffix);
            names.push(n.into());
        }
        for f in names.iter().filter(|f| f.exists()) {
            if let Err(e) = std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)) {
                tracing::warn!(error = %e, file = %f.display(), "could not restrict database file permissions");
            }
        }
    }
}

/// A started server: its bound address, CA fingerprint (when TLS) and the task serving it.
pub struct Running {
    /// The bound address.
    pub addr: std::net::SocketAddr,
    /// SHA-256 fingerprint of the local CA, when the generated TLS is in use.
    pub ca_fingerprint: Option<String>,
    /// The CA certificate PEM, when generated.
    pub ca_pem: Option<String>,
    /// Shared services.
    pub services: Arc<Services>,
    /// Completes when the server has shut down.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Start a server from configuration: open the store, initialise the organisation and keys,
/// prepare TLS, bind, and serve until `shutdown` resolves.
pub async fn start(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    start_with_clock(config, Arc::new(clock::SystemClock), shutdown).await
}

/// [`start`] with a given clock (tests move time by hand).
pub async fn start_with_clock(
    config: &Config,
    clock: Arc<dyn clock::Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    create_private_dir(&config.data_dir)?;
    let master = Arc::new(match std::env::var("WARD_MASTER_KEY") {
        Ok(hex) => keys::MasterKey::from_hex(&hex).context("WARD_MASTER_KEY is not a valid key")?,
        Err(_) => keys::MasterKey::load_or_create(&config.master_key_file)?,
    });
    let store = open_store(&config.database_url).await?;
    let services = Services::start(store, master.clone(), &config.organisation_name, clock).await?;
    services.set_metrics_public(config.metrics_public);
    let _ = services
        .blob_objects
        .set(Arc::new(objects::BlobObjects::open(&config.blobs)?));
    let (tls_config, ca_fingerprint, ca_pem) = match &config.tls {
        config::TlsMode::Generated => {
            let m =
                tls::load_or_create(&config.data_dir.join("tls"), &master, &config.tls_hostnames)?;
            (
                Some(m.server_config),
                Some(m.ca_fingerprint),
                Some(m.ca_pem),
            )
        }
        config::TlsMode::Files { cert, key } => (Some(tls::from_pem_files(cert, key)?), None, None),
        config::TlsMode::DangerousPlainHttp => (None, None, None),
    };
    let listener = bind(config.listen, config.reuse_port)
        .with_context(|| format!("could not listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Joined last, so a failed start leaves no cluster tasks behind; before serving, so every
    // event of this node reaches the others.
    let cluster = match &config.cluster {
        Some(c) => Some(cluster::Cluster::start(c, &services).await?),
        None => None,
    };
    let app = http::router(services.clone(), &config.limits);
    let limits = listener::ServeLimits {
        max_connections: config.limits.max_connections,
        ..Default::default()
    };
    let svc = services.clone();
    let task = tokio::spawn(async move {
        let ticker = tokio::spawn(background_jobs(svc.clone()));
        let break_glass = tokio::spawn(service::breakglass::expiry_loop(svc.clone()));
        let escalation = tokio::spawn(service::escalation::escalation_loop(svc.clone()));
        let result = listener::serve(listener, tls_config, app, limits, shutdown).await;
        ticker.abort();
        break_glass.abort();
        escalation.abort();
        if let Some(cluster) = cluster {
            cluster.shutdown().await;
        }
        // A checkpoint at shutdown pins the audit head, so truncation while stopped is caught.
        if let Err(e) = svc.audit.checkpoint().await {
            tracing::warn!(error = %e, "final audit checkpoint failed");
        }
        result
    });
    Ok(Running {
        addr,
        ca_fingerprint,
        ca_pem,
        services,
        task,
    })
}

/// Pending connections the kernel queues per listener (capped by `net.core.somaxconn`): large,
/// so a burst of reconnecting devices is queued rather than refused.
const LISTEN_BACKLOG: u32 = 4096;

/// Bind the listening socket; with `reuse_port`, `SO_REUSEPORT` lets other worker processes
/// of this user bind the same address, and Linux spreads new connections over them by a hash
/// of the connection's addresses (ADR 0021).
pub fn bind(
    addr: std::net::SocketAddr,
    reuse_port: bool,
) -> anyhow::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's and tokio's own bind do: a restart may rebind while old connections linger.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        socket
            .set_reuseport(true)
            .context("set SO_REUSEPORT on the listener")?;
        #[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
        anyhow::bail!("reuse_port is not supported on this platform");
    }
    socket.bind(addr)?;
    Ok(socket.listen(LISTEN_BACKLOG)?)
}

/// How often the blob collector runs, on the service clock.
const BLOB_COLLECT_EVERY: time::Duration = time::Duration::hours(1);
/// How often the object store is swept for objects without a record: it lists every object.
const BLOB_SWEEP_EVERY: time::Duration = time::Duration::days(1);

/// Periodic work: audit checkpoints, purging expired sessions, the retention purge
/// (ADR 0013) whenever its interval has passed on the service clock, and the blob collector
/// (ADR 0017) hourly on the service clock.
async fn background_jobs(services: Arc<Services>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    let mut last_purge = None;
    let mut last_collect: Option<time::OffsetDateTime> = None;
    let mut last_sweep: Option<time::OffsetDateTime> = None;
    loop {
        every.tick().await;
        let now = services.now();
        if last_collect.is_none_or(|l| now - l >= BLOB_COLLECT_EVERY) {
            last_collect = Some(now);
            match services.collect_blobs().await {
                Ok(r) if r != service::blobs::CollectReport::default() => tracing::info!(
                    stale_uploads = r.stale_uploads,
                    unreferenced = r.unreferenced,
                    "blob collector ran"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "blob collector failed"),
            }
        }
        if services.blob_objects.get().is_some()
            && last_sweep.is_none_or(|l| now - l >= BLOB_SWEEP_EVERY)
        {
            last_sweep = Some(now);
            match services.sweep_orphaned_objects().await {
                Ok(r) => tracing::info!(
                    blobs = r.blobs_seen,
                    orphans_removed = r.orphans_removed,
                    "blob object sweep ran"
                ),
                Err(e) => tracing::warn!(error = %e, "blob object sweep failed"),
            }
        }
        if service::retention::purge_due(&services.policy().retention, last_purge, now) {
            last_purge = Some(now);
            match services.run_retention(&service::Actor::system()).await {
                Ok(r) => tracing::info!(
                    envelopes = r.envelopes_deleted,
                    journal = r.journal_deleted,
                    "retention purge ran"
                ),
                Err(e) => tracing::warn!(error = %e, "retention purge failed"),
            }
        }
        if let Err(e) = services.audit.checkpoint().await {
            tracing::warn!(error = %e, "audit checkpoint failed");
        }
        let now = services.now();
        let idle = now - time::Duration::seconds(services.policy().idle_timeout_secs as i64);
        match services.store.purge_sessions(idle, now).await {
            Ok(n) if n > 0 => tracing::info!(sessions = n, "expired sessions purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %error::error_chain(&e), "session purge failed"),
        }
        match services.expire_dnd().await {
            Ok(n) if n > 0 => tracing::info!(users = n, "do-not-disturb ended by its end time"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "do-not-disturb expiry failed"),
        }
    }
}
