//! [`BlobStore`]: records of encrypted attachment blobs (ADR 0015). Quota checks are
//! serialised by locking the one-row `blob_quota_lock` table, so two concurrent uploads cannot
//! both fit into the last free bytes.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use ward_proto::{ConversationId, DeviceId, MessageId, UserId};
use ward_store::{Blob, BlobState, BlobStore, StoreResult};

use crate::PgStore;
use crate::util::{DbResultExt, col, corrupt, hash32, i64_of, u64_of};

const COLUMNS: &str = "id, conversation_id, uploader_user_id, uploader_device_id, size, \
                       received, sha256, state, created_at, updated_at";

fn blob_of(r: &PgRow) -> StoreResult<Blob> {
    let state: String = col(r, "state")?;
    let sha256: Option<Vec<u8>> = col(r, "sha256")?;
    Ok(Blob {
        id: col(r, "id")?,
        conversation_id: ConversationId(col(r, "conversation_id")?),
        uploader_user_id: UserId(col(r, "uploader_user_id")?),
        uploader_device_id: DeviceId(col(r, "uploader_device_id")?),
        size: u64_of(col(r, "size")?)?,
        received: u64_of(col(r, "received")?)?,
        sha256: sha256.map(|h| hash32(h, "blob sha256")).transpose()?,
        state: BlobState::parse(&state).ok_or_else(|| corrupt("blob state", &state))?,
        created_at: col(r, "created_at")?,
        updated_at: col(r, "updated_at")?,
    })
}

#[async_trait]
impl BlobStore for PgStore {
    async fn create_blob(&self, b: &Blob, quota_bytes: u64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.be()?;
        sqlx::query("SELECT id FROM blob_quota_lock FOR UPDATE")
            .execute(&mut *tx)
            .await
            .be()?;
        let used: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(size), 0)::BIGINT FROM blobs")
            .fetch_one(&mut *tx)
            .await
            .be()?;
        if u64_of(used)?.saturating_add(b.size) > quota_bytes {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO blobs (id, conversation_id, uploader_user_id, uploader_device_id, size, \
             received, sha256, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(b.id)
        .bind(b.conversation_id.0)
        .bind(b.uploader_user_id.0)
        .bind(b.uploader_device_id.0)
        .bind(i64_of(b.size))
        .bind(i64_of(b.received))
        .bind(b.sha256.map(|h| h.to_vec()))
        .bind(b.state.as_str())
        .bind(b.created_at)
        .bind(b.updated_at)
        .execute(&mut *tx)
        .await
        .write("blob", "conversation")?;
        tx.commit().await.be()?;
        Ok(true)
    }

    async fn blob(&self, id: uuid::Uuid) -> StoreResult<Option<Blob>> {
        let sql = format!("SELECT {COLUMNS} FROM blobs WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .be()?
            .as_ref()
            .map(blob_of)
            .transpose()
    }

    async fn advance_blob(
        &self,
        id: uuid::Uuid,
        from: u64,
        to: u64,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        Ok(sqlx::query(
            "UPDATE blobs SET received = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'uploading' AND received = $4 AND $1 > received \
             AND $1 <= size",
        )
        .bind(i64_of(to))
        .bind(now)
        .bind(id)
        .bind(i64_of(from))
        .execute(&self.pool)
        .await
        .be()?
        .rows_affected()
            == 1)
    }

    async fn complete_blob(
        &self,
        id: uuid::Uuid,
        sha256: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        Ok(sqlx::query(
            "UPDATE blobs SET state = 'complete', sha256 = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'uploading' AND received = size",
        )
        .bind(sha256.to_vec())
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .be()?
        .rows_affected()
            == 1)
    }

    async fn delete_blob(&self, id: uuid::Uuid) -> StoreResult<bool> {
        Ok(sqlx::query("DELETE FROM blobs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .be()?
            .rows_affected()
            == 1)
    }

    async fn delete_conversation_blobs(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Vec<uuid::Uuid>> {
        sqlx::query("DELETE FROM blobs WHERE conversation_id = $1 RETURNING id")
            .bind(conversation.0)
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(|r| col(r, "id"))
            .collect()
    }

    async fn stale_uploads(&self, before: OffsetDateTime, limit: usize) -> StoreResult<Vec<Blob>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM blobs WHERE state = 'uploading' AND updated_at < $1 \
             ORDER BY updated_at, id LIMIT $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(before)
            .bind(i64_of(limit as u64))
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(blob_of)
            .collect()
    }

    async fn blob_bytes(&self) -> StoreResult<u64> {
        let used: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(size), 0)::BIGINT FROM blobs")
            .fetch_one(&self.pool)
            .await
            .be()?;
        u64_of(used)
    }

    async fn add_blob_refs(
        &self,
        conversation: ConversationId,
        message: MessageId,
        blobs: &[uuid::Uuid],
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.be()?;
        // Lock the blobs, so a concurrent release cannot delete one between check and insert.
        let found: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT id FROM blobs WHERE id = ANY($1) \
             AND conversation_id = $2 AND state = 'complete' FOR SHARE) b",
        )
        .bind(blobs)
        .bind(conversation.0)
        .fetch_one(&mut *tx)
        .await
        .be()?;
        let mut wanted = blobs.to_vec();
        wanted.sort();
        wanted.dedup();
        if u64_of(found)? != wanted.len() as u64 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO blob_refs (blob_id, message_id, conversation_id) \
             SELECT b, $2, $3 FROM UNNEST($1::UUID[]) AS b ON CONFLICT DO NOTHING",
        )
        .bind(&wanted)
        .bind(message.0)
        .bind(conversation.0)
        .execute(&mut *tx)
        .await
        .be()?;
        tx.commit().await.be()?;
        Ok(true)
    }

    async fn release_blob_refs(&self, messages: &[MessageId]) -> StoreResult<Vec<uuid::Uuid>> {
        let ids: Vec<uuid::Uuid> = messages.iter().map(|m| m.0).collect();
        let mut tx = self.pool.begin().await.be()?;
        let candidates: Vec<uuid::Uuid> = sqlx::query_scalar(
            "DELETE FROM blob_refs r WHERE r.message_id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.message_id = r.message_id) \
             AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.message_id = r.message_id) \
             RETURNING r.blob_id",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .be()?;
        let gone: Vec<uuid::Uuid> = sqlx::query_scalar(
            "DELETE FROM blobs WHERE id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM blob_refs r WHERE r.blob_id = blobs.id) RETURNING id",
        )
        .bind(&candidates)
        .fetch_all(&mut *tx)
        .await
        .be()?;
        tx.commit().await.be()?;
        Ok(gone)
    }

    async fn unreferenced_blobs(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<Blob>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM blobs WHERE state = 'complete' AND updated_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM blob_refs r WHERE r.blob_id = blobs.id) \
             ORDER BY updated_at, id LIMIT $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(before)
            .bind(i64_of(limit as u64))
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(blob_of)
            .collect()
    }
}
