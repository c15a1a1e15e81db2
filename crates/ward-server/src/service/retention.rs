//! Retention (ADR 0013): the policy, legal holds, the purge of envelopes and journal archive
//! entries, signed deletion orders to devices, and erasure requests.
//!
//! Every decision goes through [`precedence::decide`] — legal hold > statutory retention >
//! erasure request > message lifespan — so there is one place that says what wins. Every
//! purge batch is audited (`retention.purge`: the rule, the conversation, the count and the
//! message ids, never content), as are holds (`hold.add`, `hold.release`), erasure requests
//! (`erasure.request`) and the devices' acknowledgements of deletion orders
//! (`retention.device_ack`).
//!
//! What this does NOT do: delete commits or proposals (offline devices need them to stay in
//! their MLS groups, and they carry no message content), or delete account records (the
//! audit chain refers to them).

pub mod precedence;

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::Signer as _;
use time::OffsetDateTime;
use ward_proto::{
    AddHoldRequest, ConversationId, ConversationKind, DeletionOrder, DeletionOrderList, DeviceId,
    ErasureKept, ErasureReport, ErasureRequestBody, ErrorCode, HoldInfo, HoldList, HoldTarget,
    MAX_DELETION_ORDER_IDS, MessageId, PurgeReport, RetentionDuration, RetentionPolicyInfo,
    RetentionRulesInfo, Role, SetRetentionRequest, UserId, Username,
};
use ward_store::{
    ArchiveMetaQuery, EnvelopeMetaQuery, ErasureRecord, LegalHold, RetentionPolicy, RetentionRules,
    StoreError, StoredDeletionOrder,
};

use self::precedence::{DeleteRule, Facts, KeepReason, Verdict, decide};
use super::{Actor, Services, require_role};
use crate::error::{ApiError, ApiResult};

/// Rows read per page of the expiry scan.
const PAGE: usize = 500;
/// Deletion orders handed to a device per request.
const ORDERS_PER_REQUEST: usize = 100;
/// Bounds of the automatic purge interval, seconds.
const INTERVAL_BOUNDS: (u64, u64) = (60, 86_400);

/// The holds in force, by what they cover.
#[derive(Default)]
struct ActiveHolds {
    users: HashMap<UserId, uuid::Uuid>,
    conversations: HashMap<ConversationId, uuid::Uuid>,
}

impl ActiveHolds {
    fn covering(&self, conversation: ConversationId, sender: UserId) -> Option<uuid::Uuid> {
        self.conversations
            .get(&conversation)
            .or_else(|| self.users.get(&sender))
            .copied()
    }
}

impl Services {
    /// The retention policy (admin, compliance).
    pub fn retention_policy(&self, actor: &Actor) -> ApiResult<RetentionPolicyInfo> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        Ok(retention_info(&self.policy().retention))
    }

    /// Change retention rules (admin); every duration validated; audited as a policy change.
    pub async fn set_retention(
        &self,
        actor: &Actor,
        req: SetRetentionRequest,
    ) -> ApiResult<RetentionPolicyInfo> {
        require_role(actor, &[Role::Admin])?;
        let mut policy = self.policy();
        let r = &mut policy.retention;
        let rules = match &req.kind {
            None => &mut r.default,
            Some(k) => {
                let kind: ConversationKind =
                    serde_json::from_value(serde_json::Value::String(k.clone())).map_err(|_| {
                        ApiError::invalid(format!("unknown conversation kind {k:?}"))
                    })?;
                if req.journal_retention.is_some() || req.purge_interval_secs.is_some() {
                    return Err(ApiError::invalid(
                        "journal_retention and purge_interval_secs are organisation-wide: \
                         set them without a kind",
                    ));
                }
                r.per_kind.entry(kind_name(kind)).or_default()
            }
        };
        if let Some(v) = &req.message_lifespan {
            rules.message_lifespan_secs = duration_field("message_lifespan", v)?;
        }
        if let Some(v) = &req.statutory_retention {
            rules.statutory_retention_secs = duration_field("statutory_retention", v)?;
        }
        if let Some(v) = &req.journal_retention {
            r.journal_retention_secs = duration_field("journal_retention", v)?;
        }
        if let Some(v) = req.purge_interval_secs {
            let (lo, hi) = INTERVAL_BOUNDS;
            if !(lo..=hi).contains(&v) {
                return Err(ApiError::invalid(format!(
                    "purge_interval_secs must be between {lo} and {hi} (got {v})"
                )));
            }
            r.purge_interval_secs = v;
        }
        r.per_kind.retain(|_, v| *v != RetentionRules::default());
        let info = retention_info(r);
        self.set_policy(actor, policy).await?;
        Ok(info)
    }

    /// Place a legal hold on a user or a conversation (admin, compliance); audited `hold.add`.
    pub async fn add_hold(&self, actor: &Actor, req: AddHoldRequest) -> ApiResult<HoldInfo> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        let reason = req.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(ApiError::invalid("reason must be 1 to 500 characters"));
        }
        let case_ref = match req.case_ref.as_deref().map(str::trim) {
            Some("") => None,
            Some(c) if c.chars().count() > 100 => {
                return Err(ApiError::invalid("case_ref must be at most 100 characters"));
            }
            Some(c) if c.chars().any(char::is_control) => {
                return Err(ApiError::invalid(
                    "case_ref must not contain control characters",
                ));
            }
            other => other.map(str::to_owned),
        };
        let target = match (&req.user, req.conversation) {
            (Some(u), None) => HoldTarget::User(self.user_by_username(u).await?),
            (None, Some(c)) => {
                self.store
                    .conversation(c)
                    .await?
                    .ok_or_else(|| ApiError::not_found("conversation"))?;
                HoldTarget::Conversation(c)
            }
            _ => {
                return Err(ApiError::invalid(
                    "a hold names exactly one of user or conversation",
                ));
            }
        };
        let hold = LegalHold {
            id: uuid::Uuid::new_v4(),
            target,
            reason: reason.to_owned(),
            case_ref,
            created_by: actor.user_id,
            created_at: self.now(),
            released_by: None,
            released_at: None,
        };
        self.store.add_hold(&hold).await?;
        self.audit
            .record(
                actor,
                "hold.add",
                Some(hold.id.to_string()),
                serde_json::json!({"target": hold.target, "case_ref": hold.case_ref}),
            )
            .await?;
        Ok(hold_info(&hold))
    }

    /// Every hold, released ones included (admin, compliance).
    pub async fn list_holds(&self, actor: &Actor) -> ApiResult<HoldList> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        Ok(HoldList {
            holds: self.store.holds().await?.iter().map(hold_info).collect(),
        })
    }

    /// Release a hold (admin, compliance); audited `hold.release`. Releasing twice is 409.
    pub async fn release_hold(&self, actor: &Actor, id: uuid::Uuid) -> ApiResult<HoldInfo> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        let released = match self.store.release_hold(id, actor.user_id, self.now()).await {
            Err(StoreError::NotFound(_)) => return Err(ApiError::not_found("hold")),
            other => other?,
        };
        if !released {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this hold was already released",
            ));
        }
        self.audit
            .record(
                actor,
                "hold.release",
                Some(id.to_string()),
                serde_json::json!({}),
            )
            .await?;
        let hold = self
            .store
            .holds()
            .await?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| ApiError::not_found("hold"))?;
        Ok(hold_info(&hold))
    }

    /// Run the purge now (admin; also the periodic job as [`Actor::system`]): envelopes past
    /// their lifespan and journal archive entries past their retention, unless held or under
    /// statutory retention. Each batch is audited `retention.purge`.
    pub async fn run_retention(&self, actor: &Actor) -> ApiResult<PurgeReport> {
        require_role(actor, &[Role::Admin])?;
        let policy = self.policy().retention;
        let now = self.now();
        let holds = self.active_holds().await?;
        let mut report = PurgeReport::default();

        // Envelopes: scan those older than the shortest lifespan, decide each by its kind.
        let shortest = std::iter::once(&policy.default)
            .chain(policy.per_kind.values())
            .filter_map(|r| r.message_lifespan_secs)
            .min();
        if let Some(shortest) = shortest {
            let before = now - secs(shortest);
            let mut after = None;
            loop {
                let page = self
                    .store
                    .envelope_metas(&EnvelopeMetaQuery {
                        sent_before: Some(before),
                        sender_user_id: None,
                        after,
                        limit: PAGE,
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some((last.sent_at, last.message_id));
                let mut doomed: BTreeMap<ConversationId, Vec<(MessageId, u64)>> = BTreeMap::new();
                for m in &page {
                    let rules = policy.rules_for(m.kind);
                    let facts = Facts {
                        hold: holds.covering(m.conversation_id, m.sender_user_id),
                        statutory_until: rules
                            .statutory_retention_secs
                            .map(|s| m.sent_at + secs(s)),
                        erasure_requested: false,
                        expires_at: rules.message_lifespan_secs.map(|s| m.sent_at + secs(s)),
                    };
                    match decide(&facts, now) {
                        Verdict::Delete(_) => doomed
                            .entry(m.conversation_id)
                            .or_default()
                            .push((m.message_id, m.seq)),
                        Verdict::Keep(KeepReason::LegalHold(_)) => report.envelopes_kept_hold += 1,
                        Verdict::Keep(KeepReason::StatutoryRetention(_)) => {
                            report.envelopes_kept_statutory += 1
                        }
                        Verdict::Keep(KeepReason::NotDue) => {}
                    }
                }
                for (conversation, items) in doomed {
                    let (deleted, orders) = self
                        .purge_envelopes(actor, conversation, &items, DeleteRule::Lifespan)
                        .await?;
                    report.envelopes_deleted += deleted;
                    report.deletion_orders += orders;
                }
                if page.len() < PAGE {
                    break;
                }
            }
        }

        // The journal archive: its own retention (`retain_until`, else the policy).
        let (deleted, kept_hold, kept_statutory) = self
            .purge_archive(actor, &policy, &holds, None, DeleteRule::Lifespan)
            .await?;
        report.journal_deleted = deleted;
        report.journal_kept_hold = kept_hold.values().sum();
        report.journal_kept_statutory = kept_statutory.0;
        // An operator's run is always on record; the periodic job's only when it found work,
        // so an idle server does not grow the audit log every interval.
        if actor.via != "system" || report != PurgeReport::default() {
            self.audit
                .record(
                    actor,
                    "retention.run",
                    None,
                    serde_json::to_value(&report).unwrap_or_default(),
                )
                .await?;
        }
        Ok(report)
    }

    /// Honour an erasure request for a user (admin, compliance) under the precedence: their
    /// envelopes and journal entries are deleted unless a hold or statutory retention keeps
    /// them. A held user gets a report with status `refused` and the hold named. Audited
    /// `erasure.request`; the report is stored.
    pub async fn request_erasure(
        &self,
        actor: &Actor,
        req: ErasureRequestBody,
    ) -> ApiResult<ErasureReport> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        let user = self.user_by_username(&req.user).await?;
        let policy = self.policy().retention;
        let now = self.now();
        let holds = self.active_holds().await?;
        let mut kept_hold: BTreeMap<uuid::Uuid, u64> = BTreeMap::new();
        let mut kept_statutory = (0u64, None::<OffsetDateTime>);
        let mut envelopes_erased = 0;

        let mut after = None;
        loop {
            let page = self
                .store
                .envelope_metas(&EnvelopeMetaQuery {
                    sent_before: None,
                    sender_user_id: Some(user),
                    after,
                    limit: PAGE,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.sent_at, last.message_id));
            let mut doomed: BTreeMap<ConversationId, Vec<(MessageId, u64)>> = BTreeMap::new();
            for m in &page {
                let rules = policy.rules_for(m.kind);
                let facts = Facts {
                    hold: holds.covering(m.conversation_id, m.sender_user_id),
                    statutory_until: rules.statutory_retention_secs.map(|s| m.sent_at + secs(s)),
                    erasure_requested: true,
                    expires_at: None,
                };
                match decide(&facts, now) {
                    Verdict::Delete(_) => doomed
                        .entry(m.conversation_id)
                        .or_default()
                        .push((m.message_id, m.seq)),
                    Verdict::Keep(KeepReason::LegalHold(h)) => {
                        *kept_hold.entry(h).or_default() += 1
                    }
                    Verdict::Keep(KeepReason::StatutoryRetention(until)) => {
                        kept_statutory.0 += 1;
                        kept_statutory.1 = kept_statutory.1.max(Some(until));
                    }
                    Verdict::Keep(KeepReason::NotDue) => {}
                }
            }
            for (conversation, items) in doomed {
                envelopes_erased += self
                    .purge_envelopes(actor, conversation, &items, DeleteRule::Erasure)
                    .await?
                    .0;
            }
            if page.len() < PAGE {
                break;
            }
        }
        let (journal_erased, journal_hold, journal_statutory) = self
            .purge_archive(actor, &policy, &holds, Some(user), DeleteRule::Erasure)
            .await?;

        let mut kept = Vec::new();
        let statutory_detail = |until: Option<OffsetDateTime>| {
            until
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| format!("statutory retention until {t} at the latest"))
                .unwrap_or_default()
        };
        for (what, by_hold, statutory) in [
            ("envelopes", &kept_hold, kept_statutory),
            ("journal_entries", &journal_hold, journal_statutory),
        ] {
            for (h, n) in by_hold {
                kept.push(ErasureKept {
                    what: what.to_owned(),
                    count: *n,
                    rule: "legal_hold".to_owned(),
                    detail: format!("legal hold {h}"),
                });
            }
            if statutory.0 > 0 {
                kept.push(ErasureKept {
                    what: what.to_owned(),
                    count: statutory.0,
                    rule: "statutory_retention".to_owned(),
                    detail: statutory_detail(statutory.1),
                });
            }
        }
        if let Some(h) = holds.users.get(&user) {
            kept.push(ErasureKept {
                what: "all".to_owned(),
                count: 0,
                rule: "legal_hold".to_owned(),
                detail: format!(
                    "the user is under legal hold {h}: nothing of theirs is erased while it is in force"
                ),
            });
        }
        kept.push(ErasureKept {
            what: "account".to_owned(),
            count: 1,
            rule: "audit_integrity".to_owned(),
            detail: "the account record (id, username, role) stays: the hash-chained audit log \
                     refers to it; suspend the account to end its access"
                .to_owned(),
        });
        let erased = envelopes_erased + journal_erased;
        let held_or_statutory = kept.iter().any(|k| k.rule != "audit_integrity");
        let status = match (erased, held_or_statutory) {
            (_, false) => "completed",
            (0, true) => "refused",
            _ => "partial",
        };
        let report = ErasureReport {
            id: uuid::Uuid::new_v4(),
            user_id: user,
            status: status.to_owned(),
            requested_at: now,
            envelopes_erased,
            journal_entries_erased: journal_erased,
            kept,
        };
        let json = serde_json::to_string(&report).map_err(|e| ApiError::internal(&e))?;
        self.store
            .add_erasure(&ErasureRecord {
                id: report.id,
                user_id: user,
                requested_by: actor.user_id,
                requested_at: now,
                status: report.status.clone(),
                report: json,
            })
            .await?;
        self.audit
            .record(
                actor,
                "erasure.request",
                Some(report.id.to_string()),
                serde_json::json!({
                    "user_id": user,
                    "status": report.status,
                    "envelopes_erased": report.envelopes_erased,
                    "journal_entries_erased": report.journal_entries_erased,
                    "kept": report.kept,
                }),
            )
            .await?;
        Ok(report)
    }

    /// The signed deletion orders this device has not acknowledged.
    pub async fn deletion_orders(&self, device: DeviceId) -> ApiResult<DeletionOrderList> {
        let orders = self
            .store
            .pending_deletion_orders(device, ORDERS_PER_REQUEST)
            .await?;
        Ok(DeletionOrderList {
            orders: orders.iter().map(|o| self.sign_order(o)).collect(),
        })
    }

    /// A device acknowledges that it applied an order; audited `retention.device_ack`. An
    /// order that is not pending for this device is 404.
    pub async fn ack_deletion_order(&self, actor: &Actor, id: uuid::Uuid) -> ApiResult<()> {
        let device = actor
            .device_id
            .ok_or_else(|| ApiError::invalid("only a device acknowledges deletion orders"))?;
        let pending = self
            .store
            .pending_deletion_orders(device, usize::MAX >> 1)
            .await?;
        let Some(order) = pending.iter().find(|o| o.id == id) else {
            return Err(ApiError::not_found("deletion order"));
        };
        match self.store.ack_deletion_order(id, device, self.now()).await {
            Err(StoreError::NotFound(_)) => return Err(ApiError::not_found("deletion order")),
            other => other?,
        };
        self.audit
            .record(
                actor,
                "retention.device_ack",
                Some(id.to_string()),
                serde_json::json!({
                    "conversation_id": order.conversation_id,
                    "messages": order.message_ids.len(),
                }),
            )
            .await?;
        Ok(())
    }

    /// Delete one conversation's envelopes in batches, each with its deletion order for the
    /// devices and its `retention.purge` audit record. Returns (deleted, orders).
    async fn purge_envelopes(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        items: &[(MessageId, u64)],
        rule: DeleteRule,
    ) -> ApiResult<(u64, u64)> {
        let (mut deleted, mut orders) = (0, 0);
        for chunk in items.chunks(MAX_DELETION_ORDER_IDS) {
            let order = StoredDeletionOrder {
                id: uuid::Uuid::new_v4(),
                conversation_id: conversation,
                message_ids: chunk.iter().map(|(m, _)| *m).collect(),
                max_seq: chunk.iter().map(|(_, s)| *s).max().unwrap_or(0),
                issued_at: self.now(),
            };
            let n = self
                .store
                .delete_envelopes(conversation, &order.message_ids, Some(&order))
                .await?;
            deleted += n;
            if n > 0 {
                orders += 1;
            }
            // Blobs referenced only by these messages go with them (ADR 0017).
            self.release_message_blobs(actor, conversation, &order.message_ids, rule.as_str())
                .await?;
            self.audit
                .record(
                    actor,
                    "retention.purge",
                    Some(conversation.to_string()),
                    serde_json::json!({
                        "what": "envelopes",
                        "rule": rule.as_str(),
                        "deleted": n,
                        "message_ids": order.message_ids,
                        "deletion_order": if n > 0 { Some(order.id) } else { None },
                    }),
                )
                .await?;
        }
        Ok((deleted, orders))
    }

    /// Purge due journal archive entries (all senders, or one for an erasure). Returns
    /// (deleted, kept per hold, (kept by statutory retention, latest end)).
    async fn purge_archive(
        &self,
        actor: &Actor,
        policy: &RetentionPolicy,
        holds: &ActiveHolds,
        erasure_of: Option<UserId>,
        rule: DeleteRule,
    ) -> ApiResult<(
        u64,
        BTreeMap<uuid::Uuid, u64>,
        (u64, Option<OffsetDateTime>),
    )> {
        let now = self.now();
        let cutoff = policy.journal_retention_secs.map(|s| now - secs(s));
        let mut kinds: HashMap<ConversationId, Option<ConversationKind>> = HashMap::new();
        let mut kept_hold: BTreeMap<uuid::Uuid, u64> = BTreeMap::new();
        let mut kept_statutory = (0u64, None::<OffsetDateTime>);
        let mut deleted = 0;
        let mut after = 0;
        loop {
            let page = self
                .store
                .archive_metas(&ArchiveMetaQuery {
                    due: erasure_of.is_none().then_some((now, cutoff)),
                    sender_user_id: erasure_of,
                    after,
                    limit: PAGE,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = last.archive_seq;
            let mut doomed = Vec::new();
            let mut doomed_ids = Vec::new();
            let mut by_conversation: BTreeMap<ConversationId, Vec<MessageId>> = BTreeMap::new();
            for e in &page {
                let kind = match kinds.get(&e.conversation_id) {
                    Some(k) => *k,
                    None => {
                        let k = self
                            .store
                            .conversation(e.conversation_id)
                            .await?
                            .map(|c| c.kind);
                        kinds.insert(e.conversation_id, k);
                        k
                    }
                };
                let rules = match kind {
                    Some(k) => policy.rules_for(k),
                    None => policy.default.clone(),
                };
                let facts = Facts {
                    hold: holds.covering(e.conversation_id, e.sender_user_id),
                    statutory_until: rules.statutory_retention_secs.map(|s| e.sent_at + secs(s)),
                    erasure_requested: erasure_of.is_some(),
                    expires_at: e
                        .retain_until
                        .or_else(|| policy.journal_retention_secs.map(|s| e.sent_at + secs(s))),
                };
                match decide(&facts, now) {
                    Verdict::Delete(_) => {
                        doomed.push(e.archive_seq);
                        doomed_ids.push(e.message_id);
                        by_conversation
                            .entry(e.conversation_id)
                            .or_default()
                            .push(e.message_id);
                    }
                    Verdict::Keep(KeepReason::LegalHold(h)) => {
                        *kept_hold.entry(h).or_default() += 1
                    }
                    Verdict::Keep(KeepReason::StatutoryRetention(until)) => {
                        kept_statutory.0 += 1;
                        kept_statutory.1 = kept_statutory.1.max(Some(until));
                    }
                    Verdict::Keep(KeepReason::NotDue) => {}
                }
            }
            if !doomed.is_empty() {
                let n = self.store.delete_archive_entries(&doomed).await?;
                deleted += n;
                // Blobs kept for the journal copy go with it once the envelope is gone too.
                let reason = match rule {
                    DeleteRule::Lifespan => "journal_retention",
                    DeleteRule::Erasure => DeleteRule::Erasure.as_str(),
                };
                for (conversation, ids) in by_conversation {
                    self.release_message_blobs(actor, conversation, &ids, reason)
                        .await?;
                }
                self.audit
                    .record(
                        actor,
                        "retention.purge",
                        None,
                        serde_json::json!({
                            "what": "journal_entries",
                            "rule": match rule {
                                DeleteRule::Lifespan => "journal_retention",
                                DeleteRule::Erasure => DeleteRule::Erasure.as_str(),
                            },
                            "deleted": n,
                            "message_ids": doomed_ids,
                        }),
                    )
                    .await?;
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok((deleted, kept_hold, kept_statutory))
    }

    async fn active_holds(&self) -> ApiResult<ActiveHolds> {
        let mut active = ActiveHolds::default();
        for h in self.store.holds().await? {
            if h.released_at.is_some() {
                continue;
            }
            match h.target {
                HoldTarget::Conversation(c) => {
                    active.conversations.entry(c).or_insert(h.id);
                }
                HoldTarget::User(u) => {
                    active.users.entry(u).or_insert(h.id);
                    for c in self.store.conversations_of_user(u).await? {
                        active.conversations.entry(c).or_insert(h.id);
                    }
                }
            }
        }
        Ok(active)
    }

    async fn user_by_username(&self, name: &str) -> ApiResult<UserId> {
        let username: Username = name
            .parse()
            .map_err(|e| ApiError::invalid(format!("user: {e}")))?;
        Ok(self.user_by_name_or_404(&username).await?.id)
    }

    fn sign_order(&self, o: &StoredDeletionOrder) -> DeletionOrder {
        let issued_at = o.issued_at.unix_timestamp();
        let signature = self
            .keys
            .org_ca
            .sign(&DeletionOrder::signed_bytes(
                o.id,
                o.conversation_id,
                &o.message_ids,
                issued_at,
            ))
            .to_bytes()
            .to_vec();
        DeletionOrder {
            order_id: o.id,
            conversation_id: o.conversation_id,
            message_ids: o.message_ids.clone(),
            issued_at,
            signature: signature.into(),
        }
    }
}

/// Whether a purge is due: the periodic job calls this every tick with the last run time.
pub fn purge_due(
    policy: &RetentionPolicy,
    last: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    last.is_none_or(|l| now - l >= secs(policy.purge_interval_secs))
}

fn secs(s: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

fn kind_name(kind: ConversationKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `"none"` clears a rule; anything else must be a valid duration.
fn duration_field(name: &str, v: &str) -> ApiResult<Option<u64>> {
    if v.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    RetentionDuration::parse(v)
        .map(|d| Some(d.secs()))
        .map_err(|e| ApiError::invalid(format!("{name}: {e}")))
}

fn show(secs: Option<u64>) -> Option<String> {
    secs.and_then(RetentionDuration::from_secs)
        .map(|d| d.to_string())
}

fn rules_info(r: &RetentionRules) -> RetentionRulesInfo {
    RetentionRulesInfo {
        message_lifespan: show(r.message_lifespan_secs),
        statutory_retention: show(r.statutory_retention_secs),
    }
}

fn retention_info(r: &RetentionPolicy) -> RetentionPolicyInfo {
    RetentionPolicyInfo {
        default: rules_info(&r.default),
        per_kind: r
            .per_kind
            .iter()
            .map(|(k, v)| (k.clone(), rules_info(v)))
            .collect(),
        journal_retention: show(r.journal_retention_secs),
        purge_interval_secs: r.purge_interval_secs,
    }
}

fn hold_info(h: &LegalHold) -> HoldInfo {
    HoldInfo {
        id: h.id,
        target: h.target,
        reason: h.reason.clone(),
        case_ref: h.case_ref.clone(),
        created_by: h.created_by,
        created_at: h.created_at,
        released_by: h.released_by,
        released_at: h.released_at,
    }
}
