//! Ward storage on PostgreSQL, for deployments that run several server nodes on one database.
//!
//! [`PgStore`] implements every trait of [`ward_store`] with runtime-checked `sqlx` queries
//! and runs its own migrations (`migrations/`) at connect time.
//!
//! Storage conventions: ids are `UUID`; times are `TIMESTAMPTZ` (microsecond precision, which
//! is what callers truncate to); enums are `TEXT` holding their snake_case serde names; blobs are
//! `BYTEA`; audit details are `TEXT` holding exactly
//! [`ward_store::audit::canonical_details`] so the hash chain survives a round trip.
//!
//! Concurrency: every multi-step operation is one transaction at `READ COMMITTED`, made safe
//! for many writers on many nodes by row locks:
//! - `append` locks the conversation row (`FOR NO KEY UPDATE`: exclusive among appends, but
//!   compatible with the `KEY SHARE` locks of foreign-key checks, which would otherwise
//!   deadlock with concurrent acknowledgements), so appends to one conversation are
//!   serialised: seqs are gap-free and exactly one commit per epoch wins. Devices that get
//!   inbox items are then locked in id order (`FOR NO KEY UPDATE`), which serialises their
//!   per-device inbox counter and orders the append against a concurrent revocation.
//! - Lock order everywhere: conversation, then device rows (by id), then routing rows (by
//!   conversation), then sessions. `record_receipts` and `revoke_device` take routing rows in
//!   conversation order; `touch_session` takes the device row before the session.
//! - `claim_key_package` deletes one row chosen with `FOR UPDATE SKIP LOCKED`, so no one-time
//!   KeyPackage is handed out twice and concurrent claimers do not queue behind each other.
//! - `append_audit` locks the one-row `audit_head` table, so the chain never forks.
//! - `init_organisation` and `put_secret_if_absent` use `INSERT … ON CONFLICT DO NOTHING`
//!   followed by a read, so concurrent first starts agree on one value.
//!
//! Nothing here logs payloads, secrets or the connection URL.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, Transaction};
use ward_store::StoreError;

mod audit;
mod blobs;
mod breakglass;
mod clinical;
mod conversations;
mod escalation;
mod group;
mod journal;
mod org;
mod retention;
mod users;
mod util;
mod workflow;

/// The migrations this crate ships, applied by [`PgStore::connect`].
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Default pool size of [`PgStore::connect`].
const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// Pool size of [`PgStore::connect_isolated`] (tests run many stores side by side).
const ISOLATED_MAX_CONNECTIONS: u32 = 6;

/// A [`ward_store::Store`] on PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The hot-path writes (sends, audit records, receipts, session touches), batched.
    group: group::GroupCommit,
}

impl PgStore {
    /// Connect to `url` (`postgres://user@host:5432/db`), open a pool and apply pending
    /// migrations in the connection's default schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = parse_url(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(StoreError::backend)?;
        Self::from_pool(pool).await
    }

    /// Test support: create schema `schema` if needed, open a pool whose every connection has
    /// `search_path` set to it, and apply the migrations there (the sqlx migrations table lives
    /// in the schema too). Stores in different schemas of one database do not see each other's
    /// data, so many tests can run in parallel.
    ///
    /// `schema` must match `[a-z_][a-z0-9_]{0,62}`.
    pub async fn connect_isolated(url: &str, schema: &str) -> Result<Self, StoreError> {
        check_schema_name(schema)?;
        let options = parse_url(url)?;
        let mut conn = options.connect().await.map_err(StoreError::backend)?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .await
        .map_err(StoreError::backend)?;
        drop(conn);

        let set_path = format!("SET search_path TO \"{schema}\"");
        let pool = PgPoolOptions::new()
            .max_connections(ISOLATED_MAX_CONNECTIONS)
            .after_connect(move |conn, _meta| {
                let set_path = set_path.clone();
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(set_path)).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::backend)?;
        Self::from_pool(pool).await
    }

    /// Test support: drop `schema` and everything in it.
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        check_schema_name(schema)?;
        let mut conn = parse_url(url)?
            .connect()
            .await
            .map_err(StoreError::backend)?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .await
        .map_err(StoreError::backend)?;
        Ok(())
    }

    /// Wrap an existing pool and apply pending migrations through it.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await.map_err(StoreError::backend)?;
        tracing::debug!(backend = "postgres", "database migrations applied");
        let group = group::GroupCommit::start(pool.clone());
        Ok(Self { pool, group })
    }

    /// Group commit so far: (transactions, operations in them). Their ratio is the mean batch.
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.group.counts()
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Close the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(StoreError::backend)
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions, StoreError> {
    // sqlx logs statement text only (never bound values), so payloads cannot reach the log.
    url.parse().map_err(StoreError::backend)
}

fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_lowercase() || b == b'_' || (i > 0 && b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(
            "invalid schema name: use [a-z_][a-z0-9_]{0,62}".into(),
        ))
    }
}

#[async_trait::async_trait]
impl ward_store::Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_schema_name;

    #[test]
    fn schema_names() {
        assert!(check_schema_name("t_0af3").is_ok());
        assert!(check_schema_name("_x").is_ok());
        for bad in ["", "0a", "A", "a-b", "a\"b", "a;b", &"a".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
