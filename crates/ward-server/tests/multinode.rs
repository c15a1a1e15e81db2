//! Two real server nodes over one PostgreSQL database and one NATS server (ADR 0009).
//!
//! Node A takes the HTTP traffic, Bob's WebSocket lives on node B: envelopes and inbox items
//! reach him through NATS, suspension through node A closes his socket on node B, and after
//! node A stops mid-run everything it acknowledged is still delivered through node B by sync.
//!
//! Needs PostgreSQL (`WARD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and NATS (`WARD_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`). Either one unreachable FAILS the test; only
//! `WARD_TEST_POSTGRES=skip` skips it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::Role;
use ward_server::config::{RawCluster, RawConfig};
use ward_testing::{ServerOptions, TestServer, TestUser, b64};

const XWING: u16 = 0x004D;
/// Sends whose cross-node push latency is measured.
const MEASURED_SENDS: usize = 200;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn postgres_url() -> String {
    std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn nats_url() -> String {
    std::env::var("WARD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn skip_requested() -> bool {
    std::env::var("WARD_TEST_POSTGRES").as_deref() == Ok("skip")
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// A fresh schema of the test database, migrated; returns the URL that selects it (sqlx's
/// `options[search_path]` becomes `-c search_path=…` for every connection of the pool).
async fn fresh_schema() -> (String, String) {
    let url = postgres_url();
    let schema = format!("ward_mn_{}", uuid::Uuid::new_v4().simple());
    let store = ward_store_postgres::PgStore::connect_isolated(&url, &schema)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL test database unreachable at {} ({e}). Start it, point \
                 WARD_TEST_POSTGRES_URL at one, or set WARD_TEST_POSTGRES=skip to skip this \
                 test explicitly.",
                redacted(&url)
            )
        });
    store.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    (format!("{url}{sep}options[search_path]={schema}"), schema)
}

async fn drop_schema(schema: &str) {
    ward_store_postgres::PgStore::drop_schema(&postgres_url(), schema)
        .await
        .unwrap();
}

/// Fail clearly when NATS is not there (the servers would fail to start anyway).
async fn check_nats() {
    let url = nats_url();
    match tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url.as_str())).await {
        Ok(Ok(c)) => drop(c),
        Ok(Err(e)) => panic!(
            "NATS unreachable at {} ({e}). Start nats-server or point WARD_TEST_NATS_URL at one.",
            redacted(&url)
        ),
        Err(_) => panic!(
            "NATS at {} did not answer within 5 s. Start nats-server or point \
             WARD_TEST_NATS_URL at one.",
            redacted(&url)
        ),
    }
}

/// Options for one node: the shared database, the shared master key, NATS on a subject of
/// this test's own (parallel runs do not see each other), no rate limits.
fn node_options(database_url: &str, master_key: &std::path::Path, subject: &str) -> ServerOptions {
    let mut raw = RawConfig::default();
    raw.limits.requests_per_second = 100_000;
    raw.limits.request_burst = 100_000;
    raw.limits.logins_per_minute = 100_000;
    raw.master_key_file = Some(master_key.to_path_buf());
    raw.cluster = RawCluster {
        nats_url: Some(nats_url()),
        subject: Some(subject.to_owned()),
    };
    ServerOptions {
        database_url: Some(database_url.to_owned()),
        raw: Some(raw),
        ..Default::default()
    }
}

/// A frame as it arrived, with its arrival time.
enum Frame {
    Text(Value, Instant),
    Closed(Option<String>),
}

/// Open `token`'s WebSocket on `server`; a reader task timestamps every frame on arrival.
async fn connect_ws(server: &TestServer, token: &str) -> mpsc::UnboundedReceiver<Frame> {
    let url = format!("{}/v1/ws", server.url.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = ws.next().await {
            let now = Instant::now();
            match msg {
                Ok(m) if m.is_text() => {
                    let v = serde_json::from_str(m.to_text().unwrap()).unwrap();
                    if tx.send(Frame::Text(v, now)).is_err() {
                        return;
                    }
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(f)) => {
                    let _ = tx.send(Frame::Closed(f.map(|f| f.reason.to_string())));
                    return;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(Frame::Closed(None));
    });
    rx
}

/// Wait until `device` has a live connection on `server` (the upgrade completed).
async fn wait_connected(server: &TestServer, device: &str) {
    let id: ward_proto::DeviceId = device.parse().unwrap();
    for _ in 0..200 {
        if server.services.hub.is_connected(id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the WebSocket never registered on the node");
}

async fn next_text(rx: &mut mpsc::UnboundedReceiver<Frame>, what: &str) -> (Value, Instant) {
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(Frame::Text(v, t))) => (v, t),
        Ok(Some(Frame::Closed(r))) => panic!("{what}: socket closed ({r:?})"),
        Ok(None) => panic!("{what}: reader ended"),
        Err(_) => panic!("{what}: nothing pushed within 5 s"),
    }
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    ward_testing::send(
        http,
        reqwest::Method::POST,
        &format!("{base}{path}"),
        Some(token),
        Some(body),
    )
    .await
}

async fn get(http: &reqwest::Client, base: &str, token: &str, path: &str) -> (StatusCode, Value) {
    ward_testing::send(
        http,
        reqwest::Method::GET,
        &format!("{base}{path}"),
        Some(token),
        None,
    )
    .await
}

fn app_body(epoch: u64, payload: &[u8]) -> Value {
    json!({"client_message_id": new_id(), "kind": "application", "epoch": epoch, "payload": b64(payload)})
}

fn payload_of(e: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(e["payload"].as_str().unwrap())
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn create_group_with(alice: &TestUser, members: &[&TestUser]) -> String {
    let (s, b) = alice
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": XWING}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let conv = b["conversation_id"].as_str().unwrap().to_owned();
    let (s, b) = alice
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({
                "client_message_id": new_id(), "kind": "commit", "epoch": 0,
                "payload": b64(b"commit-add"),
                "add_users": members.iter().map(|m| m.user_id.clone()).collect::<Vec<_>>(),
                "welcome": {"payload": b64(b"welcome"),
                            "devices": members.iter().map(|m| m.device_id.clone()).collect::<Vec<_>>()},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    conv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_fan_out_over_nats_and_lose_nothing_when_one_stops() {
    if skip_requested() {
        eprintln!("WARD_TEST_POSTGRES=skip: multi-node test skipped");
        return;
    }
    check_nats().await;
    let (db_url, schema) = fresh_schema().await;
    let keys = tempfile::tempdir().unwrap();
    let master_key = keys.path().join("master.key");
    let subject = format!("ward.test.{}", uuid::Uuid::new_v4().simple());
    let opts = node_options(&db_url, &master_key, &subject);
    // A first: it initialises the organisation and keys; B finds them in the shared database.
    let node_a = TestServer::start_with(opts.clone()).await;
    let node_b = TestServer::start_with(opts).await;
    let (ca, cb) = (
        node_a.services.cluster.get().expect("cluster on A"),
        node_b.services.cluster.get().expect("cluster on B"),
    );
    assert_ne!(ca.node_id(), cb.node_id(), "node ids are random per start");

    let alice = node_a.enroll("alice", Role::Physician).await;
    let bob = node_a.enroll("bob", Role::Nurse).await;
    let carol = node_a.enroll("carol", Role::Nurse).await;
    let http = bob.http.clone();

    // Bob's device is connected to both nodes: B (the cross-node path under test) and A (the
    // same-node baseline, to isolate what NATS adds). Carol is connected to B only.
    let mut bob_on_b = connect_ws(&node_b, &bob.token).await;
    let mut bob_on_a = connect_ws(&node_a, &bob.token).await;
    let mut carol_on_b = connect_ws(&node_b, &carol.token).await;
    wait_connected(&node_b, &bob.device_id).await;
    wait_connected(&node_a, &bob.device_id).await;
    wait_connected(&node_b, &carol.device_id).await;

    // 1. The Welcome (an inbox item) crosses nodes.
    let conv = create_group_with(&alice, &[&bob, &carol]).await;
    let (welcome, _) = next_text(&mut bob_on_b, "welcome on B").await;
    assert_eq!(welcome["type"], "inbox", "{welcome}");
    assert_eq!(welcome["kind"], "welcome");
    let _ = next_text(&mut bob_on_a, "welcome on A").await;
    let (w, _) = next_text(&mut carol_on_b, "carol's welcome on B").await;
    assert_eq!(w["kind"], "welcome");

    // 2. Suspension through node A closes Carol's socket on node B.
    node_a
        .services
        .suspend_user(
            &ward_server::service::Actor::cli(),
            &"carol".parse().unwrap(),
        )
        .await
        .unwrap();
    let (ended, _) = next_text(&mut carol_on_b, "session_ended on B").await;
    assert_eq!(ended["type"], "session_ended", "{ended}");
    match tokio::time::timeout(Duration::from_secs(5), carol_on_b.recv()).await {
        Ok(Some(Frame::Closed(_)) | None) => {}
        Ok(Some(Frame::Text(v, _))) => panic!("unexpected frame after session_ended: {v}"),
        Err(_) => panic!("carol's socket on node B stayed open after suspension via node A"),
    }
    let (s, _) = get(&http, &node_b.url, &carol.token, "/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // 3. Latency: 200 sends through A, each pushed to Bob on B (via NATS) and on A (local).
    let mut cross = Vec::with_capacity(MEASURED_SENDS);
    let mut local = Vec::with_capacity(MEASURED_SENDS);
    let mut nats_added = Vec::with_capacity(MEASURED_SENDS);
    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for i in 0..MEASURED_SENDS {
        let payload = format!("measured-{i}").into_bytes();
        let started = Instant::now();
        let (s, b) = post(
            &alice.http,
            &node_a.url,
            &alice.token,
            &format!("/v1/conversations/{conv}/envelopes"),
            app_body(1, &payload),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let seq = b["seq"].as_u64().unwrap();
        acked.insert(seq, payload.clone());
        let (on_b, tb) = next_text(&mut bob_on_b, "envelope on B").await;
        let (on_a, ta) = next_text(&mut bob_on_a, "envelope on A").await;
        for e in [&on_a, &on_b] {
            assert_eq!(e["type"], "envelope", "{e}");
            assert_eq!(e["seq"].as_u64(), Some(seq), "pushed in order");
            assert_eq!(payload_of(e), payload);
        }
        cross.push(tb - started);
        local.push(ta - started);
        nats_added.push(tb.saturating_duration_since(ta));
    }
    for v in [&mut cross, &mut local, &mut nats_added] {
        v.sort();
    }
    eprintln!(
        "cross-node push over NATS, {MEASURED_SENDS} sends (send start -> frame on node B): \
         median {:?}, p95 {:?}, max {:?}",
        percentile(&cross, 0.5),
        percentile(&cross, 0.95),
        cross[cross.len() - 1]
    );
    eprintln!(
        "same-node push baseline (send start -> frame on node A): median {:?}, p95 {:?}",
        percentile(&local, 0.5),
        percentile(&local, 0.95)
    );
    eprintln!(
        "added by the NATS hop (frame on B - frame on A): median {:?}, p95 {:?}",
        percentile(&nats_added, 0.5),
        percentile(&nats_added, 0.95)
    );
    assert!(
        percentile(&cross, 0.5) < Duration::from_secs(1),
        "cross-node push is far too slow"
    );

    // An envelope larger than NATS' max_payload (1 MiB here) crosses by reference: node B
    // reads it from the shared database.
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let (s, b) = post(
        &alice.http,
        &node_a.url,
        &alice.token,
        &format!("/v1/conversations/{conv}/envelopes"),
        app_body(1, &big),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let seq = b["seq"].as_u64().unwrap();
    acked.insert(seq, big.clone());
    let (on_b, _) = next_text(&mut bob_on_b, "large envelope on B").await;
    assert_eq!(on_b["seq"].as_u64(), Some(seq));
    assert!(payload_of(&on_b) == big, "large payload intact");
    let _ = next_text(&mut bob_on_a, "large envelope on A").await;
    let by_reference = ca
        .metrics()
        .published
        .get_or_create(&ward_server::cluster::ModeLabels {
            mode: "reference".into(),
        })
        .get();
    assert_eq!(by_reference, 1, "sent by reference, not inline");

    // 4. Node A stops in the middle of a stream of sends. Everything it acknowledged is
    //    delivered through node B (by push while A ran, and by sync afterwards).
    let stopping = Arc::new(AtomicBool::new(false));
    let sender = {
        let (http, base, token, conv) = (
            alice.http.clone(),
            node_a.url.clone(),
            alice.token.clone(),
            conv.clone(),
        );
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            let mut failures = 0;
            for i in 0.. {
                let payload = format!("during-stop-{i}").into_bytes();
                let resp = http
                    .post(format!("{base}/v1/conversations/{conv}/envelopes"))
                    .bearer_auth(&token)
                    .json(&app_body(1, &payload))
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let b: Value = r.json().await.unwrap();
                        acked.insert(b["seq"].as_u64().unwrap(), payload);
                        true
                    }
                    _ => false,
                };
                if !ok {
                    failures += 1;
                    if stopping.load(Ordering::SeqCst) && failures > 3 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            acked
        })
    };
    // Let some sends through, then stop node A while they continue.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published_by_a = ca.metrics().published_total();
    let dropped_by_a = ca.metrics().dropped_total();
    stopping.store(true, Ordering::SeqCst);
    node_a.stop().await;
    let during = sender.await.unwrap();
    assert!(
        during.len() >= 5,
        "some sends were acknowledged before node A stopped"
    );
    acked.extend(during.clone());

    // What Bob's socket on node B received live (it stays up while A goes away).
    let mut pushed = BTreeSet::new();
    while let Ok(Some(frame)) =
        tokio::time::timeout(Duration::from_millis(500), bob_on_b.recv()).await
    {
        match frame {
            Frame::Text(v, _) if v["type"] == "envelope" => {
                pushed.insert(v["seq"].as_u64().unwrap());
            }
            Frame::Text(v, _) => panic!("unexpected frame on B: {v}"),
            Frame::Closed(r) => panic!("Bob's socket on B closed when A stopped: {r:?}"),
        }
    }
    // Everything acknowledged is in node B's sync, once, in order, with the sent payload.
    let (s, sync) = get(&http, &node_b.url, &bob.token, "/v1/sync?limit=2000").await;
    assert_eq!(s, StatusCode::OK, "{sync}");
    let envelopes = sync["envelopes"].as_array().unwrap();
    let synced: BTreeMap<u64, Vec<u8>> = envelopes
        .iter()
        .filter(|e| e["conversation_id"] == conv.as_str())
        .map(|e| (e["seq"].as_u64().unwrap(), payload_of(e)))
        .collect();
    assert_eq!(
        synced.len(),
        envelopes.len(),
        "no duplicate or foreign envelopes"
    );
    for (seq, payload) in &acked {
        assert_eq!(
            synced.get(seq),
            Some(payload),
            "acknowledged seq {seq} missing from sync via node B"
        );
    }
    let seqs: Vec<u64> = synced.keys().copied().collect();
    assert_eq!(
        seqs,
        (seqs[0]..seqs[0] + seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let pushed_during = during.keys().filter(|s| pushed.contains(s)).count();
    eprintln!(
        "node A stopped mid-run: {} sends acknowledged during the run, {} of them pushed live \
         to node B before the stop, all {} acknowledged envelopes delivered via node B sync",
        during.len(),
        pushed_during,
        acked.len()
    );

    // 5. Counters: A published, B received, nothing dropped.
    let mb = cb.metrics();
    eprintln!(
        "cluster metrics: A published {published_by_a}+ (dropped {dropped_by_a}), B received {}, \
         B published {}, B dropped {}",
        mb.received_total(),
        mb.published_total(),
        mb.dropped_total()
    );
    assert!(published_by_a as usize > MEASURED_SENDS);
    assert!(mb.received_total() as usize > MEASURED_SENDS);
    assert_eq!(dropped_by_a, 0);
    assert_eq!(mb.dropped_total(), 0);

    node_b.stop().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn a_node_without_nats_does_not_start() {
    if skip_requested() {
        return;
    }
    let (db_url, schema) = fresh_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let raw = RawConfig {
        master_key_file: Some(dir.path().join("master.key")),
        // A port nobody listens on.
        cluster: RawCluster {
            nats_url: Some("nats://127.0.0.1:1".into()),
            subject: None,
        },
        ..Default::default()
    };
    let config = ward_server::config::Config::validate(
        raw,
        ward_server::config::Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            database_url: Some(db_url),
            dangerous_plain_http: true,
        },
    )
    .unwrap();
    let err = match ward_server::start(&config, std::future::pending()).await {
        Ok(_) => panic!("started without NATS"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("could not connect to NATS at 127.0.0.1:1"),
        "{err}"
    );
    drop_schema(&schema).await;
}

async fn next_seq(rx: &mut mpsc::UnboundedReceiver<Frame>) -> u64 {
    let (v, _) = next_text(rx, "envelope on B").await;
    assert_eq!(v["type"], "envelope", "{v}");
    v["seq"].as_u64().unwrap()
}

/// ADR 0020 across nodes: concurrent sends through node A reach a device on node B (via NATS)
/// in strictly increasing seq order, none missing; sends through both nodes at once all arrive
/// exactly once (their order across origin nodes is not promised: clients order by seq).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_through_one_node_are_pushed_in_order_on_another() {
    if skip_requested() {
        eprintln!("WARD_TEST_POSTGRES=skip: multi-node test skipped");
        return;
    }
    check_nats().await;
    let (db_url, schema) = fresh_schema().await;
    let keys = tempfile::tempdir().unwrap();
    let master_key = keys.path().join("master.key");
    let subject = format!("ward.test.{}", uuid::Uuid::new_v4().simple());
    let opts = node_options(&db_url, &master_key, &subject);
    let node_a = TestServer::start_with(opts.clone()).await;
    let node_b = TestServer::start_with(opts).await;
    let alice = Arc::new(node_a.enroll("alice", Role::Physician).await);
    let carol = Arc::new(node_a.enroll("carol", Role::Nurse).await);
    let bob = node_a.enroll("bob", Role::Nurse).await;
    let conv = create_group_with(&alice, &[&bob, &carol]).await;
    let mut bob_on_b = connect_ws(&node_b, &bob.token).await;
    wait_connected(&node_b, &bob.device_id).await;

    let storm = |urls: Vec<String>, n: usize| {
        let conv = conv.clone();
        let senders = [alice.clone(), carol.clone()];
        async move {
            let mut seqs: Vec<u64> = futures_util::stream::iter(0..n)
                .map(|i| {
                    let u = senders[i % 2].clone();
                    let base = urls[i % urls.len()].clone();
                    let conv = conv.clone();
                    async move {
                        let (s, b) = post(
                            &u.http,
                            &base,
                            &u.token,
                            &format!("/v1/conversations/{conv}/envelopes"),
                            app_body(1, format!("m{i}").as_bytes()),
                        )
                        .await;
                        assert_eq!(s, StatusCode::OK, "{b}");
                        b["seq"].as_u64().unwrap()
                    }
                })
                .buffer_unordered(32)
                .collect()
                .await;
            seqs.sort_unstable();
            seqs
        }
    };

    // 1. Every send through node A: one origin, so one ordered stream over NATS.
    let accepted = storm(vec![node_a.url.clone()], 300).await;
    let mut pushed = Vec::new();
    while pushed.len() < accepted.len() {
        pushed.push(next_seq(&mut bob_on_b).await);
    }
    assert!(
        pushed.windows(2).all(|w| w[0] < w[1]),
        "pushes from one origin node arrive in seq order on another: {pushed:?}"
    );
    assert_eq!(pushed, accepted, "every seq pushed once");

    // 2. Sends through both nodes: every seq arrives exactly once (order across origins is
    // not promised).
    let accepted = storm(vec![node_a.url.clone(), node_b.url.clone()], 300).await;
    let mut pushed = Vec::new();
    while pushed.len() < accepted.len() {
        pushed.push(next_seq(&mut bob_on_b).await);
    }
    let crossed = pushed.windows(2).filter(|w| w[0] > w[1]).count();
    eprintln!(
        "two origin nodes: {crossed} of {} pushes out of seq order",
        pushed.len()
    );
    pushed.sort_unstable();
    assert_eq!(pushed, accepted, "every seq pushed once from either node");

    node_a.stop().await;
    node_b.stop().await;
    drop_schema(&schema).await;
}
