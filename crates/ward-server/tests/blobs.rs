//! Attachment blobs end to end over real HTTP (ADR 0017, contract in `ward_proto::blobs`):
//! resumable uploads in parts, completion with the ciphertext hash, ranged downloads, every
//! server-side bad input of issue 5, the organisation's size limit and quota, message
//! references, retention / legal hold / erasure of blobs, the collector, and that neither the
//! blob store nor the database holds plaintext.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ward_proto::Role;
use ward_server::config::RawConfig;
use ward_server::service::Actor;
use ward_testing::{ServerOptions, TestServer, TestUser, b64};

const XWING: u16 = 0x004D;
/// Small parts, so a few KiB exercise multi-part uploads and ranges across parts.
const PART: usize = 4096;
/// Appears in every plaintext; must never appear on the server's disk.
const MARKER: &[u8] = b"WARD-PLAINTEXT-MARKER-7c41e9";

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn start(manual_clock: bool) -> TestServer {
    start_on(manual_clock, None).await
}

async fn start_on(manual_clock: bool, database_url: Option<String>) -> TestServer {
    let mut raw = RawConfig::default();
    raw.limits.requests_per_second = 100_000;
    raw.limits.request_burst = 100_000;
    raw.limits.logins_per_minute = 100_000;
    raw.blobs.part_size_bytes = Some(PART as u64);
    TestServer::start_with(ServerOptions {
        manual_clock,
        raw: Some(raw),
        database_url,
        ..Default::default()
    })
    .await
}

/// A fresh, migrated schema of the PostgreSQL test database (`WARD_TEST_POSTGRES_URL`,
/// default the local one); returns the URL selecting it and the schema name. `None` when
/// `WARD_TEST_POSTGRES=skip`.
async fn postgres_schema() -> Option<(String, String)> {
    if std::env::var("WARD_TEST_POSTGRES").as_deref() == Ok("skip") {
        return None;
    }
    let url = std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("ward_blobs_{}", uuid::Uuid::new_v4().simple());
    let store = ward_store_postgres::PgStore::connect_isolated(&url, &schema)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL test database unreachable ({e}); start it, point \
                 WARD_TEST_POSTGRES_URL at one, or set WARD_TEST_POSTGRES=skip"
            )
        });
    store.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((format!("{url}{sep}options[search_path]={schema}"), schema))
}

/// A group of `a` with `b` added (Welcome to `b`'s device): both devices are members.
async fn group(a: &TestUser, b: &TestUser) -> String {
    let (s, r) = a
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": XWING}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let conv = r["conversation_id"].as_str().unwrap().to_owned();
    let (s, r) = a
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({
                "client_message_id": new_id(), "kind": "commit", "epoch": 0,
                "payload": b64(b"commit-add"), "add_users": [b.user_id],
                "welcome": {"payload": b64(b"welcome"), "devices": [b.device_id]},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    conv
}

/// Ciphertext of a plaintext full of [`MARKER`], made by the client library.
fn ciphertext(len: usize) -> Vec<u8> {
    let plain: Vec<u8> = MARKER.iter().copied().cycle().take(len).collect();
    let mut enc = ward_core::attachment::Encryptor::new(&mut rand::rngs::OsRng, 1024).unwrap();
    let mut out = Vec::new();
    enc.push(&plain, &mut out).unwrap();
    let blob = enc.finish(&mut out).unwrap();
    assert_eq!(
        blob.ciphertext_sha256,
        <[u8; 32]>::from(Sha256::digest(&out))
    );
    out
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn error_message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn create(u: &TestUser, conv: &str, size: u64) -> (StatusCode, Value) {
    u.post(
        &format!("/v1/conversations/{conv}/blobs"),
        json!({ "size": size }),
    )
    .await
}

async fn put(u: &TestUser, blob: &str, offset: u64, data: &[u8]) -> (StatusCode, Value) {
    let r = u
        .http
        .put(format!("{}/v1/blobs/{blob}?offset={offset}", u.base))
        .bearer_auth(&u.token)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn complete(u: &TestUser, blob: &str, sha: &str) -> (StatusCode, Value) {
    u.post(
        &format!("/v1/blobs/{blob}/complete"),
        json!({ "sha256": sha }),
    )
    .await
}

async fn delete(u: &TestUser, blob: &str) -> (StatusCode, Value) {
    let r = u
        .http
        .delete(format!("{}/v1/blobs/{blob}", u.base))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn download(
    u: &TestUser,
    blob: &str,
    range: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = u
        .http
        .get(format!("{}/v1/blobs/{blob}", u.base))
        .bearer_auth(&u.token);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.bytes().await.unwrap().to_vec())
}

/// Upload `data` whole (parts of [`PART`]) and complete it; returns the blob id.
async fn upload(u: &TestUser, conv: &str, data: &[u8]) -> String {
    let (s, b) = create(u, conv, data.len() as u64).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["blob_id"].as_str().unwrap().to_owned();
    for (i, chunk) in data.chunks(PART).enumerate() {
        let (s, b) = put(u, &id, (i * PART) as u64, chunk).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, b) = complete(u, &id, &sha_hex(data)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "complete");
    id
}

async fn send_with_blobs(u: &TestUser, conv: &str, blobs: &[&str]) -> (StatusCode, Value) {
    u.post(
        &format!("/v1/conversations/{conv}/envelopes"),
        json!({
            "client_message_id": new_id(), "kind": "application", "epoch": 1,
            "payload": b64(b"opaque mls ciphertext"), "blobs": blobs,
        }),
    )
    .await
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Blob ids with objects in the local blob directory.
fn stored_blobs(server: &TestServer) -> Vec<String> {
    let dir = server.data_dir.path().join("blobs");
    let mut ids: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !files(&dir.join(n)).is_empty())
        .collect();
    ids.sort();
    ids
}

async fn audit_actions(server: &TestServer) -> Vec<(String, Value)> {
    let page = server
        .services
        .audit
        .page(&Actor::cli(), 0, 1000)
        .await
        .unwrap();
    page.records
        .into_iter()
        .map(|r| (r.action, r.details))
        .collect()
}

#[tokio::test]
async fn upload_resume_complete_and_ranged_download() {
    let server = start(false).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let data = ciphertext(3 * PART + 500);
    let size = data.len() as u64;

    let (s, b) = create(&alice, &conv, size).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (
            b["state"].as_str(),
            b["received"].as_u64(),
            b["part_size"].as_u64()
        ),
        (Some("uploading"), Some(0), Some(PART as u64))
    );
    let id = b["blob_id"].as_str().unwrap().to_owned();

    // First part, then the "interrupted" client asks where to resume.
    let (s, b) = put(&alice, &id, 0, &data[..PART]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["received"], PART);
    let (s, b) = alice.get(&format!("/v1/blobs/{id}/upload")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["received"], PART);

    // A chunk out of order and a replayed chunk: 409 naming the expected offset.
    for offset in [2 * PART as u64, 0] {
        let (s, b) = put(&alice, &id, offset, &data[..PART]).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert!(
            error_message(&b).contains(&format!("expects offset {PART}")),
            "{b}"
        );
    }
    // Oversized: more than one part, or past the announced size. 413 naming the limit.
    let (s, b) = put(&alice, &id, PART as u64, &data[PART..3 * PART]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert!(error_message(&b).contains(&PART.to_string()), "{b}");
    // Only the uploading device writes; nobody downloads an upload in progress.
    let (s, b) = put(&bob, &id, PART as u64, &data[PART..2 * PART]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _, _) = download(&bob, &id, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Completing early: 422 naming both counts.
    let (s, b) = complete(&alice, &id, &sha_hex(&data)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        error_message(&b).contains(&format!("{PART} of {size} bytes")),
        "{b}"
    );

    // The rest, in parts of uneven size (a client may send less than part_size).
    let (s, _) = put(&alice, &id, PART as u64, &data[PART..2 * PART - 7]).await;
    assert_eq!(s, StatusCode::OK);
    let mut at = 2 * PART - 7;
    while at < data.len() {
        let end = (at + PART).min(data.len());
        let (s, b) = put(&alice, &id, at as u64, &data[at..end]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        at = end;
    }
    // Past the announced size once everything arrived.
    let (s, b) = put(&alice, &id, size, b"x").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    let (s, b) = complete(&alice, &id, &sha_hex(&data)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "complete");
    // A retried completion answers the same; a write after completion is refused.
    let (s, _) = complete(&alice, &id, &sha_hex(&data)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = put(&alice, &id, size, b"x").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = delete(&alice, &id).await;
    assert_eq!(s, StatusCode::CONFLICT, "complete blobs follow retention");

    // Whole download by the other member.
    let (s, h, body) = download(&bob, &id, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-length"], size.to_string().as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(body == data, "byte-exact round trip");
    // Ranges: inside one part, across parts, open-ended, suffix.
    for (range, from, to) in [
        ("bytes=10-19", 10, 20),
        ("bytes=4000-8300", 4000, 8301),
        (
            &format!("bytes={}-", PART * 3) as &str,
            PART * 3,
            data.len(),
        ),
        ("bytes=-100", data.len() - 100, data.len()),
    ] {
        let (s, h, body) = download(&bob, &id, Some(range)).await;
        assert_eq!(s, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            h["content-range"].to_str().unwrap(),
            format!("bytes {from}-{}/{size}", to - 1)
        );
        assert_eq!(body, data[from..to], "{range}");
    }
    let (s, h, _) = download(&bob, &id, Some(&format!("bytes={size}-"))).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes */{size}")
    );

    // Missing blob: 404 everywhere.
    let missing = new_id();
    let (s, _, _) = download(&bob, &missing, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = put(&alice, &missing, 0, b"x").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = complete(&alice, &missing, &sha_hex(b"x")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Audited per device, ids and sizes only.
    let audit = audit_actions(&server).await;
    for action in [
        "blob.upload_create",
        "blob.upload_complete",
        "blob.download",
    ] {
        let (_, d) = audit.iter().find(|(a, _)| a == action).unwrap();
        assert_eq!(d["size"], size, "{action}");
        assert_eq!(d["conversation_id"], conv.as_str(), "{action}");
    }
    server.stop().await;
}

#[tokio::test]
async fn non_members_cannot_upload_or_download() {
    let server = start(false).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let carol = server.enroll("carol", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let data = ciphertext(100);
    let id = upload(&alice, &conv, &data).await;

    // Carol is not a member: her device may not download (403) and the conversation is
    // not confirmed to her (404).
    let (s, _, body) = download(&carol, &id, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(!contains(&body, &data[..32]));
    let (s, b) = create(&carol, &conv, 10).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    // Bob's second device was never welcomed into the group: not a member device.
    let phone = bob.login_new_device(server.now()).await;
    let (s, _, _) = download(&phone, &id, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = create(&phone, &conv, 10).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // The uploader's resume endpoint is the uploader's.
    let (s, _) = bob.get(&format!("/v1/blobs/{id}/upload")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Without a session: 401.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/blobs/{id}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn hash_mismatch_discards_the_upload() {
    let server = start(false).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let data = ciphertext(PART + 10);
    let (_, b) = create(&alice, &conv, data.len() as u64).await;
    let id = b["blob_id"].as_str().unwrap().to_owned();
    put(&alice, &id, 0, &data[..PART]).await;
    put(&alice, &id, PART as u64, &data[PART..]).await;
    assert_eq!(stored_blobs(&server), vec![id.clone()]);

    let (s, b) = complete(&alice, &id, "not hex").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = complete(&alice, &id, &sha_hex(b"something else")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(error_message(&b).contains("does not match"), "{b}");
    // Discarded: no record, no partial file left behind.
    let (s, _) = alice.get(&format!("/v1/blobs/{id}/upload")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(stored_blobs(&server).is_empty());
    let audit = audit_actions(&server).await;
    let (_, d) = audit
        .iter()
        .find(|(a, _)| a == "blob.upload_discard")
        .unwrap();
    assert_eq!(d["reason"], "hash_mismatch");
    server.stop().await;
}

#[tokio::test]
async fn a_truncated_chunk_stores_nothing_and_the_upload_resumes() {
    let server = start(false).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let data = ciphertext(2 * PART);
    let (_, b) = create(&alice, &conv, data.len() as u64).await;
    let id = b["blob_id"].as_str().unwrap().to_owned();
    put(&alice, &id, 0, &data[..PART]).await;

    // The connection drops after 1000 of 4096 announced bytes.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PUT /v1/blobs/{id}?offset={PART} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/octet-stream\r\ncontent-length: {PART}\r\n\r\n",
        server.addr, alice.token
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&data[PART..PART + 1000]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    drop(tcp);

    // Nothing of the broken chunk counts; the upload resumes where it was.
    let (s, b) = alice.get(&format!("/v1/blobs/{id}/upload")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["received"], PART);
    for (i, chunk) in data[PART..].chunks(PART).enumerate() {
        let (s, b) = put(&alice, &id, ((i + 1) * PART) as u64, chunk).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, b) = complete(&alice, &id, &sha_hex(&data)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, _, body) = download(&bob, &id, None).await;
    assert!(body == data);

    // An upload abandoned by its device leaves nothing behind.
    let (_, b) = create(&alice, &conv, 10).await;
    let gone = b["blob_id"].as_str().unwrap().to_owned();
    put(&alice, &gone, 0, b"12345").await;
    let (s, _) = delete(&bob, &gone).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = delete(&alice, &gone).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(stored_blobs(&server), vec![id]);
    server.stop().await;
}

#[tokio::test]
async fn size_limit_and_quota_come_from_the_organisation_policy() {
    let server = start(false).await;
    let admin = server.enroll("admin", Role::Admin).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;

    let (s, p) = admin.get("/v1/admin/policy").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["attachment_max_bytes"], 2u64 << 30);
    assert_eq!(p["attachment_quota_bytes"], 100u64 << 30);
    let (s, b) = create(&alice, &conv, (2u64 << 30) + 1).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert!(error_message(&b).contains(&(2u64 << 30).to_string()), "{b}");
    let (s, b) = create(&alice, &conv, 0).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // Bounds are checked; the limit may not exceed the quota.
    let put_policy = |body: Value| {
        let admin = &admin;
        async move {
            let r = admin
                .http
                .put(format!("{}/v1/admin/policy", admin.base))
                .bearer_auth(&admin.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = put_policy(json!({"attachment_max_bytes": 10})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(error_message(&b).contains("attachment_max_bytes"), "{b}");
    let (s, b) = put_policy(json!({"attachment_quota_bytes": 1u64 << 20})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = put_policy(
        json!({"attachment_max_bytes": 600 * 1024, "attachment_quota_bytes": 1u64 << 20}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["attachment_max_bytes"], 600 * 1024);

    // The refused types: executables by default, readable by any member; validated and
    // normalised when set.
    let (s, p) = bob.get("/v1/attachment-policy").await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["max_bytes"], 600 * 1024);
    let exts: Vec<&str> = p["denied_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(exts.contains(&"exe") && exts.contains(&"bat"), "{p}");
    assert!(
        p["denied_media_types"]
            .as_array()
            .unwrap()
            .contains(&json!("application/x-msdownload")),
        "{p}"
    );
    for (body, needle) in [
        (
            json!({"attachment_denied_media_types": ["pdf"]}),
            "refused media type \"pdf\" is not a media type",
        ),
        (
            json!({"attachment_denied_extensions": ["e x e"]}),
            "is not a file extension",
        ),
        (
            json!({"attachment_denied_extensions": vec!["a"; 201]}),
            "at most 200",
        ),
    ] {
        let (s, b) = put_policy(body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert!(error_message(&b).contains(needle), "{b}");
    }
    let (s, b) = put_policy(json!({
        "attachment_denied_media_types": ["Application/PDF", "application/pdf"],
        "attachment_denied_extensions": [".EXE", "docm"],
    }))
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, p) = alice.get("/v1/attachment-policy").await;
    assert_eq!(p["denied_media_types"], json!(["application/pdf"]));
    assert_eq!(p["denied_extensions"], json!(["docm", "exe"]));

    let (s, b) = create(&alice, &conv, 600 * 1024 + 1).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert!(error_message(&b).contains("614400"), "{b}");
    let (s, b) = create(&alice, &conv, 600 * 1024).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let first = b["blob_id"].as_str().unwrap().to_owned();
    // Uploads count with their announced size: the second does not fit.
    let (s, b) = create(&bob, &conv, 500 * 1024).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(error_message(&b).contains("quota of 1048576 bytes"), "{b}");
    // Abandoning the first frees its share.
    let (s, _) = delete(&alice, &first).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = create(&bob, &conv, 500 * 1024).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    server.stop().await;
}

#[tokio::test]
async fn messages_reference_complete_blobs_of_their_conversation() {
    let server = start(false).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let other = group(&bob, &alice).await;
    let blob = upload(&alice, &conv, &ciphertext(10)).await;
    let elsewhere = upload(&bob, &other, &ciphertext(10)).await;
    let (_, b) = create(&alice, &conv, 10).await;
    let uploading = b["blob_id"].as_str().unwrap().to_owned();
    let missing = new_id();

    for (blobs, want) in [
        (vec![missing.as_str()], "does not exist"),
        (vec![elsewhere.as_str()], "another conversation"),
        (vec![uploading.as_str()], "still uploading"),
    ] {
        let (s, b) = send_with_blobs(&alice, &conv, &blobs).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(error_message(&b).contains(want), "{b}");
    }
    let (s, b) = send_with_blobs(&alice, &conv, &[&blob, &blob]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let too_many: Vec<String> = (0..=ward_proto::MAX_BLOBS_PER_MESSAGE)
        .map(|_| new_id())
        .collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let (s, b) = send_with_blobs(&alice, &conv, &refs).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    let (s, b) = send_with_blobs(&alice, &conv, &[&blob]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The send's audit record lists the blob ids.
    let audit = audit_actions(&server).await;
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "message.send" && d["blobs"][0] == blob.as_str())
    );
    server.stop().await;
}

/// Neither the blob directory nor the database (any file in the data directory) holds the
/// plaintext of an uploaded attachment; the ciphertext is there.
#[tokio::test]
async fn the_server_stores_no_plaintext() {
    let server = start(false).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let data = ciphertext(3 * PART);
    let blob = upload(&alice, &conv, &data).await;
    let (s, _) = send_with_blobs(&alice, &conv, &[&blob]).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = download(&bob, &blob, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body == data);
    // Checkpoint the WAL so the database file holds everything written.
    server.services.audit.checkpoint().await.unwrap();
    let mut saw_ciphertext = false;
    for f in files(server.data_dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, MARKER),
            "plaintext found in {}",
            f.display()
        );
        saw_ciphertext |= contains(&bytes, &data[100..164]);
    }
    assert!(saw_ciphertext, "the ciphertext itself is stored");
    server.stop().await;
}

#[tokio::test]
async fn retention_hold_erasure_and_the_collector_apply_to_blobs() {
    retention_scenario(start(true).await).await;
}

#[tokio::test]
async fn retention_hold_erasure_and_the_collector_apply_to_blobs_on_postgres() {
    let Some((url, schema)) = postgres_schema().await else {
        return;
    };
    retention_scenario(start_on(true, Some(url)).await).await;
    let base = std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    ward_store_postgres::PgStore::drop_schema(&base, &schema)
        .await
        .unwrap();
}

async fn retention_scenario(server: TestServer) {
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let held_conv = group(&alice, &bob).await;
    let conv = group(&bob, &alice).await;
    let exists = |id: &str| {
        let store = server.services.store.clone();
        let id: uuid::Uuid = id.parse().unwrap();
        async move { store.blob(id).await.unwrap().is_some() }
    };

    // Everything is sent now: sessions end when the clock moves a day.
    // Erasure: bob's own blob, and one shared by bob's and alice's messages.
    let shared = upload(&bob, &conv, &ciphertext(70)).await;
    let own = upload(&bob, &conv, &ciphertext(80)).await;
    for (u, blobs) in [(&bob, [&shared]), (&alice, [&shared]), (&bob, [&own])] {
        let (s, b) = send_with_blobs(u, &conv, &blobs.map(String::as_str)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    // Retention: one sent in a conversation under legal hold, one in a normal conversation.
    let held = upload(&alice, &held_conv, &ciphertext(50)).await;
    let purged = upload(&alice, &conv, &ciphertext(60)).await;
    for (c, blob) in [(&held_conv, &held), (&conv, &purged)] {
        let (s, b) = send_with_blobs(&alice, c, &[blob]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    // Collector: an abandoned upload and a blob never sent.
    let (_, b) = create(&alice, &conv, 100).await;
    let abandoned = b["blob_id"].as_str().unwrap().to_owned();
    put(&alice, &abandoned, 0, b"partial").await;
    let unsent = upload(&alice, &conv, &ciphertext(90)).await;

    let r = server
        .services
        .request_erasure(
            &Actor::cli(),
            ward_proto::ErasureRequestBody { user: "bob".into() },
        )
        .await
        .unwrap();
    assert_eq!(r.envelopes_erased, 2, "{r:?}");
    assert!(!exists(&own).await, "erased with bob's message");
    assert!(exists(&shared).await, "alice's message still references it");
    let audit = audit_actions(&server).await;
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "blob.delete" && d["reason"] == "erasure_request")
    );

    // The collector: nothing before 24 hours, then the abandoned upload and the unsent blob;
    // referenced blobs stay.
    server.advance(time::Duration::hours(23));
    let r = server.services.collect_blobs().await.unwrap();
    assert_eq!((r.stale_uploads, r.unreferenced), (0, 0));
    server.advance(time::Duration::hours(2));
    let r = server.services.collect_blobs().await.unwrap();
    assert_eq!((r.stale_uploads, r.unreferenced), (1, 1));
    assert!(!exists(&abandoned).await && !exists(&unsent).await);
    let mut want = vec![held.clone(), purged.clone(), shared.clone()];
    want.sort();
    assert_eq!(stored_blobs(&server), want);
    let audit = audit_actions(&server).await;
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|(a, _)| a == "blob.collect")
        .map(|(_, d)| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["stale_upload", "unreferenced"]);

    // Retention with a one-day lifespan: the purged messages' blobs go, records and objects;
    // the blob of the held conversation stays.
    server
        .services
        .add_hold(
            &Actor::cli(),
            ward_proto::AddHoldRequest {
                conversation: Some(held_conv.parse().unwrap()),
                reason: "litigation".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    server
        .services
        .set_retention(
            &Actor::cli(),
            ward_proto::SetRetentionRequest {
                message_lifespan: Some("1d".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let report = server
        .services
        .run_retention(&Actor::system())
        .await
        .unwrap();
    assert_eq!(report.envelopes_deleted, 2, "{report:?}");
    assert_eq!(report.envelopes_kept_hold, 1, "{report:?}");
    assert!(!exists(&purged).await && !exists(&shared).await);
    assert!(exists(&held).await);
    assert_eq!(stored_blobs(&server), vec![held]);
    let audit = audit_actions(&server).await;
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "blob.delete" && d["reason"] == "message_lifespan")
    );
    server.stop().await;
}

/// With a journal key installed and journal retention longer than the message lifespan, a
/// blob outlives its purged message as long as the journal copy (which holds its key) is
/// kept, and goes with the journal copy.
#[tokio::test]
async fn journal_copies_keep_their_blobs_past_the_message_lifespan() {
    let server = start(true).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let key = server
        .services
        .set_journal_key(&Actor::cli(), vec![5; 1216])
        .await
        .unwrap();
    let blob = upload(&alice, &conv, &ciphertext(64)).await;
    let (s, b) = alice
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({
                "client_message_id": new_id(), "kind": "application", "epoch": 1,
                "payload": b64(b"opaque mls ciphertext"), "blobs": [blob],
                "journal": {"key_id": key.key_id, "ciphertext": b64(&[9u8; 2000])},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    server
        .services
        .set_retention(
            &Actor::cli(),
            ward_proto::SetRetentionRequest {
                message_lifespan: Some("1d".into()),
                journal_retention: Some("30d".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let exists = || {
        let store = server.services.store.clone();
        let id: uuid::Uuid = blob.parse().unwrap();
        async move { store.blob(id).await.unwrap().is_some() }
    };

    server.advance(time::Duration::days(2));
    let r = server
        .services
        .run_retention(&Actor::system())
        .await
        .unwrap();
    assert_eq!((r.envelopes_deleted, r.journal_deleted), (1, 0), "{r:?}");
    assert!(exists().await, "the journal copy still needs the blob");
    assert_eq!(stored_blobs(&server), std::slice::from_ref(&blob));

    server.advance(time::Duration::days(29));
    let r = server
        .services
        .run_retention(&Actor::system())
        .await
        .unwrap();
    assert_eq!((r.envelopes_deleted, r.journal_deleted), (0, 1), "{r:?}");
    assert!(!exists().await, "released with the journal copy");
    assert!(stored_blobs(&server).is_empty());
    let audit = audit_actions(&server).await;
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "blob.delete" && d["reason"] == "journal_retention"),
        "{audit:?}"
    );
    assert!(
        !audit
            .iter()
            .any(|(a, d)| a == "blob.delete" && d["reason"] == "message_lifespan"),
        "the message's purge did not delete the blob"
    );
    server.stop().await;
}

/// Objects left without a record (a failed deletion) are swept once older than the grace
/// period; blobs with a record and objects that are not blobs stay.
#[tokio::test]
async fn orphaned_objects_are_swept_after_the_grace_period() {
    let server = start(true).await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let kept = upload(&alice, &conv, &ciphertext(40)).await;
    let orphan = upload(&alice, &conv, &ciphertext(2 * PART + 3)).await;
    let foreign = server.data_dir.path().join("blobs").join("not-a-blob");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("note"), b"operator's file").unwrap();
    assert!(
        server
            .services
            .store
            .delete_blob(orphan.parse().unwrap())
            .await
            .unwrap()
    );
    assert!(stored_blobs(&server).iter().any(|b| b == &orphan));

    let r = server.services.sweep_orphaned_objects().await.unwrap();
    assert_eq!(
        (r.blobs_seen, r.orphans_removed),
        (2, 0),
        "inside the grace period"
    );
    server.advance(time::Duration::hours(25));
    let r = server.services.sweep_orphaned_objects().await.unwrap();
    assert_eq!((r.blobs_seen, r.orphans_removed), (2, 1));
    let left: Vec<String> = stored_blobs(&server)
        .into_iter()
        .filter(|b| b != "not-a-blob")
        .collect();
    assert_eq!(left, std::slice::from_ref(&kept));
    assert!(
        foreign.join("note").exists(),
        "objects that are not blobs stay"
    );
    let audit = audit_actions(&server).await;
    let swept: Vec<&Value> = audit
        .iter()
        .filter(|(a, d)| a == "blob.collect" && d["reason"] == "orphaned_objects")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(swept.len(), 1, "{audit:?}");
    let r = server.services.sweep_orphaned_objects().await.unwrap();
    assert_eq!((r.blobs_seen, r.orphans_removed), (1, 0));
}

/// moto's S3 server, installed on first use into a virtualenv under the cargo target
/// directory (`moto[server]==5.2.5` from PyPI) and killed when dropped.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MOTO: &str = "moto[server]==5.2.5";

/// The virtualenv's `moto_server`, installing it when absent (atomically: built under a
/// temporary name, renamed when complete, so an interrupted install is redone).
fn moto_server_binary() -> std::path::PathBuf {
    // target/debug/deps/blobs-… → target
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let venv = target.join("moto-5.2.5-venv");
    let bin = venv.join("bin").join("moto_server");
    if bin.exists() {
        return bin;
    }
    let tmp = target.join(format!("moto-5.2.5-venv.tmp-{}", std::process::id()));
    let run = |cmd: &mut std::process::Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("{what}: could not run {cmd:?}: {e} (is python3 installed?)")
        });
        assert!(
            out.status.success(),
            "{what} failed ({}); the S3 test needs PyPI access to install {MOTO}:\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&tmp),
        "creating the moto virtualenv",
    );
    run(
        std::process::Command::new(tmp.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            MOTO,
        ]),
        "pip install moto",
    );
    // The scripts' shebangs name the temporary directory, so after the rename the entry
    // point is run with the venv's own python (see `start_moto`).
    if std::fs::rename(&tmp, &venv).is_err() {
        // Another test process finished first; use its copy.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    bin
}

async fn start_moto() -> Moto {
    let bin = moto_server_binary();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Run the entry point with the venv's interpreter (the script's shebang names the
    // temporary directory it was installed in).
    let python = bin.parent().unwrap().join("python3");
    let child = std::process::Command::new(python)
        .arg(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Wait for the port (bounded: 60 s of connection attempts).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "moto_server did not open port {port} within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    moto
}

/// Keys of the objects under `prefix` in moto's bucket, and their bytes.
async fn s3_objects(moto: &Moto, bucket: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let http = reqwest::Client::new();
    let list = http
        .get(format!("{}/{bucket}?list-type=2&prefix={prefix}", moto.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out = Vec::new();
    for part in list.split("<Key>").skip(1) {
        let key = part.split("</Key>").next().unwrap().to_owned();
        let bytes = http
            .get(format!("{}/{bucket}/{key}", moto.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        out.push((key, bytes));
    }
    out
}

/// The S3 path against a real S3-compatible server (moto) on loopback: uploads in parts,
/// completion, ranged download, hash mismatch discarding the objects, abandoning an upload.
#[tokio::test]
async fn s3_backend_against_moto() {
    let moto = start_moto().await;
    let bucket = "ward-test";
    let r = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());

    let mut raw = RawConfig::default();
    raw.limits.requests_per_second = 100_000;
    raw.limits.request_burst = 100_000;
    raw.limits.logins_per_minute = 100_000;
    raw.blobs.part_size_bytes = Some(PART as u64);
    raw.blobs.backend = Some("s3".into());
    raw.blobs.bucket = Some(bucket.into());
    raw.blobs.endpoint = Some(moto.url.clone());
    raw.blobs.allow_http = true;
    raw.blobs.region = Some("us-east-1".into());
    raw.blobs.access_key_id = Some("testing".into());
    raw.blobs.secret_access_key = Some(ward_server::config::Secret("testing".into()));
    raw.blobs.prefix = Some("ward/blobs".into());
    let server = TestServer::start_with(ServerOptions {
        raw: Some(raw),
        ..Default::default()
    })
    .await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;

    let data = ciphertext(2 * PART + 123);
    let id = upload(&alice, &conv, &data).await;
    let objects = s3_objects(&moto, bucket, "ward/blobs/").await;
    assert_eq!(
        objects.len(),
        3,
        "one object per part: {:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    assert!(
        objects
            .iter()
            .all(|(k, _)| k.starts_with(&format!("ward/blobs/{id}/")))
    );
    assert!(
        objects.iter().all(|(_, b)| !contains(b, MARKER)),
        "no plaintext in S3"
    );
    let (s, _, body) = download(&bob, &id, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body == data);
    let (s, _, body) = download(&bob, &id, Some("bytes=4090-4200")).await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, data[4090..4201]);

    // A hash mismatch discards the objects in S3 too; so does abandoning an upload.
    let (_, b) = create(&alice, &conv, 10).await;
    let bad = b["blob_id"].as_str().unwrap().to_owned();
    put(&alice, &bad, 0, b"0123456789").await;
    let (s, _) = complete(&alice, &bad, &sha_hex(b"other")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, b) = create(&alice, &conv, 10).await;
    let abandoned = b["blob_id"].as_str().unwrap().to_owned();
    put(&alice, &abandoned, 0, b"01234").await;
    assert_eq!(
        s3_objects(&moto, bucket, &format!("ward/blobs/{abandoned}/"))
            .await
            .len(),
        1
    );
    let (s, _) = delete(&alice, &abandoned).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for gone in [&bad, &abandoned] {
        assert!(
            s3_objects(&moto, bucket, &format!("ward/blobs/{gone}/"))
                .await
                .is_empty()
        );
    }
    assert_eq!(s3_objects(&moto, bucket, "ward/blobs/").await.len(), 3);
    server.stop().await;
    drop(moto);
}

/// Peak resident memory of this process (server and client together), KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A 1 GiB blob up and down through the real server with the default 8 MiB parts: the
/// resident memory the transfer adds to this process (server and streaming test client
/// together, over the baseline of the debug test binary with the server started) stays
/// under 64 MiB.
/// A benchmark, not a timed test: `cargo test --release -p ward-server --test blobs --
/// --ignored one_gib` prints the throughput (recorded in docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: moves 2 GiB through loopback"]
async fn one_gib_round_trip_memory_and_throughput() {
    const GIB: usize = 1 << 30;
    let mut raw = RawConfig::default();
    raw.limits.requests_per_second = 100_000;
    raw.limits.request_burst = 100_000;
    raw.limits.logins_per_minute = 100_000;
    let server = TestServer::start_with(ServerOptions {
        raw: Some(raw),
        ..Default::default()
    })
    .await;
    let alice = server.enroll("alice", Role::Physician).await;
    let bob = server.enroll("bob", Role::Nurse).await;
    let conv = group(&alice, &bob).await;
    let (s, b) = create(&alice, &conv, GIB as u64).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["blob_id"].as_str().unwrap().to_owned();
    let part = b["part_size"].as_u64().unwrap() as usize;
    let before = peak_rss_kib();

    // One part of pseudo-random bytes (xorshift: incompressible), its first 8 bytes set to
    // the offset so every part differs; generated once, so the debug-built client's time
    // goes to the transfer.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut template = vec![0u8; part];
    for w in template.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        w.copy_from_slice(&state.to_le_bytes()[..w.len()]);
    }
    let mut hasher = Sha256::new();
    let started = std::time::Instant::now();
    let mut offset = 0;
    while offset < GIB {
        let n = part.min(GIB - offset);
        let mut buf = template[..n].to_vec();
        buf[..8].copy_from_slice(&(offset as u64).to_le_bytes());
        hasher.update(&buf);
        let (s, b) = put(&alice, &id, offset as u64, &buf).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        offset += n;
    }
    let sha = hex::encode(hasher.finalize());
    let (s, b) = complete(&alice, &id, &sha).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let up = started.elapsed();

    let started = std::time::Instant::now();
    let mut resp = bob
        .http
        .get(format!("{}/v1/blobs/{id}", bob.base))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut hasher = Sha256::new();
    let mut got = 0usize;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got += chunk.len();
        hasher.update(&chunk);
    }
    let down = started.elapsed();
    assert_eq!(got, GIB);
    assert_eq!(hex::encode(hasher.finalize()), sha);
    let peak = peak_rss_kib();
    let mib_s = |d: std::time::Duration| 1024.0 / d.as_secs_f64();
    println!(
        "1 GiB blob: upload+complete {:.1} s ({:.0} MiB/s), download {:.1} s ({:.0} MiB/s); \
         peak RSS {} MiB (before the transfer {} MiB)",
        up.as_secs_f64(),
        mib_s(up),
        down.as_secs_f64(),
        mib_s(down),
        peak / 1024,
        before / 1024
    );
    assert!(
        peak - before < 64 * 1024,
        "the transfer added {} KiB resident",
        peak - before
    );
    server.stop().await;
}
