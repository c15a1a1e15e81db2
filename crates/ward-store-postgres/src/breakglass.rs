//! [`BreakGlassStore`]: break-glass grants (ADR 0016) and the end of the membership they gave.
//! Changes to membership lock the conversation row (`FOR NO KEY UPDATE`), as `append` does,
//! so ending a grant and a commit adding the grantee are serialised.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;
use ward_proto::{ConversationId, DeviceId, UserId};
use ward_store::{BreakGlassEnd, BreakGlassRecord, BreakGlassStore, StoreError, StoreResult};

use crate::PgStore;
use crate::util::{DbResultExt, col, i64_of};

const GRANT_COLS: &str =
    "id, conversation_id, user_id, reason, granted_at, expires_at, added_at, ended_at";

fn grant_of(row: &PgRow) -> StoreResult<BreakGlassRecord> {
    Ok(BreakGlassRecord {
        id: col(row, "id")?,
        conversation_id: ConversationId(col(row, "conversation_id")?),
        user_id: UserId(col(row, "user_id")?),
        reason: col(row, "reason")?,
        granted_at: col(row, "granted_at")?,
        expires_at: col(row, "expires_at")?,
        added_at: col(row, "added_at")?,
        ended_at: col(row, "ended_at")?,
    })
}

#[async_trait]
impl BreakGlassStore for PgStore {
    async fn create_break_glass(&self, g: &BreakGlassRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM conversations WHERE id = $1 FOR NO KEY UPDATE")
                .bind(g.conversation_id.0)
                .fetch_optional(&mut *tx)
                .await
                .be()?;
        if exists.is_none() {
            return Err(StoreError::NotFound("conversation"));
        }
        let member: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM conversation_members WHERE conversation_id = $1 AND user_id = $2 \
             AND removed_seq IS NULL",
        )
        .bind(g.conversation_id.0)
        .bind(g.user_id.0)
        .fetch_optional(&mut *tx)
        .await
        .be()?;
        if member.is_some() {
            return Err(StoreError::Conflict("conversation member"));
        }
        sqlx::query(
            "INSERT INTO break_glass_grants (id, conversation_id, user_id, reason, granted_at, \
             expires_at, added_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(g.id)
        .bind(g.conversation_id.0)
        .bind(g.user_id.0)
        .bind(&g.reason)
        .bind(g.granted_at)
        .bind(g.expires_at)
        .bind(g.added_at)
        .bind(g.ended_at)
        .execute(&mut *tx)
        .await
        .write("break-glass grant", "user")?;
        tx.commit().await.be()
    }

    async fn break_glass(&self, grant: Uuid) -> StoreResult<Option<BreakGlassRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLS} FROM break_glass_grants WHERE id = $1"
        )))
        .bind(grant)
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(grant_of)
        .transpose()
    }

    async fn break_glass_grants(
        &self,
        conversation: Option<ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<BreakGlassRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLS} FROM break_glass_grants \
             WHERE ($1::uuid IS NULL OR conversation_id = $1) \
             ORDER BY granted_at DESC, id LIMIT $2"
        )))
        .bind(conversation.map(|c| c.0))
        .bind(i64_of(limit as u64))
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(grant_of)
        .collect()
    }

    async fn expired_break_glass(&self, now: OffsetDateTime) -> StoreResult<Vec<BreakGlassRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLS} FROM break_glass_grants \
             WHERE ended_at IS NULL AND expires_at <= $1 ORDER BY expires_at, id"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(grant_of)
        .collect()
    }

    async fn mark_break_glass_added(&self, grant: Uuid, at: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let ended: Option<Option<OffsetDateTime>> =
            sqlx::query_scalar("SELECT ended_at FROM break_glass_grants WHERE id = $1 FOR UPDATE")
                .bind(grant)
                .fetch_optional(&mut *tx)
                .await
                .be()?;
        let Some(ended) = ended else {
            return Err(StoreError::NotFound("break-glass grant"));
        };
        if ended.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE break_glass_grants SET added_at = $1 WHERE id = $2 AND added_at IS NULL",
        )
        .bind(at)
        .bind(grant)
        .execute(&mut *tx)
        .await
        .be()?;
        tx.commit().await.be()?;
        Ok(true)
    }

    async fn end_break_glass(
        &self,
        grant: Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<BreakGlassEnd> {
        let mut tx = self.begin().await?;
        let conversation: Option<Uuid> =
            sqlx::query_scalar("SELECT conversation_id FROM break_glass_grants WHERE id = $1")
                .bind(grant)
                .fetch_optional(&mut *tx)
                .await
                .be()?;
        let conversation = conversation.ok_or(StoreError::NotFound("break-glass grant"))?;
        // Conversation first, as append does, then the grant.
        let last_seq: i64 = sqlx::query_scalar(
            "SELECT last_seq FROM conversations WHERE id = $1 FOR NO KEY UPDATE",
        )
        .bind(conversation)
        .fetch_one(&mut *tx)
        .await
        .be()?;
        let before = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLS} FROM break_glass_grants WHERE id = $1 FOR UPDATE"
        )))
        .bind(grant)
        .fetch_one(&mut *tx)
        .await
        .be()
        .and_then(|r| grant_of(&r))?;
        let ended_now = before.ended_at.is_none();
        let ended_at = before.ended_at.unwrap_or(now);
        if ended_now {
            sqlx::query("UPDATE break_glass_grants SET ended_at = $1 WHERE id = $2")
                .bind(now)
                .bind(grant)
                .execute(&mut *tx)
                .await
                .be()?;
        }
        sqlx::query(
            "UPDATE conversation_members SET removed_seq = $3 WHERE conversation_id = $1 \
             AND user_id = $2 AND removed_seq IS NULL",
        )
        .bind(conversation)
        .bind(before.user_id.0)
        .bind(last_seq)
        .execute(&mut *tx)
        .await
        .be()?;
        // She keeps what was sent before; nothing after the current last seq reaches her.
        let mut devices: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE conversation_devices SET until_seq = $3 WHERE conversation_id = $1 \
             AND user_id = $2 AND until_seq IS NULL RETURNING device_id",
        )
        .bind(conversation)
        .bind(before.user_id.0)
        .bind(last_seq)
        .fetch_all(&mut *tx)
        .await
        .be()?;
        tx.commit().await.be()?;
        devices.sort();
        Ok(BreakGlassEnd {
            grant: BreakGlassRecord {
                ended_at: Some(ended_at),
                ..before
            },
            ended_now,
            devices: devices.into_iter().map(DeviceId).collect(),
        })
    }
}
