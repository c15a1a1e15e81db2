//! Messages sent to a clinical role over real HTTP (ADR 0018), timed with the manual clock:
//! the primary is notified, re-notified every N, the backup tier after the deadline, "no
//! response" to the sender at the end; an acknowledgement stops it; a decline moves on at
//! once; only recipients may acknowledge; unknown roles and roles nobody holds.
//! Payloads are opaque to the server, so the tests use marker bytes instead of real MLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: failures should panic loudly"
)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;
use ward_proto::Role;
use ward_testing::{ServerOptions, TestServer, TestUser, b64, send};

const XWING: u16 = 0x004D;
/// The marker "text" of the STAT message; it must never reach the server's storage or audit.
const SECRET: &[u8] = b"ECG-SECRET-ST-ELEVATION";

struct Setup {
    server: TestServer,
    medic: TestUser,
    dr_a: TestUser,
    dr_b: TestUser,
    outsider: TestUser,
    conv: String,
}

async fn call(
    u: &TestUser,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    send(
        &u.http,
        method,
        &format!("{}{path}", u.base),
        Some(&u.token),
        body,
    )
    .await
}

/// Roles `cardiology-on-call` (dr-a; ack within 300 s, re-notify every 60 s, then the backup)
/// and `cardiology-backup` (dr-b); a group of the medic, dr-a and dr-b.
async fn setup() -> Setup {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let admin = server.enroll("admin", Role::Admin).await;
    let medic = server.enroll("medic", Role::Nurse).await;
    let dr_a = server.enroll("dr-a", Role::Physician).await;
    let dr_b = server.enroll("dr-b", Role::Physician).await;
    let outsider = server.enroll("outsider", Role::Physician).await;
    for (role, user) in [
        ("cardiology-on-call", "dr-a"),
        ("cardiology-backup", "dr-b"),
    ] {
        let (s, b) = admin.post("/v1/admin/roles", json!({"name": role})).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, b) = admin
            .post(
                &format!("/v1/admin/roles/{role}/assignments"),
                json!({"username": user}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, b) = call(
        &admin,
        Method::PUT,
        "/v1/admin/roles/cardiology-on-call/escalation",
        Some(json!({"ack_within_secs": 300, "renotify_every_secs": 60, "then": ["role:cardiology-backup"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = medic
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": XWING}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let conv = b["conversation_id"].as_str().unwrap().to_owned();
    let (s, b) = medic
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({
                "client_message_id": uuid::Uuid::new_v4(), "kind": "commit", "epoch": 0,
                "payload": b64(b"commit-adding-the-chain"),
                "add_users": [dr_a.user_id, dr_b.user_id],
                "welcome": {"payload": b64(b"welcome"), "devices": [dr_a.device_id, dr_b.device_id]},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for u in [&dr_a, &dr_b] {
        drain(u).await;
    }
    Setup {
        server,
        medic,
        dr_a,
        dr_b,
        outsider,
        conv,
    }
}

/// Send the STAT marker message to `role`.
async fn send_stat(s: &Setup, role: &str) -> (StatusCode, Value) {
    s.medic
        .post(
            &format!("/v1/conversations/{}/envelopes", s.conv),
            json!({
                "client_message_id": uuid::Uuid::new_v4(), "kind": "application", "epoch": 1,
                "payload": b64(SECRET),
                "to_role": {"role": role, "priority": "stat"},
            }),
        )
        .await
}

/// Sync and acknowledge everything; returns the alerts received, as JSON.
async fn drain(u: &TestUser) -> Vec<Value> {
    use base64::Engine;
    let (s, b) = u.get("/v1/sync").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut alerts = Vec::new();
    let mut inbox_seq = None;
    for item in b["inbox"].as_array().unwrap() {
        inbox_seq = item["inbox_seq"].as_u64();
        if item["kind"] == "alert" {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(item["payload"].as_str().unwrap())
                .unwrap();
            alerts.push(serde_json::from_slice::<Value>(&raw).unwrap());
        }
    }
    let cursors: Vec<Value> = b["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"conversation_id": e["conversation_id"], "seq": e["seq"]}))
        .collect();
    let (s, b) = u
        .post(
            "/v1/sync/ack",
            json!({"conversations": cursors, "inbox_seq": inbox_seq}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    alerts
}

fn kinds(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn tick(s: &Setup, d: Duration) {
    s.server.advance(d);
    s.server.services.run_escalations().await.unwrap();
}

async fn status(u: &TestUser, id: &str) -> Value {
    let (s, b) = u.get(&format!("/v1/messages/{id}/status")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

fn device_states(status: &Value, username: &str) -> Vec<String> {
    status["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["username"] == username)
        .unwrap_or_else(|| panic!("no device of {username}: {status}"))["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap().to_owned())
        .collect()
}

async fn audit(server: &TestServer) -> Vec<(String, Value)> {
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
async fn stat_escalates_renotifies_and_ends_in_no_response() {
    let s = setup().await;
    let (st, b) = send_stat(&s, "cardiology-on-call").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let id = b["message_id"].as_str().unwrap().to_owned();
    assert_eq!(b["to_role"]["nobody_on_call"], false);
    assert_eq!(b["to_role"]["tier"], 0);
    assert_eq!(b["to_role"]["notified"], json!([s.dr_a.user_id]));
    assert_eq!(b["to_role"]["awaiting_ack"], true);

    // The primary is notified; the backup (already an MLS member) is not, yet.
    let a = drain(&s.dr_a).await;
    assert_eq!(kinds(&a), ["notify"]);
    assert_eq!(a[0]["message_id"], id.as_str());
    assert_eq!(a[0]["role"], "cardiology-on-call");
    assert_eq!(a[0]["priority"], "stat");
    assert!(a[0]["deadline"].is_string());
    assert!(drain(&s.dr_b).await.is_empty());

    // Nothing happens before the re-notification interval.
    tick(&s, Duration::seconds(59)).await;
    assert!(drain(&s.dr_a).await.is_empty());
    // Re-notified every 60 s while the deadline has not passed.
    tick(&s, Duration::seconds(1)).await;
    assert_eq!(kinds(&drain(&s.dr_a).await), ["renotify"]);
    tick(&s, Duration::seconds(60)).await;
    assert_eq!(kinds(&drain(&s.dr_a).await), ["renotify"]);
    assert!(drain(&s.dr_b).await.is_empty());

    // The deadline (300 s) passes: the backup tier is notified, the sender told.
    tick(&s, Duration::seconds(180)).await;
    let b_alerts = drain(&s.dr_b).await;
    assert_eq!(kinds(&b_alerts), ["escalated"]);
    assert_eq!(b_alerts[0]["tier"], 1);
    assert_eq!(b_alerts[0]["tier_role"], "cardiology-backup");
    assert!(drain(&s.dr_a).await.is_empty());
    assert_eq!(kinds(&drain(&s.medic).await), ["escalated"]);

    // The backup is re-notified, then its deadline passes too: "no response" to the sender.
    tick(&s, Duration::seconds(60)).await;
    assert_eq!(kinds(&drain(&s.dr_b).await), ["renotify"]);
    tick(&s, Duration::seconds(240)).await;
    assert_eq!(kinds(&drain(&s.medic).await), ["no_response"]);
    assert!(drain(&s.dr_b).await.is_empty());
    // Nothing more is scheduled.
    tick(&s, Duration::seconds(600)).await;
    assert!(drain(&s.medic).await.is_empty());
    assert!(drain(&s.dr_b).await.is_empty());

    let st = status(&s.medic, &id).await;
    assert_eq!(st["escalation"]["outcome"], "no_response");
    assert_eq!(st["escalation"]["tier"], 1);
    assert_eq!(st["escalation"]["sender"], "medic");
    assert!(st["escalation"]["next_step_at"].is_null());
    assert_eq!(
        device_states(&st, "dr-a"),
        [
            "queued",
            "sent",
            "delivered",
            "sent",
            "sent",
            "escalated",
            "expired"
        ]
    );
    assert_eq!(
        device_states(&st, "dr-b"),
        ["queued", "delivered", "sent", "sent", "expired"]
    );
    for d in st["devices"].as_array().unwrap() {
        for c in d["states"].as_array().unwrap() {
            assert!(c["at"].is_string(), "{st}");
        }
    }

    let log = audit(&s.server).await;
    let actions: Vec<&str> = log
        .iter()
        .map(|(a, _)| a.as_str())
        .filter(|a| {
            (a.starts_with("escalation.") && *a != "escalation.set") || *a == "message.send_to_role"
        })
        .collect();
    assert_eq!(
        actions,
        [
            "message.send_to_role",
            "escalation.notify",
            "escalation.renotify",
            "escalation.renotify",
            "escalation.escalate",
            "escalation.renotify",
            "escalation.no_response",
        ]
    );
    let (_, sent) = log
        .iter()
        .find(|(a, _)| a == "message.send_to_role")
        .unwrap();
    assert_eq!(sent["role"], "cardiology-on-call");
    assert_eq!(sent["acting_username"], "medic");
    assert_eq!(sent["priority"], "stat");
    let text = String::from_utf8_lossy(SECRET).to_string();
    assert!(log.iter().all(|(_, d)| !d.to_string().contains(&text)));
    s.server.stop().await;
}

#[tokio::test]
async fn acknowledgement_stops_escalation_and_only_recipients_may_give_it() {
    let s = setup().await;
    let (st, b) = send_stat(&s, "cardiology-on-call").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let id = b["message_id"].as_str().unwrap().to_owned();
    drain(&s.dr_a).await;
    let path = format!("/v1/messages/{id}/ack");

    // The sender cannot acknowledge her own message; a non-member cannot either.
    let (st, b) = s.medic.post(&path, json!({"response": "accept"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["error"]["message"],
        format!("you sent message {id}: only a recipient can acknowledge it")
    );
    let (st, b) = s.outsider.post(&path, json!({"response": "accept"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only its recipients can acknowledge it")
    );
    let (st, _) = s.outsider.get(&format!("/v1/messages/{id}/status")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Unknown response kinds and message ids are refused.
    let (st, _) = s.dr_a.post(&path, json!({"response": "maybe"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .dr_a
        .post(
            &format!("/v1/messages/{}/ack", uuid::Uuid::new_v4()),
            json!({"response": "accept"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The primary accepts after 2 minutes (re-notified twice): the escalation stops.
    tick(&s, Duration::seconds(60)).await;
    tick(&s, Duration::seconds(60)).await;
    assert_eq!(kinds(&drain(&s.dr_a).await), ["renotify", "renotify"]);
    let (st, b) = s.dr_a.post(&path, json!({"response": "accept"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["escalation"]["outcome"], "acknowledged");
    assert_eq!(b["escalation"]["acknowledged_by"], "dr-a");
    assert_eq!(b["escalation"]["acknowledged_as"], "cardiology-on-call");
    assert_eq!(b["escalation"]["response"], "accept");
    let told = drain(&s.medic).await;
    assert_eq!(kinds(&told), ["acknowledged"]);
    assert_eq!(told[0]["by_user"], s.dr_a.user_id.as_str());
    assert_eq!(told[0]["response"], "accept");
    tick(&s, Duration::seconds(600)).await;
    assert!(drain(&s.dr_a).await.is_empty());
    assert!(drain(&s.dr_b).await.is_empty());
    assert!(drain(&s.medic).await.is_empty());
    // A second acknowledgement is refused, naming who answered.
    let (st, b) = s.dr_b.post(&path, json!({"response": "call_me"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(
        b["error"]["message"],
        format!("message {id} was already acknowledged by dr-a")
    );
    let st = status(&s.medic, &id).await;
    let a_states = device_states(&st, "dr-a");
    assert_eq!(a_states.last().unwrap(), "acknowledged");
    assert_eq!(st["escalation"]["next_step_at"], Value::Null);

    // A message not sent to a role has nothing to acknowledge.
    let (st, b) = s
        .medic
        .post(
            &format!("/v1/conversations/{}/envelopes", s.conv),
            json!({"client_message_id": uuid::Uuid::new_v4(), "kind": "application", "epoch": 1, "payload": b64(b"plain")}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let plain = b["message_id"].as_str().unwrap();
    let (st, b) = s
        .dr_a
        .post(
            &format!("/v1/messages/{plain}/ack"),
            json!({"response": "accept"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was not sent to a clinical role")
    );
    let log = audit(&s.server).await;
    let (_, ack) = log.iter().find(|(a, _)| a == "escalation.ack").unwrap();
    assert_eq!(ack["acting_username"], "dr-a");
    assert_eq!(ack["as_role"], "cardiology-on-call");
    assert_eq!(ack["response"], "accept");
    s.server.stop().await;
}

#[tokio::test]
async fn decline_moves_on_at_once_and_the_backup_answers() {
    let s = setup().await;
    let (_, b) = send_stat(&s, "cardiology-on-call").await;
    let id = b["message_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/messages/{id}/ack");
    let (st, b) = s.dr_a.post(&path, json!({"response": "decline"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["escalation"]["outcome"], "pending");
    assert_eq!(b["escalation"]["tier"], 1);
    // The backup is asked at once, not after the deadline.
    assert_eq!(kinds(&drain(&s.dr_b).await), ["escalated"]);
    assert_eq!(
        kinds(&drain(&s.medic).await),
        ["acknowledged", "escalated"],
        "the sender sees the decline, then the escalation"
    );
    let (st, b) = s.dr_a.post(&path, json!({"response": "decline"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let (st, b) = s.dr_b.post(&path, json!({"response": "call_me"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["escalation"]["outcome"], "acknowledged");
    assert_eq!(b["escalation"]["acknowledged_by"], "dr-b");
    assert_eq!(b["escalation"]["acknowledged_as"], "cardiology-backup");
    assert_eq!(b["escalation"]["response"], "call_me");
    let a_states = device_states(&b, "dr-a");
    assert!(a_states.contains(&"acknowledged".to_owned()), "{b}");
    assert_eq!(a_states.last().unwrap(), "escalated", "{b}");
    s.server.stop().await;
}

#[tokio::test]
async fn unknown_role_nobody_on_call_and_bad_input() {
    let s = setup().await;
    // An unknown role: a clear error, and nothing stored.
    let (st, b) = send_stat(&s, "neurology-on-call").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(
        b["error"]["message"],
        "clinical role neurology-on-call does not exist"
    );
    let (_, c) = s.medic.get(&format!("/v1/conversations/{}", s.conv)).await;
    assert_eq!(c["last_seq"], 1, "the refused message was not stored");
    // An invalid role name is a 400.
    let (st, _) = send_stat(&s, "Not A Role").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // to_role only on application messages.
    let (st, b) = s
        .medic
        .post(
            &format!("/v1/conversations/{}/envelopes", s.conv),
            json!({
                "client_message_id": uuid::Uuid::new_v4(), "kind": "commit", "epoch": 1,
                "payload": b64(b"c"), "to_role": {"role": "cardiology-on-call"},
            }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");

    // Nobody holds the role: the sender is told at once and the backup tier is asked.
    let (st, b) = call(
        &s.dr_a,
        Method::PUT,
        "/v1/roles/cardiology-on-call/on-call",
        Some(json!({"on_call": false})),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    let (st, b) = send_stat(&s, "cardiology-on-call").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["to_role"]["nobody_on_call"], true);
    assert_eq!(b["to_role"]["tier"], 1);
    assert_eq!(b["to_role"]["notified"], json!([s.dr_b.user_id]));
    assert_eq!(kinds(&drain(&s.medic).await), ["nobody_on_call"]);
    assert_eq!(kinds(&drain(&s.dr_b).await), ["notify"]);
    assert!(drain(&s.dr_a).await.is_empty());
    let log = audit(&s.server).await;
    assert!(
        log.iter()
            .any(|(a, d)| a == "escalation.tier_skipped" && d["reason"] == "nobody on call")
    );
    // Its deadline passes: no later tier, so "no response".
    tick(&s, Duration::seconds(300)).await;
    assert_eq!(kinds(&drain(&s.medic).await), ["no_response"]);

    // A retried send (same client_message_id) does not start a second escalation.
    let cmid = uuid::Uuid::new_v4();
    let body = json!({
        "client_message_id": cmid, "kind": "application", "epoch": 1,
        "payload": b64(SECRET), "to_role": {"role": "cardiology-backup", "priority": "urgent"},
    });
    let path = format!("/v1/conversations/{}/envelopes", s.conv);
    let (st, first) = s.medic.post(&path, body.clone()).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let (st, again) = s.medic.post(&path, body).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message_id"], first["message_id"]);
    assert_eq!(kinds(&drain(&s.dr_b).await), ["notify"]);

    // A recipient device revoked before it received the message: "failed".
    s.server
        .services
        .revoke_device(
            &ward_server::service::Actor::cli(),
            ward_server::service::DeviceScope::Any,
            s.dr_a.device_id.parse().unwrap(),
        )
        .await
        .unwrap();
    let st = status(&s.medic, first["message_id"].as_str().unwrap()).await;
    assert_eq!(device_states(&st, "dr-a"), ["queued", "failed"], "{st}");
    assert_eq!(
        device_states(&st, "dr-b"),
        ["queued", "sent", "delivered"],
        "{st}"
    );
    s.server.stop().await;
}
