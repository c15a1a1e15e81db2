//! The server's side of the compliance journal over real HTTP: installing keys (and refusing
//! bad ones), the signed key list, the send-path rule (a copy sealed to the current key with
//! every application message while a key is installed, never with anything else), copies
//! delivered with envelopes, rotation, and mismatch reports in the audit log. Copies are opaque
//! to the server, so marker bytes stand in for HPKE ciphertext here; the real sealing and
//! checking is tested in `ward-core` and end to end in `ward-client`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use reqwest::StatusCode;
use serde_json::{Value, json};
use ward_proto::{JournalKeyList, Role, ServerInfo, SignedJournalKey};
use ward_server::service::{Actor, journal_key_id};
use ward_testing::{TestServer, TestUser, b64};

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A physician and a nurse in one group at epoch 1.
async fn group(server: &TestServer) -> (TestUser, TestUser, String) {
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let (s, b) = alice
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": 0x004D}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let conv = b["conversation_id"].as_str().unwrap().to_owned();
    let (s, b) = alice
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({
                "client_message_id": new_id(), "kind": "commit", "epoch": 0,
                "payload": b64(b"commit"), "add_users": [bob.user_id],
                "welcome": {"payload": b64(b"welcome"), "devices": [bob.device_id]},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (alice, bob, conv)
}

async fn send_app(u: &TestUser, conv: &str, journal: Option<Value>) -> (StatusCode, Value) {
    let mut body = json!({"client_message_id": new_id(), "kind": "application", "epoch": 1,
        "payload": b64(b"mls ciphertext")});
    if let Some(j) = journal {
        body["journal"] = j;
    }
    u.post(&format!("/v1/conversations/{conv}/envelopes"), body)
        .await
}

fn copy(key_id: &str, len: usize) -> Value {
    json!({"key_id": key_id, "ciphertext": b64(&vec![7u8; len])})
}

fn key(fill: u8) -> Vec<u8> {
    vec![fill; 1216]
}

fn assert_invalid(s: StatusCode, b: &Value, needle: &str) {
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], "invalid_request", "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
}

#[tokio::test]
async fn installing_keys_validates_and_audits() {
    let server = TestServer::start().await;
    let svc = &server.services;
    let e = svc
        .set_journal_key(&Actor::cli(), vec![1; 32])
        .await
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    assert!(e.body().error.message.contains("1216 bytes"));
    let nurse = Actor {
        role: Role::Nurse,
        ..Actor::cli()
    };
    assert_eq!(
        svc.set_journal_key(&nurse, key(1))
            .await
            .unwrap_err()
            .status(),
        StatusCode::FORBIDDEN
    );
    let k = svc.set_journal_key(&Actor::cli(), key(1)).await.unwrap();
    assert_eq!(k.key_id, journal_key_id(&key(1)));
    let again = svc
        .set_journal_key(&Actor::cli(), key(1))
        .await
        .unwrap_err();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(
        svc.store.journal_keys().await.unwrap().len(),
        1,
        "nothing changed"
    );
    let audit = svc.store.audit_records(0, 1000).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|r| r.action == "journal.key_install")
            .count(),
        1
    );
}

#[tokio::test]
async fn the_send_path_requires_a_copy_for_the_current_key() {
    let server = TestServer::start().await;
    let (alice, bob, conv) = group(&server).await;

    // No key yet: no copy expected, and none allowed.
    let (s, b) = send_app(&alice, &conv, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = send_app(&alice, &conv, Some(copy(&"a".repeat(32), 2000))).await;
    assert_invalid(s, &b, "no journal key");

    let k1 = server
        .services
        .set_journal_key(&Actor::cli(), key(1))
        .await
        .unwrap();
    let (s, b) = send_app(&alice, &conv, None).await;
    assert_invalid(s, &b, "journal copy");
    let (s, b) = send_app(&alice, &conv, Some(copy(&"b".repeat(32), 2000))).await;
    assert_invalid(s, &b, "current journal key");
    let (s, b) = send_app(&alice, &conv, Some(copy(&k1.key_id, 1120))).await;
    assert_invalid(s, &b, "journal copy must be");
    let (s, b) = alice
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({"client_message_id": new_id(), "kind": "commit", "epoch": 1,
                "payload": b64(b"c"), "journal": copy(&k1.key_id, 2000)}),
        )
        .await;
    assert_invalid(s, &b, "only for application messages");

    let (s, b) = send_app(&alice, &conv, Some(copy(&k1.key_id, 2000))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let seq = b["seq"].as_u64().unwrap();

    // Delivered with the envelope; archived apart from it.
    let (s, b) = bob.get("/v1/sync").await;
    assert_eq!(s, StatusCode::OK);
    let env = b["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["seq"].as_u64() == Some(seq))
        .unwrap()
        .clone();
    assert_eq!(env["journal"], copy(&k1.key_id, 2000));
    let archived = server
        .services
        .store
        .journal_entries(&ward_store::JournalQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].seq, seq);

    // Rotation: the new key is current, the old one stays listed.
    let k2 = server
        .services
        .set_journal_key(&Actor::cli(), key(2))
        .await
        .unwrap();
    let (s, b) = send_app(&alice, &conv, Some(copy(&k1.key_id, 2000))).await;
    assert_invalid(s, &b, "current journal key");
    let (s, b) = send_app(&alice, &conv, Some(copy(&k2.key_id, 2000))).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // The list is signed by the organisation CA.
    let (s, info) = bob.get("/v1/server").await;
    assert_eq!(s, StatusCode::OK);
    let info: ServerInfo = serde_json::from_value(info).unwrap();
    let (s, list) = bob.get("/v1/journal-keys").await;
    assert_eq!(s, StatusCode::OK);
    let list: JournalKeyList = serde_json::from_value(list).unwrap();
    let ids: Vec<_> = list.keys.iter().map(|k| k.key_id.clone()).collect();
    assert_eq!(ids, vec![k1.key_id.clone(), k2.key_id.clone()]);
    let ca = ed25519_dalek::VerifyingKey::from_bytes(
        &info.org_ca_public_key.as_slice().try_into().unwrap(),
    )
    .unwrap();
    for k in &list.keys {
        let sig = ed25519_dalek::Signature::from_slice(k.signature.as_slice()).unwrap();
        ca.verify_strict(
            &SignedJournalKey::signed_bytes(&k.key_id, &k.public_key.0, k.created_at),
            &sig,
        )
        .unwrap();
    }
}

#[tokio::test]
async fn mismatch_reports_are_audited_with_ids_only() {
    let server = TestServer::start().await;
    let (alice, bob, conv) = group(&server).await;
    let (_, sent) = send_app(&alice, &conv, None).await;
    let (message_id, seq) = (sent["message_id"].clone(), sent["seq"].clone());
    let carol = server.enroll("carol", Role::Nurse).await;

    let report = json!({"conversation_id": conv, "message_id": message_id, "seq": seq});
    let (s, b) = carol.post("/v1/journal/mismatch", report.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a non-member: {b}");
    let (s, b) = bob
        .post(
            "/v1/journal/mismatch",
            json!({"conversation_id": conv, "message_id": new_id(), "seq": seq}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another message at that seq: {b}");
    let mut extra = report.clone();
    extra["text"] = json!("not allowed");
    let (s, b) = bob.post("/v1/journal/mismatch", extra).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown fields refused: {b}");

    let (s, b) = bob.post("/v1/journal/mismatch", report).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let audit = server.services.store.audit_records(0, 1000).await.unwrap();
    let rec: Vec<_> = audit
        .iter()
        .filter(|r| r.action == "journal.mismatch")
        .collect();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].target.as_deref(), message_id.as_str());
    assert_eq!(rec[0].details["seq"], seq);
    assert_eq!(rec[0].details["sender_user_id"], json!(alice.user_id));
    assert_eq!(
        rec[0].actor_user_id.map(|u| u.to_string()),
        Some(bob.user_id.clone())
    );
}

#[tokio::test]
async fn the_archive_is_served_to_compliance_only_with_validated_filters() {
    let server = TestServer::start().await;
    let (alice, _bob, conv) = group(&server).await;
    let k = server
        .services
        .set_journal_key(&Actor::cli(), key(3))
        .await
        .unwrap();
    for _ in 0..3 {
        let (s, b) = send_app(&alice, &conv, Some(copy(&k.key_id, 1500))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let officer = server.enroll("officer", Role::Compliance).await;
    let (s, b) = alice.get("/v1/compliance/journal").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    let (s, b) = officer.get("/v1/compliance/journal?limit=2").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["entries"].as_array().unwrap().len(), 2);
    assert_eq!(b["more"], true);
    assert_eq!(b["entries"][0]["sender_username"], "alice");
    assert_eq!(b["entries"][0]["copy"], copy(&k.key_id, 1500));
    let after = b["entries"][1]["archive_seq"].as_u64().unwrap();
    let (s, b) = officer
        .get(&format!(
            "/v1/compliance/journal?after={after}&user=alice&conversation={conv}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["entries"].as_array().unwrap().len(), 1);
    assert_eq!(b["more"], false);
    let (s, b) = officer.get("/v1/compliance/journal?until=0").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["entries"].as_array().unwrap().is_empty());

    for (query, status) in [
        ("limit=0", StatusCode::BAD_REQUEST),
        ("limit=1001", StatusCode::BAD_REQUEST),
        ("since=yesterday", StatusCode::BAD_REQUEST),
        ("conversation=nope", StatusCode::BAD_REQUEST),
        ("user=Not%20A%20Name", StatusCode::BAD_REQUEST),
        ("user=nobody", StatusCode::NOT_FOUND),
        ("colour=red", StatusCode::BAD_REQUEST),
    ] {
        let (s, b) = officer
            .get(&format!("/v1/compliance/journal?{query}"))
            .await;
        assert_eq!(s, status, "{query}: {b}");
    }
    let audit = server.services.store.audit_records(0, 1000).await.unwrap();
    let reads = audit
        .iter()
        .filter(|r| r.action == "journal.archive_read")
        .count();
    assert_eq!(reads, 3, "each page served is audited");
}
