//! Every endpoint validates its input and answers the API's error shape with the right status
//! and code: malformed and garbled bodies, wrong content types, oversized bodies, bad path and
//! query parameters, stale sessions, protocol violations of the delivery service, enrollment
//! and login abuse. Ends with a property test that throws random bodies at every POST route.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: failures should panic loudly"
)]

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;
use ward_proto::Role;
use ward_server::config::{Limits, RawConfig};
use ward_server::service::Actor;
use ward_testing::{PASSWORD, ServerOptions, TestServer, TestUser, b64, send};

/// MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519, allowed by the default policy.
const XWING: u16 = 0x004D;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The error code of an error body, asserting the `{"error": {"code", "message"}}` shape.
#[track_caller]
fn code(body: &Value) -> &str {
    assert!(
        body["error"]["message"].is_string(),
        "no error.message in {body}"
    );
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.code in {body}"))
}

/// Assert status and error code.
#[track_caller]
fn expect_error(
    got: (StatusCode, Value),
    status: StatusCode,
    error_code: &str,
    what: &str,
) -> Value {
    let (s, b) = got;
    assert_eq!(s, status, "{what}: {b}");
    assert_eq!(code(&b), error_code, "{what}: {b}");
    b
}

/// A POST with a raw body and optional content type; the answer parsed as JSON when it is.
async fn post_raw(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = http.post(url).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn create_group(u: &TestUser) -> String {
    let (s, b) = u
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": XWING}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["conversation_id"].as_str().unwrap().to_owned()
}

async fn envelope(u: &TestUser, conv: &str, body: Value) -> (StatusCode, Value) {
    u.post(&format!("/v1/conversations/{conv}/envelopes"), body)
        .await
}

fn app_message(epoch: u64, payload: &[u8]) -> Value {
    json!({"client_message_id": new_id(), "kind": "application", "epoch": epoch, "payload": b64(payload)})
}

/// A commit at `epoch` adding `user` with a Welcome for `devices`.
fn add_commit(epoch: u64, user: &TestUser, devices: &[&str]) -> Value {
    json!({
        "client_message_id": new_id(), "kind": "commit", "epoch": epoch,
        "payload": b64(format!("commit-{epoch}-add-{}", user.username).as_bytes()),
        "add_users": [user.user_id],
        "welcome": {"payload": b64(b"welcome"), "devices": devices},
    })
}

fn new_device_json(seed: u8) -> Value {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    json!({"name": "device", "signature_key": b64(key.verifying_key().as_bytes())})
}

/// A server with a small body limit (the smallest the configuration accepts) and the rate
/// limits out of the way, as `TestServer::start` does for its default configuration.
async fn small_limit_server() -> TestServer {
    let raw = RawConfig {
        limits: Limits {
            max_body_bytes: 64 * 1024,
            requests_per_second: 100_000,
            request_burst: 100_000,
            logins_per_minute: 100_000,
            ..Limits::default()
        },
        ..RawConfig::default()
    };
    TestServer::start_with(ServerOptions {
        raw: Some(raw),
        ..ServerOptions::default()
    })
    .await
}

/// The JSON-bodied POST routes, with a token to call them with and a valid body.
struct JsonRoute {
    path: String,
    token: Option<String>,
    valid: Value,
}

async fn json_routes(
    server: &TestServer,
    admin: &TestUser,
    physician: &TestUser,
) -> Vec<JsonRoute> {
    let conv = create_group(physician).await;
    let code = server.create_user("enrollee", Role::Nurse).await;
    let at = |path: &str, u: &TestUser, valid: Value| JsonRoute {
        path: path.to_owned(),
        token: Some(u.token.clone()),
        valid,
    };
    vec![
        JsonRoute {
            path: "/v1/enroll".into(),
            token: None,
            valid: json!({"username": "enrollee", "enrollment_code": code, "password": PASSWORD, "device": new_device_json(9)}),
        },
        JsonRoute {
            path: "/v1/login".into(),
            token: None,
            valid: json!({"username": "nobody", "password": PASSWORD, "totp": "000000", "new_device": new_device_json(8)}),
        },
        at(
            "/v1/devices/me/key-packages",
            physician,
            json!({"key_packages": [b64(b"kp")], "last_resort": b64(b"lr")}),
        ),
        at(
            "/v1/conversations",
            physician,
            json!({"kind": "group", "ciphersuite": XWING}),
        ),
        at(
            &format!("/v1/conversations/{conv}/envelopes"),
            physician,
            app_message(0, b"hello"),
        ),
        at(
            "/v1/sync/ack",
            physician,
            json!({"conversations": [{"conversation_id": conv, "seq": 0}], "inbox_seq": 0}),
        ),
        at(
            "/v1/receipts/read",
            physician,
            json!({"conversations": [{"conversation_id": conv, "seq": 0}]}),
        ),
        // A claim for a user who does not exist: nothing is consumed.
        at(
            "/v1/users/nobody/key-packages/claim",
            physician,
            json!({"devices": []}),
        ),
        at(
            "/v1/admin/users",
            admin,
            json!({"username": "created-by-test", "role": "nurse", "display_name": "C"}),
        ),
    ]
}

#[tokio::test]
async fn malformed_json_is_400_invalid_request() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    let physician = server.enroll("physician", Role::Physician).await;
    let http = server.client();
    for r in json_routes(&server, &admin, &physician).await {
        let url = format!("{}{}", server.url, r.path);
        let valid = r.valid.to_string();
        for body in [
            "".to_owned(),
            "{".to_owned(),
            "not json".to_owned(),
            valid[..valid.len() - 1].to_owned(),
            format!("{valid}{valid}"),
            "[1, 2".to_owned(),
            "\u{0}".to_owned(),
        ] {
            let got = post_raw(
                &http,
                &url,
                r.token.as_deref(),
                Some("application/json"),
                body.clone().into_bytes(),
            )
            .await;
            let b = expect_error(
                got,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("{} {body:?}", r.path),
            );
            assert!(!b["error"]["message"].as_str().unwrap().is_empty());
        }
        // Well-formed JSON of the wrong shape is refused the same way. (An empty array is
        // left out: serde reads structs from sequences too, so `[]` is an empty ack.)
        for body in [
            json!([1, 2, 3]),
            json!("text"),
            json!(42),
            json!(null),
            json!(true),
        ] {
            let got = post_raw(
                &http,
                &url,
                r.token.as_deref(),
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await;
            expect_error(
                got,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("{} {body}", r.path),
            );
        }
        // Invalid UTF-8 in a key. (In the value of a field a route ignores, serde_json skips
        // it without decoding, so only keys are sure to be checked on every route.)
        let mut bytes = b"{\"".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b"\": 1}");
        let got = post_raw(
            &http,
            &url,
            r.token.as_deref(),
            Some("application/json"),
            bytes,
        )
        .await;
        expect_error(
            got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{} invalid utf-8", r.path),
        );
    }
    // Nesting beyond the parser's recursion limit is an ordinary 400, not a crash.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let got = post_raw(
        &http,
        &format!("{}/v1/login", server.url),
        None,
        Some("application/json"),
        deep.into_bytes(),
    )
    .await;
    expect_error(
        got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "deeply nested JSON",
    );
    let (s, _) = http
        .get(format!("{}/v1/health", server.url))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s, StatusCode::OK, "the server survives");
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    let physician = server.enroll("physician", Role::Physician).await;
    let http = server.client();
    for r in json_routes(&server, &admin, &physician).await {
        let url = format!("{}{}", server.url, r.path);
        let body = r.valid.to_string().into_bytes();
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
        ] {
            let got = post_raw(&http, &url, r.token.as_deref(), ct, body.clone()).await;
            expect_error(
                got,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                &format!("{} with {ct:?}", r.path),
            );
        }
    }
    // JSON with a charset parameter is still JSON.
    let (s, b) = post_raw(
        &http,
        &format!("{}/v1/sync/ack", server.url),
        Some(&physician.token),
        Some("application/json; charset=utf-8"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    // The default limit: 8 MiB.
    let server = TestServer::start().await;
    let physician = server.enroll("physician", Role::Physician).await;
    let conv = create_group(&physician).await;
    let http = server.client();
    let limit = Limits::default().max_body_bytes;
    let big = |n: usize| {
        let mut b = br#"{"payload":""#.to_vec();
        b.resize(n - 2, b'A');
        b.extend_from_slice(br#""}"#);
        b
    };
    let got = post_raw(
        &http,
        &format!("{}/v1/enroll", server.url),
        None,
        Some("application/json"),
        big(limit + 1),
    )
    .await;
    expect_error(
        got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "enroll above 8 MiB",
    );
    let url = format!("{}/v1/conversations/{conv}/envelopes", server.url);
    let got = post_raw(
        &http,
        &url,
        Some(&physician.token),
        Some("application/json"),
        big(limit + 1),
    )
    .await;
    expect_error(
        got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "envelope above 8 MiB",
    );

    // A configured smaller limit, at the boundary.
    let server = small_limit_server().await;
    let physician = server.enroll("physician", Role::Physician).await;
    let conv = create_group(&physician).await;
    let http = server.client();
    let url = format!("{}/v1/conversations/{conv}/envelopes", server.url);
    let got = post_raw(
        &http,
        &url,
        Some(&physician.token),
        Some("application/json"),
        big(64 * 1024 + 1),
    )
    .await;
    expect_error(
        got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "envelope above 64 KiB",
    );
    let got = post_raw(
        &http,
        &format!("{}/v1/devices/me/key-packages", server.url),
        Some(&physician.token),
        Some("application/json"),
        big(200_000),
    )
    .await;
    expect_error(
        got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "key packages above 64 KiB",
    );
    // Just under the limit is parsed normally.
    let body = app_message(0, &[7u8; 40 * 1024]).to_string().into_bytes();
    assert!(body.len() < 64 * 1024);
    let (s, b) = post_raw(
        &http,
        &url,
        Some(&physician.token),
        Some("application/json"),
        body,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn invalid_base64_is_400() {
    let server = TestServer::start().await;
    let physician = server.enroll("physician", Role::Physician).await;
    let conv = create_group(&physician).await;
    for (i, bad) in ["not base64!", "QUJD=", "====", "QUJDRA", "QU JD"]
        .into_iter()
        .enumerate()
    {
        let mut body = app_message(0, b"x");
        body["payload"] = json!(bad);
        let b = expect_error(
            envelope(&physician, &conv, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            bad,
        );
        assert!(
            b["error"]["message"].as_str().unwrap().contains("base64"),
            "{b}"
        );

        let mut body = add_commit(0, &physician, &[&physician.device_id]);
        body["welcome"]["payload"] = json!(bad);
        expect_error(
            envelope(&physician, &conv, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            bad,
        );

        let got = physician
            .post(
                "/v1/devices/me/key-packages",
                json!({"key_packages": [bad]}),
            )
            .await;
        expect_error(got, StatusCode::BAD_REQUEST, "invalid_request", bad);
        let got = physician
            .post("/v1/devices/me/key-packages", json!({"last_resort": bad}))
            .await;
        expect_error(got, StatusCode::BAD_REQUEST, "invalid_request", bad);

        let code = server
            .create_user(&format!("enrollee-{i}"), Role::Nurse)
            .await;
        let got = send(
            &server.client(),
            Method::POST,
            &format!("{}/v1/enroll", server.url),
            None,
            Some(json!({"username": format!("enrollee-{i}"), "enrollment_code": code, "password": PASSWORD,
                "device": {"name": "d", "signature_key": bad}})),
        )
        .await;
        expect_error(got, StatusCode::BAD_REQUEST, "invalid_request", bad);
    }
    // Valid base64 of the wrong length for a key, and a non-point key, are refused too.
    let code = server.create_user("keyless", Role::Nurse).await;
    let not_a_point = (0..=255u8)
        .map(|i| [i; 32])
        .find(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_err())
        .expect("some 32-byte string is not an Ed25519 point");
    for key in [
        b64(&[1u8; 31]),
        b64(&[1u8; 33]),
        b64(&[]),
        b64(&not_a_point),
    ] {
        let got = send(
            &server.client(),
            Method::POST,
            &format!("{}/v1/enroll", server.url),
            None,
            Some(
                json!({"username": "keyless", "enrollment_code": code, "password": PASSWORD,
                "device": {"name": "d", "signature_key": key}}),
            ),
        )
        .await;
        expect_error(got, StatusCode::BAD_REQUEST, "invalid_request", &key);
    }
    // Empty key packages are refused.
    let got = physician
        .post("/v1/devices/me/key-packages", json!({"key_packages": [""]}))
        .await;
    expect_error(
        got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "empty key package",
    );
    let got = physician
        .post("/v1/devices/me/key-packages", json!({}))
        .await;
    expect_error(
        got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "nothing to upload",
    );
}

#[tokio::test]
async fn unknown_and_malformed_query_params_are_400() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    for path in [
        "/v1/sync?bogus=1",
        "/v1/sync?limit=1&limit2=3",
        "/v1/sync?limit=abc",
        "/v1/sync?limit=-1",
        "/v1/sync?limit=1.5",
        "/v1/admin/devices?bogus=1",
        "/v1/admin/devices?user=Not%20A%20Name",
        "/v1/admin/devices?user=-x",
        "/v1/admin/audit?bogus=1",
        "/v1/admin/audit?after=x",
        "/v1/admin/audit?limit=-5",
        "/v1/admin/audit?after=99999999999999999999999",
    ] {
        let b = expect_error(
            admin.get(path).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            path,
        );
        assert!(!b["error"]["message"].as_str().unwrap().is_empty());
    }
    for path in [
        "/v1/sync?limit=1",
        "/v1/admin/devices?user=admin",
        "/v1/admin/audit?after=0&limit=1",
    ] {
        let (s, b) = admin.get(path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
    let (s, b) = admin.get("/v1/admin/devices?user=nobody").await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
}

#[tokio::test]
async fn invalid_usernames_in_paths_are_400() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    let long = "a".repeat(65);
    for name in [
        "Alice",
        "-alice",
        ".alice",
        "a%20b",
        "%C3%A4",
        "a%2Fb",
        long.as_str(),
    ] {
        let got = admin.get(&format!("/v1/users/{name}")).await;
        expect_error(got, StatusCode::BAD_REQUEST, "invalid_request", name);
        for action in ["suspend", "reactivate", "enrollment-code"] {
            let got = admin
                .post(&format!("/v1/admin/users/{name}/{action}"), json!({}))
                .await;
            expect_error(
                got,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("{action} {name}"),
            );
        }
        let got = admin
            .post(&format!("/v1/users/{name}/key-packages/claim"), json!({}))
            .await;
        expect_error(
            got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("claim {name}"),
        );
    }
    // Valid but unknown usernames are 404.
    let got = admin.get("/v1/users/nobody").await;
    expect_error(got, StatusCode::NOT_FOUND, "not_found", "unknown user");
    for action in ["suspend", "reactivate", "enrollment-code"] {
        let got = admin
            .post(&format!("/v1/admin/users/nobody/{action}"), json!({}))
            .await;
        expect_error(got, StatusCode::NOT_FOUND, "not_found", action);
    }
    let got = admin
        .post("/v1/users/nobody/key-packages/claim", json!({}))
        .await;
    expect_error(
        got,
        StatusCode::NOT_FOUND,
        "not_found",
        "claim for unknown user",
    );
}

#[tokio::test]
async fn invalid_ids_in_paths_are_400_and_unknown_ones_404() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    let physician = server.enroll("physician", Role::Physician).await;
    let conv = create_group(&physician).await;
    for bad in [
        "not-a-uuid",
        "1234",
        "00000000-0000-0000-0000-00000000000g",
        "%20",
    ] {
        for path in [
            format!("/v1/conversations/{bad}"),
            format!("/v1/conversations/{bad}/commits"),
            format!("/v1/conversations/{bad}/messages/1/status"),
        ] {
            expect_error(
                physician.get(&path).await,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &path,
            );
        }
        let got = envelope(&physician, bad, app_message(0, b"x")).await;
        expect_error(
            got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "envelope to bad id",
        );
        let got = physician
            .post(&format!("/v1/devices/{bad}/revoke"), json!({}))
            .await;
        expect_error(
            got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "own revoke bad id",
        );
        let got = admin
            .post(&format!("/v1/admin/devices/{bad}/revoke"), json!({}))
            .await;
        expect_error(
            got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "admin revoke bad id",
        );
    }
    for seq in ["abc", "-1", "1.0", "18446744073709551616"] {
        let path = format!("/v1/conversations/{conv}/messages/{seq}/status");
        expect_error(
            physician.get(&path).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &path,
        );
    }

    // Unknown (well-formed) ids: 404 not_found everywhere.
    let unknown = new_id();
    for path in [
        format!("/v1/conversations/{unknown}"),
        format!("/v1/conversations/{unknown}/commits"),
        format!("/v1/conversations/{unknown}/messages/1/status"),
        format!("/v1/conversations/{conv}/messages/999/status"),
    ] {
        expect_error(
            physician.get(&path).await,
            StatusCode::NOT_FOUND,
            "not_found",
            &path,
        );
    }
    let got = envelope(&physician, &unknown, app_message(0, b"x")).await;
    expect_error(
        got,
        StatusCode::NOT_FOUND,
        "not_found",
        "envelope to unknown conversation",
    );
    let got = physician
        .post(&format!("/v1/devices/{unknown}/revoke"), json!({}))
        .await;
    expect_error(
        got,
        StatusCode::NOT_FOUND,
        "not_found",
        "own revoke unknown",
    );
    let got = admin
        .post(&format!("/v1/admin/devices/{unknown}/revoke"), json!({}))
        .await;
    expect_error(
        got,
        StatusCode::NOT_FOUND,
        "not_found",
        "admin revoke unknown",
    );
}

#[tokio::test]
async fn only_welcomed_devices_of_members_may_send() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let carol = server.enroll("carol", Role::Nurse).await;
    let conv = create_group(&alice).await;
    let (s, b) = envelope(&alice, &conv, add_commit(0, &bob, &[&bob.device_id])).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // A user who is not a member: the conversation is not confirmed to exist.
    expect_error(
        envelope(&carol, &conv, app_message(1, b"x")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "non-member",
    );
    // A member's device that was never welcomed into the MLS group.
    let bob_phone = bob.login_new_device(server.now()).await;
    let b = expect_error(
        envelope(&bob_phone, &conv, app_message(1, b"x")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "unwelcomed device",
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a member"),
        "{b}"
    );
    // The welcomed device may.
    let (s, b) = envelope(&bob, &conv, app_message(1, b"x")).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // A user added by a commit without a Welcome is a member whose device is not in the group.
    let (s, b) = envelope(&alice, &conv, json!({
        "client_message_id": new_id(), "kind": "commit", "epoch": 1, "payload": b64(b"add carol"),
        "add_users": [carol.user_id],
    }))
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = carol.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(s, StatusCode::OK, "carol is a member now: {b}");
    expect_error(
        envelope(&carol, &conv, app_message(2, b"x")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "member, no welcome",
    );
}

#[tokio::test]
async fn tokens_end_with_logout_and_suspension() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..ServerOptions::default()
    })
    .await;
    let admin = server.enroll("admin", Role::Admin).await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    let phone = nurse.login_new_device(server.now()).await;

    let (s, b) = phone.post("/v1/logout", json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    for _ in 0..2 {
        expect_error(
            phone.get("/v1/me").await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "replayed token",
        );
        expect_error(
            phone.post("/v1/logout", json!({})).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "second logout",
        );
    }
    let (s, _) = nurse.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK, "logout ends only that session");

    let (s, b) = admin.post("/v1/admin/users/nurse/suspend", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    expect_error(
        nurse.get("/v1/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "suspended user",
    );
    let got = nurse.post("/v1/sync/ack", json!({})).await;
    expect_error(
        got,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "suspended user posting",
    );
    // Logging in again (with a fresh TOTP code) is refused while suspended.
    server.advance(Duration::seconds(30));
    let got = send(
        &server.client(),
        Method::POST,
        &format!("{}/v1/login", server.url),
        None,
        Some(json!({"username": "nurse", "password": PASSWORD, "totp": nurse.totp_at(server.now()), "device_id": nurse.device_id})),
    )
    .await;
    expect_error(
        got,
        StatusCode::FORBIDDEN,
        "account_suspended",
        "login while suspended",
    );
}

#[tokio::test]
async fn malformed_authorization_headers_are_401() {
    let server = TestServer::start().await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    let http = server.client();
    let long = format!("Bearer {}", "a".repeat(200));
    let basic = format!("Basic {}", b64(b"nurse:pw"));
    let bare = nurse.token.clone();
    for header in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        basic.as_str(),
        "Token abc",
        long.as_str(),
        bare.as_str(),
        "Bearer wt_x",
    ] {
        let resp = http
            .get(format!("{}/v1/me", server.url))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        let s = resp.status();
        let b: Value = resp.json().await.unwrap();
        assert_eq!(
            (s, code(&b)),
            (StatusCode::UNAUTHORIZED, "unauthenticated"),
            "{header:?}: {b}"
        );
    }
}

#[tokio::test]
async fn sessions_expire_idle_and_absolute() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..ServerOptions::default()
    })
    .await;
    let idle_user = server.enroll("idle", Role::Nurse).await;
    let busy_user = server.enroll("busy", Role::Nurse).await;

    // Idle: 14:59 of silence is fine, then a request resets the timer.
    server.advance(Duration::minutes(14) + Duration::seconds(59));
    let (s, _) = idle_user.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = busy_user.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK);
    server.advance(Duration::minutes(15) + Duration::seconds(1));
    let b = expect_error(
        idle_user.get("/v1/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "idle",
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("idle"),
        "{b}"
    );
    // And it stays dead.
    server.advance(Duration::seconds(1));
    expect_error(
        idle_user.get("/v1/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "idle, again",
    );

    // Absolute: a session kept busy still ends 12 h after login.
    let busy = busy_user.login_new_device(server.now()).await;
    let mut elapsed = Duration::ZERO;
    while elapsed + Duration::minutes(14) < Duration::hours(12) {
        server.advance(Duration::minutes(14));
        elapsed += Duration::minutes(14);
        let (s, b) = busy.get("/v1/me").await;
        assert_eq!(s, StatusCode::OK, "after {elapsed}: {b}");
    }
    server.advance(Duration::hours(12) - elapsed + Duration::seconds(1));
    let b = expect_error(
        busy.get("/v1/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "absolute",
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("absolute"),
        "{b}"
    );
}

#[tokio::test]
async fn key_packages_are_one_time_then_last_resort_then_409() {
    let server = TestServer::start().await;
    let physician = server.enroll("physician", Role::Physician).await;
    let with_lr = server.enroll("with-lr", Role::Nurse).await;
    let without_lr = server.enroll("without-lr", Role::Nurse).await;
    let (s, b) = with_lr
        .post(
            "/v1/devices/me/key-packages",
            json!({"key_packages": [b64(b"one-time")], "last_resort": b64(b"last-resort")}),
        )
        .await;
    assert_eq!(
        (s, b["remaining"].as_u64(), b["has_last_resort"].as_bool()),
        (StatusCode::OK, Some(1), Some(true)),
        "{b}"
    );
    let (s, b) = without_lr
        .post(
            "/v1/devices/me/key-packages",
            json!({"key_packages": [b64(b"only-one")]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let claim = |u: &'static str| {
        let path = format!("/v1/users/{u}/key-packages/claim");
        let physician = &physician;
        async move { physician.post(&path, json!({})).await }
    };
    let (s, b) = claim("with-lr").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["key_packages"][0]["key_package"], b64(b"one-time"));
    assert_eq!(b["key_packages"][0]["last_resort"], false);
    for _ in 0..2 {
        let (s, b) = claim("with-lr").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            b["key_packages"][0]["key_package"],
            b64(b"last-resort"),
            "the one-time package is never handed out twice"
        );
        assert_eq!(b["key_packages"][0]["last_resort"], true);
    }
    let (_, stock) = with_lr.get("/v1/devices/me/key-packages").await;
    assert_eq!(
        (stock["remaining"].as_u64(), stock["low"].as_bool()),
        (Some(0), Some(true)),
        "{stock}"
    );

    let (s, b) = claim("without-lr").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["key_packages"][0]["last_resort"], false);
    expect_error(
        claim("without-lr").await,
        StatusCode::CONFLICT,
        "no_key_package",
        "exhausted",
    );
    // A user who never uploaded any.
    expect_error(
        claim("physician").await,
        StatusCode::CONFLICT,
        "no_key_package",
        "none uploaded",
    );
    // A pending (not enrolled) user.
    server.create_user("pending", Role::Nurse).await;
    expect_error(
        claim("pending").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "pending user",
    );

    // The optional device filter: only valid ids, at most 64, and only the user's devices.
    let multi = server.enroll("multi", Role::Nurse).await;
    multi.upload_key_packages(3).await;
    let path = "/v1/users/multi/key-packages/claim";
    for (body, what) in [
        (json!({"devices": ["not-a-uuid"]}), "bad id"),
        (json!({"devices": "all"}), "not a list"),
        (
            json!({"devices": (0..65).map(|_| new_id()).collect::<Vec<_>>()}),
            "65 devices",
        ),
    ] {
        expect_error(
            physician.post(path, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            what,
        );
    }
    let got = physician
        .post(path, json!({"devices": [with_lr.device_id]}))
        .await;
    expect_error(
        got,
        StatusCode::CONFLICT,
        "no_key_package",
        "another user's device",
    );
    let (s, b) = physician
        .post(path, json!({"devices": [multi.device_id]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["key_packages"][0]["device_id"], multi.device_id.as_str());
}

#[tokio::test]
async fn epochs_are_enforced() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let carol = server.enroll("carol", Role::Nurse).await;
    let conv = create_group(&alice).await;
    let (s, b) = envelope(&alice, &conv, add_commit(0, &bob, &[&bob.device_id])).await;
    assert_eq!((s, b["epoch"].as_u64()), (StatusCode::OK, Some(1)), "{b}");

    // A second commit for epoch 0 lost the race.
    let b = expect_error(
        envelope(&bob, &conv, json!({"client_message_id": new_id(), "kind": "commit", "epoch": 0, "payload": b64(b"late")})).await,
        StatusCode::CONFLICT,
        "epoch_conflict",
        "stale commit",
    );
    assert_eq!(b["error"]["current_epoch"], 1, "{b}");
    // Application messages and proposals at a past or a future epoch.
    for epoch in [0u64, 2, 1000, u64::MAX] {
        let b = expect_error(
            envelope(&bob, &conv, app_message(epoch, b"x")).await,
            StatusCode::CONFLICT,
            "epoch_conflict",
            "app epoch",
        );
        assert_eq!(b["error"]["current_epoch"], 1, "{b}");
        let mut p = app_message(epoch, b"p");
        p["kind"] = json!("proposal");
        expect_error(
            envelope(&bob, &conv, p).await,
            StatusCode::CONFLICT,
            "epoch_conflict",
            "proposal epoch",
        );
    }
    // A retry of an accepted commit is answered as a duplicate, not as a conflict.
    let commit = add_commit(1, &carol, &[&carol.device_id]);
    let (s, first) = envelope(&alice, &conv, commit.clone()).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (s, again) = envelope(&alice, &conv, commit).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(
        (again["duplicate"].as_bool(), &again["seq"]),
        (Some(true), &first["seq"])
    );
    // Only one commit per epoch in the log.
    let (_, log) = alice
        .get(&format!("/v1/conversations/{conv}/commits"))
        .await;
    let epochs: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [0, 1]);
    let (s, b) = envelope(&carol, &conv, app_message(2, b"hi")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn commit_contents_are_validated() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let mallory = server.enroll("mallory", Role::Nurse).await;
    let conv = create_group(&alice).await;
    let bad = |body: Value, what: &'static str| {
        let alice = &alice;
        let conv = conv.clone();
        async move {
            expect_error(
                envelope(alice, &conv, body).await,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                what,
            )
        }
    };

    // Welcome (or membership changes) on something that is not a commit.
    for kind in ["application", "proposal"] {
        let mut body = add_commit(0, &bob, &[&bob.device_id]);
        body["kind"] = json!(kind);
        bad(body, "welcome on a non-commit").await;
        bad(
            json!({"client_message_id": new_id(), "kind": kind, "epoch": 0, "payload": b64(b"x"),
            "remove_users": [bob.user_id]}),
            "remove_users on a non-commit",
        )
        .await;
    }
    // A Welcome for a device of someone who is not a member after the commit.
    let b = bad(
        add_commit(0, &bob, &[&bob.device_id, &mallory.device_id]),
        "welcome to a non-member",
    )
    .await;
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&mallory.device_id),
        "{b}"
    );
    // A Welcome for an unknown device.
    let unknown = new_id();
    bad(
        add_commit(0, &bob, &[&unknown]),
        "welcome to an unknown device",
    )
    .await;
    // A Welcome without devices or payload.
    bad(add_commit(0, &bob, &[]), "welcome without devices").await;
    let mut body = add_commit(0, &bob, &[&bob.device_id]);
    body["welcome"]["payload"] = json!("");
    bad(body, "empty welcome").await;
    // Adding or removing unknown users.
    bad(json!({"client_message_id": new_id(), "kind": "commit", "epoch": 0, "payload": b64(b"x"), "add_users": [unknown]}), "add unknown").await;
    bad(json!({"client_message_id": new_id(), "kind": "commit", "epoch": 0, "payload": b64(b"x"), "remove_users": [unknown]}), "remove unknown").await;
    // A pending user cannot be added.
    server.create_user("pending", Role::Nurse).await;
    let pending = server
        .services
        .store
        .user_by_name(&"pending".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    bad(json!({"client_message_id": new_id(), "kind": "commit", "epoch": 0, "payload": b64(b"x"), "add_users": [pending.id]}), "add pending").await;
    // Empty payloads, in every kind.
    for kind in ["application", "proposal", "commit"] {
        let b = bad(
            json!({"client_message_id": new_id(), "kind": kind, "epoch": 0, "payload": ""}),
            "empty payload",
        )
        .await;
        assert!(
            b["error"]["message"].as_str().unwrap().contains("payload"),
            "{b}"
        );
    }
    // Unknown kinds and missing fields.
    bad(
        json!({"client_message_id": new_id(), "kind": "welcome", "epoch": 0, "payload": b64(b"x")}),
        "unknown kind",
    )
    .await;
    bad(
        json!({"kind": "application", "epoch": 0, "payload": b64(b"x")}),
        "no client_message_id",
    )
    .await;
    bad(json!({"client_message_id": "nope", "kind": "application", "epoch": 0, "payload": b64(b"x")}), "bad client_message_id").await;
    bad(json!({"client_message_id": new_id(), "kind": "application", "epoch": -1, "payload": b64(b"x")}), "negative epoch").await;

    // None of the refused commits left a trace: still epoch 0, empty commit log, and the
    // valid commit for epoch 0 is accepted.
    let (_, info) = alice.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(
        (info["epoch"].as_u64(), info["last_seq"].as_u64()),
        (Some(0), Some(0)),
        "{info}"
    );
    let (_, log) = alice
        .get(&format!("/v1/conversations/{conv}/commits"))
        .await;
    assert_eq!(log, json!([]));
    let (s, b) = envelope(&alice, &conv, add_commit(0, &bob, &[&bob.device_id])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, sync) = mallory.get("/v1/sync").await;
    assert_eq!(
        sync["inbox"],
        json!([]),
        "mallory received no Welcome: {sync}"
    );
}

#[tokio::test]
async fn conversation_creation_is_validated() {
    let server = TestServer::start().await;
    let alice = server.enroll("alice", Role::Physician).await;
    server.enroll("bob", Role::Nurse).await;
    server.create_user("pending", Role::Nurse).await;
    let create = |body: Value| alice.post("/v1/conversations", body);
    for (body, status, error) in [
        (
            json!({"kind": "group", "ciphersuite": 3}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "group", "ciphersuite": 70000}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "group"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "channel", "ciphersuite": XWING}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "group", "ciphersuite": XWING, "peer": "bob"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "direct", "ciphersuite": XWING}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "direct", "ciphersuite": XWING, "peer": "alice"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "direct", "ciphersuite": XWING, "peer": "Bob"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "direct", "ciphersuite": XWING, "peer": "pending"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"kind": "direct", "ciphersuite": XWING, "peer": "nobody"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        expect_error(create(body.clone()).await, status, error, &body.to_string());
    }
    let (s, b) = create(json!({"kind": "direct", "ciphersuite": XWING, "peer": "bob"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let got = create(json!({"kind": "direct", "ciphersuite": XWING, "peer": "bob"})).await;
    expect_error(
        got,
        StatusCode::CONFLICT,
        "conflict",
        "second direct conversation",
    );
}

#[tokio::test]
async fn sync_and_receipt_bounds() {
    let server = TestServer::start().await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    for limit in [0, 2001, 5000] {
        let path = format!("/v1/sync?limit={limit}");
        let b = expect_error(
            nurse.get(&path).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &path,
        );
        assert!(
            b["error"]["message"].as_str().unwrap().contains("limit"),
            "{b}"
        );
    }
    for limit in [1, 2000] {
        let (s, b) = nurse.get(&format!("/v1/sync?limit={limit}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    expect_error(
        nurse
            .post("/v1/receipts/read", json!({"conversations": []}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "no cursors",
    );
    expect_error(
        nurse.post("/v1/receipts/read", json!({})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "missing cursors",
    );
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"conversation_id": new_id(), "seq": 1}))
        .collect();
    expect_error(
        nurse
            .post("/v1/receipts/read", json!({"conversations": many}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "read: too many",
    );
    expect_error(
        nurse
            .post("/v1/sync/ack", json!({"conversations": many}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "ack: too many",
    );
    let got = nurse
        .post(
            "/v1/sync/ack",
            json!({"conversations": [{"conversation_id": new_id(), "seq": -1}]}),
        )
        .await;
    expect_error(
        got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "negative seq",
    );
    // Cursors of conversations the device is not in are ignored, not errors.
    let (s, b) = nurse.post("/v1/sync/ack", json!({"conversations": [{"conversation_id": new_id(), "seq": u64::MAX}], "inbox_seq": u64::MAX})).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
}

#[tokio::test]
async fn enrollment_codes_are_checked() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..ServerOptions::default()
    })
    .await;
    let http = server.client();
    let url = format!("{}/v1/enroll", server.url);
    let enroll = |username: &str, code: &str, password: &str| {
        send(
            &http,
            Method::POST,
            &url,
            None,
            Some(json!({
                "username": username, "enrollment_code": code, "password": password, "device": new_device_json(3),
            })),
        )
    };
    let code = server.create_user("dana", Role::Nurse).await;
    let wrong = if code.starts_with('A') {
        code.replacen('A', "B", 1)
    } else {
        format!("A{}", &code[1..])
    };
    for (c, what) in [
        (wrong.as_str(), "wrong code"),
        ("", "empty code"),
        ("AAAAA-AAAAA-AAAAA-AAAAA", "made-up code"),
    ] {
        expect_error(
            enroll("dana", c, PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_enrollment_code",
            what,
        );
    }
    expect_error(
        enroll("nobody", &code, PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_enrollment_code",
        "unknown user",
    );
    expect_error(
        enroll("Dana", &code, PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "invalid username",
    );
    // Weak passwords are refused without using up the code.
    for (pw, what) in [
        ("short", "too short"),
        ("password1234", "common"),
        ("dana-my-secret-pw", "contains the username"),
        ("aaaaaaaaaaaaaaaa", "one repeated character"),
    ] {
        expect_error(
            enroll("dana", &code, pw).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            what,
        );
    }
    let long = "x".repeat(257);
    expect_error(
        enroll("dana", &code, &long).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "too long",
    );
    // The code is case- and dash-insensitive and works once.
    let typed = code.to_lowercase().replace('-', " ");
    let (s, b) = enroll("dana", &typed, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    expect_error(
        enroll("dana", &code, PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_enrollment_code",
        "reused code",
    );

    // Codes expire after 72 h.
    let code = server.create_user("eve", Role::Nurse).await;
    let late = server.create_user("finn", Role::Nurse).await;
    server.advance(Duration::hours(72) - Duration::seconds(1));
    let (s, b) = enroll("eve", &code, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "just before expiry: {b}");
    server.advance(Duration::seconds(2));
    expect_error(
        enroll("finn", &late, PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_enrollment_code",
        "expired code",
    );
    // A reissued code works again.
    let fresh = server
        .services
        .reissue_enrollment_code(&Actor::cli(), &"finn".parse().unwrap())
        .await
        .unwrap()
        .enrollment_code;
    expect_error(
        enroll("finn", &late, PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_enrollment_code",
        "replaced code",
    );
    let (s, b) = enroll("finn", &fresh, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn login_failures_lock_the_account() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..ServerOptions::default()
    })
    .await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    let other = server.enroll("other", Role::Nurse).await;
    let http = server.client();
    let url = format!("{}/v1/login", server.url);
    let login = |password: &str, totp: Option<String>, device: &str| {
        send(
            &http,
            Method::POST,
            &url,
            None,
            Some(json!({
                "username": "nurse", "password": password, "totp": totp, "device_id": device,
            })),
        )
    };
    let totp = || Some(nurse.totp_at(server.now()));

    // Shape errors first: exactly one of device_id / new_device.
    let got = send(
        &http,
        Method::POST,
        &url,
        None,
        Some(json!({"username": "nurse", "password": PASSWORD, "totp": totp()})),
    )
    .await;
    expect_error(got, StatusCode::BAD_REQUEST, "invalid_request", "no device");
    let got = send(&http, Method::POST, &url, None, Some(json!({
        "username": "nurse", "password": PASSWORD, "totp": totp(), "device_id": nurse.device_id, "new_device": new_device_json(4),
    })))
    .await;
    expect_error(
        got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "both devices",
    );
    // Another user's device, with the right password and code.
    expect_error(
        login(PASSWORD, totp(), &other.device_id).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "another user's device",
    );
    // An unknown device. (The previous attempt used up this TOTP step: the password was right.)
    server.advance(Duration::seconds(30));
    expect_error(
        login(PASSWORD, totp(), &new_id()).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "unknown device",
    );
    // MFA is required.
    expect_error(
        login(PASSWORD, None, &nurse.device_id).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "no totp",
    );
    // Unknown users look like wrong passwords.
    let got = send(&http, Method::POST, &url, None, Some(json!({"username": "nobody", "password": PASSWORD, "totp": "123456", "device_id": nurse.device_id}))).await;
    expect_error(
        got,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "unknown user",
    );

    // One failure so far (no totp; the unknown user has no counter). A success resets it.
    // Then wrong passwords and wrong second factors count alike; the fifth failure locks.
    // (The clock moves a TOTP step before each success, so no code is used twice.)
    server.advance(Duration::seconds(30));
    let (s, b) = login(PASSWORD, totp(), &nurse.device_id).await;
    assert_eq!(s, StatusCode::OK, "a success resets the counter: {b}");
    let wrong_totp = Some(if nurse.totp_at(server.now()) == "000000" {
        "111111".to_owned()
    } else {
        "000000".to_owned()
    });
    for i in 0..5 {
        let (pw, t) = if i % 2 == 0 {
            ("wrong password 123", totp())
        } else {
            (PASSWORD, wrong_totp.clone())
        };
        expect_error(
            login(pw, t, &nurse.device_id).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "failure",
        );
    }
    let b = expect_error(
        login(PASSWORD, totp(), &nurse.device_id).await,
        StatusCode::FORBIDDEN,
        "account_locked",
        "locked",
    );
    assert!(!b["error"]["message"].as_str().unwrap().is_empty());
    // Existing sessions are not affected by the lock.
    let (s, _) = nurse.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK);

    server.advance(Duration::minutes(14));
    expect_error(
        login(PASSWORD, totp(), &nurse.device_id).await,
        StatusCode::FORBIDDEN,
        "account_locked",
        "still locked",
    );
    server.advance(Duration::minutes(1) + Duration::seconds(1));
    let (s, b) = login(PASSWORD, totp(), &nurse.device_id).await;
    assert_eq!(s, StatusCode::OK, "after the lockout period: {b}");
    // The success reset the counter: one failure does not lock again.
    expect_error(
        login("wrong password 123", totp(), &nurse.device_id).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "failure",
    );
    server.advance(Duration::seconds(30));
    let (s, b) = login(PASSWORD, totp(), &nurse.device_id).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// RFC 6238 §5.2 and NIST SP 800-63B §5.1.4.2: a time-based one-time password is accepted
/// only once. A code seen over a shoulder or phished must not open a second session.
#[tokio::test]
async fn totp_codes_are_accepted_only_once() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..ServerOptions::default()
    })
    .await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    let http = server.client();
    let url = format!("{}/v1/login", server.url);
    let code = nurse.totp_at(server.now());
    let body = json!({"username": "nurse", "password": PASSWORD, "totp": code, "device_id": nurse.device_id});
    let (s, b) = send(&http, Method::POST, &url, None, Some(body.clone())).await;
    assert_eq!(s, StatusCode::OK, "first use: {b}");
    server.advance(Duration::seconds(5));
    let got = send(&http, Method::POST, &url, None, Some(body)).await;
    expect_error(
        got,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the same TOTP code a second time",
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let server = TestServer::start().await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    let http = server.client();
    for path in [
        "/",
        "/v1",
        "/v2/me",
        "/v1/me/extra",
        "/v1/users",
        "/v1/admin",
        "/metrics/x",
        "/v1/conversations/x/y/z",
    ] {
        for token in [None, Some(nurse.token.as_str())] {
            let got = send(
                &http,
                Method::GET,
                &format!("{}{path}", server.url),
                token,
                None,
            )
            .await;
            expect_error(got, StatusCode::NOT_FOUND, "not_found", path);
        }
    }
    for (method, path) in [
        (Method::DELETE, "/v1/me"),
        (Method::POST, "/v1/me"),
        (Method::GET, "/v1/login"),
        (Method::GET, "/v1/enroll"),
        (Method::PUT, "/v1/conversations"),
        (Method::PATCH, "/v1/admin/users"),
        (Method::DELETE, "/v1/admin/users/nurse/suspend"),
        (Method::POST, "/v1/health"),
        (Method::POST, "/v1/sync"),
        (Method::GET, "/v1/sync/ack"),
    ] {
        for token in [None, Some(nurse.token.as_str())] {
            let (s, b) = send(
                &http,
                method.clone(),
                &format!("{}{path}", server.url),
                token,
                None,
            )
            .await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {b}");
            assert_eq!(code(&b), "method_not_allowed");
        }
    }
}

/// Request counters are labelled by method. A client inventing methods (any token is a
/// valid HTTP method) must not be able to create label sets without bound: each one stays in
/// memory and in every `/metrics` answer forever.
///
/// Fails today: `count_requests` (http.rs) labels with `req.method().as_str()` verbatim.
#[tokio::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let server = TestServer::start().await;
    let http = server.client();
    for i in 0..20 {
        let method = Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let resp = http
            .request(method, format!("{}/v1/health", server.url))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_client_error(), "{status}: {body}");
        code(&body);
    }
    let (s, metrics) = send(
        &http,
        Method::GET,
        &format!("{}/metrics", server.url),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    let invented: Vec<&str> = text.lines().filter(|l| l.contains("INVENTED")).collect();
    assert!(
        invented.is_empty(),
        "client-chosen methods became metric labels: {invented:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Property test: garbled bodies never make the server fail.

/// Field names of the request bodies, so random objects hit real fields with wrong types.
const FIELDS: &[&str] = &[
    "username",
    "enrollment_code",
    "password",
    "device",
    "name",
    "signature_key",
    "totp",
    "device_id",
    "new_device",
    "key_packages",
    "last_resort",
    "kind",
    "ciphersuite",
    "peer",
    "client_message_id",
    "epoch",
    "payload",
    "welcome",
    "devices",
    "add_users",
    "remove_users",
    "remove_devices",
    "conversations",
    "conversation_id",
    "seq",
    "inbox_seq",
    "role",
    "display_name",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        "[A-Za-z0-9+/=]{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "group",
            "direct",
            "commit",
            "application",
            "proposal",
            "admin",
            "patient",
            "nurse"
        ])
        .prop_map(Value::from),
        Just(Value::from(uuid::Uuid::nil().to_string())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        let key = prop_oneof![
            prop::sample::select(FIELDS).prop_map(str::to_owned),
            "[a-z_]{1,10}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Random bytes, random text, random JSON, truncated valid bodies, and valid bodies with one
/// field replaced, removed or added.
fn garbled(valid: Value) -> impl Strategy<Value = Vec<u8>> {
    let text = valid.to_string();
    let n = text.len();
    let (v1, v2, v3) = (valid.clone(), valid.clone(), valid);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        any::<String>().prop_map(String::into_bytes),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (0..n).prop_map(move |k| text.as_bytes()[..k].to_vec()),
        (any::<prop::sample::Index>(), json_value()).prop_map(move |(i, x)| {
            let mut v = v1.clone();
            if let Some(m) = v.as_object_mut().filter(|m| !m.is_empty()) {
                let k = m.keys().nth(i.index(m.len())).unwrap().clone();
                m.insert(k, x);
            }
            v.to_string().into_bytes()
        }),
        any::<prop::sample::Index>().prop_map(move |i| {
            let mut v = v2.clone();
            if let Some(m) = v.as_object_mut().filter(|m| !m.is_empty()) {
                let k = m.keys().nth(i.index(m.len())).unwrap().clone();
                m.remove(&k);
            }
            v.to_string().into_bytes()
        }),
        (prop::sample::select(FIELDS), json_value()).prop_map(move |(k, x)| {
            let mut v = v3.clone();
            if let Some(m) = v.as_object_mut() {
                m.insert(k.to_owned(), x);
            }
            v.to_string().into_bytes()
        }),
    ]
}

#[test]
fn garbled_bodies_never_cause_server_errors() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, mut routes) = rt.block_on(async {
        let server = TestServer::start().await;
        let admin = server.enroll("admin", Role::Admin).await;
        let physician = server.enroll("physician", Role::Physician).await;
        let routes = json_routes(&server, &admin, &physician).await;
        (server, routes)
    });
    // Routes that take no body must ignore one. (Logout is left out: it would end the
    // session the other cases use.) Their targets do not exist, so nothing changes.
    let admin_token = routes.last().unwrap().token.clone();
    for path in [
        "/v1/admin/users/nobody/suspend".to_owned(),
        "/v1/admin/users/nobody/reactivate".to_owned(),
        "/v1/admin/users/nobody/enrollment-code".to_owned(),
        format!("/v1/devices/{}/revoke", new_id()),
        format!("/v1/admin/devices/{}/revoke", new_id()),
    ] {
        routes.push(JsonRoute {
            path,
            token: admin_token.clone(),
            valid: json!({}),
        });
    }
    let http = server.client();
    for r in &routes {
        let config = PropConfig {
            cases: 64,
            failure_persistence: None,
            ..PropConfig::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        let url = format!("{}{}", server.url, r.path);
        let result = runner.run(&garbled(r.valid.clone()), |body| {
            let (status, answer) = rt.block_on(post_raw(
                &http,
                &url,
                r.token.as_deref(),
                Some("application/json"),
                body.clone(),
            ));
            prop_assert!(
                !status.is_server_error(),
                "{status} for {}: {answer}",
                String::from_utf8_lossy(&body)
            );
            if status.is_client_error() {
                prop_assert!(
                    answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
                    "{status} without the error shape for {}: {answer}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("POST {}: {e}", r.path);
        }
    }
    // The server is still healthy and its audit chain intact.
    rt.block_on(async move {
        let (s, _) = send(
            &http,
            Method::GET,
            &format!("{}/v1/health", server.url),
            None,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, b) = send(
            &http,
            Method::GET,
            &format!("{}/v1/admin/audit/verify", server.url),
            admin_token.as_deref(),
            None,
        )
        .await;
        assert_eq!((s, &b["ok"]), (StatusCode::OK, &json!(true)), "{b}");
        server.stop().await;
    });
}
