//! Writing, reading and verifying the hash-chained audit log.

use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, Verifier};
use ward_proto::{AuditPage, AuditVerifyReport, Role};
use ward_store::audit::{ChainVerifier, checkpoint_message};
use ward_store::{AuditCheckpoint, AuditEvent, Store};

use super::{Actor, require_role};
use crate::clock::Clock;
use crate::error::ApiResult;
use crate::keys::ServerKeys;

/// A signed checkpoint is written after this many records (and at shutdown and on a timer).
pub const CHECKPOINT_EVERY: u64 = 256;

/// The audit log service.
pub struct AuditLog {
    store: Arc<dyn Store>,
    keys: Arc<ServerKeys>,
    clock: Arc<dyn Clock>,
}

impl AuditLog {
    /// A log writing to `store`, signing checkpoints with the audit key.
    pub fn new(store: Arc<dyn Store>, keys: Arc<ServerKeys>, clock: Arc<dyn Clock>) -> Self {
        Self { store, keys, clock }
    }

    /// The event for one record, for a store operation that writes it in its own
    /// transaction (a send). Details hold ids, sizes and reasons, never content.
    pub fn event(
        &self,
        actor: &Actor,
        action: &str,
        target: Option<String>,
        mut details: serde_json::Value,
    ) -> AuditEvent {
        if let serde_json::Value::Object(m) = &mut details {
            m.insert("via".into(), actor.via.into());
        }
        AuditEvent {
            at: self.clock.now(),
            actor_user_id: actor.user_id,
            actor_device_id: actor.device_id,
            action: action.to_owned(),
            target,
            details,
        }
    }

    /// Append one record. Details hold ids, sizes and reasons, never content.
    pub async fn record(
        &self,
        actor: &Actor,
        action: &str,
        target: Option<String>,
        details: serde_json::Value,
    ) -> ApiResult<()> {
        let rec = self
            .store
            .append_audit(&self.event(actor, action, target, details))
            .await?;
        self.appended(rec.seq).await;
        Ok(())
    }

    /// Call after a record with `seq` was written (by [`Self::record`] or a store operation):
    /// signs a checkpoint every [`CHECKPOINT_EVERY`] records.
    pub async fn appended(&self, seq: u64) {
        if seq.is_multiple_of(CHECKPOINT_EVERY)
            && let Err(e) = self.checkpoint().await
        {
            // The record itself is durable; a failed checkpoint is retried by the timer and
            // must not turn a completed operation into an error for the caller.
            tracing::warn!(error = %e, "audit checkpoint failed; will retry");
        }
    }

    /// Sign the current head unless it is already checkpointed.
    pub async fn checkpoint(&self) -> ApiResult<()> {
        let Some((seq, hash)) = self.store.audit_head().await? else {
            return Ok(());
        };
        let existing = self.store.checkpoints().await?;
        if existing.last().is_some_and(|c| c.seq >= seq) {
            return Ok(());
        }
        let signature = self
            .keys
            .audit
            .sign(&checkpoint_message(seq, &hash))
            .to_bytes()
            .to_vec();
        match self
            .store
            .add_checkpoint(&AuditCheckpoint {
                seq,
                hash,
                signature,
                at: self.clock.now(),
            })
            .await
        {
            // Another task or node checkpointed the same head first: that is the goal.
            Ok(()) | Err(ward_store::StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A page of records for admins and compliance officers. Reading the log is itself audited.
    pub async fn page(&self, actor: &Actor, after: u64, limit: usize) -> ApiResult<AuditPage> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        let limit = limit.clamp(1, 1000);
        let records = self.store.audit_records(after, limit).await?;
        let next_after = if records.len() == limit {
            records.last().map(|r| r.seq)
        } else {
            None
        };
        self.record(
            actor,
            "audit.read",
            None,
            serde_json::json!({"after": after, "count": records.len()}),
        )
        .await?;
        Ok(AuditPage {
            records,
            next_after,
        })
    }

    /// Verify the whole chain and every checkpoint signature.
    pub async fn verify(&self, actor: &Actor) -> ApiResult<AuditVerifyReport> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        let checkpoints = self.store.checkpoints().await?;
        let mut v = ChainVerifier::new(&checkpoints);
        let mut after = 0;
        loop {
            let page = self.store.audit_records(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let mut ok = true;
            for r in &page {
                ok = v.push(r);
                if !ok {
                    break;
                }
            }
            if !ok {
                break;
            }
        }
        let key = self.keys.audit.verifying_key();
        let report = v.finish(&checkpoints, |msg, sig| {
            Signature::from_slice(sig).is_ok_and(|s| key.verify(msg, &s).is_ok())
        });
        // Verification is recorded after the fact so it cannot disturb what it verifies.
        self.record(
            actor,
            "audit.verify",
            None,
            serde_json::json!({"ok": report.ok, "records": report.records, "first_bad_seq": report.first_bad_seq}),
        )
        .await?;
        Ok(report)
    }
}
