//! Conformance scenarios of [`WorkflowStore`](crate::WorkflowStore): clinical roles,
//! assignments with opt-in/opt-out, shifts without overlaps, escalation policies.

use std::sync::Arc;

use time::Duration;
use ward_proto::{ClinicalRoleName, UserId};

use super::{t0, user};
use crate::{
    ClinicalRole, EscalationPolicy, PolicyTarget, RoleAssignment, Shift, Store, StoreError,
};

fn name(s: &str) -> ClinicalRoleName {
    ClinicalRoleName::parse(s).unwrap()
}

fn role(s: &str) -> ClinicalRole {
    ClinicalRole {
        name: name(s),
        description: Some(format!("the {s} duty")),
        created_at: t0(),
    }
}

async fn new_user(store: &dyn Store, n: &str) -> UserId {
    let u = user(n);
    store.create_user(&u, &super::code()).await.unwrap();
    u.id
}

fn shift(r: &str, u: UserId, from_h: i64, to_h: i64) -> Shift {
    Shift {
        role: name(r),
        user_id: u,
        starts_at: t0() + Duration::hours(from_h),
        ends_at: t0() + Duration::hours(to_h),
        time_zone: "Europe/Berlin".to_owned(),
    }
}

pub async fn workflow_roles_create_and_list(store: Arc<dyn Store>) {
    assert!(store.clinical_roles().await.unwrap().is_empty());
    store
        .create_clinical_role(&role("ward-5-charge-nurse"))
        .await
        .unwrap();
    let mut bare = role("cardiology-on-call");
    bare.description = None;
    store.create_clinical_role(&bare).await.unwrap();
    // Byte order of names on both backends ('-' sorts before letters and digits).
    store
        .create_clinical_role(&role("cardiology"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .clinical_roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(
        names,
        ["cardiology", "cardiology-on-call", "ward-5-charge-nurse"]
    );
    assert_eq!(
        store
            .clinical_role(&name("cardiology-on-call"))
            .await
            .unwrap(),
        Some(bare)
    );
    assert_eq!(store.clinical_role(&name("nope")).await.unwrap(), None);
    assert!(matches!(
        store.create_clinical_role(&role("cardiology")).await,
        Err(StoreError::Conflict("clinical role"))
    ));
}

pub async fn workflow_assignments_opt_in_and_out(store: Arc<dyn Store>) {
    store.create_clinical_role(&role("cardio")).await.unwrap();
    let a = new_user(store.as_ref(), "dr-a").await;
    let b = new_user(store.as_ref(), "dr-b").await;
    let assign = |u: UserId, at| RoleAssignment {
        role: name("cardio"),
        user_id: u,
        on_call: true,
        assigned_at: at,
        changed_at: at,
    };
    assert!(store.assign_clinical_role(&assign(a, t0())).await.unwrap());
    assert!(
        store
            .assign_clinical_role(&assign(b, t0() + Duration::seconds(1)))
            .await
            .unwrap()
    );
    assert!(
        !store.assign_clinical_role(&assign(a, t0())).await.unwrap(),
        "a second assignment changes nothing"
    );
    let list = store.role_assignments(&name("cardio")).await.unwrap();
    assert_eq!(
        list,
        vec![assign(a, t0()), assign(b, t0() + Duration::seconds(1))]
    );

    // Opt out and back in; the assignment stays.
    let later = t0() + Duration::minutes(5);
    assert!(
        store
            .set_on_call(&name("cardio"), a, false, later)
            .await
            .unwrap()
    );
    let list = store.role_assignments(&name("cardio")).await.unwrap();
    assert!(!list[0].on_call);
    assert_eq!(list[0].changed_at, later);
    assert_eq!(list[0].assigned_at, t0());
    assert!(
        store
            .set_on_call(&name("cardio"), a, true, later)
            .await
            .unwrap()
    );
    let stranger = new_user(store.as_ref(), "dr-c").await;
    assert!(
        !store
            .set_on_call(&name("cardio"), stranger, true, later)
            .await
            .unwrap(),
        "no assignment, nothing to opt into"
    );

    // Unknown role or user.
    let mut bad = assign(a, t0());
    bad.role = name("nope");
    assert!(matches!(
        store.assign_clinical_role(&bad).await,
        Err(StoreError::NotFound("clinical role"))
    ));
    assert!(matches!(
        store
            .assign_clinical_role(&assign(UserId::random(), t0()))
            .await,
        Err(StoreError::NotFound("user"))
    ));

    assert!(
        store
            .unassign_clinical_role(&name("cardio"), a)
            .await
            .unwrap()
    );
    assert!(
        !store
            .unassign_clinical_role(&name("cardio"), a)
            .await
            .unwrap()
    );
    assert_eq!(
        store.role_assignments(&name("cardio")).await.unwrap(),
        vec![assign(b, t0() + Duration::seconds(1))]
    );
}

pub async fn workflow_shifts_query_and_overlap(store: Arc<dyn Store>) {
    store.create_clinical_role(&role("cardio")).await.unwrap();
    store.create_clinical_role(&role("icu")).await.unwrap();
    let a = new_user(store.as_ref(), "dr-a").await;
    let b = new_user(store.as_ref(), "dr-b").await;
    let day = vec![
        shift("cardio", a, 0, 12),
        shift("cardio", b, 12, 24),
        // The same hours in another role, and back to back for one user: no overlap.
        shift("icu", a, 0, 12),
        shift("cardio", a, 24, 36),
    ];
    store.add_shifts(&day).await.unwrap();

    let at = |h: i64| t0() + Duration::hours(h);
    let covering = |h: i64| {
        let store = store.clone();
        async move {
            store
                .shifts(&name("cardio"), at(h), at(h) + Duration::microseconds(1))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        covering(0).await,
        vec![day[0].clone()],
        "start is inclusive"
    );
    assert_eq!(covering(12).await, vec![day[1].clone()], "end is exclusive");
    assert_eq!(covering(36).await, vec![]);
    assert_eq!(
        store
            .shifts(&name("cardio"), at(-100), at(100))
            .await
            .unwrap(),
        vec![day[0].clone(), day[1].clone(), day[3].clone()],
        "by start"
    );

    // Overlaps with stored shifts or within the batch are refused, and nothing is written.
    let before = store
        .shifts(&name("cardio"), at(-100), at(100))
        .await
        .unwrap();
    for batch in [
        vec![shift("cardio", b, 48, 50), shift("cardio", a, 11, 13)],
        vec![shift("cardio", b, 48, 50), shift("cardio", b, 49, 51)],
        vec![shift("cardio", b, 60, 60)],
        vec![shift("cardio", b, 61, 60)],
    ] {
        assert!(
            matches!(
                store.add_shifts(&batch).await,
                Err(StoreError::Conflict("shift"))
            ),
            "{batch:?}"
        );
    }
    assert!(matches!(
        store
            .add_shifts(&[shift("cardio", b, 70, 71), shift("nope", b, 1, 2)])
            .await,
        Err(StoreError::NotFound("clinical role"))
    ));
    assert!(matches!(
        store
            .add_shifts(&[shift("cardio", UserId::random(), 70, 71)])
            .await,
        Err(StoreError::NotFound("user"))
    ));
    assert_eq!(
        store
            .shifts(&name("cardio"), at(-100), at(100))
            .await
            .unwrap(),
        before
    );
}

pub async fn workflow_shift_imports_race_one_wins(store: Arc<dyn Store>) {
    store.create_clinical_role(&role("cardio")).await.unwrap();
    let a = new_user(store.as_ref(), "dr-a").await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.add_shifts(&[shift("cardio", a, i, i + 6)]).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict("shift")) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let stored = store
        .shifts(
            &name("cardio"),
            t0() - Duration::days(1),
            t0() + Duration::days(1),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), ok);
    assert!(ok >= 1);
    for w in stored.windows(2) {
        assert!(w[0].ends_at <= w[1].starts_at, "overlap stored: {stored:?}");
    }
}

pub async fn workflow_escalation_policies(store: Arc<dyn Store>) {
    store.create_clinical_role(&role("cardio")).await.unwrap();
    store
        .create_clinical_role(&role("cardio-backup"))
        .await
        .unwrap();
    let chief = new_user(store.as_ref(), "chief").await;
    assert_eq!(
        store.escalation_policy(&name("cardio")).await.unwrap(),
        None
    );
    let p = EscalationPolicy {
        role: name("cardio"),
        ack_within_secs: 300,
        renotify_every_secs: Some(60),
        then: vec![
            PolicyTarget::Role(name("cardio-backup")),
            PolicyTarget::User(chief),
        ],
        updated_at: t0(),
    };
    store.set_escalation_policy(&p).await.unwrap();
    assert_eq!(
        store.escalation_policy(&name("cardio")).await.unwrap(),
        Some(p.clone())
    );
    // Replace.
    let q = EscalationPolicy {
        ack_within_secs: 120,
        renotify_every_secs: None,
        then: vec![PolicyTarget::User(chief)],
        updated_at: t0() + Duration::hours(1),
        ..p.clone()
    };
    store.set_escalation_policy(&q).await.unwrap();
    let backup = EscalationPolicy {
        role: name("cardio-backup"),
        then: vec![],
        ..q.clone()
    };
    store.set_escalation_policy(&backup).await.unwrap();
    assert_eq!(store.escalation_policies().await.unwrap(), vec![q, backup]);
    let orphan = EscalationPolicy {
        role: name("nope"),
        ..p
    };
    assert!(matches!(
        store.set_escalation_policy(&orphan).await,
        Err(StoreError::NotFound("clinical role"))
    ));
}
