//! The authorization matrix: every route of the router, called by every role, without a
//! session and with an invalid token, against a real server over HTTP. The expected outcome
//! of each (route, caller) pair is written out in [`MATRIX`], so the policy is reviewable in
//! one place; two completeness checks fail when a route is added to the router or to the
//! OpenAPI description without a row here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: failures should panic loudly"
)]

use std::collections::BTreeSet;
use std::fmt::Write as _;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::Role;
use ward_server::service::Actor;
use ward_testing::{PASSWORD, TestServer, TestUser, b64, send, totp_code};

/// MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519, allowed by the default policy.
const XWING: u16 = 0x004D;

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Role(Role),
    /// No `Authorization` header at all.
    NoSession,
    /// A well-formed bearer header with a token the server never issued.
    BadToken,
}

/// The columns of [`MATRIX`], in order.
const CALLERS: [Caller; 9] = [
    Caller::Role(Role::Admin),
    Caller::Role(Role::Physician),
    Caller::Role(Role::Nurse),
    Caller::Role(Role::Pharmacist),
    Caller::Role(Role::Compliance),
    Caller::Role(Role::Patient),
    Caller::Role(Role::Service),
    Caller::NoSession,
    Caller::BadToken,
];

impl Caller {
    /// Short tag used in usernames of per-caller fixtures.
    fn tag(self) -> &'static str {
        match self {
            Caller::Role(r) => r.as_str(),
            Caller::NoSession => "nosession",
            Caller::BadToken => "badtoken",
        }
    }
}

/// Expected outcome of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum E {
    /// Allowed and succeeds: 2xx.
    Ok,
    /// Allowed, but the plain request cannot complete (a WebSocket route fetched without
    /// upgrade headers): any status except 401, 403 and 5xx.
    Open,
    /// Denied for lack of a valid session: 401 `unauthenticated`.
    U,
    /// Denied by role: 403 `forbidden`.
    F,
    /// Denied by hiding existence (not a member, another user's device): 404 `not_found`.
    N,
    /// Allowed, but the matrix's input is refused: 400 `invalid_request` (a patient tag
    /// sealed to a journal key the matrix server does not have).
    I,
}
use E::{F, I, N, Ok as A, Open as O, U};

/// One row: a route (method and the router's path template), a case label when a route has
/// several rows, and the expected outcome per caller.
struct Row {
    method: &'static str,
    path: &'static str,
    case: &'static str,
    expect: [E; 9],
}

const fn row(method: &'static str, path: &'static str, case: &'static str, expect: [E; 9]) -> Row {
    Row {
        method,
        path,
        case,
        expect,
    }
}

/// THE POLICY. Rows run top to bottom, callers left to right, against one server whose
/// fixtures are described in [`Fixtures`]. `A` = allowed (2xx), `O` = allowed but a plain GET
/// of a WebSocket route (not 401/403/5xx), `U` = 401, `F` = 403, `N` = 404.
///
/// The conversation of the membership rows is a group created by the physician, who added
/// the patient (with a Welcome to the patient's device): its members are the physician and
/// the patient; every other role is a non-member and gets 404.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                                                                        adm  phy  nur  pha  com  pat  svc  none bad
    // Public: answer without a session (and ignore a bad one).
    row("GET",  "/v1/health",                                           "",                  [A,   A,   A,   A,   A,   A,   A,   A,   A]),
    row("GET",  "/v1/server",                                           "",                  [A,   A,   A,   A,   A,   A,   A,   A,   A]),
    row("GET",  "/v1/openapi.json",                                     "",                  [A,   A,   A,   A,   A,   A,   A,   A,   A]),
    // Metrics: loopback clients (these tests) and admin sessions; a token, if sent, must be valid.
    row("GET",  "/metrics",                                             "loopback",          [A,   A,   A,   A,   A,   A,   A,   A,   U]),
    row("POST", "/v1/enroll",                                           "own pending user",  [A,   A,   A,   A,   A,   A,   A,   A,   A]),
    row("POST", "/v1/login",                                            "own account",       [A,   A,   A,   A,   A,   A,   A,   A,   A]),
    // Any active session, whatever the role.
    row("GET",  "/v1/me",                                               "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("GET",  "/v1/devices",                                          "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("GET",  "/v1/devices/me/key-packages",                          "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("POST", "/v1/devices/me/key-packages",                          "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("GET",  "/v1/attachment-policy",                                "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("GET",  "/v1/revocations",                                      "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("GET",  "/v1/conversations",                                    "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("GET",  "/v1/sync",                                             "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("POST", "/v1/sync/ack",                                         "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("POST", "/v1/receipts/read",                                    "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("GET",  "/v1/ws",                                               "no upgrade headers",[O,   O,   O,   O,   O,   O,   O,   U,   U]),
    // Own devices only, whatever the role (even an admin gets 404 for someone else's device here).
    row("POST", "/v1/devices/{device_id}/revoke",                       "own second device", [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("POST", "/v1/devices/{device_id}/revoke",                       "another user's",    [N,   N,   N,   N,   N,   N,   N,   U,   U]),
    // Staff only: patients do not browse the directory, claim KeyPackages or start conversations.
    row("GET",  "/v1/users/{username}",                                 "",                  [A,   A,   A,   A,   A,   F,   A,   U,   U]),
    row("POST", "/v1/users/{username}/key-packages/claim",              "",                  [A,   A,   A,   A,   A,   F,   A,   U,   U]),
    row("POST", "/v1/conversations",                                    "group",             [A,   A,   A,   A,   A,   F,   A,   U,   U]),
    // Membership-scoped: non-members get 404 (the conversation's existence is not confirmed).
    row("GET",  "/v1/conversations/{conversation_id}",                  "",                  [N,   A,   N,   N,   N,   A,   N,   U,   U]),
    row("POST", "/v1/conversations/{conversation_id}/envelopes",        "application",       [N,   A,   N,   N,   N,   A,   N,   U,   U]),
    // A patient member may send but not add members (checked before the epoch).
    row("POST", "/v1/conversations/{conversation_id}/envelopes",        "commit adding user",[N,   A,   N,   N,   N,   F,   N,   U,   U]),
    row("GET",  "/v1/conversations/{conversation_id}/messages/{seq}/status", "",             [N,   A,   N,   N,   N,   A,   N,   U,   U]),
    row("GET",  "/v1/conversations/{conversation_id}/commits",          "",                  [N,   A,   N,   N,   N,   A,   N,   U,   U]),
    // Administration: admin only, except reading users and the audit log (admin, compliance).
    row("GET",  "/v1/admin/users",                                      "",                  [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("POST", "/v1/admin/users",                                      "",                  [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("POST", "/v1/admin/users/{username}/suspend",                   "own target",        [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("POST", "/v1/admin/users/{username}/reactivate",                "own target",        [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("POST", "/v1/admin/users/{username}/enrollment-code",           "own target",        [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("GET",  "/v1/admin/devices",                                    "",                  [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("POST", "/v1/admin/devices/{device_id}/revoke",                 "own target",        [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    // Remote wipe (after the revoke row: wiping an already revoked device is allowed).
    row("POST", "/v1/admin/devices/{device_id}/wipe",                   "own target",        [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("GET",  "/v1/admin/devices/{device_id}/wipe",                   "admin's target",    [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    // Public (the wiped device has no session); only a signature by the device's key counts.
    row("POST", "/v1/devices/{device_id}/wipe-confirmation",            "unsigned",          [F,   F,   F,   F,   F,   F,   F,   F,   F]),
    row("GET",  "/v1/admin/audit",                                      "",                  [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("GET",  "/v1/admin/audit/verify",                               "",                  [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("GET",  "/v1/admin/policy",                                     "",                  [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("PUT",  "/v1/admin/policy",                                     "no-op change",      [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("PUT",  "/v1/admin/dlp-policy",                                 "empty document",    [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("GET",  "/v1/dlp-policy",                                       "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("GET",  "/v1/journal-keys",                                     "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    // Membership-scoped: a member reports a refused message (audited); others get 404.
    // The archive (ciphertext) for the compliance officer only.
    row("GET",  "/v1/compliance/journal",                               "",                  [F,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("POST", "/v1/journal/mismatch",                                 "",                  [N,   A,   N,   N,   N,   A,   N,   U,   U]),
    // Every account may change its own password (the calling session stays open).
    row("POST", "/v1/me/password",                                      "right current",     [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    // Retention (ADR 0013): compliance reads the policy and manages holds and erasure
    // requests; only admins change the policy and run the purge. Every device fetches and
    // acknowledges its own deletion orders (an unknown order is 404 for anyone).
    row("GET",  "/v1/admin/retention",                                  "",                  [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("PUT",  "/v1/admin/retention",                                  "no-op change",      [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("POST", "/v1/admin/retention/run",                              "",                  [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("GET",  "/v1/admin/holds",                                      "",                  [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("POST", "/v1/admin/holds",                                      "on the target",     [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("POST", "/v1/admin/holds/{hold_id}/release",                    "own hold",          [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("POST", "/v1/admin/erasure-requests",                           "the target",        [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("GET",  "/v1/deletion-orders",                                  "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    row("POST", "/v1/deletion-orders/{order_id}/ack",                   "unknown order",     [N,   N,   N,   N,   N,   N,   N,   U,   U]),
    // Break-glass (ADR 0016): the roles the default policy allows (physician, nurse) open a
    // group they are not in; every other role is refused (least privilege). Listing: admins and
    // compliance see every grant, the others those of their conversations.
    row("POST", "/v1/conversations/{conversation_id}/break-glass",      "non-member",        [F,   A,   A,   F,   F,   F,   F,   U,   U]),
    row("GET",  "/v1/break-glass",                                      "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
    // Clinical workflow (ADR 0014): roles, schedules and policies are the admin's; listing for
    // admin and compliance; a staff member opts in/out of their own assignment (a patient
    // cannot hold one: 404) and looks up who holds a role (patients do not browse staff).
    row("GET",  "/v1/admin/roles",                                      "",                  [A,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("POST", "/v1/admin/roles",                                      "new role",          [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("POST", "/v1/admin/roles/{role}/assignments",                   "target user",       [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("DELETE", "/v1/admin/roles/{role}/assignments/{username}",      "target user",       [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("PUT",  "/v1/admin/roles/{role}/escalation",                    "to target user",    [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("POST", "/v1/admin/schedules",                                  "one shift",         [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("PUT",  "/v1/roles/{role}/on-call",                             "own assignment",    [A,   A,   A,   A,   A,   N,   A,   U,   U]),
    row("GET",  "/v1/roles/{role}/holders",                             "",                  [A,   A,   A,   A,   A,   F,   A,   U,   U]),
    // Patient index, templates, do-not-disturb (ADR 0019): staff members of the conversation
    // store tags (here refused for the unknown key, after the checks of who may); only
    // compliance reads the index; staff read templates, admins manage them; staff hand over.
    row("POST", "/v1/conversations/{conversation_id}/patient-tags",     "unknown key",       [N,   I,   N,   N,   N,   F,   N,   U,   U]),
    row("GET",  "/v1/compliance/patient-index",                         "",                  [F,   F,   F,   F,   A,   F,   F,   U,   U]),
    row("GET",  "/v1/templates",                                        "",                  [A,   A,   A,   A,   A,   F,   A,   U,   U]),
    row("GET",  "/v1/templates/{name}",                                 "",                  [A,   A,   A,   A,   A,   F,   A,   U,   U]),
    row("POST", "/v1/admin/templates",                                  "new template",      [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("DELETE", "/v1/admin/templates/{name}",                         "own template",      [A,   F,   F,   F,   F,   F,   F,   U,   U]),
    row("PUT",  "/v1/me/dnd",                                           "target covers",     [A,   A,   A,   A,   A,   F,   A,   U,   U]),
    row("DELETE", "/v1/me/dnd",                                         "after on",          [A,   A,   A,   A,   A,   F,   A,   U,   U]),
    // Messages sent to a role (ADR 0018): delivery states for members of the message's
    // conversation (others 404); acknowledgement of a message nobody can see is 404 for all
    // (sender 403, non-recipients 404, not-to-a-role 409: tests/escalation.rs).
    row("GET",  "/v1/messages/{message_id}/status",                     "",                  [N,   A,   N,   N,   N,   A,   N,   U,   U]),
    row("POST", "/v1/messages/{message_id}/ack",                        "unknown message",   [N,   N,   N,   N,   N,   N,   N,   U,   U]),
    // Attachment blobs (ADR 0017): member devices start uploads (non-members 404, as for the
    // conversation); only the uploading device writes, resumes, completes or abandons; member
    // devices download, and the compliance officer (for the journal export, audited); every
    // other device gets 403.
    row("POST", "/v1/conversations/{conversation_id}/blobs",            "member device",     [N,   A,   N,   N,   N,   A,   N,   U,   U]),
    row("PUT",  "/v1/blobs/{blob_id}",                                  "physician's upload",[F,   A,   F,   F,   F,   F,   F,   U,   U]),
    row("GET",  "/v1/blobs/{blob_id}/upload",                           "physician's upload",[F,   A,   F,   F,   F,   F,   F,   U,   U]),
    row("DELETE", "/v1/blobs/{blob_id}",                                "physician's upload",[F,   A,   F,   F,   F,   F,   F,   U,   U]),
    row("POST", "/v1/blobs/{blob_id}/complete",                         "all bytes received",[F,   A,   F,   F,   F,   F,   F,   U,   U]),
    row("GET",  "/v1/blobs/{blob_id}",                                  "complete blob",     [F,   A,   F,   F,   A,   A,   F,   U,   U]),
    // Last, because it ends every caller's session.
    row("POST", "/v1/logout",                                           "",                  [A,   A,   A,   A,   A,   A,   A,   U,   U]),
];

/// The clinical role of the workflow rows.
const MATRIX_ROLE: &str = "matrix-on-call";
/// The template of the template rows.
const MATRIX_TEMPLATE: &str = "matrix-template";

/// Routes the router serves that the OpenAPI description deliberately leaves out.
const NOT_IN_OPENAPI: &[(&str, &str)] = &[("GET", "/metrics"), ("GET", "/v1/openapi.json")];

/// Everything the matrix calls. Per-caller targets (index = column of [`CALLERS`]) keep one
/// call's success from changing another caller's outcome.
struct Fixtures {
    server: TestServer,
    http: reqwest::Client,
    /// One enrolled user per role, in [`CALLERS`] order (first seven columns).
    users: Vec<TestUser>,
    /// A second device of each role user (target of the own-device revoke).
    second_devices: Vec<String>,
    /// A user with KeyPackages (directory and claim target); not a matrix caller.
    target: TestUser,
    /// Physician + patient group at epoch 1.
    conversation: String,
    /// Message id of its seq 1 (the physician's commit).
    first_message: String,
    /// Per caller: a pending user and its enrollment code (enroll row).
    enroll: Vec<(String, String)>,
    /// Per caller: an enrolled user to log in as (login row).
    login: Vec<TestUser>,
    /// Per caller: a pending user (suspend, enrollment-code rows).
    pending: Vec<String>,
    /// Per caller: an enrolled, then suspended user (reactivate row).
    suspended: Vec<String>,
    /// Per caller: another pending user (enrollment-code row; the suspend row's targets are
    /// no longer pending once the admin has suspended its own).
    reissue: Vec<String>,
    /// Per caller: a device of another user (admin revoke row).
    devices: Vec<String>,
    /// Per caller: a legal hold in force (release row).
    holds: Vec<String>,
    /// A group of `target` alone (break-glass row: every caller is a non-member).
    break_glass_conversation: String,
    /// The physician's upload into `conversation`, nothing received yet, sized for
    /// [`BLOB_CHUNK`] sent as JSON (PUT, resume and abandon rows).
    blob_upload: String,
    /// Per caller: an upload of the physician's (abandon row).
    blob_abandon: Vec<String>,
    /// The physician's upload with every byte received (complete row), and its SHA-256.
    blob_ready: (String, String),
    /// A complete blob of `conversation` (download row).
    blob_done: String,
}

/// The bytes of the PUT row (sent as a JSON string, so with its quotes).
const BLOB_CHUNK: &str = "matrix chunk";

/// Create an upload of `data` into `conversation` as `u`, send the bytes, and complete it
/// when asked; returns the blob id and the hex SHA-256.
async fn blob_fixture(
    u: &TestUser,
    conversation: &str,
    size: usize,
    data: Option<&[u8]>,
    complete: bool,
) -> (String, String) {
    let (s, b) = u
        .post(
            &format!("/v1/conversations/{conversation}/blobs"),
            json!({"size": size}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["blob_id"].as_str().unwrap().to_owned();
    let mut hash = String::new();
    if let Some(data) = data {
        let r = u
            .http
            .put(format!("{}/v1/blobs/{id}?offset=0", u.base))
            .bearer_auth(&u.token)
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        use sha2::Digest;
        hash = hex::encode(sha2::Sha256::digest(data));
    }
    if complete {
        let (s, b) = u
            .post(&format!("/v1/blobs/{id}/complete"), json!({"sha256": hash}))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    (id, hash)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn setup() -> Fixtures {
    let server = TestServer::start().await;
    let http = server.client();
    let mut users = Vec::new();
    for c in &CALLERS[..7] {
        let Caller::Role(role) = *c else {
            unreachable!()
        };
        users.push(
            server
                .enroll(&format!("{}-user", role.as_str()), role)
                .await,
        );
    }
    let mut second_devices = Vec::new();
    for u in &users {
        second_devices.push(u.login_new_device(server.now()).await.device_id);
    }
    let target = server.enroll("target", Role::Nurse).await;
    target.upload_key_packages(20).await;
    // A clinical role every staff caller holds (patients cannot).
    server
        .services
        .create_clinical_role(
            &Actor::cli(),
            ward_proto::CreateClinicalRoleRequest {
                name: MATRIX_ROLE.parse().unwrap(),
                description: None,
            },
        )
        .await
        .unwrap();
    for u in users.iter().filter(|u| u.role != Role::Patient) {
        server
            .services
            .assign_clinical_role(
                &Actor::cli(),
                &MATRIX_ROLE.parse().unwrap(),
                &u.username.parse().unwrap(),
            )
            .await
            .unwrap();
    }

    let physician = &users[1];
    let patient = &users[5];
    let (s, b) = physician
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": XWING}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let conversation = b["conversation_id"].as_str().unwrap().to_owned();
    let (s, b) = physician
        .post(
            &format!("/v1/conversations/{conversation}/envelopes"),
            json!({
                "client_message_id": new_id(), "kind": "commit", "epoch": 0,
                "payload": b64(b"commit: add patient"),
                "add_users": [patient.user_id],
                "welcome": {"payload": b64(b"welcome"), "devices": [patient.device_id]},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["epoch"], 1);
    let first_message = b["message_id"].as_str().unwrap().to_owned();
    let (s, b) = target
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": XWING}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let break_glass_conversation = b["conversation_id"].as_str().unwrap().to_owned();

    // A template every staff caller reads, and one per caller for the delete row.
    let template = |name: String| ward_proto::CreateTemplateRequest {
        name: name.parse().unwrap(),
        text: "Rapid response to {ward}".into(),
        priority: ward_proto::TemplatePriority::Urgent,
    };
    server
        .services
        .create_template(&Actor::cli(), template(MATRIX_TEMPLATE.into()))
        .await
        .unwrap();
    for c in CALLERS {
        server
            .services
            .create_template(&Actor::cli(), template(format!("del-{}", c.tag())))
            .await
            .unwrap();
    }
    let chunk_len = serde_json::to_vec(&json!(BLOB_CHUNK)).unwrap().len();
    let blob_upload = blob_fixture(physician, &conversation, chunk_len, None, false)
        .await
        .0;
    let mut blob_abandon = Vec::new();
    for _ in CALLERS {
        blob_abandon.push(
            blob_fixture(physician, &conversation, 1, None, false)
                .await
                .0,
        );
    }
    let blob_ready = blob_fixture(physician, &conversation, 5, Some(b"ready"), false).await;
    let blob_done = blob_fixture(physician, &conversation, 4, Some(b"done"), true)
        .await
        .0;

    let (mut enroll, mut login, mut pending, mut suspended, mut reissue, mut devices) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut holds = vec![];
    for c in CALLERS {
        let t = c.tag();
        let hold = server
            .services
            .add_hold(
                &Actor::cli(),
                ward_proto::AddHoldRequest {
                    conversation: Some(conversation.parse().unwrap()),
                    reason: format!("matrix {t}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        holds.push(hold.id.to_string());
        let name = format!("enr-{t}");
        let code = server.create_user(&name, Role::Nurse).await;
        enroll.push((name, code));
        login.push(server.enroll(&format!("login-{t}"), Role::Pharmacist).await);
        let name = format!("pending-{t}");
        server.create_user(&name, Role::Nurse).await;
        pending.push(name);
        let name = format!("suspended-{t}");
        server.enroll(&name, Role::Nurse).await;
        server
            .services
            .suspend_user(&Actor::cli(), &name.parse().unwrap())
            .await
            .unwrap();
        suspended.push(name);
        let name = format!("reissue-{t}");
        server.create_user(&name, Role::Nurse).await;
        reissue.push(name);
        devices.push(
            server
                .enroll(&format!("devowner-{t}"), Role::Nurse)
                .await
                .device_id,
        );
    }
    Fixtures {
        server,
        http,
        users,
        second_devices,
        target,
        conversation,
        first_message,
        enroll,
        login,
        pending,
        suspended,
        reissue,
        devices,
        holds,
        break_glass_conversation,
        blob_upload,
        blob_abandon,
        blob_ready,
        blob_done,
    }
}

/// The concrete request of a row for the caller in column `i`: method, path, JSON body.
fn request(fx: &Fixtures, r: &Row, i: usize) -> (Method, String, Option<Value>) {
    let c = CALLERS[i];
    let t = c.tag();
    let conv = &fx.conversation;
    let method = Method::from_bytes(r.method.as_bytes()).unwrap();
    let (path, body) = match (r.method, r.path, r.case) {
        ("GET", "/v1/health" | "/v1/server" | "/v1/openapi.json" | "/metrics", _) => {
            (r.path.to_owned(), None)
        }
        ("POST", "/v1/enroll", _) => {
            let key = ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 1; 32]);
            let (name, code) = &fx.enroll[i];
            let body = json!({
                "username": name, "enrollment_code": code, "password": PASSWORD,
                "device": {"name": "matrix device", "signature_key": b64(key.verifying_key().as_bytes())},
            });
            (r.path.to_owned(), Some(body))
        }
        ("POST", "/v1/login", _) => {
            let u = &fx.login[i];
            let key = ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 101; 32]);
            let body = json!({
                "username": u.username, "password": PASSWORD,
                "totp": totp_code(&u.totp_secret, fx.server.now()),
                "new_device": {"name": "matrix login", "signature_key": b64(key.verifying_key().as_bytes())},
            });
            (r.path.to_owned(), Some(body))
        }
        (
            "GET",
            "/v1/me"
            | "/v1/devices"
            | "/v1/devices/me/key-packages"
            | "/v1/revocations"
            | "/v1/conversations"
            | "/v1/sync"
            | "/v1/ws",
            _,
        ) => (r.path.to_owned(), None),
        ("POST", "/v1/devices/me/key-packages", _) => {
            let body = json!({"key_packages": [b64(format!("kp-{t}").as_bytes())], "last_resort": b64(b"lr")});
            (r.path.to_owned(), Some(body))
        }
        ("POST", "/v1/sync/ack", _) => (r.path.to_owned(), Some(json!({}))),
        ("POST", "/v1/receipts/read", _) => (
            r.path.to_owned(),
            Some(json!({"conversations": [{"conversation_id": conv, "seq": 1}]})),
        ),
        ("POST", "/v1/devices/{device_id}/revoke", "own second device") => {
            let d = fx.second_devices.get(i).unwrap_or(&fx.second_devices[0]);
            (format!("/v1/devices/{d}/revoke"), None)
        }
        ("POST", "/v1/devices/{device_id}/revoke", "another user's") => {
            (format!("/v1/devices/{}/revoke", fx.target.device_id), None)
        }
        ("GET", "/v1/users/{username}", _) => (format!("/v1/users/{}", fx.target.username), None),
        ("POST", "/v1/users/{username}/key-packages/claim", _) => (
            format!("/v1/users/{}/key-packages/claim", fx.target.username),
            Some(json!({})),
        ),
        ("POST", "/v1/conversations", _) => (
            r.path.to_owned(),
            Some(json!({"kind": "group", "ciphersuite": XWING})),
        ),
        ("GET", "/v1/conversations/{conversation_id}", _) => {
            (format!("/v1/conversations/{conv}"), None)
        }
        ("POST", "/v1/conversations/{conversation_id}/envelopes", "application") => {
            let body = json!({"client_message_id": new_id(), "kind": "application", "epoch": 1, "payload": b64(t.as_bytes())});
            (format!("/v1/conversations/{conv}/envelopes"), Some(body))
        }
        ("POST", "/v1/conversations/{conversation_id}/envelopes", "commit adding user") => {
            let body = json!({
                "client_message_id": new_id(), "kind": "commit", "epoch": 1,
                "payload": b64(format!("commit by {t}").as_bytes()), "add_users": [fx.target.user_id],
            });
            (format!("/v1/conversations/{conv}/envelopes"), Some(body))
        }
        ("GET", "/v1/conversations/{conversation_id}/messages/{seq}/status", _) => {
            (format!("/v1/conversations/{conv}/messages/1/status"), None)
        }
        ("GET", "/v1/conversations/{conversation_id}/commits", _) => {
            (format!("/v1/conversations/{conv}/commits"), None)
        }
        (
            "GET",
            "/v1/admin/users"
            | "/v1/admin/devices"
            | "/v1/admin/audit"
            | "/v1/admin/audit/verify"
            | "/v1/admin/policy",
            _,
        ) => (r.path.to_owned(), None),
        ("PUT", "/v1/admin/policy", _) => (r.path.to_owned(), Some(json!({"mfa_required": true}))),
        ("PUT", "/v1/admin/dlp-policy", _) => (r.path.to_owned(), Some(json!({}))),
        ("GET", "/v1/dlp-policy" | "/v1/attachment-policy", _) => (r.path.to_owned(), None),
        ("GET", "/v1/journal-keys", _) => (r.path.to_owned(), None),
        ("GET", "/v1/compliance/journal", _) => (r.path.to_owned(), None),
        ("POST", "/v1/conversations/{conversation_id}/break-glass", _) => (
            format!(
                "/v1/conversations/{}/break-glass",
                fx.break_glass_conversation
            ),
            Some(json!({"reason": format!("matrix emergency by {t}"), "minutes": 5})),
        ),
        ("GET", "/v1/break-glass", _) => (r.path.to_owned(), None),
        ("POST", "/v1/journal/mismatch", _) => (
            r.path.to_owned(),
            Some(json!({"conversation_id": conv, "message_id": fx.first_message, "seq": 1})),
        ),
        ("POST", "/v1/admin/users", _) => (
            r.path.to_owned(),
            Some(json!({"username": format!("new-{t}"), "role": "nurse"})),
        ),
        ("POST", "/v1/admin/users/{username}/suspend", _) => {
            (format!("/v1/admin/users/{}/suspend", fx.pending[i]), None)
        }
        ("POST", "/v1/admin/users/{username}/reactivate", _) => (
            format!("/v1/admin/users/{}/reactivate", fx.suspended[i]),
            None,
        ),
        ("POST", "/v1/admin/users/{username}/enrollment-code", _) => (
            format!("/v1/admin/users/{}/enrollment-code", fx.reissue[i]),
            None,
        ),
        ("POST", "/v1/admin/devices/{device_id}/revoke", _) => {
            (format!("/v1/admin/devices/{}/revoke", fx.devices[i]), None)
        }
        ("POST", "/v1/admin/devices/{device_id}/wipe", _) => {
            (format!("/v1/admin/devices/{}/wipe", fx.devices[i]), None)
        }
        ("GET", "/v1/admin/devices/{device_id}/wipe", _) => {
            (format!("/v1/admin/devices/{}/wipe", fx.devices[0]), None)
        }
        ("POST", "/v1/devices/{device_id}/wipe-confirmation", _) => (
            format!("/v1/devices/{}/wipe-confirmation", fx.devices[i]),
            Some(json!({"nonce": b64(&[0u8; 32]), "signature": b64(&[0u8; 64])})),
        ),
        ("POST", "/v1/me/password", _) => (
            r.path.to_owned(),
            Some(
                json!({"current_password": PASSWORD, "new_password": format!("matrix changed passphrase {i}")}),
            ),
        ),
        ("GET", "/v1/admin/retention" | "/v1/admin/holds" | "/v1/deletion-orders", _) => {
            (r.path.to_owned(), None)
        }
        ("PUT", "/v1/admin/retention", _) => (r.path.to_owned(), Some(json!({}))),
        ("POST", "/v1/admin/retention/run", _) => (r.path.to_owned(), None),
        ("POST", "/v1/admin/holds", _) => (
            r.path.to_owned(),
            Some(json!({"user": fx.target.username, "reason": format!("matrix {t}")})),
        ),
        ("POST", "/v1/admin/holds/{hold_id}/release", _) => {
            (format!("/v1/admin/holds/{}/release", fx.holds[i]), None)
        }
        ("POST", "/v1/admin/erasure-requests", _) => {
            (r.path.to_owned(), Some(json!({"user": fx.target.username})))
        }
        ("POST", "/v1/deletion-orders/{order_id}/ack", _) => {
            (format!("/v1/deletion-orders/{}/ack", new_id()), None)
        }
        ("GET", "/v1/admin/roles", _) => (r.path.to_owned(), None),
        ("POST", "/v1/admin/roles", _) => (
            r.path.to_owned(),
            Some(json!({"name": format!("new-{t}"), "description": "matrix"})),
        ),
        ("POST", "/v1/admin/roles/{role}/assignments", _) => (
            format!("/v1/admin/roles/{MATRIX_ROLE}/assignments"),
            Some(json!({"username": fx.target.username})),
        ),
        ("DELETE", "/v1/admin/roles/{role}/assignments/{username}", _) => (
            format!(
                "/v1/admin/roles/{MATRIX_ROLE}/assignments/{}",
                fx.target.username
            ),
            None,
        ),
        ("PUT", "/v1/admin/roles/{role}/escalation", _) => (
            format!("/v1/admin/roles/{MATRIX_ROLE}/escalation"),
            Some(json!({"ack_within_secs": 300, "then": [format!("user:{}", fx.target.username)]})),
        ),
        ("POST", "/v1/admin/schedules", _) => (
            r.path.to_owned(),
            Some(json!({"csv": format!(
                "role,username,start,end,time_zone\n{MATRIX_ROLE},{},2030-01-{:02}T08:00,2030-01-{:02}T20:00,UTC\n",
                fx.target.username, i + 1, i + 1
            )})),
        ),
        ("PUT", "/v1/roles/{role}/on-call", _) => (
            format!("/v1/roles/{MATRIX_ROLE}/on-call"),
            Some(json!({"on_call": i.is_multiple_of(2)})),
        ),
        ("GET", "/v1/roles/{role}/holders", _) => {
            (format!("/v1/roles/{MATRIX_ROLE}/holders"), None)
        }
        ("POST", "/v1/conversations/{conversation_id}/patient-tags", _) => (
            format!("/v1/conversations/{conv}/patient-tags"),
            Some(json!({"key_id": "0".repeat(32), "tag": b64(&[7u8; 1200])})),
        ),
        ("GET", "/v1/compliance/patient-index" | "/v1/templates", _) => (r.path.to_owned(), None),
        ("GET", "/v1/templates/{name}", _) => (format!("/v1/templates/{MATRIX_TEMPLATE}"), None),
        ("POST", "/v1/admin/templates", _) => (
            r.path.to_owned(),
            Some(
                json!({"name": format!("new-{t}"), "text": "Code Blue, room {room}", "priority": "stat"}),
            ),
        ),
        ("DELETE", "/v1/admin/templates/{name}", _) => {
            (format!("/v1/admin/templates/del-{t}"), None)
        }
        ("PUT", "/v1/me/dnd", _) => (
            r.path.to_owned(),
            Some(json!({"cover": fx.target.username})),
        ),
        ("DELETE", "/v1/me/dnd", _) => (r.path.to_owned(), None),
        ("GET", "/v1/messages/{message_id}/status", _) => {
            (format!("/v1/messages/{}/status", fx.first_message), None)
        }
        ("POST", "/v1/messages/{message_id}/ack", _) => (
            format!("/v1/messages/{}/ack", new_id()),
            Some(json!({"response": "accept"})),
        ),
        ("POST", "/v1/conversations/{conversation_id}/blobs", _) => (
            format!("/v1/conversations/{conv}/blobs"),
            Some(json!({"size": 100})),
        ),
        ("PUT", "/v1/blobs/{blob_id}", _) => (
            format!("/v1/blobs/{}?offset=0", fx.blob_upload),
            Some(json!(BLOB_CHUNK)),
        ),
        ("GET", "/v1/blobs/{blob_id}/upload", _) => {
            (format!("/v1/blobs/{}/upload", fx.blob_upload), None)
        }
        ("DELETE", "/v1/blobs/{blob_id}", _) => (format!("/v1/blobs/{}", fx.blob_abandon[i]), None),
        ("POST", "/v1/blobs/{blob_id}/complete", _) => (
            format!("/v1/blobs/{}/complete", fx.blob_ready.0),
            Some(json!({"sha256": fx.blob_ready.1})),
        ),
        ("GET", "/v1/blobs/{blob_id}", _) => (format!("/v1/blobs/{}", fx.blob_done), None),
        ("POST", "/v1/logout", _) => (r.path.to_owned(), None),
        other => panic!("no request for matrix row {other:?}: add one to request()"),
    };
    (method, path, body)
}

impl Fixtures {
    fn token(&self, i: usize) -> Option<&str> {
        match CALLERS[i] {
            Caller::Role(_) => Some(&self.users[i].token),
            Caller::NoSession => None,
            Caller::BadToken => Some("wt_this-token-was-never-issued-by-the-server-000000000"),
        }
    }
}

/// `{"error": {"code": "...", "message": "..."}}`.
fn error_shape(body: &Value) -> Result<&str, String> {
    let code = body["error"]["code"]
        .as_str()
        .ok_or_else(|| format!("no error.code in {body}"))?;
    body["error"]["message"]
        .as_str()
        .ok_or_else(|| format!("no error.message in {body}"))?;
    Ok(code)
}

/// Check one answer against its expectation; `Err` describes the mismatch.
fn check(expect: E, status: StatusCode, body: &Value, json_errors: bool) -> Result<(), String> {
    let want_error = |want: StatusCode, code: &str| -> Result<(), String> {
        if status != want {
            return Err(format!("expected {want} {code}, got {status}: {body}"));
        }
        match error_shape(body)? {
            c if c == code => Ok(()),
            c => Err(format!("expected error code {code}, got {c}: {body}")),
        }
    };
    let outcome = match expect {
        E::Ok if status.is_success() => Ok(()),
        E::Ok => Err(format!("expected success, got {status}: {body}")),
        E::Open
            if status == StatusCode::UNAUTHORIZED
                || status == StatusCode::FORBIDDEN
                || status.is_server_error() =>
        {
            Err(format!(
                "expected an answer other than 401/403/5xx, got {status}: {body}"
            ))
        }
        E::Open => Ok(()),
        U => want_error(StatusCode::UNAUTHORIZED, "unauthenticated"),
        F => want_error(StatusCode::FORBIDDEN, "forbidden"),
        N => want_error(StatusCode::NOT_FOUND, "not_found"),
        I => want_error(StatusCode::BAD_REQUEST, "invalid_request"),
    };
    outcome?;
    if status.is_server_error() {
        return Err(format!("server error {status}: {body}"));
    }
    if json_errors && status.is_client_error() {
        error_shape(body)?;
    }
    Ok(())
}

#[tokio::test]
async fn every_route_with_every_role() {
    let fx = setup().await;
    let mut failures = String::new();
    let mut calls = 0;
    for r in MATRIX {
        for (i, caller) in CALLERS.iter().enumerate() {
            let (method, path, body) = request(&fx, r, i);
            let (status, answer) = send(
                &fx.http,
                method,
                &format!("{}{path}", fx.server.url),
                fx.token(i),
                body,
            )
            .await;
            calls += 1;
            // axum's WebSocket upgrade rejection (no upgrade headers) is not in the API's
            // error shape; everything else is.
            let json_errors = r.path != "/v1/ws" || status == StatusCode::UNAUTHORIZED;
            if let Err(e) = check(r.expect[i], status, &answer, json_errors) {
                let _ = writeln!(
                    failures,
                    "{} {} [{}] as {:?}: {e}",
                    r.method, path, r.case, caller
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix mismatches:\n{failures}"
    );
    assert_eq!(calls, MATRIX.len() * CALLERS.len());

    // Side effects match the table: only the admin's destructive calls took effect.
    for (i, c) in CALLERS.iter().enumerate() {
        let admin = *c == Caller::Role(Role::Admin);
        let u = fx
            .server
            .services
            .store
            .user_by_name(&fx.pending[i].parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            u.status == ward_proto::UserStatus::Suspended,
            admin,
            "suspend target of {c:?}"
        );
        let u = fx
            .server
            .services
            .store
            .user_by_name(&fx.suspended[i].parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            u.status == ward_proto::UserStatus::Active,
            admin,
            "reactivate target of {c:?}"
        );
        let d = fx
            .server
            .services
            .store
            .device(fx.devices[i].parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            d.status == ward_proto::DeviceStatus::Revoked,
            admin,
            "admin revoke target of {c:?}"
        );
    }
    let d = fx
        .server
        .services
        .store
        .device(fx.target.device_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        d.status,
        ward_proto::DeviceStatus::Active,
        "another user's device must survive the own-device route"
    );
    // The logout row ended every role's session.
    for u in &fx.users {
        let (s, b) = u.get("/v1/me").await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{} after logout: {b}",
            u.username
        );
    }
}

/// The `(METHOD, path)` pairs of the matrix.
fn matrix_routes() -> BTreeSet<(String, String)> {
    MATRIX
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect()
}

#[tokio::test]
async fn matrix_covers_every_openapi_operation() {
    let server = TestServer::start().await;
    let (s, doc) = send(
        &server.client(),
        Method::GET,
        &format!("{}/v1/openapi.json", server.url),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("openapi paths") {
        for (method, _) in item.as_object().unwrap() {
            if [
                "get", "post", "put", "patch", "delete", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(
        documented.len() >= 30,
        "suspiciously few operations: {documented:?}"
    );
    let table = matrix_routes();
    let missing: Vec<_> = documented.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "OpenAPI operations without a row in the authorization MATRIX: {missing:?}"
    );
    let undocumented: Vec<_> = table
        .difference(&documented)
        .filter(|(m, p)| !NOT_IN_OPENAPI.contains(&(m.as_str(), p.as_str())))
        .collect();
    assert!(
        undocumented.is_empty(),
        "MATRIX rows for routes the OpenAPI description does not list: {undocumented:?}"
    );
    server.stop().await;
}

/// Parse the router's `.route("path", get(..).post(..))` calls from its source, so a route
/// added to the router (even one left out of the OpenAPI description) fails this test.
fn router_routes() -> BTreeSet<(String, String)> {
    let src = include_str!("../src/http.rs");
    let start = src
        .find("Router::new()")
        .expect("router construction in http.rs");
    let src = &src[start..];
    let end = src.find(".fallback(").unwrap_or(src.len());
    let mut out = BTreeSet::new();
    for chunk in src[..end].split(".route(").skip(1) {
        let chunk = chunk.trim_start();
        let chunk = chunk.strip_prefix('"').expect("route path literal");
        let (path, rest) = chunk.split_once('"').unwrap();
        let mut found = false;
        for m in ["get", "post", "put", "patch", "delete"] {
            let pat = format!("{m}(");
            let mut from = 0;
            while let Some(pos) = rest[from..].find(&pat) {
                let at = from + pos;
                let before = rest[..at].chars().last().unwrap_or(' ');
                if !(before.is_alphanumeric() || before == '_') {
                    out.insert((m.to_uppercase(), path.to_owned()));
                    found = true;
                }
                from = at + pat.len();
            }
        }
        assert!(found, "could not read the methods of route {path}");
    }
    out
}

#[test]
fn matrix_covers_every_router_route() {
    let routes = router_routes();
    assert!(
        routes.len() >= 30,
        "suspiciously few routes parsed: {routes:?}"
    );
    let table = matrix_routes();
    let missing: Vec<_> = routes.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "routes in http.rs without a row in the authorization MATRIX: {missing:?}"
    );
    let stale: Vec<_> = table.difference(&routes).collect();
    assert!(
        stale.is_empty(),
        "MATRIX rows for routes http.rs does not serve: {stale:?}"
    );
}

/// The WebSocket route for real: every role upgrades (101); no session or a bad token is
/// refused with 401 before the upgrade.
#[tokio::test]
async fn websocket_upgrade_needs_a_session_and_any_role() {
    let server = TestServer::start().await;
    let ws_url = format!("{}/v1/ws", server.url.replacen("http", "ws", 1));
    for role in Role::ALL {
        let u = server.enroll(&format!("ws-{}", role.as_str()), role).await;
        let mut req = ws_url.as_str().into_client_request().unwrap();
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", u.token).parse().unwrap(),
        );
        let (mut ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .unwrap_or_else(|e| panic!("{role} could not open the WebSocket: {e}"));
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        ws.close(None).await.unwrap();
    }
    for token in [None, Some("wt_never-issued")] {
        let mut req = ws_url.as_str().into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("Authorization", format!("Bearer {t}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(error_shape(&body).unwrap(), "unauthenticated");
            }
            Err(e) => panic!("expected an HTTP 401, got {e}"),
            Ok(_) => panic!("WebSocket opened with token {token:?}"),
        }
    }
    server.stop().await;
}

/// Suspending an account or revoking a device ends access to every session route at once.
#[tokio::test]
async fn suspended_users_and_revoked_devices_are_locked_out_everywhere() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    let phone = nurse.login_new_device(server.now()).await;
    let physician = server.enroll("physician", Role::Physician).await;
    // Admins cannot suspend themselves.
    let (s, b) = admin.post("/v1/admin/users/admin/suspend", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    let (s, b) = admin
        .post(
            &format!("/v1/admin/devices/{}/revoke", phone.device_id),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = admin
        .post(
            &format!("/v1/admin/devices/{}/revoke", phone.device_id),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "revoking twice: {b}");
    let (s, b) = phone.get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked device: {b}");
    let (s, _) = nurse.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK, "the nurse's other device is unaffected");
    let (s, b) = physician.get("/v1/revocations").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        b["revoked_devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == phone.device_id.as_str()),
        "{b}"
    );

    let (s, b) = admin.post("/v1/admin/users/nurse/suspend", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for path in [
        "/v1/me",
        "/v1/devices",
        "/v1/sync",
        "/v1/conversations",
        "/v1/revocations",
    ] {
        let (s, b) = nurse.get(path).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} after suspension: {b}");
        assert_eq!(error_shape(&b).unwrap(), "unauthenticated");
    }
    let (s, b) = admin
        .post("/v1/admin/users/nurse/reactivate", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Reactivation does not revive the sessions suspension ended.
    let (s, _) = nurse.get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

/// Suspension is a pause, not a state change of its own: lifting it must return an account
/// to where it was. A user who never enrolled must still be able to enroll afterwards.
///
/// Fails today: `reactivate_user` (service/directory.rs) sets every suspended user to
/// `Active`, so a never-enrolled user becomes "active" without password or TOTP: login is
/// impossible (no password hash), enrollment is refused (the user is not pending) and so is a
/// new enrollment code ("the user has already enrolled"). The account is stuck for good.
#[tokio::test]
async fn reactivating_a_never_enrolled_user_keeps_it_enrollable() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    server.create_user("late", Role::Nurse).await;
    let (s, b) = admin.post("/v1/admin/users/late/suspend", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = admin
        .post("/v1/admin/users/late/reactivate", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["status"], "pending",
        "a never-enrolled user must return to pending: {b}"
    );

    // The administrator can hand out a code again, and it enrolls the user.
    let (s, b) = admin
        .post("/v1/admin/users/late/enrollment-code", json!({}))
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a new enrollment code for the reactivated user: {b}"
    );
    let code = b["enrollment_code"].as_str().unwrap().to_owned();
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let (s, b) = send(
        &server.client(),
        Method::POST,
        &format!("{}/v1/enroll", server.url),
        None,
        Some(json!({
            "username": "late", "enrollment_code": code, "password": PASSWORD,
            "device": {"name": "d", "signature_key": b64(key.verifying_key().as_bytes())},
        })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the reactivated user enrolls: {b}");
}
