//! Legal holds, the expiry scan, deletion of envelopes and journal archive entries with
//! deletion orders for devices, and erasure records (ADR 0013).

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use ward_proto::{ConversationId, DeviceId, HoldTarget, MessageId, UserId};
use ward_store::{
    ArchiveMeta, ArchiveMetaQuery, EnvelopeMeta, EnvelopeMetaQuery, ErasureRecord, LegalHold,
    RetentionStore, StoreError, StoreResult, StoredDeletionOrder,
};

use crate::PgStore;
use crate::util::{DbResultExt, col, conversation_kind_of, i64_of, u64_of};

fn hold_of(row: &PgRow) -> StoreResult<LegalHold> {
    let target_id: uuid::Uuid = col(row, "target_id")?;
    let kind: String = col(row, "target_type")?;
    let target = match kind.as_str() {
        "user" => HoldTarget::User(UserId(target_id)),
        "conversation" => HoldTarget::Conversation(ConversationId(target_id)),
        other => return Err(StoreError::Corrupt(format!("hold target type {other:?}"))),
    };
    Ok(LegalHold {
        id: col(row, "id")?,
        target,
        reason: col(row, "reason")?,
        case_ref: col(row, "case_ref")?,
        created_by: col::<Option<uuid::Uuid>>(row, "created_by")?.map(UserId),
        created_at: col(row, "created_at")?,
        released_by: col::<Option<uuid::Uuid>>(row, "released_by")?.map(UserId),
        released_at: col(row, "released_at")?,
    })
}

fn order_of(row: &PgRow) -> StoreResult<StoredDeletionOrder> {
    let ids: String = col(row, "message_ids")?;
    let message_ids: Vec<MessageId> = serde_json::from_str(&ids)
        .map_err(|e| StoreError::Corrupt(format!("deletion order message ids: {e}")))?;
    Ok(StoredDeletionOrder {
        id: col(row, "id")?,
        conversation_id: ConversationId(col(row, "conversation_id")?),
        message_ids,
        max_seq: u64_of(col(row, "max_seq")?)?,
        issued_at: col(row, "issued_at")?,
    })
}

#[async_trait]
impl RetentionStore for PgStore {
    async fn add_hold(&self, h: &LegalHold) -> StoreResult<()> {
        let (kind, target) = match h.target {
            HoldTarget::User(u) => ("user", u.0),
            HoldTarget::Conversation(c) => ("conversation", c.0),
        };
        sqlx::query(
            "INSERT INTO legal_holds (id, target_type, target_id, reason, case_ref, created_by, \
             created_at, released_by, released_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(h.id)
        .bind(kind)
        .bind(target)
        .bind(&h.reason)
        .bind(&h.case_ref)
        .bind(h.created_by.map(|u| u.0))
        .bind(h.created_at)
        .bind(h.released_by.map(|u| u.0))
        .bind(h.released_at)
        .execute(&self.pool)
        .await
        .write("hold", "hold target")?;
        Ok(())
    }

    async fn holds(&self) -> StoreResult<Vec<LegalHold>> {
        sqlx::query("SELECT * FROM legal_holds ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(hold_of)
            .collect()
    }

    async fn release_hold(
        &self,
        hold: uuid::Uuid,
        by: Option<UserId>,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let row = sqlx::query(
            "WITH found AS (SELECT id FROM legal_holds WHERE id = $1), \
                  upd AS (UPDATE legal_holds SET released_by = $2, released_at = $3 \
                          WHERE id = $1 AND released_at IS NULL RETURNING id) \
             SELECT (SELECT count(*) FROM found) AS found, (SELECT count(*) FROM upd) AS updated",
        )
        .bind(hold)
        .bind(by.map(|u| u.0))
        .bind(at)
        .fetch_one(&self.pool)
        .await
        .be()?;
        if col::<i64>(&row, "found")? == 0 {
            return Err(StoreError::NotFound("hold"));
        }
        Ok(col::<i64>(&row, "updated")? == 1)
    }

    async fn conversations_of_user(&self, user: UserId) -> StoreResult<Vec<ConversationId>> {
        sqlx::query(
            "SELECT conversation_id FROM conversation_members \
             WHERE user_id = $1 AND removed_seq IS NULL ORDER BY conversation_id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(|r| Ok(ConversationId(col(r, "conversation_id")?)))
        .collect()
    }

    async fn envelope_metas(&self, q: &EnvelopeMetaQuery) -> StoreResult<Vec<EnvelopeMeta>> {
        let mut b: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT e.conversation_id, c.kind, e.seq, e.message_id, e.sender_user_id, e.sent_at \
             FROM envelopes e JOIN conversations c ON c.id = e.conversation_id \
             WHERE e.kind = 'application'",
        );
        if let Some(t) = q.sent_before {
            b.push(" AND e.sent_at < ").push_bind(t);
        }
        if let Some(u) = q.sender_user_id {
            b.push(" AND e.sender_user_id = ").push_bind(u.0);
        }
        if let Some((t, m)) = q.after {
            b.push(" AND (e.sent_at, e.message_id) > (")
                .push_bind(t)
                .push(", ")
                .push_bind(m.0)
                .push(")");
        }
        b.push(" ORDER BY e.sent_at, e.message_id LIMIT ")
            .push_bind(i64_of(q.limit as u64));
        b.build()
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(|r| {
                let kind: String = col(r, "kind")?;
                Ok(EnvelopeMeta {
                    conversation_id: ConversationId(col(r, "conversation_id")?),
                    kind: conversation_kind_of(&kind)?,
                    seq: u64_of(col(r, "seq")?)?,
                    message_id: MessageId(col(r, "message_id")?),
                    sender_user_id: UserId(col(r, "sender_user_id")?),
                    sent_at: col(r, "sent_at")?,
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
        let ids: Vec<uuid::Uuid> = message_ids.iter().map(|m| m.0).collect();
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM envelopes WHERE conversation_id = $1 AND message_id = ANY($2) \
             AND kind = 'application'",
        )
        .bind(conversation.0)
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .be()?
        .rows_affected();
        if let Some(o) = order.filter(|_| deleted > 0) {
            let list = serde_json::to_string(&o.message_ids).map_err(StoreError::backend)?;
            sqlx::query(
                "INSERT INTO deletion_orders (id, conversation_id, message_ids, max_seq, \
                 issued_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(o.id)
            .bind(o.conversation_id.0)
            .bind(list)
            .bind(i64_of(o.max_seq))
            .bind(o.issued_at)
            .execute(&mut *tx)
            .await
            .write("deletion order", "conversation")?;
        }
        tx.commit().await.be()?;
        Ok(deleted)
    }

    async fn archive_metas(&self, q: &ArchiveMetaQuery) -> StoreResult<Vec<ArchiveMeta>> {
        let mut b: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT archive_seq, message_id, conversation_id, sender_user_id, sent_at, \
             retain_until FROM journal WHERE archive_seq > ",
        );
        b.push_bind(i64_of(q.after));
        if let Some((now, cutoff)) = q.due {
            b.push(" AND ((retain_until IS NOT NULL AND retain_until <= ")
                .push_bind(now)
                .push(")");
            if let Some(cut) = cutoff {
                b.push(" OR (retain_until IS NULL AND sent_at < ")
                    .push_bind(cut)
                    .push(")");
            }
            b.push(")");
        }
        if let Some(u) = q.sender_user_id {
            b.push(" AND sender_user_id = ").push_bind(u.0);
        }
        b.push(" ORDER BY archive_seq LIMIT ")
            .push_bind(i64_of(q.limit as u64));
        b.build()
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(|r| {
                Ok(ArchiveMeta {
                    archive_seq: u64_of(col(r, "archive_seq")?)?,
                    message_id: MessageId(col(r, "message_id")?),
                    conversation_id: ConversationId(col(r, "conversation_id")?),
                    sender_user_id: UserId(col(r, "sender_user_id")?),
                    sent_at: col(r, "sent_at")?,
                    retain_until: col(r, "retain_until")?,
                })
            })
            .collect()
    }

    async fn delete_archive_entries(&self, archive_seqs: &[u64]) -> StoreResult<u64> {
        let seqs: Vec<i64> = archive_seqs.iter().map(|s| i64_of(*s)).collect();
        Ok(
            sqlx::query("DELETE FROM journal WHERE archive_seq = ANY($1)")
                .bind(&seqs)
                .execute(&self.pool)
                .await
                .be()?
                .rows_affected(),
        )
    }

    async fn pending_deletion_orders(
        &self,
        device: DeviceId,
        limit: usize,
    ) -> StoreResult<Vec<StoredDeletionOrder>> {
        sqlx::query(
            "SELECT o.id, o.conversation_id, o.message_ids, o.max_seq, o.issued_at \
             FROM deletion_orders o JOIN conversation_devices r \
               ON r.conversation_id = o.conversation_id AND r.device_id = $1 \
             WHERE o.max_seq > r.from_seq \
               AND NOT EXISTS (SELECT 1 FROM deletion_acks a \
                               WHERE a.order_id = o.id AND a.device_id = $1) \
             ORDER BY o.issued_at, o.id LIMIT $2",
        )
        .bind(device.0)
        .bind(i64_of(limit as u64))
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(order_of)
        .collect()
    }

    async fn ack_deletion_order(
        &self,
        order: uuid::Uuid,
        device: DeviceId,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let row = sqlx::query(
            "WITH found AS (SELECT id FROM deletion_orders WHERE id = $1), \
                  ins AS (INSERT INTO deletion_acks (order_id, device_id, at) \
                          SELECT id, $2, $3 FROM found ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT (SELECT count(*) FROM found) AS found, (SELECT count(*) FROM ins) AS added",
        )
        .bind(order)
        .bind(device.0)
        .bind(at)
        .fetch_one(&self.pool)
        .await
        .write("deletion acknowledgement", "device")?;
        if col::<i64>(&row, "found")? == 0 {
            return Err(StoreError::NotFound("deletion order"));
        }
        Ok(col::<i64>(&row, "added")? == 1)
    }

    async fn add_erasure(&self, e: &ErasureRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO erasure_requests (id, user_id, requested_by, requested_at, status, \
             report) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.id)
        .bind(e.user_id.0)
        .bind(e.requested_by.map(|u| u.0))
        .bind(e.requested_at)
        .bind(&e.status)
        .bind(&e.report)
        .execute(&self.pool)
        .await
        .write("erasure request", "user")?;
        Ok(())
    }

    async fn erasures(&self) -> StoreResult<Vec<ErasureRecord>> {
        sqlx::query("SELECT * FROM erasure_requests ORDER BY requested_at, id")
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(|r| {
                Ok(ErasureRecord {
                    id: col(r, "id")?,
                    user_id: UserId(col(r, "user_id")?),
                    requested_by: col::<Option<uuid::Uuid>>(r, "requested_by")?.map(UserId),
                    requested_at: col(r, "requested_at")?,
                    status: col(r, "status")?,
                    report: col(r, "report")?,
                })
            })
            .collect()
    }
}
