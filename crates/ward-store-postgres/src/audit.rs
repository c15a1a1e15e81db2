//! The hash-chained audit log.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use ward_proto::{AuditRecord, DeviceId, UserId};
use ward_store::audit::{canonical_details, decode_hash, record_hash, truncate_to_micros};
use ward_store::{AuditCheckpoint, AuditEvent, AuditStore, StoreError, StoreResult};

use crate::PgStore;
use crate::util::{DbResultExt, col, i64_of, u64_of};

fn record_of(row: &PgRow) -> StoreResult<AuditRecord> {
    let details: String = col(row, "details")?;
    let user: Option<uuid::Uuid> = col(row, "actor_user_id")?;
    let device: Option<uuid::Uuid> = col(row, "actor_device_id")?;
    Ok(AuditRecord {
        seq: u64_of(col(row, "seq")?)?,
        at: col(row, "at")?,
        actor_user_id: user.map(UserId),
        actor_device_id: device.map(DeviceId),
        action: col(row, "action")?,
        target: col(row, "target")?,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("audit details are not JSON: {e}")))?,
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

/// Append one record inside the caller's transaction. Takes the chain's head row lock, which
/// serialises appends from every node: call it last in a transaction to hold it briefly.
pub(crate) async fn append_audit_in(
    tx: &mut PgConnection,
    event: &AuditEvent,
) -> StoreResult<AuditRecord> {
    // The head row lock serialises appends from every node: no two records share a seq
    // or a predecessor.
    let (head_seq, head_hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .be()?;
    let prev = decode_hash(&head_hash)
        .ok_or_else(|| StoreError::Corrupt("audit head hash is malformed".into()))?;
    let seq = u64_of(head_seq)? + 1;
    let at = truncate_to_micros(event.at);
    let user = event.actor_user_id.map(|u| u.to_string());
    let device = event.actor_device_id.map(|d| d.to_string());
    let details = canonical_details(&event.details);
    let hash = record_hash(
        &prev,
        seq,
        at,
        user.as_deref(),
        device.as_deref(),
        &event.action,
        event.target.as_deref(),
        &details,
    );
    let hash_hex = hex::encode(hash);
    sqlx::query(
        "INSERT INTO audit (seq, at, actor_user_id, actor_device_id, action, target, details, \
         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(i64_of(seq))
    .bind(at)
    .bind(event.actor_user_id.map(|u| u.0))
    .bind(event.actor_device_id.map(|d| d.0))
    .bind(&event.action)
    .bind(&event.target)
    .bind(&details)
    .bind(&head_hash)
    .bind(&hash_hex)
    .execute(&mut *tx)
    .await
    .write("audit record", "audit record")?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id")
        .bind(i64_of(seq))
        .bind(&hash_hex)
        .execute(&mut *tx)
        .await
        .be()?;
    Ok(AuditRecord {
        seq,
        at,
        actor_user_id: event.actor_user_id,
        actor_device_id: event.actor_device_id,
        action: event.action.clone(),
        target: event.target.clone(),
        details: event.details.clone(),
        prev_hash: head_hash,
        hash: hash_hex,
    })
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<AuditRecord> {
        let event = event.clone();
        self.group
            .run(move |conn| Box::pin(async move { append_audit_in(conn, &event).await }))
            .await
    }

    async fn audit_records(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query(
            "SELECT seq, at, actor_user_id, actor_device_id, action, target, details, prev_hash, \
             hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(i64_of(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(record_of)
        .collect()
    }

    async fn audit_head(&self) -> StoreResult<Option<(u64, String)>> {
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .be()?;
        head.map(|(seq, hash)| Ok((u64_of(seq)?, hash))).transpose()
    }

    async fn add_checkpoint(&self, c: &AuditCheckpoint) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, signature, at) VALUES ($1, $2, $3, $4)",
        )
        .bind(i64_of(c.seq))
        .bind(&c.hash)
        .bind(&c.signature)
        .bind(c.at)
        .execute(&self.pool)
        .await
        .write("checkpoint", "audit record")?;
        Ok(())
    }

    async fn checkpoints(&self) -> StoreResult<Vec<AuditCheckpoint>> {
        let rows: Vec<(i64, String, Vec<u8>, time::OffsetDateTime)> =
            sqlx::query_as("SELECT seq, hash, signature, at FROM audit_checkpoints ORDER BY seq")
                .fetch_all(&self.pool)
                .await
                .be()?;
        rows.into_iter()
            .map(|(seq, hash, signature, at)| {
                Ok(AuditCheckpoint {
                    seq: u64_of(seq)?,
                    hash,
                    signature,
                    at,
                })
            })
            .collect()
    }
}
