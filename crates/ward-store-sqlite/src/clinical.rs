//! [`ClinicalContextStore`]: patient tags, message templates, do-not-disturb. Checked inserts
//! run in one `BEGIN IMMEDIATE` transaction on the single writer.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use ward_proto::{ConversationId, TemplateName, TemplatePriority, UserId};
use ward_store::{
    ClinicalContextStore, DoNotDisturb, MessageTemplate, PatientTag, StoreError, StoreResult,
};

use crate::SqliteStore;
use crate::codec::{Cols, conflict, db, id, int, us};

fn template_of(r: &SqliteRow) -> StoreResult<MessageTemplate> {
    let c = Cols(r);
    let name = c.text("name")?;
    let priority = c.text("priority")?;
    Ok(MessageTemplate {
        name: TemplateName::parse(&name)
            .map_err(|_| StoreError::Corrupt(format!("template name {name:?}")))?,
        text: c.text("text")?,
        priority: TemplatePriority::parse(&priority)
            .ok_or_else(|| StoreError::Corrupt(format!("template priority {priority:?}")))?,
        created_at: c.time("created_at")?,
    })
}

fn dnd_of(r: &SqliteRow) -> StoreResult<DoNotDisturb> {
    let c = Cols(r);
    Ok(DoNotDisturb {
        user_id: UserId(c.uuid("user_id")?),
        cover_user_id: UserId(c.uuid("cover_user_id")?),
        until: c.opt_time("until_at")?,
        since: c.time("since")?,
    })
}

#[async_trait]
impl ClinicalContextStore for SqliteStore {
    async fn add_patient_tag(
        &self,
        tag: &PatientTag,
        max_per_conversation: usize,
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let one = |sql: &'static str, key: String| sqlx::query(sql).bind(key);
        if one(
            "SELECT 1 FROM conversations WHERE id = ?",
            id(tag.conversation_id.0),
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .is_none()
        {
            return Err(StoreError::NotFound("conversation"));
        }
        if one(
            "SELECT 1 FROM journal_keys WHERE key_id = ?",
            tag.key_id.clone(),
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .is_none()
        {
            return Err(StoreError::NotFound("journal key"));
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM patient_tags WHERE conversation_id = ?")
                .bind(id(tag.conversation_id.0))
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        if count >= int(max_per_conversation as u64) {
            return Err(StoreError::Conflict("patient tag"));
        }
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO patient_tags (conversation_id, key_id, tag, created_at) \
             VALUES (?, ?, ?, ?) RETURNING index_seq",
        )
        .bind(id(tag.conversation_id.0))
        .bind(&tag.key_id)
        .bind(&tag.tag)
        .bind(us(tag.created_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        crate::codec::uint(seq)
    }

    async fn patient_tags(&self, after: u64, limit: usize) -> StoreResult<Vec<PatientTag>> {
        sqlx::query(
            "SELECT index_seq, conversation_id, key_id, tag, created_at FROM patient_tags \
             WHERE index_seq > ? ORDER BY index_seq LIMIT ?",
        )
        .bind(int(after))
        .bind(int(limit as u64))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let c = Cols(r);
            Ok(PatientTag {
                index_seq: c.u64("index_seq")?,
                conversation_id: ConversationId(c.uuid("conversation_id")?),
                key_id: c.text("key_id")?,
                tag: c.blob("tag")?,
                created_at: c.time("created_at")?,
            })
        })
        .collect()
    }

    async fn create_template(&self, t: &MessageTemplate) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO message_templates (name, text, priority, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(t.name.as_str())
        .bind(&t.text)
        .bind(t.priority.as_str())
        .bind(us(t.created_at))
        .execute(&mut *tx)
        .await
        .map_err(conflict("template"))?;
        tx.commit().await.map_err(db)
    }

    async fn template(&self, name: &TemplateName) -> StoreResult<Option<MessageTemplate>> {
        sqlx::query("SELECT name, text, priority, created_at FROM message_templates WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?
            .as_ref()
            .map(template_of)
            .transpose()
    }

    async fn templates(&self) -> StoreResult<Vec<MessageTemplate>> {
        sqlx::query("SELECT name, text, priority, created_at FROM message_templates ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(template_of)
            .collect()
    }

    async fn delete_template(&self, name: &TemplateName) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("DELETE FROM message_templates WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(n == 1)
    }

    async fn set_dnd(&self, d: &DoNotDisturb) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for u in [d.user_id, d.cover_user_id] {
            if sqlx::query("SELECT 1 FROM users WHERE id = ?")
                .bind(id(u.0))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .is_none()
            {
                return Err(StoreError::NotFound("user"));
            }
        }
        sqlx::query(
            "INSERT INTO do_not_disturb (user_id, cover_user_id, until_at, since) \
             VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET \
             cover_user_id = excluded.cover_user_id, until_at = excluded.until_at, \
             since = excluded.since",
        )
        .bind(id(d.user_id.0))
        .bind(id(d.cover_user_id.0))
        .bind(d.until.map(us))
        .bind(us(d.since))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn clear_dnd(&self, user: UserId) -> StoreResult<Option<DoNotDisturb>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "DELETE FROM do_not_disturb WHERE user_id = ? \
             RETURNING user_id, cover_user_id, until_at, since",
        )
        .bind(id(user.0))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let out = row.as_ref().map(dnd_of).transpose()?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn dnds(&self) -> StoreResult<Vec<DoNotDisturb>> {
        sqlx::query(
            "SELECT user_id, cover_user_id, until_at, since FROM do_not_disturb ORDER BY user_id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(dnd_of)
        .collect()
    }
}
