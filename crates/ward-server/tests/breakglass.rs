//! Break-glass emergency access (ADR 0016) on the real server over HTTP and WebSocket, with
//! the hand-moved clock: grant, alert, fulfilment by a member's commit, expiry, the late
//! commit, and every refusal. The clients' side (MLS) is in
//! `crates/ward-client/tests/breakglass.rs`.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::Role;
use ward_server::service::Actor;
use ward_testing::{ServerOptions, TestServer, TestUser, b64};

const REASON: &str = "Rapid response call, primary nurse unavailable";

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn manual_server() -> TestServer {
    TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..Default::default()
    })
    .await
}

/// Collect every text frame pushed to `token`'s socket.
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

/// The next `break_glass` frame (other frames are skipped).
async fn next_break_glass(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    loop {
        let t = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a push within 10 s")
            .expect("socket open");
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "break_glass" {
            return v;
        }
    }
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
    if members.is_empty() {
        return conv;
    }
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

async fn epoch(u: &TestUser, conv: &str) -> u64 {
    let (s, b) = u.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["epoch"].as_u64().unwrap()
}

/// Commit adding `who` at `epoch`, naming `grant` (if any).
async fn add_commit(
    by: &TestUser,
    conv: &str,
    epoch: u64,
    who: &TestUser,
    grant: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({
        "client_message_id": new_id(), "kind": "commit", "epoch": epoch,
        "payload": b64(format!("add {} at {epoch}", who.username).as_bytes()),
        "add_users": [who.user_id],
        "welcome": {"payload": b64(b"welcome"), "devices": [who.device_id]},
    });
    if let Some(g) = grant {
        body["break_glass_grant"] = json!(g);
    }
    by.post(&format!("/v1/conversations/{conv}/envelopes"), body)
        .await
}

async fn send_app(by: &TestUser, conv: &str, epoch: u64) -> StatusCode {
    by.post(
        &format!("/v1/conversations/{conv}/envelopes"),
        json!({"client_message_id": new_id(), "kind": "application", "epoch": epoch,
               "payload": b64(b"opaque")}),
    )
    .await
    .0
}

async fn put(u: &TestUser, body: Value) -> (StatusCode, Value) {
    ward_testing::send(
        &u.http,
        reqwest::Method::PUT,
        &format!("{}/v1/admin/policy", u.base),
        Some(&u.token),
        Some(body),
    )
    .await
}

async fn actions(server: &TestServer) -> Vec<(String, Value)> {
    server
        .services
        .store
        .audit_records(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.details))
        .collect()
}

#[tokio::test]
async fn grant_alert_fulfilment_and_expiry() {
    let server = manual_server().await;
    let alice = server.enroll("alicebg", Role::Physician).await;
    let bob = server.enroll("bobbg", Role::Nurse).await;
    let carol = server.enroll("carolbg", Role::Nurse).await;
    let dave = server.enroll("davebg", Role::Physician).await;
    let comp = server.enroll("compbg", Role::Compliance).await;
    let conv = group_with(&alice, &[&bob]).await;
    let mut bob_push = frames(&server, &bob.token).await;
    let mut comp_push = frames(&server, &comp.token).await;

    let (s, g) = carol
        .post(
            &format!("/v1/conversations/{conv}/break-glass"),
            json!({"reason": REASON, "minutes": 10}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let grant = g["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(g["username"], "carolbg");
    assert_eq!(g["reason"], REASON);
    assert!(g["added_at"].is_null() && g["ended_at"].is_null());

    // Members and the compliance officer are alerted; the push names ids and times only.
    for rx in [&mut bob_push, &mut comp_push] {
        let f = next_break_glass(rx).await;
        assert_eq!(f["grant_id"], grant.as_str());
        assert_eq!(f["conversation_id"], conv.as_str());
        assert_eq!(f["user_id"], carol.user_id.as_str());
        assert_eq!(f["ended"], false);
        let text = f.to_string();
        assert!(
            !text.contains("carolbg") && !text.contains("Rapid response"),
            "{text}"
        );
    }

    // A second grant while one is open, and a member's grant, are refused.
    let (s, b) = carol
        .post(
            &format!("/v1/conversations/{conv}/break-glass"),
            json!({"reason": REASON}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = bob
        .post(
            &format!("/v1/conversations/{conv}/break-glass"),
            json!({"reason": REASON}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already a member")
    );

    // Who sees the grant: members, the grantee, compliance; not an outsider.
    for (u, sees) in [(&bob, true), (&carol, true), (&comp, true), (&dave, false)] {
        let (s, b) = u.get("/v1/break-glass").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let ids: Vec<&str> = b
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["grant_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.contains(&grant.as_str()), sees, "{}: {b}", u.username);
    }

    // Before fulfilment she is not a member: cannot read or send.
    let (s, _) = carol.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A commit naming the grant must add the grantee, and only commits may name one.
    let e = epoch(&alice, &conv).await;
    let (s, b) = add_commit(&alice, &conv, e, &dave, Some(&grant)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = alice
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({"client_message_id": new_id(), "kind": "application", "epoch": e,
                   "payload": b64(b"x"), "break_glass_grant": grant}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Bob's client fulfils it.
    let (s, b) = add_commit(&bob, &conv, e, &carol, Some(&grant)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let e = e + 1;
    assert_eq!(send_app(&carol, &conv, e).await, StatusCode::OK);
    let (_, list) = comp.get("/v1/break-glass").await;
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grant_id"] == grant.as_str())
        .unwrap()
        .clone();
    assert!(!row["added_at"].is_null(), "{row}");

    // Not expired yet: the sweep changes nothing. (Steps stay under the 15-minute idle
    // timeout, so the sessions live.)
    server.advance(time::Duration::minutes(9));
    assert_eq!(server.services.expire_break_glass().await.unwrap(), 0);
    assert_eq!(send_app(&carol, &conv, e).await, StatusCode::OK);

    // Expired: she is removed at once, everyone is told, she cannot send any more.
    server.advance(time::Duration::minutes(1));
    assert_eq!(server.services.expire_break_glass().await.unwrap(), 1);
    for rx in [&mut bob_push, &mut comp_push] {
        let f = next_break_glass(rx).await;
        assert_eq!(f["grant_id"], grant.as_str());
        assert_eq!(f["ended"], true);
    }
    assert_eq!(send_app(&carol, &conv, e).await, StatusCode::NOT_FOUND);
    let (_, info) = alice.get(&format!("/v1/conversations/{conv}")).await;
    let members: Vec<&str> = info["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2, "{info}");
    assert!(!members.contains(&"carolbg"));
    assert_eq!(server.services.expire_break_glass().await.unwrap(), 0);

    // The audit log holds the whole story, the reason included.
    let log = actions(&server).await;
    let granted: Vec<&Value> = log
        .iter()
        .filter(|(a, _)| a == "breakglass.granted")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["reason"], REASON);
    assert_eq!(granted[0]["conversation_id"], conv.as_str());
    assert_eq!(granted[0]["minutes"], 10);
    for action in ["breakglass.added", "breakglass.expired", "breakglass.list"] {
        assert!(log.iter().any(|(a, _)| a == action), "{action} missing");
    }
    let expired = log
        .iter()
        .find(|(a, _)| a == "breakglass.expired")
        .map(|(_, d)| d)
        .unwrap();
    assert_eq!(expired["devices_removed"], json!([carol.device_id]));
    assert_eq!(expired["late_commit"], false);
}

#[tokio::test]
async fn a_commit_after_expiry_adds_nobody() {
    let server = manual_server().await;
    let alice = server.enroll("alicelate", Role::Physician).await;
    let erin = server.enroll("erinlate", Role::Physician).await;
    let conv = group_with(&alice, &[]).await;
    let (s, g) = erin
        .post(
            &format!("/v1/conversations/{conv}/break-glass"),
            json!({"reason": REASON, "minutes": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let grant = g["grant_id"].as_str().unwrap().to_owned();
    // Past expires_at, before the sweep: the commit is refused already.
    server.advance(time::Duration::minutes(5));
    let (s, b) = add_commit(&alice, &conv, 0, &erin, Some(&grant)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has ended")
    );
    assert_eq!(server.services.expire_break_glass().await.unwrap(), 1);
    let (s, b) = add_commit(&alice, &conv, 0, &erin, Some(&grant)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(epoch(&alice, &conv).await, 0, "nothing was appended");
    let (s, _) = erin.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A grant of another conversation does not fit this one.
    let other = group_with(&alice, &[]).await;
    let (s, g2) = erin
        .post(
            &format!("/v1/conversations/{other}/break-glass"),
            json!({"reason": REASON}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g2}");
    let (s, b) = add_commit(&alice, &conv, 0, &erin, g2["grant_id"].as_str()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    // An expired grant does not block a new one.
    let (s, b) = erin
        .post(
            &format!("/v1/conversations/{conv}/break-glass"),
            json!({"reason": REASON, "minutes": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn refusals_change_nothing() {
    let server = manual_server().await;
    let alice = server.enroll("alicebad", Role::Physician).await;
    let nurse = server.enroll("nursebad", Role::Nurse).await;
    let conv = group_with(&alice, &[]).await;
    let path = format!("/v1/conversations/{conv}/break-glass");

    // Unauthorised roles: 403, a `breakglass.refused` record, no grant.
    for (name, role) in [
        ("adminbad", Role::Admin),
        ("compbad", Role::Compliance),
        ("patientbad", Role::Patient),
        ("servicebad", Role::Service),
        ("pharmbad", Role::Pharmacist),
    ] {
        let u = server.enroll(name, role).await;
        let (s, b) = u.post(&path, json!({"reason": REASON})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{name}: {b}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("may not open break-glass") && msg.contains("physician, nurse"),
            "{msg}"
        );
    }
    let refused = actions(&server)
        .await
        .iter()
        .filter(|(a, _)| a == "breakglass.refused")
        .count();
    assert_eq!(refused, 5);

    // Bad input: each names the problem.
    let long = "x".repeat(501);
    for (body, status, needle) in [
        (
            json!({"reason": "too short"}),
            StatusCode::BAD_REQUEST,
            "reason must be 10 to 500",
        ),
        (
            json!({"reason": long}),
            StatusCode::BAD_REQUEST,
            "reason must be 10 to 500",
        ),
        (
            json!({"reason": "          "}),
            StatusCode::BAD_REQUEST,
            "reason must be",
        ),
        (
            json!({"reason": "emergency\u{0007}bell!!"}),
            StatusCode::BAD_REQUEST,
            "control characters",
        ),
        (
            json!({"reason": REASON, "minutes": 0}),
            StatusCode::BAD_REQUEST,
            "minutes must be 1 to 480",
        ),
        (
            json!({"reason": REASON, "minutes": 481}),
            StatusCode::BAD_REQUEST,
            "minutes must be 1 to 480",
        ),
        (
            json!({"reason": REASON, "user": "alicebad"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "reason"),
    ] {
        let (s, b) = nurse.post(&path, body.clone()).await;
        assert_eq!(s, status, "{body}: {b}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let (s, b) = nurse
        .post(
            "/v1/conversations/not-an-id/break-glass",
            json!({"reason": REASON}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = nurse
        .post(
            &format!("/v1/conversations/{}/break-glass", new_id()),
            json!({"reason": REASON}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    // A direct conversation never gains a third member.
    let (s, d) = alice
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "ciphersuite": 0x004D, "peer": "nursebad"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let other = server.enroll("otherbad", Role::Nurse).await;
    let (s, b) = other
        .post(
            &format!(
                "/v1/conversations/{}/break-glass",
                d["conversation_id"].as_str().unwrap()
            ),
            json!({"reason": REASON}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("group conversations only")
    );

    // Nothing was granted.
    assert!(
        server
            .services
            .store
            .break_glass_grants(None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !actions(&server)
            .await
            .iter()
            .any(|(a, _)| a == "breakglass.granted")
    );
}

#[tokio::test]
async fn policy_bounds_break_glass() {
    let server = manual_server().await;
    let admin = server.enroll("rootbg", Role::Admin).await;
    let alice = server.enroll("alicepol", Role::Physician).await;
    let pharm = server.enroll("pharmpol", Role::Pharmacist).await;
    let nurse = server.enroll("nursepol", Role::Nurse).await;
    let conv = group_with(&alice, &[]).await;
    let path = format!("/v1/conversations/{conv}/break-glass");

    for (body, needle) in [
        (
            json!({"break_glass_roles": ["admin"]}),
            "physician, nurse or pharmacist",
        ),
        (
            json!({"break_glass_roles": ["compliance"]}),
            "physician, nurse or pharmacist",
        ),
        (
            json!({"break_glass_roles": ["patient"]}),
            "physician, nurse or pharmacist",
        ),
        (json!({"break_glass_max_minutes": 4}), "between 5 and 1440"),
        (
            json!({"break_glass_max_minutes": 1441}),
            "between 5 and 1440",
        ),
    ] {
        let (s, b) = put(&admin, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{b}"
        );
    }
    let (s, b) = put(
        &admin,
        json!({"break_glass_roles": ["pharmacist"], "break_glass_max_minutes": 15}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["break_glass_roles"], json!(["pharmacist"]));
    assert_eq!(b["break_glass_max_minutes"], 15);
    let (s, b) = nurse.post(&path, json!({"reason": REASON})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = pharm
        .post(&path, json!({"reason": REASON, "minutes": 16}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Without minutes: the default (60) capped by the maximum.
    let (s, b) = pharm.post(&path, json!({"reason": REASON})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let granted = time::OffsetDateTime::parse(
        b["granted_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        b["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires - granted, time::Duration::minutes(15));
    // An empty list turns break-glass off.
    server
        .services
        .update_policy(
            &Actor::cli(),
            ward_proto::UpdatePolicyRequest {
                break_glass_roles: Some(Vec::new()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let other = group_with(&alice, &[]).await;
    let (s, b) = pharm
        .post(
            &format!("/v1/conversations/{other}/break-glass"),
            json!({"reason": REASON}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("break-glass is off")
    );
}
