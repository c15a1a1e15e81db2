//! Data written and acknowledged survives closing (or just dropping) the store and
//! opening the file again.

use ward_store::conformance::{accept, active_user, app, group, now};
use ward_store::{AuditEvent, AuditStore, ConversationStore, SessionStore, Store, UserStore};
use ward_store_sqlite::SqliteStore;

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("durability-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory")
}

#[tokio::test]
async fn acknowledged_writes_survive_reopen() {
    let dir = temp_dir();
    let path = dir.path().join("ward.db");

    let store = SqliteStore::open(&path).await.expect("open");
    let (alice, a, session) = active_user(&store, "alice").await;
    let conv = group(&store, alice.id, a.id).await;
    let payload: Vec<u8> = (0..=255u8).collect();
    let sent = accept(&store, &app(conv.id, alice.id, a.id, 0, &payload)).await;
    let audit = store
        .append_audit(&AuditEvent {
            at: now(),
            actor_user_id: Some(alice.id),
            actor_device_id: Some(a.id),
            action: "message.send".into(),
            target: Some(conv.id.to_string()),
            details: serde_json::json!({"seq": sent.seq}),
        })
        .await
        .expect("audit");
    // Dropped without `close`: like a process that dies right after acknowledging.
    drop(store);

    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        store.user(alice.id).await.expect("user"),
        Some(alice.clone())
    );
    assert_eq!(
        store.session(&session.token_hash).await.expect("session"),
        Some(session)
    );
    let got = store
        .conversation(conv.id)
        .await
        .expect("conversation")
        .expect("exists");
    assert_eq!(got.last_seq, 1);
    assert_eq!(
        store.envelope(conv.id, 1).await.expect("envelope"),
        Some(sent.envelope)
    );
    assert_eq!(
        store.audit_records(0, 10).await.expect("audit"),
        vec![audit.clone()]
    );

    // Appending after the reopen continues the sequence and the chain.
    let next = accept(&store, &app(conv.id, alice.id, a.id, 0, b"again")).await;
    assert_eq!(next.seq, 2);
    store.close().await;

    // A clean close and reopen, this time through a URL.
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open_url(&url).await.expect("open url");
    assert_eq!(
        store
            .envelope(conv.id, 2)
            .await
            .expect("envelope")
            .map(|e| e.seq),
        Some(2)
    );
    assert_eq!(
        store.audit_head().await.expect("head"),
        Some((1, audit.hash))
    );
    store.close().await;
}

#[tokio::test]
async fn open_url_creates_the_file_and_memory_works() {
    let dir = temp_dir();
    let path = dir.path().join("new.db");
    let store = SqliteStore::open_url(&format!("sqlite://{}", path.display()))
        .await
        .expect("open");
    store.ping().await.expect("ping");
    assert!(path.exists());
    store.close().await;

    let mem = SqliteStore::open_url("sqlite::memory:")
        .await
        .expect("memory");
    let (alice, _, _) = active_user(&mem, "alice").await;
    assert!(mem.user(alice.id).await.expect("user").is_some());
}
