//! Conversations, the append path, sync, receipts and the commit log.

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;
use ward_proto::{
    CommitLogEntry, ConversationCursor, ConversationId, DeviceId, DeviceReceipt, Envelope,
    EnvelopeKind, InboxItem, InboxKind, MessageId, UserId, Username,
};
use ward_store::{
    AppendError, AppendListener, AppendOutcome, AppendRequest, CommitChanges, Conversation,
    ConversationStore, Member, MemberDevice, NewConversation, ReceiptKind, StoreError, StoreResult,
    SyncBatch,
};

use crate::PgStore;
use crate::util::{
    DbResultExt, col, conversation_kind_of, conversation_kind_str, envelope_kind_of,
    envelope_kind_str, i64_of, inbox_kind_of, inbox_kind_str, is_unique_on, receipt_kind_str,
    u64_of, write_err,
};

const CONVERSATION_COLS: &str =
    "c.id, c.kind, c.ciphersuite, c.epoch, c.last_seq, c.created_by, c.direct_key, c.created_at";

fn conversation_of(row: &PgRow) -> StoreResult<Conversation> {
    let kind: String = col(row, "kind")?;
    let suite: i32 = col(row, "ciphersuite")?;
    Ok(Conversation {
        id: ConversationId(col(row, "id")?),
        kind: conversation_kind_of(&kind)?,
        ciphersuite: u16::try_from(suite)
            .map_err(|_| StoreError::Corrupt(format!("ciphersuite {suite}")))?,
        epoch: u64_of(col(row, "epoch")?)?,
        last_seq: u64_of(col(row, "last_seq")?)?,
        created_by: UserId(col(row, "created_by")?),
        direct_key: col(row, "direct_key")?,
        created_at: col(row, "created_at")?,
    })
}

/// Envelope columns with the journal copy; every envelope read LEFT JOINs the archive as `j`
/// (`ENVELOPE_JOURNAL_JOIN`), so a delivered envelope carries its copy.
const ENVELOPE_COLS: &str = "e.conversation_id, e.seq, e.message_id, e.kind, e.epoch, \
     e.sender_user_id, e.sender_device_id, e.client_message_id, e.sent_at, e.payload, \
     j.key_id AS journal_key_id, j.ciphertext AS journal_ciphertext";
const ENVELOPE_JOURNAL_JOIN: &str = "LEFT JOIN journal j ON j.message_id = e.message_id";

fn envelope_of(row: &PgRow) -> StoreResult<Envelope> {
    let kind: String = col(row, "kind")?;
    let payload: Vec<u8> = col(row, "payload")?;
    Ok(Envelope {
        conversation_id: ConversationId(col(row, "conversation_id")?),
        seq: u64_of(col(row, "seq")?)?,
        message_id: MessageId(col(row, "message_id")?),
        kind: envelope_kind_of(&kind)?,
        epoch: u64_of(col(row, "epoch")?)?,
        sender_user_id: UserId(col(row, "sender_user_id")?),
        sender_device_id: DeviceId(col(row, "sender_device_id")?),
        client_message_id: col(row, "client_message_id")?,
        sent_at: col(row, "sent_at")?,
        payload: payload.into(),
        journal: match (
            col::<Option<String>>(row, "journal_key_id")?,
            col::<Option<Vec<u8>>>(row, "journal_ciphertext")?,
        ) {
            (Some(key_id), Some(ciphertext)) => Some(ward_proto::JournalCopy {
                key_id,
                ciphertext: ciphertext.into(),
            }),
            _ => None,
        },
    })
}

fn inbox_item_of(row: &PgRow) -> StoreResult<InboxItem> {
    let kind: String = col(row, "kind")?;
    let payload: Vec<u8> = col(row, "payload")?;
    Ok(InboxItem {
        inbox_seq: u64_of(col(row, "inbox_seq")?)?,
        kind: inbox_kind_of(&kind)?,
        conversation_id: ConversationId(col(row, "conversation_id")?),
        commit_seq: u64_of(col(row, "commit_seq")?)?,
        payload: payload.into(),
        created_at: col(row, "created_at")?,
    })
}

/// Add an item to a device's inbox. The caller holds the device row lock, which serialises
/// the per-device counter.
pub(crate) async fn push_inbox(
    conn: &mut PgConnection,
    device: Uuid,
    kind: InboxKind,
    conversation: Uuid,
    commit_seq: i64,
    payload: &[u8],
    at: OffsetDateTime,
) -> StoreResult<InboxItem> {
    let inbox_seq: i64 = sqlx::query_scalar(
        "UPDATE devices SET inbox_last_seq = inbox_last_seq + 1 WHERE id = $1 \
         RETURNING inbox_last_seq",
    )
    .bind(device)
    .fetch_one(&mut *conn)
    .await
    .be()?;
    sqlx::query(
        "INSERT INTO device_inbox (device_id, inbox_seq, kind, conversation_id, commit_seq, \
         payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(device)
    .bind(inbox_seq)
    .bind(inbox_kind_str(kind))
    .bind(conversation)
    .bind(commit_seq)
    .bind(payload)
    .bind(at)
    .execute(&mut *conn)
    .await
    .be()?;
    Ok(InboxItem {
        inbox_seq: u64_of(inbox_seq)?,
        kind,
        conversation_id: ConversationId(conversation),
        commit_seq: u64_of(commit_seq)?,
        payload: payload.to_vec().into(),
        created_at: at,
    })
}

/// Apply a commit's membership changes at `seq` inside the append transaction (which holds
/// the conversation row lock). Returns the inbox items created.
async fn apply_commit(
    conn: &mut PgConnection,
    req: &AppendRequest,
    changes: &CommitChanges,
    seq: i64,
) -> Result<Vec<(DeviceId, InboxItem)>, AppendError> {
    let conv = req.conversation_id.0;
    let add: Vec<Uuid> = dedup(changes.add_users.iter().map(|u| u.0));
    let remove_users: Vec<Uuid> = dedup(changes.remove_users.iter().map(|u| u.0));
    let remove_devices: Vec<Uuid> = dedup(changes.remove_devices.iter().map(|d| d.0));
    let welcome_devices: Vec<Uuid> = changes
        .welcome
        .as_ref()
        .map(|(_, ds)| dedup(ds.iter().map(|d| d.0)))
        .unwrap_or_default();

    // Users named must exist; users joining must be active.
    let named: Vec<Uuid> = add.iter().chain(&remove_users).copied().collect();
    if !named.is_empty() {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, status FROM users WHERE id = ANY($1)")
                .bind(&named)
                .fetch_all(&mut *conn)
                .await
                .be()?;
        let status: HashMap<Uuid, String> = rows.into_iter().collect();
        let add_ok = add
            .iter()
            .all(|u| status.get(u).is_some_and(|s| s == "active"));
        let remove_ok = remove_users.iter().all(|u| status.contains_key(u));
        if !add_ok || !remove_ok {
            return Err(AppendError::InvalidMember);
        }
    }

    // Devices about to get inbox items: those routed now that the commit removes, and the
    // Welcome's devices. Lock them in id order (deadlock-free against other appends and
    // against revoke_device, which locks the device row first too).
    let routed_removed: Vec<Uuid> = if remove_users.is_empty() && remove_devices.is_empty() {
        Vec::new()
    } else {
        sqlx::query_scalar(
            "SELECT device_id FROM conversation_devices WHERE conversation_id = $1 \
             AND until_seq IS NULL AND (user_id = ANY($2) OR device_id = ANY($3))",
        )
        .bind(conv)
        .bind(&remove_users)
        .bind(&remove_devices)
        .fetch_all(&mut *conn)
        .await
        .be()?
    };
    let to_lock: BTreeSet<Uuid> = routed_removed
        .iter()
        .chain(&welcome_devices)
        .copied()
        .collect();
    let mut locked: HashMap<Uuid, (Uuid, String)> = HashMap::new();
    if !to_lock.is_empty() {
        let ids: Vec<Uuid> = to_lock.into_iter().collect();
        let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT id, user_id, status FROM devices WHERE id = ANY($1) ORDER BY id \
             FOR NO KEY UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .be()?;
        locked = rows
            .into_iter()
            .map(|(id, user, status)| (id, (user, status)))
            .collect();
    }

    let mut inbox = Vec::new();

    // Removals. The removed devices still receive this commit (until_seq = seq).
    if !remove_users.is_empty() {
        sqlx::query(
            "UPDATE conversation_members SET removed_seq = $2 WHERE conversation_id = $1 \
             AND user_id = ANY($3) AND removed_seq IS NULL",
        )
        .bind(conv)
        .bind(seq)
        .bind(&remove_users)
        .execute(&mut *conn)
        .await
        .be()?;
    }
    if !remove_users.is_empty() || !remove_devices.is_empty() {
        let mut closed: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE conversation_devices SET until_seq = $2 WHERE conversation_id = $1 \
             AND until_seq IS NULL AND (user_id = ANY($3) OR device_id = ANY($4)) \
             RETURNING device_id",
        )
        .bind(conv)
        .bind(seq)
        .bind(&remove_users)
        .bind(&remove_devices)
        .fetch_all(&mut *conn)
        .await
        .be()?;
        closed.sort();
        for device in closed {
            let item = push_inbox(
                conn,
                device,
                InboxKind::Removed,
                conv,
                seq,
                &[],
                req.sent_at,
            )
            .await?;
            inbox.push((DeviceId(device), item));
        }
    }

    // Additions (re-adding a removed user reopens its row).
    if !add.is_empty() {
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, added_seq, removed_seq) \
             SELECT $1, u, $2, NULL FROM UNNEST($3::uuid[]) AS u \
             ON CONFLICT (conversation_id, user_id) DO UPDATE \
             SET added_seq = EXCLUDED.added_seq, removed_seq = NULL \
             WHERE conversation_members.removed_seq IS NOT NULL",
        )
        .bind(conv)
        .bind(seq)
        .bind(&add)
        .execute(&mut *conn)
        .await
        .be()?;
    }

    // Welcome: every device must be an active device of a member after the commit.
    if let Some((payload, _)) = &changes.welcome {
        let members: HashSet<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM conversation_members WHERE conversation_id = $1 \
             AND removed_seq IS NULL",
        )
        .bind(conv)
        .fetch_all(&mut *conn)
        .await
        .be()?
        .into_iter()
        .collect();
        for device in &welcome_devices {
            let owner = match locked.get(device) {
                Some((user, status)) if status == "active" && members.contains(user) => *user,
                _ => return Err(AppendError::InvalidWelcomeDevice(DeviceId(*device))),
            };
            sqlx::query(
                "INSERT INTO conversation_devices (conversation_id, device_id, user_id, from_seq, \
                 until_seq, delivered_seq, read_seq) VALUES ($1, $2, $3, $4, NULL, $4, $4) \
                 ON CONFLICT (conversation_id, device_id) DO UPDATE SET user_id = $3, \
                 from_seq = $4, until_seq = NULL, delivered_seq = $4, read_seq = $4",
            )
            .bind(conv)
            .bind(device)
            .bind(owner)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .be()?;
            let item = push_inbox(
                conn,
                *device,
                InboxKind::Welcome,
                conv,
                seq,
                payload,
                req.sent_at,
            )
            .await?;
            inbox.push((DeviceId(*device), item));
        }
    }

    sqlx::query(
        "INSERT INTO commit_log (conversation_id, epoch, seq, commit_hash) VALUES ($1, $2, $3, $4)",
    )
    .bind(conv)
    .bind(i64_of(req.epoch))
    .bind(seq)
    .bind(hex::encode(changes.commit_hash))
    .execute(&mut *conn)
    .await
    .be()?;
    Ok(inbox)
}

/// Distinct values, first occurrence order kept.
fn dedup(it: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    it.filter(|u| seen.insert(*u)).collect()
}

async fn append_in(
    tx: &mut PgConnection,
    req: &AppendRequest,
) -> Result<AppendOutcome, AppendError> {
    let conv = req.conversation_id.0;
    // The conversation row lock serialises appends to this conversation across nodes.
    // NO KEY UPDATE (not plain UPDATE): it still excludes every other append, but not the
    // KEY SHARE locks that foreign-key checks take when other transactions insert rows
    // referencing the conversation (receipts, routing) — those would otherwise deadlock
    // against us while holding routing-row locks we need.
    let head: Option<(i64, i64)> =
        sqlx::query_as("SELECT epoch, last_seq FROM conversations WHERE id = $1 FOR NO KEY UPDATE")
            .bind(conv)
            .fetch_optional(&mut *tx)
            .await
            .be()?;
    let Some((epoch, last_seq)) = head else {
        return Err(AppendError::NotFound);
    };
    let current_epoch = u64_of(epoch)?;

    // Idempotency: a retry gets the first answer, whatever happened since.
    let earlier: Option<(Uuid, i64)> = sqlx::query_as(
        "SELECT message_id, seq FROM envelopes WHERE conversation_id = $1 \
         AND sender_device_id = $2 AND client_message_id = $3",
    )
    .bind(conv)
    .bind(req.sender_device_id.0)
    .bind(req.client_message_id)
    .fetch_optional(&mut *tx)
    .await
    .be()?;
    if let Some((message_id, seq)) = earlier {
        return Ok(AppendOutcome::Duplicate {
            message_id: MessageId(message_id),
            seq: u64_of(seq)?,
            epoch: current_epoch,
        });
    }

    let member: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM conversation_members m \
         JOIN conversation_devices d ON d.conversation_id = m.conversation_id \
         AND d.user_id = m.user_id \
         WHERE m.conversation_id = $1 AND m.user_id = $2 AND m.removed_seq IS NULL \
         AND d.device_id = $3 AND d.until_seq IS NULL)",
    )
    .bind(conv)
    .bind(req.sender_user_id.0)
    .bind(req.sender_device_id.0)
    .fetch_one(&mut *tx)
    .await
    .be()?;
    if !member {
        return Err(AppendError::NotMember);
    }
    if req.epoch != current_epoch {
        return Err(AppendError::EpochConflict { current_epoch });
    }

    let seq = last_seq + 1;
    let mut new_epoch = epoch;
    let mut inbox = Vec::new();
    if req.kind == EnvelopeKind::Commit {
        let none = CommitChanges::default();
        let changes = req.commit.as_ref().unwrap_or(&none);
        inbox = apply_commit(tx, req, changes, seq).await?;
        new_epoch = epoch + 1;
    }

    sqlx::query(
        "INSERT INTO envelopes (conversation_id, seq, message_id, kind, epoch, sender_user_id, \
         sender_device_id, client_message_id, sent_at, payload) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(conv)
    .bind(seq)
    .bind(req.message_id.0)
    .bind(envelope_kind_str(req.kind))
    .bind(epoch)
    .bind(req.sender_user_id.0)
    .bind(req.sender_device_id.0)
    .bind(req.client_message_id)
    .bind(req.sent_at)
    .bind(&req.payload)
    .execute(&mut *tx)
    .await
    .write("message", "device")?;
    if let Some(j) = &req.journal {
        sqlx::query(
            "INSERT INTO journal (message_id, conversation_id, seq, sender_user_id, \
             sender_device_id, key_id, ciphertext, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(req.message_id.0)
        .bind(conv)
        .bind(seq)
        .bind(req.sender_user_id.0)
        .bind(req.sender_device_id.0)
        .bind(&j.key_id)
        .bind(j.ciphertext.as_slice())
        .bind(req.sent_at)
        .execute(&mut *tx)
        .await
        .write("journal copy", "journal key")?;
    }
    sqlx::query("UPDATE conversations SET epoch = $2, last_seq = $3 WHERE id = $1")
        .bind(conv)
        .bind(new_epoch)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .be()?;

    let recipients: Vec<Uuid> = sqlx::query_scalar(
        "SELECT device_id FROM conversation_devices WHERE conversation_id = $1 \
         AND from_seq < $2 AND (until_seq IS NULL OR until_seq >= $2) AND device_id <> $3 \
         ORDER BY device_id",
    )
    .bind(conv)
    .bind(seq)
    .bind(req.sender_device_id.0)
    .fetch_all(&mut *tx)
    .await
    .be()?;
    let envelope = Envelope {
        conversation_id: req.conversation_id,
        seq: u64_of(seq)?,
        message_id: req.message_id,
        kind: req.kind,
        epoch: req.epoch,
        sender_user_id: req.sender_user_id,
        sender_device_id: req.sender_device_id,
        client_message_id: req.client_message_id,
        sent_at: req.sent_at,
        payload: req.payload.clone().into(),
        journal: req.journal.clone(),
    };
    // Last, so the chain's global head lock is held only for the commit.
    let audit_seq = match &req.audit {
        Some(event) => Some(
            crate::audit::append_audit_in(tx, &ward_store::audit::send_event(event, &envelope))
                .await?
                .seq,
        ),
        None => None,
    };
    Ok(AppendOutcome::Accepted {
        envelope,
        audit_seq,
        epoch: u64_of(new_epoch)?,
        inbox,
        recipients: recipients.into_iter().map(DeviceId).collect(),
    })
}

async fn record_receipts_in(
    tx: &mut PgConnection,
    device: DeviceId,
    kind: ReceiptKind,
    cursors: &[ConversationCursor],
    inbox_seq: Option<u64>,
    now: OffsetDateTime,
) -> StoreResult<()> {
    // Highest cursor per conversation, in conversation order (the row lock order).
    let mut wanted: Vec<(Uuid, u64)> = Vec::new();
    for c in cursors {
        match wanted.iter_mut().find(|(id, _)| *id == c.conversation_id.0) {
            Some(w) => w.1 = w.1.max(c.seq),
            None => wanted.push((c.conversation_id.0, c.seq)),
        }
    }
    wanted.sort();
    let column = match kind {
        ReceiptKind::Delivered => "delivered_seq",
        ReceiptKind::Read => "read_seq",
    };
    for (conv, seq) in wanted {
        // Never backwards, never past the conversation's last seq.
        let advanced: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE conversation_devices cd SET {column} = LEAST($3, c.last_seq) \
             FROM conversations c WHERE c.id = cd.conversation_id \
             AND cd.conversation_id = $1 AND cd.device_id = $2 \
             AND cd.{column} < LEAST($3, c.last_seq) RETURNING cd.{column}"
        )))
        .bind(conv)
        .bind(device.0)
        .bind(i64_of(seq))
        .fetch_optional(&mut *tx)
        .await
        .be()?;
        if let Some(up_to) = advanced {
            sqlx::query(
                "INSERT INTO receipts (device_id, conversation_id, kind, up_to_seq, at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(device.0)
            .bind(conv)
            .bind(receipt_kind_str(kind))
            .bind(up_to)
            .bind(now)
            .execute(&mut *tx)
            .await
            .be()?;
        }
    }
    if let (ReceiptKind::Delivered, Some(upto)) = (kind, inbox_seq) {
        sqlx::query("DELETE FROM device_inbox WHERE device_id = $1 AND inbox_seq <= $2")
            .bind(device.0)
            .bind(i64_of(upto))
            .execute(&mut *tx)
            .await
            .be()?;
    }
    Ok(())
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn create_conversation(&self, c: &NewConversation) -> StoreResult<()> {
        let conv = &c.conversation;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO conversations (id, kind, ciphersuite, epoch, last_seq, created_by, \
             direct_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(conv.id.0)
        .bind(conversation_kind_str(conv.kind))
        .bind(i32::from(conv.ciphersuite))
        .bind(i64_of(conv.epoch))
        .bind(i64_of(conv.last_seq))
        .bind(conv.created_by.0)
        .bind(&conv.direct_key)
        .bind(conv.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_on(&e, "direct_key") {
                StoreError::Conflict("direct conversation")
            } else {
                write_err(e, "conversation", "user")
            }
        })?;
        let start = i64_of(conv.last_seq);
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, added_seq) \
             VALUES ($1, $2, $3)",
        )
        .bind(conv.id.0)
        .bind(conv.created_by.0)
        .bind(start)
        .execute(&mut *tx)
        .await
        .write("conversation member", "user")?;
        sqlx::query(
            "INSERT INTO conversation_devices (conversation_id, device_id, user_id, from_seq, \
             until_seq, delivered_seq, read_seq) VALUES ($1, $2, $3, $4, NULL, $4, $4)",
        )
        .bind(conv.id.0)
        .bind(c.creator_device.0)
        .bind(conv.created_by.0)
        .bind(start)
        .execute(&mut *tx)
        .await
        .write("conversation device", "device")?;
        tx.commit().await.be()
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<Conversation>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLS} FROM conversations c WHERE c.id = $1"
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(conversation_of)
        .transpose()
    }

    async fn direct_conversation(&self, direct_key: &str) -> StoreResult<Option<Conversation>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLS} FROM conversations c WHERE c.direct_key = $1"
        )))
        .bind(direct_key)
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(conversation_of)
        .transpose()
    }

    async fn conversations_of_device(&self, device: DeviceId) -> StoreResult<Vec<Conversation>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLS} FROM conversations c \
             JOIN conversation_devices cd ON cd.conversation_id = c.id \
             WHERE cd.device_id = $1 AND cd.until_seq IS NULL ORDER BY c.created_at, c.id"
        )))
        .bind(device.0)
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(conversation_of)
        .collect()
    }

    async fn members(&self, id: ConversationId) -> StoreResult<Vec<Member>> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT u.id, u.username FROM conversation_members m JOIN users u ON u.id = m.user_id \
             WHERE m.conversation_id = $1 AND m.removed_seq IS NULL \
             ORDER BY u.username COLLATE \"C\"",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .be()?;
        rows.into_iter()
            .map(|(id, name)| {
                Ok(Member {
                    user_id: UserId(id),
                    username: Username::parse(&name)
                        .map_err(|_| StoreError::Corrupt("stored username is invalid".into()))?,
                })
            })
            .collect()
    }

    async fn member_devices(&self, id: ConversationId) -> StoreResult<Vec<MemberDevice>> {
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT device_id, user_id FROM conversation_devices \
             WHERE conversation_id = $1 AND until_seq IS NULL ORDER BY user_id, device_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .be()?;
        Ok(rows
            .into_iter()
            .map(|(d, u)| MemberDevice {
                device_id: DeviceId(d),
                user_id: UserId(u),
            })
            .collect())
    }

    async fn append(&self, req: &AppendRequest) -> Result<AppendOutcome, AppendError> {
        let req = req.clone();
        let listener = self.group.append_listener();
        self.group
            .run_then(
                move |conn| Box::pin(async move { append_in(conn, &req).await }),
                move |outcome: &AppendOutcome| {
                    if let (Some(listener), AppendOutcome::Accepted { .. }) = (listener, outcome) {
                        listener(outcome);
                    }
                },
            )
            .await
    }

    fn set_append_listener(&self, listener: AppendListener) -> bool {
        self.group.set_append_listener(listener)
    }

    async fn sync(&self, device: DeviceId, limit: usize) -> StoreResult<SyncBatch> {
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX - 1);
        // One snapshot for both reads.
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .be()?;
        let mut inbox: Vec<InboxItem> = sqlx::query(
            "SELECT inbox_seq, kind, conversation_id, commit_seq, payload, created_at \
             FROM device_inbox WHERE device_id = $1 ORDER BY inbox_seq LIMIT $2",
        )
        .bind(device.0)
        .bind(limit_i + 1)
        .fetch_all(&mut *tx)
        .await
        .be()?
        .iter()
        .map(inbox_item_of)
        .collect::<StoreResult<_>>()?;
        if inbox.len() > limit {
            inbox.truncate(limit);
            tx.commit().await.be()?;
            return Ok(SyncBatch {
                inbox,
                envelopes: Vec::new(),
                more: true,
            });
        }
        let room = limit - inbox.len();
        let mut envelopes: Vec<Envelope> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENVELOPE_COLS} FROM conversation_devices cd \
             JOIN envelopes e ON e.conversation_id = cd.conversation_id \
             AND e.seq > GREATEST(cd.delivered_seq, cd.from_seq) \
             AND (cd.until_seq IS NULL OR e.seq <= cd.until_seq) \
             {ENVELOPE_JOURNAL_JOIN} WHERE cd.device_id = $1 AND e.sender_device_id <> $1 \
             ORDER BY e.conversation_id, e.seq LIMIT $2"
        )))
        .bind(device.0)
        .bind(i64::try_from(room).unwrap_or(i64::MAX - 1) + 1)
        .fetch_all(&mut *tx)
        .await
        .be()?
        .iter()
        .map(envelope_of)
        .collect::<StoreResult<_>>()?;
        tx.commit().await.be()?;
        let more = envelopes.len() > room;
        envelopes.truncate(room);
        Ok(SyncBatch {
            inbox,
            envelopes,
            more,
        })
    }

    async fn record_receipts(
        &self,
        device: DeviceId,
        kind: ReceiptKind,
        cursors: &[ConversationCursor],
        inbox_seq: Option<u64>,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let cursors = cursors.to_vec();
        self.group
            .run(move |conn| {
                Box::pin(async move {
                    record_receipts_in(conn, device, kind, &cursors, inbox_seq, now).await
                })
            })
            .await
    }

    async fn envelope(&self, id: ConversationId, seq: u64) -> StoreResult<Option<Envelope>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENVELOPE_COLS} FROM envelopes e {ENVELOPE_JOURNAL_JOIN} \
             WHERE e.conversation_id = $1 AND e.seq = $2"
        )))
        .bind(id.0)
        .bind(i64_of(seq))
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(envelope_of)
        .transpose()
    }

    async fn receipts(&self, id: ConversationId, seq: u64) -> StoreResult<Vec<DeviceReceipt>> {
        let rows: Vec<(Uuid, Uuid, Option<OffsetDateTime>, Option<OffsetDateTime>)> =
            sqlx::query_as(
                "SELECT cd.user_id, cd.device_id, \
                 (SELECT min(r.at) FROM receipts r WHERE r.conversation_id = cd.conversation_id \
                  AND r.device_id = cd.device_id AND r.kind = 'delivered' AND r.up_to_seq >= $2), \
                 (SELECT min(r.at) FROM receipts r WHERE r.conversation_id = cd.conversation_id \
                  AND r.device_id = cd.device_id AND r.kind = 'read' AND r.up_to_seq >= $2) \
                 FROM conversation_devices cd \
                 JOIN envelopes e ON e.conversation_id = cd.conversation_id AND e.seq = $2 \
                 WHERE cd.conversation_id = $1 AND cd.from_seq < $2 \
                 AND (cd.until_seq IS NULL OR cd.until_seq >= $2) \
                 AND cd.device_id <> e.sender_device_id \
                 ORDER BY cd.user_id, cd.device_id",
            )
            .bind(id.0)
            .bind(i64_of(seq))
            .fetch_all(&self.pool)
            .await
            .be()?;
        Ok(rows
            .into_iter()
            .map(|(user, device, delivered_at, read_at)| DeviceReceipt {
                user_id: UserId(user),
                device_id: DeviceId(device),
                delivered_at,
                read_at,
            })
            .collect())
    }

    async fn commit_log(&self, id: ConversationId) -> StoreResult<Vec<CommitLogEntry>> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT epoch, seq, commit_hash FROM commit_log WHERE conversation_id = $1 \
             ORDER BY epoch",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .be()?;
        rows.into_iter()
            .map(|(epoch, seq, commit_hash)| {
                Ok(CommitLogEntry {
                    epoch: u64_of(epoch)?,
                    seq: u64_of(seq)?,
                    commit_hash,
                })
            })
            .collect()
    }
}
