//! [`WorkflowStore`]: clinical roles, assignments, shifts and escalation policies. Writes that
//! check before they insert run in one `BEGIN IMMEDIATE` transaction on the single writer, so
//! two imports cannot both pass the overlap check.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use ward_proto::{ClinicalRoleName, UserId};
use ward_store::{
    ClinicalRole, EscalationPolicy, PolicyTarget, RoleAssignment, Shift, StoreError, StoreResult,
    WorkflowStore, check_shift_batch,
};

use crate::SqliteStore;
use crate::codec::{Cols, conflict, db, id, int, us};

fn role_name(s: String) -> StoreResult<ClinicalRoleName> {
    ClinicalRoleName::parse(&s).map_err(|_| StoreError::Corrupt(format!("clinical role {s:?}")))
}

fn assignment_of(r: &SqliteRow) -> StoreResult<RoleAssignment> {
    let c = Cols(r);
    Ok(RoleAssignment {
        role: role_name(c.text("role")?)?,
        user_id: UserId(c.uuid("user_id")?),
        on_call: c.i64("on_call")? != 0,
        assigned_at: c.time("assigned_at")?,
        changed_at: c.time("changed_at")?,
    })
}

fn shift_of(r: &SqliteRow) -> StoreResult<Shift> {
    let c = Cols(r);
    Ok(Shift {
        role: role_name(c.text("role")?)?,
        user_id: UserId(c.uuid("user_id")?),
        starts_at: c.time("starts_at")?,
        ends_at: c.time("ends_at")?,
        time_zone: c.text("time_zone")?,
    })
}

fn policy_of(r: &SqliteRow) -> StoreResult<EscalationPolicy> {
    let c = Cols(r);
    let then: Vec<PolicyTarget> = serde_json::from_str(&c.text("then_targets")?)
        .map_err(|e| StoreError::Corrupt(format!("escalation targets: {e}")))?;
    Ok(EscalationPolicy {
        role: role_name(c.text("role")?)?,
        ack_within_secs: c.u64("ack_within_secs")?,
        renotify_every_secs: c.opt_u64("renotify_every_secs")?,
        then,
        updated_at: c.time("updated_at")?,
    })
}

async fn exists(
    tx: &mut sqlx::SqliteConnection,
    sql: &'static str,
    key: String,
) -> StoreResult<bool> {
    Ok(sqlx::query(sql)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .is_some())
}

async fn require_role_and_user(
    tx: &mut sqlx::SqliteConnection,
    role: &ClinicalRoleName,
    user: UserId,
) -> StoreResult<()> {
    if !exists(
        tx,
        "SELECT 1 FROM clinical_roles WHERE name = ?",
        role.as_str().to_owned(),
    )
    .await?
    {
        return Err(StoreError::NotFound("clinical role"));
    }
    if !exists(tx, "SELECT 1 FROM users WHERE id = ?", id(user.0)).await? {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn create_clinical_role(&self, role: &ClinicalRole) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO clinical_roles (name, description, created_at) VALUES (?, ?, ?)")
            .bind(role.name.as_str())
            .bind(&role.description)
            .bind(us(role.created_at))
            .execute(&mut *tx)
            .await
            .map_err(conflict("clinical role"))?;
        tx.commit().await.map_err(db)
    }

    async fn clinical_role(&self, name: &ClinicalRoleName) -> StoreResult<Option<ClinicalRole>> {
        Ok(self
            .clinical_roles_where(Some(name))
            .await?
            .into_iter()
            .next())
    }

    async fn clinical_roles(&self) -> StoreResult<Vec<ClinicalRole>> {
        self.clinical_roles_where(None).await
    }

    async fn assign_clinical_role(&self, a: &RoleAssignment) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        require_role_and_user(&mut tx, &a.role, a.user_id).await?;
        let done = sqlx::query(
            "INSERT INTO role_assignments (role, user_id, on_call, assigned_at, changed_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (role, user_id) DO NOTHING",
        )
        .bind(a.role.as_str())
        .bind(id(a.user_id.0))
        .bind(i64::from(a.on_call))
        .bind(us(a.assigned_at))
        .bind(us(a.changed_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(done == 1)
    }

    async fn unassign_clinical_role(
        &self,
        role: &ClinicalRoleName,
        user: UserId,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM role_assignments WHERE role = ? AND user_id = ?")
            .bind(role.as_str())
            .bind(id(user.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(done == 1)
    }

    async fn set_on_call(
        &self,
        role: &ClinicalRoleName,
        user: UserId,
        on_call: bool,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE role_assignments SET on_call = ?, changed_at = ? WHERE role = ? AND user_id = ?",
        )
        .bind(i64::from(on_call))
        .bind(us(at))
        .bind(role.as_str())
        .bind(id(user.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(done == 1)
    }

    async fn role_assignments(&self, role: &ClinicalRoleName) -> StoreResult<Vec<RoleAssignment>> {
        sqlx::query(
            "SELECT role, user_id, on_call, assigned_at, changed_at FROM role_assignments \
             WHERE role = ? ORDER BY assigned_at, user_id",
        )
        .bind(role.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(assignment_of)
        .collect()
    }

    async fn add_shifts(&self, shifts: &[Shift]) -> StoreResult<()> {
        check_shift_batch(shifts)?;
        let mut tx = self.write_tx().await?;
        for s in shifts {
            require_role_and_user(&mut tx, &s.role, s.user_id).await?;
            let clash = sqlx::query(
                "SELECT 1 FROM shifts WHERE role = ? AND user_id = ? AND starts_at < ? \
                 AND ends_at > ? LIMIT 1",
            )
            .bind(s.role.as_str())
            .bind(id(s.user_id.0))
            .bind(us(s.ends_at))
            .bind(us(s.starts_at))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if clash.is_some() {
                return Err(StoreError::Conflict("shift"));
            }
            sqlx::query(
                "INSERT INTO shifts (role, user_id, starts_at, ends_at, time_zone) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(s.role.as_str())
            .bind(id(s.user_id.0))
            .bind(us(s.starts_at))
            .bind(us(s.ends_at))
            .bind(&s.time_zone)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn shifts(
        &self,
        role: &ClinicalRoleName,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<Vec<Shift>> {
        sqlx::query(
            "SELECT role, user_id, starts_at, ends_at, time_zone FROM shifts \
             WHERE role = ? AND starts_at < ? AND ends_at > ? ORDER BY starts_at, user_id",
        )
        .bind(role.as_str())
        .bind(us(to))
        .bind(us(from))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(shift_of)
        .collect()
    }

    async fn set_escalation_policy(&self, p: &EscalationPolicy) -> StoreResult<()> {
        let then = serde_json::to_string(&p.then)
            .map_err(|e| StoreError::Corrupt(format!("escalation targets: {e}")))?;
        let mut tx = self.write_tx().await?;
        if !exists(
            &mut tx,
            "SELECT 1 FROM clinical_roles WHERE name = ?",
            p.role.as_str().to_owned(),
        )
        .await?
        {
            return Err(StoreError::NotFound("clinical role"));
        }
        sqlx::query(
            "INSERT INTO escalation_policies \
             (role, ack_within_secs, renotify_every_secs, then_targets, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (role) DO UPDATE SET \
             ack_within_secs = excluded.ack_within_secs, \
             renotify_every_secs = excluded.renotify_every_secs, \
             then_targets = excluded.then_targets, updated_at = excluded.updated_at",
        )
        .bind(p.role.as_str())
        .bind(int(p.ack_within_secs))
        .bind(p.renotify_every_secs.map(int))
        .bind(then)
        .bind(us(p.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn escalation_policy(
        &self,
        role: &ClinicalRoleName,
    ) -> StoreResult<Option<EscalationPolicy>> {
        sqlx::query(
            "SELECT role, ack_within_secs, renotify_every_secs, then_targets, updated_at \
             FROM escalation_policies WHERE role = ?",
        )
        .bind(role.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .as_ref()
        .map(policy_of)
        .transpose()
    }

    async fn escalation_policies(&self) -> StoreResult<Vec<EscalationPolicy>> {
        sqlx::query(
            "SELECT role, ack_within_secs, renotify_every_secs, then_targets, updated_at \
             FROM escalation_policies ORDER BY role",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db)?
        .iter()
        .map(policy_of)
        .collect()
    }
}

impl SqliteStore {
    async fn clinical_roles_where(
        &self,
        name: Option<&ClinicalRoleName>,
    ) -> StoreResult<Vec<ClinicalRole>> {
        let sql = if name.is_some() {
            "SELECT name, description, created_at FROM clinical_roles WHERE name = ?"
        } else {
            "SELECT name, description, created_at FROM clinical_roles ORDER BY name"
        };
        let mut q = sqlx::query(sql);
        if let Some(n) = name {
            q = q.bind(n.as_str());
        }
        q.fetch_all(&self.reader)
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                let c = Cols(r);
                Ok(ClinicalRole {
                    name: role_name(c.text("name")?)?,
                    description: c.opt_text("description")?,
                    created_at: c.time("created_at")?,
                })
            })
            .collect()
    }
}
