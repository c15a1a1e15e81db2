//! [`AuditStore`]: the hash-chained audit log and its signed checkpoints.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;
use ward_proto::{AuditRecord, DeviceId, UserId};
use ward_store::audit::{
    GENESIS_HASH, canonical_details, decode_hash, record_hash, truncate_to_micros,
};
use ward_store::{AuditCheckpoint, AuditEvent, AuditStore, StoreError, StoreResult};

use crate::SqliteStore;
use crate::codec::{Cols, conflict, db, hex, id, int, us};

const AUDIT_COLUMNS: &str =
    "seq, at, actor_user_id, actor_device_id, action, target, details, prev_hash, hash";

fn parse_details(s: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))
}

fn record_from_row(r: &SqliteRow) -> StoreResult<AuditRecord> {
    let c = Cols(r);
    Ok(AuditRecord {
        seq: c.u64("seq")?,
        at: c.time("at")?,
        actor_user_id: c.opt_uuid("actor_user_id")?.map(UserId),
        actor_device_id: c.opt_uuid("actor_device_id")?.map(DeviceId),
        action: c.text("action")?,
        target: c.opt_text("target")?,
        details: parse_details(&c.text("details")?)?,
        prev_hash: c.text("prev_hash")?,
        hash: c.text("hash")?,
    })
}

/// Append one record inside the caller's transaction (a group-commit batch, or a send's).
pub(crate) async fn append_audit_in(
    tx: &mut SqliteConnection,
    event: &AuditEvent,
) -> StoreResult<AuditRecord> {
    let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    let (prev_seq, prev_hash) = match head {
        None => (0, GENESIS_HASH),
        Some(r) => {
            let c = Cols(&r);
            let hash = c.text("hash")?;
            let hash = decode_hash(&hash)
                .ok_or_else(|| StoreError::Corrupt("audit head hash is not hex".into()))?;
            (c.u64("seq")?, hash)
        }
    };
    let seq = prev_seq + 1;
    let at = truncate_to_micros(event.at);
    let user = event.actor_user_id.map(|u| id(u.0));
    let device = event.actor_device_id.map(|d| id(d.0));
    let details = canonical_details(&event.details);
    let hash = record_hash(
        &prev_hash,
        seq,
        at,
        user.as_deref(),
        device.as_deref(),
        &event.action,
        event.target.as_deref(),
        &details,
    );
    let record = AuditRecord {
        seq,
        at,
        actor_user_id: event.actor_user_id,
        actor_device_id: event.actor_device_id,
        action: event.action.clone(),
        target: event.target.clone(),
        // What a reader will get back from the stored canonical text.
        details: parse_details(&details)?,
        prev_hash: hex(&prev_hash),
        hash: hex(&hash),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )))
    .bind(int(seq))
    .bind(us(at))
    .bind(&user)
    .bind(&device)
    .bind(&record.action)
    .bind(&record.target)
    .bind(&details)
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut *tx)
    .await
    .map_err(conflict("audit record"))?;
    Ok(record)
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<AuditRecord> {
        let event = event.clone();
        self.group
            .run(move |conn| Box::pin(async move { append_audit_in(conn, &event).await }))
            .await
    }

    async fn audit_records(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"
        )))
        .bind(int(after))
        .bind(int(limit as u64))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(record_from_row)
        .collect()
    }

    async fn audit_head(&self) -> StoreResult<Option<(u64, String)>> {
        sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?
            .map(|r| {
                let c = Cols(&r);
                Ok((c.u64("seq")?, c.text("hash")?))
            })
            .transpose()
    }

    async fn add_checkpoint(&self, c: &AuditCheckpoint) -> StoreResult<()> {
        sqlx::query("INSERT INTO audit_checkpoints (seq, hash, signature, at) VALUES (?, ?, ?, ?)")
            .bind(int(c.seq))
            .bind(&c.hash)
            .bind(&c.signature)
            .bind(us(c.at))
            .execute(&self.writer)
            .await
            .map_err(conflict("checkpoint"))?;
        Ok(())
    }

    async fn checkpoints(&self) -> StoreResult<Vec<AuditCheckpoint>> {
        sqlx::query("SELECT seq, hash, signature, at FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                let c = Cols(r);
                Ok(AuditCheckpoint {
                    seq: c.u64("seq")?,
                    hash: c.text("hash")?,
                    signature: c.blob("signature")?,
                    at: c.time("at")?,
                })
            })
            .collect()
    }
}
