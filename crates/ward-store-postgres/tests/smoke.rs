//! PostgreSQL-specific concurrency tests beyond the shared conformance suite: several
//! `PgStore`s with separate pools on one schema stand for several server nodes sharing the
//! database, so the row locks (not any in-process state) must keep the invariants.
#![cfg(not(ward_pg_skip))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use ward_proto::{DeviceId, EnvelopeKind, UserStatus};
use ward_store::audit::ChainVerifier;
use ward_store::conformance::{
    accept, active_user, adding, app, code, commit, device, extra_device, now, pair, random32,
    session, t0, user,
};
use ward_store::{
    AppendError, AppendOutcome, AuditEvent, AuditStore, CommitChanges, ConversationStore,
    Enrollment, OrgPolicy, OrgStore, Organisation, Store, StoreError,
};
use ward_store_postgres::PgStore;

/// `n` stores ("nodes") on one fresh schema. Returns them and the schema name.
async fn nodes(n: usize) -> (Vec<Arc<dyn Store>>, String) {
    let url = common::database_url();
    let schema = common::new_schema_name();
    let mut out: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(common::isolated_store_in(&url, &schema).await));
    }
    (out, schema)
}

async fn cleanup(schema: &str) {
    PgStore::drop_schema(&common::database_url(), schema)
        .await
        .expect("drop schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_commit_race_exactly_one_wins_per_epoch() {
    let (n, schema) = nodes(2).await;
    let p = pair(&*n[0]).await;
    for round in 0..5u64 {
        let epoch = 1 + round;
        let mut tasks = Vec::new();
        for i in 0..8usize {
            let s = n[i % 2].clone();
            let (user, dev) = if i % 4 < 2 {
                (p.alice.id, p.a.id)
            } else {
                (p.bob.id, p.b.id)
            };
            let req = commit(
                p.conv.id,
                user,
                dev,
                epoch,
                CommitChanges {
                    commit_hash: random32(),
                    ..Default::default()
                },
            );
            tasks.push(tokio::spawn(async move { s.append(&req).await }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(AppendOutcome::Accepted { epoch: after, .. }) => {
                    assert_eq!(after, epoch + 1);
                    wins += 1;
                }
                Err(AppendError::EpochConflict { current_epoch }) => {
                    assert_eq!(current_epoch, epoch + 1)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one commit per epoch");
    }
    let log = n[1].commit_log(p.conv.id).await.unwrap();
    assert_eq!(
        log.iter().map(|e| (e.epoch, e.seq)).collect::<Vec<_>>(),
        (0..=5u64).map(|e| (e, e + 1)).collect::<Vec<_>>()
    );
    cleanup(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_mixed_appends_are_gap_free_and_epoch_consistent() {
    let (n, schema) = nodes(2).await;
    let p = pair(&*n[0]).await;
    let mut tasks = Vec::new();
    for t in 0..4usize {
        let s = n[t % 2].clone();
        let (user, dev) = if t % 2 == 0 {
            (p.alice.id, p.a.id)
        } else {
            (p.bob.id, p.b.id)
        };
        let conv = p.conv.id;
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u32;
            for i in 0..15u8 {
                // Read the epoch, then race: messages and commits may lose to a commit.
                let epoch = s.conversation(conv).await.unwrap().unwrap().epoch;
                let req = if i % 5 == 0 {
                    commit(
                        conv,
                        user,
                        dev,
                        epoch,
                        CommitChanges {
                            commit_hash: random32(),
                            ..Default::default()
                        },
                    )
                } else {
                    app(conv, user, dev, epoch, &[t as u8, i])
                };
                match s.append(&req).await {
                    Ok(AppendOutcome::Accepted { .. }) => accepted += 1,
                    Err(AppendError::EpochConflict { .. }) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let c = n[1].conversation(p.conv.id).await.unwrap().unwrap();
    assert_eq!(
        c.last_seq,
        1 + u64::from(accepted),
        "no gaps, no lost appends"
    );
    // Every envelope's epoch is the number of commits before it.
    let mut epoch = 0;
    for seq in 1..=c.last_seq {
        let e = n[seq as usize % 2]
            .envelope(p.conv.id, seq)
            .await
            .unwrap()
            .expect("gap-free");
        assert_eq!(e.epoch, epoch, "seq {seq}");
        if e.kind == EnvelopeKind::Commit {
            epoch += 1;
        }
    }
    assert_eq!(c.epoch, epoch);
    assert_eq!(
        n[0].commit_log(p.conv.id).await.unwrap().len() as u64,
        epoch
    );
    cleanup(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_key_package_claims_are_unique() {
    let (n, schema) = nodes(2).await;
    let (_, d, _) = active_user(&*n[0], "kp").await;
    let packages: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 16]).collect();
    n[0].add_key_packages(d.id, &packages, Some(b"lr"), t0())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = n[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            s.claim_key_package(d.id).await.unwrap()
        }));
    }
    let mut one_time = BTreeSet::new();
    let mut last_resort = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some((kp, false)) => assert!(one_time.insert(kp), "handed out twice"),
            Some((kp, true)) => {
                assert_eq!(kp, b"lr");
                last_resort += 1;
            }
            None => panic!("a last-resort package exists"),
        }
    }
    assert_eq!(one_time, packages.into_iter().collect());
    assert_eq!(last_resort, 10);
    assert_eq!(n[1].key_package_stock(d.id).await.unwrap(), (0, true));
    cleanup(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_audit_chain_never_forks() {
    let (n, schema) = nodes(2).await;
    let mut tasks = Vec::new();
    for t in 0..6usize {
        let s = n[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10u64 {
                let e = AuditEvent {
                    at: now(),
                    actor_user_id: None,
                    actor_device_id: None,
                    action: "test.concurrent".into(),
                    target: Some(format!("node-{}", t % 2)),
                    details: serde_json::json!({"t": t, "i": i, "b": {"z": 1, "a": [true, null]}}),
                };
                s.append_audit(&e).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let records = n[0].audit_records(0, 1000).await.unwrap();
    assert_eq!(records.len(), 60);
    let mut v = ChainVerifier::new(&[]);
    for r in &records {
        assert!(v.push(r), "chain broken at {}", r.seq);
    }
    let report = v.finish(&[], |_, _| true);
    assert!(report.ok, "{report:?}");
    assert_eq!(
        n[1].audit_head().await.unwrap(),
        Some((60, records[59].hash.clone()))
    );
    cleanup(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_first_start_agrees() {
    let (n, schema) = nodes(2).await;
    let mut tasks = Vec::new();
    for i in 0..6usize {
        let s = n[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let org = Organisation {
                name: format!("org {i}"),
                policy: OrgPolicy::default(),
                created_at: t0(),
            };
            let stored = s.init_organisation(&org).await.unwrap();
            let secret = s
                .put_secret_if_absent("master", &[i as u8; 8])
                .await
                .unwrap();
            (stored.name, secret)
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap());
    }
    assert_eq!(
        seen.len(),
        1,
        "every node sees one organisation and one secret: {seen:?}"
    );
    cleanup(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enrollment_consumes_the_code_once() {
    let (n, schema) = nodes(2).await;
    let u = user("enrollee");
    let c = code();
    n[0].create_user(&u, &c).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..6usize {
        let s = n[i % 2].clone();
        let d = device(u.id, &format!("dev{i}"));
        let e = Enrollment {
            user_id: u.id,
            code_hash: c.code_hash,
            password_hash: format!("$argon2id${i}"),
            totp_secret_enc: vec![i as u8],
            session: session(u.id, d.id),
            device: d,
            now: t0(),
        };
        tasks.push(tokio::spawn(async move { s.complete_enrollment(&e).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::AlreadyConsumed) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(n[1].devices_of_user(u.id).await.unwrap().len(), 1);
    assert_eq!(
        n[1].user(u.id).await.unwrap().unwrap().status,
        UserStatus::Active
    );
    cleanup(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_racing_a_welcome_never_leaves_the_device_routed() {
    let (n, schema) = nodes(2).await;
    let p = pair(&*n[0]).await;
    let mut epoch = 1;
    for round in 0..6 {
        let extra = extra_device(&*n[0], p.bob.id, &format!("tablet{round}")).await;
        let req = commit(
            p.conv.id,
            p.alice.id,
            p.a.id,
            epoch,
            CommitChanges {
                commit_hash: random32(),
                welcome: Some((b"w".to_vec(), vec![extra.id])),
                ..Default::default()
            },
        );
        let (s0, s1) = (n[0].clone(), n[1].clone());
        let welcome = tokio::spawn(async move { s0.append(&req).await });
        let revoke = tokio::spawn(async move { s1.revoke_device(extra.id, now()).await });
        match welcome.await.unwrap() {
            Ok(AppendOutcome::Accepted { .. }) => epoch += 1,
            Err(AppendError::InvalidWelcomeDevice(d)) => assert_eq!(d, extra.id),
            other => panic!("unexpected {other:?}"),
        }
        assert!(revoke.await.unwrap().unwrap());
        let routed: Vec<DeviceId> = n[1]
            .member_devices(p.conv.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.device_id)
            .collect();
        assert!(
            !routed.contains(&extra.id),
            "round {round}: revoked device still routed"
        );
        let m = accept(&*n[0], &app(p.conv.id, p.alice.id, p.a.id, epoch, b"after")).await;
        assert!(!m.recipients.contains(&extra.id));
    }
    cleanup(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_isolated_and_migrations_rerun_cleanly() {
    let url = common::database_url();
    let (one, two) = (common::new_schema_name(), common::new_schema_name());
    let a = common::isolated_store_in(&url, &one).await;
    let b = common::isolated_store_in(&url, &two).await;
    let org = Organisation {
        name: "A".into(),
        policy: OrgPolicy::default(),
        created_at: t0(),
    };
    a.init_organisation(&org).await.unwrap();
    assert_eq!(
        b.organisation().await.unwrap(),
        None,
        "schemas do not share data"
    );
    // Reconnecting to an existing schema applies nothing new and sees the data.
    let again = common::isolated_store_in(&url, &one).await;
    assert_eq!(again.organisation().await.unwrap(), Some(org));
    for s in [a, b, again] {
        s.close().await;
    }
    cleanup(&one).await;
    cleanup(&two).await;
}

#[tokio::test]
async fn bad_schema_names_and_unreachable_servers_are_errors() {
    let url = common::database_url();
    let err = PgStore::connect_isolated(&url, "x\"; DROP SCHEMA public; --")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    // Nothing listens on port 1.
    let err = PgStore::connect_isolated("postgres://postgres@127.0.0.1:1/test", "ward_t_x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(
        common::redacted("postgres://u:secret@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(common::redacted("postgres://u@h/db"), "postgres://u@h/db");
}

#[tokio::test]
async fn conflicts_and_missing_references_map_to_store_errors() {
    let (n, schema) = nodes(1).await;
    let s = &n[0];
    let (u, d, _) = active_user(&**s, "mapper").await;
    // Unique violations are Conflict.
    let err = s.create_device(&d, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("device")), "{err:?}");
    // Foreign keys to missing rows are NotFound, not Backend.
    let orphan = device(ward_proto::UserId::random(), "orphan");
    let err = s.create_device(&orphan, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound("user")), "{err:?}");
    let err = s
        .create_session(&session(u.id, DeviceId::random()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = s
        .set_user_status(ward_proto::UserId::random(), UserStatus::Active)
        .await;
    assert!(matches!(err, Err(StoreError::NotFound("user"))), "{err:?}");
    // A Welcome for a device whose user is added in the same commit works end to end.
    let (bob, b, _) = active_user(&**s, "bobby").await;
    let c = ward_store::conformance::group(&**s, u.id, d.id).await;
    let r = accept(
        &**s,
        &commit(c.id, u.id, d.id, 0, adding(&[bob.id], &[b.id])),
    )
    .await;
    assert_eq!(r.inbox.len(), 1);
    cleanup(&schema).await;
}

/// Acks (which insert receipts referencing the conversation) racing commits that remove and
/// re-welcome the acking device: the lock order must not deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_racing_membership_commits_do_not_deadlock() {
    use ward_proto::ConversationCursor;
    use ward_store::ReceiptKind;

    let (n, schema) = nodes(2).await;
    let p = pair(&*n[0]).await;
    let b2 = extra_device(&*n[0], p.bob.id, "bob tablet").await;
    let conv = p.conv.id;
    let add_b2 = CommitChanges {
        commit_hash: random32(),
        welcome: Some((b"w".to_vec(), vec![b2.id])),
        ..Default::default()
    };
    accept(&*n[0], &commit(conv, p.alice.id, p.a.id, 1, add_b2)).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut ackers = Vec::new();
    for dev in [b2.id, p.b.id] {
        let s = n[1].clone();
        let stop = stop.clone();
        ackers.push(tokio::spawn(async move {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch = s.sync(dev, 50).await.unwrap();
                let last = batch.envelopes.last().map(|e| e.seq).unwrap_or(0);
                let kind = if rounds.is_multiple_of(2) {
                    ReceiptKind::Delivered
                } else {
                    ReceiptKind::Read
                };
                let inbox = batch.inbox.last().map(|i| i.inbox_seq);
                let cur = [ConversationCursor {
                    conversation_id: conv,
                    seq: last.max(1),
                }];
                s.record_receipts(dev, kind, &cur, inbox, now())
                    .await
                    .unwrap();
                rounds += 1;
            }
            rounds
        }));
    }
    let s = n[0].clone();
    let mut epoch = 2;
    for round in 0..20 {
        let changes = if round % 2 == 0 {
            CommitChanges {
                commit_hash: random32(),
                remove_devices: vec![b2.id],
                ..Default::default()
            }
        } else {
            CommitChanges {
                commit_hash: random32(),
                welcome: Some((b"w".to_vec(), vec![b2.id])),
                ..Default::default()
            }
        };
        accept(&*s, &commit(conv, p.alice.id, p.a.id, epoch, changes)).await;
        epoch += 1;
        accept(&*s, &app(conv, p.alice.id, p.a.id, epoch, b"m")).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in ackers {
        assert!(a.await.unwrap() > 0);
    }
    cleanup(&schema).await;
}

/// Group commit across nodes: concurrent sends (each with its audit record in its batch) to
/// several conversations from two writer tasks, with acknowledgements in the same batches.
/// Batches lock the audit head first, so they never deadlock over conversation rows; every
/// send is accepted exactly once, seqs stay gap-free and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_batched_sends_with_audit_and_acks_share_commits_without_deadlock() {
    use ward_proto::ConversationCursor;
    use ward_store::ReceiptKind;

    let url = common::database_url();
    let schema = common::new_schema_name();
    let a = Arc::new(common::isolated_store_in(&url, &schema).await);
    let b = Arc::new(common::isolated_store_in(&url, &schema).await);
    let p = pair(&*a).await;
    let mut convs = vec![p.conv.id];
    for _ in 0..3 {
        let c = ward_store::conformance::group(&*a, p.alice.id, p.a.id).await;
        accept(
            &*a,
            &commit(c.id, p.alice.id, p.a.id, 0, adding(&[p.bob.id], &[p.b.id])),
        )
        .await;
        convs.push(c.id);
    }
    let (before_a, _) = a.group_commit_counts();
    let (before_b, _) = b.group_commit_counts();
    let mut tasks = Vec::new();
    for i in 0..240usize {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let conv = convs[i % convs.len()];
        let (user, dev) = if i % 3 == 0 {
            (p.bob.id, p.b.id)
        } else {
            (p.alice.id, p.a.id)
        };
        let ack_dev = if user == p.bob.id { p.a.id } else { p.b.id };
        tasks.push(tokio::spawn(async move {
            let mut req = app(conv, user, dev, 1, format!("m{i}").as_bytes());
            req.audit = Some(AuditEvent {
                at: now(),
                actor_user_id: Some(user),
                actor_device_id: Some(dev),
                action: "message.send".into(),
                target: None,
                details: serde_json::json!({}),
            });
            let seq = match node.append(&req).await {
                Ok(AppendOutcome::Accepted { envelope, .. }) => envelope.seq,
                other => panic!("send {i} was not accepted: {other:?}"),
            };
            let cur = [ConversationCursor {
                conversation_id: conv,
                seq,
            }];
            node.record_receipts(ack_dev, ReceiptKind::Delivered, &cur, None, now())
                .await
                .unwrap_or_else(|e| panic!("ack {i}: {e}"));
            (conv, seq)
        }));
    }
    let mut by_conv: std::collections::BTreeMap<_, Vec<u64>> = Default::default();
    for t in tasks {
        let (conv, seq) = t.await.unwrap();
        by_conv.entry(conv).or_default().push(seq);
    }
    for (conv, mut seqs) in by_conv {
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (2..2 + 60).collect::<Vec<u64>>(),
            "gap-free in {conv}"
        );
    }
    let records = a.audit_records(0, 10_000).await.unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.action == "message.send")
            .count(),
        240
    );
    let mut v = ChainVerifier::new(&[]);
    for r in &records {
        assert!(v.push(r), "chain broken at {}", r.seq);
    }
    let (after_a, ops_a) = a.group_commit_counts();
    let (after_b, ops_b) = b.group_commit_counts();
    assert!(ops_a > 0 && ops_b > 0);
    let batches = (after_a - before_a) + (after_b - before_b);
    assert!(
        batches < 480,
        "480 sends and acks took {batches} transactions; expected shared commits"
    );
    cleanup(&schema).await;
}
