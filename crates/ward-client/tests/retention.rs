//! Retention end to end with the real server (TLS, SQLite, a manual clock) and real clients
//! (ADR 0013): a message whose lifespan ended is deleted on the server and, through the
//! signed deletion order, from the sender's and the recipients' profiles; a legal hold keeps
//! it everywhere until released; an erasure request against a held user erases nothing and
//! says why, and after the release erases what the user sent.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use tempfile::TempDir;
use time::Duration;
use ward_client::{EnrollParams, Target, WardClient};
use ward_core::Priority;
use ward_proto::{
    AddHoldRequest, ErasureRequestBody, Role, SetRetentionRequest, UpdatePolicyRequest, Username,
};
use ward_server::service::Actor;
use ward_testing::{PASSWORD, ServerOptions, TestServer};

const PASSPHRASE: &str = "profile passphrase for tests";

async fn enroll(server: &TestServer, name: &str, role: Role) -> (WardClient, TempDir) {
    let code = server.create_user(name, role).await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = WardClient::enroll(EnrollParams {
        profile_dir: &dir.path().join("profile"),
        passphrase: PASSPHRASE,
        server_url: &server.url,
        ca_pem: server.ca_pem.as_deref().unwrap(),
        username: Username::parse(name).unwrap(),
        enrollment_code: &code,
        password: PASSWORD,
        device_name: "phone",
    })
    .await
    .unwrap();
    (client, dir)
}

fn texts(c: &WardClient) -> Vec<String> {
    c.history().iter().map(|m| m.text.clone()).collect()
}

async fn audit_actions(server: &TestServer) -> Vec<(String, serde_json::Value)> {
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

/// A server whose sessions survive the clock jumps of these tests (4 h idle, 7 d absolute).
async fn server() -> TestServer {
    let server = TestServer::start_with(ServerOptions {
        tls: true,
        manual_clock: true,
        ..Default::default()
    })
    .await;
    server
        .services
        .update_policy(
            &Actor::cli(),
            UpdatePolicyRequest {
                idle_timeout_secs: Some(4 * 3600),
                absolute_timeout_secs: Some(7 * 86400),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The background purge runs at most daily on the manual clock, so the explicit runs
    // below are the ones that find the work.
    server
        .services
        .set_retention(
            &Actor::cli(),
            SetRetentionRequest {
                purge_interval_secs: Some(86_400),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifespan_deletes_on_server_and_in_profiles_and_a_hold_keeps_it() {
    let server = server().await;
    let (mut alice, _a) = enroll(&server, "alice", Role::Physician).await;
    let (mut bob, bob_dir) = enroll(&server, "bob", Role::Nurse).await;
    let (mut carol, _c) = enroll(&server, "carol", Role::Nurse).await;
    let cli = Actor::cli();
    server
        .services
        .set_retention(
            &cli,
            SetRetentionRequest {
                kind: Some("direct".into()),
                message_lifespan: Some("1h".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let to_bob = alice
        .send_text(
            Target::User(bob.username().clone()),
            "for bob: K+ 6.1",
            Priority::Routine,
        )
        .await
        .unwrap();
    let to_carol = alice
        .send_text(
            Target::User(carol.username().clone()),
            "for carol: bed 4",
            Priority::Routine,
        )
        .await
        .unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    assert_eq!(texts(&bob), vec!["for bob: K+ 6.1"]);
    assert_eq!(texts(&carol), vec!["for carol: bed 4"]);

    // A legal hold on the conversation with carol.
    let hold = server
        .services
        .add_hold(
            &cli,
            AddHoldRequest {
                conversation: Some(to_carol.conversation_id),
                reason: "pending litigation".into(),
                case_ref: Some("CASE-42".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Not yet due: nothing happens.
    server.advance(Duration::minutes(59));
    let r = server.services.run_retention(&cli).await.unwrap();
    assert_eq!((r.envelopes_deleted, r.envelopes_kept_hold), (0, 0));

    // Past the lifespan: bob's message goes, carol's is held.
    server.advance(Duration::minutes(2));
    let r = server.services.run_retention(&cli).await.unwrap();
    assert_eq!(r.envelopes_deleted, 1, "{r:?}");
    assert_eq!(r.envelopes_kept_hold, 1, "{r:?}");
    assert_eq!(r.deletion_orders, 1);
    let store = &server.services.store;
    assert!(
        store
            .envelope(to_bob.conversation_id, to_bob.seq)
            .await
            .unwrap()
            .is_none(),
        "deleted on the server"
    );
    assert!(
        store
            .envelope(to_carol.conversation_id, to_carol.seq)
            .await
            .unwrap()
            .is_some(),
        "the hold keeps it on the server"
    );

    // The recipients' and the sender's profiles follow.
    let report = bob.sync().await.unwrap();
    assert_eq!(report.deleted_by_retention, 1, "{:?}", report.warnings);
    assert!(texts(&bob).is_empty());
    let report = carol.sync().await.unwrap();
    assert_eq!(report.deleted_by_retention, 0);
    assert_eq!(texts(&carol), vec!["for carol: bed 4"]);
    let report = alice.sync().await.unwrap();
    assert_eq!(report.deleted_by_retention, 1);
    assert_eq!(texts(&alice), vec!["for carol: bed 4"]);
    // Acknowledged orders are not sent again; the deletion is in the saved profile.
    assert_eq!(bob.sync().await.unwrap().deleted_by_retention, 0);
    drop(bob);
    let bob = WardClient::open(&bob_dir.path().join("profile"), PASSPHRASE).unwrap();
    assert!(texts(&bob).is_empty(), "deleted from the profile on disk");

    // Audited: the purge batch (ids, rule, never content) and each device's acknowledgement.
    let audit = audit_actions(&server).await;
    let purge = audit
        .iter()
        .find(|(a, d)| a == "retention.purge" && d["deleted"] == 1)
        .expect("retention.purge record");
    assert_eq!(purge.1["rule"], "message_lifespan");
    assert_eq!(purge.1["message_ids"][0], to_bob.message_id.to_string());
    assert!(!purge.1.to_string().contains("K+"));
    let acks = audit
        .iter()
        .filter(|(a, _)| a == "retention.device_ack")
        .count();
    assert_eq!(acks, 2, "bob's and alice's devices");
    assert!(audit.iter().any(|(a, _)| a == "hold.add"));

    // Released: the next run deletes carol's message too, and her profile follows.
    server.services.release_hold(&cli, hold.id).await.unwrap();
    let r = server.services.run_retention(&cli).await.unwrap();
    assert_eq!((r.envelopes_deleted, r.envelopes_kept_hold), (1, 0));
    assert_eq!(carol.sync().await.unwrap().deleted_by_retention, 1);
    assert!(texts(&carol).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_of_a_held_user_is_refused_with_the_reason_then_honoured_after_release() {
    let server = server().await;
    let (mut dave, _d) = enroll(&server, "dave", Role::Physician).await;
    let (mut erin, _e) = enroll(&server, "erin", Role::Nurse).await;
    let cli = Actor::cli();
    let sent = dave
        .send_text(
            Target::User(erin.username().clone()),
            "note one",
            Priority::Routine,
        )
        .await
        .unwrap();
    erin.sync().await.unwrap();
    erin.send_text(
        Target::User(dave.username().clone()),
        "erin's reply",
        Priority::Routine,
    )
    .await
    .unwrap();
    erin.sync().await.unwrap();
    assert_eq!(texts(&erin).len(), 2);

    let hold = server
        .services
        .add_hold(
            &cli,
            AddHoldRequest {
                user: Some("dave".into()),
                reason: "investigation".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let report = server
        .services
        .request_erasure(
            &cli,
            ErasureRequestBody {
                user: "dave".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, "refused", "{report:?}");
    assert_eq!(report.envelopes_erased, 0);
    let held = report
        .kept
        .iter()
        .find(|k| k.what == "envelopes")
        .expect("kept envelopes");
    assert_eq!((held.rule.as_str(), held.count), ("legal_hold", 1));
    assert!(held.detail.contains(&hold.id.to_string()));
    assert!(
        server
            .services
            .store
            .envelope(sent.conversation_id, sent.seq)
            .await
            .unwrap()
            .is_some()
    );

    // Statutory retention also beats erasure once the hold is gone.
    server.services.release_hold(&cli, hold.id).await.unwrap();
    server
        .services
        .set_retention(
            &cli,
            SetRetentionRequest {
                statutory_retention: Some("1h".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let report = server
        .services
        .request_erasure(
            &cli,
            ErasureRequestBody {
                user: "dave".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, "refused");
    assert!(report.kept.iter().any(|k| k.rule == "statutory_retention"
        && k.count == 1
        && k.detail.contains("statutory retention until")));

    // Past it: dave's message is erased on the server and in erin's profile; erin's own
    // message stays.
    server.advance(Duration::hours(2));
    let report = server
        .services
        .request_erasure(
            &cli,
            ErasureRequestBody {
                user: "dave".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, "completed", "{report:?}");
    assert_eq!(report.envelopes_erased, 1);
    assert!(report.kept.iter().any(|k| k.rule == "audit_integrity"));
    assert_eq!(erin.sync().await.unwrap().deleted_by_retention, 1);
    assert_eq!(texts(&erin), vec!["erin's reply"]);
    assert_eq!(server.services.store.erasures().await.unwrap().len(), 3);
    let audit = audit_actions(&server).await;
    assert_eq!(
        audit.iter().filter(|(a, _)| a == "erasure.request").count(),
        3
    );
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "retention.purge" && d["rule"] == "erasure_request")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_archive_retention_is_enforced_subject_to_hold_and_statutory_retention() {
    use ward_core::journal::JournalKeyPair;
    use ward_store::JournalQuery;

    let server = server().await;
    let (mut frank, _f) = enroll(&server, "frank", Role::Physician).await;
    let (grace, _g) = enroll(&server, "grace", Role::Nurse).await;
    let (heidi, _h) = enroll(&server, "heidi", Role::Nurse).await;
    let cli = Actor::cli();
    let key = JournalKeyPair::generate(&mut rand::rngs::OsRng).unwrap();
    server
        .services
        .set_journal_key(&cli, key.public().as_bytes().to_vec())
        .await
        .unwrap();
    // Messages live forever; the archive keeps copies 2 hours, group messages 1 day by law.
    server
        .services
        .set_retention(
            &cli,
            SetRetentionRequest {
                journal_retention: Some("2h".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let to_grace = frank
        .send_text(
            Target::User(grace.username().clone()),
            "to grace",
            Priority::Routine,
        )
        .await
        .unwrap();
    let to_heidi = frank
        .send_text(
            Target::User(heidi.username().clone()),
            "to heidi",
            Priority::Routine,
        )
        .await
        .unwrap();
    let archive = || async {
        server
            .services
            .store
            .journal_entries(&JournalQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.message_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        archive().await,
        vec![to_grace.message_id, to_heidi.message_id]
    );
    server
        .services
        .add_hold(
            &cli,
            AddHoldRequest {
                conversation: Some(to_heidi.conversation_id),
                reason: "archive hold".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    server.advance(Duration::hours(3));
    let r = server.services.run_retention(&cli).await.unwrap();
    assert_eq!((r.journal_deleted, r.journal_kept_hold), (1, 1), "{r:?}");
    assert_eq!(r.envelopes_deleted, 0, "no message lifespan is set");
    assert_eq!(archive().await, vec![to_heidi.message_id]);
    assert!(
        server
            .services
            .store
            .envelope(to_grace.conversation_id, to_grace.seq)
            .await
            .unwrap()
            .is_some(),
        "the archive's retention never deletes messages"
    );

    // Statutory retention (direct conversations, 1 day) keeps a newer copy past 2 hours.
    let later = frank
        .send_text(
            Target::User(grace.username().clone()),
            "later",
            Priority::Routine,
        )
        .await
        .unwrap();
    server
        .services
        .set_retention(
            &cli,
            SetRetentionRequest {
                kind: Some("direct".into()),
                statutory_retention: Some("1d".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    server.advance(Duration::hours(3));
    let r = server.services.run_retention(&cli).await.unwrap();
    assert_eq!(
        (
            r.journal_deleted,
            r.journal_kept_statutory,
            r.journal_kept_hold
        ),
        (0, 1, 1),
        "{r:?}"
    );
    server.advance(Duration::days(1));
    let r = server.services.run_retention(&cli).await.unwrap();
    assert_eq!(r.journal_deleted, 1, "{r:?}");
    assert_eq!(archive().await, vec![to_heidi.message_id]);
    let audit = audit_actions(&server).await;
    assert!(audit.iter().any(|(a, d)| a == "retention.purge"
        && d["what"] == "journal_entries"
        && d["message_ids"][0] == later.message_id.to_string()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_retention_and_hold_input_is_refused_with_the_reason() {
    use reqwest::{Method, StatusCode};
    use serde_json::json;

    let server = server().await;
    let admin = server.enroll("admin", Role::Admin).await;
    let compliance = server.enroll("officer", Role::Compliance).await;
    let put = |body: serde_json::Value| {
        let http = admin.http.clone();
        let url = format!("{}/v1/admin/retention", server.url);
        let token = admin.token.clone();
        async move { ward_testing::send(&http, Method::PUT, &url, Some(&token), Some(body)).await }
    };
    for (body, why) in [
        (
            json!({"message_lifespan": "0d"}),
            "message_lifespan: duration \"0d\" is zero",
        ),
        (json!({"message_lifespan": "-30d"}), "is negative"),
        (
            json!({"statutory_retention": "seven years"}),
            "whole number",
        ),
        (json!({"statutory_retention": "7"}), "has no unit"),
        (
            json!({"journal_retention": "99999999999999999999y"}),
            "too long",
        ),
        (json!({"journal_retention": "200y"}), "too long"),
        (json!({"message_lifespan": "30x"}), "unknown unit"),
        (
            json!({"kind": "lounge", "message_lifespan": "30d"}),
            "unknown conversation kind",
        ),
        (
            json!({"kind": "group", "journal_retention": "30d"}),
            "organisation-wide",
        ),
        (
            json!({"purge_interval_secs": 5}),
            "purge_interval_secs must be between",
        ),
        (
            json!({"message_lifespan": "30d", "colour": "red"}),
            "unknown field",
        ),
    ] {
        let (s, b) = put(body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(msg.contains(why), "{body}: {msg}");
    }
    // Nothing changed; a valid change is shown back in canonical form.
    let (s, b) =
        put(json!({"kind": "group", "message_lifespan": "14d", "statutory_retention": "7y"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["per_kind"]["group"]["message_lifespan"], "2w");
    assert_eq!(b["per_kind"]["group"]["statutory_retention"], "7y");
    assert_eq!(b["default"]["message_lifespan"], serde_json::Value::Null);
    let (s, b) = compliance.get("/v1/admin/retention").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["per_kind"]["group"]["message_lifespan"], "2w");
    // `none` clears, and an emptied kind disappears.
    let (s, b) =
        put(json!({"kind": "group", "message_lifespan": "none", "statutory_retention": "none"}))
            .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["per_kind"].as_object().unwrap().is_empty(), "{b}");

    // Holds.
    for (body, status, why) in [
        (
            json!({"reason": "x"}),
            StatusCode::BAD_REQUEST,
            "exactly one of user or conversation",
        ),
        (
            json!({"user": "admin", "conversation": uuid::Uuid::new_v4(), "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "exactly one",
        ),
        (
            json!({"user": "admin", "reason": "  "}),
            StatusCode::BAD_REQUEST,
            "reason must be",
        ),
        (
            json!({"user": "nobody", "reason": "x"}),
            StatusCode::NOT_FOUND,
            "user",
        ),
        (
            json!({"conversation": uuid::Uuid::new_v4(), "reason": "x"}),
            StatusCode::NOT_FOUND,
            "conversation",
        ),
        (
            json!({"user": "admin", "reason": "x", "case_ref": "c".repeat(101)}),
            StatusCode::BAD_REQUEST,
            "case_ref",
        ),
    ] {
        let (s, b) = compliance.post("/v1/admin/holds", body.clone()).await;
        assert_eq!(s, status, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(why),
            "{body}: {b}"
        );
    }
    let (s, hold) = compliance
        .post(
            "/v1/admin/holds",
            json!({"user": "admin", "reason": "audit", "case": null}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown field `case`: {hold}");
    let (s, hold) = compliance
        .post(
            "/v1/admin/holds",
            json!({"user": "admin", "reason": "audit", "case_ref": "C-7"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{hold}");
    let id = hold["id"].as_str().unwrap();
    let (s, list) = compliance.get("/v1/admin/holds").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["holds"][0]["case_ref"], "C-7");
    let path = format!("/v1/admin/holds/{id}/release");
    let (s, b) = admin.post(&path, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["released_at"].is_string());
    let (s, b) = admin.post(&path, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = admin
        .post("/v1/admin/holds/not-a-uuid/release", json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = admin
        .post(
            &format!("/v1/admin/holds/{}/release", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    // Erasure of an unknown user names the problem.
    let (s, b) = admin
        .post("/v1/admin/erasure-requests", json!({"user": "nobody"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    server.stop().await;
}
