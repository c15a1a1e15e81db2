//! Authentication over the real API: TOTP as second factor (single use), device credentials
//! signed by the organisation CA, logout, rate limiting, and TLS with the generated CA.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::StatusCode;
use serde_json::json;
use ward_proto::{DeviceCredential, Role, ServerInfo};
use ward_server::config::RawConfig;
use ward_testing::{PASSWORD, ServerOptions, TestServer, b64, send, totp_code};

async fn login(
    server: &TestServer,
    user: &str,
    totp: Option<String>,
    device_id: &str,
) -> (StatusCode, serde_json::Value) {
    send(
        &server.client(),
        reqwest::Method::POST,
        &format!("{}/v1/login", server.url),
        None,
        Some(json!({
            "username": user, "password": PASSWORD, "totp": totp, "device_id": device_id,
        })),
    )
    .await
}

#[tokio::test]
async fn totp_is_required_and_single_use() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let alice = server.enroll("alice", Role::Nurse).await;
    let (s, b) = login(&server, "alice", None, &alice.device_id).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "MFA required by default: {b}");
    assert_eq!(b["error"]["code"], "invalid_credentials");
    let code = alice.totp_at(server.now());
    let (s, b) = login(&server, "alice", Some(code.clone()), &alice.device_id).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["device"]["device_id"], alice.device_id.as_str());
    let (s, _) = login(&server, "alice", Some(code), &alice.device_id).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a used code is refused (RFC 6238 §5.2)"
    );
    server.advance(time::Duration::seconds(30));
    let (s, b) = login(
        &server,
        "alice",
        Some(alice.totp_at(server.now())),
        &alice.device_id,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the next step's code works: {b}");
    let wrong = if alice.totp_at(server.now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    server.advance(time::Duration::seconds(30));
    let (s, _) = login(&server, "alice", Some(wrong.into()), &alice.device_id).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let _ = totp_code; // the helper used by TestUser::totp_at
    server.stop().await;
}

#[tokio::test]
async fn device_credentials_verify_against_the_organisation_ca() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let (_, info) = send(
        &alice.http,
        reqwest::Method::GET,
        &format!("{}/v1/server", server.url),
        None,
        None,
    )
    .await;
    let info: ServerInfo = serde_json::from_value(info).unwrap();
    assert_eq!(info.ciphersuites[0], 0x004D, "X-Wing first");
    assert_eq!(info.external_sender_public_key.len(), 32);
    assert!(info.mfa_required);
    let ca =
        VerifyingKey::from_bytes(info.org_ca_public_key.as_slice().try_into().unwrap()).unwrap();
    let (s, entry) = alice.get("/v1/users/bob").await;
    assert_eq!(s, StatusCode::OK, "{entry}");
    let cred: DeviceCredential = serde_json::from_value(entry["devices"][0].clone()).unwrap();
    assert_eq!(cred.device_id.to_string(), bob.device_id);
    assert_eq!(
        cred.signature_key.as_slice(),
        bob.signing_key.verifying_key().as_bytes()
    );
    let sig = Signature::from_slice(cred.signature.as_slice()).unwrap();
    ca.verify(&cred.signed_bytes(), &sig).unwrap();
    let mut forged = cred.clone();
    forged.username = "alice".parse().unwrap();
    assert!(
        ca.verify(&forged.signed_bytes(), &sig).is_err(),
        "the signature binds the username"
    );
    server.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_and_second_devices_get_their_own() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let alice = server.enroll("alice", Role::Physician).await;
    let tablet = alice.login_new_device(server.now()).await;
    assert_ne!(tablet.device_id, alice.device_id);
    let (_, devices) = alice.get("/v1/devices").await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2);
    let (s, _) = alice.post("/v1/logout", json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = alice.get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, me) = tablet.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK, "the other device's session is untouched");
    assert_eq!(me["device_id"], tablet.device_id.as_str());
    // Revoking the tablet ends its session and it cannot log in again.
    let (s, _) = tablet
        .post(
            &format!("/v1/devices/{}/revoke", tablet.device_id),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = tablet.get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    server.advance(time::Duration::seconds(30)); // the last code was used by the tablet's login
    let (_, revoked) = send(&server.client(), reqwest::Method::POST, &format!("{}/v1/login", server.url), None, Some(json!({
        "username": "alice", "password": PASSWORD, "totp": tablet.totp_at(server.now()), "device_id": tablet.device_id,
    }))).await;
    assert_eq!(revoked["error"]["code"], "forbidden", "{revoked}");
    server.stop().await;
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_ip() {
    let mut raw = RawConfig::default();
    raw.limits.logins_per_minute = 3;
    let server = TestServer::start_with(ServerOptions {
        raw: Some(raw),
        ..Default::default()
    })
    .await;
    let http = server.client();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (s, _) = send(
            &http,
            reqwest::Method::POST,
            &format!("{}/v1/login", server.url),
            None,
            Some(json!({
                "username": "nobody", "password": "x", "device_id": uuid::Uuid::new_v4(),
            })),
        )
        .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(&statuses[..3], &[401, 401, 401]);
    assert_eq!(&statuses[3..], &[429, 429], "{statuses:?}");
    let (s, _) = send(
        &http,
        reqwest::Method::GET,
        &format!("{}/v1/health", server.url),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "other routes keep their own budget");
    let (_, metrics) = send(
        &http,
        reqwest::Method::GET,
        &format!("{}/metrics", server.url),
        None,
        None,
    )
    .await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("ward_rate_limited_total 2"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn tls_server_with_generated_ca_serves_the_api() {
    let server = TestServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(server.url.starts_with("https://"));
    let alice = server.enroll("alice", Role::Physician).await;
    let (s, _) = alice.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK);
    let (s, spec) = alice.get("/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1"
    );
    assert!(spec["paths"]["/v1/conversations/{conversation_id}/envelopes"]["post"].is_object());
    let _ = b64(b"");
    server.stop().await;
}

async fn put(
    u: &ward_testing::TestUser,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let url = format!("{}/v1/admin/policy", u.base);
    send(
        &u.http,
        reqwest::Method::PUT,
        &url,
        Some(&u.token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn policy_changes_are_validated_audited_and_take_effect() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let admin = server.enroll("root", Role::Admin).await;
    let officer = server.enroll("officer", Role::Compliance).await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    let (s, p) = officer.get("/v1/admin/policy").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["idle_timeout_secs"], 900);
    let (s, _) = put(&officer, json!({"idle_timeout_secs": 300})).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "compliance reads, does not change"
    );
    for (body, word) in [
        (json!({"idle_timeout_secs": 5}), "idle_timeout_secs"),
        (json!({"idle_timeout_secs": 999_999}), "idle_timeout_secs"),
        (json!({"ciphersuites": [3]}), "ciphersuites"),
        (json!({"ciphersuites": []}), "ciphersuites"),
        (json!({"max_failed_logins": 0}), "max_failed_logins"),
        (
            json!({"absolute_timeout_secs": 900, "idle_timeout_secs": 3600}),
            "absolute_timeout_secs",
        ),
        (json!({"idle": 5}), "unknown field"),
    ] {
        let (s, b) = put(&admin, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(word),
            "{body}: {b}"
        );
    }
    let (_, unchanged) = admin.get("/v1/admin/policy").await;
    assert_eq!(
        unchanged["idle_timeout_secs"], 900,
        "refused changes change nothing"
    );

    let (s, p) = put(
        &admin,
        json!({"idle_timeout_secs": 120, "ciphersuites": [1, 77]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["ciphersuites"], json!([1, 77]));
    // Automatic logoff now happens after 2 minutes of inactivity.
    server.advance(time::Duration::seconds(121));
    let (s, b) = nurse.get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("idle"),
        "{b}"
    );
    // The change is in the audit log (read from the store: every session idled out too).
    let log = server.services.store.audit_records(0, 1000).await.unwrap();
    let change = log
        .iter()
        .find(|r| r.action == "policy.change")
        .expect("policy change audited");
    assert_eq!(change.details["idle_timeout_secs"], 120);
    let _ = totp_code;
    server.stop().await;
}

async fn change_password(
    user: &ward_testing::TestUser,
    current: &str,
    new: &str,
) -> (StatusCode, serde_json::Value) {
    user.post(
        "/v1/me/password",
        json!({"current_password": current, "new_password": new}),
    )
    .await
}

#[tokio::test]
async fn password_change_reauthenticates_applies_rules_and_ends_other_sessions() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let admin = server.enroll("root", Role::Admin).await;
    let alice = server.enroll("alice", Role::Nurse).await;
    server.advance(time::Duration::seconds(30));
    let tablet = alice.login_new_device(server.now()).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let new_pw = "plum kettle on the night shift";

    // Wrong current password: refused, counted toward the lockout, audited.
    let (s, b) = change_password(&alice, "not my password at all", new_pw).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("current_password"),
        "{b}"
    );
    // The rules of enrollment apply, with the rule named.
    let (s, b) = change_password(&alice, PASSWORD, "short").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("characters"),
        "{b}"
    );
    let (s, b) = change_password(&alice, PASSWORD, "alice-wants-a-new-password").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "username inside: {b}");
    let (s, b) = change_password(&alice, PASSWORD, PASSWORD).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("differ"),
        "{b}"
    );
    let (s, b) = alice
        .post("/v1/me/password", json!({"current_password": PASSWORD}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "missing field: {b}");
    // Nothing above changed anything: the tablet's session is alive.
    assert_eq!(tablet.get("/v1/me").await.0, StatusCode::OK);

    let (s, b) = change_password(&alice, PASSWORD, new_pw).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["sessions_ended"], 1, "{b}");
    assert_eq!(
        alice.get("/v1/me").await.0,
        StatusCode::OK,
        "the caller stays logged in"
    );
    assert_eq!(
        tablet.get("/v1/me").await.0,
        StatusCode::UNAUTHORIZED,
        "other sessions end"
    );
    assert_eq!(
        bob.get("/v1/me").await.0,
        StatusCode::OK,
        "other accounts untouched"
    );

    // The old password no longer logs in; the new one does.
    server.advance(time::Duration::seconds(30));
    let login_with = |pw: &'static str, code: String| {
        let http = server.client();
        let url = format!("{}/v1/login", server.url);
        let device = alice.device_id.clone();
        async move {
            send(
                &http,
                reqwest::Method::POST,
                &url,
                None,
                Some(
                    json!({"username": "alice", "password": pw, "totp": code, "device_id": device}),
                ),
            )
            .await
        }
    };
    let (s, _) = login_with(PASSWORD, alice.totp_at(server.now())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = login_with(new_pw, alice.totp_at(server.now())).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Guessing the current password through a session locks the account like failed logins.
    for _ in 0..5 {
        let (s, _) = change_password(&bob, "a wrong guess of bobs", new_pw).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, b) = change_password(&bob, PASSWORD, new_pw).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "locked even with the right password: {b}"
    );
    assert_eq!(b["error"]["code"], "account_locked", "{b}");

    let (_, page) = admin.get("/v1/admin/audit?limit=1000").await;
    let records = page["records"].as_array().unwrap();
    let of = |action: &str| {
        records
            .iter()
            .filter(|r| r["action"] == action)
            .cloned()
            .collect::<Vec<_>>()
    };
    let changed = of("password.change");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["target"], alice.user_id.as_str());
    assert_eq!(changed[0]["details"]["sessions_ended"], 1);
    let failures = of("password.change.failure");
    assert_eq!(
        failures.len(),
        7,
        "1 for alice, 5 guesses and 1 locked for bob"
    );
    assert!(
        !page.to_string().contains(new_pw) && !page.to_string().contains(PASSWORD),
        "no password in the audit log"
    );
}
