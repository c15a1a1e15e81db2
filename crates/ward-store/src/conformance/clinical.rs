//! Conformance scenarios of [`ClinicalContextStore`](crate::ClinicalContextStore): patient
//! tags, message templates, do-not-disturb.

use std::sync::Arc;

use time::Duration;
use ward_proto::{ConversationId, TemplateName, TemplatePriority, UserId};

use super::{active_user, group, t0};
use crate::{DoNotDisturb, JournalKey, MessageTemplate, PatientTag, Store, StoreError};

fn tag(conv: ConversationId, key_id: &str, bytes: &[u8]) -> PatientTag {
    PatientTag {
        index_seq: 0,
        conversation_id: conv,
        key_id: key_id.to_owned(),
        tag: bytes.to_vec(),
        created_at: t0(),
    }
}

pub async fn clinical_patient_tags_limit_and_pages(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(store.as_ref(), "alice").await;
    let c1 = group(store.as_ref(), alice.id, a.id).await.id;
    let c2 = group(store.as_ref(), alice.id, a.id).await.id;
    let key_id = "k".repeat(32);
    store
        .add_journal_key(&JournalKey {
            key_id: key_id.clone(),
            public_key: vec![1; 1216],
            created_at: t0(),
        })
        .await
        .unwrap();
    let s1 = store
        .add_patient_tag(&tag(c1, &key_id, b"t1"), 2)
        .await
        .unwrap();
    let s2 = store
        .add_patient_tag(&tag(c2, &key_id, b"t2"), 2)
        .await
        .unwrap();
    let s3 = store
        .add_patient_tag(&tag(c1, &key_id, b"t3"), 2)
        .await
        .unwrap();
    assert!(s1 < s2 && s2 < s3);
    assert!(matches!(
        store.add_patient_tag(&tag(c1, &key_id, b"t4"), 2).await,
        Err(StoreError::Conflict("patient tag"))
    ));
    assert!(matches!(
        store
            .add_patient_tag(&tag(ConversationId::random(), &key_id, b"x"), 2)
            .await,
        Err(StoreError::NotFound("conversation"))
    ));
    assert!(matches!(
        store
            .add_patient_tag(&tag(c2, &"z".repeat(32), b"x"), 2)
            .await,
        Err(StoreError::NotFound("journal key"))
    ));
    let all = store.patient_tags(0, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|t| (t.index_seq, t.conversation_id, t.tag.clone()))
            .collect::<Vec<_>>(),
        vec![
            (s1, c1, b"t1".to_vec()),
            (s2, c2, b"t2".to_vec()),
            (s3, c1, b"t3".to_vec())
        ]
    );
    assert_eq!(all[0], tag(c1, &key_id, b"t1").with_seq(s1));
    let page = store.patient_tags(s1, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].index_seq, s2);
}

impl PatientTag {
    fn with_seq(mut self, seq: u64) -> Self {
        self.index_seq = seq;
        self
    }
}

pub async fn clinical_templates_create_list_delete(store: Arc<dyn Store>) {
    let name = TemplateName::parse("code-blue").unwrap();
    let t = MessageTemplate {
        name: name.clone(),
        text: "Code Blue, room {room}".into(),
        priority: TemplatePriority::Stat,
        created_at: t0(),
    };
    let other = MessageTemplate {
        name: TemplateName::parse("a-rapid-response").unwrap(),
        text: "Rapid response to {ward}".into(),
        priority: TemplatePriority::Urgent,
        created_at: t0() + Duration::seconds(1),
    };
    store.create_template(&t).await.unwrap();
    store.create_template(&other).await.unwrap();
    assert!(matches!(
        store.create_template(&t).await,
        Err(StoreError::Conflict("template"))
    ));
    assert_eq!(store.template(&name).await.unwrap(), Some(t.clone()));
    assert_eq!(
        store.templates().await.unwrap(),
        vec![other.clone(), t.clone()]
    );
    assert!(store.delete_template(&name).await.unwrap());
    assert!(!store.delete_template(&name).await.unwrap());
    assert_eq!(store.template(&name).await.unwrap(), None);
    assert_eq!(store.templates().await.unwrap(), vec![other]);
}

pub async fn clinical_dnd_set_replace_clear(store: Arc<dyn Store>) {
    let (alice, _, _) = active_user(store.as_ref(), "alice").await;
    let (bob, _, _) = active_user(store.as_ref(), "bob").await;
    let (carol, _, _) = active_user(store.as_ref(), "carol").await;
    assert!(store.dnds().await.unwrap().is_empty());
    let d = DoNotDisturb {
        user_id: alice.id,
        cover_user_id: bob.id,
        until: Some(t0() + Duration::hours(8)),
        since: t0(),
    };
    store.set_dnd(&d).await.unwrap();
    assert_eq!(store.dnds().await.unwrap(), vec![d.clone()]);
    let replaced = DoNotDisturb {
        cover_user_id: carol.id,
        until: None,
        since: t0() + Duration::minutes(1),
        ..d.clone()
    };
    store.set_dnd(&replaced).await.unwrap();
    assert_eq!(store.dnds().await.unwrap(), vec![replaced.clone()]);
    assert!(matches!(
        store
            .set_dnd(&DoNotDisturb {
                cover_user_id: UserId::random(),
                ..d.clone()
            })
            .await,
        Err(StoreError::NotFound("user"))
    ));
    assert_eq!(store.clear_dnd(alice.id).await.unwrap(), Some(replaced));
    assert_eq!(store.clear_dnd(alice.id).await.unwrap(), None);
    assert!(store.dnds().await.unwrap().is_empty());
}
