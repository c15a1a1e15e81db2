//! [`EscalationStore`]: escalations of messages sent to a role and delivery events. Every
//! write runs in one `BEGIN IMMEDIATE` transaction on the single writer, so a claim or a
//! versioned step cannot interleave with another.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use time::OffsetDateTime;
use ward_proto::{
    ClinicalRoleName, ConversationId, DeviceId, InboxItem, InboxKind, MessageId, UserId,
};
use ward_store::{
    DeliveryEvent, Escalation, EscalationStep, EscalationStore, StoreError, StoreResult, names,
};

use crate::SqliteStore;
use crate::codec::{Cols, db, id, int, us};
use crate::conversations::push_inbox;

const COLUMNS: &str = "message_id, conversation_id, seq, sender_user_id, sender_device_id, \
     role, priority, tiers, renotify_every_secs, tier, tier_started_at, notified_at, due_at, \
     outcome, declined, acked_by, acked_device, response, acked_at, created_at, version";

fn escalation_of(r: &SqliteRow) -> StoreResult<Escalation> {
    let c = Cols(r);
    let role = c.text("role")?;
    Ok(Escalation {
        message_id: MessageId(c.uuid("message_id")?),
        conversation_id: ConversationId(c.uuid("conversation_id")?),
        seq: c.u64("seq")?,
        sender_user_id: UserId(c.uuid("sender_user_id")?),
        sender_device_id: DeviceId(c.uuid("sender_device_id")?),
        role: ClinicalRoleName::parse(&role)
            .map_err(|_| StoreError::Corrupt(format!("clinical role {role:?}")))?,
        priority: names::priority(&c.text("priority")?)?,
        tiers: names::from_json("escalation tiers", &c.text("tiers")?)?,
        renotify_every_secs: c.opt_u64("renotify_every_secs")?,
        tier: u32::try_from(c.u64("tier")?)
            .map_err(|_| StoreError::Corrupt("tier out of range".into()))?,
        tier_started_at: c.time("tier_started_at")?,
        notified_at: c.time("notified_at")?,
        due_at: c.opt_time("due_at")?,
        outcome: names::outcome(&c.text("outcome")?)?,
        declined: names::from_json("declined users", &c.text("declined")?)?,
        acked_by: c.opt_uuid("acked_by")?.map(UserId),
        acked_device: c.opt_uuid("acked_device")?.map(DeviceId),
        response: c
            .opt_text("response")?
            .as_deref()
            .map(names::response)
            .transpose()?,
        acked_at: c.opt_time("acked_at")?,
        created_at: c.time("created_at")?,
        version: c.u64("version")?,
    })
}

fn event_of(r: &SqliteRow) -> StoreResult<DeliveryEvent> {
    let c = Cols(r);
    Ok(DeliveryEvent {
        message_id: MessageId(c.uuid("message_id")?),
        device_id: DeviceId(c.uuid("device_id")?),
        user_id: UserId(c.uuid("user_id")?),
        state: names::state(&c.text("state")?)?,
        at: c.time("at")?,
        tier: c
            .opt_u64("tier")?
            .map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
        response: c
            .opt_text("response")?
            .as_deref()
            .map(names::response)
            .transpose()?,
    })
}

/// Events and alerts of a step, inside the caller's transaction.
async fn write_effects(
    tx: &mut SqliteConnection,
    step: &EscalationStep,
) -> StoreResult<Vec<(DeviceId, InboxItem)>> {
    for ev in &step.events {
        sqlx::query(
            "INSERT INTO delivery_events (message_id, device_id, user_id, state, at, tier, \
             response) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id(ev.message_id.0))
        .bind(id(ev.device_id.0))
        .bind(id(ev.user_id.0))
        .bind(ev.state.as_str())
        .bind(us(ev.at))
        .bind(ev.tier.map(i64::from))
        .bind(ev.response.map(|r| r.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    let e = &step.escalation;
    let mut items = Vec::with_capacity(step.alerts.len());
    for a in &step.alerts {
        let item = push_inbox(
            tx,
            a.device_id,
            InboxKind::Alert,
            e.conversation_id,
            e.seq,
            &a.payload,
            step.at,
        )
        .await?;
        items.push((a.device_id, item));
    }
    Ok(items)
}

#[async_trait]
impl EscalationStore for SqliteStore {
    async fn create_escalation(
        &self,
        step: &EscalationStep,
    ) -> StoreResult<Option<Vec<(DeviceId, InboxItem)>>> {
        let e = &step.escalation;
        let mut tx = self.write_tx().await?;
        let stored = sqlx::query("SELECT 1 FROM envelopes WHERE message_id = ?")
            .bind(id(e.message_id.0))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if stored.is_none() {
            return Err(StoreError::NotFound("message"));
        }
        let done = sqlx::query(
            "INSERT INTO escalations (message_id, conversation_id, seq, sender_user_id, \
             sender_device_id, role, priority, tiers, renotify_every_secs, tier, \
             tier_started_at, notified_at, due_at, outcome, declined, acked_by, acked_device, \
             response, acked_at, created_at, version) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(id(e.message_id.0))
        .bind(id(e.conversation_id.0))
        .bind(int(e.seq))
        .bind(id(e.sender_user_id.0))
        .bind(id(e.sender_device_id.0))
        .bind(e.role.as_str())
        .bind(e.priority.as_str())
        .bind(names::json(&e.tiers)?)
        .bind(e.renotify_every_secs.map(int))
        .bind(i64::from(e.tier))
        .bind(us(e.tier_started_at))
        .bind(us(e.notified_at))
        .bind(e.due_at.map(us))
        .bind(e.outcome.as_str())
        .bind(names::json(&e.declined)?)
        .bind(e.acked_by.map(|u| id(u.0)))
        .bind(e.acked_device.map(|d| id(d.0)))
        .bind(e.response.map(|r| r.as_str()))
        .bind(e.acked_at.map(us))
        .bind(us(e.created_at))
        .bind(int(e.version))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let items = write_effects(&mut tx, step).await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(items))
    }

    async fn escalation(&self, message: MessageId) -> StoreResult<Option<Escalation>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM escalations WHERE message_id = ?"
        )))
        .bind(id(message.0))
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
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
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE escalations SET due_at = ?, version = version + 1 WHERE message_id IN \
             (SELECT message_id FROM escalations WHERE outcome = 'pending' AND due_at <= ? \
              ORDER BY due_at LIMIT ?) RETURNING {COLUMNS}"
        )))
        .bind(us(lease_until))
        .bind(us(now))
        .bind(int(limit as u64))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
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
        let mut tx = self.write_tx().await?;
        let current: Option<i64> =
            sqlx::query("SELECT version FROM escalations WHERE message_id = ?")
                .bind(id(e.message_id.0))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .map(|r| r.try_get("version"))
                .transpose()
                .map_err(db)?;
        match current {
            None => return Err(StoreError::NotFound("escalation")),
            Some(v) if v != int(e.version) => return Ok(None),
            Some(_) => {}
        }
        sqlx::query(
            "UPDATE escalations SET tier = ?, tier_started_at = ?, notified_at = ?, due_at = ?, \
             outcome = ?, declined = ?, acked_by = ?, acked_device = ?, response = ?, \
             acked_at = ?, version = version + 1 WHERE message_id = ?",
        )
        .bind(i64::from(e.tier))
        .bind(us(e.tier_started_at))
        .bind(us(e.notified_at))
        .bind(e.due_at.map(us))
        .bind(e.outcome.as_str())
        .bind(names::json(&e.declined)?)
        .bind(e.acked_by.map(|u| id(u.0)))
        .bind(e.acked_device.map(|d| id(d.0)))
        .bind(e.response.map(|r| r.as_str()))
        .bind(e.acked_at.map(us))
        .bind(id(e.message_id.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let items = write_effects(&mut tx, step).await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(items))
    }

    async fn next_escalation_due(&self) -> StoreResult<Option<OffsetDateTime>> {
        let row = sqlx::query(
            "SELECT MIN(due_at) AS due FROM escalations WHERE outcome = 'pending' \
             AND due_at IS NOT NULL",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(db)?;
        Cols(&row).opt_time("due")
    }

    async fn delivery_events(&self, message: MessageId) -> StoreResult<Vec<DeliveryEvent>> {
        sqlx::query(
            "SELECT message_id, device_id, user_id, state, at, tier, response \
             FROM delivery_events WHERE message_id = ? ORDER BY at, id",
        )
        .bind(id(message.0))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(event_of)
        .collect()
    }

    async fn message_location(
        &self,
        message: MessageId,
    ) -> StoreResult<Option<(ConversationId, u64)>> {
        sqlx::query("SELECT conversation_id, seq FROM envelopes WHERE message_id = ?")
            .bind(id(message.0))
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?
            .map(|r| {
                let c = Cols(&r);
                Ok((ConversationId(c.uuid("conversation_id")?), c.u64("seq")?))
            })
            .transpose()
    }
}
