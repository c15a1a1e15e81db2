//! Conformance scenarios of [`EscalationStore`](crate::EscalationStore): creating an
//! escalation with its first events and alerts, claiming due rows once, versioned steps,
//! delivery events, message lookup.

use std::sync::Arc;

use time::Duration;
use ward_proto::{
    AckResponse, ClinicalRoleName, DeliveryState, EscalationOutcome, InboxKind, MessageId,
    MessagePriority,
};

use super::{Pair, accept, app, now, pair};
use crate::{
    AlertDelivery, ChainTier, DeliveryEvent, Escalation, EscalationStep, Store, StoreError,
};

fn escalation(p: &Pair, message_id: MessageId, seq: u64) -> Escalation {
    let t = now();
    Escalation {
        message_id,
        conversation_id: p.conv.id,
        seq,
        sender_user_id: p.alice.id,
        sender_device_id: p.a.id,
        role: ClinicalRoleName::parse("cardiology-on-call").unwrap(),
        priority: MessagePriority::Stat,
        tiers: vec![
            ChainTier {
                role: Some(ClinicalRoleName::parse("cardiology-on-call").unwrap()),
                users: vec![p.bob.id],
                ack_within_secs: Some(60),
            },
            ChainTier {
                role: None,
                users: vec![],
                ack_within_secs: Some(60),
            },
        ],
        renotify_every_secs: Some(30),
        tier: 0,
        tier_started_at: t,
        notified_at: t,
        due_at: Some(t + Duration::seconds(30)),
        outcome: EscalationOutcome::Pending,
        declined: vec![],
        acked_by: None,
        acked_device: None,
        response: None,
        acked_at: None,
        created_at: t,
        version: 0,
    }
}

fn sent_to_bob(p: &Pair, e: &Escalation, state: DeliveryState) -> DeliveryEvent {
    DeliveryEvent {
        message_id: e.message_id,
        device_id: p.b.id,
        user_id: p.bob.id,
        state,
        at: e.notified_at,
        tier: Some(e.tier),
        response: None,
    }
}

async fn stored_message(store: &dyn Store, p: &Pair) -> (MessageId, u64) {
    let r = accept(store, &app(p.conv.id, p.alice.id, p.a.id, 1, b"ciphertext")).await;
    (r.envelope.message_id, r.seq)
}

pub async fn escalation_create_is_atomic_and_idempotent(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let (mid, seq) = stored_message(store.as_ref(), &p).await;
    assert_eq!(
        store.message_location(mid).await.unwrap(),
        Some((p.conv.id, seq))
    );
    assert_eq!(
        store.message_location(MessageId::random()).await.unwrap(),
        None
    );
    let e = escalation(&p, mid, seq);
    let step = EscalationStep {
        at: e.created_at,
        escalation: e.clone(),
        events: vec![
            sent_to_bob(&p, &e, DeliveryState::Queued),
            sent_to_bob(&p, &e, DeliveryState::Sent),
        ],
        alerts: vec![AlertDelivery {
            device_id: p.b.id,
            payload: b"{\"alert\":1}".to_vec(),
        }],
    };
    let items = store.create_escalation(&step).await.unwrap().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, p.b.id);
    assert_eq!(items[0].1.kind, InboxKind::Alert);
    assert_eq!(items[0].1.commit_seq, seq);
    assert_eq!(items[0].1.conversation_id, p.conv.id);
    // The alert is in bob's inbox, first, for sync.
    let batch = store.sync(p.b.id, 100).await.unwrap();
    assert!(
        batch
            .inbox
            .iter()
            .any(|i| i.kind == InboxKind::Alert && i.payload.as_slice() == b"{\"alert\":1}")
    );
    // A second create (a retried send) writes nothing.
    assert!(store.create_escalation(&step).await.unwrap().is_none());
    assert_eq!(store.delivery_events(mid).await.unwrap().len(), 2);
    assert_eq!(store.escalation(mid).await.unwrap(), Some(e.clone()));
    // An escalation needs its stored message.
    let mut ghost = step.clone();
    ghost.escalation.message_id = MessageId::random();
    assert!(matches!(
        store.create_escalation(&ghost).await,
        Err(StoreError::NotFound("message"))
    ));
    let events = store.delivery_events(mid).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.state).collect::<Vec<_>>(),
        [DeliveryState::Queued, DeliveryState::Sent]
    );
    assert_eq!(store.next_escalation_due().await.unwrap(), e.due_at);
}

pub async fn escalation_claims_due_rows_once(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let (mid, seq) = stored_message(store.as_ref(), &p).await;
    let e = escalation(&p, mid, seq);
    let due = e.due_at.unwrap();
    store
        .create_escalation(&EscalationStep {
            at: e.created_at,
            escalation: e.clone(),
            events: vec![],
            alerts: vec![],
        })
        .await
        .unwrap()
        .unwrap();
    // Not due yet.
    let before = due - Duration::seconds(1);
    assert!(
        store
            .claim_due_escalations(before, before + Duration::seconds(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Many claimers at once: exactly one gets it.
    let lease = due + Duration::seconds(30);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_due_escalations(due, lease, 10).await.unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.extend(t.await.unwrap());
    }
    assert_eq!(got.len(), 1, "one claimer takes the due row");
    let claimed = got.remove(0);
    assert_eq!(claimed.due_at, Some(lease));
    assert_eq!(claimed.version, 1);
    assert_eq!(store.next_escalation_due().await.unwrap(), Some(lease));
    // After the lease it is due again (the claimer died).
    let again = store
        .claim_due_escalations(lease, lease + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].version, 2);
}

pub async fn escalation_steps_apply_at_their_version(store: Arc<dyn Store>) {
    let p = pair(store.as_ref()).await;
    let (mid, seq) = stored_message(store.as_ref(), &p).await;
    let e = escalation(&p, mid, seq);
    store
        .create_escalation(&EscalationStep {
            at: e.created_at,
            escalation: e.clone(),
            events: vec![],
            alerts: vec![],
        })
        .await
        .unwrap()
        .unwrap();
    let claimed = store
        .claim_due_escalations(
            e.due_at.unwrap(),
            e.due_at.unwrap() + Duration::seconds(30),
            10,
        )
        .await
        .unwrap()
        .remove(0);
    // An acknowledgement computed from the claimed version wins ...
    let mut acked = claimed.clone();
    let at = claimed.notified_at + Duration::seconds(40);
    acked.outcome = EscalationOutcome::Acknowledged;
    acked.acked_by = Some(p.bob.id);
    acked.acked_device = Some(p.b.id);
    acked.response = Some(AckResponse::CallMe);
    acked.acked_at = Some(at);
    acked.due_at = None;
    acked.declined = vec![p.bob.id];
    let ack_event = DeliveryEvent {
        response: Some(AckResponse::CallMe),
        at,
        ..sent_to_bob(&p, &acked, DeliveryState::Acknowledged)
    };
    let items = store
        .apply_escalation_step(&EscalationStep {
            at,
            escalation: acked.clone(),
            events: vec![ack_event.clone()],
            alerts: vec![AlertDelivery {
                device_id: p.a.id,
                payload: b"{}".to_vec(),
            }],
        })
        .await
        .unwrap()
        .expect("applied");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, p.a.id);
    // ... and a re-notification computed from the same version is refused, writing nothing.
    let mut late = claimed.clone();
    late.notified_at = at;
    assert!(
        store
            .apply_escalation_step(&EscalationStep {
                at,
                escalation: late,
                events: vec![sent_to_bob(&p, &claimed, DeliveryState::Sent)],
                alerts: vec![AlertDelivery {
                    device_id: p.b.id,
                    payload: b"{}".to_vec(),
                }],
            })
            .await
            .unwrap()
            .is_none()
    );
    let stored = store.escalation(mid).await.unwrap().unwrap();
    assert_eq!(
        stored,
        Escalation {
            version: claimed.version + 1,
            ..acked
        }
    );
    assert_eq!(store.delivery_events(mid).await.unwrap(), vec![ack_event]);
    // Nothing pending is due any more.
    assert_eq!(store.next_escalation_due().await.unwrap(), None);
    let far = at + Duration::days(1);
    assert!(
        store
            .claim_due_escalations(far, far, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mut unknown = stored.clone();
    unknown.message_id = MessageId::random();
    assert!(matches!(
        store
            .apply_escalation_step(&EscalationStep {
                at,
                escalation: unknown,
                events: vec![],
                alerts: vec![],
            })
            .await,
        Err(StoreError::NotFound("escalation"))
    ));
}
