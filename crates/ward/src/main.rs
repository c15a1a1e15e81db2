//! `ward`: the one binary. `ward serve` runs the server; `ward admin …` administers it
//! directly on its database (the operator holds the data directory and master key); the
//! client commands (`enroll`, `send`, `sync`, …) use an end-to-end encrypted device profile.

mod bench;
mod breakglass_cmd;
mod client_cmd;
mod clinical_cmd;
mod compliance;
mod progress;
mod retention_cmd;
mod role_cmd;
mod workers;
mod workflow_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ward_proto::{CreateUserRequest, Role, Username};
use ward_server::config::{Config, Overrides};
use ward_server::service::Actor;
use ward_server::{Services, clock::SystemClock};

#[derive(Parser)]
#[command(name = "ward", version, about = "Ward: secure clinical messaging")]
struct Cli {
    /// Print results as JSON (one object, or one per line for streams).
    #[arg(long, global = true)]
    json: bool,
    /// Client profile directory (default: $WARD_PROFILE, else ~/.ward).
    #[arg(long, global = true, value_name = "DIR")]
    profile: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Administer users, devices and the audit log (works on the database directly).
    Admin(AdminArgs),
    /// Enroll this device with a one-time code from your administrator.
    Enroll(client_cmd::EnrollArgs),
    /// Log in again (after the session expired), or register a new device with --server.
    Login(client_cmd::LoginArgs),
    /// Send a message.
    Send(client_cmd::SendArgs),
    /// Receive messages.
    Sync(client_cmd::SyncArgs),
    /// List conversations.
    Conversations,
    /// Create groups and change their members.
    #[command(subcommand)]
    Group(client_cmd::GroupCommand),
    /// Download, verify and decrypt the attachments of a message in your history (again).
    Download {
        /// Message id.
        message_id: String,
        /// Directory to write them to (created if missing; nothing is overwritten); an image's
        /// thumbnail is written beside it as `NAME.thumb.jpg`.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Send a read receipt for a message.
    Read {
        /// Message id.
        message_id: String,
    },
    /// Show the per-device delivery states of a message with timestamps (queued, sent,
    /// delivered, read, acknowledged, failed, expired, escalated) and its escalation.
    Status {
        /// Message id.
        message_id: String,
    },
    /// Acknowledge an urgent or STAT message sent to your clinical role.
    Ack {
        /// Message id.
        message_id: String,
        /// accept, decline, call-me, or a free-text answer (sent only encrypted).
        #[arg(long, default_value = "accept")]
        response: String,
    },
    /// Change your password (current one from `WARD_PASSWORD`, new one from
    /// `WARD_NEW_PASSWORD`, or asked for); ends your sessions on other devices.
    Passwd,
    /// The compliance journal: make the journal key, export the archive (offline).
    #[command(subcommand)]
    Compliance(compliance::ComplianceCommand),
    /// Load-test an in-process server with the clinical chat workload (docs/benchmarks.md).
    Bench(bench::BenchArgs),
    /// Emergency access to a conversation you are not in (audited, time-limited), or `list`.
    BreakGlass(breakglass_cmd::BreakGlassArgs),
    /// Do-not-disturb with a covering colleague.
    #[command(subcommand)]
    Dnd(clinical_cmd::DndCommand),
}

#[derive(Args, Clone)]
struct Location {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (default ./ward-data).
    #[arg(long, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://… (default sqlite://DATA/ward.db).
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    location: Location,
    /// Listen address (default 127.0.0.1:8443).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Serve plain HTTP without TLS. Refused unless the listen address is loopback.
    #[arg(long)]
    dangerous_plain_http: bool,
    /// Bind the listen address with SO_REUSEPORT so other `ward serve` processes can share
    /// it (each its own node; needs PostgreSQL and `[cluster]`; ADR 0021).
    #[arg(long)]
    reuse_port: bool,
    /// Run this many worker processes on one port (SO_REUSEPORT), each its own node over
    /// the same PostgreSQL and NATS; this process only starts and stops them (ADR 0021).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16>,
}

#[derive(Args)]
struct AdminArgs {
    #[command(flatten)]
    location: Location,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// Devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Session and security policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The data-loss-prevention policy clients enforce before encrypting.
    #[command(subcommand)]
    Dlp(DlpCommand),
    /// Organisation settings: the compliance journal key.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Retention: message lifespan, statutory retention, journal archive retention, purge.
    #[command(subcommand)]
    Retention(retention_cmd::RetentionCommand),
    /// Legal holds on users or conversations.
    #[command(subcommand)]
    Hold(retention_cmd::HoldCommand),
    /// GDPR/APPI erasure requests.
    #[command(subcommand)]
    Erasure(retention_cmd::ErasureCommand),
    /// Break-glass grants (ADR 0016).
    #[command(subcommand)]
    BreakGlass(AdminBreakGlassCommand),
    /// Clinical roles (duties such as cardiology-on-call) and who holds them.
    #[command(subcommand)]
    Role(workflow_cmd::RoleCommand),
    /// Shift schedules of clinical roles.
    #[command(subcommand)]
    Schedule(workflow_cmd::ScheduleCommand),
    /// Escalation policies of clinical roles.
    #[command(subcommand)]
    Escalation(workflow_cmd::EscalationCommand),
    /// Organisation message templates for codes and emergencies.
    #[command(subcommand)]
    Template(clinical_cmd::TemplateCommand),
}

#[derive(Subcommand)]
enum AdminBreakGlassCommand {
    /// Every grant, newest first (audited).
    List,
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Install the journal public key (journal-public.json from `ward compliance keygen`).
    /// It becomes the current key: every application message must carry a copy sealed to it.
    /// Earlier keys stay valid for older copies (rotation).
    SetJournalKey {
        /// The public key file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DlpCommand {
    /// Show the DLP document.
    Show,
    /// Replace the DLP document with a JSON file `{"config": {...}, "policy": {...}}`
    /// (see docs/dlp.md); it is validated before it is stored.
    Set {
        /// The JSON file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once from the command line"
)]
enum PolicyCommand {
    /// Show the policy.
    Show,
    /// Change policy values; durations like 90s, 15m, 12h, 7d.
    Set {
        /// Require a TOTP second factor at login (true/false).
        #[arg(long)]
        mfa_required: Option<bool>,
        /// Automatic logoff after this long without activity (1m to 4h).
        #[arg(long, value_parser = parse_duration)]
        idle_timeout: Option<u64>,
        /// Session ends this long after login (15m to 7d).
        #[arg(long, value_parser = parse_duration)]
        absolute_timeout: Option<u64>,
        /// Enrollment codes expire after this long (1h to 30d).
        #[arg(long, value_parser = parse_duration)]
        enrollment_ttl: Option<u64>,
        /// Failed logins before the account locks (1 to 100).
        #[arg(long)]
        max_failed_logins: Option<u32>,
        /// How long a lock lasts (1m to 24h).
        #[arg(long, value_parser = parse_duration)]
        lockout: Option<u64>,
        /// Allowed MLS ciphersuites, default first: xwing, x25519.
        #[arg(long, value_delimiter = ',', value_parser = parse_ciphersuite)]
        ciphersuites: Option<Vec<u16>>,
        /// Minimum password length with MFA (8 to 64); without MFA at least 15 applies.
        #[arg(long)]
        password_min_length: Option<u32>,
        /// Roles that may open break-glass access, comma-separated (physician, nurse,
        /// pharmacist); `none` turns break-glass off.
        #[arg(long, value_parser = parse_break_glass_roles)]
        break_glass_roles: Option<BreakGlassRoles>,
        /// Longest break-glass access (5m to 24h).
        #[arg(long, value_parser = parse_duration)]
        break_glass_max: Option<u64>,
        /// Largest attachment (ciphertext) one upload may announce, e.g. 2GiB, 500MiB.
        #[arg(long, value_parser = parse_size)]
        attachment_max: Option<u64>,
        /// Organisation quota for all stored attachments, e.g. 100GiB.
        #[arg(long, value_parser = parse_size)]
        attachment_quota: Option<u64>,
        /// Media types clients refuse to attach, comma-separated (replaces the list; `none`
        /// allows every type), e.g. application/x-msdownload,application/java-archive.
        #[arg(long, value_parser = parse_list_or_none)]
        attachment_deny_types: Option<ListOrNone>,
        /// File extensions clients refuse to attach, comma-separated (replaces the list;
        /// `none` empties it), e.g. exe,bat,js.
        #[arg(long, value_parser = parse_list_or_none)]
        attachment_deny_extensions: Option<ListOrNone>,
    },
}

/// A comma-separated list, or `none` for an empty one.
#[derive(Clone, Debug)]
struct ListOrNone(Vec<String>);

fn parse_list_or_none(s: &str) -> Result<ListOrNone, String> {
    if s.trim() == "none" {
        return Ok(ListOrNone(Vec::new()));
    }
    let items: Vec<String> = s
        .split(',')
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect();
    if items.is_empty() {
        return Err("give a comma-separated list, or none".into());
    }
    Ok(ListOrNone(items))
}

/// The roles given to `--break-glass-roles`.
#[derive(Clone, Debug)]
struct BreakGlassRoles(Vec<Role>);

/// `physician,nurse` or `none`.
fn parse_break_glass_roles(s: &str) -> Result<BreakGlassRoles, String> {
    if s.trim() == "none" {
        return Ok(BreakGlassRoles(Vec::new()));
    }
    s.split(',')
        .map(|r| r.trim().parse::<Role>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map(BreakGlassRoles)
}

/// `90s`, `15m`, `12h`, `7d` or plain seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 12h or 7d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => return Err(format!("unknown duration unit {other:?}: use s, m, h or d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// A byte size: a number with an optional binary unit (B, KiB, MiB, GiB, TiB; K, M, G, T).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 500MiB or 2GiB"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
#[test]
fn sizes_parse() {
    assert_eq!(parse_size("2GiB"), Ok(2 << 30));
    assert_eq!(parse_size("500M"), Ok(500 << 20));
    assert_eq!(parse_size("1024"), Ok(1024));
    assert!(parse_size("2GB").is_err());
    assert!(parse_size("x").is_err());
    assert!(parse_size("99999999999TiB").is_err());
}

fn parse_ciphersuite(s: &str) -> Result<u16, String> {
    match s.trim() {
        "xwing" | "0x004D" | "0x004d" | "77" => Ok(0x004D),
        "x25519" | "0x0001" | "1" => Ok(0x0001),
        other => Err(format!(
            "unknown ciphersuite {other:?}: use xwing (0x004D) or x25519 (0x0001)"
        )),
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print a one-time enrollment code.
    Add {
        /// Username (a-z, 0-9, '.', '_', '-').
        username: String,
        /// admin, physician, nurse, pharmacist, compliance, patient or service.
        #[arg(long)]
        role: String,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List users.
    List,
    /// Suspend a user: every session ends at once.
    Suspend {
        /// Username.
        username: String,
    },
    /// Lift a suspension.
    Reactivate {
        /// Username.
        username: String,
    },
    /// Issue a new enrollment code for a user who has not enrolled yet.
    EnrollmentCode {
        /// Username.
        username: String,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List devices.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a device: its sessions end and it stops receiving at once.
    Revoke {
        /// Device id.
        device_id: String,
    },
    /// Remote wipe: revoke the device now; on its next contact it erases its profile and
    /// confirms. Members remove it from their MLS groups on their next sync.
    Wipe {
        /// Device id.
        device_id: String,
    },
    /// Show a device's wipe order: ordered, delivered, confirmed.
    WipeStatus {
        /// Device id.
        device_id: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and signed checkpoints; exit 1 naming the first bad record.
    Verify,
    /// Print records.
    List {
        /// Records after this seq.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        fixed_mmap_threshold();
    }
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs this process again (same pid, arguments and descriptors) with glibc's mmap threshold
/// fixed at 1 MiB, unless the operator set it. glibc otherwise raises the threshold after the
/// first large buffer is freed (up to 32 MiB), so the next part buffers and password-hash
/// blocks come from per-thread arenas that keep their pages: a 1 GiB attachment round trip
/// held 64 MiB at peak instead of 40 (docs/benchmarks.md). A failed exec changes nothing.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        const MMAP_THRESHOLD_VAR: &str = "MALLOC_MMAP_THRESHOLD_";
        if std::env::var_os(MMAP_THRESHOLD_VAR).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(MMAP_THRESHOLD_VAR, "1048576")
            .exec();
        eprintln!("warning: could not fix the allocator's mmap threshold ({err}); continuing");
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("WARD_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    let dir = client_cmd::profile_dir(cli.profile);
    match cli.command {
        Command::Serve(args) => return serve(args).await,
        Command::Bench(args) => return bench::run(args, json).await,
        Command::Admin(args) => return admin(args, json).await,
        Command::Compliance(c) => compliance::run(c, &dir, json).await?,
        Command::Enroll(a) => client_cmd::enroll(&dir, a, json).await?,
        Command::Login(a) => client_cmd::login(&dir, a, json).await?,
        Command::Send(a) => client_cmd::send(&dir, a, json).await?,
        Command::Sync(a) => client_cmd::sync(&dir, a, json).await?,
        Command::Conversations => client_cmd::conversations(&dir, json).await?,
        Command::Group(g) => client_cmd::group(&dir, g, json).await?,
        Command::Dnd(c) => clinical_cmd::dnd(&dir, c, json).await?,
        Command::Read { message_id } => client_cmd::read(&dir, &message_id, json).await?,
        Command::Download {
            message_id,
            dir: out,
        } => client_cmd::download(&dir, &message_id, &out, json).await?,
        Command::Status { message_id } => role_cmd::status(&dir, &message_id, json).await?,
        Command::Ack {
            message_id,
            response,
        } => role_cmd::ack(&dir, &message_id, &response, json).await?,
        Command::Passwd => client_cmd::passwd(&dir, json).await?,
        Command::BreakGlass(a) => breakglass_cmd::run(&dir, a, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn load_config(loc: &Location, listen: Option<String>, plain: bool) -> anyhow::Result<Config> {
    Config::load(
        loc.config.as_deref(),
        Overrides {
            data_dir: loc.data.clone(),
            listen,
            database_url: loc.database_url.clone(),
            dangerous_plain_http: plain,
        },
    )
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(
        &args.location,
        args.listen.clone(),
        args.dangerous_plain_http,
    )?;
    if let Some(k) = args.workers.filter(|k| *k > 1) {
        ward_server::config::validate_reuse_port(
            true,
            &config.database_url,
            config.cluster.is_some(),
        )
        .with_context(|| format!("--workers {k}"))?;
        return workers::supervise(k, &args, &config).await;
    }
    if args.reuse_port {
        ward_server::config::validate_reuse_port(
            true,
            &config.database_url,
            config.cluster.is_some(),
        )
        .context("--reuse-port")?;
        config.reuse_port = true;
    }
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
    };
    let running = ward_server::start(&config, shutdown).await?;
    let scheme = if running.ca_pem.is_some()
        || config.tls != ward_server::config::TlsMode::DangerousPlainHttp
    {
        "https"
    } else {
        "http"
    };
    println!("Ward is listening on {scheme}://{}", running.addr);
    println!("Organisation: {}", running.services.organisation_name());
    println!("Database: {}", running.services.store.backend());
    if let Some(fp) = &running.ca_fingerprint {
        println!(
            "TLS CA certificate: {}",
            config.data_dir.join("tls").join("ca.pem").display()
        );
        println!("TLS CA SHA-256 fingerprint: {fp}");
    }
    if scheme == "http" {
        println!("WARNING: plain HTTP (dangerous_plain_http); use only for local testing");
    }
    running.task.await.context("server task failed")??;
    Ok(ExitCode::SUCCESS)
}

/// The server's services on its database, as the local operator (data directory and master
/// key), for `ward admin` and `ward compliance export`.
async fn open_services(loc: &Location) -> anyhow::Result<Arc<Services>> {
    let config = load_config(loc, None, false)?;
    ward_server::create_private_dir(&config.data_dir)?;
    let master = Arc::new(match std::env::var("WARD_MASTER_KEY") {
        Ok(hex) => ward_server::keys::MasterKey::from_hex(&hex)
            .context("WARD_MASTER_KEY is not a valid key")?,
        Err(_) => ward_server::keys::MasterKey::load_or_create(&config.master_key_file)?,
    });
    let store = ward_server::open_store(&config.database_url).await?;
    let services = Services::start(
        store,
        master,
        &config.organisation_name,
        Arc::new(SystemClock),
    )
    .await?;
    // Retention and erasure run here too: they remove blob objects with their records.
    let _ = services
        .blob_objects
        .set(Arc::new(ward_server::objects::BlobObjects::open(
            &config.blobs,
        )?));
    Ok(services)
}

async fn admin(args: AdminArgs, json: bool) -> anyhow::Result<ExitCode> {
    let services = open_services(&args.location).await?;
    let actor = Actor::cli();
    let out = |value: serde_json::Value, text: String| {
        if json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    };
    let username = |s: &str| Username::parse(s).map_err(|e| anyhow::anyhow!("{e}"));
    let code = match args.command {
        AdminCommand::User(UserCommand::Add {
            username: u,
            role,
            display_name,
        }) => {
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let r = services
                .create_user(
                    &actor,
                    CreateUserRequest {
                        username: username(&u)?,
                        role,
                        display_name,
                    },
                )
                .await
                .map_err(api)?;
            out(
                serde_json::to_value(&r)?,
                format!(
                    "Created {} ({}), id {}.\nEnrollment code (one-time, expires {}): {}",
                    r.user.username, r.user.role, r.user.user_id, r.expires_at, r.enrollment_code
                ),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::User(UserCommand::List) => {
            let users = services.list_users(&actor).await.map_err(api)?;
            let text = users
                .iter()
                .map(|u| {
                    format!(
                        "{}\t{}\t{:?}\t{}\t{}",
                        u.username, u.role, u.status, u.user_id, u.display_name
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(
                serde_json::json!({ "users": users }),
                if text.is_empty() {
                    "no users".into()
                } else {
                    text
                },
            );
            ExitCode::SUCCESS
        }
        AdminCommand::User(UserCommand::Suspend { username: u }) => {
            let r = services
                .suspend_user(&actor, &username(&u)?)
                .await
                .map_err(api)?;
            out(
                serde_json::to_value(&r)?,
                format!("Suspended {}; every session was revoked.", r.username),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::User(UserCommand::Reactivate { username: u }) => {
            let r = services
                .reactivate_user(&actor, &username(&u)?)
                .await
                .map_err(api)?;
            out(
                serde_json::to_value(&r)?,
                format!("Reactivated {}.", r.username),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::User(UserCommand::EnrollmentCode { username: u }) => {
            let r = services
                .reissue_enrollment_code(&actor, &username(&u)?)
                .await
                .map_err(api)?;
            out(
                serde_json::to_value(&r)?,
                format!(
                    "Enrollment code for {} (expires {}): {}",
                    r.user.username, r.expires_at, r.enrollment_code
                ),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Device(DeviceCommand::List { user }) => {
            let user = user.as_deref().map(username).transpose()?;
            let devices = services
                .list_devices(
                    &actor,
                    ward_server::service::DeviceScope::Any,
                    user.as_ref(),
                )
                .await
                .map_err(api)?;
            let text = devices
                .iter()
                .map(|d| format!("{}\t{}\t{:?}\t{}", d.device_id, d.user_id, d.status, d.name))
                .collect::<Vec<_>>()
                .join("\n");
            out(
                serde_json::json!({ "devices": devices }),
                if text.is_empty() {
                    "no devices".into()
                } else {
                    text
                },
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Device(DeviceCommand::Revoke { device_id }) => {
            let id = device_id
                .parse()
                .map_err(|_| anyhow::anyhow!("{device_id:?} is not a device id (a UUID)"))?;
            let d = services
                .revoke_device(&actor, ward_server::service::DeviceScope::Any, id)
                .await
                .map_err(api)?;
            out(
                serde_json::to_value(&d)?,
                format!("Revoked device {}.", d.device_id),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Device(DeviceCommand::Wipe { device_id }) => {
            let id = device_id
                .parse()
                .map_err(|_| anyhow::anyhow!("{device_id:?} is not a device id (a UUID)"))?;
            let w = services.wipe_device(&actor, id).await.map_err(api)?;
            out(
                serde_json::to_value(&w)?,
                format!(
                    "Wipe of device {} ordered: revoked now; it erases its data on its next contact.",
                    w.device_id
                ),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Device(DeviceCommand::WipeStatus { device_id }) => {
            let id = device_id
                .parse()
                .map_err(|_| anyhow::anyhow!("{device_id:?} is not a device id (a UUID)"))?;
            let w = services.wipe_status(&actor, id).await.map_err(api)?;
            let when = |t: Option<time::OffsetDateTime>| {
                t.map_or_else(|| "not yet".to_owned(), |t| t.to_string())
            };
            out(
                serde_json::to_value(&w)?,
                format!(
                    "device {}: ordered {}, delivered {}, confirmed {}",
                    w.device_id,
                    w.ordered_at,
                    when(w.delivered_at),
                    when(w.confirmed_at)
                ),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Audit(AuditCommand::Verify) => {
            let r = services.audit.verify(&actor).await.map_err(api)?;
            let text = if r.ok {
                format!(
                    "audit log intact: {} records, {} signed checkpoints",
                    r.records, r.checkpoints
                )
            } else {
                format!(
                    "AUDIT LOG BROKEN at record {}: {}",
                    r.first_bad_seq.unwrap_or(0),
                    r.problem.clone().unwrap_or_default()
                )
            };
            out(serde_json::to_value(&r)?, text);
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        AdminCommand::Org(OrgCommand::SetJournalKey { file }) => {
            let key = compliance::read_public_key_file(&file)?;
            let k = services
                .set_journal_key(&actor, key.as_bytes().to_vec())
                .await
                .map_err(api)?;
            out(
                serde_json::json!({"key_id": k.key_id, "created_at": k.created_at.unix_timestamp()}),
                format!(
                    "Journal key {} installed; clients seal every message's journal copy to it.",
                    k.key_id
                ),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Dlp(DlpCommand::Show) => {
            let doc = services
                .policy()
                .dlp
                .unwrap_or_else(|| serde_json::json!({}));
            out(doc.clone(), serde_json::to_string_pretty(&doc)?);
            ExitCode::SUCCESS
        }
        AdminCommand::Dlp(DlpCommand::Set { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let doc = validate_dlp_document(&text)
                .with_context(|| format!("{} is not a valid DLP document", file.display()))?;
            services
                .set_dlp_policy(&actor, doc.clone())
                .await
                .map_err(api)?;
            out(
                doc,
                "DLP policy updated; clients apply it to their next message.".to_owned(),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Policy(PolicyCommand::Show) => {
            let p = services.policy_info(&actor).map_err(api)?;
            out(serde_json::to_value(&p)?, policy_text(&p));
            ExitCode::SUCCESS
        }
        AdminCommand::Policy(PolicyCommand::Set {
            mfa_required,
            idle_timeout,
            absolute_timeout,
            enrollment_ttl,
            max_failed_logins,
            lockout,
            ciphersuites,
            password_min_length,
            break_glass_roles,
            break_glass_max,
            attachment_max,
            attachment_quota,
            attachment_deny_types,
            attachment_deny_extensions,
        }) => {
            let break_glass_max_minutes = match break_glass_max {
                Some(secs) if secs % 60 != 0 => {
                    anyhow::bail!("--break-glass-max must be whole minutes (got {secs} s)")
                }
                Some(secs) => Some(u32::try_from(secs / 60).unwrap_or(u32::MAX)),
                None => None,
            };
            let req = ward_proto::UpdatePolicyRequest {
                mfa_required,
                idle_timeout_secs: idle_timeout,
                absolute_timeout_secs: absolute_timeout,
                enrollment_ttl_secs: enrollment_ttl,
                max_failed_logins,
                lockout_secs: lockout,
                ciphersuites,
                password_min_length,
                notification_privacy: None,
                break_glass_roles: break_glass_roles.map(|r| r.0),
                break_glass_max_minutes,
                attachment_max_bytes: attachment_max,
                attachment_quota_bytes: attachment_quota,
                attachment_denied_media_types: attachment_deny_types.map(|l| l.0),
                attachment_denied_extensions: attachment_deny_extensions.map(|l| l.0),
            };
            let p = services.update_policy(&actor, req).await.map_err(api)?;
            out(
                serde_json::to_value(&p)?,
                format!("Policy updated.\n{}", policy_text(&p)),
            );
            ExitCode::SUCCESS
        }
        AdminCommand::BreakGlass(AdminBreakGlassCommand::List) => {
            let grants = services.all_break_glass(&actor).await.map_err(api)?;
            let text = grants
                .iter()
                .map(|g| {
                    format!(
                        "{}\t{}\t{}\t{} to {}\t{}\t{}",
                        g.grant_id,
                        g.conversation_id,
                        g.username,
                        g.granted_at,
                        g.expires_at,
                        match (g.ended_at, g.added_at) {
                            (Some(t), _) => format!("ended {t}"),
                            (None, Some(t)) => format!("active, added {t}"),
                            (None, None) => "active, not yet added".to_owned(),
                        },
                        g.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(
                serde_json::json!({ "grants": grants }),
                if text.is_empty() {
                    "no break-glass grants".into()
                } else {
                    text
                },
            );
            ExitCode::SUCCESS
        }
        AdminCommand::Role(c) => workflow_cmd::role(&services, &actor, c, json).await?,
        AdminCommand::Schedule(c) => workflow_cmd::schedule(&services, &actor, c, json).await?,
        AdminCommand::Escalation(c) => workflow_cmd::escalation(&services, &actor, c, json).await?,
        AdminCommand::Template(c) => clinical_cmd::template(&services, &actor, c, json).await?,
        AdminCommand::Audit(AuditCommand::List { after, limit }) => {
            let page = services
                .audit
                .page(&actor, after, limit)
                .await
                .map_err(api)?;
            let text = page
                .records
                .iter()
                .map(|r| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        r.seq,
                        r.at,
                        r.action,
                        r.target.clone().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(serde_json::to_value(&page)?, text);
            ExitCode::SUCCESS
        }
        AdminCommand::Retention(c) => retention_cmd::retention(&services, &actor, c, json).await?,
        AdminCommand::Hold(c) => retention_cmd::hold(&services, &actor, c, json).await?,
        AdminCommand::Erasure(c) => retention_cmd::erasure(&services, &actor, c, json).await?,
    };
    services.audit.checkpoint().await.map_err(api)?;
    Ok(code)
}

/// Parse a DLP document with the detectors' own types, so what is stored is what clients read.
fn validate_dlp_document(text: &str) -> anyhow::Result<serde_json::Value> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Document {
        #[serde(default)]
        config: Option<ward_core::dlp::DlpConfigSpec>,
        #[serde(default)]
        policy: Option<ward_core::dlp::DlpPolicy>,
    }
    let doc: Document = serde_json::from_str(text)?;
    if let Some(c) = doc.config {
        ward_core::dlp::DlpConfig::new(c).map_err(|e| anyhow::anyhow!("config: {e}"))?;
    }
    if let Some(p) = &doc.policy {
        p.validate().map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    }
    Ok(serde_json::from_str(text)?)
}

fn policy_text(p: &ward_proto::PolicyInfo) -> String {
    let suites: Vec<String> = p
        .ciphersuites
        .iter()
        .map(|c| format!("0x{c:04X}"))
        .collect();
    format!(
        "MFA required: {}\nidle timeout: {} s\nabsolute timeout: {} s\nenrollment codes valid: {} s\n\
         lock after {} failed logins for {} s\nciphersuites: {}\n\
         password minimum length: {} (at least 15 without MFA)\n\
         notification privacy (ids only in pushed events): {}\n\
         break-glass roles: {}; longest access: {} min\n\
         largest attachment: {} bytes; attachment quota: {} bytes\n\
         refused attachment types: {}\n\
         refused attachment extensions: {}",
        p.mfa_required,
        p.idle_timeout_secs,
        p.absolute_timeout_secs,
        p.enrollment_ttl_secs,
        p.max_failed_logins,
        p.lockout_secs,
        suites.join(", "),
        p.password_min_length,
        p.notification_privacy,
        if p.break_glass_roles.is_empty() {
            "none (off)".to_owned()
        } else {
            p.break_glass_roles
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
        p.break_glass_max_minutes,
        p.attachment_max_bytes,
        p.attachment_quota_bytes,
        none_if_empty(&p.attachment_denied_media_types),
        none_if_empty(&p.attachment_denied_extensions),
    )
}

fn none_if_empty(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// Print `value` for `--json`, else `text`.
fn print(json: bool, value: serde_json::Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn api(e: ward_server::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}
