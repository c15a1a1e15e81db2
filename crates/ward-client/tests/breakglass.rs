//! Break-glass emergency access end to end (ADR 0016): the real server over TLS with the
//! hand-moved clock, and real clients. A nurse outside a group opens access; a member's
//! client adds her; she reads what is sent after; every member sees the notice; the
//! compliance officer's device gets the alert; when the clock passes the expiry she is
//! removed, receives nothing new and cannot send. An unauthorised role, and a reason
//! carrying an identifier, are refused and change nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use ward_client::{EnrollParams, Target, WardClient, WardError};
use ward_core::Priority;
use ward_proto::{ErrorCode, Role, Username};
use ward_testing::{PASSWORD, ServerOptions, TestServer};

const PASSPHRASE: &str = "profile passphrase for tests";
const REASON: &str = "Rapid response on ward 9, covering for the primary nurse";

struct Device {
    client: WardClient,
    _dir: TempDir,
}

async fn enroll(server: &TestServer, name: &str, role: Role) -> Device {
    let code = server.create_user(name, role).await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = WardClient::enroll(EnrollParams {
        profile_dir: &dir.path().join("profile"),
        passphrase: PASSPHRASE,
        server_url: &server.url,
        ca_pem: server.ca_pem.as_deref().unwrap(),
        username: Username::parse(name).unwrap(),
        enrollment_code: &code,
        password: PASSWORD,
        device_name: "phone",
    })
    .await
    .unwrap();
    Device { client, _dir: dir }
}

async fn texts(d: &mut Device) -> Vec<String> {
    d.client
        .sync()
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect()
}

async fn actions(server: &TestServer) -> Vec<String> {
    server
        .services
        .store
        .audit_records(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect()
}

/// The next `break_glass` event queued for a device's live connection.
async fn next_alert<T: std::ops::Deref<Target = str>>(
    rx: &mut tokio::sync::mpsc::Receiver<T>,
) -> Value {
    loop {
        let t = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .expect("subscription open");
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "break_glass" {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_access_appears_is_audited_and_expires() {
    let server = TestServer::start_with(ServerOptions {
        tls: true,
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let mut alice = enroll(&server, "alice", Role::Physician).await;
    let mut bob = enroll(&server, "bob", Role::Nurse).await;
    let mut carol = enroll(&server, "carol", Role::Nurse).await;
    let mut pete = enroll(&server, "pete", Role::Pharmacist).await;
    let comp = enroll(&server, "officer", Role::Compliance).await;
    let mut alert = server.services.hub.subscribe(comp.client.device_id());

    let group = alice
        .client
        .create_group("Ward 9", &["bob".parse().unwrap()])
        .await
        .unwrap();
    alice
        .client
        .send_text(
            Target::Conversation(group),
            "before the emergency",
            Priority::Routine,
        )
        .await
        .unwrap();
    assert!(
        texts(&mut bob)
            .await
            .contains(&"before the emergency".to_owned())
    );
    let roster_before = alice.client.group_devices(group);

    // An unauthorised role is refused by the server, and nothing changes.
    let err = pete
        .client
        .break_glass(group, REASON, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            WardError::Api {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("may not open break-glass"),
        "{err}"
    );
    // A reason with an identifier in it never leaves the client.
    let err = carol
        .client
        .break_glass(group, "Patient SSN 123-45-6789 coding in bed 4", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("patient information (us_ssn)"),
        "{err}"
    );
    assert!(
        server
            .services
            .store
            .break_glass_grants(None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    bob.client.sync().await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(alice.client.group_devices(group), roster_before);
    assert!(
        !actions(&server)
            .await
            .contains(&"breakglass.granted".to_owned())
    );

    // Carol opens the group for 10 minutes; the compliance officer's device is alerted.
    let grant = carol
        .client
        .break_glass(group, REASON, Some(10))
        .await
        .unwrap();
    assert_eq!(grant.username.as_str(), "carol");
    let a = next_alert(&mut alert.events).await;
    assert_eq!(a["grant_id"], grant.grant_id.to_string());
    assert_eq!(a["conversation_id"], group.to_string());
    assert_eq!(a["ended"], false);

    // Bob's next sync adds her (and shows him the notice); hers joins her.
    let report = bob.client.sync().await.unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let notice = report
        .break_glass
        .iter()
        .find(|g| g.grant_id == grant.grant_id)
        .expect("bob sees the notice");
    assert_eq!(notice.reason, REASON);
    assert_eq!(notice.username.as_str(), "carol");
    assert!(
        bob.client
            .group_devices(group)
            .contains(&carol.client.device_id())
    );
    let report = carol.client.sync().await.unwrap();
    assert!(
        report
            .break_glass
            .iter()
            .any(|g| g.grant_id == grant.grant_id)
    );
    assert!(
        report
            .messages
            .iter()
            .all(|m| m.text != "before the emergency"),
        "history from before her addition stays unreadable"
    );

    // A message sent after the grant reaches her; every member sees the notice.
    alice
        .client
        .send_text(
            Target::Conversation(group),
            "BP 80/40, need help",
            Priority::Stat,
        )
        .await
        .unwrap();
    assert!(
        texts(&mut carol)
            .await
            .contains(&"BP 80/40, need help".to_owned())
    );
    let report = alice.client.sync().await.unwrap();
    assert!(
        report
            .break_glass
            .iter()
            .any(|g| g.grant_id == grant.grant_id)
    );
    carol
        .client
        .send_text(Target::Conversation(group), "on my way", Priority::Urgent)
        .await
        .unwrap();
    assert!(texts(&mut bob).await.contains(&"on my way".to_owned()));
    let log = actions(&server).await;
    for action in [
        "breakglass.refused",
        "breakglass.granted",
        "breakglass.added",
    ] {
        assert!(log.contains(&action.to_owned()), "{action} missing");
    }

    // Time is up: the server removes her at once and tells everyone. (Under the 15-minute
    // idle timeout, so the sessions live.)
    server.advance(time::Duration::minutes(11));
    assert_eq!(server.services.expire_break_glass().await.unwrap(), 1);
    let a = next_alert(&mut alert.events).await;
    assert_eq!(a["ended"], true);
    assert!(
        actions(&server)
            .await
            .contains(&"breakglass.expired".to_owned())
    );
    alice
        .client
        .send_text(
            Target::Conversation(group),
            "after the expiry",
            Priority::Routine,
        )
        .await
        .unwrap();
    assert!(
        !texts(&mut carol)
            .await
            .contains(&"after the expiry".to_owned()),
        "nothing new reaches her"
    );
    let err = carol
        .client
        .send_text(
            Target::Conversation(group),
            "still here?",
            Priority::Routine,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            WardError::Api {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{err:?}"
    );

    // A member's maintenance removes her device from the MLS group.
    let report = alice.client.sync().await.unwrap();
    assert!(report.break_glass.is_empty(), "no notice once it ended");
    assert!(
        !alice
            .client
            .group_devices(group)
            .contains(&carol.client.device_id())
    );
    bob.client.sync().await.unwrap();
    assert!(
        !bob.client
            .group_devices(group)
            .contains(&carol.client.device_id())
    );
    alice
        .client
        .send_text(
            Target::Conversation(group),
            "after the removal",
            Priority::Routine,
        )
        .await
        .unwrap();
    assert!(
        texts(&mut bob)
            .await
            .contains(&"after the removal".to_owned())
    );
    assert!(
        !texts(&mut carol)
            .await
            .contains(&"after the removal".to_owned())
    );
    // The compliance officer lists the grant with its whole history.
    let mut comp = comp;
    let all = comp.client.break_glass_grants().await.unwrap();
    let g = all.iter().find(|g| g.grant_id == grant.grant_id).unwrap();
    assert!(g.added_at.is_some() && g.ended_at.is_some());
}
