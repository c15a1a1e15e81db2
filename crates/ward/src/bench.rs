//! `ward bench`: a load generator for the clinical chat workload of BENCH.md, server-only mode.
//!
//! It starts a real Ward server in this process (its own tokio runtime, threads named
//! `ward-server`, plain HTTP on 127.0.0.1:0, SQLite in a temporary directory or a fresh schema
//! of a PostgreSQL database), enrolls the population over HTTP, creates the conversations (one
//! commit with `add_users` and a Welcome each, opaque payloads), connects one WebSocket per
//! online device, then offers stepped open-loop message rates with pre-made opaque payloads and
//! measures send-ack and send→delivered latency, throughput, CPU and memory. A reconnect storm
//! follows. Every run checks that every device got every acknowledged message of its
//! conversations exactly once, in order; any loss, duplicate or reordering exits 1. WebSocket
//! pushes that arrive out of seq order are counted (`push_out_of_order`) and fatal only with
//! `--strict-order`: one node publishes each conversation in seq order (ADR 0020), but across
//! nodes only per origin node, so clients still order by seq. Devices acknowledge only the
//! gap-free prefix of each conversation, as a correct client does.
//!
//! Known simplifications (reported in the output as well): one device per user (the 10 % of
//! users with a second device are not modelled), plain HTTP instead of TLS, and the load
//! generator shares the process and the two cores with the server. Server CPU is measured as
//! the process's CPU minus the generator's own threads (the main runtime's `tokio-runtime-w*`
//! threads and the main thread), plus every `postgres` process when running on PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::{CreateUserRequest, Role, SendEnvelopeResponse, SyncResponse, Username};
use ward_server::config::{Config, Overrides, RawConfig};
use ward_server::service::Actor;

mod attachments;
mod connections;
mod e2e;
mod escalation;

const PASSWORD: &str = "bench password for the ward load generator";
const CIPHERSUITE: u16 = 0x004D;
const SMALL: usize = 512;
const LARGE: usize = 16 * 1024;
const SYNC_PAGE: usize = 500;

/// `ward bench` options.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Users (one device each); conversations scale with it (BENCH.md: 1,000).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Offered rates, messages per second, one step each.
    #[arg(long, value_delimiter = ',', default_value = "25,50,100,200,400,800")]
    rates: Vec<u32>,
    /// Measured window per step, seconds.
    #[arg(long, default_value_t = 10)]
    step_secs: u64,
    /// Warm-up before each measured window, seconds.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Database: a postgres:// URL (a fresh schema is created and dropped); default SQLite in a
    /// temporary directory.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Also write the JSON report to this file (also after a subcommand: `ward bench e2e --out F`).
    #[arg(long, value_name = "FILE", global = true)]
    out: Option<PathBuf>,
    /// Messages each reconnecting device should find waiting in the reconnect storm.
    #[arg(long, default_value_t = 100)]
    resync_messages: usize,
    /// How often an online device acknowledges what it received over its WebSocket (0: never).
    #[arg(long, default_value_t = 1000)]
    ack_interval_ms: u64,
    /// Random seed for membership and traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fail when the WebSocket pushes envelopes of a conversation out of seq order.
    #[arg(long)]
    strict_order: bool,
    /// Instead of the chat workload: hold this many idle authenticated TLS WebSockets against a
    /// `ward serve` child process and report its memory per connection.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    idle_connections: Option<u32>,
    /// With `--idle-connections`: how long to hold them idle before measuring, seconds.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// With `--idle-connections`: server worker processes sharing the port (`ward serve
    /// --workers K`, SO_REUSEPORT); more than 1 needs a PostgreSQL `--database-url` and NATS.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    server_workers: u16,
    /// With `--idle-connections`: child processes holding the connections (each needs about
    /// N/M file descriptors); 1 holds them in this process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    client_processes: u16,
    /// Chat workload on this many server nodes (1 or 2) over one PostgreSQL schema and NATS;
    /// devices alternate between the nodes and send to their own. 2 needs a PostgreSQL
    /// `--database-url`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    nodes: u8,
    /// NATS for `--nodes 2` and `--server-workers`.
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Instead of the chat workload: measure escalation latency (a STAT message's deadline →
    /// the next tier's device gets the alert over its WebSocket) with this many samples on the
    /// real clock (about 30 s + 1.5 s per sample).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=200))]
    escalation_samples: Option<u32>,
    /// Another benchmark instead of the chat workload.
    #[command(subcommand)]
    what: Option<BenchWhat>,
}

/// Benchmarks other than the chat workload.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchWhat {
    /// Encrypted attachments through the SDK against a `ward serve` child process: upload and
    /// download throughput and the peak memory of client and server.
    Attachments(attachments::AttachmentBenchArgs),
    /// Internal: one client process of `--idle-connections … --client-processes M`.
    #[command(hide = true)]
    IdleClient(connections::IdleClientArgs),
    /// The chat workload end to end with real MLS clients (the SDK) against a `ward serve`
    /// child process: send→decrypted latency, throughput, and the clients' crypto cost apart.
    E2e(e2e::E2eBenchArgs),
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Serialize, Debug, Default, Clone)]
struct Percentiles {
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

#[derive(Serialize, Debug, Default, Clone)]
struct StepReport {
    offered_msgs_per_sec: u32,
    sent: usize,
    acked: usize,
    send_errors: u64,
    /// Sends answered (acknowledged) per second during the measured window.
    acked_msgs_per_sec: f64,
    /// Per-recipient-device deliveries over WebSocket per second in the measured window.
    delivered_msgs_per_sec: f64,
    send_ack: Percentiles,
    send_to_delivered: Percentiles,
    /// Server CPU (process minus generator threads, plus PostgreSQL processes).
    server_cpu_ms: f64,
    server_cpu_ms_per_1000_delivered: f64,
    server_cpu_ms_per_1000_sent: f64,
    /// The load generator's own CPU in the window.
    generator_cpu_ms: f64,
    /// Whole process (server and generator).
    process_rss_mib: f64,
    /// Bytes written to storage per acknowledged message (this process, plus PostgreSQL).
    storage_write_bytes_per_msg: f64,
    /// Seconds after the window until every send of the step was answered.
    drain_secs: f64,
    /// delivered p99 ≤ 100 ms and at least 95 % of the offered rate acknowledged.
    meets_slo: bool,
}

#[derive(Serialize, Debug, Default, Clone)]
struct StormReport {
    devices: usize,
    previously_offline: usize,
    /// Messages each device found waiting: min, mean, max.
    backlog_min: usize,
    backlog_mean: f64,
    backlog_max: usize,
    backlog_messages_sent: usize,
    /// From the storm start until the last device had synced and acknowledged everything.
    catch_up_secs: f64,
    /// Per device: connect WebSocket, page through `/v1/sync`, acknowledge.
    per_device: Percentiles,
    sync_pages: usize,
    envelopes_synced: usize,
}

#[derive(Serialize, Debug, Default, Clone)]
struct Correctness {
    ok: bool,
    expected_deliveries: u64,
    delivered: u64,
    lost: u64,
    duplicates: u64,
    /// Envelopes pushed on a live WebSocket with a lower seq than one already pushed in the
    /// same conversation. One node publishes in seq order (ADR 0020), so this stays 0 there;
    /// fatal only with `--strict-order`.
    push_out_of_order: u64,
    /// Seq order broken in what a device assembled (a seq seen twice, or sync out of order).
    out_of_order: u64,
    /// Envelopes of sends the generator never saw acknowledged (errors); not a failure.
    unacknowledged_delivered: u64,
    websocket_drops: u64,
    /// Re-sent by sync after a dropped WebSocket, already seen, discarded (normal).
    redelivered_after_reconnect: u64,
    send_errors: u64,
    first_errors: Vec<String>,
}

#[derive(Serialize, Debug, Default, Clone)]
struct Population {
    users: usize,
    devices: usize,
    second_devices_modelled: bool,
    direct: usize,
    care_teams: usize,
    ward_groups: usize,
    offline_at_start: usize,
    websockets: usize,
    /// Average recipient devices per message (members − 1).
    mean_fanout: f64,
    setup_secs: f64,
}

#[derive(Serialize, Debug, Default, Clone)]
struct Report {
    mode: String,
    database: String,
    transport: String,
    /// Server nodes (1, or 2 over one PostgreSQL and NATS).
    nodes: usize,
    /// Share of the expected deliveries whose sender's and recipient's nodes differ (pushed
    /// through NATS).
    cross_node_delivery_share: f64,
    commit: Option<String>,
    machine: String,
    command: String,
    population: Population,
    /// RSS growth while the online devices' WebSockets connected, divided by their number
    /// (client and server side both in this process).
    rss_kib_per_websocket_pair: f64,
    steps: Vec<StepReport>,
    /// Highest step meeting delivered p99 ≤ 100 ms: its delivered and acknowledged rates.
    sustained_offered_msgs_per_sec: Option<u32>,
    sustained_delivered_msgs_per_sec: Option<f64>,
    sustained_acked_msgs_per_sec: Option<f64>,
    target_delivered_msgs_per_sec: f64,
    target_cpu_ms_per_delivered: f64,
    storm: StormReport,
    correctness: Correctness,
    notes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Shared state

struct Dev {
    user_id: String,
    device_id: String,
    token: String,
}

struct Conv {
    id: String,
    url: String,
    members: Vec<u32>,
}

struct Msg {
    conv: u32,
    sender: u32,
    intended_us: u64,
    /// Whether inside its step's measured window.
    measured: bool,
}

#[derive(Clone, Copy)]
struct Acked {
    seq: u64,
    ack_us: u64,
}

struct Shared {
    base: Instant,
    api: String,
    ws_url: String,
    /// Base URL of each node; with one node, `api`.
    node_apis: Vec<String>,
    /// Node of each device, by session token (devices alternate between nodes).
    node_by_token: HashMap<String, usize>,
    http: reqwest::Client,
    conv_by_id: HashMap<String, u32>,
    results: Mutex<Vec<Option<Acked>>>,
    send_errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    ack_interval: Option<Duration>,
    /// (conversation, sender device) of each planned message, by index.
    meta: Mutex<Vec<(u32, u32)>>,
    /// (sender device, conversation, seq) of every acknowledged send: a device's own messages
    /// are never pushed to it, so they fill its gaps (a client knows what it sent).
    own_sent: Mutex<HashSet<(u32, u32, u64)>>,
}

impl Shared {
    /// The base URL of the node the device with this token uses.
    fn api_for(&self, token: &str) -> &str {
        let node = self.node_by_token.get(token).copied().unwrap_or(0);
        self.node_apis
            .get(node)
            .map_or(self.api.as_str(), String::as_str)
    }
    /// `url` (made for the first node) on the node of the device with this token.
    fn at_node(&self, url: &str, token: &str) -> String {
        match url.strip_prefix(self.api.as_str()) {
            Some(path) => format!("{}{path}", self.api_for(token)),
            None => url.to_owned(),
        }
    }
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
    fn error(&self, e: String) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < 5 {
            f.push(e);
        }
    }
}

struct Rec {
    msg: u32,
    recv_us: u64,
    live: bool,
}

#[derive(Default)]
struct DevLog {
    recs: Vec<Rec>,
    /// Every (conversation, seq) assembled, and how it first arrived.
    seen: HashMap<(u32, u64), Via>,
    last: HashMap<u32, u64>,
    /// Per conversation: the highest seq acknowledged to the server (a gap-free prefix).
    acked: HashMap<u32, u64>,
    /// Per conversation: the highest seq synced in the storm (sync pages are in seq order).
    storm_last: HashMap<u32, u64>,
    duplicates: u64,
    out_of_order: u64,
    push_out_of_order: u64,
    drops: u64,
    redelivered: u64,
    unparsed: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// Pushed on a live WebSocket: repeats are duplicates, lower seqs are reordering.
    Live,
    /// Synced after a dropped WebSocket: already-seen seqs are expected re-deliveries.
    Resync,
    /// Synced in the storm after an explicit acknowledgement: repeats are duplicates.
    Storm,
}

impl DevLog {
    fn envelope(&mut self, conv: u32, seq: u64, msg: Option<u32>, now_us: u64, via: Via) {
        if let Some(&first) = self.seen.get(&(conv, seq)) {
            // The storm's sync re-sends what was seen live beyond the acknowledged prefix; a
            // reconnected socket can be pushed what its first sync already returned (the push
            // was still queued when the sync read it). Only a second live push, or sync
            // re-sending what was acknowledged, is a duplicate.
            let beyond_ack = via == Via::Storm && seq > self.acked.get(&conv).copied().unwrap_or(0);
            let push_after_sync = via == Via::Live && first != Via::Live;
            if via == Via::Resync || beyond_ack || push_after_sync {
                self.redelivered += 1;
            } else {
                self.duplicates += 1;
            }
            return;
        }
        self.seen.insert((conv, seq), via);
        let last = self.last.entry(conv).or_insert(0);
        if seq < *last && via == Via::Live {
            self.push_out_of_order += 1;
        }
        *last = (*last).max(seq);
        if via == Via::Storm {
            let storm_last = self.storm_last.entry(conv).or_insert(0);
            if seq < *storm_last {
                self.out_of_order += 1;
            }
            *storm_last = seq;
        }
        match msg {
            Some(msg) => self.recs.push(Rec {
                msg,
                recv_us: now_us,
                live: via == Via::Live,
            }),
            None => self.unparsed += 1,
        }
    }
}

impl DevLog {
    /// Per conversation with something new: the highest seq up to which this device has every
    /// seq (received, or sent by itself), above what it acknowledged. Seq 1 of every bench
    /// conversation is its creating commit, which the device never needs. This is what a
    /// correct client acknowledges: never past a gap, so a later resync cannot skip a message.
    fn gap_free(&self, sh: &Shared, dev: u32) -> HashMap<u32, u64> {
        let own = sh.own_sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = HashMap::new();
        for (&conv, &last) in &self.last {
            let acked = self.acked.get(&conv).copied().unwrap_or(1).max(1);
            let mut p = acked;
            while p < last
                && (self.seen.contains_key(&(conv, p + 1)) || own.contains(&(dev, conv, p + 1)))
            {
                p += 1;
            }
            if p > acked {
                out.insert(conv, p);
            }
        }
        out
    }

    fn mark_acked(&mut self, cursors: &HashMap<u32, u64>) {
        for (c, s) in cursors {
            let a = self.acked.entry(*c).or_insert(0);
            *a = (*a).max(*s);
        }
    }
}

/// The opaque payload: message index and intended send time (µs since the run's base), then
/// filler.
fn payload(msg: u32, intended_us: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0x5a; size];
    p[..8].copy_from_slice(&u64::from(msg).to_be_bytes());
    p[8..16].copy_from_slice(&intended_us.to_be_bytes());
    p
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The message index from the first 24 base64 characters of a payload.
fn msg_of_b64(payload: &str) -> Option<u32> {
    let head = base64::engine::general_purpose::STANDARD
        .decode(payload.get(..24)?)
        .ok()?;
    let idx = u64::from_be_bytes(head.get(..8)?.try_into().ok()?);
    u32::try_from(idx).ok()
}

fn msg_of_bytes(payload: &[u8]) -> Option<u32> {
    let idx = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    u32::try_from(idx).ok()
}

// ---------------------------------------------------------------------------------------------
// CPU, memory and I/O from /proc

#[derive(Clone, Copy, Default)]
struct Usage {
    process_ticks: u64,
    generator_ticks: u64,
    postgres_ticks: u64,
    write_bytes: u64,
}

fn ticks_of_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn io_write_bytes(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn usage(postgres: bool) -> Usage {
    let mut u = Usage::default();
    if let Ok(s) = std::fs::read_to_string("/proc/self/stat") {
        u.process_ticks = ticks_of_stat(&s).map(|t| t.1).unwrap_or(0);
    }
    u.write_bytes = io_write_bytes("/proc/self/io");
    let pid = std::process::id().to_string();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let tid = e.file_name().to_string_lossy().into_owned();
            let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            if let Some((comm, t)) = ticks_of_stat(&s)
                && (tid == pid || comm.starts_with("tokio-runtime-w"))
            {
                u.generator_ticks += t;
            }
        }
    }
    if postgres && let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            if let Some((comm, t)) = ticks_of_stat(&s)
                && comm == "postgres"
            {
                u.postgres_ticks += t;
                u.write_bytes += io_write_bytes(&format!("/proc/{name}/io"));
            }
        }
    }
    u
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentiles(mut v: Vec<u64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_unstable();
    let at = |p: f64| {
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    };
    Percentiles {
        samples: v.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: v[v.len() - 1] as f64 / 1000.0,
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

fn http_client() -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default TLS provider; plain HTTP still wants a config.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?)
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut req = http.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("POST {url}: {status}: {text}");
    }
    Ok(if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}

// ---------------------------------------------------------------------------------------------
// WebSocket clients

type DeviceTask = tokio::task::JoinHandle<(DevLog, HashMap<u32, u64>)>;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_ws(sh: &Shared, token: &str) -> anyhow::Result<Ws> {
    let ws_url = if sh.node_apis.len() > 1 {
        format!(
            "{}/v1/ws",
            sh.api_for(token).replacen("http://", "ws://", 1)
        )
    } else {
        sh.ws_url.clone()
    };
    let mut req = ws_url.as_str().into_client_request()?;
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

#[derive(Deserialize)]
struct WsEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default, borrow)]
    conversation_id: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    payload: Option<&'a str>,
}

/// Page through `/v1/sync`, acknowledging each page. Returns (pages, envelopes).
async fn sync_all(
    sh: &Shared,
    token: &str,
    log: &mut DevLog,
    via: Via,
) -> anyhow::Result<(usize, usize)> {
    let (mut pages, mut n) = (0, 0);
    loop {
        let resp = sh
            .http
            .get(format!("{}/v1/sync?limit={SYNC_PAGE}", sh.api_for(token)))
            .bearer_auth(token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("sync: {}", resp.status());
        }
        let page: SyncResponse = serde_json::from_slice(&resp.bytes().await?)?;
        pages += 1;
        let now = sh.now_us();
        let mut cursors: HashMap<String, u64> = HashMap::new();
        for e in &page.envelopes {
            let cid = e.conversation_id.to_string();
            if let Some(&conv) = sh.conv_by_id.get(&cid) {
                log.envelope(conv, e.seq, msg_of_bytes(e.payload.as_slice()), now, via);
            }
            let c = cursors.entry(cid).or_insert(0);
            *c = (*c).max(e.seq);
            n += 1;
        }
        let inbox_seq = page.inbox.iter().map(|i| i.inbox_seq).max();
        if !cursors.is_empty() || inbox_seq.is_some() {
            let conversations: Vec<_> = cursors
                .iter()
                .map(|(c, s)| json!({"conversation_id": c, "seq": s}))
                .collect();
            post_json(
                &sh.http,
                &format!("{}/v1/sync/ack", sh.api),
                Some(token),
                &json!({"conversations": conversations, "inbox_seq": inbox_seq}),
            )
            .await?;
            // A sync page is a gap-free snapshot from the cursor: acknowledging it is safe.
            let synced: HashMap<u32, u64> = cursors
                .iter()
                .filter_map(|(c, s)| sh.conv_by_id.get(c).map(|conv| (*conv, *s)))
                .collect();
            log.mark_acked(&synced);
        }
        if !page.more {
            return Ok((pages, n));
        }
    }
}

/// One online device: receive pushes, acknowledge periodically (only a gap-free prefix per
/// conversation), reconnect and resync when the server drops the socket. Returns its log when
/// `stop` fires, and what it may still acknowledge (a gap-free prefix).
async fn ws_device(
    sh: Arc<Shared>,
    dev: u32,
    token: String,
    mut ws: Ws,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (DevLog, HashMap<u32, u64>) {
    let mut log = DevLog::default();
    let mut pending = false;
    let mut tick = tokio::time::interval(sh.ack_interval.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let conv_ids: HashMap<u32, &str> = sh
        .conv_by_id
        .iter()
        .map(|(k, v)| (*v, k.as_str()))
        .collect();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick(), if sh.ack_interval.is_some() && pending => {
                let cursors = log.gap_free(&sh, dev);
                // Still pending while a gap holds a conversation's acknowledgement back.
                pending = log.last.iter().any(|(c, l)| {
                    cursors.get(c).or(log.acked.get(c)).is_none_or(|p| p < l)
                });
                if cursors.is_empty() {
                    continue;
                }
                let conversations: Vec<_> = cursors
                    .iter()
                    .map(|(c, s)| json!({"conversation_id": conv_ids[c], "seq": s}))
                    .collect();
                let frame = json!({"type": "ack", "conversations": conversations});
                if ws.send(WsMessage::Text(frame.to_string().into())).await.is_ok() {
                    log.mark_acked(&cursors);
                } else {
                    pending = true;
                }
            }
            m = ws.next() => {
                match m {
                    Some(Ok(WsMessage::Text(t))) => {
                        let now = sh.now_us();
                        let Ok(ev) = serde_json::from_str::<WsEvent<'_>>(t.as_str()) else {
                            log.unparsed += 1;
                            continue;
                        };
                        if ev.kind != "envelope" {
                            continue;
                        }
                        let (Some(cid), Some(seq)) = (ev.conversation_id, ev.seq) else {
                            log.unparsed += 1;
                            continue;
                        };
                        let Some(&conv) = sh.conv_by_id.get(cid) else { continue };
                        log.envelope(conv, seq, ev.payload.and_then(msg_of_b64), now, Via::Live);
                        pending = true;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        // Dropped (e.g. fell behind): reconnect first, then sync, like a client.
                        log.drops += 1;
                        loop {
                            if *stop.borrow() {
                                let rest = log.gap_free(&sh, dev);
                                return (log, rest);
                            }
                            match connect_ws(&sh, &token).await {
                                Ok(w) => { ws = w; break; }
                                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                            }
                        }
                        if let Err(e) = sync_all(&sh, &token, &mut log, Via::Resync).await {
                            sh.error(format!("resync after drop: {e:#}"));
                        }
                        pending = true;
                    }
                }
            }
        }
    }
    let _ = ws.close(None).await;
    let rest = log.gap_free(&sh, dev);
    (log, rest)
}

// ---------------------------------------------------------------------------------------------
// Sending

/// Send pre-made bodies at their intended times (open loop); each answer is recorded.
async fn send_one(sh: Arc<Shared>, url: String, token: String, idx: u32, body: Vec<u8>, t0: u64) {
    let url = sh.at_node(&url, &token);
    let r = sh
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let result = match r {
        Ok(resp) if resp.status().is_success() => match resp.bytes().await {
            Ok(b) => serde_json::from_slice::<SendEnvelopeResponse>(&b)
                .map_err(|e| format!("send answer: {e}")),
            Err(e) => Err(format!("send answer: {e}")),
        },
        Ok(resp) => {
            let s = resp.status();
            Err(format!(
                "send: {s}: {}",
                resp.text().await.unwrap_or_default()
            ))
        }
        Err(e) => Err(format!("send: {e}")),
    };
    match result {
        Ok(a) => {
            let ack_us = sh.now_us().saturating_sub(t0);
            let meta = sh
                .meta
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(idx as usize)
                .copied();
            if let Some((conv, sender)) = meta {
                sh.own_sent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((sender, conv, a.seq));
            }
            let mut r = sh.results.lock().unwrap_or_else(|p| p.into_inner());
            r[idx as usize] = Some(Acked { seq: a.seq, ack_us });
        }
        Err(e) => sh.error(e),
    }
}

fn body_for(idx: u32, intended_us: u64, big: bool) -> Vec<u8> {
    let p = payload(idx, intended_us, if big { LARGE } else { SMALL });
    serde_json::to_vec(&json!({
        "client_message_id": uuid::Uuid::new_v4(),
        "kind": "application",
        "epoch": 1,
        "payload": b64(&p),
    }))
    .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The run

struct ServerHandle {
    runtime: tokio::runtime::Runtime,
    services: Arc<ward_server::Services>,
    url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data: PathBuf,
}

async fn start_server(
    data: PathBuf,
    database_url: Option<String>,
    cluster: Option<(&str, &str)>,
) -> anyhow::Result<ServerHandle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ward-server")
        .enable_all()
        .build()?;
    let mut raw = RawConfig::default();
    raw.limits.requests_per_second = 10_000_000;
    raw.limits.request_burst = 10_000_000;
    raw.limits.logins_per_minute = 10_000_000;
    raw.limits.max_connections = 200_000;
    if let Some((nats_url, subject)) = cluster {
        raw.cluster.nats_url = Some(nats_url.to_owned());
        raw.cluster.subject = Some(subject.to_owned());
    }
    let config = Config::validate(
        raw,
        Overrides {
            data_dir: Some(data.clone()),
            listen: Some("127.0.0.1:0".into()),
            database_url,
            dangerous_plain_http: true,
        },
    )?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = runtime
        .spawn(async move {
            ward_server::start_with_clock(
                &config,
                Arc::new(ward_server::clock::SystemClock),
                async {
                    let _ = rx.await;
                },
            )
            .await
        })
        .await??;
    Ok(ServerHandle {
        runtime,
        url: format!("http://{}", running.addr),
        services: running.services,
        shutdown: Some(tx),
        task: running.task,
        _data: data,
    })
}

/// Assign users to conversations so everyone is in at least one: draw from shuffled decks.
fn plan_conversations(users: usize, rng: &mut StdRng) -> (Vec<Vec<u32>>, usize, usize, usize) {
    let f = users as f64 / 1000.0;
    let scaled = |n: f64| ((n * f).round() as usize).max(1);
    let (n_direct, n_team, n_ward) = (scaled(200.0), scaled(90.0), scaled(10.0));
    let mut deck: Vec<u32> = Vec::new();
    let mut draw = |rng: &mut StdRng, taken: &[u32]| -> u32 {
        for _ in 0..10_000 {
            if deck.is_empty() {
                deck = (0..users as u32).collect();
                deck.shuffle(rng);
            }
            let u = deck.pop().unwrap_or(0);
            if !taken.contains(&u) {
                return u;
            }
            deck.insert(0, u);
        }
        rng.gen_range(0..users as u32)
    };
    let mut convs = Vec::new();
    let mut pairs = HashSet::new();
    for _ in 0..n_direct {
        for _ in 0..100 {
            let a = draw(rng, &[]);
            let b = draw(rng, &[a]);
            if pairs.insert((a.min(b), a.max(b))) {
                convs.push(vec![a, b]);
                break;
            }
        }
    }
    for (n, size) in [(n_team, 10usize), (n_ward, 50usize)] {
        for _ in 0..n {
            let mut m = Vec::new();
            while m.len() < size.min(users) {
                let u = draw(rng, &m);
                m.push(u);
            }
            convs.push(m);
        }
    }
    (convs, n_direct, n_team, n_ward)
}

async fn enroll_all(
    server: &ServerHandle,
    http: &reqwest::Client,
    n: usize,
) -> anyhow::Result<Vec<Dev>> {
    let mut out: Vec<Option<Dev>> = (0..n).map(|_| None).collect();
    let results = futures_util::stream::iter(0..n)
        .map(|i| {
            let services = server.services.clone();
            let handle = server.runtime.handle().clone();
            let http = http.clone();
            let url = server.url.clone();
            async move {
                let username = format!("bench-u{i:05}");
                let u = username.clone();
                let code = handle
                    .spawn(async move {
                        services
                            .create_user(
                                &Actor::cli(),
                                CreateUserRequest {
                                    username: Username::parse(&u).map_err(|e| anyhow::anyhow!("{e}"))?,
                                    role: Role::Physician,
                                    display_name: None,
                                },
                            )
                            .await
                            .map_err(|e| anyhow::anyhow!("create user: {}", e.message))
                    })
                    .await??
                    .enrollment_code;
                let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
                let b = post_json(
                    &http,
                    &format!("{url}/v1/enroll"),
                    None,
                    &json!({
                        "username": username, "enrollment_code": code, "password": PASSWORD,
                        "device": {"name": "bench", "signature_key": b64(key.verifying_key().as_bytes())},
                    }),
                )
                .await?;
                let s = |v: &serde_json::Value| v.as_str().map(str::to_owned).context("enroll answer");
                anyhow::Ok((
                    i,
                    Dev {
                        user_id: s(&b["user_id"])?,
                        device_id: s(&b["device"]["device_id"])?,
                        token: s(&b["session"]["token"])?,
                    },
                ))
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        let (i, d) = r?;
        out[i] = Some(d);
    }
    out.into_iter()
        .map(|d| d.context("missing enrollment"))
        .collect()
}

async fn create_conversations(
    api: &str,
    http: &reqwest::Client,
    devs: &[Dev],
    plan: &[Vec<u32>],
) -> anyhow::Result<Vec<Conv>> {
    let results = futures_util::stream::iter(plan.iter().cloned().enumerate())
        .map(|(i, members)| {
            let http = http.clone();
            async move {
                let creator = &devs[members[0] as usize];
                let body = if members.len() == 2 {
                    json!({"kind": "direct", "ciphersuite": CIPHERSUITE,
                           "peer": format!("bench-u{:05}", members[1])})
                } else {
                    json!({"kind": "group", "ciphersuite": CIPHERSUITE})
                };
                let c = post_json(&http, &format!("{api}/v1/conversations"), Some(&creator.token), &body).await?;
                let id = c["conversation_id"].as_str().context("conversation id")?.to_owned();
                let others = &members[1..];
                let add_users: Vec<&str> = others.iter().map(|m| devs[*m as usize].user_id.as_str()).collect();
                let devices: Vec<&str> = others.iter().map(|m| devs[*m as usize].device_id.as_str()).collect();
                let url = format!("{api}/v1/conversations/{id}/envelopes");
                post_json(
                    &http,
                    &url,
                    Some(&creator.token),
                    &json!({
                        "client_message_id": uuid::Uuid::new_v4(), "kind": "commit", "epoch": 0,
                        "payload": b64(format!("bench commit adding {} members", others.len()).as_bytes()),
                        "add_users": add_users,
                        "welcome": {"payload": b64(b"bench welcome"), "devices": devices},
                    }),
                )
                .await?;
                anyhow::Ok((i, Conv { id, url, members }))
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let mut out: Vec<Option<Conv>> = (0..plan.len()).map(|_| None).collect();
    for r in results {
        let (i, c) = r?;
        out[i] = Some(c);
    }
    out.into_iter()
        .map(|c| c.context("missing conversation"))
        .collect()
}

/// `ward bench`.
pub async fn run(args: BenchArgs, json_out: bool) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.escalation_samples {
        let report = escalation::run(n as usize).await?;
        if let Some(path) = &args.out {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("write {}", path.display()))?;
        }
        if json_out {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            escalation::print_summary(&report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(BenchWhat::E2e(a)) = args.what.clone() {
        let report = e2e::run(a).await?;
        if let Some(path) = &args.out {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("write {}", path.display()))?;
        }
        if json_out {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            e2e::print_summary(&report);
        }
        return Ok(if report.correctness.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if let Some(BenchWhat::Attachments(a)) = args.what.clone() {
        let report = attachments::run(a).await?;
        if let Some(path) = &args.out {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("write {}", path.display()))?;
        }
        if json_out {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            attachments::print_summary(&report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(BenchWhat::IdleClient(a)) = args.what.clone() {
        connections::idle_client(a).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = args.idle_connections {
        let plan = connections::IdlePlan {
            n: n as usize,
            idle_secs: args.idle_secs,
            server_workers: usize::from(args.server_workers),
            client_processes: usize::from(args.client_processes),
            database_url: args.database_url.clone(),
            nats_url: args.nats_url.clone(),
        };
        let report = connections::run(plan, json_out).await?;
        if let Some(path) = &args.out {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("write {}", path.display()))?;
        }
        if json_out {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            connections::print_summary(&report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    // Server and generator share this process: every in-flight send holds two sockets.
    let fd_limit = connections::raise_fd_limit()?;
    let mut notes = vec![
        format!("file-descriptor limit {fd_limit} (server and generator share it)"),
        "server-only mode: opaque pre-made payloads, no MLS".to_owned(),
        "one device per user: the 10 % second devices of BENCH.md are not modelled".to_owned(),
        "plain HTTP/WebSocket on loopback, no TLS".to_owned(),
        "server and load generator share this process and its 2 cores; server CPU = process \
         CPU minus the generator's threads (main runtime), plus all postgres processes"
            .to_owned(),
        "RSS is the whole process (server + generator state)".to_owned(),
        "latencies are measured from the intended (scheduled) send time (open loop)".to_owned(),
        "delivered = per recipient device over WebSocket; one send to a group of n reaches n−1"
            .to_owned(),
    ];
    if args.users < 2 || args.rates.is_empty() || args.step_secs == 0 {
        bail!("need --users ≥ 2, at least one rate and --step-secs ≥ 1");
    }
    if args.nodes > 1
        && !args
            .database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"))
    {
        bail!(
            "--nodes {} needs --database-url postgres://…: the nodes share one PostgreSQL \
             schema and reach each other through NATS (--nats-url)",
            args.nodes
        );
    }
    if args.server_workers > 1 || args.client_processes > 1 {
        bail!("--server-workers and --client-processes go with --idle-connections");
    }
    if args.nodes > 1 {
        notes.push(format!(
            "{} nodes in this process, each with its own 2-thread runtime, over one \
             PostgreSQL schema and NATS at {}: devices alternate between the nodes and send \
             to their own; the nodes and the generator share the 2 cores",
            args.nodes, args.nats_url
        ));
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let tck = clk_tck();

    // Database.
    let tmp = std::env::temp_dir().join(format!("ward-bench-{}", uuid::Uuid::new_v4().simple()));
    let (database_url, pg_schema, database) = match &args.database_url {
        Some(url) if url.starts_with("postgres") => {
            let schema = format!("ward_bench_{}", uuid::Uuid::new_v4().simple());
            let store = ward_store_postgres::PgStore::connect_isolated(url, &schema)
                .await
                .map_err(|e| anyhow::anyhow!("PostgreSQL at the given URL: {e}"))?;
            store.close().await;
            let sep = if url.contains('?') { '&' } else { '?' };
            (
                Some(format!("{url}{sep}options[search_path]={schema}")),
                Some((url.clone(), schema)),
                "postgresql".to_owned(),
            )
        }
        Some(url) => (Some(url.clone()), None, "sqlite".to_owned()),
        None => (None, None, "sqlite".to_owned()),
    };
    let postgres = pg_schema.is_some();
    let outcome = run_inner(
        &args,
        json_out,
        &tmp,
        database_url,
        database,
        postgres,
        &mut rng,
        tck,
        &mut notes,
        started,
    )
    .await;
    if let Some((url, schema)) = pg_schema
        && let Err(e) = ward_store_postgres::PgStore::drop_schema(&url, &schema).await
    {
        eprintln!("warning: could not drop schema {schema}: {e}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    outcome
}

#[allow(clippy::too_many_arguments, reason = "one run's settings")]
async fn run_inner(
    args: &BenchArgs,
    json_out: bool,
    tmp: &std::path::Path,
    database_url: Option<String>,
    database: String,
    postgres: bool,
    rng: &mut StdRng,
    tck: f64,
    notes: &mut Vec<String>,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let nodes = usize::from(args.nodes);
    // A subject of this run's own, so parallel runs and tests do not see each other's events.
    let subject = format!("ward.bench.{}", uuid::Uuid::new_v4().simple());
    let cluster = (nodes > 1).then_some((args.nats_url.as_str(), subject.as_str()));
    let server = start_server(tmp.to_path_buf(), database_url.clone(), cluster).await?;
    // Further nodes: same database, same data directory (master key), started one by one.
    let mut others = Vec::new();
    for _ in 1..nodes {
        others.push(start_server(tmp.to_path_buf(), database_url.clone(), cluster).await?);
    }
    let http = http_client()?;
    let progress = |s: String| {
        if !json_out {
            eprintln!("[{:>6.1}s] {s}", started.elapsed().as_secs_f64());
        }
    };
    progress(format!(
        "server on {} ({database}); enrolling {} users",
        server.url, args.users
    ));

    // Population.
    let devs = enroll_all(&server, &http, args.users).await?;
    let (plan, n_direct, n_team, n_ward) = plan_conversations(args.users, rng);
    progress(format!("creating {} conversations", plan.len()));
    let convs = create_conversations(&server.url, &http, &devs, &plan).await?;
    let mut dev_convs: Vec<Vec<u32>> = vec![Vec::new(); devs.len()];
    for (ci, c) in convs.iter().enumerate() {
        for &m in &c.members {
            dev_convs[m as usize].push(ci as u32);
        }
    }
    let mut order: Vec<u32> = (0..devs.len() as u32).collect();
    order.shuffle(rng);
    let n_offline = (devs.len() / 10).max(1);
    let offline: HashSet<u32> = order[..n_offline].iter().copied().collect();
    let mean_fanout =
        convs.iter().map(|c| c.members.len() - 1).sum::<usize>() as f64 / convs.len() as f64;

    let node_apis: Vec<String> = std::iter::once(server.url.clone())
        .chain(others.iter().map(|o| o.url.clone()))
        .collect();
    let node_of = |d: usize| d % nodes;
    let sh = Arc::new(Shared {
        node_by_token: devs
            .iter()
            .enumerate()
            .map(|(d, dev)| (dev.token.clone(), node_of(d)))
            .collect(),
        node_apis,
        base: Instant::now(),
        api: server.url.clone(),
        ws_url: format!("{}/v1/ws", server.url.replace("http://", "ws://")),
        http: http.clone(),
        conv_by_id: convs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i as u32))
            .collect(),
        results: Mutex::new(Vec::new()),
        send_errors: AtomicU64::new(0),
        first_errors: Mutex::new(Vec::new()),
        ack_interval: (args.ack_interval_ms > 0)
            .then(|| Duration::from_millis(args.ack_interval_ms)),
        meta: Mutex::new(Vec::new()),
        own_sent: Mutex::new(HashSet::new()),
    });

    // WebSockets for the online devices.
    let online: Vec<u32> = (0..devs.len() as u32)
        .filter(|d| !offline.contains(d))
        .collect();
    let rss_before = rss_kib();
    let sockets = futures_util::stream::iter(online.iter().copied())
        .map(|d| {
            let sh = sh.clone();
            let token = devs[d as usize].token.clone();
            async move { (d, connect_ws(&sh, &token).await) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let rss_after = rss_kib();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut ws_tasks: HashMap<u32, DeviceTask> = HashMap::new();
    let mut individual_stops: HashMap<u32, tokio::sync::watch::Sender<bool>> = HashMap::new();
    for (d, ws) in sockets {
        let ws = ws.with_context(|| format!("WebSocket of device {d}"))?;
        // Each device has its own stop so the storm can disconnect some; all follow stop_tx.
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut global = stop_rx.clone();
        let tx2 = tx.clone();
        tokio::spawn(async move {
            let _ = global.changed().await;
            let _ = tx2.send(true);
        });
        individual_stops.insert(d, tx);
        ws_tasks.insert(
            d,
            tokio::spawn(ws_device(
                sh.clone(),
                d,
                devs[d as usize].token.clone(),
                ws,
                rx,
            )),
        );
    }
    let setup_secs = started.elapsed().as_secs_f64();
    progress(format!(
        "{} devices online, {} offline; setup took {setup_secs:.1}s",
        online.len(),
        n_offline
    ));

    // Senders: online members only.
    let conv_senders: Vec<Vec<u32>> = convs
        .iter()
        .map(|c| {
            c.members
                .iter()
                .copied()
                .filter(|m| !offline.contains(m))
                .collect()
        })
        .collect();
    let sendable: Vec<u32> = (0..convs.len() as u32)
        .filter(|c| !conv_senders[*c as usize].is_empty())
        .collect();
    if sendable.is_empty() {
        bail!("no conversation has an online member");
    }

    let mut msgs: Vec<Msg> = Vec::new();
    let mut steps = Vec::new();
    let mut windows = Vec::new();
    for &rate in &args.rates {
        let total_secs = args.warmup_secs + args.step_secs;
        let n = (u64::from(rate) * total_secs) as usize;
        let first = msgs.len() as u32;
        let start_us = sh.now_us() + 500_000;
        let warm_us = args.warmup_secs * 1_000_000;
        let mut bodies = Vec::with_capacity(n);
        for k in 0..n {
            let idx = msgs.len() as u32;
            let off = (k as u64 * 1_000_000) / u64::from(rate);
            let intended_us = start_us + off;
            let conv = sendable[rng.gen_range(0..sendable.len())];
            let senders = &conv_senders[conv as usize];
            let sender = senders[rng.gen_range(0..senders.len())];
            let big = rng.gen_bool(0.05);
            bodies.push(body_for(idx, intended_us, big));
            msgs.push(Msg {
                conv,
                sender,
                intended_us,
                measured: off >= warm_us,
            });
        }
        sh.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resize(msgs.len(), None);
        *sh.meta.lock().unwrap_or_else(|p| p.into_inner()) =
            msgs.iter().map(|m| (m.conv, m.sender)).collect();
        let m_start = start_us + warm_us;
        let m_end = m_start + args.step_secs * 1_000_000;
        // Usage snapshots at the window's edges.
        let sampler = {
            let sh = sh.clone();
            tokio::spawn(async move {
                let at = |us: u64| sh.base + Duration::from_micros(us);
                tokio::time::sleep_until(at(m_start).into()).await;
                let a = usage(postgres);
                tokio::time::sleep_until(at(m_end).into()).await;
                let b = usage(postgres);
                (a, b, rss_kib())
            })
        };
        progress(format!(
            "step {rate} msg/s: {n} messages over {total_secs}s"
        ));
        let mut tasks = Vec::with_capacity(n);
        for (k, body) in bodies.into_iter().enumerate() {
            let idx = first + k as u32;
            let m = &msgs[idx as usize];
            let at = sh.base + Duration::from_micros(m.intended_us);
            if at > Instant::now() {
                tokio::time::sleep_until(at.into()).await;
            }
            tasks.push(tokio::spawn(send_one(
                sh.clone(),
                convs[m.conv as usize].url.clone(),
                devs[m.sender as usize].token.clone(),
                idx,
                body,
                m.intended_us,
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        let drain_secs = (sh.now_us().saturating_sub(m_end)) as f64 / 1e6;
        let (u0, u1, rss) = sampler.await?;
        windows.push((
            rate,
            first,
            msgs.len() as u32,
            m_start,
            m_end,
            u0,
            u1,
            rss,
            drain_secs,
        ));
        // Let deliveries settle before the next step.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        if drain_secs > 60.0 {
            notes.push(format!(
                "stopped after the {rate} msg/s step: sends took {drain_secs:.0}s to drain"
            ));
            break;
        }
    }

    // Let the last pushes land, then stop the storm's online candidates.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Reconnect storm: the offline devices plus random online ones, 20 % of devices in all.
    let storm_n = ((devs.len() as f64 * 0.2).round() as usize).max(n_offline);
    let extra: Vec<u32> = order[n_offline..storm_n.min(order.len())].to_vec();
    let storm: Vec<u32> = order[..storm_n.min(order.len())].to_vec();
    let storm_set: HashSet<u32> = storm.iter().copied().collect();
    let mut logs: HashMap<u32, DevLog> = HashMap::new();
    for d in &extra {
        if let Some(tx) = individual_stops.get(d) {
            let _ = tx.send(true);
        }
        if let Some(t) = ws_tasks.remove(d) {
            let (mut log, rest) = t.await?;
            // Acknowledge the gap-free prefix, as a client would before going offline; what
            // was seen beyond a gap comes again in the storm's sync (counted as redelivered).
            // Everything is acknowledged again over HTTP (answered once durable): the last
            // WebSocket ack frame may still be in flight when the socket closes.
            let mut full = log.acked.clone();
            for (c, s) in &rest {
                let e = full.entry(*c).or_insert(0);
                *e = (*e).max(*s);
            }
            let conversations: Vec<_> = full
                .iter()
                .map(|(c, s)| json!({"conversation_id": convs[*c as usize].id, "seq": s}))
                .collect();
            log.mark_acked(&rest);
            if !conversations.is_empty() {
                post_json(
                    &http,
                    &format!("{}/v1/sync/ack", sh.api),
                    Some(&devs[*d as usize].token),
                    &json!({"conversations": conversations}),
                )
                .await?;
            }
            logs.insert(*d, log);
        }
    }
    // Backlog: messages waiting per storm device so far (offline ones missed everything).
    let acked_now: Vec<bool> = sh
        .results
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(Option::is_some)
        .collect();
    let mut waiting: HashMap<u32, usize> = storm.iter().map(|d| (*d, 0)).collect();
    for (i, m) in msgs.iter().enumerate() {
        if !acked_now[i] {
            continue;
        }
        for &r in &convs[m.conv as usize].members {
            if r != m.sender && offline.contains(&r) {
                *waiting.entry(r).or_insert(0) += 1;
            }
        }
    }
    // Plan extra traffic from non-storm members until each storm device has its backlog.
    let mut backlog_plan: Vec<(u32, u32)> = Vec::new();
    let live_senders: Vec<Vec<u32>> = convs
        .iter()
        .map(|c| {
            c.members
                .iter()
                .copied()
                .filter(|m| !storm_set.contains(m))
                .collect()
        })
        .collect();
    while let Some(&target) = storm.iter().find(|d| {
        waiting[d] < args.resync_messages
            && dev_convs[**d as usize]
                .iter()
                .any(|c| !live_senders[*c as usize].is_empty())
    }) {
        // The target's conversation reaching the most storm devices still short of a backlog.
        let conv = dev_convs[target as usize]
            .iter()
            .copied()
            .filter(|c| !live_senders[*c as usize].is_empty())
            .max_by_key(|c| {
                convs[*c as usize]
                    .members
                    .iter()
                    .filter(|m| waiting.get(m).is_some_and(|w| *w < args.resync_messages))
                    .count()
            })
            .unwrap_or(0);
        let senders = &live_senders[conv as usize];
        let sender = senders[rng.gen_range(0..senders.len())];
        backlog_plan.push((conv, sender));
        for m in &convs[conv as usize].members {
            if let Some(w) = waiting.get_mut(m) {
                *w += 1;
            }
        }
        if backlog_plan.len() > 200_000 {
            break;
        }
    }
    progress(format!(
        "reconnect storm: {} devices ({} were offline); sending {} backlog messages first",
        storm.len(),
        n_offline,
        backlog_plan.len()
    ));
    let first_backlog = msgs.len();
    for &(conv, sender) in &backlog_plan {
        msgs.push(Msg {
            conv,
            sender,
            intended_us: 0,
            measured: false,
        });
    }
    sh.results
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .resize(msgs.len(), None);
    *sh.meta.lock().unwrap_or_else(|p| p.into_inner()) =
        msgs.iter().map(|m| (m.conv, m.sender)).collect();
    futures_util::stream::iter(backlog_plan.iter().enumerate())
        .map(|(k, &(conv, sender))| {
            let idx = (first_backlog + k) as u32;
            let t0 = sh.now_us();
            send_one(
                sh.clone(),
                convs[conv as usize].url.clone(),
                devs[sender as usize].token.clone(),
                idx,
                body_for(idx, t0, rng_big(idx)),
                t0,
            )
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The storm itself: every storm device at once connects its WebSocket, then syncs all.
    let storm_start = Instant::now();
    let storm_results = futures_util::future::join_all(storm.iter().map(|&d| {
        let sh = sh.clone();
        let token = devs[d as usize].token.clone();
        let mut log = logs.remove(&d).unwrap_or_default();
        async move {
            let t = Instant::now();
            let r = async {
                let ws = connect_ws(&sh, &token).await?;
                let (pages, n) = sync_all(&sh, &token, &mut log, Via::Storm).await?;
                anyhow::Ok((ws, pages, n))
            }
            .await;
            (d, log, t.elapsed(), r)
        }
    }))
    .await;
    let catch_up = storm_start.elapsed();
    let mut storm_report = StormReport {
        devices: storm.len(),
        previously_offline: n_offline,
        backlog_messages_sent: backlog_plan.len(),
        catch_up_secs: catch_up.as_secs_f64(),
        ..Default::default()
    };
    let mut per_device = Vec::new();
    let mut storm_sockets = Vec::new();
    let mut backlogs = Vec::new();
    for (d, log, took, r) in storm_results {
        match r {
            Ok((ws, pages, n)) => {
                storm_report.sync_pages += pages;
                storm_report.envelopes_synced += n;
                storm_sockets.push(ws);
                backlogs.push(n);
            }
            Err(e) => sh.error(format!("storm device {d}: {e:#}")),
        }
        per_device.push(took.as_micros() as u64);
        logs.insert(d, log);
    }
    storm_report.per_device = percentiles(per_device);
    storm_report.backlog_min = backlogs.iter().copied().min().unwrap_or(0);
    storm_report.backlog_max = backlogs.iter().copied().max().unwrap_or(0);
    storm_report.backlog_mean =
        backlogs.iter().sum::<usize>() as f64 / backlogs.len().max(1) as f64;
    progress(format!("storm caught up in {:.2}s", catch_up.as_secs_f64()));

    // Stop the remaining sockets (after a short settle for the last pushes) and collect logs.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _ = stop_tx.send(true);
    for (d, t) in ws_tasks {
        let (log, _) = t.await?;
        logs.insert(d, log);
    }
    for mut ws in storm_sockets {
        let _ = ws.close(None).await;
    }

    // Correctness: every device has every acknowledged message of its conversations once.
    let results: Vec<Option<Acked>> = sh.results.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut corr = Correctness {
        send_errors: sh.send_errors.load(Ordering::Relaxed),
        first_errors: sh
            .first_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        ..Default::default()
    };
    let mut received: Vec<HashSet<u32>> = vec![HashSet::new(); devs.len()];
    for (d, log) in &logs {
        corr.duplicates += log.duplicates;
        corr.out_of_order += log.out_of_order;
        corr.push_out_of_order += log.push_out_of_order;
        corr.websocket_drops += log.drops;
        corr.redelivered_after_reconnect += log.redelivered;
        corr.duplicates += log.unparsed; // unparsable envelopes are a failure too
        for r in &log.recs {
            if results.get(r.msg as usize).is_none_or(|a| a.is_none()) {
                corr.unacknowledged_delivered += 1;
            } else if !received[*d as usize].insert(r.msg) {
                corr.duplicates += 1;
            }
        }
    }
    // Seqs per conversation must be gap-free across acknowledged messages (none lost on the
    // way in) — checked through the per-device sets below.
    let mut cross_node = 0u64;
    for (i, m) in msgs.iter().enumerate() {
        if results[i].is_none() {
            continue;
        }
        for &r in &convs[m.conv as usize].members {
            if r == m.sender {
                continue;
            }
            corr.expected_deliveries += 1;
            if node_of(r as usize) != node_of(m.sender as usize) {
                cross_node += 1;
            }
            if received[r as usize].contains(&(i as u32)) {
                corr.delivered += 1;
            } else {
                corr.lost += 1;
            }
        }
    }
    // Per conversation, acknowledged seqs are unique.
    let mut conv_seqs: HashMap<(u32, u64), u32> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        if let Some(a) = results[i]
            && conv_seqs.insert((m.conv, a.seq), i as u32).is_some()
        {
            corr.duplicates += 1;
        }
    }
    corr.ok = corr.lost == 0
        && corr.duplicates == 0
        && corr.out_of_order == 0
        && (!args.strict_order || corr.push_out_of_order == 0);

    // Per-step figures.
    let mut delivery_times: Vec<(u32, u64)> = Vec::new(); // (msg, recv_us) live only
    for log in logs.values() {
        for r in &log.recs {
            if r.live {
                delivery_times.push((r.msg, r.recv_us));
            }
        }
    }
    let tck_ms = 1000.0 / tck;
    for (rate, first, last, m_start, m_end, u0, u1, rss, drain_secs) in windows {
        let window_secs = (m_end - m_start) as f64 / 1e6;
        let in_step = |i: u32| i >= first && i < last;
        let mut ack_lat = Vec::new();
        let (mut sent, mut acked, mut acked_in_window) = (0usize, 0usize, 0usize);
        for i in first..last {
            let m = &msgs[i as usize];
            if let Some(a) = results[i as usize] {
                let done = m.intended_us + a.ack_us;
                if done >= m_start && done < m_end {
                    acked_in_window += 1;
                }
            }
            if !m.measured {
                continue;
            }
            sent += 1;
            if let Some(a) = results[i as usize] {
                acked += 1;
                ack_lat.push(a.ack_us);
            }
        }
        let mut del_lat = Vec::new();
        let mut delivered_in_window = 0usize;
        for &(msg, recv) in &delivery_times {
            if recv >= m_start && recv < m_end {
                delivered_in_window += 1;
            }
            if in_step(msg) && msgs[msg as usize].measured {
                del_lat.push(recv.saturating_sub(msgs[msg as usize].intended_us));
            }
        }
        let proc_ms = (u1.process_ticks - u0.process_ticks) as f64 * tck_ms;
        let gen_ms = (u1.generator_ticks.saturating_sub(u0.generator_ticks)) as f64 * tck_ms;
        let pg_ms = (u1.postgres_ticks.saturating_sub(u0.postgres_ticks)) as f64 * tck_ms;
        let server_ms = (proc_ms - gen_ms).max(0.0) + pg_ms;
        let send_ack = percentiles(ack_lat);
        let send_to_delivered = percentiles(del_lat);
        let acked_rate = acked_in_window as f64 / window_secs;
        let delivered_rate = delivered_in_window as f64 / window_secs;
        steps.push(StepReport {
            offered_msgs_per_sec: rate,
            sent,
            acked,
            send_errors: (sent - acked) as u64,
            acked_msgs_per_sec: acked_rate,
            delivered_msgs_per_sec: delivered_rate,
            meets_slo: send_to_delivered.samples > 0
                && send_to_delivered.p99_ms <= 100.0
                && acked_rate >= 0.95 * f64::from(rate),
            send_ack,
            send_to_delivered,
            server_cpu_ms: server_ms,
            server_cpu_ms_per_1000_delivered: server_ms * 1000.0
                / (delivered_in_window.max(1) as f64),
            server_cpu_ms_per_1000_sent: server_ms * 1000.0 / (acked.max(1) as f64),
            generator_cpu_ms: gen_ms,
            process_rss_mib: rss as f64 / 1024.0,
            storage_write_bytes_per_msg: u1.write_bytes.saturating_sub(u0.write_bytes) as f64
                / acked.max(1) as f64,
            drain_secs,
        });
    }
    let sustained = steps
        .iter()
        .filter(|s| s.meets_slo)
        .max_by_key(|s| s.offered_msgs_per_sec);

    // Shut the servers down.
    for mut server in std::iter::once(server).chain(others) {
        if let Some(tx) = server.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut server.task).await;
        let ServerHandle { runtime, .. } = server;
        runtime.shutdown_background();
    }

    let report = Report {
        mode: "server-only".into(),
        database,
        nodes,
        cross_node_delivery_share: cross_node as f64 / corr.expected_deliveries.max(1) as f64,
        transport: "plain HTTP/1.1 + WebSocket on 127.0.0.1".into(),
        commit: std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        machine: machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        population: Population {
            users: args.users,
            devices: devs.len(),
            second_devices_modelled: false,
            direct: n_direct,
            care_teams: n_team,
            ward_groups: n_ward,
            offline_at_start: n_offline,
            websockets: online.len(),
            mean_fanout,
            setup_secs,
        },
        rss_kib_per_websocket_pair: rss_after.saturating_sub(rss_before) as f64
            / online.len().max(1) as f64,
        sustained_offered_msgs_per_sec: sustained.map(|s| s.offered_msgs_per_sec),
        sustained_delivered_msgs_per_sec: sustained.map(|s| s.delivered_msgs_per_sec),
        sustained_acked_msgs_per_sec: sustained.map(|s| s.acked_msgs_per_sec),
        target_delivered_msgs_per_sec: 25.0 * 410.0,
        target_cpu_ms_per_delivered: 0.05,
        steps,
        storm: storm_report,
        correctness: corr,
        notes: notes.clone(),
    };
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    if json_out {
        println!("{text}");
    } else {
        print_summary(&report);
    }
    Ok(if report.correctness.ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("CORRECTNESS FAILURE: {:?}", report.correctness);
        ExitCode::from(1)
    })
}

fn rng_big(idx: u32) -> bool {
    idx.wrapping_mul(2_654_435_761).is_multiple_of(20)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} vCPU, {cpu}")
}

fn print_summary(r: &Report) {
    if r.nodes > 1 {
        println!(
            "{} nodes over one PostgreSQL and NATS: {:.0} % of the deliveries crossed nodes",
            r.nodes,
            r.cross_node_delivery_share * 100.0
        );
    }
    println!(
        "ward bench ({}, {}): {} users, {} conversations ({} direct, {} care teams, {} wards), {} WebSockets, mean fan-out {:.1}",
        r.mode,
        r.database,
        r.population.users,
        r.population.direct + r.population.care_teams + r.population.ward_groups,
        r.population.direct,
        r.population.care_teams,
        r.population.ward_groups,
        r.population.websockets,
        r.population.mean_fanout
    );
    println!(
        "{:>8} {:>9} {:>10} {:>23} {:>23} {:>10} {:>10} {:>8}",
        "offered",
        "acked/s",
        "deliv/s",
        "ack p50/p99/p99.9 ms",
        "deliv p50/p99/p99.9 ms",
        "cpu/1k dl",
        "cpu/1k snt",
        "RSS MiB"
    );
    for s in &r.steps {
        println!(
            "{:>8} {:>9.1} {:>10.1} {:>23} {:>23} {:>10.1} {:>10.1} {:>8.0}{}",
            s.offered_msgs_per_sec,
            s.acked_msgs_per_sec,
            s.delivered_msgs_per_sec,
            format!(
                "{:.1}/{:.1}/{:.1}",
                s.send_ack.p50_ms, s.send_ack.p99_ms, s.send_ack.p999_ms
            ),
            format!(
                "{:.1}/{:.1}/{:.1}",
                s.send_to_delivered.p50_ms, s.send_to_delivered.p99_ms, s.send_to_delivered.p999_ms
            ),
            s.server_cpu_ms_per_1000_delivered,
            s.server_cpu_ms_per_1000_sent,
            s.process_rss_mib,
            if s.meets_slo {
                ""
            } else {
                "  (p99 > 100 ms or < 95 % acked)"
            }
        );
    }
    match (
        r.sustained_offered_msgs_per_sec,
        r.sustained_delivered_msgs_per_sec,
    ) {
        (Some(o), Some(d)) => println!(
            "sustained (delivered p99 ≤ 100 ms): offered {o} msg/s, {d:.0} deliveries/s (target {:.0})",
            r.target_delivered_msgs_per_sec
        ),
        _ => println!("sustained: no step kept delivered p99 ≤ 100 ms"),
    }
    println!(
        "storm: {} devices, backlog {}..{} (mean {:.0}) messages, caught up in {:.2}s (per device p50 {:.0} ms, p99 {:.0} ms)",
        r.storm.devices,
        r.storm.backlog_min,
        r.storm.backlog_max,
        r.storm.backlog_mean,
        r.storm.catch_up_secs,
        r.storm.per_device.p50_ms,
        r.storm.per_device.p99_ms
    );
    let c = &r.correctness;
    println!(
        "correctness: {} — {} of {} deliveries, lost {}, duplicates {}, out of order {} (pushed out of seq order: {}), send errors {}, WebSocket drops {}",
        if c.ok { "OK" } else { "FAILED" },
        c.delivered,
        c.expected_deliveries,
        c.lost,
        c.duplicates,
        c.out_of_order,
        c.push_out_of_order,
        c.send_errors,
        c.websocket_drops
    );
}
