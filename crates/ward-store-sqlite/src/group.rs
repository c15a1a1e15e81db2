//! Group commit: the hot-path writes of many concurrent callers share one transaction and one
//! fsync.
//!
//! SQLite allows one writer at a time and `synchronous=FULL` syncs the WAL at every commit, so
//! a transaction per message bounds throughput by the fsync rate (BENCH.md: ~8.6k single-row
//! commits/s on this machine class, far less with indexes and WAL checkpoints). A writer task
//! takes every operation queued while the previous batch was committing, runs each in its own
//! `SAVEPOINT` (so one operation's failure rolls back only its own writes), commits once, and
//! only then answers every caller. An answer therefore still means "durable": the durability
//! rule of BENCH.md holds, and batching comes for free under load without any added delay when
//! idle (a lone operation is committed at once).
//!
//! What this module does NOT do: decide what an operation writes (the callers pass closures
//! that run on the connection), or batch writes outside the hot path (those still take the
//! writer connection directly, between batches).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection as _, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use ward_store::{AppendListener, StoreError};

use crate::codec::db;

/// Most operations in one transaction. Bounds the latency the last one in a batch sees and the
/// work lost to a failed commit.
pub(crate) const MAX_BATCH: usize = 256;
/// Operations waiting for the writer task before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 4096;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Called once the batch's commit finished: with `Ok` if it is durable.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One operation: runs on the writer's connection inside the batch transaction and says
/// whether its writes stay (`true`) or are rolled back to its savepoint (`false`). Given no
/// connection (the batch could not start), it runs nothing and its `Finish` reports the error.
type Job = Box<
    dyn for<'c> FnOnce(Option<&'c mut SqliteConnection>) -> BoxFuture<'c, (bool, Finish)> + Send,
>;

/// The sending side of the writer task. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    /// Told of every accepted append, in commit order (ADR 0020).
    append_listener: Arc<ward_store::AppendListenerSlot>,
}

/// Counters of the writer task, for metrics and tests.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Transactions committed (or attempted).
    pub(crate) batches: AtomicU64,
    /// Operations run in them.
    pub(crate) operations: AtomicU64,
}

impl GroupCommit {
    /// Start the writer task on the current tokio runtime. It ends when every clone of the
    /// returned handle is dropped.
    pub(crate) fn start(writer: SqlitePool) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(writer, jobs, stats.clone()));
        Self {
            queue,
            stats,
            append_listener: Arc::default(),
        }
    }

    /// (batches, operations) so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.operations.load(Ordering::Relaxed),
        )
    }

    /// Run `op` in the next batch and return its result once the batch is durable. An `Err`
    /// from `op` rolls back only `op`'s writes; a failed commit fails every operation of the
    /// batch.
    pub(crate) async fn run<T, E>(
        &self,
        op: impl for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>>
        + Send
        + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.run_then(op, |_: &T| {}).await
    }

    /// [`GroupCommit::run`], and call `then` with the value once the batch is durable and
    /// before the caller is answered. The writer task calls the `then`s of a batch one after
    /// the other in the batch's order, and batches in commit order.
    pub(crate) async fn run_then<T, E>(
        &self,
        op: impl for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>>
        + Send
        + 'static,
        then: impl FnOnce(&T) + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = match conn {
                    Some(conn) => Some(op(conn).await),
                    None => None,
                };
                let keep = matches!(result, Some(Ok(_)));
                let finish: Finish = Box::new(move |commit| {
                    let outcome = match (result, commit) {
                        (Some(Ok(value)), Ok(())) => {
                            then(&value);
                            Ok(value)
                        }
                        (Some(Err(e)), _) => Err(e),
                        (_, Err(e)) => Err(E::from(StoreError::Backend(
                            format!("group commit failed: {e}").into(),
                        ))),
                        (None, Ok(())) => Err(E::from(StoreError::Backend(
                            "group commit skipped an operation".into(),
                        ))),
                    };
                    // The caller may have gone (request timeout); the write stands and a
                    // retry with the same client message id finds it.
                    let _ = answer.send(outcome);
                });
                (keep, finish)
            })
        });
        self.queue.send(job).await.map_err(|_| E::from(stopped()))?;
        answered.await.map_err(|_| E::from(stopped()))?
    }
}

impl GroupCommit {
    /// Register the listener for accepted appends; `false` if one is registered already.
    pub(crate) fn set_append_listener(&self, listener: AppendListener) -> bool {
        self.append_listener.set(listener)
    }

    /// The registered listener, if any.
    pub(crate) fn append_listener(&self) -> Option<AppendListener> {
        self.append_listener.get()
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer task has stopped".into())
}

async fn run(writer: SqlitePool, mut jobs: mpsc::Receiver<Job>, stats: Arc<Stats>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .operations
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let (finishes, commit) = commit_batch(&writer, &mut batch).await;
        for finish in finishes {
            finish(commit.clone());
        }
    }
}

/// Run `batch` (emptying it) in one transaction; returns each operation's `Finish` and the
/// outcome every one of them is answered with. Operations after a failure that broke the
/// transaction (or all of them, if it never started) do not run.
async fn commit_batch(
    writer: &SqlitePool,
    batch: &mut Vec<Job>,
) -> (Vec<Finish>, Result<(), String>) {
    let mut finishes = Vec::with_capacity(batch.len());
    let mut conn = match writer.acquire().await {
        Ok(c) => c,
        Err(e) => return (skip_all(batch).await, Err(db(e).to_string())),
    };
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return (skip_all(batch).await, Err(db(e).to_string()));
    }
    let mut broken = None;
    for job in batch.drain(..) {
        if broken.is_none()
            && let Err(e) = sqlx::query("SAVEPOINT op").execute(&mut *conn).await
        {
            broken = Some(e);
        }
        if broken.is_some() {
            finishes.push(job(None).await.1);
            continue;
        }
        let (keep, finish) = job(Some(&mut conn)).await;
        finishes.push(finish);
        let end = if keep {
            "RELEASE op"
        } else {
            "ROLLBACK TO op; RELEASE op"
        };
        if let Err(e) = sqlx::raw_sql(end).execute(&mut *conn).await {
            broken = Some(e);
        }
    }
    let commit = match broken {
        None => sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ()),
        Some(e) => Err(e),
    };
    if commit.is_err() {
        // Leave the connection clean for the next batch; a failed COMMIT may already have
        // ended the transaction, so an error here is expected and says nothing new.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        // A connection in an unknown state is not reused.
        let _ = conn.detach().close().await;
    }
    (finishes, commit.map_err(|e| e.to_string()))
}

/// The finishes of every job in `batch`, without running them (the batch could not start).
async fn skip_all(batch: &mut Vec<Job>) -> Vec<Finish> {
    let mut finishes = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        finishes.push(job(None).await.1);
    }
    finishes
}

#[cfg(test)]
mod tests {
    use ward_store::{AuditEvent, AuditStore};

    use crate::SqliteStore;

    /// Concurrent writers share transactions, and every one of them gets its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&dir.path().join("g.db"))
            .await
            .expect("open");
        let tasks: Vec<_> = (0..400u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append_audit(&AuditEvent {
                            at: time::OffsetDateTime::now_utc(),
                            actor_user_id: None,
                            actor_device_id: None,
                            action: "test.write".into(),
                            target: Some(i.to_string()),
                            details: serde_json::json!({}),
                        })
                        .await
                        .expect("append")
                        .seq
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.expect("task"));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>(), "one gap-free seq each");
        let (batches, operations) = store.group_commit_counts();
        assert_eq!(operations, 400);
        assert!(
            batches < 200,
            "400 concurrent writes took {batches} transactions; expected shared commits"
        );
        store.close().await;
    }
}
