//! [`OrgStore`]: the organisation row and the secrets table.

use async_trait::async_trait;
use sqlx::Row;
use ward_store::{OrgPolicy, OrgStore, Organisation, StoreError, StoreResult};

use crate::SqliteStore;
use crate::codec::{Cols, db, us};

fn policy_json(policy: &OrgPolicy) -> StoreResult<String> {
    serde_json::to_string(policy).map_err(|e| StoreError::Corrupt(format!("policy: {e}")))
}

#[async_trait]
impl OrgStore for SqliteStore {
    async fn organisation(&self) -> StoreResult<Option<Organisation>> {
        let row = sqlx::query("SELECT name, policy, created_at FROM organisation WHERE id = 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.map(|r| {
            let c = Cols(&r);
            let policy = serde_json::from_str(&c.text("policy")?)
                .map_err(|e| StoreError::Corrupt(format!("policy: {e}")))?;
            Ok(Organisation {
                name: c.text("name")?,
                policy,
                created_at: c.time("created_at")?,
            })
        })
        .transpose()
    }

    async fn init_organisation(&self, org: &Organisation) -> StoreResult<Organisation> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO organisation (id, name, policy, created_at) VALUES (1, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&org.name)
        .bind(policy_json(&org.policy)?)
        .bind(us(org.created_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.organisation()
            .await?
            .ok_or(StoreError::NotFound("organisation"))
    }

    async fn set_policy(&self, policy: &OrgPolicy) -> StoreResult<()> {
        let done = sqlx::query("UPDATE organisation SET policy = ? WHERE id = 1")
            .bind(policy_json(policy)?)
            .execute(&self.writer)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("organisation"));
        }
        Ok(())
    }

    async fn secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM secrets WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.map(|r| r.try_get("value").map_err(db)).transpose()
    }

    async fn put_secret_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let stored: Vec<u8> = sqlx::query("SELECT value FROM secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
            .try_get("value")
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }
}
