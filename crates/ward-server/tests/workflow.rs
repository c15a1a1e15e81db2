//! Clinical workflow against a real server over HTTP (ADR 0014): clinical roles, assignment
//! with opt-in/opt-out, "who holds it now" from assignments and scheduled shifts as the
//! (manual) clock moves, CSV schedule imports refused with line-precise errors, escalation
//! policies with loop detection, and the audit records of it all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: failures should panic loudly"
)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use ward_proto::Role;
use ward_testing::{ServerOptions, TestServer, TestUser, send};

async fn call(
    u: &TestUser,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    send(
        &u.http,
        method,
        &format!("{}{path}", u.base),
        Some(&u.token),
        body,
    )
    .await
}

fn holders(b: &Value) -> Vec<String> {
    b["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["username"].as_str().unwrap().to_owned())
        .collect()
}

/// `YYYY-MM-DDTHH:MM` of a UTC instant.
fn civil(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

async fn audit_actions(server: &TestServer) -> Vec<(String, Value)> {
    server
        .services
        .store
        .audit_records(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.details))
        .collect()
}

#[tokio::test]
async fn roles_assignments_shifts_and_who_holds_now() {
    let server = TestServer::start_with(ServerOptions {
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let admin = server.enroll("admin", Role::Admin).await;
    let dr_a = server.enroll("dr-a", Role::Physician).await;
    let dr_b = server.enroll("dr-b", Role::Physician).await;
    let medic = server.enroll("medic", Role::Nurse).await;
    let patient = server.enroll("pat", Role::Patient).await;

    // Define the role.
    let (s, b) = admin
        .post(
            "/v1/admin/roles",
            json!({"name": "cardiology-on-call", "description": "Interventional cardiologist on call"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["name"], "cardiology-on-call");
    let (s, b) = admin
        .post("/v1/admin/roles", json!({"name": "cardiology-on-call"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );

    // Nobody holds it yet: an empty answer, not an error; an unknown role is 404.
    let (s, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(holders(&b).is_empty());
    let (s, b) = medic.get("/v1/roles/neurology-on-call/holders").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(
        b["error"]["message"],
        "clinical role neurology-on-call does not exist"
    );
    let (s, _) = patient.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Assignment: dr-a holds the role; a second assignment changes nothing.
    let (s, b) = admin
        .post(
            "/v1/admin/roles/cardiology-on-call/assignments",
            json!({"username": "dr-a"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, _) = admin
        .post(
            "/v1/admin/roles/cardiology-on-call/assignments",
            json!({"username": "dr-a"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(holders(&b), ["dr-a"]);
    assert_eq!(b["holders"][0]["source"], "assignment");

    // dr-a opts out, and nobody holds it; opts back in.
    let (s, b) = call(
        &dr_a,
        Method::PUT,
        "/v1/roles/cardiology-on-call/on-call",
        Some(json!({"on_call": false})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert!(holders(&b).is_empty());
    // dr-b is not assigned: cannot opt in.
    let (s, b) = call(
        &dr_b,
        Method::PUT,
        "/v1/roles/cardiology-on-call/on-call",
        Some(json!({"on_call": true})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not assigned")
    );

    // A schedule: dr-b covers now until two hours from the top of the hour, then dr-a's
    // shift (dr-a still opted out of the assignment) starts, in Berlin time.
    let now = server.now();
    let top = now
        .replace_minute(0)
        .unwrap()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let berlin = |t: OffsetDateTime| {
        // Berlin is UTC+1 or UTC+2; write the local time jiff will map back.
        let off = if (4..=9).contains(&u8::from(t.month())) {
            2
        } else {
            1
        };
        civil(t + Duration::hours(off))
    };
    let month = u8::from(top.month());
    // Keep clear of the two daylight-saving days (last Sundays of March and October).
    let safe_zone = if month == 3 || month == 10 {
        "UTC"
    } else {
        "Europe/Berlin"
    };
    let local = |t: OffsetDateTime| {
        if safe_zone == "UTC" {
            civil(t)
        } else {
            berlin(t)
        }
    };
    let csv = format!(
        "# rota\nrole,username,start,end,time_zone\n\
         cardiology-on-call,dr-b,{},{},UTC\n\
         cardiology-on-call,dr-a,{},{},{safe_zone}\n",
        civil(top - Duration::hours(1)),
        civil(top + Duration::hours(2)),
        local(top + Duration::hours(2)),
        local(top + Duration::hours(10)),
    );
    let (s, b) = admin.post("/v1/admin/schedules", json!({"csv": csv})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["imported"], 2);
    assert_eq!(b["roles"], json!(["cardiology-on-call"]));
    let (_, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(holders(&b), ["dr-b"]);
    assert_eq!(b["holders"][0]["source"], "shift");

    // Two hours later dr-a's shift covers, dr-b's has ended (end exclusive).
    // (Sessions idle that long have expired: log in again.)
    server.advance(top + Duration::hours(2) - now);
    let medic = medic.login_new_device(server.now()).await;
    let dr_a = dr_a.login_new_device(server.now()).await;
    let admin = admin.login_new_device(server.now()).await;
    let (_, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(holders(&b), ["dr-a"]);
    assert_eq!(b["holders"][0]["source"], "shift");
    // dr-a also opts back in: listed once, as assigned.
    let (s, _) = call(
        &dr_a,
        Method::PUT,
        "/v1/roles/cardiology-on-call/on-call",
        Some(json!({"on_call": true})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert_eq!(holders(&b), ["dr-a"]);
    assert_eq!(b["holders"][0]["source"], "assignment");

    // A suspended holder is not a holder.
    server
        .services
        .suspend_user(
            &ward_server::service::Actor::cli(),
            &"dr-a".parse().unwrap(),
        )
        .await
        .unwrap();
    let (_, b) = medic.get("/v1/roles/cardiology-on-call/holders").await;
    assert!(holders(&b).is_empty(), "{b}");

    // Unassign.
    let (s, b) = call(
        &admin,
        Method::DELETE,
        "/v1/admin/roles/cardiology-on-call/assignments/dr-a",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, _) = call(
        &admin,
        Method::DELETE,
        "/v1/admin/roles/cardiology-on-call/assignments/dr-a",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, b) = admin.get("/v1/admin/roles").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b["roles"][0]["description"],
        "Interventional cardiologist on call"
    );

    // The audit log holds the story, with ids and never names of patients or content.
    let actions: Vec<String> = audit_actions(&server)
        .await
        .into_iter()
        .map(|a| a.0)
        .collect();
    for a in [
        "role.create",
        "role.assign",
        "role.on_call",
        "schedule.import",
        "role.unassign",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing in {actions:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn schedule_imports_are_all_or_nothing_with_line_numbers() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    server.enroll("dr-a", Role::Physician).await;
    server.enroll("pat", Role::Patient).await;
    admin
        .post("/v1/admin/roles", json!({"name": "icu-on-call"}))
        .await;
    let import = |csv: String| {
        let admin = &admin;
        async move { admin.post("/v1/admin/schedules", json!({"csv": csv})).await }
    };
    let h = "role,username,start,end,time_zone\n";

    // Malformed lines: every one named.
    let (s, b) = import(format!(
        "{h}icu-on-call,dr-a,2030-01-01T08:00,2030-01-01T20:00,UTC\n\
         icu-on-call,dr-a,2030-01-02T08:00\n\
         icu-on-call,dr-a,2030-01-03T20:00,2030-01-03T08:00,UTC\n\
         icu-on-call,dr-a,2030-01-04T08:00,2030-01-04T20:00,Atlantis/Capital\n"
    ))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("schedule refused, nothing imported:"),
        "{msg}"
    );
    assert!(msg.contains("line 3: expected 5 fields"), "{msg}");
    assert!(
        msg.contains("line 4: end 2030-01-03T08:00 is not after start"),
        "{msg}"
    );
    assert!(
        msg.contains("line 5: unknown time zone \"Atlantis/Capital\""),
        "{msg}"
    );
    assert!(!msg.contains("line 2"), "{msg}");

    // Unknown role and user, and a patient.
    let (s, b) = import(format!(
        "{h}cardio,dr-a,2030-01-01T08:00,2030-01-01T20:00,UTC\n\
         icu-on-call,dr-z,2030-01-01T08:00,2030-01-01T20:00,UTC\n\
         icu-on-call,pat,2030-01-01T08:00,2030-01-01T20:00,UTC\n"
    ))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("line 2: unknown clinical role cardio"),
        "{msg}"
    );
    assert!(msg.contains("line 3: unknown user dr-z"), "{msg}");
    assert!(
        msg.contains("line 4: unknown user pat (or a patient account)"),
        "{msg}"
    );

    // Overlap within the file names both lines.
    let (s, b) = import(format!(
        "{h}icu-on-call,dr-a,2030-01-01T08:00,2030-01-01T20:00,UTC\n\
         icu-on-call,dr-a,2030-01-01T19:00,2030-01-02T07:00,UTC\n"
    ))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 3: overlaps line 2 (dr-a in icu-on-call)"),
        "{b}"
    );

    // Nothing was stored by the refusals; now a good import, then one overlapping it.
    let (s, b) = import(format!(
        "{h}icu-on-call,dr-a,2030-01-01T08:00,2030-01-01T20:00,UTC\n"
    ))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = import(format!(
        "{h}icu-on-call,dr-a,2030-01-02T08:00,2030-01-02T20:00,UTC\n\
         icu-on-call,dr-a,2030-01-01T10:00,2030-01-01T12:00,Europe/Berlin\n"
    ))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "line 3: overlaps a stored shift of dr-a in icu-on-call from 2030-01-01T08:00:00Z to 2030-01-01T20:00:00Z"
        ),
        "{msg}"
    );
    let stored = server
        .services
        .store
        .shifts(
            &"icu-on-call".parse().unwrap(),
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::UNIX_EPOCH + Duration::days(36_500),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "only the good import is stored");

    // Not JSON / wrong shape / empty.
    let (s, b) = admin
        .post("/v1/admin/schedules", json!({"file": "x"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = import(String::new()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("empty"),
        "{b}"
    );
    server.stop().await;
}

#[tokio::test]
async fn escalation_policies_resolve_targets_and_refuse_loops() {
    let server = TestServer::start().await;
    let admin = server.enroll("admin", Role::Admin).await;
    let medic = server.enroll("medic", Role::Nurse).await;
    server.enroll("dr-a", Role::Physician).await;
    server.enroll("dr-b", Role::Physician).await;
    server.enroll("chief", Role::Physician).await;
    server.enroll("pat", Role::Patient).await;
    for r in ["cardio", "cardio-backup", "chief"] {
        let (s, b) = admin.post("/v1/admin/roles", json!({"name": r})).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    for (r, u) in [("cardio", "dr-a"), ("cardio-backup", "dr-b")] {
        let (s, b) = admin
            .post(
                &format!("/v1/admin/roles/{r}/assignments"),
                json!({"username": u}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let set = |role: &'static str, body: Value| {
        let admin = &admin;
        async move {
            call(
                admin,
                Method::PUT,
                &format!("/v1/admin/roles/{role}/escalation"),
                Some(body),
            )
            .await
        }
    };

    // "chief" is both a role and a user: a bare name is refused, prefixes decide.
    let (s, b) = set(
        "cardio",
        json!({"ack_within_secs": 300, "then": ["cardio-backup", "chief"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("write role:chief or user:chief")
    );
    let (s, b) = set(
        "cardio",
        json!({"ack_within_secs": 300, "renotify_every_secs": 60, "then": ["cardio-backup", "user:chief"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["then"],
        json!([{"type": "role", "name": "cardio-backup"}, {"type": "user", "name": "chief"}])
    );

    // The chain as a sender sees it: cardio's holders, then cardio-backup's, then chief.
    let (s, b) = medic.get("/v1/roles/cardio/holders").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let tiers: Vec<Vec<String>> = b["escalation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(tiers, [vec!["dr-a"], vec!["dr-b"], vec!["chief"]]);
    assert_eq!(b["escalation"][1]["role"], "cardio-backup");
    assert_eq!(b["escalation"][1]["ack_within_secs"], 300);

    // Loops: direct, through another role's policy, and to itself.
    let (s, b) = set(
        "cardio-backup",
        json!({"ack_within_secs": 120, "then": ["role:cardio"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        b["error"]["message"],
        "escalation loop: cardio-backup → cardio → cardio-backup; a tier may not lead back to a role already in the chain"
    );
    let (s, _) = set(
        "cardio-backup",
        json!({"ack_within_secs": 120, "then": ["role:chief"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = set(
        "chief",
        json!({"ack_within_secs": 120, "then": ["role:cardio"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("escalation loop: chief → cardio → cardio-backup → chief"),
        "{b}"
    );
    let (s, b) = set(
        "chief",
        json!({"ack_within_secs": 120, "then": ["role:chief"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // Bad input: each named.
    for (body, needle) in [
        (
            json!({"ack_within_secs": 5, "then": ["user:chief"]}),
            "ack_within must be between",
        ),
        (
            json!({"ack_within_secs": 300, "renotify_every_secs": 300, "then": ["user:chief"]}),
            "renotify_every",
        ),
        (
            json!({"ack_within_secs": 300, "then": ["user:chief", "user:chief"]}),
            "listed twice",
        ),
        (
            json!({"ack_within_secs": 300, "then": ["user:pat"]}),
            "patient account",
        ),
        (
            json!({"ack_within_secs": 300, "then": ["Bad Name"]}),
            "neither a clinical role nor a user",
        ),
        (
            json!({"ack_within_secs": 300, "then": ["role:Bad"]}),
            "invalid clinical role name",
        ),
        (
            json!({"ack_within_secs": 300, "then": ["a","b","c","d","e","f","g","h","i"]}),
            "at most 8",
        ),
        (json!({"ack_within_secs": 300}), "missing field"),
    ] {
        let (s, b) = set("chief", body.clone()).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND,
            "{body}: {s} {b}"
        );
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {b}"
        );
    }
    let (s, b) = set(
        "nope",
        json!({"ack_within_secs": 300, "then": ["user:chief"]}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = call(
        &admin,
        Method::PUT,
        "/v1/admin/roles/NOT%20A%20ROLE/escalation",
        Some(json!({"ack_within_secs": 300, "then": ["user:chief"]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // Roles: bad names and descriptions.
    for (body, needle) in [
        (json!({"name": "Cardio"}), "invalid clinical role name"),
        (
            json!({"name": "x", "description": "a".repeat(201)}),
            "at most 200",
        ),
        (
            json!({"name": "x", "description": "a\u{7}b"}),
            "control characters",
        ),
        (json!({"name": "x", "extra": 1}), "unknown field"),
    ] {
        let (s, b) = admin.post("/v1/admin/roles", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {b}"
        );
    }
    // Assigning a patient or an unknown user.
    let (s, b) = admin
        .post(
            "/v1/admin/roles/cardio/assignments",
            json!({"username": "pat"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = admin
        .post(
            "/v1/admin/roles/cardio/assignments",
            json!({"username": "nobody"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    let audit = audit_actions(&server).await;
    let sets: Vec<&Value> = audit
        .iter()
        .filter(|(a, _)| a == "escalation.set")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(sets.len(), 2, "only accepted policies are recorded");
    assert_eq!(sets[0]["role"], "cardio");
    assert_eq!(sets[0]["ack_within_secs"], 300);
    server.stop().await;
}
