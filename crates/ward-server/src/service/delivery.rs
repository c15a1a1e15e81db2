//! Conversations and the MLS delivery service duties (RFC 9750): ordering, one commit per
//! epoch, Welcomes only with their winning commit, durable before acknowledged, receipts.

use sha2::{Digest, Sha256};
use ward_proto::{
    AckRequest, CommitLogEntry, ConversationId, ConversationInfo, ConversationKind,
    CreateConversationRequest, EnvelopeKind, ErrorCode, MAX_CONVERSATION_MEMBERS,
    MAX_MLS_MESSAGE_BYTES, MemberInfo, MessageId, MessageStatus, ReadReceiptRequest, Role,
    SendEnvelopeRequest, SendEnvelopeResponse, ServerEvent, SyncResponse, UserStatus,
};
use ward_store::{
    AppendOutcome, AppendRequest, CommitChanges, Conversation, NewConversation, ReceiptKind,
};

use super::{AuthSession, Services};
use crate::error::{ApiError, ApiResult};
use crate::metrics::KindLabels;

/// Default and largest number of items one sync returns.
pub const SYNC_LIMIT_DEFAULT: usize = 500;
/// See [`SYNC_LIMIT_DEFAULT`].
pub const SYNC_LIMIT_MAX: usize = 2000;

fn direct_key(a: ward_proto::UserId, b: ward_proto::UserId) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{x}:{y}")
}

impl Services {
    /// Register a conversation whose MLS group the caller's device just created.
    pub async fn create_conversation(
        &self,
        s: &AuthSession,
        req: CreateConversationRequest,
    ) -> ApiResult<ConversationInfo> {
        if s.user.role == Role::Patient {
            return Err(ApiError::forbidden(
                "patients cannot start conversations; their care team adds them",
            ));
        }
        if !self.policy().ciphersuites.contains(&req.ciphersuite) {
            return Err(ApiError::invalid(format!(
                "ciphersuite 0x{:04X} is not allowed by the organisation policy",
                req.ciphersuite
            )));
        }
        let direct = match (req.kind, &req.peer) {
            (ConversationKind::Direct, Some(peer)) => {
                let p = self.user_by_name_or_404(peer).await?;
                if p.id == s.user.id {
                    return Err(ApiError::invalid(
                        "a direct conversation needs another user as peer",
                    ));
                }
                if p.status != UserStatus::Active {
                    return Err(ApiError::invalid(format!("user {peer} is not active")));
                }
                let key = direct_key(s.user.id, p.id);
                if let Some(existing) = self.store.direct_conversation(&key).await? {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!(
                            "a direct conversation with {peer} already exists: {}",
                            existing.id
                        ),
                    ));
                }
                Some((key, p))
            }
            (ConversationKind::Direct, None) => {
                return Err(ApiError::invalid("a direct conversation needs a peer"));
            }
            (ConversationKind::Group, Some(_)) => {
                return Err(ApiError::invalid("peer is only for direct conversations"));
            }
            (ConversationKind::Group, None) => None,
        };
        let c = Conversation {
            id: ConversationId::random(),
            kind: req.kind,
            ciphersuite: req.ciphersuite,
            epoch: 0,
            last_seq: 0,
            created_by: s.user.id,
            direct_key: direct.as_ref().map(|d| d.0.clone()),
            created_at: self.now(),
        };
        self.store
            .create_conversation(&NewConversation {
                conversation: c.clone(),
                creator_device: s.device_id,
            })
            .await
            .map_err(|e| match e {
                ward_store::StoreError::Conflict(_) => ApiError::new(
                    ErrorCode::Conflict,
                    "a direct conversation with this user already exists",
                ),
                other => other.into(),
            })?;
        self.audit
            .record(
                &s.actor(),
                "conversation.create",
                Some(c.id.to_string()),
                serde_json::json!({"kind": c.kind, "ciphersuite": c.ciphersuite}),
            )
            .await?;
        self.conversation_info(&c).await
    }

    async fn conversation_info(&self, c: &Conversation) -> ApiResult<ConversationInfo> {
        let members = self.store.members(c.id).await?;
        let devices = self.store.member_devices(c.id).await?;
        Ok(ConversationInfo {
            conversation_id: c.id,
            kind: c.kind,
            ciphersuite: c.ciphersuite,
            epoch: c.epoch,
            last_seq: c.last_seq,
            members: members
                .into_iter()
                .map(|m| MemberInfo {
                    user_id: m.user_id,
                    username: m.username,
                })
                .collect(),
            devices: devices.into_iter().map(|d| d.device_id).collect(),
            created_at: c.created_at,
        })
    }

    /// The conversation, if the caller's user is a member (404 otherwise: ids of
    /// conversations one is not in are not confirmed).
    pub(super) async fn member_conversation(
        &self,
        s: &AuthSession,
        id: ConversationId,
    ) -> ApiResult<Conversation> {
        let c = self
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| ApiError::not_found("conversation"))?;
        let members = self.store.members(id).await?;
        if !members.iter().any(|m| m.user_id == s.user.id) {
            return Err(ApiError::not_found("conversation"));
        }
        Ok(c)
    }

    /// Conversations the caller's device is in.
    pub async fn list_conversations(&self, s: &AuthSession) -> ApiResult<Vec<ConversationInfo>> {
        let mut out = Vec::new();
        for c in self.store.conversations_of_device(s.device_id).await? {
            out.push(self.conversation_info(&c).await?);
        }
        Ok(out)
    }

    /// One conversation.
    pub async fn get_conversation(
        &self,
        s: &AuthSession,
        id: ConversationId,
    ) -> ApiResult<ConversationInfo> {
        let c = self.member_conversation(s, id).await?;
        self.conversation_info(&c).await
    }

    /// Accept an envelope: validate, append durably, then push to connected devices.
    pub async fn send_envelope(
        &self,
        s: &AuthSession,
        id: ConversationId,
        req: SendEnvelopeRequest,
    ) -> ApiResult<SendEnvelopeResponse> {
        if req.payload.is_empty() || req.payload.len() > MAX_MLS_MESSAGE_BYTES {
            return Err(ApiError::invalid(format!(
                "payload must be 1 to {MAX_MLS_MESSAGE_BYTES} bytes"
            )));
        }
        let has_changes = req.welcome.is_some()
            || !req.add_users.is_empty()
            || !req.remove_users.is_empty()
            || !req.remove_devices.is_empty();
        if req.kind != EnvelopeKind::Commit && has_changes {
            return Err(ApiError::invalid(
                "welcome, add_users, remove_users and remove_devices are only allowed with a commit",
            ));
        }
        if req.add_users.len() + req.remove_users.len() + req.remove_devices.len()
            > MAX_CONVERSATION_MEMBERS
        {
            return Err(ApiError::invalid(format!(
                "at most {MAX_CONVERSATION_MEMBERS} membership changes per commit"
            )));
        }
        if let Some(w) = &req.welcome
            && (w.devices.is_empty()
                || w.payload.is_empty()
                || w.payload.len() > MAX_MLS_MESSAGE_BYTES)
        {
            return Err(ApiError::invalid(
                "a welcome needs a non-empty payload and at least one device",
            ));
        }
        if !req.labels.is_empty() && req.kind != EnvelopeKind::Application {
            return Err(ApiError::invalid(
                "labels are only for application messages",
            ));
        }
        if req.labels.len() > 16
            || req.labels.iter().any(|l| {
                l.is_empty()
                    || l.len() > 32
                    || !l
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
        {
            return Err(ApiError::invalid(
                "labels: at most 16, each 1 to 32 characters a-z, 0-9 or _",
            ));
        }
        self.check_journal_copy(req.kind, req.journal.as_ref())
            .await?;
        if let Some(to) = &req.to_role {
            self.check_role_address(s, req.kind, to).await?;
        }
        self.check_message_blobs(id, req.kind, &req.blobs).await?;
        if let Some(grant) = req.break_glass_grant {
            if req.kind != EnvelopeKind::Commit {
                return Err(ApiError::invalid(
                    "break_glass_grant is only allowed with a commit",
                ));
            }
            self.check_break_glass_commit(grant, id, &req.add_users)
                .await?;
        }
        // The hot path reads one conversation row; the store's append checks the device's
        // membership in its transaction. The member list is loaded only where a policy check
        // below needs it, or to tell a non-member (404) from an unwelcomed device (403).
        let conv = self
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| ApiError::not_found("conversation"))?;
        let policy_checked = s.user.role == Role::Patient
            || (conv.kind == ConversationKind::Direct && !req.add_users.is_empty());
        if policy_checked {
            self.member_conversation(s, id).await?;
        }
        if s.user.role == Role::Patient {
            if !req.add_users.is_empty() {
                return Err(ApiError::forbidden(
                    "patients cannot add members to conversations",
                ));
            }
            if req.remove_users.iter().any(|u| *u != s.user.id) {
                return Err(ApiError::forbidden(
                    "patients can only remove themselves from a conversation",
                ));
            }
            if !req.remove_devices.is_empty() {
                let own: Vec<_> = self
                    .store
                    .devices_of_user(s.user.id)
                    .await?
                    .into_iter()
                    .map(|d| d.id)
                    .collect();
                if req.remove_devices.iter().any(|d| !own.contains(d)) {
                    return Err(ApiError::forbidden(
                        "patients can only remove their own devices",
                    ));
                }
            }
        }
        if conv.kind == ConversationKind::Direct {
            let key = conv.direct_key.clone().unwrap_or_default();
            if req.add_users.iter().any(|u| !key.contains(&u.to_string())) {
                return Err(ApiError::forbidden(
                    "a direct conversation cannot gain a third member; create a group",
                ));
            }
        }
        let commit = (req.kind == EnvelopeKind::Commit).then(|| CommitChanges {
            commit_hash: Sha256::digest(req.payload.as_slice()).into(),
            add_users: req.add_users.clone(),
            remove_users: req.remove_users.clone(),
            remove_devices: req.remove_devices.clone(),
            welcome: req
                .welcome
                .as_ref()
                .map(|w| (w.payload.0.clone(), w.devices.clone())),
        });
        let size = req.payload.len();
        let mut details = serde_json::json!({
            "conversation_id": id, "kind": req.kind, "size": size, "epoch": req.epoch,
        });
        if !req.labels.is_empty() {
            details["phi_labels"] = serde_json::json!(req.labels);
        }
        if let Some(j) = &req.journal {
            details["journal_key_id"] = serde_json::json!(j.key_id);
        }
        if !req.blobs.is_empty() {
            details["blobs"] = serde_json::json!(req.blobs);
        }
        if req.kind == EnvelopeKind::Commit {
            details["added_users"] = serde_json::json!(req.add_users);
            details["removed_users"] = serde_json::json!(req.remove_users);
            details["removed_devices"] = serde_json::json!(req.remove_devices);
            details["welcomed_devices"] = serde_json::json!(
                req.welcome
                    .as_ref()
                    .map(|w| w.devices.clone())
                    .unwrap_or_default()
            );
        }
        // The store writes the audit record in the send's own transaction (target and seq
        // filled in), so an acknowledged message always has its record.
        let audit = self.audit.event(&s.actor(), "message.send", None, details);
        let outcome = self
            .store
            .append(&AppendRequest {
                conversation_id: id,
                message_id: MessageId::random(),
                sender_user_id: s.user.id,
                sender_device_id: s.device_id,
                client_message_id: req.client_message_id,
                kind: req.kind,
                epoch: req.epoch,
                payload: req.payload.0,
                sent_at: self.now(),
                commit,
                audit: Some(audit),
                journal: req.journal.clone(),
            })
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(ward_store::AppendError::NotMember) => {
                // 404 for a user who is not a member at all; 403 for a member's device that
                // was never welcomed into the MLS group.
                self.member_conversation(s, id).await?;
                return Err(ward_store::AppendError::NotMember.into());
            }
            Err(e) => return Err(e.into()),
        };
        match outcome {
            AppendOutcome::Duplicate {
                message_id,
                seq,
                epoch,
            } => {
                // A retry after a failure between append and references completes them.
                self.reference_blobs(id, message_id, &req.blobs).await?;
                // A retried send to a role: make sure its escalation exists (the first
                // attempt may have been cut off between the append and the escalation).
                let to_role = match &req.to_role {
                    Some(to) => Some(self.start_escalation(s, id, message_id, seq, to).await?),
                    None => None,
                };
                Ok(SendEnvelopeResponse {
                    message_id,
                    seq,
                    epoch,
                    duplicate: true,
                    to_role,
                })
            }
            AppendOutcome::Accepted {
                envelope,
                epoch,
                inbox,
                recipients,
                audit_seq,
            } => {
                self.metrics
                    .envelopes_accepted
                    .get_or_create(&KindLabels {
                        kind: format!("{:?}", req.kind).to_lowercase(),
                    })
                    .inc();
                self.metrics.envelope_bytes.inc_by(size as u64);
                let (message_id, seq) = (envelope.message_id, envelope.seq);
                let mut resp = SendEnvelopeResponse {
                    message_id,
                    seq,
                    epoch,
                    duplicate: false,
                    to_role: None,
                };
                let message_id = envelope.message_id;
                if !self.publish_on_commit {
                    self.publish_accepted(AppendOutcome::Accepted {
                        envelope,
                        epoch,
                        inbox,
                        recipients,
                        audit_seq,
                    });
                }
                if let Some(seq) = audit_seq {
                    self.audit.appended(seq).await;
                }
                if let Some(grant) = req.break_glass_grant {
                    self.break_glass_committed(s, grant).await;
                }
                if let Some(to) = &req.to_role {
                    resp.to_role = Some(self.start_escalation(s, id, message_id, seq, to).await?);
                }
                self.reference_blobs(id, message_id, &req.blobs).await?;
                Ok(resp)
            }
        }
    }

    /// Push an accepted append to its recipients (this node's hub, and through it the other
    /// nodes). Called by the publisher task in commit order, so the envelopes of one
    /// conversation are queued for every connection in seq order (ADR 0020).
    pub(crate) fn publish_accepted(&self, outcome: AppendOutcome) {
        if let AppendOutcome::Accepted {
            envelope,
            inbox,
            recipients,
            ..
        } = outcome
        {
            self.hub
                .publish(&recipients, &ServerEvent::Envelope(envelope));
            for (device, item) in inbox {
                self.hub.publish(&[device], &ServerEvent::Inbox(item));
            }
        }
    }

    /// Everything not yet acknowledged by the caller's device.
    pub async fn sync(&self, s: &AuthSession, limit: Option<usize>) -> ApiResult<SyncResponse> {
        let limit = limit.unwrap_or(SYNC_LIMIT_DEFAULT);
        if limit == 0 || limit > SYNC_LIMIT_MAX {
            return Err(ApiError::invalid(format!(
                "limit must be 1 to {SYNC_LIMIT_MAX}"
            )));
        }
        let batch = self.store.sync(s.device_id, limit).await?;
        if !batch.envelopes.is_empty() || !batch.inbox.is_empty() {
            // Per conversation: [first seq, last seq, count]. With the conversation that names
            // every message fetched (the device's own are never in a batch) at a fraction of
            // the size of listing message ids, which made a 2,000-item sync a 75 KB record.
            let mut ranges: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
            for e in &batch.envelopes {
                let r = ranges
                    .entry(e.conversation_id.to_string())
                    .or_insert([e.seq, e.seq, 0]);
                r[0] = r[0].min(e.seq);
                r[1] = r[1].max(e.seq);
                r[2] += 1;
            }
            self.audit
                .record(&s.actor(), "message.fetch", Some(s.device_id.to_string()), serde_json::json!({
                    "envelopes": batch.envelopes.len(), "inbox": batch.inbox.len(), "ranges": ranges,
                }))
                .await?;
        }
        Ok(SyncResponse {
            inbox: batch.inbox,
            envelopes: batch.envelopes,
            more: batch.more,
            key_packages: self.key_package_stock(s.device_id).await?,
        })
    }

    /// Delivery acknowledgement (also the delivery receipt).
    pub async fn ack(&self, s: &AuthSession, req: AckRequest) -> ApiResult<()> {
        if req.conversations.len() > 10_000 {
            return Err(ApiError::invalid("too many cursors in one acknowledgement"));
        }
        self.store
            .record_receipts(
                s.device_id,
                ReceiptKind::Delivered,
                &req.conversations,
                req.inbox_seq,
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// Read receipts.
    pub async fn read(&self, s: &AuthSession, req: ReadReceiptRequest) -> ApiResult<()> {
        if req.conversations.is_empty() || req.conversations.len() > 10_000 {
            return Err(ApiError::invalid("give 1 to 10000 conversation cursors"));
        }
        self.store
            .record_receipts(
                s.device_id,
                ReceiptKind::Read,
                &req.conversations,
                None,
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// Per-device receipts of one message.
    pub async fn message_status(
        &self,
        s: &AuthSession,
        id: ConversationId,
        seq: u64,
    ) -> ApiResult<MessageStatus> {
        self.member_conversation(s, id).await?;
        let env = self
            .store
            .envelope(id, seq)
            .await?
            .ok_or_else(|| ApiError::not_found("message"))?;
        let recipients = self.store.receipts(id, seq).await?;
        Ok(MessageStatus {
            conversation_id: id,
            seq,
            message_id: env.message_id,
            recipients,
        })
    }

    /// The commit log, so clients can detect forks.
    pub async fn commit_log(
        &self,
        s: &AuthSession,
        id: ConversationId,
    ) -> ApiResult<Vec<CommitLogEntry>> {
        self.member_conversation(s, id).await?;
        Ok(self.store.commit_log(id).await?)
    }
}
