//! [`WorkflowStore`]: clinical roles, assignments, shifts and escalation policies.
//!
//! Concurrency: `add_shifts` locks the `clinical_roles` rows of the batch's roles
//! (`FOR UPDATE`, in name order) before its overlap check, so two imports touching one role are
//! serialised and cannot both pass the check; imports of different roles run side by side.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use ward_proto::{ClinicalRoleName, UserId};
use ward_store::{
    ClinicalRole, EscalationPolicy, PolicyTarget, RoleAssignment, Shift, StoreError, StoreResult,
    WorkflowStore, check_shift_batch,
};

use crate::PgStore;
use crate::util::{DbResultExt, col, i64_of, u64_of};

fn role_name(s: String) -> StoreResult<ClinicalRoleName> {
    ClinicalRoleName::parse(&s).map_err(|_| StoreError::Corrupt(format!("clinical role {s:?}")))
}

fn role_of(r: &PgRow) -> StoreResult<ClinicalRole> {
    Ok(ClinicalRole {
        name: role_name(col(r, "name")?)?,
        description: col(r, "description")?,
        created_at: col(r, "created_at")?,
    })
}

fn assignment_of(r: &PgRow) -> StoreResult<RoleAssignment> {
    Ok(RoleAssignment {
        role: role_name(col(r, "role")?)?,
        user_id: UserId(col(r, "user_id")?),
        on_call: col(r, "on_call")?,
        assigned_at: col(r, "assigned_at")?,
        changed_at: col(r, "changed_at")?,
    })
}

fn shift_of(r: &PgRow) -> StoreResult<Shift> {
    Ok(Shift {
        role: role_name(col(r, "role")?)?,
        user_id: UserId(col(r, "user_id")?),
        starts_at: col(r, "starts_at")?,
        ends_at: col(r, "ends_at")?,
        time_zone: col(r, "time_zone")?,
    })
}

fn policy_of(r: &PgRow) -> StoreResult<EscalationPolicy> {
    let then: Vec<PolicyTarget> = serde_json::from_str(&col::<String>(r, "then_targets")?)
        .map_err(|e| StoreError::Corrupt(format!("escalation targets: {e}")))?;
    Ok(EscalationPolicy {
        role: role_name(col(r, "role")?)?,
        ack_within_secs: u64_of(col(r, "ack_within_secs")?)?,
        renotify_every_secs: col::<Option<i64>>(r, "renotify_every_secs")?
            .map(u64_of)
            .transpose()?,
        then,
        updated_at: col(r, "updated_at")?,
    })
}

/// Lock a role's row (`FOR UPDATE` when `exclusive`, else `FOR KEY SHARE`); `NotFound` if
/// there is none.
async fn lock_role(
    conn: &mut PgConnection,
    role: &ClinicalRoleName,
    exclusive: bool,
) -> StoreResult<()> {
    let sql = if exclusive {
        "SELECT 1 FROM clinical_roles WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT 1 FROM clinical_roles WHERE name = $1 FOR KEY SHARE"
    };
    sqlx::query(sql)
        .bind(role.as_str())
        .fetch_optional(&mut *conn)
        .await
        .be()?
        .map(|_| ())
        .ok_or(StoreError::NotFound("clinical role"))
}

async fn require_user(conn: &mut PgConnection, user: UserId) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE")
        .bind(user.0)
        .fetch_optional(&mut *conn)
        .await
        .be()?
        .map(|_| ())
        .ok_or(StoreError::NotFound("user"))
}

const POLICY_COLS: &str = "role, ack_within_secs, renotify_every_secs, then_targets, updated_at";

#[async_trait]
impl WorkflowStore for PgStore {
    async fn create_clinical_role(&self, role: &ClinicalRole) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO clinical_roles (name, description, created_at) VALUES ($1, $2, $3)",
        )
        .bind(role.name.as_str())
        .bind(&role.description)
        .bind(role.created_at)
        .execute(&self.pool)
        .await
        .write("clinical role", "clinical role")?;
        Ok(())
    }

    async fn clinical_role(&self, name: &ClinicalRoleName) -> StoreResult<Option<ClinicalRole>> {
        sqlx::query("SELECT name, description, created_at FROM clinical_roles WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .be()?
            .as_ref()
            .map(role_of)
            .transpose()
    }

    async fn clinical_roles(&self) -> StoreResult<Vec<ClinicalRole>> {
        sqlx::query(
            "SELECT name, description, created_at FROM clinical_roles ORDER BY name COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(role_of)
        .collect()
    }

    async fn assign_clinical_role(&self, a: &RoleAssignment) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        lock_role(&mut tx, &a.role, false).await?;
        require_user(&mut tx, a.user_id).await?;
        let done = sqlx::query(
            "INSERT INTO role_assignments (role, user_id, on_call, assigned_at, changed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (role, user_id) DO NOTHING",
        )
        .bind(a.role.as_str())
        .bind(a.user_id.0)
        .bind(a.on_call)
        .bind(a.assigned_at)
        .bind(a.changed_at)
        .execute(&mut *tx)
        .await
        .write("role assignment", "user")?
        .rows_affected();
        tx.commit().await.be()?;
        Ok(done == 1)
    }

    async fn unassign_clinical_role(
        &self,
        role: &ClinicalRoleName,
        user: UserId,
    ) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM role_assignments WHERE role = $1 AND user_id = $2")
            .bind(role.as_str())
            .bind(user.0)
            .execute(&self.pool)
            .await
            .be()?
            .rows_affected();
        Ok(done == 1)
    }

    async fn set_on_call(
        &self,
        role: &ClinicalRoleName,
        user: UserId,
        on_call: bool,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE role_assignments SET on_call = $1, changed_at = $2 \
             WHERE role = $3 AND user_id = $4",
        )
        .bind(on_call)
        .bind(at)
        .bind(role.as_str())
        .bind(user.0)
        .execute(&self.pool)
        .await
        .be()?
        .rows_affected();
        Ok(done == 1)
    }

    async fn role_assignments(&self, role: &ClinicalRoleName) -> StoreResult<Vec<RoleAssignment>> {
        sqlx::query(
            "SELECT role, user_id, on_call, assigned_at, changed_at FROM role_assignments \
             WHERE role = $1 ORDER BY assigned_at, user_id",
        )
        .bind(role.as_str())
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(assignment_of)
        .collect()
    }

    async fn add_shifts(&self, shifts: &[Shift]) -> StoreResult<()> {
        check_shift_batch(shifts)?;
        let mut roles: Vec<&ClinicalRoleName> = shifts.iter().map(|s| &s.role).collect();
        roles.sort();
        roles.dedup();
        let mut tx = self.begin().await?;
        for r in roles {
            lock_role(&mut tx, r, true).await?;
        }
        for s in shifts {
            require_user(&mut tx, s.user_id).await?;
            let clash = sqlx::query(
                "SELECT 1 FROM shifts WHERE role = $1 AND user_id = $2 AND starts_at < $3 \
                 AND ends_at > $4 LIMIT 1",
            )
            .bind(s.role.as_str())
            .bind(s.user_id.0)
            .bind(s.ends_at)
            .bind(s.starts_at)
            .fetch_optional(&mut *tx)
            .await
            .be()?;
            if clash.is_some() {
                return Err(StoreError::Conflict("shift"));
            }
            sqlx::query(
                "INSERT INTO shifts (role, user_id, starts_at, ends_at, time_zone) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(s.role.as_str())
            .bind(s.user_id.0)
            .bind(s.starts_at)
            .bind(s.ends_at)
            .bind(&s.time_zone)
            .execute(&mut *tx)
            .await
            .write("shift", "user")?;
        }
        tx.commit().await.be()
    }

    async fn shifts(
        &self,
        role: &ClinicalRoleName,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<Vec<Shift>> {
        sqlx::query(
            "SELECT role, user_id, starts_at, ends_at, time_zone FROM shifts \
             WHERE role = $1 AND starts_at < $2 AND ends_at > $3 ORDER BY starts_at, user_id",
        )
        .bind(role.as_str())
        .bind(to)
        .bind(from)
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(shift_of)
        .collect()
    }

    async fn set_escalation_policy(&self, p: &EscalationPolicy) -> StoreResult<()> {
        let then = serde_json::to_string(&p.then)
            .map_err(|e| StoreError::Corrupt(format!("escalation targets: {e}")))?;
        sqlx::query(
            "INSERT INTO escalation_policies \
             (role, ack_within_secs, renotify_every_secs, then_targets, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (role) DO UPDATE SET \
             ack_within_secs = EXCLUDED.ack_within_secs, \
             renotify_every_secs = EXCLUDED.renotify_every_secs, \
             then_targets = EXCLUDED.then_targets, updated_at = EXCLUDED.updated_at",
        )
        .bind(p.role.as_str())
        .bind(i64_of(p.ack_within_secs))
        .bind(p.renotify_every_secs.map(i64_of))
        .bind(then)
        .bind(p.updated_at)
        .execute(&self.pool)
        .await
        .write("escalation policy", "clinical role")?;
        Ok(())
    }

    async fn escalation_policy(
        &self,
        role: &ClinicalRoleName,
    ) -> StoreResult<Option<EscalationPolicy>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLS} FROM escalation_policies WHERE role = $1"
        )))
        .bind(role.as_str())
        .fetch_optional(&self.pool)
        .await
        .be()?
        .as_ref()
        .map(policy_of)
        .transpose()
    }

    async fn escalation_policies(&self) -> StoreResult<Vec<EscalationPolicy>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLS} FROM escalation_policies ORDER BY role COLLATE \"C\""
        )))
        .fetch_all(&self.pool)
        .await
        .be()?
        .iter()
        .map(policy_of)
        .collect()
    }
}
