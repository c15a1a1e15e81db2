//! [`ConversationStore`]: conversations, the envelope log, routing, inboxes and receipts.

use std::collections::BTreeSet;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use time::OffsetDateTime;
use ward_proto::{
    CommitLogEntry, ConversationCursor, ConversationId, DeviceId, DeviceReceipt, DeviceStatus,
    Envelope, EnvelopeKind, InboxItem, InboxKind, MessageId, UserId, UserStatus, Username,
};
use ward_store::{
    AppendError, AppendListener, AppendOutcome, AppendRequest, CommitChanges, Conversation,
    ConversationStore, Member, MemberDevice, NewConversation, ReceiptKind, StoreError, StoreResult,
    SyncBatch,
};

use crate::SqliteStore;
use crate::codec::{Cols, Named, conflict, db, hex, id, int, uint, us};

type Tx = SqliteConnection;

const CONVERSATION_COLUMNS: &str =
    "c.id, c.kind, c.ciphersuite, c.epoch, c.last_seq, c.created_by, c.direct_key, c.created_at";
/// Envelope columns with the journal copy; every envelope read LEFT JOINs the archive as `j`
/// (`ENVELOPE_JOURNAL_JOIN`), so a delivered envelope carries its copy.
const ENVELOPE_COLUMNS: &str = "e.conversation_id, e.seq, e.message_id, e.kind, e.epoch, \
     e.sender_user_id, e.sender_device_id, e.client_message_id, e.sent_at, e.payload, \
     j.key_id AS journal_key_id, j.ciphertext AS journal_ciphertext";
const ENVELOPE_JOURNAL_JOIN: &str = "LEFT JOIN journal j ON j.message_id = e.message_id";
const INBOX_COLUMNS: &str =
    "i.inbox_seq, i.kind, i.conversation_id, i.commit_seq, i.payload, i.created_at";

fn conversation_from_row(r: &SqliteRow) -> StoreResult<Conversation> {
    let c = Cols(r);
    Ok(Conversation {
        id: ConversationId(c.uuid("id")?),
        kind: c.named("kind")?,
        ciphersuite: u16::try_from(c.i64("ciphersuite")?)
            .map_err(|_| StoreError::Corrupt("ciphersuite out of range".into()))?,
        epoch: c.u64("epoch")?,
        last_seq: c.u64("last_seq")?,
        created_by: UserId(c.uuid("created_by")?),
        direct_key: c.opt_text("direct_key")?,
        created_at: c.time("created_at")?,
    })
}

fn envelope_from_row(r: &SqliteRow) -> StoreResult<Envelope> {
    let c = Cols(r);
    Ok(Envelope {
        conversation_id: ConversationId(c.uuid("conversation_id")?),
        seq: c.u64("seq")?,
        message_id: MessageId(c.uuid("message_id")?),
        kind: c.named("kind")?,
        epoch: c.u64("epoch")?,
        sender_user_id: UserId(c.uuid("sender_user_id")?),
        sender_device_id: DeviceId(c.uuid("sender_device_id")?),
        client_message_id: c.uuid("client_message_id")?,
        sent_at: c.time("sent_at")?,
        payload: c.blob("payload")?.into(),
        journal: match (
            c.opt_text("journal_key_id")?,
            c.opt_blob("journal_ciphertext")?,
        ) {
            (Some(key_id), Some(ciphertext)) => Some(ward_proto::JournalCopy {
                key_id,
                ciphertext: ciphertext.into(),
            }),
            _ => None,
        },
    })
}

fn inbox_from_row(r: &SqliteRow) -> StoreResult<InboxItem> {
    let c = Cols(r);
    Ok(InboxItem {
        inbox_seq: c.u64("inbox_seq")?,
        kind: c.named("kind")?,
        conversation_id: ConversationId(c.uuid("conversation_id")?),
        commit_seq: c.u64("commit_seq")?,
        payload: c.blob("payload")?.into(),
        created_at: c.time("created_at")?,
    })
}

/// Append a device-addressed item, numbering it with the device's next inbox seq.
pub(crate) async fn push_inbox(
    tx: &mut Tx,
    device: DeviceId,
    kind: InboxKind,
    conversation: ConversationId,
    commit_seq: u64,
    payload: &[u8],
    now: OffsetDateTime,
) -> StoreResult<InboxItem> {
    let dev = id(device.0);
    let seq: i64 = sqlx::query(
        "UPDATE devices SET inbox_seq = inbox_seq + 1 WHERE id = ? RETURNING inbox_seq",
    )
    .bind(&dev)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?
    .try_get("inbox_seq")
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO inbox (device_id, inbox_seq, kind, conversation_id, commit_seq, payload, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&dev)
    .bind(seq)
    .bind(kind.name())
    .bind(id(conversation.0))
    .bind(int(commit_seq))
    .bind(payload)
    .bind(us(now))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(InboxItem {
        inbox_seq: uint(seq)?,
        kind,
        conversation_id: conversation,
        commit_seq,
        payload: payload.to_vec().into(),
        created_at: now,
    })
}

/// End the routing of the given devices' active routes at `seq`; returns the devices whose
/// route actually ended.
async fn end_routes(
    tx: &mut Tx,
    conv: &str,
    devices: &[String],
    seq: u64,
) -> StoreResult<Vec<DeviceId>> {
    let mut ended = Vec::new();
    for dev in devices {
        let row = sqlx::query(
            "UPDATE routes SET until_seq = ? WHERE conversation_id = ? AND device_id = ? \
             AND until_seq IS NULL RETURNING device_id",
        )
        .bind(int(seq))
        .bind(conv)
        .bind(dev)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(r) = row {
            ended.push(DeviceId(Cols(&r).uuid("device_id")?));
        }
    }
    Ok(ended)
}

/// Apply a commit's membership changes at `seq`. Returns the inbox items created.
async fn apply_commit(
    tx: &mut Tx,
    conversation: ConversationId,
    epoch: u64,
    seq: u64,
    changes: &CommitChanges,
    now: OffsetDateTime,
) -> Result<Vec<(DeviceId, InboxItem)>, AppendError> {
    let conv = id(conversation.0);
    sqlx::query(
        "INSERT INTO commit_log (conversation_id, epoch, seq, commit_hash) VALUES (?, ?, ?, ?)",
    )
    .bind(&conv)
    .bind(int(epoch))
    .bind(int(seq))
    .bind(&changes.commit_hash[..])
    .execute(&mut *tx)
    .await
    .map_err(conflict("commit"))?;

    // Users joining must exist and be active.
    for user in &changes.add_users {
        let status = sqlx::query("SELECT status FROM users WHERE id = ?")
            .bind(id(user.0))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|r| Cols(&r).named::<UserStatus>("status"))
            .transpose()?;
        if status != Some(UserStatus::Active) {
            return Err(AppendError::InvalidMember);
        }
    }

    // Removals: users (all their devices) and single devices.
    let mut removed: Vec<DeviceId> = Vec::new();
    for user in &changes.remove_users {
        let known = sqlx::query("SELECT 1 FROM users WHERE id = ?")
            .bind(id(user.0))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if known.is_none() {
            return Err(AppendError::InvalidMember);
        }
        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?")
            .bind(&conv)
            .bind(id(user.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let devices: Vec<String> = sqlx::query(
            "SELECT r.device_id FROM routes r JOIN devices d ON d.id = r.device_id \
             WHERE r.conversation_id = ? AND d.user_id = ? AND r.until_seq IS NULL",
        )
        .bind(&conv)
        .bind(id(user.0))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(|r| Cols(r).text("device_id"))
        .collect::<StoreResult<_>>()?;
        removed.extend(end_routes(tx, &conv, &devices, seq).await?);
    }
    let devices: Vec<String> = changes.remove_devices.iter().map(|d| id(d.0)).collect();
    removed.extend(end_routes(tx, &conv, &devices, seq).await?);

    for user in &changes.add_users {
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, joined_seq) \
             VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&conv)
        .bind(id(user.0))
        .bind(int(seq))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }

    let mut inbox = Vec::new();
    let mut welcomed = BTreeSet::new();
    if let Some((welcome, devices)) = &changes.welcome {
        for &device in devices {
            // An active device of a member after this commit.
            let ok = sqlx::query(
                "SELECT 1 FROM devices d JOIN conversation_members m \
                 ON m.user_id = d.user_id AND m.conversation_id = ? \
                 WHERE d.id = ? AND d.status = ?",
            )
            .bind(&conv)
            .bind(id(device.0))
            .bind(DeviceStatus::Active.name())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if ok.is_none() {
                return Err(AppendError::InvalidWelcomeDevice(device));
            }
            if !welcomed.insert(device) {
                continue;
            }
            // Route from after this commit; a device still routed keeps its route.
            sqlx::query(
                "INSERT INTO routes (conversation_id, device_id, from_seq, until_seq, \
                 delivered_seq, read_seq) VALUES (?1, ?2, ?3, NULL, ?3, ?3) \
                 ON CONFLICT (conversation_id, device_id) DO UPDATE SET \
                 from_seq = excluded.from_seq, until_seq = NULL, \
                 delivered_seq = MAX(delivered_seq, excluded.delivered_seq), \
                 read_seq = MAX(read_seq, excluded.read_seq) \
                 WHERE routes.until_seq IS NOT NULL",
            )
            .bind(&conv)
            .bind(id(device.0))
            .bind(int(seq))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            let item = push_inbox(
                tx,
                device,
                InboxKind::Welcome,
                conversation,
                seq,
                welcome,
                now,
            )
            .await?;
            inbox.push((device, item));
        }
    }
    let mut notified = BTreeSet::new();
    for device in removed {
        if welcomed.contains(&device) || !notified.insert(device) {
            continue;
        }
        let item = push_inbox(tx, device, InboxKind::Removed, conversation, seq, &[], now).await?;
        inbox.push((device, item));
    }
    Ok(inbox)
}

impl SqliteStore {
    async fn conversations_where(
        &self,
        filter: &str,
        arg: String,
    ) -> StoreResult<Vec<Conversation>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c {filter}"
        )))
        .bind(arg)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(conversation_from_row)
        .collect()
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn create_conversation(&self, c: &NewConversation) -> StoreResult<()> {
        let conv = &c.conversation;
        let cid = id(conv.id.0);
        let mut tx = self.write_tx().await?;
        if let Some(key) = &conv.direct_key {
            let taken = sqlx::query("SELECT 1 FROM conversations WHERE direct_key = ?")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if taken.is_some() {
                return Err(StoreError::Conflict("direct conversation"));
            }
        }
        sqlx::query(
            "INSERT INTO conversations (id, kind, ciphersuite, epoch, last_seq, created_by, \
             direct_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&cid)
        .bind(conv.kind.name())
        .bind(i64::from(conv.ciphersuite))
        .bind(int(conv.epoch))
        .bind(int(conv.last_seq))
        .bind(id(conv.created_by.0))
        .bind(&conv.direct_key)
        .bind(us(conv.created_at))
        .execute(&mut *tx)
        .await
        .map_err(conflict("conversation"))?;
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, joined_seq) \
             VALUES (?, ?, ?)",
        )
        .bind(&cid)
        .bind(id(conv.created_by.0))
        .bind(int(conv.last_seq))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO routes (conversation_id, device_id, from_seq, until_seq, \
             delivered_seq, read_seq) VALUES (?1, ?2, ?3, NULL, ?3, ?3)",
        )
        .bind(&cid)
        .bind(id(c.creator_device.0))
        .bind(int(conv.last_seq))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn conversation(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        Ok(self
            .conversations_where("WHERE c.id = ?", id(conversation.0))
            .await?
            .pop())
    }

    async fn direct_conversation(&self, direct_key: &str) -> StoreResult<Option<Conversation>> {
        Ok(self
            .conversations_where("WHERE c.direct_key = ?", direct_key.to_owned())
            .await?
            .pop())
    }

    async fn conversations_of_device(&self, device: DeviceId) -> StoreResult<Vec<Conversation>> {
        self.conversations_where(
            "JOIN routes r ON r.conversation_id = c.id \
             WHERE r.device_id = ? AND r.until_seq IS NULL ORDER BY c.created_at, c.id",
            id(device.0),
        )
        .await
    }

    async fn members(&self, conversation: ConversationId) -> StoreResult<Vec<Member>> {
        sqlx::query(
            "SELECT u.id, u.username FROM conversation_members m JOIN users u ON u.id = m.user_id \
             WHERE m.conversation_id = ? ORDER BY u.username",
        )
        .bind(id(conversation.0))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let c = Cols(r);
            Ok(Member {
                user_id: UserId(c.uuid("id")?),
                username: Username::parse(&c.text("username")?)
                    .map_err(|_| StoreError::Corrupt("stored username is invalid".into()))?,
            })
        })
        .collect()
    }

    async fn member_devices(&self, conversation: ConversationId) -> StoreResult<Vec<MemberDevice>> {
        sqlx::query(
            "SELECT d.id, d.user_id FROM routes r JOIN devices d ON d.id = r.device_id \
             WHERE r.conversation_id = ? AND r.until_seq IS NULL ORDER BY d.created_at, d.id",
        )
        .bind(id(conversation.0))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let c = Cols(r);
            Ok(MemberDevice {
                device_id: DeviceId(c.uuid("id")?),
                user_id: UserId(c.uuid("user_id")?),
            })
        })
        .collect()
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
        let dev = id(device.0);
        // One read transaction, so inbox and envelopes come from the same snapshot.
        let mut tx = self.reader.begin().await.map_err(db)?;
        let fetch = int(limit as u64).saturating_add(1);
        let mut inbox = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INBOX_COLUMNS} FROM inbox i WHERE i.device_id = ? ORDER BY i.inbox_seq LIMIT ?"
        )))
        .bind(&dev)
        .bind(fetch)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(inbox_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        if inbox.len() > limit {
            inbox.truncate(limit);
            return Ok(SyncBatch {
                inbox,
                envelopes: Vec::new(),
                more: true,
            });
        }
        let room = limit - inbox.len();
        let mut envelopes = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENVELOPE_COLUMNS} FROM routes r JOIN envelopes e \
             ON e.conversation_id = r.conversation_id AND e.seq > r.delivered_seq \
             AND e.seq > r.from_seq AND (r.until_seq IS NULL OR e.seq <= r.until_seq) \
             {ENVELOPE_JOURNAL_JOIN} WHERE r.device_id = ?1 AND e.sender_device_id != ?1 \
             ORDER BY e.conversation_id, e.seq LIMIT ?2"
        )))
        .bind(&dev)
        .bind(int(room as u64).saturating_add(1))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(envelope_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(db)?;
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

    async fn envelope(
        &self,
        conversation: ConversationId,
        seq: u64,
    ) -> StoreResult<Option<Envelope>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENVELOPE_COLUMNS} FROM envelopes e {ENVELOPE_JOURNAL_JOIN} \
             WHERE e.conversation_id = ? AND e.seq = ?"
        )))
        .bind(id(conversation.0))
        .bind(int(seq))
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(envelope_from_row)
        .transpose()
    }

    async fn receipts(
        &self,
        conversation: ConversationId,
        seq: u64,
    ) -> StoreResult<Vec<DeviceReceipt>> {
        // Recipients are the devices routed at `seq`, except the sender's device. An
        // unknown envelope has none.
        sqlx::query(
            "SELECT r.device_id, d.user_id, \
             (SELECT MIN(x.at) FROM receipts x WHERE x.conversation_id = r.conversation_id \
              AND x.device_id = r.device_id AND x.kind = 'delivered' AND x.up_to_seq >= ?2) \
              AS delivered_at, \
             (SELECT MIN(x.at) FROM receipts x WHERE x.conversation_id = r.conversation_id \
              AND x.device_id = r.device_id AND x.kind = 'read' AND x.up_to_seq >= ?2) \
              AS read_at \
             FROM envelopes e JOIN routes r ON r.conversation_id = e.conversation_id \
             JOIN devices d ON d.id = r.device_id \
             WHERE e.conversation_id = ?1 AND e.seq = ?2 AND r.from_seq < ?2 \
             AND (r.until_seq IS NULL OR r.until_seq >= ?2) AND r.device_id != e.sender_device_id \
             ORDER BY d.created_at, d.id",
        )
        .bind(id(conversation.0))
        .bind(int(seq))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let c = Cols(r);
            Ok(DeviceReceipt {
                user_id: UserId(c.uuid("user_id")?),
                device_id: DeviceId(c.uuid("device_id")?),
                delivered_at: c.opt_time("delivered_at")?,
                read_at: c.opt_time("read_at")?,
            })
        })
        .collect()
    }

    async fn commit_log(&self, conversation: ConversationId) -> StoreResult<Vec<CommitLogEntry>> {
        sqlx::query(
            "SELECT epoch, seq, commit_hash FROM commit_log WHERE conversation_id = ? ORDER BY epoch",
        )
        .bind(id(conversation.0))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let c = Cols(r);
            Ok(CommitLogEntry {
                epoch: c.u64("epoch")?,
                seq: c.u64("seq")?,
                commit_hash: hex(&c.blob("commit_hash")?),
            })
        })
        .collect()
    }
}

/// [`ConversationStore::append`] inside the caller's transaction (a group-commit batch).
async fn append_in(tx: &mut Tx, req: &AppendRequest) -> Result<AppendOutcome, AppendError> {
    let conv = id(req.conversation_id.0);
    let sender_device = id(req.sender_device_id.0);

    let row = sqlx::query("SELECT epoch, last_seq FROM conversations WHERE id = ?")
        .bind(&conv)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or(AppendError::NotFound)?;
    let (epoch, last_seq) = (Cols(&row).u64("epoch")?, Cols(&row).u64("last_seq")?);

    // Idempotency: a retry returns the first answer.
    let dup = sqlx::query(
        "SELECT message_id, seq FROM envelopes WHERE conversation_id = ? \
         AND sender_device_id = ? AND client_message_id = ?",
    )
    .bind(&conv)
    .bind(&sender_device)
    .bind(id(req.client_message_id))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    if let Some(r) = dup {
        let c = Cols(&r);
        return Ok(AppendOutcome::Duplicate {
            message_id: MessageId(c.uuid("message_id")?),
            seq: c.u64("seq")?,
            epoch,
        });
    }

    // The sending device is routed to now, belongs to the sender, who is a member.
    let member = sqlx::query(
        "SELECT 1 FROM routes r JOIN devices d ON d.id = r.device_id \
         JOIN conversation_members m ON m.conversation_id = r.conversation_id \
         AND m.user_id = d.user_id \
         WHERE r.conversation_id = ? AND r.device_id = ? AND r.until_seq IS NULL \
         AND d.user_id = ? AND d.status = ?",
    )
    .bind(&conv)
    .bind(&sender_device)
    .bind(id(req.sender_user_id.0))
    .bind(DeviceStatus::Active.name())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    if member.is_none() {
        return Err(AppendError::NotMember);
    }
    if req.epoch != epoch {
        return Err(AppendError::EpochConflict {
            current_epoch: epoch,
        });
    }

    let seq = last_seq + 1;
    let envelope = Envelope {
        conversation_id: req.conversation_id,
        seq,
        message_id: req.message_id,
        kind: req.kind,
        epoch,
        sender_user_id: req.sender_user_id,
        sender_device_id: req.sender_device_id,
        client_message_id: req.client_message_id,
        sent_at: req.sent_at,
        payload: req.payload.clone().into(),
        journal: req.journal.clone(),
    };
    sqlx::query(
        "INSERT INTO envelopes (conversation_id, seq, message_id, kind, epoch, \
         sender_user_id, sender_device_id, client_message_id, sent_at, payload) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&conv)
    .bind(int(seq))
    .bind(id(req.message_id.0))
    .bind(req.kind.name())
    .bind(int(epoch))
    .bind(id(req.sender_user_id.0))
    .bind(&sender_device)
    .bind(id(req.client_message_id))
    .bind(us(req.sent_at))
    .bind(&req.payload)
    .execute(&mut *tx)
    .await
    .map_err(conflict("message"))?;
    if let Some(j) = &req.journal {
        sqlx::query(
            "INSERT INTO journal (message_id, conversation_id, seq, sender_user_id, \
             sender_device_id, key_id, ciphertext, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id(req.message_id.0))
        .bind(&conv)
        .bind(int(seq))
        .bind(id(req.sender_user_id.0))
        .bind(&sender_device)
        .bind(&j.key_id)
        .bind(j.ciphertext.as_slice())
        .bind(us(req.sent_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }

    let mut new_epoch = epoch;
    let mut inbox = Vec::new();
    if req.kind == EnvelopeKind::Commit {
        let empty = CommitChanges::default();
        let changes = req.commit.as_ref().unwrap_or(&empty);
        inbox = apply_commit(tx, req.conversation_id, epoch, seq, changes, req.sent_at).await?;
        new_epoch = epoch + 1;
    }
    sqlx::query("UPDATE conversations SET epoch = ?, last_seq = ? WHERE id = ?")
        .bind(int(new_epoch))
        .bind(int(seq))
        .bind(&conv)
        .execute(&mut *tx)
        .await
        .map_err(db)?;

    let recipients = sqlx::query(
        "SELECT device_id FROM routes WHERE conversation_id = ?1 AND from_seq < ?2 \
         AND (until_seq IS NULL OR until_seq >= ?2) AND device_id != ?3 ORDER BY device_id",
    )
    .bind(&conv)
    .bind(int(seq))
    .bind(&sender_device)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?
    .iter()
    .map(|r| Cols(r).uuid("device_id").map(DeviceId))
    .collect::<StoreResult<Vec<_>>>()?;

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
        epoch: new_epoch,
        inbox,
        recipients,
        audit_seq,
    })
}

/// [`ConversationStore::record_receipts`] inside the caller's transaction.
async fn record_receipts_in(
    tx: &mut Tx,
    device: DeviceId,
    kind: ReceiptKind,
    cursors: &[ConversationCursor],
    inbox_seq: Option<u64>,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let dev = id(device.0);
    let (column, kind_name) = match kind {
        ReceiptKind::Delivered => ("delivered_seq", "delivered"),
        ReceiptKind::Read => ("read_seq", "read"),
    };
    for cursor in cursors {
        let conv = id(cursor.conversation_id.0);
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT r.{column} AS cur, c.last_seq FROM routes r \
             JOIN conversations c ON c.id = r.conversation_id \
             WHERE r.conversation_id = ? AND r.device_id = ?"
        )))
        .bind(&conv)
        .bind(&dev)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        // Not routed there: nothing to acknowledge.
        let Some(row) = row else { continue };
        let c = Cols(&row);
        let (current, last_seq) = (c.u64("cur")?, c.u64("last_seq")?);
        let target = cursor.seq.min(last_seq);
        if target <= current {
            continue;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE routes SET {column} = ? WHERE conversation_id = ? AND device_id = ?"
        )))
        .bind(int(target))
        .bind(&conv)
        .bind(&dev)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO receipts (conversation_id, device_id, kind, up_to_seq, at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&conv)
        .bind(&dev)
        .bind(kind_name)
        .bind(int(target))
        .bind(us(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    if let (ReceiptKind::Delivered, Some(upto)) = (kind, inbox_seq) {
        sqlx::query("DELETE FROM inbox WHERE device_id = ? AND inbox_seq <= ?")
            .bind(&dev)
            .bind(int(upto))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}
