//! Real clients against the real server (TLS, SQLite): direct and group messages, two
//! devices per user, add and remove, offline delivery, concurrent commits, crash recovery,
//! and proof that neither the server's files nor the client profiles hold plaintext.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::path::Path;

use tempfile::TempDir;
use ward_client::{EnrollParams, Target, WardClient, WardError};
use ward_core::Priority;
use ward_proto::{ConversationId, Role, Username};
use ward_testing::{PASSWORD, ServerOptions, TestServer};

const PASSPHRASE: &str = "profile passphrase for tests";

struct Device {
    client: WardClient,
    dir: TempDir,
}

async fn server() -> TestServer {
    TestServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    })
    .await
}

async fn enroll(server: &TestServer, name: &str, role: Role) -> Device {
    let code = server.create_user(name, role).await;
    let dir = tempfile::tempdir().unwrap();
    let (client, enrolled) = WardClient::enroll(EnrollParams {
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
    assert!(enrolled.otpauth_uri.starts_with("otpauth://"));
    Device { client, dir }
}

async fn second_device(server: &TestServer, first: &Device) -> Device {
    let dir = tempfile::tempdir().unwrap();
    // A fresh TOTP step: the first device's login used the current one at enrollment? No:
    // enrollment used no code, so the current step is still unused.
    let secret = totp_secret_of(server, first.client.username()).await;
    let client = WardClient::register_device(
        EnrollParams {
            profile_dir: &dir.path().join("profile"),
            passphrase: PASSPHRASE,
            server_url: &server.url,
            ca_pem: server.ca_pem.as_deref().unwrap(),
            username: first.client.username().clone(),
            enrollment_code: "",
            password: PASSWORD,
            device_name: "tablet",
        },
        Some(ward_testing::totp_code(&secret, server.now())),
    )
    .await
    .unwrap();
    Device { client, dir }
}

/// Test-only: read a user's TOTP seed through the server's own services.
async fn totp_secret_of(server: &TestServer, username: &Username) -> String {
    let user = server
        .services
        .store
        .user_by_name(username)
        .await
        .unwrap()
        .unwrap();
    let sealed = user.totp_secret_enc.unwrap();
    let seed = server
        .services
        .master
        .open(&format!("totp-secret:{}", user.id), &sealed)
        .unwrap();
    totp_rs::Secret::Raw(seed.to_vec()).to_encoded().to_string()
}

async fn texts(d: &mut Device) -> Vec<String> {
    d.client
        .sync()
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect()
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        let data = std::fs::read(&entry).unwrap_or_default();
        if data.windows(needle.len()).any(|w| w == needle) {
            hits.push(entry.display().to_string());
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p))
            } else {
                out.push(p)
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_group_multi_device_add_remove_and_no_plaintext_anywhere() {
    let server = server().await;
    let mut alice = enroll(&server, "alice", Role::Physician).await;
    let mut bob = enroll(&server, "bob", Role::Nurse).await;
    let mut carol = enroll(&server, "carol", Role::Pharmacist).await;

    // Direct: Bob is offline when Alice sends; he gets it on his next sync.
    let sent = alice
        .client
        .send_text(
            Target::User("bob".parse().unwrap()),
            "MARKER-direct-4d1 wound photo follows",
            Priority::Urgent,
        )
        .await
        .unwrap();
    let got = bob.client.sync().await.unwrap().messages;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "MARKER-direct-4d1 wound photo follows");
    assert_eq!(got[0].sender.as_str(), "alice");
    assert_eq!(got[0].priority, "urgent");
    assert_eq!(got[0].message_id, Some(sent.message_id));
    bob.client
        .send_text(
            Target::Conversation(sent.conversation_id),
            "MARKER-reply-9e2 seen",
            Priority::Routine,
        )
        .await
        .unwrap();
    assert_eq!(
        texts(&mut alice).await,
        vec!["MARKER-reply-9e2 seen".to_string()]
    );
    // The same direct conversation is reused.
    let again = alice
        .client
        .send_text(
            Target::User("bob".parse().unwrap()),
            "again",
            Priority::Routine,
        )
        .await
        .unwrap();
    assert_eq!(again.conversation_id, sent.conversation_id);

    // Receipts: Bob's device acknowledged on sync; then he reads it.
    let st = alice.client.status(sent.message_id).await.unwrap();
    assert_eq!(st.recipients.len(), 1);
    assert!(st.recipients[0].delivered_at.is_some() && st.recipients[0].read_at.is_none());
    bob.client.mark_read(sent.message_id).await.unwrap();
    assert!(
        alice
            .client
            .status(sent.message_id)
            .await
            .unwrap()
            .recipients[0]
            .read_at
            .is_some()
    );

    // Group of three.
    let group = alice
        .client
        .create_group(
            "Ward 5 night",
            &["bob".parse().unwrap(), "carol".parse().unwrap()],
        )
        .await
        .unwrap();
    let carol_got = carol.client.sync().await.unwrap().messages;
    assert!(
        carol_got[0].text.contains("created the group"),
        "{carol_got:?}"
    );
    carol
        .client
        .send_text(
            Target::Conversation(group),
            "MARKER-group-77a bed 12 K+ 6.1",
            Priority::Stat,
        )
        .await
        .unwrap();
    let bob_texts = texts(&mut bob).await;
    assert!(
        bob_texts
            .iter()
            .any(|t| t == "MARKER-group-77a bed 12 K+ 6.1"),
        "{bob_texts:?}"
    );
    assert!(
        texts(&mut alice)
            .await
            .iter()
            .any(|t| t.contains("MARKER-group-77a"))
    );
    let convs = bob.client.conversations().await.unwrap();
    assert!(
        convs
            .iter()
            .any(|c| c.name.as_deref() == Some("Ward 5 night") && c.members.len() == 3),
        "{convs:?}"
    );

    // Bob's second device joins his conversations when the next member syncs.
    let mut bob2 = second_device(&server, &bob).await;
    alice.client.sync().await.unwrap();
    bob2.client.sync().await.unwrap();
    alice
        .client
        .send_text(
            Target::Conversation(group),
            "MARKER-both-devices-31c",
            Priority::Routine,
        )
        .await
        .unwrap();
    assert!(
        texts(&mut bob2)
            .await
            .iter()
            .any(|t| t == "MARKER-both-devices-31c")
    );
    assert!(
        texts(&mut bob)
            .await
            .iter()
            .any(|t| t == "MARKER-both-devices-31c")
    );
    // A message from Bob's tablet reaches his phone.
    bob2.client
        .send_text(
            Target::Conversation(group),
            "from the tablet",
            Priority::Routine,
        )
        .await
        .unwrap();
    assert!(texts(&mut bob).await.iter().any(|t| t == "from the tablet"));

    // Remove Carol: she cannot read what follows.
    alice
        .client
        .remove_members(group, &["carol".parse().unwrap()])
        .await
        .unwrap();
    carol.client.sync().await.unwrap();
    alice
        .client
        .send_text(
            Target::Conversation(group),
            "MARKER-after-carol-5b0",
            Priority::Routine,
        )
        .await
        .unwrap();
    let carol_after = texts(&mut carol).await;
    assert!(carol_after.is_empty(), "{carol_after:?}");
    assert!(
        texts(&mut bob)
            .await
            .iter()
            .any(|t| t == "MARKER-after-carol-5b0")
    );
    let err = carol
        .client
        .send_text(
            Target::Conversation(group),
            "still here?",
            Priority::Routine,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not in conversation"), "{err}");

    // No plaintext in any file the server wrote, nor in any client profile.
    for marker in [
        "MARKER-direct-4d1",
        "MARKER-reply-9e2",
        "MARKER-group-77a",
        "MARKER-both-devices-31c",
        "MARKER-after-carol-5b0",
        "Ward 5 night",
    ] {
        let hits = files_contain(server.data_dir.path(), marker.as_bytes());
        assert!(hits.is_empty(), "{marker} found in server files {hits:?}");
        for d in [&alice, &bob, &bob2, &carol] {
            let hits = files_contain(d.dir.path(), marker.as_bytes());
            assert!(hits.is_empty(), "{marker} found in profile files {hits:?}");
        }
    }
    // The history is in the (encrypted) profile.
    assert!(
        bob.client
            .history()
            .iter()
            .any(|m| m.text.contains("MARKER-group-77a"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_resolve_and_everyone_converges() {
    let server = server().await;
    let mut alice = enroll(&server, "alice", Role::Physician).await;
    let mut bob = enroll(&server, "bob", Role::Physician).await;
    let mut carol = enroll(&server, "carol", Role::Nurse).await;
    let mut dan = enroll(&server, "dan", Role::Nurse).await;
    let group = alice
        .client
        .create_group("icu", &["bob".parse().unwrap()])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    // Alice adds Carol while Bob adds Dan, at the same epoch: one commit wins, the other
    // is rebuilt on top of it.
    let carol_name: Username = "carol".parse().unwrap();
    let dan_name: Username = "dan".parse().unwrap();
    let (a, b) = tokio::join!(
        alice
            .client
            .add_members(group, std::slice::from_ref(&carol_name)),
        bob.client
            .add_members(group, std::slice::from_ref(&dan_name)),
    );
    a.unwrap();
    b.unwrap();
    for d in [&mut alice, &mut bob, &mut carol, &mut dan] {
        d.client.sync().await.unwrap();
    }
    dan.client
        .send_text(Target::Conversation(group), "dan here", Priority::Routine)
        .await
        .unwrap();
    for d in [&mut alice, &mut bob, &mut carol] {
        assert!(texts(d).await.iter().any(|t| t == "dan here"));
    }
    let info = server
        .services
        .store
        .conversation(group)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.epoch, 3, "create-add, then two adds");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_survives_a_crash_and_never_duplicates() {
    let mut server = server().await;
    let mut alice = enroll(&server, "alice", Role::Physician).await;
    let mut bob = enroll(&server, "bob", Role::Nurse).await;
    let sent = alice
        .client
        .send_text(
            Target::User("bob".parse().unwrap()),
            "first",
            Priority::Routine,
        )
        .await
        .unwrap();
    bob.client.sync().await.unwrap();

    // The server goes away; the message is queued in the encrypted outbox.
    server.pause().await;
    let err = alice
        .client
        .send_text(
            Target::Conversation(sent.conversation_id),
            "queued while offline",
            Priority::Stat,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WardError::Transport(_)), "{err}");
    // The process "crashes": drop the client, keep a copy of the profile as it was.
    let profile = alice.dir.path().join("profile");
    drop(alice.client);
    let snapshot = tempfile::tempdir().unwrap();
    copy_dir(&profile, snapshot.path());

    let server = server.restart().await;
    let mut alice_client = WardClient::open(&profile, PASSPHRASE).unwrap();
    alice_client.sync().await.unwrap();
    // Crash after the server accepted but before the client recorded it: restore the old
    // profile and retry. The server recognises the client message id.
    drop(alice_client);
    std::fs::remove_dir_all(&profile).unwrap();
    copy_dir(snapshot.path(), &profile);
    let mut alice_client = WardClient::open(&profile, PASSPHRASE).unwrap();
    alice_client.sync().await.unwrap();
    let got: Vec<String> = bob
        .client
        .sync()
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        got,
        vec!["queued while offline".to_string()],
        "delivered exactly once"
    );
    assert_eq!(
        alice_client
            .history()
            .iter()
            .filter(|m| m.text == "queued while offline")
            .count(),
        1
    );
    // And messaging carries on.
    alice_client
        .send_text(
            Target::Conversation(sent.conversation_id),
            "after",
            Priority::Routine,
        )
        .await
        .unwrap();
    assert_eq!(texts(&mut bob).await, vec!["after".to_string()]);
    server.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_name() != "profile.lock" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_wrong_passphrase_wrong_ca_and_non_members() {
    let server = server().await;
    let alice = enroll(&server, "alice", Role::Physician).await;
    let mut mallory = enroll(&server, "mallory", Role::Nurse).await;
    let profile = alice.dir.path().join("profile");
    drop(alice.client);
    assert!(matches!(
        WardClient::open(&profile, "not the passphrase"),
        Err(WardError::WrongPassphrase)
    ));
    let mut alice = WardClient::open(&profile, PASSPHRASE).unwrap();

    // A server whose certificate is not from the CA we were given.
    let other = TestServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    let code = other.create_user("eve", Role::Nurse).await;
    let dir = tempfile::tempdir().unwrap();
    let err = WardClient::enroll(EnrollParams {
        profile_dir: &dir.path().join("p"),
        passphrase: PASSPHRASE,
        server_url: &other.url,
        ca_pem: server.ca_pem.as_deref().unwrap(),
        username: "eve".parse().unwrap(),
        enrollment_code: &code,
        password: PASSWORD,
        device_name: "x",
    })
    .await
    .err()
    .unwrap();
    assert!(matches!(err, WardError::Tls(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(
        !dir.path()
            .join("p")
            .join(ward_client::PROFILE_FILE)
            .exists(),
        "nothing saved"
    );

    // A non-member cannot post into a conversation it is not in.
    let group = alice
        .create_group("private", &["mallory".parse().unwrap()])
        .await
        .unwrap();
    mallory.client.sync().await.unwrap();
    alice
        .remove_members(group, &["mallory".parse().unwrap()])
        .await
        .unwrap();
    mallory.client.sync().await.unwrap();
    let err = mallory
        .client
        .send_text(Target::Conversation(group), "let me in", Priority::Routine)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not in conversation"), "{err}");
    let bogus = ConversationId::random();
    assert!(
        mallory
            .client
            .send_text(Target::Conversation(bogus), "x", Priority::Routine)
            .await
            .is_err()
    );
    // Bad input to the SDK is named.
    let err = alice
        .send_text(
            Target::User("alice".parse().unwrap()),
            "me",
            Priority::Routine,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("yourself"), "{err}");
    let err = alice
        .create_group("x", &["nobody".parse().unwrap()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
    other.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_policy_blocks_warns_and_labels_before_encryption() {
    let server = server().await;
    let mut alice = enroll(&server, "alice", Role::Physician).await;
    let mut bob = enroll(&server, "bob", Role::Nurse).await;
    let first = alice
        .client
        .send_text(
            Target::User("bob".parse().unwrap()),
            "no policy yet: 555-867-5309",
            Priority::Routine,
        )
        .await
        .unwrap();
    let conv = first.conversation_id;
    let doc = serde_json::json!({
        "config": {"mrn_patterns": ["MRN[:# ]?\\d{7}"]},
        "policy": {"default": "label", "rules": [
            {"detector": "us_ssn", "action": "block"},
            {"detector": "phone", "action": "warn"},
            {"detector": "email", "sender_role": "nurse", "action": "block"},
        ]},
    });
    server
        .services
        .set_dlp_policy(&ward_server::service::Actor::cli(), doc)
        .await
        .unwrap();

    let err = alice
        .client
        .send_text(
            Target::Conversation(conv),
            "SSN 078-05-1120 for the transfer",
            Priority::Routine,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WardError::PhiBlocked { labels } if labels == &["us_ssn"]),
        "{err}"
    );
    let err = alice
        .client
        .send_text(
            Target::Conversation(conv),
            "call the family on 555-867-5309",
            Priority::Routine,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, WardError::PhiNeedsConfirmation { .. }),
        "{err}"
    );
    alice
        .client
        .send_message(
            Target::Conversation(conv),
            "call the family on 555-867-5309",
            Priority::Routine,
            true,
        )
        .await
        .unwrap();
    alice
        .client
        .send_text(
            Target::Conversation(conv),
            "MRN 1234567 to bed 4",
            Priority::Routine,
        )
        .await
        .unwrap();
    // A rule for one role: the nurse may not send e-mail addresses, the physician may.
    let err = bob
        .client
        .send_text(
            Target::Conversation(conv),
            "write to j.doe@example.org",
            Priority::Routine,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WardError::PhiBlocked { .. }), "{err}");
    alice
        .client
        .send_text(
            Target::Conversation(conv),
            "write to j.doe@example.org",
            Priority::Routine,
        )
        .await
        .unwrap();

    let got: Vec<String> = bob
        .client
        .sync()
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        got.len(),
        4,
        "blocked and unconfirmed messages never left the sender: {got:?}"
    );
    assert!(!got.iter().any(|t| t.contains("078-05-1120")));
    // Labels travel as metadata into the audit log; the content does not.
    let log = server.services.store.audit_records(0, 1000).await.unwrap();
    let labels: Vec<String> = log
        .iter()
        .filter(|r| r.action == "message.send")
        .filter_map(|r| r.details.get("phi_labels"))
        .map(|l| l.to_string())
        .collect();
    assert!(labels.iter().any(|l| l.contains("phone")), "{labels:?}");
    assert!(labels.iter().any(|l| l.contains("mrn")), "{labels:?}");
    assert!(
        !serde_json::to_string(&log.iter().map(|r| &r.details).collect::<Vec<_>>())
            .unwrap()
            .contains("555-867")
    );
    // A policy altered after signing is refused by the client (fail closed).
    let tampered = server.services.signed_dlp_policy();
    let mut doc = tampered.document.clone();
    doc = doc.replace("block", "allow");
    let key = ed25519_dalek::VerifyingKey::from_bytes(&alice.client_trust_key()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(tampered.signature.as_slice()).unwrap();
    use ed25519_dalek::Verifier;
    assert!(
        key.verify(&ward_proto::SignedDlpPolicy::signed_bytes(&doc), &sig)
            .is_err()
    );
    server.stop().await;
}

trait TrustKey {
    fn client_trust_key(&self) -> [u8; 32];
}

impl TrustKey for Device {
    fn client_trust_key(&self) -> [u8; 32] {
        let _ = &self.dir;
        // The organisation CA key as the server publishes it; the client pinned the same one.
        self.client.org_ca_public_key()
    }
}
