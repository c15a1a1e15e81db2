//! Patient tags, message templates and do-not-disturb (ADR 0019). A tag insert locks its
//! conversation's row (`FOR UPDATE`) before counting, so concurrent inserts cannot exceed the
//! per-conversation limit.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use ward_proto::{ConversationId, TemplateName, TemplatePriority, UserId};
use ward_store::{
    ClinicalContextStore, DoNotDisturb, MessageTemplate, PatientTag, StoreError, StoreResult,
};

use crate::PgStore;
use crate::util::{DbResultExt, col, i64_of, u64_of};

fn template_of(r: &PgRow) -> StoreResult<MessageTemplate> {
    let name: String = col(r, "name")?;
    let priority: String = col(r, "priority")?;
    Ok(MessageTemplate {
        name: TemplateName::parse(&name)
            .map_err(|_| StoreError::Corrupt(format!("template name {name:?}")))?,
        text: col(r, "text")?,
        priority: TemplatePriority::parse(&priority)
            .ok_or_else(|| StoreError::Corrupt(format!("template priority {priority:?}")))?,
        created_at: col(r, "created_at")?,
    })
}

fn dnd_of(r: &PgRow) -> StoreResult<DoNotDisturb> {
    Ok(DoNotDisturb {
        user_id: UserId(col(r, "user_id")?),
        cover_user_id: UserId(col(r, "cover_user_id")?),
        until: col(r, "until_at")?,
        since: col(r, "since")?,
    })
}

#[async_trait]
impl ClinicalContextStore for PgStore {
    async fn add_patient_tag(
        &self,
        tag: &PatientTag,
        max_per_conversation: usize,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        if sqlx::query("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE")
            .bind(tag.conversation_id.0)
            .fetch_optional(&mut *tx)
            .await
            .be()?
            .is_none()
        {
            return Err(StoreError::NotFound("conversation"));
        }
        if sqlx::query("SELECT 1 FROM journal_keys WHERE key_id = $1")
            .bind(&tag.key_id)
            .fetch_optional(&mut *tx)
            .await
            .be()?
            .is_none()
        {
            return Err(StoreError::NotFound("journal key"));
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM patient_tags WHERE conversation_id = $1")
                .bind(tag.conversation_id.0)
                .fetch_one(&mut *tx)
                .await
                .be()?;
        if count >= i64_of(max_per_conversation as u64) {
            return Err(StoreError::Conflict("patient tag"));
        }
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO patient_tags (conversation_id, key_id, tag, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING index_seq",
        )
        .bind(tag.conversation_id.0)
        .bind(&tag.key_id)
        .bind(&tag.tag)
        .bind(tag.created_at)
        .fetch_one(&mut *tx)
        .await
        .write("patient tag", "journal key")?;
        tx.commit().await.be()?;
        u64_of(seq)
    }

    async fn patient_tags(&self, after: u64, limit: usize) -> StoreResult<Vec<PatientTag>> {
        sqlx::query(
            "SELECT index_seq, conversation_id, key_id, tag, created_at FROM patient_tags \
             WHERE index_seq > $1 ORDER BY index_seq LIMIT $2",
        )
        .bind(i64_of(after))
        .bind(i64_of(limit as u64))
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(|r| {
            Ok(PatientTag {
                index_seq: u64_of(col(r, "index_seq")?)?,
                conversation_id: ConversationId(col(r, "conversation_id")?),
                key_id: col(r, "key_id")?,
                tag: col(r, "tag")?,
                created_at: col(r, "created_at")?,
            })
        })
        .collect()
    }

    async fn create_template(&self, t: &MessageTemplate) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO message_templates (name, text, priority, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(t.name.as_str())
        .bind(&t.text)
        .bind(t.priority.as_str())
        .bind(t.created_at)
        .execute(&self.pool)
        .await
        .write("template", "template")?;
        Ok(())
    }

    async fn template(&self, name: &TemplateName) -> StoreResult<Option<MessageTemplate>> {
        sqlx::query(
            "SELECT name, text, priority, created_at FROM message_templates WHERE name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(template_of)
        .transpose()
    }

    async fn templates(&self) -> StoreResult<Vec<MessageTemplate>> {
        sqlx::query("SELECT name, text, priority, created_at FROM message_templates ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(template_of)
            .collect()
    }

    async fn delete_template(&self, name: &TemplateName) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM message_templates WHERE name = $1")
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .be()?
            .rows_affected();
        Ok(n == 1)
    }

    async fn set_dnd(&self, d: &DoNotDisturb) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO do_not_disturb (user_id, cover_user_id, until_at, since) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET \
             cover_user_id = excluded.cover_user_id, until_at = excluded.until_at, \
             since = excluded.since",
        )
        .bind(d.user_id.0)
        .bind(d.cover_user_id.0)
        .bind(d.until)
        .bind(d.since)
        .execute(&self.pool)
        .await
        .write("do-not-disturb", "user")?;
        Ok(())
    }

    async fn clear_dnd(&self, user: UserId) -> StoreResult<Option<DoNotDisturb>> {
        sqlx::query(
            "DELETE FROM do_not_disturb WHERE user_id = $1 \
             RETURNING user_id, cover_user_id, until_at, since",
        )
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(dnd_of)
        .transpose()
    }

    async fn dnds(&self) -> StoreResult<Vec<DoNotDisturb>> {
        sqlx::query(
            "SELECT user_id, cover_user_id, until_at, since FROM do_not_disturb ORDER BY user_id",
        )
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(dnd_of)
        .collect()
    }
}
