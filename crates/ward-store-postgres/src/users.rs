//! Users, enrollment, devices, sessions and KeyPackages.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;
use ward_proto::{DeviceId, UserId, UserStatus, Username};
use ward_store::{
    Device, DeviceStore, Enrollment, EnrollmentCode, KeyPackageStore, Session, SessionStore,
    StoreError, StoreResult, User, UserStore, WipeOrder,
};

use crate::PgStore;
use crate::util::{
    DbResultExt, col, device_status_of, device_status_str, hash32, role_of, user_status_of,
    user_status_str,
};

const WIPE_COLS: &str = "device_id, user_id, nonce, ordered_at, delivered_at, confirmed_at";

fn wipe_of(row: &PgRow) -> StoreResult<WipeOrder> {
    Ok(WipeOrder {
        device_id: DeviceId(col(row, "device_id")?),
        user_id: UserId(col(row, "user_id")?),
        nonce: hash32(col(row, "nonce")?, "wipe nonce")?,
        ordered_at: col(row, "ordered_at")?,
        delivered_at: col(row, "delivered_at")?,
        confirmed_at: col(row, "confirmed_at")?,
    })
}

/// Revoke inside `tx`: mark revoked, delete sessions and KeyPackages, close routing. False if
/// the device was not active.
async fn revoke_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    id: DeviceId,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    // Locks the device row first (the order `append` uses too), so a commit welcoming this
    // device either finishes before (and its routing row is closed below) or sees it revoked.
    let revoked = sqlx::query(
        "UPDATE devices SET status = 'revoked', revoked_at = $2 \
         WHERE id = $1 AND status = 'active'",
    )
    .bind(id.0)
    .bind(now)
    .execute(&mut **tx)
    .await
    .be()?;
    if revoked.rows_affected() != 1 {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM sessions WHERE device_id = $1",
        "DELETE FROM key_packages WHERE device_id = $1",
        "DELETE FROM last_resort_key_packages WHERE device_id = $1",
    ] {
        sqlx::query(sql).bind(id.0).execute(&mut **tx).await.be()?;
    }
    // Lock the routing rows in conversation order (as record_receipts does), then close
    // them at each conversation's current last seq.
    sqlx::query(
        "SELECT 1 FROM conversation_devices WHERE device_id = $1 AND until_seq IS NULL \
         ORDER BY conversation_id FOR NO KEY UPDATE",
    )
    .bind(id.0)
    .execute(&mut **tx)
    .await
    .be()?;
    sqlx::query(
        "UPDATE conversation_devices cd SET until_seq = c.last_seq FROM conversations c \
         WHERE c.id = cd.conversation_id AND cd.device_id = $1 AND cd.until_seq IS NULL",
    )
    .bind(id.0)
    .execute(&mut **tx)
    .await
    .be()?;
    Ok(true)
}

const USER_COLS: &str = "id, username, display_name, role, status, password_hash, \
     totp_secret_enc, failed_logins, locked_until, created_at";

fn user_of(row: &PgRow) -> StoreResult<User> {
    let username: String = col(row, "username")?;
    let role: String = col(row, "role")?;
    let status: String = col(row, "status")?;
    let failed: i32 = col(row, "failed_logins")?;
    Ok(User {
        id: UserId(col(row, "id")?),
        username: Username::parse(&username)
            .map_err(|_| StoreError::Corrupt("stored username is invalid".into()))?,
        display_name: col(row, "display_name")?,
        role: role_of(&role)?,
        status: user_status_of(&status)?,
        password_hash: col(row, "password_hash")?,
        totp_secret_enc: col(row, "totp_secret_enc")?,
        failed_logins: u32::try_from(failed)
            .map_err(|_| StoreError::Corrupt("negative failed_logins".into()))?,
        locked_until: col(row, "locked_until")?,
        created_at: col(row, "created_at")?,
    })
}

const DEVICE_COLS: &str = "id, user_id, name, signature_key, credential, status, created_at, \
     revoked_at, last_seen_at";

pub(crate) fn device_of(row: &PgRow) -> StoreResult<Device> {
    let status: String = col(row, "status")?;
    Ok(Device {
        id: DeviceId(col(row, "id")?),
        user_id: UserId(col(row, "user_id")?),
        name: col(row, "name")?,
        signature_key: col(row, "signature_key")?,
        credential: col(row, "credential")?,
        status: device_status_of(&status)?,
        created_at: col(row, "created_at")?,
        revoked_at: col(row, "revoked_at")?,
        last_seen_at: col(row, "last_seen_at")?,
    })
}

fn session_of(row: &PgRow) -> StoreResult<Session> {
    Ok(Session {
        token_hash: hash32(col(row, "token_hash")?, "token hash")?,
        user_id: UserId(col(row, "user_id")?),
        device_id: DeviceId(col(row, "device_id")?),
        created_at: col(row, "created_at")?,
        last_used_at: col(row, "last_used_at")?,
        expires_at: col(row, "expires_at")?,
    })
}

async fn insert_device(conn: &mut sqlx::PgConnection, d: &Device) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, signature_key, credential, status, created_at, \
         revoked_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(d.id.0)
    .bind(d.user_id.0)
    .bind(&d.name)
    .bind(&d.signature_key)
    .bind(&d.credential)
    .bind(device_status_str(d.status))
    .bind(d.created_at)
    .bind(d.revoked_at)
    .bind(d.last_seen_at)
    .execute(conn)
    .await
    .write("device", "user")?;
    Ok(())
}

async fn insert_session(conn: &mut sqlx::PgConnection, s: &Session) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, device_id, created_at, last_used_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.token_hash[..])
    .bind(s.user_id.0)
    .bind(s.device_id.0)
    .bind(s.created_at)
    .bind(s.last_used_at)
    .bind(s.expires_at)
    .execute(conn)
    .await
    .write("session", "device")?;
    Ok(())
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, user: &User, code: &EnrollmentCode) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(user.id.0)
        .bind(user.username.as_str())
        .bind(&user.display_name)
        .bind(user.role.as_str())
        .bind(user_status_str(user.status))
        .bind(&user.password_hash)
        .bind(&user.totp_secret_enc)
        .bind(i32::try_from(user.failed_logins).unwrap_or(i32::MAX))
        .bind(user.locked_until)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .write("user", "user")?;
        sqlx::query(
            "INSERT INTO enrollment_codes (user_id, code_hash, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(user.id.0)
        .bind(&code.code_hash[..])
        .bind(code.expires_at)
        .execute(&mut *tx)
        .await
        .write("enrollment code", "user")?;
        tx.commit().await.be()
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE id = $1"
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(user_of)
        .transpose()
    }

    async fn user_by_name(&self, username: &Username) -> StoreResult<Option<User>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE username = $1"
        )))
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(user_of)
        .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users ORDER BY username COLLATE \"C\""
        )))
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(user_of)
        .collect()
    }

    async fn enrollment_code(&self, user: UserId) -> StoreResult<Option<EnrollmentCode>> {
        let row: Option<(Vec<u8>, OffsetDateTime)> =
            sqlx::query_as("SELECT code_hash, expires_at FROM enrollment_codes WHERE user_id = $1")
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await
                .be()?;
        row.map(|(h, expires_at)| {
            Ok(EnrollmentCode {
                code_hash: hash32(h, "enrollment code hash")?,
                expires_at,
            })
        })
        .transpose()
    }

    async fn set_enrollment_code(&self, user: UserId, code: &EnrollmentCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO enrollment_codes (user_id, code_hash, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET code_hash = EXCLUDED.code_hash, \
             expires_at = EXCLUDED.expires_at",
        )
        .bind(user.0)
        .bind(&code.code_hash[..])
        .bind(code.expires_at)
        .execute(&self.pool)
        .await
        .write("enrollment code", "user")?;
        Ok(())
    }

    async fn complete_enrollment(&self, e: &Enrollment) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Deleting the matching, unexpired code is the consumption: of concurrent attempts
        // exactly one deletes the row, the others wait on its lock and then find nothing.
        let consumed = sqlx::query(
            "DELETE FROM enrollment_codes WHERE user_id = $1 AND code_hash = $2 AND expires_at > $3",
        )
        .bind(e.user_id.0)
        .bind(&e.code_hash[..])
        .bind(e.now)
        .execute(&mut *tx)
        .await
        .be()?;
        if consumed.rows_affected() != 1 {
            return Err(StoreError::AlreadyConsumed);
        }
        let updated = sqlx::query(
            "UPDATE users SET password_hash = $2, totp_secret_enc = $3, status = 'active', \
             failed_logins = 0, locked_until = NULL WHERE id = $1",
        )
        .bind(e.user_id.0)
        .bind(&e.password_hash)
        .bind(&e.totp_secret_enc)
        .execute(&mut *tx)
        .await
        .be()?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound("user"));
        }
        insert_device(&mut tx, &e.device).await?;
        insert_session(&mut tx, &e.session).await?;
        tx.commit().await.be()
    }

    async fn set_user_status(&self, user: UserId, status: UserStatus) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query("UPDATE users SET status = $2 WHERE id = $1")
            .bind(user.0)
            .bind(user_status_str(status))
            .execute(&mut *tx)
            .await
            .be()?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound("user"));
        }
        let deleted = if status == UserStatus::Suspended {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .be()?
                .rows_affected()
        } else {
            0
        };
        tx.commit().await.be()?;
        Ok(deleted)
    }

    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: &[u8; 32],
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL \
             WHERE id = $1",
        )
        .bind(user.0)
        .bind(password_hash)
        .execute(&mut *tx)
        .await
        .be()?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound("user"));
        }
        let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user.0)
            .bind(&keep[..])
            .execute(&mut *tx)
            .await
            .be()?
            .rows_affected();
        tx.commit().await.be()?;
        Ok(ended)
    }

    async fn record_login_failure(
        &self,
        user: UserId,
        max_failures: u32,
        lock_until: OffsetDateTime,
    ) -> StoreResult<u32> {
        // One statement: the row lock makes concurrent failures count one by one.
        let count: Option<i32> = sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1, \
             locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END \
             WHERE id = $1 RETURNING failed_logins",
        )
        .bind(user.0)
        .bind(i64::from(max_failures))
        .bind(lock_until)
        .fetch_optional(&self.pool)
        .await
        .be()?;
        let count = count.ok_or(StoreError::NotFound("user"))?;
        u32::try_from(count).map_err(|_| StoreError::Corrupt("negative failed_logins".into()))
    }

    async fn reset_login_failures(&self, user: UserId) -> StoreResult<()> {
        let updated =
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
                .bind(user.0)
                .execute(&self.pool)
                .await
                .be()?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn use_totp_step(&self, user: UserId, step: u64) -> StoreResult<bool> {
        let step = i64::try_from(step)
            .map_err(|_| StoreError::Corrupt("totp step out of range".into()))?;
        let updated = sqlx::query(
            "UPDATE users SET totp_last_step = $2 \
             WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(user.0)
        .bind(step)
        .execute(&self.pool)
        .await
        .be()?;
        Ok(updated.rows_affected() == 1)
    }
}

#[async_trait]
impl DeviceStore for PgStore {
    async fn create_device(&self, device: &Device, session: Option<&Session>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_device(&mut tx, device).await?;
        if let Some(s) = session {
            insert_session(&mut tx, s).await?;
        }
        tx.commit().await.be()
    }

    async fn device(&self, id: DeviceId) -> StoreResult<Option<Device>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE id = $1"
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(device_of)
        .transpose()
    }

    async fn devices_of_user(&self, user: UserId) -> StoreResult<Vec<Device>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE user_id = $1 ORDER BY created_at, ord"
        )))
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(device_of)
        .collect()
    }

    async fn list_devices(&self) -> StoreResult<Vec<Device>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices ORDER BY created_at, ord"
        )))
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(device_of)
        .collect()
    }

    async fn revoke_device(&self, id: DeviceId, now: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let revoked = revoke_in(&mut tx, id, now).await?;
        tx.commit().await.be()?;
        Ok(revoked)
    }

    async fn order_wipe(&self, order: &WipeOrder) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // The device row first, the lock order of revoke_device and append.
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM devices WHERE id = $1 FOR NO KEY UPDATE")
                .bind(order.device_id.0)
                .fetch_optional(&mut *tx)
                .await
                .be()?;
        if exists.is_none() {
            return Err(StoreError::NotFound("device"));
        }
        sqlx::query(
            "INSERT INTO wipe_orders (device_id, user_id, nonce, ordered_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(order.device_id.0)
        .bind(order.user_id.0)
        .bind(&order.nonce[..])
        .bind(order.ordered_at)
        .execute(&mut *tx)
        .await
        .write("wipe order", "device")?;
        // Keep the hashes before revoke_in deletes the sessions.
        sqlx::query(
            "INSERT INTO wipe_tokens (token_hash, device_id) \
             SELECT token_hash, device_id FROM sessions WHERE device_id = $1",
        )
        .bind(order.device_id.0)
        .execute(&mut *tx)
        .await
        .be()?;
        let revoked = revoke_in(&mut tx, order.device_id, order.ordered_at).await?;
        tx.commit().await.be()?;
        Ok(revoked)
    }

    async fn wipe_order(&self, device: DeviceId) -> StoreResult<Option<WipeOrder>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WIPE_COLS} FROM wipe_orders WHERE device_id = $1"
        )))
        .bind(device.0)
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(wipe_of)
        .transpose()
    }

    async fn wipe_order_by_token(&self, token_hash: &[u8; 32]) -> StoreResult<Option<WipeOrder>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WIPE_COLS} FROM wipe_orders WHERE device_id = \
             (SELECT device_id FROM wipe_tokens WHERE token_hash = $1)"
        )))
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(wipe_of)
        .transpose()
    }

    async fn mark_wipe_delivered(&self, device: DeviceId, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "UPDATE wipe_orders SET delivered_at = $2 \
             WHERE device_id = $1 AND delivered_at IS NULL",
        )
        .bind(device.0)
        .bind(at)
        .execute(&self.pool)
        .await
        .be()?;
        Ok(())
    }

    async fn mark_wipe_confirmed(&self, device: DeviceId, at: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE wipe_orders SET confirmed_at = $2 \
             WHERE device_id = $1 AND confirmed_at IS NULL",
        )
        .bind(device.0)
        .bind(at)
        .execute(&self.pool)
        .await
        .be()?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoked_devices(&self) -> StoreResult<Vec<DeviceId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE status = 'revoked' ORDER BY revoked_at, ord",
        )
        .fetch_all(&self.pool)
        .await
        .be()?;
        Ok(ids.into_iter().map(DeviceId).collect())
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.be()?;
        insert_session(&mut conn, session).await
    }

    async fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Session>> {
        sqlx::query(
            "SELECT token_hash, user_id, device_id, created_at, last_used_at, expires_at \
             FROM sessions WHERE token_hash = $1",
        )
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(session_of)
        .transpose()
    }

    async fn touch_session(&self, token_hash: &[u8; 32], now: OffsetDateTime) -> StoreResult<()> {
        let token_hash = *token_hash;
        self.group
            .run(move |tx| {
                Box::pin(async move {
                    // Device row first, then the session: the lock order revoke_device uses.
                    sqlx::query(
                        "UPDATE devices SET last_seen_at = $2 \
                         WHERE id = (SELECT device_id FROM sessions WHERE token_hash = $1)",
                    )
                    .bind(&token_hash[..])
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .be()?;
                    sqlx::query("UPDATE sessions SET last_used_at = $2 WHERE token_hash = $1")
                        .bind(&token_hash[..])
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .be()?;
                    Ok::<_, StoreError>(())
                })
            })
            .await
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(&token_hash[..])
            .execute(&self.pool)
            .await
            .be()?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_sessions(
        &self,
        idle_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE last_used_at < $1 OR expires_at < $2")
            .bind(idle_before)
            .bind(now)
            .execute(&self.pool)
            .await
            .be()?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl KeyPackageStore for PgStore {
    async fn add_key_packages(
        &self,
        device: DeviceId,
        one_time: &[Vec<u8>],
        last_resort: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if !one_time.is_empty() {
            // WITH ORDINALITY keeps upload order, which is claim order.
            sqlx::query(
                "INSERT INTO key_packages (device_id, data, created_at) \
                 SELECT $1, kp.data, $3 FROM UNNEST($2::bytea[]) WITH ORDINALITY AS kp(data, n) \
                 ORDER BY kp.n",
            )
            .bind(device.0)
            .bind(one_time)
            .bind(now)
            .execute(&mut *tx)
            .await
            .write("key package", "device")?;
        }
        if let Some(lr) = last_resort {
            sqlx::query(
                "INSERT INTO last_resort_key_packages (device_id, data, updated_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (device_id) DO UPDATE \
                 SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at",
            )
            .bind(device.0)
            .bind(lr)
            .bind(now)
            .execute(&mut *tx)
            .await
            .write("key package", "device")?;
        }
        tx.commit().await.be()
    }

    async fn claim_key_package(&self, device: DeviceId) -> StoreResult<Option<(Vec<u8>, bool)>> {
        let mut tx = self.begin().await?;
        loop {
            // Take the oldest package no concurrent claimer holds.
            let taken: Option<Vec<u8>> = sqlx::query_scalar(
                "DELETE FROM key_packages WHERE id = (SELECT id FROM key_packages \
                 WHERE device_id = $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING data",
            )
            .bind(device.0)
            .fetch_optional(&mut *tx)
            .await
            .be()?;
            if let Some(kp) = taken {
                tx.commit().await.be()?;
                return Ok(Some((kp, false)));
            }
            // None free: either none left, or all remaining ones are held by claimers that
            // may still roll back. Wait for one of those (blocking lock) and look again; each
            // round trip means some other claim finished, so this terminates.
            let waited: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM key_packages WHERE device_id = $1 ORDER BY id LIMIT 1 FOR UPDATE",
            )
            .bind(device.0)
            .fetch_optional(&mut *tx)
            .await
            .be()?;
            if let Some(id) = waited {
                let kp: Vec<u8> =
                    sqlx::query_scalar("DELETE FROM key_packages WHERE id = $1 RETURNING data")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await
                        .be()?;
                tx.commit().await.be()?;
                return Ok(Some((kp, false)));
            }
            let any_left: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM key_packages WHERE device_id = $1)",
            )
            .bind(device.0)
            .fetch_one(&mut *tx)
            .await
            .be()?;
            if !any_left {
                break;
            }
        }
        let lr: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT data FROM last_resort_key_packages WHERE device_id = $1")
                .bind(device.0)
                .fetch_optional(&mut *tx)
                .await
                .be()?;
        tx.commit().await.be()?;
        Ok(lr.map(|kp| (kp, true)))
    }

    async fn key_package_stock(&self, device: DeviceId) -> StoreResult<(u64, bool)> {
        let (count, last_resort): (i64, bool) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM key_packages WHERE device_id = $1), \
             EXISTS (SELECT 1 FROM last_resort_key_packages WHERE device_id = $1)",
        )
        .bind(device.0)
        .fetch_one(&self.pool)
        .await
        .be()?;
        Ok((crate::util::u64_of(count)?, last_resort))
    }
}
