//! Templates and do-not-disturb against a real server over HTTP (ADR 0019): templates are
//! validated and audited; a user on do-not-disturb is replaced by the covering colleague in
//! "who holds this role now" and shown in the directory; loops, patients and suspended
//! colleagues are refused by name; an end time expires on the (manual) clock and the end is
//! audited. Patient tags: only a staff member of the conversation stores them, with a known
//! journal key and a plausible size.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: failures should panic loudly"
)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;
use ward_proto::Role;
use ward_server::service::Actor;
use ward_testing::{ServerOptions, TestServer, TestUser, b64, send};

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

fn message(b: &Value) -> String {
    b["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn audit_actions(server: &TestServer) -> Vec<String> {
    server
        .services
        .store
        .audit_records(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect()
}

#[tokio::test]
async fn templates_are_validated_listed_and_deleted() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    let nurse = server.enroll("nurse", Role::Nurse).await;
    let pat = server.enroll("pat", Role::Patient).await;

    let (s, b) = admin
        .post(
            "/v1/admin/templates",
            json!({"name": "code-blue", "text": "Code Blue, room {room}, bed {bed}", "priority": "stat"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["variables"], json!(["bed", "room"]));
    let (s, b) = admin
        .post(
            "/v1/admin/templates",
            json!({"name": "code-blue", "text": "again", "priority": "stat"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(message(&b).contains("template code-blue already exists"));
    for (body, want) in [
        (
            json!({"name": "bad", "text": "room {room", "priority": "stat"}),
            "malformed placeholder",
        ),
        (
            json!({"name": "bad", "text": "", "priority": "stat"}),
            "empty",
        ),
        (
            json!({"name": "Bad Name", "text": "x", "priority": "stat"}),
            "template name",
        ),
        (
            json!({"name": "bad", "text": "x", "priority": "asap"}),
            "priority",
        ),
    ] {
        let (s, b) = admin.post("/v1/admin/templates", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert!(message(&b).contains(want), "{want}: {b}");
    }
    let (s, b) = nurse.get("/v1/templates").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["templates"][0]["name"], "code-blue");
    let (s, b) = nurse.get("/v1/templates/code-blue").await;
    assert_eq!((s, b["priority"].clone()), (StatusCode::OK, json!("stat")));
    let (s, b) = nurse.get("/v1/templates/code-red").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(message(&b), "template code-red does not exist");
    let (s, _) = pat.get("/v1/templates").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &nurse,
        Method::DELETE,
        "/v1/admin/templates/code-blue",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &admin,
        Method::DELETE,
        "/v1/admin/templates/code-blue",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(
        &admin,
        Method::DELETE,
        "/v1/admin/templates/code-blue",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let actions = audit_actions(&server).await;
    assert!(actions.contains(&"template.create".to_owned()));
    assert!(actions.contains(&"template.delete".to_owned()));
}

/// A fresh, migrated schema of the PostgreSQL test database (`WARD_TEST_POSTGRES_URL`) and
/// the URL selecting it; `None` when `WARD_TEST_POSTGRES=skip`.
async fn postgres_schema() -> Option<(String, String)> {
    if std::env::var("WARD_TEST_POSTGRES").as_deref() == Ok("skip") {
        return None;
    }
    let url = std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("ward_clin_{}", uuid::Uuid::new_v4().simple());
    let store = ward_store_postgres::PgStore::connect_isolated(&url, &schema)
        .await
        .expect("PostgreSQL test database (WARD_TEST_POSTGRES=skip to skip)");
    store.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((format!("{url}{sep}options[search_path]={schema}"), schema))
}

async fn drop_schema(schema: &str) {
    let url = std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    ward_store_postgres::PgStore::drop_schema(&url, schema)
        .await
        .unwrap();
}

#[tokio::test]
async fn do_not_disturb_hands_role_and_direct_messages_to_the_cover() {
    do_not_disturb_scenario(None).await;
}

#[tokio::test]
async fn do_not_disturb_on_postgres() {
    if let Some((url, schema)) = postgres_schema().await {
        do_not_disturb_scenario(Some(url)).await;
        drop_schema(&schema).await;
    }
}

async fn do_not_disturb_scenario(database_url: Option<String>) {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        database_url,
        ..Default::default()
    })
    .await;
    let dr_a = server.enroll("dr-a", Role::Physician).await;
    let dr_b = server.enroll("dr-b", Role::Physician).await;
    let dr_c = server.enroll("dr-c", Role::Physician).await;
    let medic = server.enroll("medic", Role::Nurse).await;
    let pat = server.enroll("pat", Role::Patient).await;
    server.enroll("gone", Role::Physician).await;
    server
        .services
        .suspend_user(&Actor::cli(), &"gone".parse().unwrap())
        .await
        .unwrap();
    server
        .services
        .create_clinical_role(
            &Actor::cli(),
            ward_proto::CreateClinicalRoleRequest {
                name: "cardiology-on-call".parse().unwrap(),
                description: None,
            },
        )
        .await
        .unwrap();
    server
        .services
        .assign_clinical_role(
            &Actor::cli(),
            &"cardiology-on-call".parse().unwrap(),
            &"dr-a".parse().unwrap(),
        )
        .await
        .unwrap();

    // Bad covers are refused by name.
    for (cover, until, want) in [
        ("dr-a", None, "you cannot cover for yourself"),
        ("pat", None, "pat is a patient account and cannot cover"),
        ("gone", None, "gone is not an active user"),
        ("nobody", None, "not found"),
        (
            "dr-b",
            Some(server.now() - Duration::minutes(1)),
            "in the future",
        ),
        (
            "dr-b",
            Some(server.now() + Duration::days(31)),
            "at most 30 days",
        ),
    ] {
        let until = until.map(|t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        });
        let (s, b) = call(
            &dr_a,
            Method::PUT,
            "/v1/me/dnd",
            Some(json!({"cover": cover, "until": until})),
        )
        .await;
        assert!(s.is_client_error(), "{cover}: {s} {b}");
        assert!(message(&b).contains(want), "{want}: {b}");
    }
    let (s, _) = call(
        &pat,
        Method::PUT,
        "/v1/me/dnd",
        Some(json!({"cover": "dr-b"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // dr-a hands over to dr-b for ten minutes (sessions stay within the idle timeout).
    let until = server.now() + Duration::minutes(10);
    let (s, b) = call(
        &dr_a,
        Method::PUT,
        "/v1/me/dnd",
        Some(json!({"cover": "dr-b",
                    "until": until.format(&time::format_description::well_known::Rfc3339).unwrap()})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["effective_cover"], "dr-b");
    let (_, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(b["holders"][0]["username"], "dr-b", "{b}");
    assert_eq!(b["holders"][0]["covering_for"], "dr-a");
    assert_eq!(b["escalation"][0]["users"][0]["username"], "dr-b");
    let (_, b) = medic.get("/v1/users/dr-a").await;
    assert_eq!(b["do_not_disturb"]["cover"], "dr-b", "{b}");
    let (_, b) = medic.get("/v1/users/dr-b").await;
    assert!(b.get("do_not_disturb").is_none(), "{b}");

    // A chain: dr-b away too, covered by dr-c; the loop back to dr-a is refused.
    let (s, b) = call(
        &dr_b,
        Method::PUT,
        "/v1/me/dnd",
        Some(json!({"cover": "dr-c"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(b["holders"][0]["username"], "dr-c", "{b}");
    assert_eq!(b["holders"][0]["covering_for"], "dr-a");
    let (_, b) = medic.get("/v1/users/dr-a").await;
    assert_eq!(b["do_not_disturb"]["effective_cover"], "dr-c", "{b}");
    let (s, b) = call(
        &dr_c,
        Method::PUT,
        "/v1/me/dnd",
        Some(json!({"cover": "dr-a"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        message(&b),
        "covering loop: dr-c \u{2192} dr-a \u{2192} dr-b \u{2192} dr-c"
    );
    let (s, _) = call(&dr_b, Method::DELETE, "/v1/me/dnd", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = call(&dr_b, Method::DELETE, "/v1/me/dnd", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    // The end time passes on the server's clock: dr-a holds the role again at once, and the
    // expiry job removes the entry and audits it.
    server.advance(Duration::minutes(10));
    let (_, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(b["holders"][0]["username"], "dr-a", "{b}");
    assert!(b["holders"][0].get("covering_for").is_none());
    let (_, b) = medic.get("/v1/users/dr-a").await;
    assert!(b.get("do_not_disturb").is_none(), "{b}");
    assert_eq!(server.services.expire_dnd().await.unwrap(), 1);
    assert_eq!(server.services.expire_dnd().await.unwrap(), 0);
    let actions = audit_actions(&server).await;
    for a in ["dnd.on", "dnd.off", "dnd.expired"] {
        assert!(actions.iter().any(|x| x == a), "{a} not audited");
    }
}

#[tokio::test]
async fn patient_tags_need_a_staff_member_a_known_key_and_a_plausible_size() {
    patient_tag_scenario(None).await;
}

#[tokio::test]
async fn patient_tags_on_postgres() {
    if let Some((url, schema)) = postgres_schema().await {
        patient_tag_scenario(Some(url)).await;
        drop_schema(&schema).await;
    }
}

async fn patient_tag_scenario(database_url: Option<String>) {
    let server = TestServer::start_with(ServerOptions {
        database_url,
        ..Default::default()
    })
    .await;
    let phys = server.enroll("phys", Role::Physician).await;
    let other = server.enroll("other", Role::Physician).await;
    let (s, b) = phys
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": 0x004D}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let conv = b["conversation_id"].as_str().unwrap().to_owned();
    let public_key = vec![5u8; ward_server::service::JOURNAL_PUBLIC_KEY_LEN];
    let key_id = ward_server::service::journal_key_id(&public_key);
    server
        .services
        .set_journal_key(&Actor::cli(), public_key)
        .await
        .unwrap();
    let path = format!("/v1/conversations/{conv}/patient-tags");
    let (s, b) = phys
        .post(&path, json!({"key_id": key_id, "tag": b64(&[1u8; 100])}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(message(&b).contains("a patient tag is 1136 to 4096 bytes"));
    let (s, b) = phys
        .post(
            &path,
            json!({"key_id": "f".repeat(32), "tag": b64(&[1u8; 1200])}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(message(&b).contains("is not installed"));
    let (s, _) = other
        .post(&path, json!({"key_id": key_id, "tag": b64(&[1u8; 1200])}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = phys
        .post(&path, json!({"key_id": key_id, "tag": b64(&[1u8; 1200])}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, _) = other.get("/v1/compliance/patient-index").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
