//! [`DeviceStore`], [`SessionStore`] and [`KeyPackageStore`].

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;
use ward_proto::{DeviceId, DeviceStatus, UserId};
use ward_store::{
    Device, DeviceStore, KeyPackageStore, Session, SessionStore, StoreError, StoreResult, WipeOrder,
};

use crate::SqliteStore;
use crate::codec::{Cols, Named, conflict, db, hash32, id, uint, us};

const DEVICE_COLUMNS: &str = "id, user_id, name, signature_key, credential, status, created_at, \
     revoked_at, last_seen_at";
const SESSION_COLUMNS: &str =
    "token_hash, user_id, device_id, created_at, last_used_at, expires_at";

fn device_from_row(r: &SqliteRow) -> StoreResult<Device> {
    let c = Cols(r);
    Ok(Device {
        id: DeviceId(c.uuid("id")?),
        user_id: UserId(c.uuid("user_id")?),
        name: c.text("name")?,
        signature_key: c.blob("signature_key")?,
        credential: c.blob("credential")?,
        status: c.named("status")?,
        created_at: c.time("created_at")?,
        revoked_at: c.opt_time("revoked_at")?,
        last_seen_at: c.opt_time("last_seen_at")?,
    })
}

fn session_from_row(r: &SqliteRow) -> StoreResult<Session> {
    let c = Cols(r);
    Ok(Session {
        token_hash: hash32(c.blob("token_hash")?)?,
        user_id: UserId(c.uuid("user_id")?),
        device_id: DeviceId(c.uuid("device_id")?),
        created_at: c.time("created_at")?,
        last_used_at: c.time("last_used_at")?,
        expires_at: c.time("expires_at")?,
    })
}

const WIPE_COLUMNS: &str = "device_id, user_id, nonce, ordered_at, delivered_at, confirmed_at";

fn wipe_from_row(r: &SqliteRow) -> StoreResult<WipeOrder> {
    let c = Cols(r);
    Ok(WipeOrder {
        device_id: DeviceId(c.uuid("device_id")?),
        user_id: UserId(c.uuid("user_id")?),
        nonce: hash32(c.blob("nonce")?)?,
        ordered_at: c.time("ordered_at")?,
        delivered_at: c.opt_time("delivered_at")?,
        confirmed_at: c.opt_time("confirmed_at")?,
    })
}

/// Revoke inside `tx`: mark revoked, delete sessions and KeyPackages, close routing. False if
/// the device was not active.
async fn revoke_in(
    tx: &mut Transaction<'static, Sqlite>,
    device: DeviceId,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let dev = id(device.0);
    let done =
        sqlx::query("UPDATE devices SET status = ?, revoked_at = ? WHERE id = ? AND status = ?")
            .bind(DeviceStatus::Revoked.name())
            .bind(us(now))
            .bind(&dev)
            .bind(DeviceStatus::Active.name())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM sessions WHERE device_id = ?",
        "DELETE FROM key_packages WHERE device_id = ?",
        "DELETE FROM last_resort_key_packages WHERE device_id = ?",
        // Stop routing: the device keeps what was sent before its revocation.
        "UPDATE routes SET until_seq = (SELECT c.last_seq FROM conversations c \
         WHERE c.id = routes.conversation_id) WHERE device_id = ? AND until_seq IS NULL",
    ] {
        sqlx::query(sql)
            .bind(&dev)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(true)
}

/// Insert a device row inside `tx`.
pub(crate) async fn insert_device(
    tx: &mut Transaction<'static, Sqlite>,
    d: &Device,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, signature_key, credential, status, created_at, \
         revoked_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id(d.id.0))
    .bind(id(d.user_id.0))
    .bind(&d.name)
    .bind(&d.signature_key)
    .bind(&d.credential)
    .bind(d.status.name())
    .bind(us(d.created_at))
    .bind(d.revoked_at.map(us))
    .bind(d.last_seen_at.map(us))
    .execute(&mut **tx)
    .await
    .map_err(conflict("device"))?;
    Ok(())
}

/// Insert a session row inside `tx`.
pub(crate) async fn insert_session(
    tx: &mut Transaction<'static, Sqlite>,
    s: &Session,
) -> StoreResult<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    )))
    .bind(&s.token_hash[..])
    .bind(id(s.user_id.0))
    .bind(id(s.device_id.0))
    .bind(us(s.created_at))
    .bind(us(s.last_used_at))
    .bind(us(s.expires_at))
    .execute(&mut **tx)
    .await
    .map_err(conflict("session"))?;
    Ok(())
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn create_device(&self, device: &Device, session: Option<&Session>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_device(&mut tx, device).await?;
        if let Some(s) = session {
            insert_session(&mut tx, s).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn device(&self, device: DeviceId) -> StoreResult<Option<Device>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?"
        )))
        .bind(id(device.0))
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(device_from_row)
        .transpose()
    }

    async fn devices_of_user(&self, user: UserId) -> StoreResult<Vec<Device>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY created_at, id"
        )))
        .bind(id(user.0))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(device_from_row)
        .collect()
    }

    async fn list_devices(&self) -> StoreResult<Vec<Device>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY created_at, id"
        )))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(device_from_row)
        .collect()
    }

    async fn revoke_device(&self, device: DeviceId, now: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = revoke_in(&mut tx, device, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn order_wipe(&self, order: &WipeOrder) -> StoreResult<bool> {
        let dev = id(order.device_id.0);
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT 1 FROM devices WHERE id = ?")
            .bind(&dev)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::NotFound("device"));
        }
        sqlx::query(
            "INSERT INTO wipe_orders (device_id, user_id, nonce, ordered_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&dev)
        .bind(id(order.user_id.0))
        .bind(&order.nonce[..])
        .bind(us(order.ordered_at))
        .execute(&mut *tx)
        .await
        .map_err(conflict("wipe order"))?;
        // Keep the hashes before revoke_in deletes the sessions.
        sqlx::query(
            "INSERT INTO wipe_tokens (token_hash, device_id) \
             SELECT token_hash, device_id FROM sessions WHERE device_id = ?",
        )
        .bind(&dev)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let revoked = revoke_in(&mut tx, order.device_id, order.ordered_at).await?;
        tx.commit().await.map_err(db)?;
        Ok(revoked)
    }

    async fn wipe_order(&self, device: DeviceId) -> StoreResult<Option<WipeOrder>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WIPE_COLUMNS} FROM wipe_orders WHERE device_id = ?"
        )))
        .bind(id(device.0))
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(wipe_from_row)
        .transpose()
    }

    async fn wipe_order_by_token(&self, token_hash: &[u8; 32]) -> StoreResult<Option<WipeOrder>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WIPE_COLUMNS} FROM wipe_orders WHERE device_id = \
             (SELECT device_id FROM wipe_tokens WHERE token_hash = ?)"
        )))
        .bind(&token_hash[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(wipe_from_row)
        .transpose()
    }

    async fn mark_wipe_delivered(&self, device: DeviceId, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE wipe_orders SET delivered_at = ? WHERE device_id = ? AND delivered_at IS NULL",
        )
        .bind(us(at))
        .bind(id(device.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn mark_wipe_confirmed(&self, device: DeviceId, at: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE wipe_orders SET confirmed_at = ? WHERE device_id = ? AND confirmed_at IS NULL",
        )
        .bind(us(at))
        .bind(id(device.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoked_devices(&self) -> StoreResult<Vec<DeviceId>> {
        sqlx::query("SELECT id FROM devices WHERE status = ? ORDER BY revoked_at, id")
            .bind(DeviceStatus::Revoked.name())
            .fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(|r| Cols(r).uuid("id").map(DeviceId))
            .collect()
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_session(&mut tx, session).await?;
        tx.commit().await.map_err(db)
    }

    async fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Session>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?"
        )))
        .bind(&token_hash[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    async fn touch_session(&self, token_hash: &[u8; 32], now: OffsetDateTime) -> StoreResult<()> {
        let token_hash = *token_hash;
        // Every active device touches its session every few seconds: batch them.
        self.group
            .run(move |tx| {
                Box::pin(async move {
                    let row = sqlx::query(
                        "UPDATE sessions SET last_used_at = ? WHERE token_hash = ? \
                         RETURNING device_id",
                    )
                    .bind(us(now))
                    .bind(&token_hash[..])
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                    // A session ended concurrently is not an error: there is nothing to record.
                    if let Some(row) = row {
                        let device: String = row.try_get("device_id").map_err(db)?;
                        sqlx::query("UPDATE devices SET last_seen_at = ? WHERE id = ?")
                            .bind(us(now))
                            .bind(device)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(&token_hash[..])
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_sessions(
        &self,
        idle_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE last_used_at < ? OR expires_at < ?")
            .bind(us(idle_before))
            .bind(us(now))
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl KeyPackageStore for SqliteStore {
    async fn add_key_packages(
        &self,
        device: DeviceId,
        one_time: &[Vec<u8>],
        last_resort: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let dev = id(device.0);
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT 1 FROM devices WHERE id = ?")
            .bind(&dev)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::NotFound("device"));
        }
        for kp in one_time {
            sqlx::query("INSERT INTO key_packages (device_id, data, created_at) VALUES (?, ?, ?)")
                .bind(&dev)
                .bind(kp)
                .bind(us(now))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if let Some(kp) = last_resort {
            sqlx::query(
                "INSERT INTO last_resort_key_packages (device_id, data, created_at) \
                 VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET \
                 data = excluded.data, created_at = excluded.created_at",
            )
            .bind(&dev)
            .bind(kp)
            .bind(us(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn claim_key_package(&self, device: DeviceId) -> StoreResult<Option<(Vec<u8>, bool)>> {
        let dev = id(device.0);
        let mut tx = self.write_tx().await?;
        let taken = sqlx::query(
            "DELETE FROM key_packages WHERE id = (SELECT id FROM key_packages \
             WHERE device_id = ? ORDER BY id LIMIT 1) RETURNING data",
        )
        .bind(&dev)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let claimed = match taken {
            Some(row) => Some((Cols(&row).blob("data")?, false)),
            None => sqlx::query("SELECT data FROM last_resort_key_packages WHERE device_id = ?")
                .bind(&dev)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .map(|row| Cols(&row).blob("data").map(|kp| (kp, true)))
                .transpose()?,
        };
        tx.commit().await.map_err(db)?;
        Ok(claimed)
    }

    async fn key_package_stock(&self, device: DeviceId) -> StoreResult<(u64, bool)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM key_packages WHERE device_id = ?1) AS remaining, \
             EXISTS (SELECT 1 FROM last_resort_key_packages WHERE device_id = ?1) AS last_resort",
        )
        .bind(id(device.0))
        .fetch_one(&self.reader)
        .await
        .map_err(db)?;
        let c = Cols(&row);
        Ok((uint(c.i64("remaining")?)?, c.i64("last_resort")? != 0))
    }
}
