//! The MLS delivery service end to end over real HTTP and WebSocket: ordering, Welcomes,
//! one commit per epoch, idempotency, receipts, multi-device, removal, offline catch-up.
//! Payloads are opaque to the server, so the tests use marker bytes instead of real MLS.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::Role;
use ward_testing::{TestServer, TestUser, b64};

const XWING: u16 = 0x004D;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn create_group(u: &TestUser) -> String {
    let (s, b) = u
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": XWING}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["epoch"], 0);
    b["conversation_id"].as_str().unwrap().to_owned()
}

async fn send(u: &TestUser, conv: &str, body: Value) -> (StatusCode, Value) {
    u.post(&format!("/v1/conversations/{conv}/envelopes"), body)
        .await
}

async fn app(u: &TestUser, conv: &str, epoch: u64, payload: &[u8]) -> Value {
    let (s, b) = send(u, conv, json!({"client_message_id": new_id(), "kind": "application", "epoch": epoch, "payload": b64(payload)})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn add(by: &TestUser, conv: &str, epoch: u64, user: &TestUser, devices: &[&str]) -> Value {
    let (s, b) = send(
        by,
        conv,
        json!({
            "client_message_id": new_id(), "kind": "commit", "epoch": epoch,
            "payload": b64(format!("commit-add-{}-{epoch}", user.username).as_bytes()),
            "add_users": [user.user_id],
            "welcome": {"payload": b64(b"welcome"), "devices": devices},
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn sync_all(u: &TestUser) -> (Vec<Value>, Vec<Value>) {
    let (s, b) = u.get("/v1/sync").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (
        b["inbox"].as_array().unwrap().clone(),
        b["envelopes"].as_array().unwrap().clone(),
    )
}

async fn ack(u: &TestUser, conv: &str, seq: u64, inbox: Option<u64>) {
    let (s, b) = u
        .post(
            "/v1/sync/ack",
            json!({"conversations": [{"conversation_id": conv, "seq": seq}], "inbox_seq": inbox}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
}

fn payload_of(e: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(e["payload"].as_str().unwrap())
        .unwrap()
}

#[tokio::test]
async fn group_lifecycle_with_welcome_receipts_and_removal() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    bob.upload_key_packages(3).await;

    // Alice claims one of Bob's KeyPackages and adds him.
    let (s, claim) = alice
        .post("/v1/users/bob/key-packages/claim", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{claim}");
    assert_eq!(
        claim["key_packages"][0]["device_id"],
        bob.device_id.as_str()
    );
    assert_eq!(claim["key_packages"][0]["last_resort"], false);
    let conv = create_group(&alice).await;
    let r = add(&alice, &conv, 0, &bob, &[&bob.device_id]).await;
    assert_eq!((r["seq"].as_u64(), r["epoch"].as_u64()), (Some(1), Some(1)));

    // Bob is offline at send time; he finds the Welcome and later messages on sync.
    let first = app(&alice, &conv, 1, b"hello bob").await;
    assert_eq!(first["seq"], 2);
    let (inbox, envelopes) = sync_all(&bob).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["kind"], "welcome");
    assert_eq!(inbox[0]["commit_seq"], 1);
    assert_eq!(
        envelopes.len(),
        1,
        "only what follows the commit that added him: {envelopes:?}"
    );
    assert_eq!(payload_of(&envelopes[0]), b"hello bob");
    assert_eq!(envelopes[0]["sender_user_id"], alice.user_id.as_str());
    // Alice does not get her own messages back.
    let (_, mine) = sync_all(&alice).await;
    assert!(mine.is_empty(), "{mine:?}");

    // Receipts: nothing yet, then delivered, then read.
    let status_path = format!("/v1/conversations/{conv}/messages/2/status");
    let (_, st) = alice.get(&status_path).await;
    assert_eq!(st["recipients"].as_array().unwrap().len(), 1);
    assert!(st["recipients"][0]["delivered_at"].is_null());
    ack(
        &bob,
        &conv,
        2,
        Some(inbox[0]["inbox_seq"].as_u64().unwrap()),
    )
    .await;
    let (_, st) = alice.get(&status_path).await;
    assert_eq!(st["recipients"][0]["device_id"], bob.device_id.as_str());
    assert!(st["recipients"][0]["delivered_at"].is_string(), "{st}");
    assert!(st["recipients"][0]["read_at"].is_null());
    let (s, _) = bob
        .post(
            "/v1/receipts/read",
            json!({"conversations": [{"conversation_id": conv, "seq": 2}]}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, st) = alice.get(&status_path).await;
    assert!(st["recipients"][0]["read_at"].is_string(), "{st}");
    let (inbox, envelopes) = sync_all(&bob).await;
    assert!(
        inbox.is_empty() && envelopes.is_empty(),
        "acked items are not redelivered"
    );

    // Idempotency: a retried send returns the first answer and stores nothing new.
    let cmid = new_id();
    let body = json!({"client_message_id": cmid, "kind": "application", "epoch": 1, "payload": b64(b"once")});
    let (_, a) = send(&alice, &conv, body.clone()).await;
    let (_, b) = send(&alice, &conv, body).await;
    assert_eq!(a["seq"], b["seq"]);
    assert_eq!(b["duplicate"], true);
    let (_, envelopes) = sync_all(&bob).await;
    assert_eq!(
        envelopes
            .iter()
            .filter(|e| payload_of(e) == b"once")
            .count(),
        1
    );

    // Removal: Bob receives the removing commit and a removal notice, nothing after.
    let (s, r) = send(
        &alice,
        &conv,
        json!({
            "client_message_id": new_id(), "kind": "commit", "epoch": 1,
            "payload": b64(b"commit-remove-bob"), "remove_users": [bob.user_id],
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let removal_seq = r["seq"].as_u64().unwrap();
    app(&alice, &conv, 2, b"after bob left").await;
    let (inbox, envelopes) = sync_all(&bob).await;
    assert_eq!(
        inbox.iter().filter(|i| i["kind"] == "removed").count(),
        1,
        "{inbox:?}"
    );
    assert_eq!(envelopes.last().unwrap()["seq"].as_u64(), Some(removal_seq));
    assert!(envelopes.iter().all(|e| payload_of(e) != b"after bob left"));
    let (s, _) = send(&bob, &conv, json!({"client_message_id": new_id(), "kind": "application", "epoch": 2, "payload": b64(b"x")})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a removed member cannot send");

    // The commit log has both commits with their hashes, in epoch order.
    let (_, log) = alice
        .get(&format!("/v1/conversations/{conv}/commits"))
        .await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["epoch"], 0);
    assert_eq!(log[1]["epoch"], 1);
    assert_eq!(
        log[1]["commit_hash"],
        hex::encode(Sha256::digest(b"commit-remove-bob"))
    );
    server.stop().await;
}

#[tokio::test]
async fn exactly_one_concurrent_commit_wins_and_the_loser_learns_the_epoch() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Physician).await;
    let conv = create_group(&alice).await;
    add(&alice, &conv, 0, &bob, &[&bob.device_id]).await;
    let body = |tag: &str| json!({"client_message_id": new_id(), "kind": "commit", "epoch": 1, "payload": b64(tag.as_bytes())});
    let (a, b) = tokio::join!(
        send(&alice, &conv, body("alice-update")),
        send(&bob, &conv, body("bob-update"))
    );
    let statuses = [a.0, b.0];
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{a:?} {b:?}"
    );
    let loser = if a.0 == StatusCode::OK { b.1 } else { a.1 };
    assert_eq!(loser["error"]["code"], "epoch_conflict");
    assert_eq!(loser["error"]["current_epoch"], 2);
    // Stale application messages are refused too, so nobody encrypts under a lost epoch.
    let (s, e) = send(&bob, &conv, json!({"client_message_id": new_id(), "kind": "application", "epoch": 1, "payload": b64(b"late")})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (_, info) = alice.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(info["epoch"], 2);
    server.stop().await;
}

#[tokio::test]
async fn every_device_of_every_member_receives_and_new_devices_join_by_welcome() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = create_group(&alice).await;
    add(&alice, &conv, 0, &bob, &[&bob.device_id]).await;
    // Bob's second device: not in the group until a member commits it in.
    let bob2 = bob.login_new_device(server.now()).await;
    app(&alice, &conv, 1, b"before second device").await;
    let (inbox, envelopes) = sync_all(&bob2).await;
    assert!(
        inbox.is_empty() && envelopes.is_empty(),
        "a device sees nothing before its Welcome"
    );
    let (s, r) = send(&alice, &conv, json!({
        "client_message_id": new_id(), "kind": "commit", "epoch": 1, "payload": b64(b"add bob2"),
        "welcome": {"payload": b64(b"welcome2"), "devices": [bob2.device_id]},
    })).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    app(&alice, &conv, 2, b"to both devices").await;
    for d in [&bob, &bob2] {
        let (_, envelopes) = sync_all(d).await;
        assert_eq!(
            envelopes
                .iter()
                .filter(|e| payload_of(e) == b"to both devices")
                .count(),
            1
        );
    }
    // A message from one of Bob's devices reaches his other device.
    app(&bob2, &conv, 2, b"from bob2").await;
    let (_, envelopes) = sync_all(&bob).await;
    assert!(envelopes.iter().any(|e| payload_of(e) == b"from bob2"));
    let (_, st) = alice.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(st["devices"].as_array().unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn sync_pages_in_order_without_loss() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = create_group(&alice).await;
    add(&alice, &conv, 0, &bob, &[&bob.device_id]).await;
    for i in 0..25 {
        app(&alice, &conv, 1, format!("m{i}").as_bytes()).await;
    }
    let mut got = Vec::new();
    loop {
        let (_, b) = bob.get("/v1/sync?limit=10").await;
        let inbox_seq = b["inbox"]
            .as_array()
            .unwrap()
            .last()
            .map(|i| i["inbox_seq"].as_u64().unwrap());
        let env = b["envelopes"].as_array().unwrap().clone();
        if let Some(last) = env.last() {
            ack(&bob, &conv, last["seq"].as_u64().unwrap(), inbox_seq).await;
        } else if let Some(i) = inbox_seq {
            let (s, _) = bob.post("/v1/sync/ack", json!({"inbox_seq": i})).await;
            assert_eq!(s, StatusCode::NO_CONTENT);
        }
        got.extend(
            env.iter()
                .map(|e| String::from_utf8(payload_of(e)).unwrap()),
        );
        if b["more"] != true {
            break;
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    server.stop().await;
}

#[tokio::test]
async fn websocket_pushes_envelopes_and_accepts_acks() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = create_group(&alice).await;

    let ws_url = format!("{}/v1/ws", server.url.replace("http://", "ws://"));
    let mut req = ws_url.clone().into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", bob.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();

    add(&alice, &conv, 0, &bob, &[&bob.device_id]).await;
    app(&alice, &conv, 1, b"live").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("push within 10 s")
            .unwrap()
            .unwrap();
        got.push(serde_json::from_str::<Value>(msg.to_text().unwrap()).unwrap());
    }
    assert_eq!(got[0]["type"], "inbox");
    assert_eq!(got[0]["kind"], "welcome");
    assert_eq!(got[1]["type"], "envelope");
    assert_eq!(payload_of(&got[1]), b"live");

    // Acknowledge over the socket; the sender sees the delivery.
    let seq = got[1]["seq"].as_u64().unwrap();
    let ack = json!({"type": "ack", "conversations": [{"conversation_id": conv, "seq": seq}], "inbox_seq": got[0]["inbox_seq"]});
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        ack.to_string().into(),
    ))
    .await
    .unwrap();
    let mut delivered = false;
    for _ in 0..50 {
        let (_, st) = alice
            .get(&format!("/v1/conversations/{conv}/messages/{seq}/status"))
            .await;
        if st["recipients"][0]["delivered_at"].is_string() {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(delivered, "ack over WebSocket recorded as delivery receipt");

    // A malformed frame closes the socket with a policy error.
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "not json".into(),
    ))
    .await
    .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                return true;
            }
        }
        true
    })
    .await
    .unwrap();
    assert!(closed);

    // Suspension ends a live socket at once.
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", bob.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server
        .services
        .suspend_user(&ward_server::service::Actor::cli(), &"bob".parse().unwrap())
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(msg.to_text().unwrap().contains("session_ended"), "{msg:?}");
    let (s, _) = bob.get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn direct_conversations_are_unique_per_pair_and_stay_two_person() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let carol = server.enroll("carol", Role::Nurse).await;
    let (s, c) = alice
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "ciphersuite": XWING, "peer": "bob"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let conv = c["conversation_id"].as_str().unwrap().to_owned();
    let (s, e) = bob
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "ciphersuite": XWING, "peer": "alice"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains(&conv));
    let (s, e) = send(&alice, &conv, json!({
        "client_message_id": new_id(), "kind": "commit", "epoch": 0, "payload": b64(b"c"),
        "add_users": [carol.user_id], "welcome": {"payload": b64(b"w"), "devices": [carol.device_id]},
    })).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    add(&alice, &conv, 0, &bob, &[&bob.device_id]).await;
    let (s, e) = alice
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": 0x0003}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "ciphersuite outside policy: {e}"
    );
    server.stop().await;
}

#[tokio::test]
async fn audit_log_records_the_story_without_content() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let admin = server.enroll("root", Role::Admin).await;
    let conv = create_group(&alice).await;
    add(&alice, &conv, 0, &bob, &[&bob.device_id]).await;
    app(&alice, &conv, 1, b"UNIQUE-MARKER-7f3a").await;
    sync_all(&bob).await;
    let (s, page) = admin.get("/v1/admin/audit?limit=1000").await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for want in [
        "user.create",
        "enroll.success",
        "device.register",
        "conversation.create",
        "message.send",
        "message.fetch",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    // The fetch names what Bob received by conversation and seq range: the marker at seq 2.
    let fetch = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "message.fetch" && r["actor_user_id"] == bob.user_id.as_str())
        .expect("bob's fetch audited");
    assert_eq!(
        fetch["details"]["ranges"][conv.as_str()],
        json!([2, 2, 1]),
        "{fetch}"
    );
    assert!(
        !page.to_string().contains("UNIQUE-MARKER"),
        "audit holds no content"
    );
    assert!(
        !page.to_string().contains(&b64(b"UNIQUE-MARKER-7f3a")),
        "audit holds no payload"
    );
    let (_, report) = admin.get("/v1/admin/audit/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    server.stop().await;
}

#[tokio::test]
async fn patients_may_leave_but_not_remove_others() {
    let server = TestServer::start().await;
    let doctor = server.enroll("doctor", Role::Physician).await;
    let patient = server.enroll("patient", Role::Patient).await;
    let conv = create_group(&doctor).await;
    add(&doctor, &conv, 0, &patient, &[&patient.device_id]).await;
    let commit = |remove_users: Vec<&str>, remove_devices: Vec<&str>| {
        json!({
            "client_message_id": new_id(), "kind": "commit", "epoch": 1, "payload": b64(b"c"),
            "remove_users": remove_users, "remove_devices": remove_devices,
        })
    };
    let (s, e) = send(&patient, &conv, commit(vec![&doctor.user_id], vec![])).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, e) = send(&patient, &conv, commit(vec![], vec![&doctor.device_id])).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, e) = send(
        &patient,
        &conv,
        commit(vec![&patient.user_id], vec![&patient.device_id]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "a patient may leave: {e}");
    server.stop().await;
}
