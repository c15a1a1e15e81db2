//! The shared conformance suite against SQLite, one fresh database file per test.

use std::sync::Arc;

use ward_store::Store;
use ward_store_sqlite::SqliteStore;

/// A fresh, empty store in its own temporary directory. The directory is kept (under
/// cargo's per-target temporary directory) because the store outlives this function.
async fn fresh_store() -> Arc<dyn Store> {
    let dir = tempfile::Builder::new()
        .prefix("conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory")
        .keep();
    let store = SqliteStore::open(&dir.join("ward.db"))
        .await
        .expect("open store");
    Arc::new(store)
}

ward_store::conformance_tests!(fresh_store());
