//! Journal keys and the journal archive. Copies are written by `append` (conversations.rs)
//! in the envelope's transaction.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};
use ward_proto::{ConversationId, DeviceId, JournalCopy, MessageId, UserId};
use ward_store::{JournalEntry, JournalKey, JournalQuery, JournalStore, StoreResult};

use crate::PgStore;
use crate::util::{DbResultExt, col, i64_of, u64_of};

fn entry_of(row: &PgRow) -> StoreResult<JournalEntry> {
    let ciphertext: Vec<u8> = col(row, "ciphertext")?;
    Ok(JournalEntry {
        archive_seq: u64_of(col(row, "archive_seq")?)?,
        message_id: MessageId(col(row, "message_id")?),
        conversation_id: ConversationId(col(row, "conversation_id")?),
        seq: u64_of(col(row, "seq")?)?,
        sender_user_id: UserId(col(row, "sender_user_id")?),
        sender_device_id: DeviceId(col(row, "sender_device_id")?),
        sent_at: col(row, "sent_at")?,
        copy: JournalCopy {
            key_id: col(row, "key_id")?,
            ciphertext: ciphertext.into(),
        },
    })
}

#[async_trait]
impl JournalStore for PgStore {
    async fn add_journal_key(&self, key: &JournalKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO journal_keys (key_id, public_key, created_at) VALUES ($1, $2, $3)",
        )
        .bind(&key.key_id)
        .bind(&key.public_key)
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .write("journal key", "journal key")?;
        Ok(())
    }

    async fn journal_keys(&self) -> StoreResult<Vec<JournalKey>> {
        sqlx::query(
            "SELECT key_id, public_key, created_at FROM journal_keys ORDER BY created_at, key_id",
        )
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(|r| {
            Ok(JournalKey {
                key_id: col(r, "key_id")?,
                public_key: col(r, "public_key")?,
                created_at: col(r, "created_at")?,
            })
        })
        .collect()
    }

    async fn journal_entries(&self, q: &JournalQuery) -> StoreResult<Vec<JournalEntry>> {
        let mut b: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT archive_seq, message_id, conversation_id, seq, sender_user_id, \
             sender_device_id, key_id, ciphertext, sent_at FROM journal WHERE archive_seq > ",
        );
        b.push_bind(i64_of(q.after));
        if let Some(c) = q.conversation_id {
            b.push(" AND conversation_id = ").push_bind(c.0);
        }
        if let Some(u) = q.sender_user_id {
            b.push(" AND sender_user_id = ").push_bind(u.0);
        }
        if let Some(t) = q.since {
            b.push(" AND sent_at >= ").push_bind(t);
        }
        if let Some(t) = q.until {
            b.push(" AND sent_at < ").push_bind(t);
        }
        b.push(" ORDER BY archive_seq LIMIT ")
            .push_bind(i64_of(q.limit as u64));
        b.build()
            .fetch_all(&self.pool)
            .await
            .be()?
            .iter()
            .map(entry_of)
            .collect()
    }
}
