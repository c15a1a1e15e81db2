//! The compliance journal end to end with the real server (TLS, SQLite) and real clients: a
//! message's journal copy opens with the offline key to exactly what the recipient read; a
//! client that sends a forged copy is caught by the recipient (not shown, audited); rotation
//! keeps old copies readable with the old key; the server's files hold no plaintext.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::path::Path;

use tempfile::TempDir;
use ward_client::{EnrollParams, Target, WardClient};
use ward_core::journal::{JournalError, JournalKeyPair};
use ward_core::{Body, MessageContent, Priority};
use ward_proto::{Role, Username};
use ward_server::service::Actor;
use ward_store::{JournalEntry, JournalQuery};
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

async fn archive(server: &TestServer) -> Vec<JournalEntry> {
    server
        .services
        .store
        .journal_entries(&JournalQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn text_of(content: &[u8]) -> String {
    match MessageContent::from_bytes(content).unwrap().body {
        Body::Text { text } => text,
        Body::Unsupported => panic!("not text"),
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_copies_open_to_what_recipients_read_and_forgeries_are_caught() {
    let server = TestServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    let (mut alice, _a) = enroll(&server, "alice", Role::Physician).await;
    let (mut bob, _b) = enroll(&server, "bob", Role::Nurse).await;
    let key1 = JournalKeyPair::generate(&mut rand::rngs::OsRng).unwrap();
    server
        .services
        .set_journal_key(&Actor::cli(), key1.public().as_bytes().to_vec())
        .await
        .unwrap();

    // A journaled message: the copy opens to exactly what bob read.
    let text = "Journal check: K+ 6.1 for bed 12";
    let sent = alice
        .send_text(Target::User(bob.username().clone()), text, Priority::Urgent)
        .await
        .unwrap();
    let report = bob.sync().await.unwrap();
    assert!(
        report.journal_mismatches.is_empty(),
        "{:?}",
        report.warnings
    );
    let read: Vec<_> = report.messages.iter().map(|m| m.text.clone()).collect();
    assert_eq!(read, vec![text.to_owned()]);
    let entries = archive(&server).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].message_id, sent.message_id);
    let record = key1.open(entries[0].copy.ciphertext.as_slice()).unwrap();
    assert_eq!(text_of(&record.content), read[0]);
    assert_eq!(record.conversation_id, sent.conversation_id);
    assert_eq!(record.sender_device_id, alice.device_id());
    assert_eq!(record.sender_user_id, entries[0].sender_user_id);

    // A modified client journals something innocuous instead: bob refuses and reports it.
    let decoy = MessageContent::text("nothing to see", Priority::Routine, 0)
        .to_bytes()
        .unwrap();
    alice.dangerous_forge_next_journal_copy(decoy);
    let secret = "Off the record: patient in 12 is a VIP";
    let forged = alice
        .send_text(
            Target::Conversation(sent.conversation_id),
            secret,
            Priority::Routine,
        )
        .await
        .unwrap();
    let report = bob.sync().await.unwrap();
    assert!(
        report.messages.is_empty(),
        "the forged message is not shown"
    );
    assert_eq!(report.journal_mismatches.len(), 1);
    assert_eq!(report.journal_mismatches[0].message_id, forged.message_id);
    assert!(
        report.warnings.iter().any(|w| w.contains("journal")),
        "{:?}",
        report.warnings
    );
    assert!(bob.history().iter().all(|m| m.text != secret));
    let audit = server
        .services
        .store
        .audit_records(0, 10_000)
        .await
        .unwrap();
    let mismatch: Vec<_> = audit
        .iter()
        .filter(|r| r.action == "journal.mismatch")
        .collect();
    assert_eq!(mismatch.len(), 1);
    assert_eq!(mismatch[0].target, Some(forged.message_id.to_string()));
    assert_eq!(mismatch[0].actor_device_id, Some(bob.device_id()));
    // The forged copy opens, but to the decoy: the archive alone could not have told.
    let forged_entry = archive(&server)
        .await
        .into_iter()
        .find(|e| e.message_id == forged.message_id)
        .unwrap();
    let decoy_record = key1.open(forged_entry.copy.ciphertext.as_slice()).unwrap();
    assert_eq!(text_of(&decoy_record.content), "nothing to see");

    // Rotation: alice's client notices the new key on its next send; old copies still open
    // with the old key only, new ones with the new key only.
    let key2 = JournalKeyPair::generate(&mut rand::rngs::OsRng).unwrap();
    server
        .services
        .set_journal_key(&Actor::cli(), key2.public().as_bytes().to_vec())
        .await
        .unwrap();
    let after = "After rotation: recheck K+ at 14:00";
    let rotated = alice
        .send_text(
            Target::Conversation(sent.conversation_id),
            after,
            Priority::Routine,
        )
        .await
        .unwrap();
    let report = bob.sync().await.unwrap();
    assert!(
        report.journal_mismatches.is_empty(),
        "{:?}",
        report.warnings
    );
    assert_eq!(report.messages.len(), 1);
    assert_eq!(report.messages[0].text, after);
    let entry = archive(&server)
        .await
        .into_iter()
        .find(|e| e.message_id == rotated.message_id)
        .unwrap();
    assert_eq!(entry.copy.key_id, key2.public().key_id());
    assert_eq!(
        text_of(&key2.open(entry.copy.ciphertext.as_slice()).unwrap().content),
        after
    );
    assert!(matches!(
        key1.open(entry.copy.ciphertext.as_slice()),
        Err(JournalError::Open)
    ));
    assert_eq!(
        text_of(
            &key1
                .open(entries[0].copy.ciphertext.as_slice())
                .unwrap()
                .content
        ),
        text
    );

    // Neither the server's files nor the archive hold the plaintext.
    for t in [text, secret, after] {
        assert!(
            !files_contain(server.data_dir.path(), t.as_bytes()),
            "{t:?} on the server"
        );
    }
}
