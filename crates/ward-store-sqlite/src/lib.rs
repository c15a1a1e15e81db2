//! Ward storage on embedded SQLite, the default backend.
//!
//! [`SqliteStore`] implements every trait of [`ward_store`] on one database file in WAL mode
//! with `synchronous=FULL`, so an acknowledged write survives power loss. Writes go through
//! a single connection and multi-statement invariants run in one `BEGIN IMMEDIATE`
//! transaction, so two writers can never both read the same epoch, seq or audit head;
//! reads use a separate small pool and see the last committed state.
//!
//! Times are stored as Unix microseconds, ids as hyphenated UUID text and enums as their
//! snake_case wire names. The schema lives in `migrations/` and is applied on open.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
mod blobs;
mod breakglass;
mod clinical;
mod codec;
mod conversations;
mod devices;
mod escalation;
mod group;
mod journal;
mod org;
mod retention;
mod users;
mod workflow;

use std::any::Any;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use ward_store::{Store, StoreError, StoreResult};

use crate::codec::db;

/// How long a statement waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections for reads (WAL lets them run beside the writer).
const READ_CONNECTIONS: u32 = 4;

/// The SQLite store. Cheap to clone (the pools are shared).
#[derive(Clone)]
pub struct SqliteStore {
    /// The only connection that writes; transactions on it are serialised.
    writer: SqlitePool,
    /// Connections for single-statement reads.
    reader: SqlitePool,
    /// The hot-path writes (sends, audit records, receipts), batched into shared
    /// transactions on `writer`.
    group: group::GroupCommit,
    /// Something that must live as long as the store (see [`SqliteStore::with_guard`]).
    guard: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("writer", &self.writer)
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating if missing) the database file at `path` and apply pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        tracing::info!(path = %path.display(), "opening sqlite store");
        Self::open_with(options, false).await
    }

    /// Open a `sqlite://path` (or `sqlite::memory:`) URL and apply pending migrations.
    /// The file is created if missing.
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db)?
            .create_if_missing(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        Self::open_with(options, in_memory).await
    }

    async fn open_with(options: SqliteConnectOptions, in_memory: bool) -> StoreResult<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // An in-memory database lives as long as its connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(db)?;
        sqlx::migrate!()
            .run(&writer)
            .await
            .map_err(StoreError::backend)?;
        let reader = if in_memory {
            // Every connection to `:memory:` is a separate database: share the writer.
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .connect_with(options)
                .await
                .map_err(db)?
        };
        Ok(Self {
            group: group::GroupCommit::start(writer.clone()),
            writer,
            reader,
            guard: None,
        })
    }

    /// Keep `guard` alive until the store (every clone of it) is dropped, e.g. the
    /// temporary directory holding a throw-away database.
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self.guard = Some(Arc::new(guard));
        self
    }

    /// Group commit so far: (transactions, operations in them). Their ratio is the mean batch
    /// size; for benchmarks and diagnostics.
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.group.counts()
    }

    /// Close every connection, checkpointing the WAL. Pending writes are already durable;
    /// this only tidies up.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Begin a write transaction that holds the database write lock from its first
    /// statement (`BEGIN IMMEDIATE`).
    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    #[tokio::test]
    async fn durability_pragmas_are_set() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&dir.path().join("p.db"))
            .await
            .expect("open");
        for pool in [&store.writer, &store.reader] {
            let pragma = |name: &'static str| async move {
                let row = sqlx::query(name).fetch_one(pool).await.expect("pragma");
                row.try_get::<String, _>(0)
                    .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
                    .expect("value")
            };
            assert_eq!(pragma("PRAGMA journal_mode").await, "wal");
            // 2 = FULL: the WAL is synced at every commit.
            assert_eq!(pragma("PRAGMA synchronous").await, "2");
            assert_eq!(pragma("PRAGMA foreign_keys").await, "1");
            assert_eq!(pragma("PRAGMA busy_timeout").await, "10000");
        }
        store.close().await;
    }
}
