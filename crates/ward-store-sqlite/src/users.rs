//! [`UserStore`]: accounts, enrollment codes and login failure counting.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use ward_proto::{UserId, UserStatus, Username};
use ward_store::{Enrollment, EnrollmentCode, StoreError, StoreResult, User, UserStore};

use crate::SqliteStore;
use crate::codec::{Cols, Named, conflict, ct_eq, db, hash32, id, int, us};
use crate::devices::{insert_device, insert_session};

pub(crate) const USER_COLUMNS: &str = "id, username, display_name, role, status, password_hash, \
     totp_secret_enc, failed_logins, locked_until, created_at";

pub(crate) fn user_from_row(r: &SqliteRow) -> StoreResult<User> {
    let c = Cols(r);
    let username = c.text("username")?;
    Ok(User {
        id: UserId(c.uuid("id")?),
        username: Username::parse(&username)
            .map_err(|_| StoreError::Corrupt("stored username is invalid".into()))?,
        display_name: c.text("display_name")?,
        role: c.named("role")?,
        status: c.named("status")?,
        password_hash: c.opt_text("password_hash")?,
        totp_secret_enc: c.opt_blob("totp_secret_enc")?,
        failed_logins: u32::try_from(c.i64("failed_logins")?)
            .map_err(|_| StoreError::Corrupt("failed login count out of range".into()))?,
        locked_until: c.opt_time("locked_until")?,
        created_at: c.time("created_at")?,
    })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &User, code: &EnrollmentCode) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO users (id, username, display_name, role, status, password_hash, \
             totp_secret_enc, failed_logins, locked_until, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id(user.id.0))
        .bind(user.username.as_str())
        .bind(&user.display_name)
        .bind(user.role.name())
        .bind(user.status.name())
        .bind(&user.password_hash)
        .bind(&user.totp_secret_enc)
        .bind(i64::from(user.failed_logins))
        .bind(user.locked_until.map(us))
        .bind(us(user.created_at))
        .execute(&mut *tx)
        .await
        .map_err(conflict("user"))?;
        sqlx::query(
            "INSERT INTO enrollment_codes (user_id, code_hash, expires_at) VALUES (?, ?, ?)",
        )
        .bind(id(user.id.0))
        .bind(&code.code_hash[..])
        .bind(us(code.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn user(&self, user: UserId) -> StoreResult<Option<User>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ?"
        )))
        .bind(id(user.0))
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn user_by_name(&self, username: &Username) -> StoreResult<Option<User>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?"
        )))
        .bind(username.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        )))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn enrollment_code(&self, user: UserId) -> StoreResult<Option<EnrollmentCode>> {
        let row =
            sqlx::query("SELECT code_hash, expires_at FROM enrollment_codes WHERE user_id = ?")
                .bind(id(user.0))
                .fetch_optional(&self.reader)
                .await
                .map_err(db)?;
        row.map(|r| {
            let c = Cols(&r);
            Ok(EnrollmentCode {
                code_hash: hash32(c.blob("code_hash")?)?,
                expires_at: c.time("expires_at")?,
            })
        })
        .transpose()
    }

    async fn set_enrollment_code(&self, user: UserId, code: &EnrollmentCode) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT 1 FROM users WHERE id = ?")
            .bind(id(user.0))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        sqlx::query(
            "INSERT INTO enrollment_codes (user_id, code_hash, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET code_hash = excluded.code_hash, \
             expires_at = excluded.expires_at",
        )
        .bind(id(user.0))
        .bind(&code.code_hash[..])
        .bind(us(code.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn complete_enrollment(&self, e: &Enrollment) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let row =
            sqlx::query("SELECT code_hash, expires_at FROM enrollment_codes WHERE user_id = ?")
                .bind(id(e.user_id.0))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some(row) = row else {
            return Err(StoreError::AlreadyConsumed);
        };
        let c = Cols(&row);
        let valid =
            ct_eq(&c.blob("code_hash")?, &e.code_hash) && us(e.now) < c.i64("expires_at")?;
        if !valid {
            return Err(StoreError::AlreadyConsumed);
        }
        sqlx::query("DELETE FROM enrollment_codes WHERE user_id = ?")
            .bind(id(e.user_id.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "UPDATE users SET password_hash = ?, totp_secret_enc = ?, status = ? WHERE id = ?",
        )
        .bind(&e.password_hash)
        .bind(&e.totp_secret_enc)
        .bind(UserStatus::Active.name())
        .bind(id(e.user_id.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_device(&mut tx, &e.device).await?;
        insert_session(&mut tx, &e.session).await?;
        tx.commit().await.map_err(db)
    }

    async fn set_user_status(&self, user: UserId, status: UserStatus) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE users SET status = ? WHERE id = ?")
            .bind(status.name())
            .bind(id(user.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        let mut deleted = 0;
        if status == UserStatus::Suspended {
            deleted = sqlx::query("DELETE FROM sessions WHERE user_id = ?")
                .bind(id(user.0))
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: &[u8; 32],
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL \
             WHERE id = ?",
        )
        .bind(password_hash)
        .bind(id(user.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        let ended = sqlx::query("DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?")
            .bind(id(user.0))
            .bind(&keep[..])
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(ended)
    }

    async fn record_login_failure(
        &self,
        user: UserId,
        max_failures: u32,
        lock_until: OffsetDateTime,
    ) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1, \
             locked_until = CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END \
             WHERE id = ? RETURNING failed_logins",
        )
        .bind(i64::from(max_failures))
        .bind(us(lock_until))
        .bind(id(user.0))
        .fetch_optional(&self.writer)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound("user"))?;
        let count: i64 = row.try_get("failed_logins").map_err(db)?;
        u32::try_from(count)
            .map_err(|_| StoreError::Corrupt("failed login count out of range".into()))
    }

    async fn reset_login_failures(&self, user: UserId) -> StoreResult<()> {
        let done =
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?")
                .bind(id(user.0))
                .execute(&self.writer)
                .await
                .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn use_totp_step(&self, user: UserId, step: u64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = ? \
             WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
        )
        .bind(int(step))
        .bind(id(user.0))
        .bind(int(step))
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }
}
