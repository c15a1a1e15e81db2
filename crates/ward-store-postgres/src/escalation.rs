//! [`EscalationStore`]: escalations of messages sent to a role and delivery events.
//!
//! Several nodes run the escalation task: a claim takes due rows with `FOR UPDATE SKIP
//! LOCKED` and moves their `due_at` to a lease in the same statement, so each due step is
//! taken by one node; a step is written only at the version it was computed from (checked
//! under `FOR UPDATE`). Alerts lock device rows in device id order, so two steps never wait
//! on each other crosswise.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use ward_proto::{
    ClinicalRoleName, ConversationId, DeviceId, InboxItem, InboxKind, MessageId, UserId,
};
use ward_store::{
    DeliveryEvent, Escalation, EscalationStep, EscalationStore, StoreError, StoreResult, names,
};

use crate::PgStore;
use crate::conversations::push_inbox;
use crate::util::{DbResultExt, col, i64_of, u64_of};

const COLUMNS: &str = "message_id, conversation_id, seq, sender_user_id, sender_device_id, \
     role, priority, tiers, renotify_every_secs, tier, tier_started_at, notified_at, due_at, \
     outcome, declined, acked_by, acked_device, response, acked_at, created_at, version";

fn escalation_of(r: &PgRow) -> StoreResult<Escalation> {
    let role: String = col(r, "role")?;
    Ok(Escalation {
        message_id: MessageId(col(r, "message_id")?),
        conversation_id: ConversationId(col(r, "conversation_id")?),
        seq: u64_of(col(r, "seq")?)?,
        sender_user_id: UserId(col(r, "sender_user_id")?),
        sender_device_id: DeviceId(col(r, "sender_device_id")?),
        role: ClinicalRoleName::parse(&role)
            .map_err(|_| StoreError::Corrupt(format!("clinical role {role:?}")))?,
        priority: names::priority(&col::<String>(r, "priority")?)?,
        tiers: names::from_json("escalation tiers", &col::<String>(r, "tiers")?)?,
        renotify_every_secs: col::<Option<i64>>(r, "renotify_every_secs")?
            .map(u64_of)
            .transpose()?,
        tier: u32::try_from(col::<i64>(r, "tier")?)
            .map_err(|_| StoreError::Corrupt("tier out of range".into()))?,
        tier_started_at: col(r, "tier_started_at")?,
        notified_at: col(r, "notified_at")?,
        due_at: col(r, "due_at")?,
        outcome: names::outcome(&col::<String>(r, "outcome")?)?,
        declined: names::from_json("declined users", &col::<String>(r, "declined")?)?,
        acked_by: col::<Option<uuid::Uuid>>(r, "acked_by")?.map(UserId),
        acked_device: col::<Option<uuid::Uuid>>(r, "acked_device")?.map(DeviceId),
        response: col::<Option<String>>(r, "response")?
            .as_deref()
            .map(names::response)
            .transpose()?,
        acked_at: col(r, "acked_at")?,
        created_at: col(r, "created_at")?,
        version: u64_of(col(r, "version")?)?,
    })
}

fn event_of(r: &PgRow) -> StoreResult<DeliveryEvent> {
    Ok(DeliveryEvent {
        message_id: MessageId(col(r, "message_id")?),
        device_id: DeviceId(col(r, "device_id")?),
        user_id: UserId(col(r, "user_id")?),
        state: names::state(&col::<String>(r, "state")?)?,
        at: col(r, "at")?,
        tier: col::<Option<i64>>(r, "tier")?.map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
        response: col::<Option<String>>(r, "response")?
            .as_deref()
            .map(names::response)
            .transpose()?,
    })
}

/// Events and alerts of a step, inside the caller's transaction.
async fn write_effects(
    tx: &mut PgConnection,
    step: &EscalationStep,
) -> StoreResult<Vec<(DeviceId, InboxItem)>> {
    for ev in &step.events {
        sqlx::query(
            "INSERT INTO delivery_events (message_id, device_id, user_id, state, at, tier, \
             response) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(ev.message_id.0)
        .bind(ev.device_id.0)
        .bind(ev.user_id.0)
        .bind(ev.state.as_str())
        .bind(ev.at)
        .bind(ev.tier.map(i64::from))
        .bind(ev.response.map(|r| r.as_str()))
        .execute(&mut *tx)
        .await
        .be()?;
    }
    let e = &step.escalation;
    let mut alerts: Vec<_> = step.alerts.iter().collect();
    alerts.sort_by_key(|a| a.device_id);
    let mut items = Vec::with_capacity(alerts.len());
    for a in alerts {
        let item = push_inbox(
            tx,
            a.device_id.0,
            InboxKind::Alert,
            e.conversation_id.0,
            i64_of(e.seq),
            &a.payload,
            step.at,
        )
        .await?;
        items.push((a.device_id, item));
    }
    Ok(items)
}

#[async_trait]
impl EscalationStore for PgStore {
    async fn create_escalation(
        &self,
        step: &EscalationStep,
    ) -> StoreResult<Option<Vec<(DeviceId, InboxItem)>>> {
        let e = &step.escalation;
        let mut tx = self.begin().await?;
        let stored = sqlx::query("SELECT 1 FROM envelopes WHERE message_id = $1")
            .bind(e.message_id.0)
            .fetch_optional(&mut *tx)
            .await
            .be()?;
        if stored.is_none() {
            return Err(StoreError::NotFound("message"));
        }
        let done = sqlx::query(
            "INSERT INTO escalations (message_id, conversation_id, seq, sender_user_id, \
             sender_device_id, role, priority, tiers, renotify_every_secs, tier, \
             tier_started_at, notified_at, due_at, outcome, declined, acked_by, acked_device, \
             response, acked_at, created_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(e.message_id.0)
        .bind(e.conversation_id.0)
        .bind(i64_of(e.seq))
        .bind(e.sender_user_id.0)
        .bind(e.sender_device_id.0)
        .bind(e.role.as_str())
        .bind(e.priority.as_str())
        .bind(names::json(&e.tiers)?)
        .bind(e.renotify_every_secs.map(i64_of))
        .bind(i64::from(e.tier))
        .bind(e.tier_started_at)
        .bind(e.notified_at)
        .bind(e.due_at)
        .bind(e.outcome.as_str())
        .bind(names::json(&e.declined)?)
        .bind(e.acked_by.map(|u| u.0))
        .bind(e.acked_device.map(|d| d.0))
        .bind(e.response.map(|r| r.as_str()))
        .bind(e.acked_at)
        .bind(e.created_at)
        .bind(i64_of(e.version))
        .execute(&mut *tx)
        .await
        .write("escalation", "conversation or user")?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let items = write_effects(&mut tx, step).await?;
        tx.commit().await.be()?;
        Ok(Some(items))
    }

    async fn escalation(&self, message: MessageId) -> StoreResult<Option<Escalation>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM escalations WHERE message_id = $1"
        )))
        .bind(message.0)
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(escalation_of)
        .transpose()
    }

    async fn claim_due_escalations(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<Escalation>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE escalations SET due_at = $1, version = version + 1 WHERE message_id IN \
             (SELECT message_id FROM escalations WHERE outcome = 'pending' AND due_at <= $2 \
              ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
        )))
        .bind(lease_until)
        .bind(now)
        .bind(i64_of(limit as u64))
        .fetch_all(&self.pool)
        .await
        .be()?;
        let mut out = rows
            .iter()
            .map(escalation_of)
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort_by_key(|e| e.created_at);
        Ok(out)
    }

    async fn apply_escalation_step(
        &self,
        step: &EscalationStep,
    ) -> StoreResult<Option<Vec<(DeviceId, InboxItem)>>> {
        let e = &step.escalation;
        let mut tx = self.begin().await?;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM escalations WHERE message_id = $1 FOR UPDATE")
                .bind(e.message_id.0)
                .fetch_optional(&mut *tx)
                .await
                .be()?;
        match current {
            None => return Err(StoreError::NotFound("escalation")),
            Some(v) if v != i64_of(e.version) => return Ok(None),
            Some(_) => {}
        }
        sqlx::query(
            "UPDATE escalations SET tier = $1, tier_started_at = $2, notified_at = $3, \
             due_at = $4, outcome = $5, declined = $6, acked_by = $7, acked_device = $8, \
             response = $9, acked_at = $10, version = version + 1 WHERE message_id = $11",
        )
        .bind(i64::from(e.tier))
        .bind(e.tier_started_at)
        .bind(e.notified_at)
        .bind(e.due_at)
        .bind(e.outcome.as_str())
        .bind(names::json(&e.declined)?)
        .bind(e.acked_by.map(|u| u.0))
        .bind(e.acked_device.map(|d| d.0))
        .bind(e.response.map(|r| r.as_str()))
        .bind(e.acked_at)
        .bind(e.message_id.0)
        .execute(&mut *tx)
        .await
        .be()?;
        let items = write_effects(&mut tx, step).await?;
        tx.commit().await.be()?;
        Ok(Some(items))
    }

    async fn next_escalation_due(&self) -> StoreResult<Option<OffsetDateTime>> {
        sqlx::query_scalar(
            "SELECT MIN(due_at) FROM escalations WHERE outcome = 'pending' AND due_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .be()
    }

    async fn delivery_events(&self, message: MessageId) -> StoreResult<Vec<DeliveryEvent>> {
        sqlx::query(
            "SELECT message_id, device_id, user_id, state, at, tier, response \
             FROM delivery_events WHERE message_id = $1 ORDER BY at, id",
        )
        .bind(message.0)
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(event_of)
        .collect()
    }

    async fn message_location(
        &self,
        message: MessageId,
    ) -> StoreResult<Option<(ConversationId, u64)>> {
        sqlx::query("SELECT conversation_id, seq FROM envelopes WHERE message_id = $1")
            .bind(message.0)
            .fetch_optional(&self.pool)
            .await
            .be()?
            .map(|r| {
                Ok((
                    ConversationId(col(&r, "conversation_id")?),
                    u64_of(col(&r, "seq")?)?,
                ))
            })
            .transpose()
    }
}
