//! Patient-context conversations end to end with the real server (TLS, SQLite) and real
//! clients (ADR 0019): the binding travels inside MLS and every member shows it; the server
//! stores only sealed tags, different for each conversation about one patient; a compliance
//! officer with the offline key finds exactly the conversations about a patient; nobody else
//! may read the index; the server's files never hold the MRN or the name.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::path::Path;

use tempfile::TempDir;
use ward_client::{EnrollParams, Target, WardClient, WardError};
use ward_core::PatientContext;
use ward_core::journal::JournalKeyPair;
use ward_core::patient_index::PatientIdentifier;
use ward_proto::{ErrorCode, Role, Username};
use ward_server::service::Actor;
use ward_testing::{PASSWORD, ServerOptions, TestServer};

const PASSPHRASE: &str = "profile passphrase for tests";
const SYSTEM: &str = "urn:oid:1.2.36.146.595.217.0.1";

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

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            files_contain(&p, needle)
        } else {
            let data = std::fs::read(&p).unwrap_or_default();
            data.windows(needle.len()).any(|w| w == needle)
        }
    })
}

fn patient(mrn: &str, name: &str) -> PatientContext {
    let today = time::OffsetDateTime::now_utc().date();
    PatientContext::new(SYSTEM, mrn, Some(name), Some("1957-03-14"), today).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_conversations_are_bound_in_mls_and_found_only_with_the_offline_key() {
    let server = TestServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    let (mut alice, _a) = enroll(&server, "alice", Role::Physician).await;
    let (mut bob, _b) = enroll(&server, "bob", Role::Nurse).await;
    let (mut carol, _c) = enroll(&server, "carol", Role::Nurse).await;
    let (mut olivia, _o) = enroll(&server, "olivia", Role::Compliance).await;
    let (mallory, _m) = enroll(&server, "mallory", Role::Physician).await;

    // Without a journal key a patient conversation is refused before anything is created.
    let e = alice
        .create_patient_group(
            "Bed 12",
            &[bob.username().clone()],
            patient("MRN-4711", "Ada Quist"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no compliance journal key"), "{e}");
    assert!(alice.conversations().await.unwrap().is_empty());

    let key = JournalKeyPair::generate(&mut rand::rngs::OsRng).unwrap();
    server
        .services
        .set_journal_key(&Actor::cli(), key.public().as_bytes().to_vec())
        .await
        .unwrap();

    let ada = patient("MRN-4711", "Ada Quist");
    let other = patient("MRN-0815", "Otto Brand");
    let group = alice
        .create_patient_group("Bed 12", &[bob.username().clone()], ada.clone())
        .await
        .unwrap();
    let direct = alice
        .bind_patient_to(Target::User(carol.username().clone()), ada.clone())
        .await
        .unwrap();
    alice
        .send_text(
            Target::Conversation(direct),
            "Please check her potassium",
            ward_core::Priority::Urgent,
        )
        .await
        .unwrap();
    let third = alice
        .create_patient_group("Bed 14", &[carol.username().clone()], other.clone())
        .await
        .unwrap();

    // Every member's client shows the banner: the binding came inside MLS.
    assert_eq!(alice.conversation_patient(group), Some(&ada));
    bob.sync().await.unwrap();
    assert_eq!(bob.conversation_patient(group), Some(&ada));
    let listed = bob.conversations().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].patient.as_ref(), Some(&ada));
    carol.sync().await.unwrap();
    assert_eq!(carol.conversation_patient(direct), Some(&ada));
    assert_eq!(carol.conversation_patient(third), Some(&other));

    // The server holds one sealed tag per binding: never the MRN or the name, and two tags of
    // one patient share nothing.
    let tags = server.services.store.patient_tags(0, 100).await.unwrap();
    assert_eq!(
        tags.iter().map(|t| t.conversation_id).collect::<Vec<_>>(),
        vec![group, direct, third]
    );
    assert_ne!(tags[0].tag, tags[1].tag);
    assert_ne!(tags[0].tag[..1120], tags[1].tag[..1120]);
    for needle in [
        &b"MRN-4711"[..],
        b"Ada Quist",
        b"MRN-0815",
        b"Otto Brand",
        b"1957-03-14",
    ] {
        assert!(
            !files_contain(server.data_dir.path(), needle),
            "{} found in the server's files",
            String::from_utf8_lossy(needle)
        );
    }

    // The compliance officer finds exactly the conversations about Ada.
    let wanted = PatientIdentifier::new(SYSTEM, "MRN-4711").unwrap();
    let found = olivia.search_patient(&[key], &wanted).await.unwrap();
    assert_eq!(found.conversations, vec![group, direct]);
    assert_eq!((found.examined, found.other_key, found.unopened), (3, 0, 0));
    let nobody = PatientIdentifier::new(SYSTEM, "MRN-9999").unwrap();
    let other_key = JournalKeyPair::generate(&mut rand::rngs::OsRng).unwrap();
    let none = olivia.search_patient(&[other_key], &nobody).await.unwrap();
    assert!(none.conversations.is_empty());
    assert_eq!(none.other_key, 3);
    olivia.sync().await.unwrap();

    // Nobody else may read the index.
    match mallory.patient_index(0, 10).await {
        Err(WardError::Api { code, .. }) => assert_eq!(code, ErrorCode::Forbidden),
        other => panic!("expected 403, got {other:?}"),
    }

    // Reading and writing the index is audited, without the tags themselves.
    let audit = server
        .services
        .store
        .audit_records(0, 10_000)
        .await
        .unwrap();
    let count = |action: &str| audit.iter().filter(|r| r.action == action).count();
    assert_eq!(count("patient_index.tag"), 3);
    assert_eq!(count("patient_index.read"), 2);
}
