//! Conformance scenarios of [`RetentionStore`](crate::RetentionStore): holds, the expiry
//! scan, deleting envelopes with their deletion order, the journal archive's retention,
//! device acknowledgements and erasure records.

use std::sync::Arc;

use time::Duration;
use ward_proto::{Bytes, ConversationKind, HoldTarget, JournalCopy, MessageId};

use super::{accept, app, pair, t0};
use crate::{
    ArchiveMetaQuery, EnvelopeMetaQuery, ErasureRecord, JournalKey, LegalHold, Store, StoreError,
    StoredDeletionOrder,
};

fn hold(target: HoldTarget, at: time::OffsetDateTime) -> LegalHold {
    LegalHold {
        id: uuid::Uuid::new_v4(),
        target,
        reason: "litigation".to_owned(),
        case_ref: Some("CASE-1".to_owned()),
        created_by: None,
        created_at: at,
        released_by: None,
        released_at: None,
    }
}

pub async fn retention_holds_add_list_release(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    assert!(store.holds().await.unwrap().is_empty());
    let h1 = hold(HoldTarget::User(p.alice.id), t0());
    let mut h2 = hold(
        HoldTarget::Conversation(p.conv.id),
        t0() + Duration::seconds(1),
    );
    h2.case_ref = None;
    h2.created_by = Some(p.bob.id);
    store.add_hold(&h2).await.unwrap();
    store.add_hold(&h1).await.unwrap();
    assert_eq!(store.holds().await.unwrap(), vec![h1.clone(), h2.clone()]);

    let at = t0() + Duration::days(1);
    assert!(store.release_hold(h1.id, Some(p.bob.id), at).await.unwrap());
    assert!(
        !store.release_hold(h1.id, None, at).await.unwrap(),
        "a second release changes nothing"
    );
    let got = store.holds().await.unwrap();
    assert_eq!(got[0].released_at, Some(at));
    assert_eq!(got[0].released_by, Some(p.bob.id));
    assert_eq!(got[1], h2);
    assert!(matches!(
        store.release_hold(uuid::Uuid::new_v4(), None, at).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.conversations_of_user(p.bob.id).await.unwrap(),
        vec![p.conv.id]
    );
}

pub async fn retention_expiry_scan_delete_and_orders(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    // Three application messages at t0, t0+1h, t0+2h (bob sends the last one).
    let mut ids = Vec::new();
    for (i, (user, dev)) in [
        (p.alice.id, p.a.id),
        (p.alice.id, p.a.id),
        (p.bob.id, p.b.id),
    ]
    .into_iter()
    .enumerate()
    {
        let mut req = app(p.conv.id, user, dev, 1, b"ciphertext");
        req.sent_at = t0() + Duration::hours(i as i64);
        let r = accept(store.as_ref(), &req).await;
        ids.push((req.message_id, r.seq));
    }
    // Commits are never listed; the scan is ordered by (sent_at, message_id) and pages.
    let q = |before, after, sender| EnvelopeMetaQuery {
        sent_before: before,
        sender_user_id: sender,
        after,
        limit: 2,
    };
    let first = store.envelope_metas(&q(None, None, None)).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].message_id, ids[0].0);
    assert_eq!(first[0].kind, ConversationKind::Group);
    assert_eq!(first[0].sender_user_id, p.alice.id);
    assert_eq!(first[0].sent_at, t0());
    assert_eq!(first[1].seq, ids[1].1);
    let last = first.last().map(|m| (m.sent_at, m.message_id));
    let rest = store.envelope_metas(&q(None, last, None)).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].message_id, ids[2].0);
    let early = store
        .envelope_metas(&q(Some(t0() + Duration::minutes(90)), None, None))
        .await
        .unwrap();
    assert_eq!(early.len(), 2);
    let bobs = store
        .envelope_metas(&q(None, None, Some(p.bob.id)))
        .await
        .unwrap();
    assert_eq!(bobs.len(), 1);

    // Delete the first two with an order; the third stays.
    let order = StoredDeletionOrder {
        id: uuid::Uuid::new_v4(),
        conversation_id: p.conv.id,
        message_ids: vec![ids[0].0, ids[1].0],
        max_seq: ids[1].1,
        issued_at: t0() + Duration::days(1),
    };
    let n = store
        .delete_envelopes(p.conv.id, &order.message_ids, Some(&order))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(store.envelope(p.conv.id, ids[0].1).await.unwrap().is_none());
    assert!(store.envelope(p.conv.id, ids[2].1).await.unwrap().is_some());
    // Unknown ids or another conversation's ids delete nothing.
    assert_eq!(
        store
            .delete_envelopes(p.conv.id, &[MessageId::random()], None)
            .await
            .unwrap(),
        0
    );
    // Sync no longer delivers them; the rest still flows.
    let batch = store.sync(p.b.id, 10).await.unwrap();
    assert!(
        batch
            .envelopes
            .iter()
            .all(|e| e.seq != ids[0].1 && e.seq != ids[1].1)
    );

    // Both devices get the order until each acknowledges it.
    for d in [p.a.id, p.b.id] {
        assert_eq!(
            store.pending_deletion_orders(d, 10).await.unwrap(),
            vec![order.clone()]
        );
    }
    let at = t0() + Duration::days(2);
    assert!(
        store
            .ack_deletion_order(order.id, p.b.id, at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .ack_deletion_order(order.id, p.b.id, at)
            .await
            .unwrap()
    );
    assert!(
        store
            .pending_deletion_orders(p.b.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .pending_deletion_orders(p.a.id, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        store
            .ack_deletion_order(uuid::Uuid::new_v4(), p.a.id, at)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn retention_archive_due_and_delete(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let k = JournalKey {
        key_id: "d".repeat(32),
        public_key: vec![7; 1216],
        created_at: t0(),
    };
    store.add_journal_key(&k).await.unwrap();
    let mut msgs = Vec::new();
    for i in 0..3 {
        let (user, dev) = if i == 2 {
            (p.bob.id, p.b.id)
        } else {
            (p.alice.id, p.a.id)
        };
        let mut req = app(p.conv.id, user, dev, 1, b"ciphertext");
        req.sent_at = t0() + Duration::days(i);
        req.journal = Some(JournalCopy {
            key_id: k.key_id.clone(),
            ciphertext: Bytes(vec![i as u8; 40]),
        });
        accept(store.as_ref(), &req).await;
        msgs.push(req.message_id);
    }
    let all = |due, sender| ArchiveMetaQuery {
        due,
        sender_user_id: sender,
        after: 0,
        limit: 10,
    };
    let every = store.archive_metas(&all(None, None)).await.unwrap();
    assert_eq!(every.len(), 3);
    assert_eq!(every[0].message_id, msgs[0]);
    assert_eq!(every[0].retain_until, None);
    assert_eq!(every[2].sender_user_id, p.bob.id);
    assert_eq!(every[1].sent_at, t0() + Duration::days(1));
    // Due at t0+10d with a cutoff of t0+1d: only the first (retain_until NULL, older).
    let now = t0() + Duration::days(10);
    let due = store
        .archive_metas(&all(Some((now, Some(t0() + Duration::days(1)))), None))
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|m| m.message_id).collect::<Vec<_>>(),
        vec![msgs[0]]
    );
    // Without a policy cutoff nothing is due (no entry has its own retain_until).
    assert!(
        store
            .archive_metas(&all(Some((now, None)), None))
            .await
            .unwrap()
            .is_empty()
    );
    let bobs = store
        .archive_metas(&all(None, Some(p.bob.id)))
        .await
        .unwrap();
    assert_eq!(bobs.len(), 1);
    // Paging.
    let after = store
        .archive_metas(&ArchiveMetaQuery {
            after: every[0].archive_seq,
            ..all(None, None)
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 2);

    assert_eq!(
        store
            .delete_archive_entries(&[every[0].archive_seq])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_archive_entries(&[every[0].archive_seq])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.archive_metas(&all(None, None)).await.unwrap().len(),
        2
    );
}

pub async fn retention_erasure_records(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    assert!(store.erasures().await.unwrap().is_empty());
    let e = ErasureRecord {
        id: uuid::Uuid::new_v4(),
        user_id: p.bob.id,
        requested_by: Some(p.alice.id),
        requested_at: t0(),
        status: "partial".to_owned(),
        report: r#"{"kept":[]}"#.to_owned(),
    };
    store.add_erasure(&e).await.unwrap();
    assert_eq!(store.erasures().await.unwrap(), vec![e]);
}
