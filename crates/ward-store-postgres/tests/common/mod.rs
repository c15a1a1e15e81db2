//! Shared test support: a fresh, isolated store per test, each in its own schema of the test
//! database (`WARD_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! An unreachable database FAILS the tests with a clear message; only
//! `WARD_TEST_POSTGRES=skip` skips them (see build.rs).
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use ward_store::Store;
use ward_store_postgres::PgStore;

/// Test schemas are named `ward_t_<unix seconds>_<random hex>`.
const PREFIX: &str = "ward_t_";
/// Schemas of earlier runs older than this are dropped by the first test of a run.
const STALE_AFTER: Duration = Duration::from_secs(2 * 3600);

pub fn database_url() -> String {
    std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The URL with any password replaced, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn unreachable(url: &str, e: &dyn std::fmt::Display) -> ! {
    panic!(
        "PostgreSQL test database unreachable at {} ({e}). Start it, point \
         WARD_TEST_POSTGRES_URL at one, or set WARD_TEST_POSTGRES=skip to skip these tests \
         explicitly.",
        redacted(url)
    )
}

pub fn new_schema_name() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    format!("{PREFIX}{secs}_{}", uuid::Uuid::new_v4().simple())
}

/// Drop test schemas left by runs older than [`STALE_AFTER`] (once per test binary run).
async fn drop_stale_schemas(url: &str) {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut conn = match sqlx::PgConnection::connect(url).await {
        Ok(c) => c,
        Err(e) => unreachable(url, &e),
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut conn)
            .await
            .expect("list schemas");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for name in names {
        let created = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| now.saturating_sub(t) > STALE_AFTER.as_secs()) {
            // Best effort: a concurrent run may drop it first.
            let _ = PgStore::drop_schema(url, &name).await;
        }
    }
}

/// A fresh, empty store in a schema of its own.
pub async fn isolated_store() -> PgStore {
    let url = database_url();
    drop_stale_schemas(&url).await;
    isolated_store_in(&url, &new_schema_name()).await
}

/// A store on an existing (or new) schema: two calls with the same schema model two server
/// nodes sharing one database.
pub async fn isolated_store_in(url: &str, schema: &str) -> PgStore {
    match PgStore::connect_isolated(url, schema).await {
        Ok(s) => s,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            unreachable(url, &msg)
        }
    }
}

/// The conformance factory: a fresh store as `Arc<dyn Store>`.
pub async fn fresh_store() -> Arc<dyn Store> {
    Arc::new(isolated_store().await)
}
