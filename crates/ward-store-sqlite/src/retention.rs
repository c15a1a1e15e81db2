//! [`RetentionStore`]: legal holds, the expiry scan, deletion of envelopes and journal
//! archive entries with deletion orders for devices, and erasure records (ADR 0013).

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};
use time::OffsetDateTime;
use ward_proto::{ConversationId, DeviceId, HoldTarget, MessageId, UserId};
use ward_store::{
    ArchiveMeta, ArchiveMetaQuery, EnvelopeMeta, EnvelopeMetaQuery, ErasureRecord, LegalHold,
    RetentionStore, StoreError, StoreResult, StoredDeletionOrder,
};

use crate::SqliteStore;
use crate::codec::{Cols, conflict, db, id, int, us};

fn hold_from_row(r: &SqliteRow) -> StoreResult<LegalHold> {
    let c = Cols(r);
    let target_id = c.uuid("target_id")?;
    let target = match c.text("target_type")?.as_str() {
        "user" => HoldTarget::User(UserId(target_id)),
        "conversation" => HoldTarget::Conversation(ConversationId(target_id)),
        other => return Err(StoreError::Corrupt(format!("hold target type {other:?}"))),
    };
    Ok(LegalHold {
        id: c.uuid("id")?,
        target,
        reason: c.text("reason")?,
        case_ref: c.opt_text("case_ref")?,
        created_by: c.opt_uuid("created_by")?.map(UserId),
        created_at: c.time("created_at")?,
        released_by: c.opt_uuid("released_by")?.map(UserId),
        released_at: c.opt_time("released_at")?,
    })
}

fn order_from_row(r: &SqliteRow) -> StoreResult<StoredDeletionOrder> {
    let c = Cols(r);
    let ids: Vec<MessageId> = serde_json::from_str(&c.text("message_ids")?)
        .map_err(|e| StoreError::Corrupt(format!("deletion order message ids: {e}")))?;
    Ok(StoredDeletionOrder {
        id: c.uuid("id")?,
        conversation_id: ConversationId(c.uuid("conversation_id")?),
        message_ids: ids,
        max_seq: c.u64("max_seq")?,
        issued_at: c.time("issued_at")?,
    })
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn add_hold(&self, h: &LegalHold) -> StoreResult<()> {
        let (kind, target) = match h.target {
            HoldTarget::User(u) => ("user", u.0),
            HoldTarget::Conversation(c) => ("conversation", c.0),
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO legal_holds (id, target_type, target_id, reason, case_ref, created_by, \
             created_at, released_by, released_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id(h.id))
        .bind(kind)
        .bind(id(target))
        .bind(&h.reason)
        .bind(&h.case_ref)
        .bind(h.created_by.map(|u| id(u.0)))
        .bind(us(h.created_at))
        .bind(h.released_by.map(|u| id(u.0)))
        .bind(h.released_at.map(us))
        .execute(&mut *tx)
        .await
        .map_err(conflict("hold"))?;
        tx.commit().await.map_err(db)
    }

    async fn holds(&self) -> StoreResult<Vec<LegalHold>> {
        sqlx::query("SELECT * FROM legal_holds ORDER BY created_at, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(hold_from_row)
            .collect()
    }

    async fn release_hold(
        &self,
        hold: uuid::Uuid,
        by: Option<UserId>,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT 1 FROM legal_holds WHERE id = ?")
            .bind(id(hold))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound("hold"));
        }
        let n = sqlx::query(
            "UPDATE legal_holds SET released_by = ?, released_at = ? \
             WHERE id = ? AND released_at IS NULL",
        )
        .bind(by.map(|u| id(u.0)))
        .bind(us(at))
        .bind(id(hold))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(n == 1)
    }

    async fn conversations_of_user(&self, user: UserId) -> StoreResult<Vec<ConversationId>> {
        sqlx::query(
            "SELECT conversation_id FROM conversation_members WHERE user_id = ? \
             ORDER BY conversation_id",
        )
        .bind(id(user.0))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(|r| Ok(ConversationId(Cols(r).uuid("conversation_id")?)))
        .collect()
    }

    async fn envelope_metas(&self, q: &EnvelopeMetaQuery) -> StoreResult<Vec<EnvelopeMeta>> {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT e.conversation_id, c.kind, e.seq, e.message_id, e.sender_user_id, e.sent_at \
             FROM envelopes e JOIN conversations c ON c.id = e.conversation_id \
             WHERE e.kind = 'application'",
        );
        if let Some(t) = q.sent_before {
            b.push(" AND e.sent_at < ").push_bind(us(t));
        }
        if let Some(u) = q.sender_user_id {
            b.push(" AND e.sender_user_id = ").push_bind(id(u.0));
        }
        if let Some((t, m)) = q.after {
            b.push(" AND (e.sent_at > ")
                .push_bind(us(t))
                .push(" OR (e.sent_at = ")
                .push_bind(us(t))
                .push(" AND e.message_id > ")
                .push_bind(id(m.0))
                .push("))");
        }
        b.push(" ORDER BY e.sent_at, e.message_id LIMIT ")
            .push_bind(int(q.limit as u64));
        b.build()
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                let c = Cols(r);
                Ok(EnvelopeMeta {
                    conversation_id: ConversationId(c.uuid("conversation_id")?),
                    kind: c.named("kind")?,
                    seq: c.u64("seq")?,
                    message_id: MessageId(c.uuid("message_id")?),
                    sender_user_id: UserId(c.uuid("sender_user_id")?),
                    sent_at: c.time("sent_at")?,
                })
            })
            .collect()
    }

    async fn delete_envelopes(
        &self,
        conversation: ConversationId,
        message_ids: &[MessageId],
        order: Option<&StoredDeletionOrder>,
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let mut deleted = 0;
        for m in message_ids {
            deleted += sqlx::query(
                "DELETE FROM envelopes WHERE conversation_id = ? AND message_id = ? \
                 AND kind = 'application'",
            )
            .bind(id(conversation.0))
            .bind(id(m.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        }
        if let Some(o) = order.filter(|_| deleted > 0) {
            let ids = serde_json::to_string(&o.message_ids).map_err(StoreError::backend)?;
            sqlx::query(
                "INSERT INTO deletion_orders (id, conversation_id, message_ids, max_seq, \
                 issued_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id(o.id))
            .bind(id(o.conversation_id.0))
            .bind(ids)
            .bind(int(o.max_seq))
            .bind(us(o.issued_at))
            .execute(&mut *tx)
            .await
            .map_err(conflict("deletion order"))?;
        }
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn archive_metas(&self, q: &ArchiveMetaQuery) -> StoreResult<Vec<ArchiveMeta>> {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT archive_seq, message_id, conversation_id, sender_user_id, sent_at, \
             retain_until FROM journal WHERE archive_seq > ",
        );
        b.push_bind(int(q.after));
        if let Some((now, cutoff)) = q.due {
            b.push(" AND ((retain_until IS NOT NULL AND retain_until <= ")
                .push_bind(us(now))
                .push(")");
            if let Some(cut) = cutoff {
                b.push(" OR (retain_until IS NULL AND sent_at < ")
                    .push_bind(us(cut))
                    .push(")");
            }
            b.push(")");
        }
        if let Some(u) = q.sender_user_id {
            b.push(" AND sender_user_id = ").push_bind(id(u.0));
        }
        b.push(" ORDER BY archive_seq LIMIT ")
            .push_bind(int(q.limit as u64));
        b.build()
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                let c = Cols(r);
                Ok(ArchiveMeta {
                    archive_seq: c.u64("archive_seq")?,
                    message_id: MessageId(c.uuid("message_id")?),
                    conversation_id: ConversationId(c.uuid("conversation_id")?),
                    sender_user_id: UserId(c.uuid("sender_user_id")?),
                    sent_at: c.time("sent_at")?,
                    retain_until: c.opt_time("retain_until")?,
                })
            })
            .collect()
    }

    async fn delete_archive_entries(&self, archive_seqs: &[u64]) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let mut deleted = 0;
        for s in archive_seqs {
            deleted += sqlx::query("DELETE FROM journal WHERE archive_seq = ?")
                .bind(int(*s))
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn pending_deletion_orders(
        &self,
        device: DeviceId,
        limit: usize,
    ) -> StoreResult<Vec<StoredDeletionOrder>> {
        sqlx::query(
            "SELECT o.id, o.conversation_id, o.message_ids, o.max_seq, o.issued_at \
             FROM deletion_orders o JOIN routes r \
               ON r.conversation_id = o.conversation_id AND r.device_id = ? \
             WHERE o.max_seq > r.from_seq \
               AND NOT EXISTS (SELECT 1 FROM deletion_acks a \
                               WHERE a.order_id = o.id AND a.device_id = ?) \
             ORDER BY o.issued_at, o.id LIMIT ?",
        )
        .bind(id(device.0))
        .bind(id(device.0))
        .bind(int(limit as u64))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(order_from_row)
        .collect()
    }

    async fn ack_deletion_order(
        &self,
        order: uuid::Uuid,
        device: DeviceId,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT 1 FROM deletion_orders WHERE id = ?")
            .bind(id(order))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound("deletion order"));
        }
        let n = sqlx::query(
            "INSERT INTO deletion_acks (order_id, device_id, at) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id(order))
        .bind(id(device.0))
        .bind(us(at))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(n == 1)
    }

    async fn add_erasure(&self, e: &ErasureRecord) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO erasure_requests (id, user_id, requested_by, requested_at, status, \
             report) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id(e.id))
        .bind(id(e.user_id.0))
        .bind(e.requested_by.map(|u| id(u.0)))
        .bind(us(e.requested_at))
        .bind(&e.status)
        .bind(&e.report)
        .execute(&mut *tx)
        .await
        .map_err(conflict("erasure request"))?;
        tx.commit().await.map_err(db)
    }

    async fn erasures(&self) -> StoreResult<Vec<ErasureRecord>> {
        sqlx::query("SELECT * FROM erasure_requests ORDER BY requested_at, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                let c = Cols(r);
                Ok(ErasureRecord {
                    id: c.uuid("id")?,
                    user_id: UserId(c.uuid("user_id")?),
                    requested_by: c.opt_uuid("requested_by")?.map(UserId),
                    requested_at: c.time("requested_at")?,
                    status: c.text("status")?,
                    report: c.text("report")?,
                })
            })
            .collect()
    }
}
