//! The shared conformance suite against SQLite, one fresh database file per test.

use std::sync::Arc;

use ward_store::Store;
use ward_store_sqlite::SqliteStore;

/// A fresh, empty store in its own temporary directory; the store keeps the directory
/// alive, and it is deleted when the test drops the store.
async fn fresh_store() -> Arc<dyn Store> {
    let dir = tempfile::Builder::new()
        .prefix("conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("ward.db"))
        .await
        .expect("open store");
    Arc::new(store.with_guard(dir))
}

ward_store::conformance_tests!(fresh_store());
