//! Cross-node fan-out: several stateless `ward serve` nodes over one PostgreSQL and one NATS.
//!
//! PostgreSQL is the source of truth; NATS only carries the *live push* between nodes (ADR
//! 0009). Every [`Hub::publish`](crate::hub::Hub::publish) and
//! [`Hub::end_device`](crate::hub::Hub::end_device) is delivered to this node's connections
//! and also handed, without waiting, to a bounded queue ([`OUTBOUND_QUEUE`]). A publisher task
//! turns each item into **one** core-NATS message on one subject (default `ward.events`) that
//! names the recipient devices, so a message to a 50-member group is one NATS publish, and each
//! node holds one subscription whatever the number of devices. Every other node delivers it to
//! the recipients connected there; a node ignores its own messages (`no_echo`, and the origin
//! id as a second guard). When the queue is full the item is dropped and counted: the request
//! path never waits for NATS. A device that misses a push catches up by cursor-based sync, as
//! after any dropped connection.
//!
//! Order (ADR 0020): one FIFO queue, one publisher task and one NATS connection per node, and
//! one receiver task handling messages one at a time, so a conversation's envelopes appended
//! through one node reach devices on the others in seq order. Envelopes appended through
//! different nodes are not ordered with respect to each other; clients order by seq.
//!
//! # Wire format (version 1, big-endian)
//!
//! ```text
//! 0      version = 1
//! 1      kind: 0 event, 1 end (event, then close the connections), 2 envelope reference,
//!        3 resync (close the connections without an event)
//! 2..18  origin node id (UUID)
//! 18..22 n = number of recipient devices (u32)
//! 22..   n device ids (16 bytes each)
//! rest   kind 0, 1: the serialised `ServerEvent` JSON, exactly as sent to the WebSocket
//!        kind 2: conversation id (16 bytes) + seq (u64); the receiver reads the envelope
//!                from the store (used when the event exceeds the NATS `max_payload`)
//!        kind 3: empty (an oversized device-addressed event: the client resyncs)
//! ```
//!
//! Nothing in a message is logged: it carries device ids and MLS ciphertext (ADR 0003).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::{Client, ServerAddr, Subject};
use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use ward_proto::{ConversationId, DeviceId, ServerEvent};

use crate::service::Services;

/// Default NATS subject for cross-node events.
pub const DEFAULT_SUBJECT: &str = "ward.events";
/// Items waiting for the publisher task before new ones are dropped (and counted).
pub const OUTBOUND_QUEUE: usize = 8192;
/// At most this many recipients per NATS message (64 KiB of device ids); larger lists are
/// split into several messages.
pub const MAX_DEVICES_PER_MESSAGE: usize = 4096;
/// How long start-up waits for NATS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits to flush what is queued.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);
/// `max_payload` assumed until the server said otherwise (the NATS default).
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

const WIRE_VERSION: u8 = 1;
const HEADER_LEN: usize = 22;

/// Validated `[cluster]` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS servers (`nats://host:port`; credentials in the URL are allowed).
    pub servers: Vec<String>,
    /// Subject carrying the events; every node of one deployment must use the same one.
    pub subject: String,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("servers", &redacted_servers(&self.servers))
            .field("subject", &self.subject)
            .finish()
    }
}

impl ClusterConfig {
    /// Validate `nats_url` (one URL or a comma-separated list, each `nats://host[:port]`) and
    /// `subject` (dot-separated tokens of `A-Z a-z 0-9 _ -`, no wildcards).
    pub fn new(nats_url: &str, subject: Option<&str>) -> anyhow::Result<ClusterConfig> {
        let mut servers = Vec::new();
        for part in nats_url.split(',').map(str::trim) {
            if !part.starts_with("nats://") {
                bail!(
                    "cluster.nats_url must be nats://host:port (got a {} URL)",
                    part.split("://")
                        .next()
                        .filter(|s| *s != part)
                        .unwrap_or("scheme-less")
                );
            }
            let addr: ServerAddr = part
                .parse()
                .map_err(|e| anyhow::anyhow!("cluster.nats_url is invalid: {e}"))?;
            if addr.host().is_empty() {
                bail!("cluster.nats_url has no host");
            }
            servers.push(part.to_owned());
        }
        let subject = subject.unwrap_or(DEFAULT_SUBJECT).to_owned();
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if subject.len() > 200 || !subject.split('.').all(token_ok) {
            bail!(
                "cluster.subject must be dot-separated tokens of letters, digits, '_' and '-' \
                 (no wildcards), for example \"{DEFAULT_SUBJECT}\""
            );
        }
        Ok(ClusterConfig { servers, subject })
    }
}

/// `host:port` of each server, without credentials, for logs and errors.
fn redacted_servers(servers: &[String]) -> String {
    servers
        .iter()
        .map(|s| match s.parse::<ServerAddr>() {
            Ok(a) => format!("{}:{}", a.host(), a.port()),
            Err(_) => "(invalid)".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// Label of the cross-node publish counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// `inline` (event in the message), `reference` (envelope read from the store by the
    /// receiver) or `resync` (oversized device event: the receiver closes the connections).
    pub mode: String,
}

/// Label of the cross-node drop counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `queue_full`, `stopped`, `publish_error`, `malformed`, `missing_envelope` or
    /// `slow_consumer` (counts NATS slow-consumer notices, not messages).
    pub reason: String,
}

/// Cross-node event counters. Cheap to clone (the counters are shared).
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    /// NATS messages published by this node, by mode.
    pub published: Family<ModeLabels, Counter>,
    /// NATS messages from other nodes handled by this node.
    pub received: Counter,
    /// Events not forwarded or not delivered, by reason.
    pub dropped: Family<ReasonLabels, Counter>,
}

impl ClusterMetrics {
    /// Register under `cluster_events_*` (the registry adds its own prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_events_published",
            "Cross-node events published to NATS",
            self.published.clone(),
        );
        registry.register(
            "cluster_events_received",
            "Cross-node events received from other nodes",
            self.received.clone(),
        );
        registry.register(
            "cluster_events_dropped",
            "Cross-node events dropped (the devices catch up by sync)",
            self.dropped.clone(),
        );
    }

    /// Published messages, all modes.
    pub fn published_total(&self) -> u64 {
        ["inline", "reference", "resync"]
            .iter()
            .map(|m| self.published.get_or_create(&mode(m)).get())
            .sum()
    }

    /// Received messages.
    pub fn received_total(&self) -> u64 {
        self.received.get()
    }

    /// Dropped events, all reasons.
    pub fn dropped_total(&self) -> u64 {
        [
            "queue_full",
            "stopped",
            "publish_error",
            "malformed",
            "missing_envelope",
            "slow_consumer",
        ]
        .iter()
        .map(|r| self.dropped.get_or_create(&reason(r)).get())
        .sum()
    }

    fn drop_one(&self, why: &str) {
        self.dropped.get_or_create(&reason(why)).inc();
    }
}

fn mode(m: &str) -> ModeLabels {
    ModeLabels { mode: m.to_owned() }
}

fn reason(r: &str) -> ReasonLabels {
    ReasonLabels {
        reason: r.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound queue (the hub's side)

/// What the hub forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundKind {
    /// Deliver the event.
    Event,
    /// Deliver the event (`session_ended`), then close the devices' connections.
    End,
}

struct Item {
    kind: OutboundKind,
    devices: Vec<DeviceId>,
    text: Utf8Bytes,
    reference: Option<(ConversationId, u64)>,
}

/// The hub's handle on the publisher task: a bounded queue that never blocks.
pub struct Outbound {
    tx: mpsc::Sender<Item>,
    metrics: ClusterMetrics,
    overflow_logged: AtomicU64,
}

impl Outbound {
    /// Queue an event for the other nodes; drops and counts it when the queue is full.
    pub(crate) fn forward(
        &self,
        kind: OutboundKind,
        to: &[DeviceId],
        text: Utf8Bytes,
        reference: Option<(ConversationId, u64)>,
    ) {
        let item = Item {
            kind,
            devices: to.to_vec(),
            text,
            reference,
        };
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.drop_one("queue_full");
                // One warning per 1,000 drops: a stalled NATS must not flood the log.
                if self
                    .overflow_logged
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(1000)
                {
                    tracing::warn!(
                        queue = OUTBOUND_QUEUE,
                        "cluster publish queue full; dropping cross-node events (devices on \
                         other nodes catch up by sync)"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.drop_one("stopped"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format

/// What a cross-node message asks the receiving node to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireBody {
    /// Push this serialised `ServerEvent`.
    Event(String),
    /// Push this serialised `session_ended` event, then close the connections.
    End(String),
    /// Read envelope `seq` of the conversation from the store and push it.
    EnvelopeRef(ConversationId, u64),
    /// Close the connections so the clients reconnect and sync.
    Resync,
}

/// One cross-node message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireMessage {
    /// The node that published it.
    pub origin: Uuid,
    /// Recipient devices.
    pub devices: Vec<DeviceId>,
    /// What to do for them.
    pub body: WireBody,
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its header or its device list.
    #[error("truncated")]
    Truncated,
    /// A version this node does not speak.
    #[error("unknown version {0}")]
    Version(u8),
    /// An unknown kind.
    #[error("unknown kind {0}")]
    Kind(u8),
    /// The body is not what the kind requires.
    #[error("malformed body")]
    Body,
}

impl WireMessage {
    /// Encode (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let (kind, body_len) = match &self.body {
            WireBody::Event(t) => (0u8, t.len()),
            WireBody::End(t) => (1, t.len()),
            WireBody::EnvelopeRef(..) => (2, 24),
            WireBody::Resync => (3, 0),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + 16 * self.devices.len() + body_len);
        out.push(WIRE_VERSION);
        out.push(kind);
        out.extend_from_slice(self.origin.as_bytes());
        // Callers split lists at MAX_DEVICES_PER_MESSAGE, far below u32::MAX.
        out.extend_from_slice(
            &u32::try_from(self.devices.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for d in &self.devices {
            out.extend_from_slice(d.0.as_bytes());
        }
        match &self.body {
            WireBody::Event(t) | WireBody::End(t) => out.extend_from_slice(t.as_bytes()),
            WireBody::EnvelopeRef(c, seq) => {
                out.extend_from_slice(c.0.as_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
            }
            WireBody::Resync => {}
        }
        out
    }

    /// Decode; total on arbitrary input. Event bodies must be a valid `ServerEvent`.
    pub fn decode(bytes: &[u8]) -> Result<WireMessage, WireError> {
        let header = bytes.get(..HEADER_LEN).ok_or(WireError::Truncated)?;
        if header[0] != WIRE_VERSION {
            return Err(WireError::Version(header[0]));
        }
        let kind = header[1];
        let origin = Uuid::from_slice(&header[2..18]).map_err(|_| WireError::Truncated)?;
        let n = u32::from_be_bytes([header[18], header[19], header[20], header[21]]) as usize;
        let rest = &bytes[HEADER_LEN..];
        let ids_len = n.checked_mul(16).ok_or(WireError::Truncated)?;
        let ids = rest.get(..ids_len).ok_or(WireError::Truncated)?;
        let body = &rest[ids_len..];
        let devices = ids
            .chunks_exact(16)
            .map(|c| Uuid::from_slice(c).map(DeviceId))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| WireError::Truncated)?;
        let event_text = |b: &[u8]| -> Result<String, WireError> {
            let s = std::str::from_utf8(b).map_err(|_| WireError::Body)?;
            serde_json::from_str::<ServerEvent>(s).map_err(|_| WireError::Body)?;
            Ok(s.to_owned())
        };
        let body = match kind {
            0 => WireBody::Event(event_text(body)?),
            1 => {
                let s = event_text(body)?;
                if !s.starts_with(r#"{"type":"session_ended""#) {
                    return Err(WireError::Body);
                }
                WireBody::End(s)
            }
            2 => {
                if body.len() != 24 {
                    return Err(WireError::Body);
                }
                let c = Uuid::from_slice(&body[..16]).map_err(|_| WireError::Body)?;
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&body[16..]);
                WireBody::EnvelopeRef(ConversationId(c), u64::from_be_bytes(seq))
            }
            3 if body.is_empty() => WireBody::Resync,
            3 => return Err(WireError::Body),
            k => return Err(WireError::Kind(k)),
        };
        Ok(WireMessage {
            origin,
            devices,
            body,
        })
    }
}

/// The NATS messages for one queued item: split by recipients, and by reference or resync
/// when the event does not fit in `max_payload`.
fn wire_messages(origin: Uuid, item: &Item, max_payload: usize) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for chunk in item.devices.chunks(MAX_DEVICES_PER_MESSAGE) {
        let text = item.text.as_str().to_owned();
        let body = match item.kind {
            OutboundKind::Event => WireBody::Event(text),
            OutboundKind::End => WireBody::End(text),
        };
        let mut msg = WireMessage {
            origin,
            devices: chunk.to_vec(),
            body,
        };
        let mut bytes = msg.encode();
        let mut m = "inline";
        if bytes.len() > max_payload {
            msg.body = match item.reference {
                Some((c, seq)) => {
                    m = "reference";
                    WireBody::EnvelopeRef(c, seq)
                }
                None => {
                    m = "resync";
                    WireBody::Resync
                }
            };
            bytes = msg.encode();
        }
        out.push((m, bytes));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The running cluster link

/// This node's link to the other nodes.
pub struct Cluster {
    node_id: Uuid,
    subject: String,
    servers: String,
    metrics: ClusterMetrics,
    stop: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("subject", &self.subject)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connect to NATS (failing start-up if it cannot be reached), subscribe, start the
    /// publisher and receiver tasks, and attach to `services.hub`. The node id is random.
    pub async fn start(
        config: &ClusterConfig,
        services: &Arc<Services>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let node_id = Uuid::new_v4();
        let servers = redacted_servers(&config.servers);
        let addrs = config
            .servers
            .iter()
            .map(|s| s.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .context("cluster.nats_url is invalid")?;
        let metrics = services.metrics.cluster.clone();
        let event_metrics = metrics.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("ward-{node_id}"))
            // Our own publications never come back; the origin check stays as a guard.
            .no_echo()
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None)
            .event_callback(move |event| {
                let metrics = event_metrics.clone();
                async move { log_event(&event, &metrics) }
            })
            .connect(addrs)
            .await
            .with_context(|| {
                format!(
                    "could not connect to NATS at {servers} (cluster.nats_url); start NATS or \
                     remove [cluster] to run a single node"
                )
            })?;
        let subject = Subject::from(config.subject.as_str());
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .context("could not subscribe to the cluster subject")?;
        // The subscription is active on the server before this node accepts connections.
        client
            .flush()
            .await
            .context("NATS did not confirm the cluster subscription")?;

        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let publisher = tokio::spawn(run_publisher(
            client.clone(),
            subject,
            node_id,
            rx,
            metrics.clone(),
            stop.clone(),
        ));
        let receiver = tokio::spawn(run_receiver(
            subscriber,
            node_id,
            Arc::downgrade(services),
            metrics.clone(),
            stop.clone(),
        ));
        let cluster = Arc::new(Cluster {
            node_id,
            subject: config.subject.clone(),
            servers,
            metrics: metrics.clone(),
            stop,
            tasks: Mutex::new(vec![publisher, receiver]),
        });
        let outbound = Outbound {
            tx,
            metrics,
            overflow_logged: AtomicU64::new(0),
        };
        if !services.hub.attach_cluster(outbound) || services.cluster.set(cluster.clone()).is_err()
        {
            cluster.shutdown().await;
            bail!("a cluster link is already attached to these services");
        }
        tracing::info!(
            node_id = %node_id,
            nats = %cluster.servers,
            subject = %cluster.subject,
            "cluster fan-out over NATS started"
        );
        Ok(cluster)
    }

    /// This node's random id (the origin of its messages).
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// The NATS subject in use.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Cross-node counters.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    /// Stop receiving, publish what is queued (bounded wait), and close the NATS connection.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

fn log_event(event: &async_nats::Event, metrics: &ClusterMetrics) {
    use async_nats::Event;
    // Events carry connection state and protocol errors only, never message content.
    match event {
        Event::Connected => tracing::info!("cluster: connected to NATS"),
        Event::Disconnected => tracing::warn!(
            "cluster: disconnected from NATS, reconnecting; live push between nodes is paused \
             (devices catch up by sync)"
        ),
        Event::SlowConsumer(_) => {
            metrics.drop_one("slow_consumer");
            tracing::warn!(
                "cluster: NATS dropped events for this slow node (devices catch up by sync)"
            );
        }
        Event::LameDuckMode => tracing::warn!("cluster: NATS server entering lame duck mode"),
        Event::ServerError(e) => tracing::warn!(error = %e, "cluster: NATS server error"),
        Event::ClientError(e) => tracing::warn!(error = %e, "cluster: NATS client error"),
        Event::Draining | Event::Closed => tracing::debug!(event = %event, "cluster: NATS"),
    }
}

async fn run_publisher(
    client: Client,
    subject: Subject,
    node_id: Uuid,
    mut rx: mpsc::Receiver<Item>,
    metrics: ClusterMetrics,
    stop: CancellationToken,
) {
    let publish = |item: Item| {
        let client = &client;
        let subject = &subject;
        let metrics = &metrics;
        async move {
            let max = match client.server_info().max_payload {
                0 => DEFAULT_MAX_PAYLOAD,
                m => m,
            };
            for (m, bytes) in wire_messages(node_id, &item, max) {
                match client.publish(subject.clone(), bytes.into()).await {
                    Ok(()) => {
                        metrics.published.get_or_create(&mode(m)).inc();
                    }
                    Err(e) => {
                        metrics.drop_one("publish_error");
                        tracing::warn!(error = %e, "cluster: publishing an event to NATS failed");
                    }
                }
            }
        }
    };
    loop {
        tokio::select! {
            biased;
            item = rx.recv() => match item {
                Some(item) => publish(item).await,
                None => break,
            },
            () = stop.cancelled() => break,
        }
    }
    // Shutting down: send what was accepted before the stop, within a bounded time.
    let drain = async {
        rx.close();
        while let Some(item) = rx.recv().await {
            publish(item).await;
        }
        let _ = client.flush().await;
    };
    if tokio::time::timeout(SHUTDOWN_FLUSH, drain).await.is_err() {
        tracing::warn!("cluster: NATS flush at shutdown timed out");
    }
}

async fn run_receiver(
    mut subscriber: async_nats::Subscriber,
    node_id: Uuid,
    services: Weak<Services>,
    metrics: ClusterMetrics,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            m = subscriber.next() => match m {
                Some(m) => m,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        let wire = match WireMessage::decode(&msg.payload) {
            Ok(w) => w,
            Err(e) => {
                metrics.drop_one("malformed");
                tracing::warn!(error = %e, "cluster: malformed message on the cluster subject ignored");
                continue;
            }
        };
        if wire.origin == node_id {
            continue;
        }
        let Some(services) = services.upgrade() else {
            break;
        };
        metrics.received.inc();
        let hub = &services.hub;
        match wire.body {
            WireBody::Event(text) => hub.deliver_local(&wire.devices, &text.into()),
            WireBody::End(text) => hub.end_local(&wire.devices, &text.into()),
            WireBody::Resync => hub.drop_local(&wire.devices),
            WireBody::EnvelopeRef(conversation, seq) => {
                // Skip the read when none of the recipients is connected here.
                if !wire.devices.iter().any(|d| hub.is_connected(*d)) {
                    continue;
                }
                match services.store.envelope(conversation, seq).await {
                    Ok(Some(envelope)) => {
                        match serde_json::to_string(&ServerEvent::Envelope(envelope)) {
                            Ok(text) => hub.deliver_local(&wire.devices, &text.into()),
                            Err(_) => metrics.drop_one("malformed"),
                        }
                    }
                    Ok(None) => {
                        metrics.drop_one("missing_envelope");
                        hub.drop_local(&wire.devices);
                    }
                    Err(e) => {
                        metrics.drop_one("missing_envelope");
                        tracing::warn!(error = %crate::error::error_chain(&e), "cluster: reading a referenced envelope failed; recipients resync");
                        hub.drop_local(&wire.devices);
                    }
                }
            }
        }
    }
    let _ = subscriber.unsubscribe().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_text() -> String {
        serde_json::to_string(&ServerEvent::SessionEnded {
            reason: "logged out".into(),
        })
        .unwrap()
    }

    #[test]
    fn wire_round_trip() {
        let origin = Uuid::new_v4();
        let devices = vec![DeviceId::random(), DeviceId::random()];
        for body in [
            WireBody::Event(event_text()),
            WireBody::End(event_text()),
            WireBody::EnvelopeRef(ConversationId::random(), 42),
            WireBody::Resync,
        ] {
            let m = WireMessage {
                origin,
                devices: devices.clone(),
                body,
            };
            assert_eq!(WireMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn wire_rejects_garbage() {
        assert_eq!(WireMessage::decode(b""), Err(WireError::Truncated));
        let mut m = WireMessage {
            origin: Uuid::new_v4(),
            devices: vec![DeviceId::random()],
            body: WireBody::Event(event_text()),
        }
        .encode();
        m[0] = 9;
        assert_eq!(WireMessage::decode(&m), Err(WireError::Version(9)));
        m[0] = WIRE_VERSION;
        m[21] = 200; // more devices than bytes
        assert_eq!(WireMessage::decode(&m), Err(WireError::Truncated));
        m[21] = 1;
        m[1] = 0;
        let n = m.len();
        m[n - 1] = b'x'; // broken JSON
        assert_eq!(WireMessage::decode(&m), Err(WireError::Body));
        // An "end" must carry a session_ended event.
        let env = WireMessage {
            origin: Uuid::new_v4(),
            devices: vec![],
            body: WireBody::End("{\"type\":\"inbox\"}".into()),
        };
        assert!(WireMessage::decode(&env.encode()).is_err());
    }

    #[test]
    fn oversized_events_go_by_reference_or_resync_and_lists_are_split() {
        let c = ConversationId::random();
        let item = Item {
            kind: OutboundKind::Event,
            devices: (0..MAX_DEVICES_PER_MESSAGE + 1)
                .map(|_| DeviceId::random())
                .collect(),
            text: event_text().into(),
            reference: Some((c, 7)),
        };
        let msgs = wire_messages(Uuid::nil(), &item, 1 << 20);
        assert_eq!(msgs.len(), 2);
        assert!(msgs.iter().all(|(m, _)| *m == "inline"));
        let small = wire_messages(Uuid::nil(), &item, 70);
        assert!(small.iter().all(|(m, _)| *m == "reference"));
        let decoded = WireMessage::decode(&small[1].1).unwrap();
        assert_eq!(decoded.body, WireBody::EnvelopeRef(c, 7));
        assert_eq!(decoded.devices.len(), 1);
        let no_ref = Item {
            reference: None,
            ..item
        };
        assert!(
            wire_messages(Uuid::nil(), &no_ref, 70)
                .iter()
                .all(|(m, _)| *m == "resync")
        );
    }

    #[tokio::test]
    async fn hub_forwards_without_blocking_and_counts_overflow() {
        let hub = crate::hub::Hub::default();
        let (tx, mut rx) = mpsc::channel(2);
        let metrics = ClusterMetrics::default();
        assert!(hub.attach_cluster(Outbound {
            tx,
            metrics: metrics.clone(),
            overflow_logged: AtomicU64::new(0),
        }));
        let d = DeviceId::random();
        let mut local = hub.subscribe(d);
        let ev = ServerEvent::SessionEnded { reason: "x".into() };
        hub.publish(&[d], &ev);
        hub.end_device(d, "device revoked");
        // The queue is full now: the next publish is dropped and counted, not awaited.
        hub.publish(&[d], &ev);
        assert_eq!(metrics.dropped_total(), 1);
        let first = rx.recv().await.unwrap();
        assert_eq!(
            (first.kind, first.devices.as_slice()),
            (OutboundKind::Event, &[d][..])
        );
        let second = rx.recv().await.unwrap();
        assert_eq!(second.kind, OutboundKind::End);
        assert!(second.text.as_str().contains("device revoked"));
        // Local delivery happened regardless.
        assert!(local.events.recv().await.is_some());
        assert!(
            !hub.is_connected(d),
            "end_device dropped the local connection"
        );
    }

    #[test]
    fn config_is_validated() {
        let c = ClusterConfig::new("nats://127.0.0.1:4222", None).unwrap();
        assert_eq!(c.subject, DEFAULT_SUBJECT);
        assert!(ClusterConfig::new("nats://a:4222, nats://b:4222", Some("ward.prod")).is_ok());
        for bad in ["http://x:4222", "127.0.0.1:4222", "tls://x:4222", "nats://"] {
            assert!(ClusterConfig::new(bad, None).is_err(), "{bad}");
        }
        for bad in ["ward.*", "ward.>", "", "a..b", "a b"] {
            assert!(ClusterConfig::new("nats://x", Some(bad)).is_err(), "{bad}");
        }
        let secret = ClusterConfig::new("nats://user:hunter2@x:4222", None).unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    proptest::proptest! {
        /// Whatever arrives on the subject, decoding never panics.
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = WireMessage::decode(&bytes);
        }
    }
}
