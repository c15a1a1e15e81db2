//! [`JournalStore`]: journal keys and the journal archive. Copies are written by `append`
//! (conversations.rs) in the envelope's transaction.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};
use ward_proto::{ConversationId, DeviceId, JournalCopy, MessageId, UserId};
use ward_store::{JournalEntry, JournalKey, JournalQuery, JournalStore, StoreResult};

use crate::SqliteStore;
use crate::codec::{Cols, conflict, db, id, int, us};

fn entry_from_row(r: &SqliteRow) -> StoreResult<JournalEntry> {
    let c = Cols(r);
    Ok(JournalEntry {
        archive_seq: c.u64("archive_seq")?,
        message_id: MessageId(c.uuid("message_id")?),
        conversation_id: ConversationId(c.uuid("conversation_id")?),
        seq: c.u64("seq")?,
        sender_user_id: UserId(c.uuid("sender_user_id")?),
        sender_device_id: DeviceId(c.uuid("sender_device_id")?),
        sent_at: c.time("sent_at")?,
        copy: JournalCopy {
            key_id: c.text("key_id")?,
            ciphertext: c.blob("ciphertext")?.into(),
        },
    })
}

#[async_trait]
impl JournalStore for SqliteStore {
    async fn add_journal_key(&self, key: &JournalKey) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO journal_keys (key_id, public_key, created_at) VALUES (?, ?, ?)")
            .bind(&key.key_id)
            .bind(&key.public_key)
            .bind(us(key.created_at))
            .execute(&mut *tx)
            .await
            .map_err(conflict("journal key"))?;
        tx.commit().await.map_err(db)
    }

    async fn journal_keys(&self) -> StoreResult<Vec<JournalKey>> {
        sqlx::query(
            "SELECT key_id, public_key, created_at FROM journal_keys ORDER BY created_at, key_id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let c = Cols(r);
            Ok(JournalKey {
                key_id: c.text("key_id")?,
                public_key: c.blob("public_key")?,
                created_at: c.time("created_at")?,
            })
        })
        .collect()
    }

    async fn journal_entries(&self, q: &JournalQuery) -> StoreResult<Vec<JournalEntry>> {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT archive_seq, message_id, conversation_id, seq, sender_user_id, \
             sender_device_id, key_id, ciphertext, sent_at FROM journal WHERE archive_seq > ",
        );
        b.push_bind(int(q.after));
        if let Some(c) = q.conversation_id {
            b.push(" AND conversation_id = ").push_bind(id(c.0));
        }
        if let Some(u) = q.sender_user_id {
            b.push(" AND sender_user_id = ").push_bind(id(u.0));
        }
        if let Some(t) = q.since {
            b.push(" AND sent_at >= ").push_bind(us(t));
        }
        if let Some(t) = q.until {
            b.push(" AND sent_at < ").push_bind(us(t));
        }
        b.push(" ORDER BY archive_seq LIMIT ")
            .push_bind(int(q.limit as u64));
        b.build()
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(entry_from_row)
            .collect()
    }
}
