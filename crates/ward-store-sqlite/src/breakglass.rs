//! [`BreakGlassStore`]: break-glass grants (ADR 0016) and the end of the membership they gave.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use uuid::Uuid;
use ward_proto::{ConversationId, DeviceId, UserId};
use ward_store::{BreakGlassEnd, BreakGlassRecord, BreakGlassStore, StoreError, StoreResult};

use crate::SqliteStore;
use crate::codec::{Cols, conflict, db, id, int, us};

const GRANT_COLUMNS: &str =
    "id, conversation_id, user_id, reason, granted_at, expires_at, added_at, ended_at";

fn grant_from_row(r: &SqliteRow) -> StoreResult<BreakGlassRecord> {
    let c = Cols(r);
    Ok(BreakGlassRecord {
        id: c.uuid("id")?,
        conversation_id: ConversationId(c.uuid("conversation_id")?),
        user_id: UserId(c.uuid("user_id")?),
        reason: c.text("reason")?,
        granted_at: c.time("granted_at")?,
        expires_at: c.time("expires_at")?,
        added_at: c.opt_time("added_at")?,
        ended_at: c.opt_time("ended_at")?,
    })
}

#[async_trait]
impl BreakGlassStore for SqliteStore {
    async fn create_break_glass(&self, g: &BreakGlassRecord) -> StoreResult<()> {
        let conv = id(g.conversation_id.0);
        let user = id(g.user_id.0);
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT 1 FROM conversations WHERE id = ?")
            .bind(&conv)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::NotFound("conversation"));
        }
        let member = sqlx::query(
            "SELECT 1 FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(&conv)
        .bind(&user)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if member.is_some() {
            return Err(StoreError::Conflict("conversation member"));
        }
        sqlx::query(
            "INSERT INTO break_glass_grants (id, conversation_id, user_id, reason, granted_at, \
             expires_at, added_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id(g.id))
        .bind(&conv)
        .bind(&user)
        .bind(&g.reason)
        .bind(us(g.granted_at))
        .bind(us(g.expires_at))
        .bind(g.added_at.map(us))
        .bind(g.ended_at.map(us))
        .execute(&mut *tx)
        .await
        .map_err(conflict("break-glass grant"))?;
        tx.commit().await.map_err(db)
    }

    async fn break_glass(&self, grant: Uuid) -> StoreResult<Option<BreakGlassRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM break_glass_grants WHERE id = ?"
        )))
        .bind(id(grant))
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(grant_from_row)
        .transpose()
    }

    async fn break_glass_grants(
        &self,
        conversation: Option<ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<BreakGlassRecord>> {
        let filter = if conversation.is_some() {
            "WHERE conversation_id = ?1"
        } else {
            "WHERE ?1 IS NULL"
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM break_glass_grants {filter} \
             ORDER BY granted_at DESC, id LIMIT ?2"
        )))
        .bind(conversation.map(|c| id(c.0)))
        .bind(int(limit as u64))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn expired_break_glass(&self, now: OffsetDateTime) -> StoreResult<Vec<BreakGlassRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM break_glass_grants \
             WHERE ended_at IS NULL AND expires_at <= ? ORDER BY expires_at, id"
        )))
        .bind(us(now))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn mark_break_glass_added(&self, grant: Uuid, at: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let ended: Option<Option<i64>> =
            sqlx::query_scalar("SELECT ended_at FROM break_glass_grants WHERE id = ?")
                .bind(id(grant))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some(ended) = ended else {
            return Err(StoreError::NotFound("break-glass grant"));
        };
        if ended.is_some() {
            return Ok(false);
        }
        sqlx::query("UPDATE break_glass_grants SET added_at = ? WHERE id = ? AND added_at IS NULL")
            .bind(us(at))
            .bind(id(grant))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn end_break_glass(
        &self,
        grant: Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<BreakGlassEnd> {
        let mut tx = self.write_tx().await?;
        let before = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM break_glass_grants WHERE id = ?"
        )))
        .bind(id(grant))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .as_ref()
        .map(grant_from_row)
        .transpose()?
        .ok_or(StoreError::NotFound("break-glass grant"))?;
        let ended_now = before.ended_at.is_none();
        let ended_at = before.ended_at.unwrap_or(now);
        if ended_now {
            sqlx::query("UPDATE break_glass_grants SET ended_at = ? WHERE id = ?")
                .bind(us(now))
                .bind(id(grant))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let conv = id(before.conversation_id.0);
        let user = id(before.user_id.0);
        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?")
            .bind(&conv)
            .bind(&user)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // She keeps what was sent before; nothing after the current last seq reaches her.
        let mut devices = sqlx::query(
            "UPDATE routes SET until_seq = (SELECT c.last_seq FROM conversations c \
             WHERE c.id = routes.conversation_id) WHERE conversation_id = ? AND until_seq IS NULL \
             AND device_id IN (SELECT d.id FROM devices d WHERE d.user_id = ?) \
             RETURNING device_id",
        )
        .bind(&conv)
        .bind(&user)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(|r| Ok(DeviceId(Cols(r).uuid("device_id")?)))
        .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(db)?;
        devices.sort();
        Ok(BreakGlassEnd {
            grant: BreakGlassRecord {
                ended_at: Some(ended_at),
                ..before
            },
            ended_now,
            devices,
        })
    }
}
