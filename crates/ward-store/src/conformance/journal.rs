//! Conformance scenarios of [`JournalStore`](crate::JournalStore) and the journal copy carried
//! by [`ConversationStore::append`](crate::ConversationStore::append).

use std::sync::Arc;

use time::Duration;
use ward_proto::{Bytes, JournalCopy};

use super::{accept, app, now, pair, t0};
use crate::{AppendOutcome, JournalKey, JournalQuery, Store, StoreError};

fn key(id: char, at: time::OffsetDateTime) -> JournalKey {
    JournalKey {
        key_id: id.to_string().repeat(32),
        public_key: vec![id as u8; 1216],
        created_at: at,
    }
}

fn copy(key_id: &str, bytes: &[u8]) -> JournalCopy {
    JournalCopy {
        key_id: key_id.to_owned(),
        ciphertext: Bytes(bytes.to_vec()),
    }
}

pub async fn journal_keys_install_and_list(store: Arc<dyn Store>) {
    assert!(store.journal_keys().await.unwrap().is_empty());
    let first = key('a', t0());
    let second = key('b', t0() + Duration::days(30));
    store.add_journal_key(&second).await.unwrap();
    store.add_journal_key(&first).await.unwrap();
    assert_eq!(
        store.journal_keys().await.unwrap(),
        vec![first.clone(), second]
    );
    assert!(matches!(
        store.add_journal_key(&first).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn journal_copies_archived_with_envelopes(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let k = key('c', t0());
    store.add_journal_key(&k).await.unwrap();
    let mut req = app(p.conv.id, p.alice.id, p.a.id, 1, b"mls ciphertext");
    req.journal = Some(copy(&k.key_id, b"journal ciphertext"));
    let r = accept(store.as_ref(), &req).await;
    assert_eq!(
        r.envelope.journal, req.journal,
        "the accepted envelope carries it"
    );

    // Delivered with the envelope, by sync and by envelope().
    let batch = store.sync(p.b.id, 10).await.unwrap();
    let got = batch.envelopes.iter().find(|e| e.seq == r.seq).unwrap();
    assert_eq!(got.journal, req.journal);
    let one = store.envelope(p.conv.id, r.seq).await.unwrap().unwrap();
    assert_eq!(one.journal, req.journal);

    // An envelope without a copy reads back without one.
    let plain = accept(store.as_ref(), &app(p.conv.id, p.alice.id, p.a.id, 1, b"x")).await;
    let plain = store.envelope(p.conv.id, plain.seq).await.unwrap().unwrap();
    assert_eq!(plain.journal, None);

    // A retry is a duplicate and archives nothing twice.
    let mut retry = req.clone();
    retry.message_id = ward_proto::MessageId::random();
    retry.journal = Some(copy(&k.key_id, b"another copy"));
    assert!(matches!(
        store.append(&retry).await.unwrap(),
        AppendOutcome::Duplicate { .. }
    ));
    let all = store
        .journal_entries(&JournalQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let e = &all[0];
    assert_eq!(
        (
            e.message_id,
            e.conversation_id,
            e.seq,
            e.sender_user_id,
            e.sender_device_id
        ),
        (req.message_id, p.conv.id, r.seq, p.alice.id, p.a.id)
    );
    assert_eq!(e.sent_at, req.sent_at);
    assert_eq!(Some(e.copy.clone()), req.journal);
}

pub async fn journal_query_filters_and_pages(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let k = key('d', t0());
    store.add_journal_key(&k).await.unwrap();
    let base = now();
    let mut ids = Vec::new();
    for i in 0..4i64 {
        let (user, dev) = if i % 2 == 0 {
            (p.alice.id, p.a.id)
        } else {
            (p.bob.id, p.b.id)
        };
        let mut req = app(p.conv.id, user, dev, 1, format!("m{i}").as_bytes());
        req.sent_at = base + Duration::seconds(i);
        req.journal = Some(copy(&k.key_id, format!("j{i}").as_bytes()));
        accept(store.as_ref(), &req).await;
        ids.push(req.message_id);
    }
    let q = |f: &dyn Fn(&mut JournalQuery)| {
        let mut q = JournalQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let msgs =
        |v: Vec<crate::JournalEntry>| v.into_iter().map(|e| e.message_id).collect::<Vec<_>>();
    let all = store.journal_entries(&q(&|_| ())).await.unwrap();
    assert_eq!(msgs(all.clone()), ids);
    assert!(all.windows(2).all(|w| w[0].archive_seq < w[1].archive_seq));

    let bob = store
        .journal_entries(&q(&|q| q.sender_user_id = Some(p.bob.id)))
        .await
        .unwrap();
    assert_eq!(msgs(bob), vec![ids[1], ids[3]]);
    let window = store
        .journal_entries(&q(&|q| {
            q.since = Some(base + Duration::seconds(1));
            q.until = Some(base + Duration::seconds(3));
        }))
        .await
        .unwrap();
    assert_eq!(msgs(window), vec![ids[1], ids[2]]);
    let other = store
        .journal_entries(&q(&|q| {
            q.conversation_id = Some(ward_proto::ConversationId::random())
        }))
        .await
        .unwrap();
    assert!(other.is_empty());
    let page = store
        .journal_entries(&q(&|q| {
            q.after = all[0].archive_seq;
            q.limit = 2;
        }))
        .await
        .unwrap();
    assert_eq!(msgs(page), vec![ids[1], ids[2]]);
}
