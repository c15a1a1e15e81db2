//! Conformance scenarios of [`BlobStore`](crate::BlobStore) (ADR 0015).

use std::sync::Arc;

use time::Duration;
use ward_proto::{ConversationId, MessageId};

use super::{accept, active_user, app, group, pair, t0};
use crate::{Blob, BlobState, JournalKey, JournalQuery, Store, StoreError};

fn upload(p: &super::Pair, size: u64) -> Blob {
    Blob {
        id: uuid::Uuid::new_v4(),
        conversation_id: p.conv.id,
        uploader_user_id: p.alice.id,
        uploader_device_id: p.a.id,
        size,
        received: 0,
        sha256: None,
        state: BlobState::Uploading,
        created_at: t0(),
        updated_at: t0(),
    }
}

pub async fn blobs_upload_lifecycle(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let b = upload(&p, 300);
    assert!(store.create_blob(&b, u64::MAX).await.unwrap());
    assert_eq!(store.blob(b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(store.blob(uuid::Uuid::new_v4()).await.unwrap(), None);

    let t1 = t0() + Duration::seconds(1);
    assert!(store.advance_blob(b.id, 0, 100, t1).await.unwrap());
    // Out of order, a replay and a step past the size change nothing.
    assert!(!store.advance_blob(b.id, 200, 300, t1).await.unwrap());
    assert!(!store.advance_blob(b.id, 0, 100, t1).await.unwrap());
    assert!(!store.advance_blob(b.id, 100, 301, t1).await.unwrap());
    assert!(
        !store
            .advance_blob(uuid::Uuid::new_v4(), 0, 1, t1)
            .await
            .unwrap()
    );
    // Not complete before every byte arrived.
    assert!(!store.complete_blob(b.id, &[7; 32], t1).await.unwrap());
    assert!(store.advance_blob(b.id, 100, 300, t1).await.unwrap());
    let t2 = t0() + Duration::seconds(2);
    assert!(store.complete_blob(b.id, &[7; 32], t2).await.unwrap());
    // Completing twice, or advancing a complete blob, is refused.
    assert!(!store.complete_blob(b.id, &[8; 32], t2).await.unwrap());
    assert!(!store.advance_blob(b.id, 300, 300, t2).await.unwrap());
    let got = store.blob(b.id).await.unwrap().unwrap();
    assert_eq!(got.state, BlobState::Complete);
    assert_eq!(got.received, 300);
    assert_eq!(got.sha256, Some([7; 32]));
    assert_eq!(got.created_at, t0());
    assert_eq!(got.updated_at, t2);

    assert!(store.delete_blob(b.id).await.unwrap());
    assert!(!store.delete_blob(b.id).await.unwrap());
    assert_eq!(store.blob(b.id).await.unwrap(), None);
}

pub async fn blobs_quota_and_conflicts(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    assert_eq!(store.blob_bytes().await.unwrap(), 0);
    let a = upload(&p, 600);
    assert!(store.create_blob(&a, 1000).await.unwrap());
    // 600 + 500 > 1000: refused, nothing written.
    let over = upload(&p, 500);
    assert!(!store.create_blob(&over, 1000).await.unwrap());
    assert_eq!(store.blob(over.id).await.unwrap(), None);
    let fits = upload(&p, 400);
    assert!(store.create_blob(&fits, 1000).await.unwrap());
    assert_eq!(store.blob_bytes().await.unwrap(), 1000);
    assert!(matches!(
        store.create_blob(&fits, u64::MAX).await,
        Err(StoreError::Conflict(_))
    ));
    let mut orphan = upload(&p, 1);
    orphan.conversation_id = ConversationId::random();
    assert!(matches!(
        store.create_blob(&orphan, u64::MAX).await,
        Err(StoreError::NotFound(_))
    ));
    // Deleting frees quota.
    assert!(store.delete_blob(a.id).await.unwrap());
    assert_eq!(store.blob_bytes().await.unwrap(), 400);
    assert!(store.create_blob(&over, 1000).await.unwrap());
}

pub async fn blobs_delete_by_conversation_and_collect_stale(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let (user, dev, _) = active_user(store.as_ref(), "carol").await;
    let other = group(store.as_ref(), user.id, dev.id).await;

    let old = upload(&p, 10);
    let mut fresh = upload(&p, 10);
    fresh.created_at = t0() + Duration::hours(2);
    fresh.updated_at = fresh.created_at;
    let mut done = upload(&p, 10);
    done.created_at = t0() - Duration::hours(5);
    done.updated_at = done.created_at;
    let mut elsewhere = upload(&p, 10);
    elsewhere.conversation_id = other.id;
    elsewhere.uploader_user_id = user.id;
    elsewhere.uploader_device_id = dev.id;
    elsewhere.created_at = t0() - Duration::hours(1);
    elsewhere.updated_at = elsewhere.created_at;
    for b in [&old, &fresh, &done, &elsewhere] {
        assert!(store.create_blob(b, u64::MAX).await.unwrap());
    }
    assert!(
        store
            .advance_blob(done.id, 0, 10, done.created_at)
            .await
            .unwrap()
    );
    assert!(
        store
            .complete_blob(done.id, &[1; 32], done.created_at)
            .await
            .unwrap()
    );

    // Stale uploads: in progress and untouched since before the cut-off, oldest first;
    // a completed blob is never stale.
    let cut = t0() + Duration::hours(1);
    let stale: Vec<_> = store
        .stale_uploads(cut, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(stale, vec![elsewhere.id, old.id]);
    assert_eq!(store.stale_uploads(cut, 1).await.unwrap().len(), 1);

    // Deleting by conversation removes that conversation's blobs only.
    let mut gone = store.delete_conversation_blobs(p.conv.id).await.unwrap();
    gone.sort();
    let mut want = vec![old.id, fresh.id, done.id];
    want.sort();
    assert_eq!(gone, want);
    assert!(store.blob(elsewhere.id).await.unwrap().is_some());
    assert!(
        store
            .delete_conversation_blobs(p.conv.id)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn blobs_message_references_keep_and_release(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let (user, dev, _) = active_user(store.as_ref(), "carol").await;
    let other = group(store.as_ref(), user.id, dev.id).await;
    let complete = |size: u64| {
        let store = store.clone();
        let b = upload(&p, size);
        async move {
            assert!(store.create_blob(&b, u64::MAX).await.unwrap());
            assert!(store.advance_blob(b.id, 0, size, t0()).await.unwrap());
            assert!(store.complete_blob(b.id, &[3; 32], t0()).await.unwrap());
            b
        }
    };
    let shared = complete(10).await;
    let single = complete(20).await;
    let never_sent = complete(30).await;
    let uploading = upload(&p, 40);
    assert!(store.create_blob(&uploading, u64::MAX).await.unwrap());
    let (m1, m2) = (MessageId::random(), MessageId::random());

    // Only complete blobs of the message's own conversation can be referenced.
    assert!(
        !store
            .add_blob_refs(p.conv.id, m1, &[shared.id, uploading.id])
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_blob_refs(other.id, m1, &[shared.id])
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_blob_refs(p.conv.id, m1, &[uuid::Uuid::new_v4()])
            .await
            .unwrap()
    );
    assert!(
        store
            .add_blob_refs(p.conv.id, m1, &[shared.id, single.id])
            .await
            .unwrap()
    );
    // A retried send records the same references again without error.
    assert!(
        store
            .add_blob_refs(p.conv.id, m1, &[shared.id, single.id])
            .await
            .unwrap()
    );
    assert!(
        store
            .add_blob_refs(p.conv.id, m2, &[shared.id])
            .await
            .unwrap()
    );

    // Unreferenced complete blobs, untouched before the cut-off; uploads never count.
    let later = t0() + Duration::hours(1);
    let unref: Vec<_> = store
        .unreferenced_blobs(later, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(unref, vec![never_sent.id]);
    assert!(store.unreferenced_blobs(t0(), 10).await.unwrap().is_empty());

    // Deleting m1 frees the blob only it referenced; the shared one stays for m2.
    assert_eq!(
        store.release_blob_refs(&[m1]).await.unwrap(),
        vec![single.id]
    );
    assert_eq!(store.blob(single.id).await.unwrap(), None);
    assert!(store.blob(shared.id).await.unwrap().is_some());
    assert!(store.release_blob_refs(&[m1]).await.unwrap().is_empty());
    assert_eq!(
        store.release_blob_refs(&[m2]).await.unwrap(),
        vec![shared.id]
    );
    // A message without blobs releases nothing; a never-referenced blob is not touched.
    assert!(
        store
            .release_blob_refs(&[MessageId::random()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.blob(never_sent.id).await.unwrap().is_some());

    // Deleting a referenced blob (its conversation's deletion) drops its references.
    let kept = complete(5).await;
    let m3 = MessageId::random();
    assert!(
        store
            .add_blob_refs(p.conv.id, m3, &[kept.id])
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_conversation_blobs(p.conv.id)
            .await
            .unwrap()
            .contains(&kept.id)
    );
    assert!(store.release_blob_refs(&[m3]).await.unwrap().is_empty());
}

/// A message's blob stays while its envelope or its journal copy is kept (ADR 0017): the
/// compliance export needs the ciphertext as long as the journal holds the key.
pub async fn blobs_outlive_the_envelope_while_the_journal_copy_remains(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let key = JournalKey {
        key_id: "j".repeat(32),
        public_key: vec![7; 1216],
        created_at: t0(),
    };
    store.add_journal_key(&key).await.unwrap();
    let b = upload(&p, 10);
    assert!(store.create_blob(&b, u64::MAX).await.unwrap());
    assert!(store.advance_blob(b.id, 0, 10, t0()).await.unwrap());
    assert!(store.complete_blob(b.id, &[3; 32], t0()).await.unwrap());
    let mut req = app(p.conv.id, p.alice.id, p.a.id, 1, b"mls ciphertext");
    req.journal = Some(ward_proto::JournalCopy {
        key_id: key.key_id.clone(),
        ciphertext: ward_proto::Bytes(b"journal copy".to_vec()),
    });
    accept(store.as_ref(), &req).await;
    let m = req.message_id;
    assert!(store.add_blob_refs(p.conv.id, m, &[b.id]).await.unwrap());

    // Both kept: nothing is released.
    assert!(store.release_blob_refs(&[m]).await.unwrap().is_empty());
    // The envelope goes (its lifespan), the journal copy stays: the blob stays.
    assert_eq!(
        store.delete_envelopes(p.conv.id, &[m], None).await.unwrap(),
        1
    );
    assert!(store.release_blob_refs(&[m]).await.unwrap().is_empty());
    assert!(store.blob(b.id).await.unwrap().is_some());
    // The journal copy goes too: now the blob is released.
    let entries = store
        .journal_entries(&JournalQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let seqs: Vec<u64> = entries
        .iter()
        .filter(|e| e.message_id == m)
        .map(|e| e.archive_seq)
        .collect();
    assert_eq!(seqs.len(), 1);
    assert_eq!(store.delete_archive_entries(&seqs).await.unwrap(), 1);
    assert_eq!(store.release_blob_refs(&[m]).await.unwrap(), vec![b.id]);
    assert_eq!(store.blob(b.id).await.unwrap(), None);
}
