//! Remote wipe, password rules and notification privacy on the real server over HTTP and
//! WebSocket (ADR 0011). The client side of the wipe is in
//! `crates/ward-client/tests/wipe.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::time::Duration;

use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::{Role, WipeConfirmation, WipeInstruction};
use ward_testing::{PASSWORD, TestServer, TestUser, b64};

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn unb64(v: &Value) -> Vec<u8> {
    serde_json::from_value::<ward_proto::Bytes>(v.clone())
        .unwrap()
        .0
}

/// Collect every text frame pushed to `token`'s socket into the returned channel.
async fn frames(server: &TestServer, token: &str) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let url = format!("{}/v1/ws", server.url.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let Ok(t) = m.to_text()
                && !t.is_empty()
            {
                let _ = tx.send(t.to_owned());
            }
        }
    });
    // Let the server register the socket before anything is pushed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    rx
}

async fn next_frame(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let t = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a push within 10 s")
        .expect("socket open");
    serde_json::from_str(&t).unwrap()
}

/// A group of `by` with `members` welcomed (marker bytes: the server never parses MLS).
async fn group_with(by: &TestUser, members: &[&TestUser]) -> String {
    let (s, b) = by
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": 0x004D}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let conv = b["conversation_id"].as_str().unwrap().to_owned();
    let users: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
    let devices: Vec<&str> = members.iter().map(|m| m.device_id.as_str()).collect();
    let (s, b) = by
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({
                "client_message_id": new_id(), "kind": "commit", "epoch": 0,
                "payload": b64(b"commit-add"), "add_users": users,
                "welcome": {"payload": b64(b"welcome"), "devices": devices},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    conv
}

#[tokio::test]
async fn wipe_order_delivery_and_confirmation_over_the_api() {
    let server = TestServer::start().await;
    let admin = server.enroll("root", Role::Admin).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group_with(&alice, &[&bob]).await;
    let mut alice_push = frames(&server, &alice.token).await;

    // Only admins order wipes.
    let (s, b) = alice
        .post(
            &format!("/v1/admin/devices/{}/wipe", bob.device_id),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    let (s, order) = admin
        .post(
            &format!("/v1/admin/devices/{}/wipe", bob.device_id),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{order}");
    assert_eq!(order["user_id"], bob.user_id);
    assert_eq!(order["delivered_at"], Value::Null);

    // Alice's device is told at once (ids only) so her client syncs and commits the removal.
    let ev = next_frame(&mut alice_push).await;
    assert_eq!(
        ev,
        json!({"type": "device_revoked", "device_id": bob.device_id})
    );
    let (_, revs) = alice.get("/v1/revocations").await;
    assert!(revs.to_string().contains(&bob.device_id), "{revs}");
    // Routing stopped: Bob's device receives nothing new.
    let (s, _) = alice
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({"client_message_id": new_id(), "kind": "application", "epoch": 1, "payload": b64(b"after")}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Bob's old token now yields the signed instruction, for his device only.
    let (s, b) = bob.get("/v1/sync").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"]["code"], "device_wiped");
    let instruction: WipeInstruction = serde_json::from_value(b["error"]["wipe"].clone()).unwrap();
    assert_eq!(instruction.device_id.to_string(), bob.device_id);
    let (_, info) = alice.get("/v1/server").await;
    let ca = VerifyingKey::from_bytes(
        unb64(&info["org_ca_public_key"])
            .as_slice()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let sig: [u8; 64] = instruction.signature.as_slice().try_into().unwrap();
    ca.verify_strict(
        &WipeInstruction::signed_bytes(
            instruction.device_id,
            instruction.issued_at,
            instruction.nonce.as_slice(),
        ),
        &Signature::from_bytes(&sig),
    )
    .expect("signed by the organisation CA");
    // Any other unknown token is still just unauthenticated.
    let stranger = TestUser {
        token: "wt_unknown".into(),
        ..server.enroll("carol", Role::Nurse).await
    };
    let (s, b) = stranger.get("/v1/sync").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["code"], "unauthenticated");

    // A confirmation for the wrong nonce, or signed by another key, is refused.
    let path = format!("/v1/devices/{}/wipe-confirmation", bob.device_id);
    let sign = |key: &ed25519_dalek::SigningKey, nonce: &[u8]| {
        let d = instruction.device_id;
        b64(&key
            .sign(&WipeConfirmation::signed_bytes(d, nonce))
            .to_bytes())
    };
    let other_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    for (nonce, sig) in [
        (vec![1u8; 32], sign(&bob.signing_key, &[1u8; 32])),
        (
            instruction.nonce.0.clone(),
            sign(&other_key, instruction.nonce.as_slice()),
        ),
    ] {
        let (s, b) = stranger
            .post(&path, json!({"nonce": b64(&nonce), "signature": sig}))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    }
    let (s, b) = stranger
        .post(
            &path,
            json!({"nonce": b64(&[1u8; 5]), "signature": b64(&[0u8; 64])}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("nonce"));
    let (s, b) = stranger
        .post(
            &path,
            json!({"nonce": b64(&[1u8; 32]), "signature": b64(&[0u8; 64]), "extra": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown field: {b}");
    // A device without a wipe order cannot confirm anything.
    let (s, _) = stranger
        .post(
            &format!("/v1/devices/{}/wipe-confirmation", alice.device_id),
            json!({"nonce": b64(&[1u8; 32]), "signature": sign(&alice.signing_key, &[1u8; 32])}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The genuine confirmation, once.
    let good = json!({"nonce": b64(instruction.nonce.as_slice()), "signature": sign(&bob.signing_key, instruction.nonce.as_slice())});
    let (s, b) = stranger.post(&path, good.clone()).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = stranger.post(&path, good).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    // A login naming the wiped device is answered with the instruction, never a session.
    let (s, b) = ward_testing::send(
        &server.client(),
        reqwest::Method::POST,
        &format!("{}/v1/login", server.url),
        None,
        Some(json!({"username": "bob", "password": PASSWORD,
            "totp": bob.totp_at(server.now()), "device_id": bob.device_id})),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"]["code"], "device_wiped");
    assert!(b.get("session").is_none());

    let (s, st) = admin
        .get(&format!("/v1/admin/devices/{}/wipe", bob.device_id))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        st["delivered_at"].is_string() && st["confirmed_at"].is_string(),
        "{st}"
    );
    let (_, page) = admin.get("/v1/admin/audit?limit=1000").await;
    let steps: Vec<(String, String)> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == bob.device_id.as_str())
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["details"]["channel"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let names: Vec<&str> = steps.iter().map(|(a, _)| a.as_str()).collect();
    let wipe_steps: Vec<&str> = names
        .iter()
        .copied()
        .filter(|a| a.starts_with("device.wipe."))
        .collect();
    assert_eq!(
        wipe_steps.first(),
        Some(&"device.wipe.ordered"),
        "{steps:?}"
    );
    assert!(
        steps.contains(&("device.wipe.delivered".into(), "session".into())),
        "{steps:?}"
    );
    assert!(
        steps.contains(&("device.wipe.delivered".into(), "login".into())),
        "{steps:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|a| **a == "device.wipe.confirmed")
            .count(),
        1,
        "{steps:?}"
    );
    let (_, v) = admin.get("/v1/admin/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    server.stop().await;
}

#[tokio::test]
async fn pushed_frames_carry_ids_only() {
    let server = TestServer::start().await;
    let admin = server.enroll("root", Role::Admin).await;
    server
        .services
        .create_user(
            &ward_server::service::Actor::cli(),
            ward_proto::CreateUserRequest {
                username: "wdisplay".parse().unwrap(),
                role: Role::Physician,
                display_name: Some("Dr Quentin Zephyrine".into()),
            },
        )
        .await
        .unwrap();
    let alice = server.enroll("alicezq", Role::Physician).await;
    let bob = server.enroll("bobzq", Role::Nurse).await;
    let carol = server.enroll("carolzq", Role::Nurse).await;
    let mut bob_push = frames(&server, &bob.token).await;
    let conv = group_with(&alice, &[&bob, &carol]).await;
    // A labelled message (DLP labels travel as metadata to the audit log, never in pushes).
    let (s, b) = alice
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({"client_message_id": new_id(), "kind": "application", "epoch": 1,
                   "payload": b64(b"opaque"), "labels": ["patient_name", "mrn"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = admin
        .post(
            &format!("/v1/admin/devices/{}/wipe", carol.device_id),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    server
        .services
        .suspend_user(
            &ward_server::service::Actor::cli(),
            &"bobzq".parse().unwrap(),
        )
        .await
        .unwrap();

    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_frame(&mut bob_push).await);
    }
    let kinds: Vec<&str> = got.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["inbox", "envelope", "device_revoked", "session_ended"],
        "{got:?}"
    );
    let text = serde_json::to_string(&got).unwrap();
    for secret in [
        "alicezq",
        "bobzq",
        "carolzq",
        "Zephyrine",
        "patient_name",
        "mrn",
        "labels",
        "display",
        "username",
    ] {
        assert!(!text.contains(secret), "{secret} pushed: {text}");
    }
    let (_, policy) = admin.get("/v1/admin/policy").await;
    assert_eq!(policy["notification_privacy"], true);
    server.stop().await;
}

#[tokio::test]
async fn password_policy_is_bounded_audited_and_enforced_at_enrollment() {
    let server = TestServer::start().await;
    let admin = server.enroll("root", Role::Admin).await;
    let (_, p) = admin.get("/v1/admin/policy").await;
    assert_eq!(p["password_min_length"], 12);
    for (body, needle) in [
        (json!({"password_min_length": 7}), "password_min_length"),
        (json!({"password_min_length": 65}), "password_min_length"),
        (
            json!({"notification_privacy": false}),
            "notification_privacy",
        ),
        (
            json!({"password_min_length": "long"}),
            "password_min_length",
        ),
    ] {
        let (s, b) = put(&admin, "/v1/admin/policy", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{b}"
        );
    }
    let (s, p) = put(
        &admin,
        "/v1/admin/policy",
        json!({"password_min_length": 20}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["password_min_length"], 20);
    let (_, info) = admin.get("/v1/server").await;
    assert_eq!(info["password_min_length"], 20);

    let enroll = |code: String, password: &'static str| {
        let http = server.client();
        let url = format!("{}/v1/enroll", server.url);
        async move {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            ward_testing::send(
                &http,
                reqwest::Method::POST,
                &url,
                None,
                Some(json!({"username": "dana", "enrollment_code": code, "password": password,
                    "device": {"name": "phone", "signature_key": b64(key.verifying_key().as_bytes())}})),
            )
            .await
        }
    };
    let code = server.create_user("dana", Role::Nurse).await;
    for (pw, needle) in [
        ("nineteen characters", "at least 20"),
        ("1234567890QWERTYUIOP", "common"),
        ("iloveyou1234", "at least 20"),
        ("dana dana dana dana dana", "username"),
    ] {
        let (s, b) = enroll(code.clone(), pw).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{pw}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{pw}: {b}"
        );
    }
    // Without MFA a password is the only factor: at least 15 even if the policy says less.
    let (s, _) = put(
        &admin,
        "/v1/admin/policy",
        json!({"password_min_length": 8, "mfa_required": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, info) = admin.get("/v1/server").await;
    assert_eq!(info["password_min_length"], 15);
    let (s, b) = enroll(code.clone(), "plum kettle9").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least 15")
    );
    // Long passphrases with any characters are fine.
    let (s, b) = enroll(
        code,
        "Grüne Äpfel fallen nicht weit vom Stamm ✓ — über 64 Zeichen lang, wirklich!",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let (_, page) = admin.get("/v1/admin/audit?limit=1000").await;
    let changes: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "policy.change")
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["details"]["password_min_length"], 20);
    server.stop().await;
}

async fn put(u: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
    ward_testing::send(
        &u.http,
        reqwest::Method::PUT,
        &format!("{}{path}", u.base),
        Some(&u.token),
        Some(body),
    )
    .await
}
