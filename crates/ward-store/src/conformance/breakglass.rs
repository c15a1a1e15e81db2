//! Conformance scenarios of [`BreakGlassStore`](crate::BreakGlassStore): grants, their
//! conflicts, expiry, and the end of the membership a grant gave (also when the commit that
//! added the grantee lands after the grant ended).

use std::sync::Arc;

use time::Duration;
use ward_proto::{ConversationId, DeviceId, UserId};

use super::{accept, active_user, adding, app, commit, pair, t0};
use crate::{BreakGlassRecord, Store, StoreError};

fn grant(conv: ConversationId, user: UserId, minutes: i64) -> BreakGlassRecord {
    BreakGlassRecord {
        id: uuid::Uuid::new_v4(),
        conversation_id: conv,
        user_id: user,
        reason: "Cardiac arrest on ward 4, covering the on-call team".to_owned(),
        granted_at: t0(),
        expires_at: t0() + Duration::minutes(minutes),
        added_at: None,
        ended_at: None,
    }
}

async fn member_ids(store: &dyn Store, conv: ConversationId) -> Vec<UserId> {
    let mut v: Vec<UserId> = store
        .members(conv)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    v.sort();
    v
}

async fn routed(store: &dyn Store, conv: ConversationId) -> Vec<DeviceId> {
    let mut v: Vec<DeviceId> = store
        .member_devices(conv)
        .await
        .unwrap()
        .iter()
        .map(|m| m.device_id)
        .collect();
    v.sort();
    v
}

pub async fn break_glass_grant_lifecycle(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let (carol, c, _) = active_user(&*store, "carol").await;
    let g = grant(p.conv.id, carol.id, 60);
    store.create_break_glass(&g).await.unwrap();
    assert_eq!(store.break_glass(g.id).await.unwrap(), Some(g.clone()));

    // One open grant per user and conversation; never for a member; never for nothing.
    assert!(matches!(
        store
            .create_break_glass(&grant(p.conv.id, carol.id, 30))
            .await,
        Err(StoreError::Conflict("break-glass grant"))
    ));
    assert!(matches!(
        store
            .create_break_glass(&grant(p.conv.id, p.bob.id, 30))
            .await,
        Err(StoreError::Conflict("conversation member"))
    ));
    assert!(matches!(
        store
            .create_break_glass(&grant(ConversationId::random(), carol.id, 30))
            .await,
        Err(StoreError::NotFound("conversation"))
    ));

    // Listing: per conversation and overall, newest first, bounded.
    let other = super::group(&*store, p.bob.id, p.b.id).await;
    let later = BreakGlassRecord {
        granted_at: t0() + Duration::minutes(1),
        ..grant(other.id, carol.id, 61)
    };
    store.create_break_glass(&later).await.unwrap();
    assert_eq!(
        store.break_glass_grants(Some(p.conv.id), 10).await.unwrap(),
        vec![g.clone()]
    );
    assert_eq!(
        store.break_glass_grants(None, 10).await.unwrap(),
        vec![later.clone(), g.clone()]
    );
    assert_eq!(
        store.break_glass_grants(None, 1).await.unwrap(),
        vec![later.clone()]
    );

    // Not expired before expires_at; expired at it.
    assert!(
        store
            .expired_break_glass(g.expires_at - Duration::microseconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.expired_break_glass(g.expires_at).await.unwrap(),
        vec![g.clone()]
    );
    assert_eq!(
        store.expired_break_glass(later.expires_at).await.unwrap(),
        vec![g.clone(), later.clone()]
    );

    // A member's commit adds her; the first accepted one is recorded.
    let add = accept(
        &*store,
        &commit(
            p.conv.id,
            p.alice.id,
            p.a.id,
            1,
            adding(&[carol.id], &[c.id]),
        ),
    )
    .await;
    let added_at = t0() + Duration::minutes(2);
    assert!(store.mark_break_glass_added(g.id, added_at).await.unwrap());
    assert!(
        store
            .mark_break_glass_added(g.id, added_at + Duration::minutes(1))
            .await
            .unwrap()
    );
    assert_eq!(
        store.break_glass(g.id).await.unwrap().unwrap().added_at,
        Some(added_at)
    );
    let during = accept(&*store, &app(p.conv.id, p.bob.id, p.b.id, add.epoch, b"m")).await;
    assert!(during.recipients.contains(&c.id));

    // Expiry ends the grant, her membership and her routing, at once.
    let end_time = g.expires_at;
    let end = store.end_break_glass(g.id, end_time).await.unwrap();
    assert!(end.ended_now);
    assert_eq!(end.devices, vec![c.id]);
    assert_eq!(end.grant.ended_at, Some(end_time));
    assert_eq!(end.grant.added_at, Some(added_at));
    let mut both = vec![p.alice.id, p.bob.id];
    both.sort();
    assert_eq!(member_ids(&*store, p.conv.id).await, both);
    let mut pair_devices = vec![p.a.id, p.b.id];
    pair_devices.sort();
    assert_eq!(routed(&*store, p.conv.id).await, pair_devices);
    let after = accept(&*store, &app(p.conv.id, p.bob.id, p.b.id, add.epoch, b"n")).await;
    assert_eq!(after.recipients, vec![p.a.id], "nothing new reaches her");
    let seqs: Vec<u64> = store
        .sync(c.id, 100)
        .await
        .unwrap()
        .envelopes
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        seqs,
        vec![during.seq],
        "she keeps what was sent while she had access"
    );
    assert!(matches!(
        store
            .append(&app(p.conv.id, carol.id, c.id, add.epoch, b"x"))
            .await,
        Err(crate::AppendError::NotMember)
    ));

    // Ending again changes nothing; a late fulfilment is refused; she may be granted again.
    let again = store
        .end_break_glass(g.id, end_time + Duration::minutes(5))
        .await
        .unwrap();
    assert!(!again.ended_now);
    assert!(again.devices.is_empty());
    assert_eq!(again.grant.ended_at, Some(end_time));
    assert!(!store.mark_break_glass_added(g.id, end_time).await.unwrap());
    assert!(
        store
            .expired_break_glass(end_time)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.expired_break_glass(later.expires_at).await.unwrap(),
        vec![later]
    );
    store
        .create_break_glass(&grant(p.conv.id, carol.id, 10))
        .await
        .unwrap();
}

pub async fn break_glass_late_fulfilment_is_undone(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let (carol, c, _) = active_user(&*store, "carol").await;
    let g = grant(p.conv.id, carol.id, 5);
    store.create_break_glass(&g).await.unwrap();
    // The grant ends before any member's commit adds her: nothing to remove yet.
    let end = store.end_break_glass(g.id, g.expires_at).await.unwrap();
    assert!(end.ended_now);
    assert!(end.devices.is_empty());
    // A commit that was in flight lands afterwards and adds her.
    let add = accept(
        &*store,
        &commit(
            p.conv.id,
            p.alice.id,
            p.a.id,
            1,
            adding(&[carol.id], &[c.id]),
        ),
    )
    .await;
    assert!(member_ids(&*store, p.conv.id).await.contains(&carol.id));
    // The server sees the grant ended and ends the membership again.
    assert!(
        !store
            .mark_break_glass_added(g.id, g.expires_at)
            .await
            .unwrap()
    );
    let undo = store.end_break_glass(g.id, g.expires_at).await.unwrap();
    assert!(!undo.ended_now);
    assert_eq!(undo.devices, vec![c.id]);
    assert!(!member_ids(&*store, p.conv.id).await.contains(&carol.id));
    let next = accept(&*store, &app(p.conv.id, p.bob.id, p.b.id, add.epoch, b"m")).await;
    assert!(!next.recipients.contains(&c.id));
    assert_eq!(
        store.break_glass(g.id).await.unwrap().unwrap().added_at,
        None
    );
}

pub async fn break_glass_unknown_grant(store: Arc<dyn Store>) {
    let id = uuid::Uuid::new_v4();
    assert_eq!(store.break_glass(id).await.unwrap(), None);
    assert!(matches!(
        store.mark_break_glass_added(id, t0()).await,
        Err(StoreError::NotFound("break-glass grant"))
    ));
    assert!(matches!(
        store.end_break_glass(id, t0()).await,
        Err(StoreError::NotFound("break-glass grant"))
    ));
    assert!(store.break_glass_grants(None, 10).await.unwrap().is_empty());
}
