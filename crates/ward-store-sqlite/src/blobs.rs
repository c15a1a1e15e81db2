//! [`BlobStore`]: records of encrypted attachment blobs (ADR 0015).

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use ward_proto::{ConversationId, DeviceId, MessageId, UserId};
use ward_store::{Blob, BlobState, BlobStore, StoreError, StoreResult};

use crate::SqliteStore;
use crate::codec::{Cols, db, hash32, id, int, uint, us};

const COLUMNS: &str = "id, conversation_id, uploader_user_id, uploader_device_id, size, \
                       received, sha256, state, created_at, updated_at";

fn blob_from_row(r: &SqliteRow) -> StoreResult<Blob> {
    let c = Cols(r);
    let state = c.text("state")?;
    Ok(Blob {
        id: c.uuid("id")?,
        conversation_id: ConversationId(c.uuid("conversation_id")?),
        uploader_user_id: UserId(c.uuid("uploader_user_id")?),
        uploader_device_id: DeviceId(c.uuid("uploader_device_id")?),
        size: c.u64("size")?,
        received: c.u64("received")?,
        sha256: c.opt_blob("sha256")?.map(hash32).transpose()?,
        state: BlobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("blob state {state:?}")))?,
        created_at: c.time("created_at")?,
        updated_at: c.time("updated_at")?,
    })
}

#[async_trait]
impl BlobStore for SqliteStore {
    async fn create_blob(&self, b: &Blob, quota_bytes: u64) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let used: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(size), 0) FROM blobs")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if uint(used)?.saturating_add(b.size) > quota_bytes {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO blobs (id, conversation_id, uploader_user_id, uploader_device_id, size, \
             received, sha256, state, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id(b.id))
        .bind(id(b.conversation_id.0))
        .bind(id(b.uploader_user_id.0))
        .bind(id(b.uploader_device_id.0))
        .bind(int(b.size))
        .bind(int(b.received))
        .bind(b.sha256.map(|h| h.to_vec()))
        .bind(b.state.as_str())
        .bind(us(b.created_at))
        .bind(us(b.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict("blob"),
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::NotFound("conversation")
            }
            _ => db(e),
        })?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn blob(&self, blob: uuid::Uuid) -> StoreResult<Option<Blob>> {
        let sql = format!("SELECT {COLUMNS} FROM blobs WHERE id = ?");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id(blob))
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?
            .as_ref()
            .map(blob_from_row)
            .transpose()
    }

    async fn advance_blob(
        &self,
        blob: uuid::Uuid,
        from: u64,
        to: u64,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE blobs SET received = ?, updated_at = ? \
             WHERE id = ? AND state = 'uploading' AND received = ? AND ? > received AND ? <= size",
        )
        .bind(int(to))
        .bind(us(now))
        .bind(id(blob))
        .bind(int(from))
        .bind(int(to))
        .bind(int(to))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn complete_blob(
        &self,
        blob: uuid::Uuid,
        sha256: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE blobs SET state = 'complete', sha256 = ?, updated_at = ? \
             WHERE id = ? AND state = 'uploading' AND received = size",
        )
        .bind(sha256.to_vec())
        .bind(us(now))
        .bind(id(blob))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn delete_blob(&self, blob: uuid::Uuid) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM blobs WHERE id = ?")
            .bind(id(blob))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn delete_conversation_blobs(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Vec<uuid::Uuid>> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query("DELETE FROM blobs WHERE conversation_id = ? RETURNING id")
            .bind(id(conversation.0))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let ids = rows
            .iter()
            .map(|r| Cols(r).uuid("id"))
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(db)?;
        Ok(ids)
    }

    async fn stale_uploads(&self, before: OffsetDateTime, limit: usize) -> StoreResult<Vec<Blob>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM blobs WHERE state = 'uploading' AND updated_at < ? \
             ORDER BY updated_at, id LIMIT ?"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(us(before))
            .bind(int(limit as u64))
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(blob_from_row)
            .collect()
    }

    async fn blob_bytes(&self) -> StoreResult<u64> {
        let used: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(size), 0) FROM blobs")
            .fetch_one(&self.reader)
            .await
            .map_err(db)?;
        uint(used)
    }

    async fn add_blob_refs(
        &self,
        conversation: ConversationId,
        message: MessageId,
        blobs: &[uuid::Uuid],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        for b in blobs {
            let ok: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM blobs WHERE id = ? AND conversation_id = ? AND state = 'complete'",
            )
            .bind(id(*b))
            .bind(id(conversation.0))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if ok.is_none() {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO blob_refs (blob_id, message_id, conversation_id) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id(*b))
            .bind(id(message.0))
            .bind(id(conversation.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn release_blob_refs(&self, messages: &[MessageId]) -> StoreResult<Vec<uuid::Uuid>> {
        let mut tx = self.write_tx().await?;
        let mut candidates = Vec::new();
        for m in messages {
            let rows = sqlx::query(
                "DELETE FROM blob_refs WHERE message_id = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM envelopes WHERE message_id = ?1) \
                 AND NOT EXISTS (SELECT 1 FROM journal WHERE message_id = ?1) \
                 RETURNING blob_id",
            )
            .bind(id(m.0))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for r in &rows {
                candidates.push(Cols(r).uuid("blob_id")?);
            }
        }
        candidates.sort();
        candidates.dedup();
        let mut gone = Vec::new();
        for b in candidates {
            let deleted = sqlx::query(
                "DELETE FROM blobs WHERE id = ? \
                 AND NOT EXISTS (SELECT 1 FROM blob_refs WHERE blob_id = blobs.id)",
            )
            .bind(id(b))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if deleted == 1 {
                gone.push(b);
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(gone)
    }

    async fn unreferenced_blobs(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<Blob>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM blobs WHERE state = 'complete' AND updated_at < ? \
             AND NOT EXISTS (SELECT 1 FROM blob_refs WHERE blob_id = blobs.id) \
             ORDER BY updated_at, id LIMIT ?"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(us(before))
            .bind(int(limit as u64))
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(blob_from_row)
            .collect()
    }
}
