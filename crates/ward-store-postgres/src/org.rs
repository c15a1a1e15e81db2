//! The organisation and server secrets.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use ward_store::{OrgPolicy, OrgStore, Organisation, StoreError, StoreResult};

use crate::PgStore;
use crate::util::{DbResultExt, col};

fn organisation_of(row: &PgRow) -> StoreResult<Organisation> {
    let policy: Json<OrgPolicy> = col(row, "policy")?;
    Ok(Organisation {
        name: col(row, "name")?,
        policy: policy.0,
        created_at: col(row, "created_at")?,
    })
}

const SELECT_ORG: &str = "SELECT name, policy, created_at FROM organisation WHERE id";

#[async_trait]
impl OrgStore for PgStore {
    async fn organisation(&self) -> StoreResult<Option<Organisation>> {
        sqlx::query(SELECT_ORG)
            .fetch_optional(&self.pool)
            .await
            .be()?
            .as_ref()
            .map(organisation_of)
            .transpose()
    }

    async fn init_organisation(&self, org: &Organisation) -> StoreResult<Organisation> {
        let mut tx = self.begin().await?;
        // A concurrent first start blocks on the unique key until the other commits, then
        // does nothing; the read below (a new statement) sees the winner's row.
        sqlx::query(
            "INSERT INTO organisation (id, name, policy, created_at) VALUES (TRUE, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&org.name)
        .bind(Json(&org.policy))
        .bind(org.created_at)
        .execute(&mut *tx)
        .await
        .be()?;
        let row = sqlx::query(SELECT_ORG).fetch_one(&mut *tx).await.be()?;
        let stored = organisation_of(&row)?;
        tx.commit().await.be()?;
        Ok(stored)
    }

    async fn set_policy(&self, policy: &OrgPolicy) -> StoreResult<()> {
        let done = sqlx::query("UPDATE organisation SET policy = $1 WHERE id")
            .bind(Json(policy))
            .execute(&self.pool)
            .await
            .be()?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("organisation"));
        }
        Ok(())
    }

    async fn secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .be()
    }

    async fn put_secret_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await
        .be()?;
        let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .be()?;
        tx.commit().await.be()?;
        Ok(stored)
    }
}
