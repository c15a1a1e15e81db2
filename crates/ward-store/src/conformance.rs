//! The conformance suite every [`Store`] backend must pass.
//!
//! Each scenario is a `pub async fn` taking a fresh, empty store as `Arc<dyn Store>` (an
//! `Arc` so scenarios can spawn concurrent tasks). A backend's tests run them all with
//! [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! async fn fresh_store() -> std::sync::Arc<dyn ward_store::Store> { /* empty store */ }
//! ward_store::conformance_tests!(fresh_store());
//! ```
//!
//! The macro expands to one `#[tokio::test]` (multi-threaded runtime) per scenario, so the
//! calling crate needs `tokio` (with the `macros` and `rt-multi-thread` features) as a
//! dev-dependency. The factory expression is evaluated once per test and must be a future
//! whose output converts `Into<Arc<dyn Store>>`.
//!
//! Semantics pinned here beyond the trait docs (both backends must agree):
//! - every time is compared exactly, so fixtures use microsecond-truncated times;
//! - the recipients of an envelope are the devices whose routing covers its seq: a device
//!   added by a commit receives what follows the commit, a device removed by a commit still
//!   receives that commit; the sending device is never a recipient;
//! - `remove_users` naming a non-member is a no-op; `add_users` naming an unknown or
//!   non-active user is `InvalidMember`;
//! - a receipt cursor beyond the conversation's last seq is clamped to it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "a test suite: a panic is a failed assertion"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use ward_proto::{
    ConversationCursor, ConversationId, ConversationKind, DeviceId, DeviceStatus, EnvelopeKind,
    InboxKind, MessageId, Role, UserId, UserStatus, Username,
};

mod breakglass;
mod escalation;
pub use escalation::*;
mod journal;
mod retention;
pub use breakglass::*;
pub use journal::*;
pub use retention::*;
mod workflow;
pub use workflow::*;
mod blobs;
pub use blobs::*;
mod clinical;
pub use clinical::*;

use crate::audit::{self, ChainVerifier, GENESIS_HASH, truncate_to_micros};
use crate::{
    AppendError, AppendOutcome, AppendRequest, AuditCheckpoint, AuditEvent, CommitChanges,
    Conversation, Device, Enrollment, EnrollmentCode, NewConversation, OrgPolicy, Organisation,
    ReceiptKind, Session, Store, StoreError, User, WipeOrder,
};

/// Expands to one `#[tokio::test]` per conformance scenario. The argument is an expression
/// evaluated once per test, yielding a future whose output is a fresh, empty store
/// (anything `Into<Arc<dyn Store>>`).
#[macro_export]
macro_rules! conformance_tests {
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::Store> = ($factory).await.into();
                $crate::conformance::$name(store).await;
            }
        )*
    };
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            org_init_is_idempotent_and_policy_round_trips,
            org_secret_first_value_wins,
            ping_answers,
            users_create_and_lookup,
            users_duplicate_username_conflicts,
            users_list_ordered_by_username,
            users_enrollment_code_set_and_replace,
            users_complete_enrollment_writes_everything,
            users_enrollment_rejects_wrong_or_expired_code,
            users_suspend_deletes_sessions,
            users_login_failures_lock_and_reset,
            users_totp_steps_are_single_use,
            users_change_password_ends_other_sessions,
            devices_create_and_list,
            devices_revoke_stops_everything,
            devices_wipe_order_lifecycle,
            sessions_lifecycle,
            sessions_purge,
            key_packages_claim_once_then_last_resort,
            key_packages_concurrent_claims_are_unique,
            conversations_create_group,
            conversations_direct_unique,
            append_application_and_idempotency,
            append_rejects_non_member_and_wrong_epoch,
            commit_adds_member_with_welcome,
            commit_stale_epoch_rejected,
            commit_invalid_welcome_or_member_rejected,
            commit_concurrent_same_epoch_one_wins,
            commit_remove_users_stops_routing,
            commit_remove_devices_stops_routing,
            sync_excludes_own_respects_limit_inbox_first,
            receipts_and_cursors,
            commit_log_and_envelope_bytes,
            append_concurrent_seqs_gap_free,
            append_listener_sees_seq_order,
            append_with_audit_mixed_outcomes,
            audit_chain_and_pagination,
            audit_checkpoints,
            audit_concurrent_appends_chain,
            journal_keys_install_and_list,
            journal_copies_archived_with_envelopes,
            journal_query_filters_and_pages,
            retention_holds_add_list_release,
            retention_expiry_scan_delete_and_orders,
            retention_archive_due_and_delete,
            retention_erasure_records,
            break_glass_grant_lifecycle,
            break_glass_late_fulfilment_is_undone,
            break_glass_unknown_grant,
            workflow_roles_create_and_list,
            workflow_assignments_opt_in_and_out,
            workflow_shifts_query_and_overlap,
            workflow_shift_imports_race_one_wins,
            workflow_escalation_policies,
            blobs_upload_lifecycle,
            blobs_quota_and_conflicts,
            blobs_delete_by_conversation_and_collect_stale,
            clinical_patient_tags_limit_and_pages,
            clinical_templates_create_list_delete,
            clinical_dnd_set_replace_clear,
            escalation_create_is_atomic_and_idempotent,
            escalation_claims_due_rows_once,
            escalation_steps_apply_at_their_version,
            blobs_message_references_keep_and_release,
            blobs_outlive_the_envelope_while_the_journal_copy_remains,
        );
    };
}

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// Now, truncated to microseconds.
pub fn now() -> OffsetDateTime {
    truncate_to_micros(OffsetDateTime::now_utc())
}

/// A fixed base time (microsecond precision, with a sub-second part).
pub fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(1_750_000_000_123_456_000).expect("valid time")
}

/// 32 random bytes.
pub fn random32() -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}

/// A pending user.
pub fn user(name: &str) -> User {
    User {
        id: UserId::random(),
        username: Username::parse(name).expect("valid username"),
        display_name: format!("Display {name}"),
        role: Role::Physician,
        status: UserStatus::Pending,
        password_hash: None,
        totp_secret_enc: None,
        failed_logins: 0,
        locked_until: None,
        created_at: t0(),
    }
}

/// An unexpired enrollment code.
pub fn code() -> EnrollmentCode {
    EnrollmentCode {
        code_hash: random32(),
        expires_at: t0() + Duration::days(3),
    }
}

/// An active device of `user`.
pub fn device(user: UserId, name: &str) -> Device {
    Device {
        id: DeviceId::random(),
        user_id: user,
        name: name.to_owned(),
        signature_key: random32().to_vec(),
        credential: format!("{{\"credential\":\"{name}\"}}").into_bytes(),
        status: DeviceStatus::Active,
        created_at: now(),
        revoked_at: None,
        last_seen_at: None,
    }
}

/// A session for `device`.
pub fn session(user: UserId, device: DeviceId) -> Session {
    Session {
        token_hash: random32(),
        user_id: user,
        device_id: device,
        created_at: t0(),
        last_used_at: t0(),
        expires_at: t0() + Duration::hours(12),
    }
}

/// Create and enroll a user; returns the active user, their first device and session.
pub async fn active_user(store: &dyn Store, name: &str) -> (User, Device, Session) {
    let u = user(name);
    let c = code();
    store.create_user(&u, &c).await.expect("create user");
    let d = device(u.id, &format!("{name}-phone"));
    let s = session(u.id, d.id);
    store
        .complete_enrollment(&Enrollment {
            user_id: u.id,
            code_hash: c.code_hash,
            password_hash: format!("$argon2id$v=19$fake${name}"),
            totp_secret_enc: b"encrypted totp".to_vec(),
            device: d.clone(),
            session: s.clone(),
            now: t0(),
        })
        .await
        .expect("complete enrollment");
    let u = store.user(u.id).await.expect("user").expect("user exists");
    (u, d, s)
}

/// A second device (with no session) for an existing user.
pub async fn extra_device(store: &dyn Store, user: UserId, name: &str) -> Device {
    let d = device(user, name);
    store.create_device(&d, None).await.expect("create device");
    d
}

/// A new group conversation created by `user` on `device`.
pub async fn group(store: &dyn Store, user: UserId, device: DeviceId) -> Conversation {
    let c = Conversation {
        id: ConversationId::random(),
        kind: ConversationKind::Group,
        ciphersuite: crate::CIPHERSUITE_XWING,
        epoch: 0,
        last_seq: 0,
        created_by: user,
        direct_key: None,
        created_at: t0(),
    };
    store
        .create_conversation(&NewConversation {
            conversation: c.clone(),
            creator_device: device,
        })
        .await
        .expect("create conversation");
    c
}

/// An application message request.
pub fn app(
    conv: ConversationId,
    user: UserId,
    dev: DeviceId,
    epoch: u64,
    payload: &[u8],
) -> AppendRequest {
    AppendRequest {
        conversation_id: conv,
        message_id: MessageId::random(),
        sender_user_id: user,
        sender_device_id: dev,
        client_message_id: uuid::Uuid::new_v4(),
        kind: EnvelopeKind::Application,
        epoch,
        payload: payload.to_vec(),
        sent_at: now(),
        commit: None,
        audit: None,
        journal: None,
    }
}

/// A commit request carrying `changes`.
pub fn commit(
    conv: ConversationId,
    user: UserId,
    dev: DeviceId,
    epoch: u64,
    changes: CommitChanges,
) -> AppendRequest {
    AppendRequest {
        kind: EnvelopeKind::Commit,
        commit: Some(changes),
        ..app(
            conv,
            user,
            dev,
            epoch,
            format!("commit at epoch {epoch}").as_bytes(),
        )
    }
}

/// Changes adding `users` with a Welcome for `devices`.
pub fn adding(users: &[UserId], devices: &[DeviceId]) -> CommitChanges {
    CommitChanges {
        commit_hash: random32(),
        add_users: users.to_vec(),
        welcome: Some((b"welcome bytes".to_vec(), devices.to_vec())),
        ..Default::default()
    }
}

/// Append, expecting acceptance; returns (envelope seq, epoch after, the outcome parts).
pub async fn accept(store: &dyn Store, req: &AppendRequest) -> Accepted {
    match store.append(req).await {
        Ok(AppendOutcome::Accepted {
            envelope,
            epoch,
            inbox,
            recipients,
            ..
        }) => Accepted {
            seq: envelope.seq,
            epoch,
            envelope,
            inbox,
            recipients,
        },
        Ok(AppendOutcome::Duplicate { .. }) => panic!("unexpected duplicate"),
        Err(e) => panic!("append rejected: {e:?}"),
    }
}

/// The parts of an accepted append.
#[derive(Debug)]
pub struct Accepted {
    /// Seq.
    pub seq: u64,
    /// Epoch after.
    pub epoch: u64,
    /// Envelope.
    pub envelope: ward_proto::Envelope,
    /// Inbox items created.
    pub inbox: Vec<(DeviceId, ward_proto::InboxItem)>,
    /// Recipients.
    pub recipients: Vec<DeviceId>,
}

/// A group of alice (device a) and bob (device b), bob added by alice's commit at seq 1.
pub struct Pair {
    /// Alice.
    pub alice: User,
    /// Alice's device.
    pub a: Device,
    /// Bob.
    pub bob: User,
    /// Bob's device.
    pub b: Device,
    /// The conversation (as created).
    pub conv: Conversation,
}

/// Set up [`Pair`]: epoch 1, last_seq 1.
pub async fn pair(store: &dyn Store) -> Pair {
    let (alice, a, _) = active_user(store, "alice").await;
    let (bob, b, _) = active_user(store, "bob").await;
    let conv = group(store, alice.id, a.id).await;
    let r = accept(
        store,
        &commit(conv.id, alice.id, a.id, 0, adding(&[bob.id], &[b.id])),
    )
    .await;
    assert_eq!((r.seq, r.epoch), (1, 1));
    Pair {
        alice,
        a,
        bob,
        b,
        conv,
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn device_ids(v: &[crate::MemberDevice]) -> Vec<DeviceId> {
    sorted(v.iter().map(|m| m.device_id).collect())
}

async fn conv_state(store: &dyn Store, id: ConversationId) -> (u64, u64) {
    let c = store
        .conversation(id)
        .await
        .unwrap()
        .expect("conversation exists");
    (c.epoch, c.last_seq)
}

async fn synced_seqs(store: &dyn Store, dev: DeviceId) -> Vec<u64> {
    let batch = store.sync(dev, 1000).await.unwrap();
    batch.envelopes.iter().map(|e| e.seq).collect()
}

// ---------------------------------------------------------------------------------------
// Organisation
// ---------------------------------------------------------------------------------------

pub async fn org_init_is_idempotent_and_policy_round_trips(store: Arc<dyn Store>) {
    assert_eq!(store.organisation().await.unwrap(), None);
    let first = Organisation {
        name: "St Elsewhere".into(),
        policy: OrgPolicy::default(),
        created_at: t0(),
    };
    assert_eq!(store.init_organisation(&first).await.unwrap(), first);
    let second = Organisation {
        name: "Other".into(),
        policy: OrgPolicy {
            mfa_required: false,
            ..OrgPolicy::default()
        },
        created_at: t0() + Duration::seconds(5),
    };
    assert_eq!(
        store.init_organisation(&second).await.unwrap(),
        first,
        "second init returns the first"
    );
    assert_eq!(store.organisation().await.unwrap(), Some(first.clone()));

    let policy = OrgPolicy {
        mfa_required: false,
        idle_timeout_secs: 60,
        absolute_timeout_secs: 3600,
        enrollment_ttl_secs: 120,
        max_failed_logins: 3,
        lockout_secs: 30,
        ciphersuites: vec![crate::CIPHERSUITE_X25519],
        password_min_length: 20,
        notification_privacy: true,
        dlp: Some(serde_json::json!({"policy": {"default": "warn", "rules": []}})),
        retention: crate::RetentionPolicy {
            journal_retention_secs: Some(86_400),
            ..Default::default()
        },
        break_glass_roles: vec![Role::Nurse],
        break_glass_max_minutes: 30,
        attachment_max_bytes: 1 << 20,
        attachment_quota_bytes: 5 << 30,
        attachment_denied_media_types: vec!["application/pdf".into()],
        attachment_denied_extensions: vec!["exe".into(), "docm".into()],
    };
    store.set_policy(&policy).await.unwrap();
    let org = store.organisation().await.unwrap().expect("organisation");
    assert_eq!(org.policy, policy);
    assert_eq!(org.name, first.name);
    assert_eq!(org.created_at, first.created_at);
}

pub async fn org_secret_first_value_wins(store: Arc<dyn Store>) {
    assert_eq!(store.secret("master").await.unwrap(), None);
    let v1 = vec![0u8, 1, 2, 255, 0];
    assert_eq!(store.put_secret_if_absent("master", &v1).await.unwrap(), v1);
    assert_eq!(
        store
            .put_secret_if_absent("master", b"other")
            .await
            .unwrap(),
        v1
    );
    assert_eq!(store.secret("master").await.unwrap(), Some(v1.clone()));
    assert_eq!(store.secret("other").await.unwrap(), None);

    // Concurrent first starts agree on one value.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.put_secret_if_absent("race", &[i; 4]).await.unwrap()
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "all callers see the same secret");
    assert_eq!(store.secret("race").await.unwrap(), seen.into_iter().next());
}

pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(!store.backend().is_empty());
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

pub async fn users_create_and_lookup(store: Arc<dyn Store>) {
    let u = User {
        locked_until: None,
        ..user("carol")
    };
    let c = code();
    store.create_user(&u, &c).await.unwrap();
    assert_eq!(store.user(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(
        store.user_by_name(&u.username).await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(store.user(UserId::random()).await.unwrap(), None);
    assert_eq!(
        store
            .user_by_name(&Username::parse("nobody").unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.enrollment_code(u.id).await.unwrap(), Some(c));

    // Every role and optional field round-trips.
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let mut v = user(&format!("role{i}"));
        v.role = role;
        v.status = UserStatus::Active;
        v.password_hash = Some("$argon2id$x".into());
        v.totp_secret_enc = Some(vec![0, 9, 8]);
        v.failed_logins = 2;
        v.locked_until = Some(t0() + Duration::microseconds(7));
        store.create_user(&v, &code()).await.unwrap();
        assert_eq!(store.user(v.id).await.unwrap(), Some(v));
    }
}

pub async fn users_duplicate_username_conflicts(store: Arc<dyn Store>) {
    let u = user("dave");
    store.create_user(&u, &code()).await.unwrap();
    let again = user("dave");
    let err = store.create_user(&again, &code()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.user(again.id).await.unwrap(), None);
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

pub async fn users_list_ordered_by_username(store: Arc<dyn Store>) {
    for name in ["mike", "anna", "zoe", "bert"] {
        store.create_user(&user(name), &code()).await.unwrap();
    }
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username.to_string())
        .collect();
    assert_eq!(names, ["anna", "bert", "mike", "zoe"]);
}

pub async fn users_enrollment_code_set_and_replace(store: Arc<dyn Store>) {
    let u = user("erin");
    let c1 = code();
    store.create_user(&u, &c1).await.unwrap();
    assert_eq!(store.enrollment_code(u.id).await.unwrap(), Some(c1.clone()));
    let c2 = EnrollmentCode {
        code_hash: random32(),
        expires_at: t0() + Duration::days(5),
    };
    store.set_enrollment_code(u.id, &c2).await.unwrap();
    assert_eq!(store.enrollment_code(u.id).await.unwrap(), Some(c2.clone()));
    assert_eq!(store.enrollment_code(UserId::random()).await.unwrap(), None);

    // The replaced code no longer works; the new one does.
    let d = device(u.id, "d");
    let mut e = Enrollment {
        user_id: u.id,
        code_hash: c1.code_hash,
        password_hash: "$argon2id$p".into(),
        totp_secret_enc: vec![1, 2, 3],
        device: d.clone(),
        session: session(u.id, d.id),
        now: t0(),
    };
    assert!(matches!(
        store.complete_enrollment(&e).await,
        Err(StoreError::AlreadyConsumed)
    ));
    e.code_hash = c2.code_hash;
    store.complete_enrollment(&e).await.unwrap();
}

pub async fn users_complete_enrollment_writes_everything(store: Arc<dyn Store>) {
    let u = user("frank");
    let c = code();
    store.create_user(&u, &c).await.unwrap();
    let d = device(u.id, "laptop");
    let s = session(u.id, d.id);
    let e = Enrollment {
        user_id: u.id,
        code_hash: c.code_hash,
        password_hash: "$argon2id$v=19$frank".into(),
        totp_secret_enc: vec![7; 40],
        device: d.clone(),
        session: s.clone(),
        now: t0() + Duration::hours(1),
    };
    store.complete_enrollment(&e).await.unwrap();

    let got = store.user(u.id).await.unwrap().expect("user");
    assert_eq!(got.status, UserStatus::Active);
    assert_eq!(got.password_hash.as_deref(), Some("$argon2id$v=19$frank"));
    assert_eq!(got.totp_secret_enc, Some(vec![7; 40]));
    assert_eq!(store.device(d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(store.session(&s.token_hash).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store.enrollment_code(u.id).await.unwrap(),
        None,
        "code consumed"
    );

    // A second completion with the same code fails and writes nothing.
    let d2 = device(u.id, "second");
    let s2 = session(u.id, d2.id);
    let e2 = Enrollment {
        device: d2.clone(),
        session: s2.clone(),
        password_hash: "$other".into(),
        ..e
    };
    assert!(matches!(
        store.complete_enrollment(&e2).await,
        Err(StoreError::AlreadyConsumed)
    ));
    assert_eq!(store.device(d2.id).await.unwrap(), None);
    assert_eq!(store.session(&s2.token_hash).await.unwrap(), None);
    let got = store.user(u.id).await.unwrap().expect("user");
    assert_eq!(got.password_hash.as_deref(), Some("$argon2id$v=19$frank"));
}

pub async fn users_enrollment_rejects_wrong_or_expired_code(store: Arc<dyn Store>) {
    let u = user("gina");
    let c = EnrollmentCode {
        code_hash: random32(),
        expires_at: t0() + Duration::hours(1),
    };
    store.create_user(&u, &c).await.unwrap();
    let d = device(u.id, "d");
    let s = session(u.id, d.id);
    let base = Enrollment {
        user_id: u.id,
        code_hash: c.code_hash,
        password_hash: "$argon2id$g".into(),
        totp_secret_enc: vec![1],
        device: d.clone(),
        session: s.clone(),
        now: t0(),
    };
    let wrong = Enrollment {
        code_hash: random32(),
        ..base.clone()
    };
    let expired = Enrollment {
        now: t0() + Duration::hours(2),
        ..base.clone()
    };
    let unknown_user = Enrollment {
        user_id: UserId::random(),
        ..base.clone()
    };
    for e in [wrong, expired, unknown_user] {
        let err = store.complete_enrollment(&e).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyConsumed), "{err:?}");
        let got = store.user(u.id).await.unwrap().expect("user");
        assert_eq!(got.status, UserStatus::Pending);
        assert_eq!(got.password_hash, None);
        assert_eq!(got.totp_secret_enc, None);
        assert_eq!(store.device(d.id).await.unwrap(), None);
        assert_eq!(store.session(&s.token_hash).await.unwrap(), None);
        assert_eq!(store.enrollment_code(u.id).await.unwrap(), Some(c.clone()));
    }
    store.complete_enrollment(&base).await.unwrap();
}

pub async fn users_suspend_deletes_sessions(store: Arc<dyn Store>) {
    let (u, d, s1) = active_user(&*store, "hank").await;
    let s2 = session(u.id, d.id);
    store.create_session(&s2).await.unwrap();
    let (other, _, other_session) = active_user(&*store, "ivy").await;

    assert_eq!(
        store
            .set_user_status(u.id, UserStatus::Suspended)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.user(u.id).await.unwrap().expect("user").status,
        UserStatus::Suspended
    );
    assert_eq!(store.session(&s1.token_hash).await.unwrap(), None);
    assert_eq!(store.session(&s2.token_hash).await.unwrap(), None);
    assert!(
        store
            .session(&other_session.token_hash)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.user(other.id).await.unwrap().expect("user").status,
        UserStatus::Active
    );

    assert_eq!(
        store
            .set_user_status(u.id, UserStatus::Active)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.user(u.id).await.unwrap().expect("user").status,
        UserStatus::Active
    );
    assert_eq!(
        store
            .set_user_status(u.id, UserStatus::Suspended)
            .await
            .unwrap(),
        0
    );
}

pub async fn users_login_failures_lock_and_reset(store: Arc<dyn Store>) {
    let (u, _, _) = active_user(&*store, "jack").await;
    let until = t0() + Duration::minutes(15);
    assert_eq!(store.record_login_failure(u.id, 3, until).await.unwrap(), 1);
    assert_eq!(store.record_login_failure(u.id, 3, until).await.unwrap(), 2);
    let got = store.user(u.id).await.unwrap().expect("user");
    assert_eq!((got.failed_logins, got.locked_until), (2, None));
    assert_eq!(store.record_login_failure(u.id, 3, until).await.unwrap(), 3);
    let got = store.user(u.id).await.unwrap().expect("user");
    assert_eq!((got.failed_logins, got.locked_until), (3, Some(until)));
    store.reset_login_failures(u.id).await.unwrap();
    let got = store.user(u.id).await.unwrap().expect("user");
    assert_eq!((got.failed_logins, got.locked_until), (0, None));
}

pub async fn users_change_password_ends_other_sessions(store: Arc<dyn Store>) {
    let (u, d, s1) = active_user(&*store, "kim").await;
    let s2 = session(u.id, d.id);
    store.create_session(&s2).await.unwrap();
    let other_device = extra_device(&*store, u.id, "kim-tablet").await;
    let s3 = session(u.id, other_device.id);
    store.create_session(&s3).await.unwrap();
    let (other, _, other_session) = active_user(&*store, "lou").await;
    let until = t0() + Duration::minutes(15);
    store.record_login_failure(u.id, 1, until).await.unwrap();

    let ended = store
        .change_password(u.id, "$argon2id$new", &s1.token_hash)
        .await
        .unwrap();
    assert_eq!(
        ended, 2,
        "every session but the one that made the change ends"
    );
    let got = store.user(u.id).await.unwrap().expect("user");
    assert_eq!(got.password_hash.as_deref(), Some("$argon2id$new"));
    assert_eq!((got.failed_logins, got.locked_until), (0, None));
    assert!(store.session(&s1.token_hash).await.unwrap().is_some());
    assert_eq!(store.session(&s2.token_hash).await.unwrap(), None);
    assert_eq!(store.session(&s3.token_hash).await.unwrap(), None);
    assert!(
        store
            .session(&other_session.token_hash)
            .await
            .unwrap()
            .is_some()
    );
    assert_ne!(
        store
            .user(other.id)
            .await
            .unwrap()
            .expect("user")
            .password_hash
            .as_deref(),
        Some("$argon2id$new")
    );
    assert!(matches!(
        store
            .change_password(UserId::random(), "$argon2id$x", &s1.token_hash)
            .await,
        Err(StoreError::NotFound("user"))
    ));
}

pub async fn users_totp_steps_are_single_use(store: Arc<dyn Store>) {
    let (u, _, _) = active_user(&*store, "tess").await;
    let (other, _, _) = active_user(&*store, "tom").await;
    assert!(store.use_totp_step(u.id, 100).await.unwrap());
    assert!(
        !store.use_totp_step(u.id, 100).await.unwrap(),
        "same step replayed"
    );
    assert!(!store.use_totp_step(u.id, 99).await.unwrap(), "older step");
    assert!(store.use_totp_step(u.id, 101).await.unwrap());
    assert!(
        store.use_totp_step(other.id, 100).await.unwrap(),
        "steps are per user"
    );
    // Concurrent use of one step: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.use_totp_step(u.id, 200).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

// ---------------------------------------------------------------------------------------
// Devices and sessions
// ---------------------------------------------------------------------------------------

pub async fn devices_create_and_list(store: Arc<dyn Store>) {
    let (u, d1, _) = active_user(&*store, "kate").await;
    let mut d2 = device(u.id, "tablet");
    d2.created_at = d1.created_at + Duration::seconds(1);
    let s2 = session(u.id, d2.id);
    store.create_device(&d2, Some(&s2)).await.unwrap();
    let mut d3 = device(u.id, "desk");
    d3.created_at = d1.created_at + Duration::seconds(2);
    d3.last_seen_at = Some(d3.created_at);
    store.create_device(&d3, None).await.unwrap();
    let (_, other, _) = active_user(&*store, "liam").await;

    assert_eq!(store.device(d2.id).await.unwrap(), Some(d2.clone()));
    assert_eq!(store.device(d3.id).await.unwrap(), Some(d3.clone()));
    assert_eq!(store.device(DeviceId::random()).await.unwrap(), None);
    assert_eq!(store.session(&s2.token_hash).await.unwrap(), Some(s2));
    assert_eq!(
        store.devices_of_user(u.id).await.unwrap(),
        vec![d1.clone(), d2.clone(), d3.clone()]
    );
    let all: Vec<DeviceId> = store
        .list_devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(sorted(all), sorted(vec![d1.id, d2.id, d3.id, other.id]));
    assert!(store.revoked_devices().await.unwrap().is_empty());

    let dup = store.create_device(&d2, None).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
}

pub async fn devices_revoke_stops_everything(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let s = session(p.bob.id, p.b.id);
    store.create_session(&s).await.unwrap();
    store
        .add_key_packages(p.b.id, &[vec![1], vec![2]], Some(&[9]), t0())
        .await
        .unwrap();
    let when = now();

    assert!(store.revoke_device(p.b.id, when).await.unwrap());
    let got = store.device(p.b.id).await.unwrap().expect("device");
    assert_eq!(got.status, DeviceStatus::Revoked);
    assert_eq!(got.revoked_at, Some(when));
    assert_eq!(store.session(&s.token_hash).await.unwrap(), None);
    assert_eq!(store.key_package_stock(p.b.id).await.unwrap(), (0, false));
    assert_eq!(store.claim_key_package(p.b.id).await.unwrap(), None);
    assert_eq!(
        device_ids(&store.member_devices(p.conv.id).await.unwrap()),
        vec![p.a.id]
    );
    assert!(
        store
            .conversations_of_device(p.b.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.revoked_devices().await.unwrap(), vec![p.b.id]);
    // The user stays a member; only the device stops receiving.
    let members: Vec<UserId> = store
        .members(p.conv.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(sorted(members), sorted(vec![p.alice.id, p.bob.id]));
    let r = accept(
        &*store,
        &app(p.conv.id, p.alice.id, p.a.id, 1, b"after revoke"),
    )
    .await;
    assert!(r.recipients.is_empty(), "{:?}", r.recipients);

    assert!(
        !store.revoke_device(p.b.id, now()).await.unwrap(),
        "second revoke"
    );
    assert!(
        !store
            .revoke_device(DeviceId::random(), now())
            .await
            .unwrap(),
        "unknown device"
    );
    // A revoked device cannot send.
    let err = store
        .append(&app(p.conv.id, p.bob.id, p.b.id, 1, b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::NotMember), "{err:?}");
}

pub async fn devices_wipe_order_lifecycle(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let s = session(p.bob.id, p.b.id);
    store.create_session(&s).await.unwrap();
    store
        .add_key_packages(p.b.id, &[vec![1]], Some(&[9]), t0())
        .await
        .unwrap();
    let order = WipeOrder {
        device_id: p.b.id,
        user_id: p.bob.id,
        nonce: random32(),
        ordered_at: now(),
        delivered_at: None,
        confirmed_at: None,
    };
    assert_eq!(store.wipe_order(p.b.id).await.unwrap(), None);

    // Ordering a wipe revokes the device like revoke_device, in the same transaction.
    assert!(
        store.order_wipe(&order).await.unwrap(),
        "revoked by the order"
    );
    let got = store.device(p.b.id).await.unwrap().expect("device");
    assert_eq!(got.status, DeviceStatus::Revoked);
    assert_eq!(got.revoked_at, Some(order.ordered_at));
    assert_eq!(store.session(&s.token_hash).await.unwrap(), None);
    assert_eq!(store.key_package_stock(p.b.id).await.unwrap(), (0, false));
    assert_eq!(
        device_ids(&store.member_devices(p.conv.id).await.unwrap()),
        vec![p.a.id]
    );
    assert_eq!(store.wipe_order(p.b.id).await.unwrap(), Some(order.clone()));
    // The old token still finds the order; other tokens do not.
    assert_eq!(
        store.wipe_order_by_token(&s.token_hash).await.unwrap(),
        Some(order.clone())
    );
    assert_eq!(store.wipe_order_by_token(&random32()).await.unwrap(), None);

    // A second order for the same device conflicts; unknown devices are not found.
    let again = store.order_wipe(&order).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    let unknown = WipeOrder {
        device_id: DeviceId::random(),
        ..order.clone()
    };
    let err = store.order_wipe(&unknown).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Delivery keeps the first time; confirmation happens once.
    let d1 = now();
    store.mark_wipe_delivered(p.b.id, d1).await.unwrap();
    store
        .mark_wipe_delivered(p.b.id, d1 + Duration::seconds(5))
        .await
        .unwrap();
    let c1 = d1 + Duration::seconds(10);
    assert!(store.mark_wipe_confirmed(p.b.id, c1).await.unwrap());
    assert!(
        !store
            .mark_wipe_confirmed(p.b.id, c1 + Duration::seconds(1))
            .await
            .unwrap(),
        "second confirmation"
    );
    assert!(
        !store
            .mark_wipe_confirmed(DeviceId::random(), c1)
            .await
            .unwrap(),
        "no order"
    );
    let got = store.wipe_order(p.b.id).await.unwrap().expect("order");
    assert_eq!(got.delivered_at, Some(d1));
    assert_eq!(got.confirmed_at, Some(c1));

    // A device revoked before the wipe is ordered: the order is stored, nothing revoked anew.
    let (carol, c_dev, _) = active_user(&*store, "carol").await;
    assert!(store.revoke_device(c_dev.id, now()).await.unwrap());
    let late = WipeOrder {
        device_id: c_dev.id,
        user_id: carol.id,
        nonce: random32(),
        ordered_at: now(),
        delivered_at: None,
        confirmed_at: None,
    };
    assert!(!store.order_wipe(&late).await.unwrap(), "already revoked");
    assert_eq!(store.wipe_order(c_dev.id).await.unwrap(), Some(late));
}

pub async fn sessions_lifecycle(store: Arc<dyn Store>) {
    let (u, d, s1) = active_user(&*store, "mona").await;
    assert_eq!(
        store.session(&s1.token_hash).await.unwrap(),
        Some(s1.clone())
    );
    assert_eq!(store.session(&random32()).await.unwrap(), None);

    let later = t0() + Duration::minutes(3) + Duration::microseconds(17);
    store.touch_session(&s1.token_hash, later).await.unwrap();
    let got = store
        .session(&s1.token_hash)
        .await
        .unwrap()
        .expect("session");
    assert_eq!(got.last_used_at, later);
    assert_eq!(got.created_at, s1.created_at);
    assert_eq!(got.expires_at, s1.expires_at);
    assert_eq!(
        store
            .device(d.id)
            .await
            .unwrap()
            .expect("device")
            .last_seen_at,
        Some(later)
    );

    let s2 = session(u.id, d.id);
    store.create_session(&s2).await.unwrap();
    let dup = store.create_session(&s2).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    assert!(store.delete_session(&s2.token_hash).await.unwrap());
    assert!(!store.delete_session(&s2.token_hash).await.unwrap());
    assert_eq!(store.session(&s2.token_hash).await.unwrap(), None);
    assert!(store.session(&s1.token_hash).await.unwrap().is_some());
}

pub async fn sessions_purge(store: Arc<dyn Store>) {
    let (u, d, _) = active_user(&*store, "nina").await;
    // The enrollment session (last used t0, expires t0+12h) is idle in every purge below.
    let base = t0() + Duration::hours(1);
    let fresh = Session {
        last_used_at: base,
        expires_at: base + Duration::hours(5),
        ..session(u.id, d.id)
    };
    let idle = Session {
        last_used_at: base - Duration::minutes(30),
        ..fresh.clone()
    };
    let idle = Session {
        token_hash: random32(),
        ..idle
    };
    let expired = Session {
        token_hash: random32(),
        last_used_at: base,
        expires_at: base - Duration::seconds(1),
        ..fresh.clone()
    };
    for s in [&fresh, &idle, &expired] {
        store.create_session(s).await.unwrap();
    }
    let idle_before = base - Duration::minutes(15);
    assert_eq!(store.purge_sessions(idle_before, base).await.unwrap(), 3);
    assert!(store.session(&fresh.token_hash).await.unwrap().is_some());
    assert_eq!(store.session(&idle.token_hash).await.unwrap(), None);
    assert_eq!(store.session(&expired.token_hash).await.unwrap(), None);
    assert_eq!(store.purge_sessions(idle_before, base).await.unwrap(), 0);
    assert_eq!(
        store
            .purge_sessions(idle_before, base + Duration::hours(6))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.session(&fresh.token_hash).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// KeyPackages
// ---------------------------------------------------------------------------------------

pub async fn key_packages_claim_once_then_last_resort(store: Arc<dyn Store>) {
    let (_, d, _) = active_user(&*store, "omar").await;
    assert_eq!(store.key_package_stock(d.id).await.unwrap(), (0, false));
    assert_eq!(store.claim_key_package(d.id).await.unwrap(), None);

    let packages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i, 0, i]).collect();
    store
        .add_key_packages(d.id, &packages[..3], None, t0())
        .await
        .unwrap();
    assert_eq!(store.key_package_stock(d.id).await.unwrap(), (3, false));
    store
        .add_key_packages(d.id, &packages[3..], Some(b"old last resort"), t0())
        .await
        .unwrap();
    store
        .add_key_packages(d.id, &[], Some(b"last resort"), t0())
        .await
        .unwrap();
    assert_eq!(store.key_package_stock(d.id).await.unwrap(), (5, true));

    let mut claimed = BTreeSet::new();
    for left in (0..5u64).rev() {
        let (kp, last) = store
            .claim_key_package(d.id)
            .await
            .unwrap()
            .expect("a package");
        assert!(!last);
        assert!(claimed.insert(kp), "claimed twice");
        assert_eq!(store.key_package_stock(d.id).await.unwrap(), (left, true));
    }
    assert_eq!(claimed, packages.iter().cloned().collect());
    for _ in 0..3 {
        assert_eq!(
            store.claim_key_package(d.id).await.unwrap(),
            Some((b"last resort".to_vec(), true))
        );
    }
    assert_eq!(store.key_package_stock(d.id).await.unwrap(), (0, true));
}

pub async fn key_packages_concurrent_claims_are_unique(store: Arc<dyn Store>) {
    let (_, d, _) = active_user(&*store, "pia").await;
    let packages: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 8]).collect();
    store
        .add_key_packages(d.id, &packages, Some(b"lr"), t0())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_key_package(d.id).await.unwrap()
        }));
    }
    let mut one_time = Vec::new();
    let mut last_resort = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some((kp, false)) => one_time.push(kp),
            Some((kp, true)) => {
                assert_eq!(kp, b"lr");
                last_resort += 1;
            }
            None => panic!("a last-resort package exists"),
        }
    }
    assert_eq!(
        sorted(one_time),
        packages,
        "each one-time package handed out exactly once"
    );
    assert_eq!(last_resort, 10);
    assert_eq!(store.key_package_stock(d.id).await.unwrap(), (0, true));
}

// ---------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------

pub async fn conversations_create_group(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(&*store, "alice").await;
    let a2 = extra_device(&*store, alice.id, "second").await;
    let c = group(&*store, alice.id, a.id).await;
    assert_eq!(store.conversation(c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(
        store.conversation(ConversationId::random()).await.unwrap(),
        None
    );
    let members = store.members(c.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].user_id, &members[0].username),
        (alice.id, &alice.username)
    );
    let devs = store.member_devices(c.id).await.unwrap();
    assert_eq!(
        devs,
        vec![crate::MemberDevice {
            device_id: a.id,
            user_id: alice.id
        }]
    );
    assert_eq!(
        store.conversations_of_device(a.id).await.unwrap(),
        vec![c.clone()]
    );
    assert!(
        store
            .conversations_of_device(a2.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.commit_log(c.id).await.unwrap().is_empty());
    assert_eq!(store.envelope(c.id, 1).await.unwrap(), None);

    let dup = store
        .create_conversation(&NewConversation {
            conversation: c.clone(),
            creator_device: a.id,
        })
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
}

pub async fn conversations_direct_unique(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(&*store, "alice").await;
    let (bob, b, _) = active_user(&*store, "bob").await;
    let key = format!("{}:{}", alice.id.min(bob.id), alice.id.max(bob.id));
    let direct = |creator: UserId| Conversation {
        id: ConversationId::random(),
        kind: ConversationKind::Direct,
        ciphersuite: crate::CIPHERSUITE_X25519,
        epoch: 0,
        last_seq: 0,
        created_by: creator,
        direct_key: Some(key.clone()),
        created_at: t0(),
    };
    let c1 = direct(alice.id);
    store
        .create_conversation(&NewConversation {
            conversation: c1.clone(),
            creator_device: a.id,
        })
        .await
        .unwrap();
    let c2 = direct(bob.id);
    let err = store
        .create_conversation(&NewConversation {
            conversation: c2.clone(),
            creator_device: b.id,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict("direct conversation")),
        "{err:?}"
    );
    assert_eq!(store.conversation(c2.id).await.unwrap(), None);
    assert!(
        store
            .conversations_of_device(b.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.direct_conversation(&key).await.unwrap(),
        Some(c1.clone())
    );
    assert_eq!(store.direct_conversation("nope").await.unwrap(), None);
    // Group conversations carry no key and never conflict with each other.
    group(&*store, alice.id, a.id).await;
    group(&*store, alice.id, a.id).await;
}

pub async fn append_application_and_idempotency(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(&*store, "alice").await;
    let c = group(&*store, alice.id, a.id).await;
    let req = app(c.id, alice.id, a.id, 0, b"hello");
    let r = accept(&*store, &req).await;
    assert_eq!((r.seq, r.epoch), (1, 0));
    assert!(r.inbox.is_empty());
    assert!(r.recipients.is_empty(), "sender excluded");
    let e = &r.envelope;
    assert_eq!(e.conversation_id, c.id);
    assert_eq!(e.message_id, req.message_id);
    assert_eq!(e.kind, EnvelopeKind::Application);
    assert_eq!(e.epoch, 0);
    assert_eq!((e.sender_user_id, e.sender_device_id), (alice.id, a.id));
    assert_eq!(e.client_message_id, req.client_message_id);
    assert_eq!(e.sent_at, req.sent_at);
    assert_eq!(e.payload.0, b"hello");
    assert_eq!(store.envelope(c.id, 1).await.unwrap().as_ref(), Some(e));

    // A retry with the same client message id (even with a new server id) is a duplicate.
    let retry = AppendRequest {
        message_id: MessageId::random(),
        payload: b"changed".to_vec(),
        ..req.clone()
    };
    match store.append(&retry).await.unwrap() {
        AppendOutcome::Duplicate {
            message_id,
            seq,
            epoch,
        } => {
            assert_eq!((message_id, seq, epoch), (req.message_id, 1, 0));
        }
        other => panic!("expected duplicate, got {other:?}"),
    }
    assert_eq!(conv_state(&*store, c.id).await, (0, 1));
    assert_eq!(
        store
            .envelope(c.id, 1)
            .await
            .unwrap()
            .expect("envelope")
            .payload
            .0,
        b"hello"
    );
    assert_eq!(store.envelope(c.id, 2).await.unwrap(), None);

    // The same client id from another device is a different message.
    let a2 = extra_device(&*store, alice.id, "second").await;
    let c2 = group(&*store, alice.id, a2.id).await;
    let other = AppendRequest {
        conversation_id: c2.id,
        sender_device_id: a2.id,
        message_id: MessageId::random(),
        ..req
    };
    assert_eq!(accept(&*store, &other).await.seq, 1);
    let next = accept(&*store, &app(c.id, alice.id, a.id, 0, b"two")).await;
    assert_eq!(next.seq, 2);
}

pub async fn append_rejects_non_member_and_wrong_epoch(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(&*store, "alice").await;
    let (bob, b, _) = active_user(&*store, "bob").await;
    let a2 = extra_device(&*store, alice.id, "not in group").await;
    let c = group(&*store, alice.id, a.id).await;

    let err = store
        .append(&app(c.id, bob.id, b.id, 0, b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::NotMember), "{err:?}");
    let err = store
        .append(&app(c.id, alice.id, a2.id, 0, b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::NotMember),
        "device not routed: {err:?}"
    );
    let err = store
        .append(&app(c.id, alice.id, a.id, 3, b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::EpochConflict { current_epoch: 0 }),
        "{err:?}"
    );
    let err = store
        .append(&app(ConversationId::random(), alice.id, a.id, 0, b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::NotFound), "{err:?}");
    assert_eq!(conv_state(&*store, c.id).await, (0, 0));
    assert_eq!(store.envelope(c.id, 1).await.unwrap(), None);
}

pub async fn commit_adds_member_with_welcome(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(&*store, "alice").await;
    let (bob, b, _) = active_user(&*store, "bob").await;
    let b2 = extra_device(&*store, bob.id, "bob tablet").await;
    let c = group(&*store, alice.id, a.id).await;
    accept(&*store, &app(c.id, alice.id, a.id, 0, b"before bob")).await;

    let changes = adding(&[bob.id], &[b.id, b2.id]);
    let hash = changes.commit_hash;
    let r = accept(&*store, &commit(c.id, alice.id, a.id, 0, changes)).await;
    assert_eq!((r.seq, r.epoch), (2, 1));
    assert_eq!(r.envelope.kind, EnvelopeKind::Commit);
    assert!(
        r.recipients.is_empty(),
        "added devices start after the commit: {:?}",
        r.recipients
    );
    let mut welcomed: Vec<DeviceId> = r.inbox.iter().map(|(d, _)| *d).collect();
    welcomed.sort();
    assert_eq!(welcomed, sorted(vec![b.id, b2.id]));
    for (_, item) in &r.inbox {
        assert_eq!(item.kind, InboxKind::Welcome);
        assert_eq!(item.conversation_id, c.id);
        assert_eq!(item.commit_seq, 2);
        assert_eq!(item.payload.0, b"welcome bytes");
    }
    assert_eq!(conv_state(&*store, c.id).await, (1, 2));
    let members: Vec<UserId> = store
        .members(c.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(sorted(members), sorted(vec![alice.id, bob.id]));
    assert_eq!(
        device_ids(&store.member_devices(c.id).await.unwrap()),
        sorted(vec![a.id, b.id, b2.id])
    );
    assert_eq!(store.conversations_of_device(b.id).await.unwrap().len(), 1);
    let log = store.commit_log(c.id).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].epoch, log[0].seq), (0, 2));
    assert_eq!(log[0].commit_hash, hex::encode(hash));

    // Bob's device gets the Welcome and only what follows the commit.
    let m = accept(&*store, &app(c.id, alice.id, a.id, 1, b"hi bob")).await;
    assert_eq!(m.seq, 3);
    assert_eq!(sorted(m.recipients), sorted(vec![b.id, b2.id]));
    let batch = store.sync(b.id, 100).await.unwrap();
    assert!(!batch.more);
    assert_eq!(batch.inbox.len(), 1);
    let item = &batch.inbox[0];
    assert_eq!(
        (item.kind, item.conversation_id, item.commit_seq),
        (InboxKind::Welcome, c.id, 2)
    );
    assert_eq!(item.payload.0, b"welcome bytes");
    assert_eq!(
        batch.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3]
    );
    // Bob can now send at epoch 1 and alice receives it.
    let reply = accept(&*store, &app(c.id, bob.id, b.id, 1, b"hi alice")).await;
    assert_eq!(sorted(reply.recipients), sorted(vec![a.id, b2.id]));
    assert_eq!(synced_seqs(&*store, a.id).await, vec![4]);
}

pub async fn commit_stale_epoch_rejected(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(&*store, "alice").await;
    let (bob, b, _) = active_user(&*store, "bob").await;
    let (carol, cd, _) = active_user(&*store, "carol").await;
    let c = group(&*store, alice.id, a.id).await;
    accept(
        &*store,
        &commit(c.id, alice.id, a.id, 0, adding(&[bob.id], &[b.id])),
    )
    .await;

    let err = store
        .append(&commit(
            c.id,
            alice.id,
            a.id,
            0,
            adding(&[carol.id], &[cd.id]),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::EpochConflict { current_epoch: 1 }),
        "{err:?}"
    );
    assert_eq!(conv_state(&*store, c.id).await, (1, 1));
    assert_eq!(store.envelope(c.id, 2).await.unwrap(), None);
    assert_eq!(store.commit_log(c.id).await.unwrap().len(), 1);
    assert_eq!(store.members(c.id).await.unwrap().len(), 2);
    assert!(store.sync(cd.id, 10).await.unwrap().inbox.is_empty());
    assert!(
        store
            .conversations_of_device(cd.id)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn commit_invalid_welcome_or_member_rejected(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(&*store, "alice").await;
    let (bob, b, _) = active_user(&*store, "bob").await;
    let (carol, cd, _) = active_user(&*store, "carol").await;
    let b_old = extra_device(&*store, bob.id, "old").await;
    assert!(store.revoke_device(b_old.id, now()).await.unwrap());
    let pending = user("pending");
    store.create_user(&pending, &code()).await.unwrap();
    let c = group(&*store, alice.id, a.id).await;

    let (cid, aid, bid, cdid) = (c.id, a.id, b.id, cd.id);
    let check_nothing_written = move |store: Arc<dyn Store>| async move {
        assert_eq!(conv_state(&*store, cid).await, (0, 0));
        assert_eq!(store.envelope(cid, 1).await.unwrap(), None);
        assert!(store.commit_log(cid).await.unwrap().is_empty());
        assert_eq!(store.members(cid).await.unwrap().len(), 1);
        assert_eq!(
            device_ids(&store.member_devices(cid).await.unwrap()),
            vec![aid]
        );
        for d in [bid, cdid] {
            assert!(store.sync(d, 10).await.unwrap().inbox.is_empty());
        }
    };

    // Carol's device, but carol is not being added.
    let err = store
        .append(&commit(
            c.id,
            alice.id,
            a.id,
            0,
            adding(&[bob.id], &[b.id, cd.id]),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::InvalidWelcomeDevice(d) if d == cd.id),
        "{err:?}"
    );
    check_nothing_written(store.clone()).await;
    // A revoked device of the added user.
    let err = store
        .append(&commit(
            c.id,
            alice.id,
            a.id,
            0,
            adding(&[bob.id], &[b.id, b_old.id]),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::InvalidWelcomeDevice(d) if d == b_old.id),
        "{err:?}"
    );
    check_nothing_written(store.clone()).await;
    // An unknown device.
    let ghost = DeviceId::random();
    let err = store
        .append(&commit(
            c.id,
            alice.id,
            a.id,
            0,
            adding(&[bob.id], &[ghost]),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::InvalidWelcomeDevice(d) if d == ghost),
        "{err:?}"
    );
    check_nothing_written(store.clone()).await;
    // Unknown or non-active users.
    for u in [UserId::random(), pending.id] {
        let err = store
            .append(&commit(
                c.id,
                alice.id,
                a.id,
                0,
                adding(&[bob.id, u], &[b.id]),
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, AppendError::InvalidMember), "{err:?}");
        check_nothing_written(store.clone()).await;
    }
    // The valid commit still goes through afterwards.
    let r = accept(
        &*store,
        &commit(
            c.id,
            alice.id,
            a.id,
            0,
            adding(&[bob.id, carol.id], &[b.id, cd.id]),
        ),
    )
    .await;
    assert_eq!((r.seq, r.epoch), (1, 1));
}

pub async fn commit_concurrent_same_epoch_one_wins(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    for round in 0..4u64 {
        let epoch = 1 + round;
        let mut tasks = Vec::new();
        for i in 0..6u8 {
            let s = store.clone();
            let (dev, user) = if i % 2 == 0 {
                (p.a.id, p.alice.id)
            } else {
                (p.b.id, p.bob.id)
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
        let mut accepted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(AppendOutcome::Accepted { epoch: after, .. }) => {
                    assert_eq!(after, epoch + 1);
                    accepted += 1;
                }
                Err(AppendError::EpochConflict { current_epoch }) => {
                    assert_eq!(current_epoch, epoch + 1)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(accepted, 1, "exactly one commit per epoch");
        assert_eq!(conv_state(&*store, p.conv.id).await, (epoch + 1, epoch + 1));
    }
    let log = store.commit_log(p.conv.id).await.unwrap();
    assert_eq!(
        log.iter().map(|e| (e.epoch, e.seq)).collect::<Vec<_>>(),
        vec![(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    );
}

pub async fn commit_remove_users_stops_routing(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    accept(&*store, &app(p.conv.id, p.alice.id, p.a.id, 1, b"m2")).await;
    let removal = CommitChanges {
        commit_hash: random32(),
        remove_users: vec![p.bob.id],
        ..Default::default()
    };
    let r = accept(&*store, &commit(p.conv.id, p.alice.id, p.a.id, 1, removal)).await;
    assert_eq!((r.seq, r.epoch), (3, 2));
    assert_eq!(
        r.recipients,
        vec![p.b.id],
        "the removed device still gets the removing commit"
    );
    assert_eq!(r.inbox.len(), 1);
    let (dev, item) = &r.inbox[0];
    assert_eq!(*dev, p.b.id);
    assert_eq!(
        (item.kind, item.conversation_id, item.commit_seq),
        (InboxKind::Removed, p.conv.id, 3)
    );
    assert!(item.payload.is_empty());

    let after = accept(&*store, &app(p.conv.id, p.alice.id, p.a.id, 2, b"m4")).await;
    assert!(after.recipients.is_empty());
    let members: Vec<UserId> = store
        .members(p.conv.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(members, vec![p.alice.id]);
    assert_eq!(
        device_ids(&store.member_devices(p.conv.id).await.unwrap()),
        vec![p.a.id]
    );
    assert!(
        store
            .conversations_of_device(p.b.id)
            .await
            .unwrap()
            .is_empty()
    );

    let batch = store.sync(p.b.id, 100).await.unwrap();
    let kinds: Vec<(InboxKind, u64)> = batch.inbox.iter().map(|i| (i.kind, i.commit_seq)).collect();
    assert_eq!(
        kinds,
        vec![(InboxKind::Welcome, 1), (InboxKind::Removed, 3)]
    );
    assert!(batch.inbox[0].inbox_seq < batch.inbox[1].inbox_seq);
    assert_eq!(
        batch.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );

    let err = store
        .append(&app(p.conv.id, p.bob.id, p.b.id, 2, b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::NotMember), "{err:?}");

    // Removing a non-member is a no-op; adding bob back routes him again from that commit.
    let noop = CommitChanges {
        commit_hash: random32(),
        remove_users: vec![p.bob.id],
        ..Default::default()
    };
    accept(&*store, &commit(p.conv.id, p.alice.id, p.a.id, 2, noop)).await;
    let back = accept(
        &*store,
        &commit(
            p.conv.id,
            p.alice.id,
            p.a.id,
            3,
            adding(&[p.bob.id], &[p.b.id]),
        ),
    )
    .await;
    assert_eq!(back.seq, 6);
    let m = accept(
        &*store,
        &app(p.conv.id, p.alice.id, p.a.id, 4, b"welcome back"),
    )
    .await;
    assert_eq!(m.recipients, vec![p.b.id]);
    store
        .record_receipts(
            p.b.id,
            ReceiptKind::Delivered,
            &[ConversationCursor {
                conversation_id: p.conv.id,
                seq: 3,
            }],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(synced_seqs(&*store, p.b.id).await, vec![7]);
}

pub async fn commit_remove_devices_stops_routing(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let a2 = extra_device(&*store, p.alice.id, "alice tablet").await;
    // Adding a device of an existing member: Welcome only.
    let add_dev = CommitChanges {
        commit_hash: random32(),
        welcome: Some((b"w2".to_vec(), vec![a2.id])),
        ..Default::default()
    };
    let r = accept(&*store, &commit(p.conv.id, p.alice.id, p.a.id, 1, add_dev)).await;
    assert_eq!(r.recipients, vec![p.b.id]);
    assert_eq!(
        device_ids(&store.member_devices(p.conv.id).await.unwrap()),
        sorted(vec![p.a.id, a2.id, p.b.id])
    );

    let rm = CommitChanges {
        commit_hash: random32(),
        remove_devices: vec![a2.id],
        ..Default::default()
    };
    let r = accept(&*store, &commit(p.conv.id, p.bob.id, p.b.id, 2, rm)).await;
    assert_eq!(sorted(r.recipients), sorted(vec![p.a.id, a2.id]));
    assert_eq!(r.inbox.len(), 1);
    assert_eq!(
        (r.inbox[0].0, r.inbox[0].1.kind, r.inbox[0].1.commit_seq),
        (a2.id, InboxKind::Removed, r.seq)
    );
    assert_eq!(
        device_ids(&store.member_devices(p.conv.id).await.unwrap()),
        sorted(vec![p.a.id, p.b.id])
    );
    let members: Vec<UserId> = store
        .members(p.conv.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(
        sorted(members),
        sorted(vec![p.alice.id, p.bob.id]),
        "the user stays a member"
    );
    let m = accept(&*store, &app(p.conv.id, p.bob.id, p.b.id, 3, b"x")).await;
    assert_eq!(m.recipients, vec![p.a.id]);
}

// ---------------------------------------------------------------------------------------
// Sync and receipts
// ---------------------------------------------------------------------------------------

pub async fn sync_excludes_own_respects_limit_inbox_first(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    for i in 0..5u8 {
        accept(&*store, &app(p.conv.id, p.alice.id, p.a.id, 1, &[i])).await;
    }
    accept(&*store, &app(p.conv.id, p.bob.id, p.b.id, 1, b"from bob")).await;

    // Bob: 1 Welcome + seqs 2..=6 (his own seq 7 excluded).
    let all = store.sync(p.b.id, 100).await.unwrap();
    assert!(!all.more);
    assert_eq!(all.inbox.len(), 1);
    assert_eq!(
        all.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6]
    );
    assert_eq!(all.envelopes[0].payload.0, vec![0u8]);
    let exact = store.sync(p.b.id, 6).await.unwrap();
    assert!(!exact.more);
    assert_eq!(exact.envelopes.len(), 5);
    let cut = store.sync(p.b.id, 3).await.unwrap();
    assert!(cut.more);
    assert_eq!(cut.inbox.len(), 1);
    assert_eq!(
        cut.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let inbox_only = store.sync(p.b.id, 1).await.unwrap();
    assert!(inbox_only.more);
    assert_eq!((inbox_only.inbox.len(), inbox_only.envelopes.len()), (1, 0));

    // Alice sees only bob's message.
    let a = store.sync(p.a.id, 100).await.unwrap();
    assert!(a.inbox.is_empty());
    assert_eq!(
        a.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![7]
    );
    assert!(!a.more);

    // A device in no conversation has nothing.
    let (_, lone, _) = active_user(&*store, "lone").await;
    let empty = store.sync(lone.id, 10).await.unwrap();
    assert!(empty.inbox.is_empty() && empty.envelopes.is_empty() && !empty.more);
}

pub async fn receipts_and_cursors(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let conv = p.conv.id;
    let cur = |seq| {
        vec![ConversationCursor {
            conversation_id: conv,
            seq,
        }]
    };
    accept(&*store, &app(conv, p.alice.id, p.a.id, 1, b"m2")).await;
    accept(&*store, &app(conv, p.alice.id, p.a.id, 1, b"m3")).await;

    let r = store.receipts(conv, 2).await.unwrap();
    assert_eq!(r.len(), 1, "sender's device excluded");
    assert_eq!(
        (
            r[0].user_id,
            r[0].device_id,
            r[0].delivered_at,
            r[0].read_at
        ),
        (p.bob.id, p.b.id, None, None)
    );

    let welcome_seq = store.sync(p.b.id, 10).await.unwrap().inbox[0].inbox_seq;
    let t1 = now();
    store
        .record_receipts(
            p.b.id,
            ReceiptKind::Delivered,
            &cur(2),
            Some(welcome_seq),
            t1,
        )
        .await
        .unwrap();
    let batch = store.sync(p.b.id, 10).await.unwrap();
    assert!(
        batch.inbox.is_empty(),
        "acknowledged inbox items are dropped"
    );
    assert_eq!(
        batch.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(
        store.receipts(conv, 2).await.unwrap()[0].delivered_at,
        Some(t1)
    );
    assert_eq!(store.receipts(conv, 3).await.unwrap()[0].delivered_at, None);

    // Never backwards.
    store
        .record_receipts(
            p.b.id,
            ReceiptKind::Delivered,
            &cur(1),
            None,
            t1 + Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(synced_seqs(&*store, p.b.id).await, vec![3]);
    assert_eq!(
        store.receipts(conv, 2).await.unwrap()[0].delivered_at,
        Some(t1)
    );

    // Beyond the last seq clamps to it.
    let t2 = t1 + Duration::seconds(2);
    store
        .record_receipts(p.b.id, ReceiptKind::Delivered, &cur(99), None, t2)
        .await
        .unwrap();
    assert!(synced_seqs(&*store, p.b.id).await.is_empty());
    assert_eq!(
        store.receipts(conv, 3).await.unwrap()[0].delivered_at,
        Some(t2)
    );
    assert_eq!(
        store.receipts(conv, 2).await.unwrap()[0].delivered_at,
        Some(t1)
    );
    accept(&*store, &app(conv, p.alice.id, p.a.id, 1, b"m4")).await;
    assert_eq!(
        synced_seqs(&*store, p.b.id).await,
        vec![4],
        "cursor was clamped to 3"
    );

    // Read receipts.
    let t3 = t1 + Duration::seconds(3);
    store
        .record_receipts(p.b.id, ReceiptKind::Read, &cur(2), None, t3)
        .await
        .unwrap();
    let r2 = store.receipts(conv, 2).await.unwrap();
    assert_eq!((r2[0].delivered_at, r2[0].read_at), (Some(t1), Some(t3)));
    assert_eq!(store.receipts(conv, 3).await.unwrap()[0].read_at, None);
    assert_eq!(
        synced_seqs(&*store, p.b.id).await,
        vec![4],
        "read does not move the delivery cursor back"
    );

    // A message from bob: alice is the recipient.
    let m = accept(&*store, &app(conv, p.bob.id, p.b.id, 1, b"m5")).await;
    let r5 = store.receipts(conv, m.seq).await.unwrap();
    assert_eq!(
        r5.iter().map(|r| r.device_id).collect::<Vec<_>>(),
        vec![p.a.id]
    );
    let t4 = t1 + Duration::seconds(4);
    store
        .record_receipts(p.a.id, ReceiptKind::Delivered, &cur(m.seq), None, t4)
        .await
        .unwrap();
    assert_eq!(
        store.receipts(conv, m.seq).await.unwrap()[0].delivered_at,
        Some(t4)
    );
    assert!(
        store
            .receipts(conv, 99)
            .await
            .unwrap()
            .iter()
            .all(|r| r.delivered_at.is_none())
    );
}

pub async fn commit_log_and_envelope_bytes(store: Arc<dyn Store>) {
    let (alice, a, _) = active_user(&*store, "alice").await;
    let c = group(&*store, alice.id, a.id).await;
    let mut hashes = Vec::new();
    for epoch in 0..3u64 {
        let changes = CommitChanges {
            commit_hash: random32(),
            ..Default::default()
        };
        hashes.push(changes.commit_hash);
        accept(&*store, &commit(c.id, alice.id, a.id, epoch, changes)).await;
        accept(&*store, &app(c.id, alice.id, a.id, epoch + 1, b"between")).await;
    }
    let log = store.commit_log(c.id).await.unwrap();
    let expected: Vec<(u64, u64, String)> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (i as u64, 1 + 2 * i as u64, hex::encode(h)))
        .collect();
    assert_eq!(
        log.into_iter()
            .map(|e| (e.epoch, e.seq, e.commit_hash))
            .collect::<Vec<_>>(),
        expected
    );

    // Every byte value survives, including NUL and invalid UTF-8, and a large payload.
    let payload: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let r = accept(&*store, &app(c.id, alice.id, a.id, 3, &payload)).await;
    let e = store
        .envelope(c.id, r.seq)
        .await
        .unwrap()
        .expect("envelope");
    assert_eq!(e.payload.0, payload);
    assert_eq!(e, r.envelope);
    assert_eq!(store.envelope(c.id, r.seq + 1).await.unwrap(), None);
    let empty = accept(&*store, &app(c.id, alice.id, a.id, 3, b"")).await;
    assert!(
        store
            .envelope(c.id, empty.seq)
            .await
            .unwrap()
            .expect("envelope")
            .payload
            .is_empty()
    );
}

pub async fn append_concurrent_seqs_gap_free(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let mut tasks = Vec::new();
    for t in 0..4u8 {
        let s = store.clone();
        let (user, dev) = if t % 2 == 0 {
            (p.alice.id, p.a.id)
        } else {
            (p.bob.id, p.b.id)
        };
        let conv = p.conv.id;
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25u8 {
                let r = accept(&*s, &app(conv, user, dev, 1, &[t, i])).await;
                seqs.push(r.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "seqs increase per sender"
        );
        all.extend(seqs);
    }
    assert_eq!(sorted(all), (2..=101).collect::<Vec<u64>>());
    assert_eq!(conv_state(&*store, p.conv.id).await, (1, 101));
    let alice_sees = synced_seqs(&*store, p.a.id).await;
    let bob_sees = synced_seqs(&*store, p.b.id).await;
    assert_eq!((alice_sees.len(), bob_sees.len()), (50, 50));
}

/// The append listener (ADR 0020) is told of every accepted append of concurrent senders to one
/// conversation exactly once, in seq order, and of nothing else (duplicates, failures).
pub async fn append_listener_sees_seq_order(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(ConversationId, u64)>::new()));
    let sink = seen.clone();
    let listener: crate::AppendListener = Arc::new(move |o: &AppendOutcome| {
        if let AppendOutcome::Accepted { envelope, .. } = o {
            sink.lock()
                .unwrap()
                .push((envelope.conversation_id, envelope.seq));
        }
    });
    assert!(store.set_append_listener(listener.clone()));
    assert!(
        !store.set_append_listener(listener),
        "a second listener is refused"
    );
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let s = store.clone();
        let (user, dev) = if t % 2 == 0 {
            (p.alice.id, p.a.id)
        } else {
            (p.bob.id, p.b.id)
        };
        let conv = p.conv.id;
        tasks.push(tokio::spawn(async move {
            for i in 0..25u8 {
                let req = app(conv, user, dev, 1, &[t, i]);
                accept(&*s, &req).await;
                // A retry is a duplicate: not announced again.
                assert!(matches!(
                    s.append(&req).await,
                    Ok(AppendOutcome::Duplicate { .. })
                ));
            }
            // A stale epoch fails and is not announced.
            assert!(s.append(&app(conv, user, dev, 7, &[t])).await.is_err());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(c, _)| *c == p.conv.id));
    let seqs: Vec<u64> = seen.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        seqs,
        (2..=201).collect::<Vec<u64>>(),
        "every accepted append announced once, in seq order"
    );
}

/// Accepted sends, duplicates, stale epochs and non-members submitted at once (one group-commit
/// batch where a backend batches): each gets its own answer, only accepted sends write an
/// envelope and an audit record (target = message id, `seq` in the details), and the chain
/// stays intact.
pub async fn append_with_audit_mixed_outcomes(store: Arc<dyn Store>) {
    let p = pair(&*store).await;
    let (carol, c_dev, _) = active_user(&*store, "carol").await;
    let first = accept(&*store, &app(p.conv.id, p.alice.id, p.a.id, 1, b"first")).await;
    let audited = |mut req: AppendRequest, i: u64| {
        req.audit = Some(AuditEvent {
            action: "message.send".into(),
            target: None,
            ..event(i)
        });
        req
    };
    let duplicate_of = app(p.conv.id, p.alice.id, p.a.id, 1, b"first");
    let duplicate = AppendRequest {
        client_message_id: duplicate_of.client_message_id,
        ..duplicate_of.clone()
    };
    accept(&*store, &duplicate_of).await;
    let before = all_audit(&*store).await.len();

    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let s = store.clone();
        let req = match i % 4 {
            0 | 1 => audited(app(p.conv.id, p.bob.id, p.b.id, 1, &i.to_be_bytes()), i),
            2 => audited(
                AppendRequest {
                    message_id: MessageId::random(),
                    ..duplicate.clone()
                },
                i,
            ),
            _ if i % 8 == 3 => audited(app(p.conv.id, p.bob.id, p.b.id, 0, b"stale"), i),
            _ => audited(app(p.conv.id, carol.id, c_dev.id, 1, b"outsider"), i),
        };
        tasks.push(tokio::spawn(async move {
            (i, req.clone(), s.append(&req).await)
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        let (i, req, outcome) = t.await.unwrap();
        match (i % 4, outcome) {
            (
                0 | 1,
                Ok(AppendOutcome::Accepted {
                    envelope,
                    audit_seq,
                    ..
                }),
            ) => {
                assert_eq!(envelope.message_id, req.message_id);
                accepted.push((envelope, audit_seq.expect("audit record written")));
            }
            (2, Ok(AppendOutcome::Duplicate { message_id, .. })) => {
                assert_eq!(message_id, duplicate_of.message_id);
            }
            (3, Err(AppendError::EpochConflict { current_epoch })) if i % 8 == 3 => {
                assert_eq!(current_epoch, 1);
            }
            (3, Err(AppendError::NotMember)) => {}
            (_, other) => panic!("request {i}: unexpected outcome {other:?}"),
        }
    }
    assert_eq!(accepted.len(), 20);
    let records = all_audit(&*store).await;
    assert_eq!(
        records.len(),
        before + 20,
        "one record per accepted send only"
    );
    for (envelope, audit_seq) in &accepted {
        let r = records
            .iter()
            .find(|r| r.seq == *audit_seq)
            .expect("record at audit_seq");
        assert_eq!(r.action, "message.send");
        assert_eq!(r.target, Some(envelope.message_id.to_string()));
        assert_eq!(r.details["seq"], serde_json::json!(envelope.seq));
    }
    let mut seqs: Vec<u64> = accepted.iter().map(|(e, _)| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (first.seq + 2..first.seq + 22).collect::<Vec<_>>());
    assert_eq!(conv_state(&*store, p.conv.id).await, (1, first.seq + 21));
    let report = verify(&records, &[]);
    assert!(report.ok, "chain intact: {report:?}");
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        at: now() + Duration::microseconds(i as i64),
        actor_user_id: i.is_multiple_of(2).then(UserId::random),
        actor_device_id: i.is_multiple_of(3).then(DeviceId::random),
        action: format!("test.action{}", i % 4),
        target: (i % 2 == 1).then(|| format!("target-{i}")),
        details: serde_json::json!({"i": i, "z": "last", "a": [1, 2, {"y": null, "b": true}]}),
    }
}

async fn all_audit(store: &dyn Store) -> Vec<ward_proto::AuditRecord> {
    store.audit_records(0, 100_000).await.unwrap()
}

fn verify(
    records: &[ward_proto::AuditRecord],
    checkpoints: &[AuditCheckpoint],
) -> ward_proto::AuditVerifyReport {
    let mut v = ChainVerifier::new(checkpoints);
    for r in records {
        v.push(r);
    }
    v.finish(checkpoints, |_, _| true)
}

pub async fn audit_chain_and_pagination(store: Arc<dyn Store>) {
    assert_eq!(store.audit_head().await.unwrap(), None);
    assert!(all_audit(&*store).await.is_empty());
    let mut returned = Vec::new();
    for i in 1..=7u64 {
        let e = event(i);
        let r = store.append_audit(&e).await.unwrap();
        assert_eq!(r.seq, i);
        assert_eq!(r.at, truncate_to_micros(e.at));
        assert_eq!(
            (r.actor_user_id, r.actor_device_id),
            (e.actor_user_id, e.actor_device_id)
        );
        assert_eq!(
            (&r.action, &r.target, &r.details),
            (&e.action, &e.target, &e.details)
        );
        assert_eq!(
            Some(audit::decode_hash(&r.hash).expect("hex hash")),
            audit::recompute(&r)
        );
        returned.push(r);
    }
    assert_eq!(returned[0].prev_hash, hex::encode(GENESIS_HASH));
    assert_eq!(returned[0].prev_hash, "0".repeat(64));
    for w in returned.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    let stored = all_audit(&*store).await;
    assert_eq!(stored, returned, "stored records equal the returned ones");
    let report = verify(&stored, &[]);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, 7);
    assert_eq!(
        store.audit_head().await.unwrap(),
        Some((7, returned[6].hash.clone()))
    );

    let page = store.audit_records(2, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(page[..], returned[2..5]);
    assert_eq!(
        store
            .audit_records(5, 100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        vec![6, 7]
    );
    assert!(store.audit_records(7, 10).await.unwrap().is_empty());
    assert!(store.audit_records(0, 0).await.unwrap().is_empty());

    // A time with sub-microsecond digits is stored and hashed at microseconds: the chain
    // still verifies.
    let odd = AuditEvent {
        at: t0() + Duration::nanoseconds(999),
        ..event(8)
    };
    let r = store.append_audit(&odd).await.unwrap();
    assert_eq!(r.at, t0());
    let report = verify(&all_audit(&*store).await, &[]);
    assert!(report.ok, "{report:?}");
}

pub async fn audit_checkpoints(store: Arc<dyn Store>) {
    assert!(store.checkpoints().await.unwrap().is_empty());
    let mut records = Vec::new();
    for i in 1..=4 {
        records.push(store.append_audit(&event(i)).await.unwrap());
    }
    let cp = |r: &ward_proto::AuditRecord| AuditCheckpoint {
        seq: r.seq,
        hash: r.hash.clone(),
        signature: vec![0xAB; 64],
        at: truncate_to_micros(r.at + Duration::seconds(1)),
    };
    let c4 = cp(&records[3]);
    let c2 = cp(&records[1]);
    store.add_checkpoint(&c4).await.unwrap();
    store.add_checkpoint(&c2).await.unwrap();
    let got = store.checkpoints().await.unwrap();
    assert_eq!(got, vec![c2, c4], "by seq");
    let report = verify(&all_audit(&*store).await, &got);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checkpoints, 2);
}

pub async fn audit_concurrent_appends_chain(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for t in 0..5u64 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10u64 {
                s.append_audit(&event(t * 100 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let records = all_audit(&*store).await;
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<u64>>()
    );
    let report = verify(&records, &[]);
    assert!(report.ok, "{report:?}");
    assert_eq!(
        store.audit_head().await.unwrap(),
        Some((50, records[49].hash.clone()))
    );
}
