//! Group commit on PostgreSQL: the hot-path writes of many concurrent callers share one
//! transaction, one WAL flush and one hold of the audit chain's head lock.
//!
//! Every send appends an audit record, and the chain's one-row head lock is held from that
//! append until the commit's WAL flush: with a transaction per message, sends from every node
//! are serialised on that lock at one flush each (docs/benchmarks.md: about 235 acknowledged
//! sends/s). A writer task per node takes every operation queued while its previous batch was
//! committing (at most [`MAX_BATCH`]), locks the audit head **first**, runs each operation in
//! its own `SAVEPOINT` (a failing operation rolls back only its own writes and gets its own
//! error), commits once, and only then answers every caller: an answer still means durable.
//!
//! Taking the audit head first gives every batch, on every node, the same first lock, so two
//! batches cannot deadlock over conversation or routing rows: the second one waits at its
//! first statement. A non-batched transaction that locks a conversation and then appends an
//! audit record can still meet a batch in the opposite order; PostgreSQL then aborts one
//! statement with a deadlock error, and if that is a batched operation it fails alone (rolled
//! back to its savepoint) and its caller retries with the same idempotency key.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use ward_store::{AppendListener, StoreError};

/// Most operations in one transaction: bounds the latency of the last one and the work a
/// failed commit throws away.
pub(crate) const MAX_BATCH: usize = 256;
/// Operations waiting for the writer before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 4096;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Called once the batch's commit finished, with `Ok` if it is durable.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One operation: runs inside the batch transaction and says whether its writes stay. Given no
/// connection (the batch could not start or broke), it runs nothing.
type Job =
    Box<dyn for<'c> FnOnce(Option<&'c mut PgConnection>) -> BoxFuture<'c, (bool, Finish)> + Send>;

/// The sending side of a node's writer task. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    /// Told of every accepted append, in commit order (ADR 0020).
    append_listener: Arc<ward_store::AppendListenerSlot>,
}

#[derive(Debug, Default)]
struct Stats {
    batches: AtomicU64,
    operations: AtomicU64,
}

impl GroupCommit {
    /// Start the writer task on the current tokio runtime; it ends when every handle is gone.
    pub(crate) fn start(pool: PgPool) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(pool, jobs, stats.clone()));
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

    /// Run `op` in the next batch; its result comes back once the batch is durable. An `Err`
    /// from `op` rolls back only `op`'s writes; a failed commit fails the whole batch.
    pub(crate) async fn run<T, E>(
        &self,
        op: impl for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
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
        op: impl for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
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
                    // A caller that went away (request timeout) does not undo the write; its
                    // idempotent retry finds it.
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
    StoreError::Backend("the PostgreSQL writer task has stopped".into())
}

async fn run(pool: PgPool, mut jobs: mpsc::Receiver<Job>, stats: Arc<Stats>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .operations
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let (finishes, commit) = commit_batch(&pool, &mut batch).await;
        for finish in finishes {
            finish(commit.clone());
        }
    }
}

/// Run `batch` (emptying it) in one transaction; returns each operation's `Finish` and the
/// outcome all of them are answered with.
async fn commit_batch(pool: &PgPool, batch: &mut Vec<Job>) -> (Vec<Finish>, Result<(), String>) {
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return (skip_all(batch).await, Err(e.to_string())),
    };
    let start = sqlx::raw_sql("BEGIN; SELECT 1 FROM audit_head WHERE id FOR UPDATE")
        .execute(&mut *conn)
        .await;
    if let Err(e) = start {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return (skip_all(batch).await, Err(e.to_string()));
    }
    let mut finishes = Vec::with_capacity(batch.len());
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
            "RELEASE SAVEPOINT op"
        } else {
            "ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op"
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
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        // A connection in an unknown state is not reused.
        let _ = conn.detach().close().await;
    }
    (finishes, commit.map_err(|e| e.to_string()))
}

/// The finishes of every job in `batch`, without running them.
async fn skip_all(batch: &mut Vec<Job>) -> Vec<Finish> {
    let mut finishes = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        finishes.push(job(None).await.1);
    }
    finishes
}
