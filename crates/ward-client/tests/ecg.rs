//! The ECG case of issue 7, end to end with real clients and the real server (TLS, SQLite,
//! manual clock): a paramedic sends a STAT message to "cardiology-on-call"; the primary does
//! not acknowledge; after the deadline the backup is notified, reads the message and
//! acknowledges; the sender sees every state change with timestamps; the audit log holds the
//! whole story; the message text is nowhere in the server's files.
//! The 12-lead ECG travels as an encrypted PDF attachment (ADR 0015, 0017): the backup
//! downloads it byte-exact after the escalation, and neither its content nor the text is in
//! the server's files.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::path::Path;

use tempfile::TempDir;
use time::Duration;
use ward_client::{AckChoice, EnrollParams, FollowEvent, RoleSent, WardClient};
use ward_core::Priority;
use ward_proto::{
    AckResponse, AlertKind, ClinicalRoleName, CreateClinicalRoleRequest, DeliveryState,
    EscalationOutcome, EscalationPolicyRequest, MessageDelivery, Role, Username,
};
use ward_server::service::Actor;
use ward_testing::{PASSWORD, ServerOptions, TestServer};

const PASSPHRASE: &str = "profile passphrase for tests";
const ECG_TEXT: &str = "STAT: 58M chest pain 40 min, ST elevation V2-V4 on 12-lead, \
                        ETA 12 min; please prepare the cath lab (ECG-E2E-MARKER)";

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

fn role(s: &str) -> ClinicalRoleName {
    ClinicalRoleName::parse(s).unwrap()
}

/// cardiology-on-call (dr-primary; acknowledge within 5 minutes, then cardiology-backup) and
/// cardiology-backup (dr-backup), set up as an administrator would with `ward admin`.
async fn roles(server: &TestServer) {
    let s = &server.services;
    let admin = Actor::cli();
    for (name, holder) in [
        ("cardiology-on-call", "dr-primary"),
        ("cardiology-backup", "dr-backup"),
    ] {
        s.create_clinical_role(
            &admin,
            CreateClinicalRoleRequest {
                name: role(name),
                description: None,
            },
        )
        .await
        .unwrap();
        s.assign_clinical_role(&admin, &role(name), &Username::parse(holder).unwrap())
            .await
            .unwrap();
    }
    s.set_escalation_policy(
        &admin,
        &role("cardiology-on-call"),
        EscalationPolicyRequest {
            ack_within_secs: 300,
            renotify_every_secs: Some(120),
            then: vec!["role:cardiology-backup".into()],
        },
    )
    .await
    .unwrap();
}

/// A 12-lead ECG as the ambulance's monitor exports it (a small PDF).
fn ecg_pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
      2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n\
      % 12-lead ECG, ST elevation V2-V4 (ECG-PDF-MARKER)\n\
      trailer << /Root 1 0 R >>\n%%EOF\n"
        .to_vec()
}

/// The paramedic's send: the text and the ECG, to the role.
async fn paramedic_sends(paramedic: &mut Device) -> RoleSent {
    let ecg = paramedic._dir.path().join("ecg-12-lead.pdf");
    std::fs::write(&ecg, ecg_pdf()).unwrap();
    paramedic
        .client
        .send_to_role_with_attachments(
            &role("cardiology-on-call"),
            ECG_TEXT,
            &[ecg],
            Priority::Stat,
            false,
            None,
        )
        .await
        .unwrap()
}

fn states(d: &MessageDelivery, user: &str) -> Vec<DeliveryState> {
    d.devices
        .iter()
        .find(|x| x.username.as_str() == user)
        .unwrap_or_else(|| panic!("no device of {user}"))
        .states
        .iter()
        .map(|c| c.state)
        .collect()
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecg_stat_to_cardiology_escalates_to_the_backup_who_acknowledges() {
    let server = TestServer::start_with(ServerOptions {
        tls: true,
        manual_clock: true,
        ..Default::default()
    })
    .await;
    let mut paramedic = enroll(&server, "medic-7", Role::Nurse).await;
    let mut primary = enroll(&server, "dr-primary", Role::Physician).await;
    let mut backup = enroll(&server, "dr-backup", Role::Physician).await;
    roles(&server).await;

    // The paramedic does not know who is on call: she addresses the role.
    let sent = paramedic_sends(&mut paramedic).await;
    let outcome = sent.sent.to_role.clone().unwrap();
    assert!(!outcome.nobody_on_call);
    assert_eq!(outcome.tier, 0);
    assert_eq!(
        sent.members,
        [
            Username::parse("dr-primary").unwrap(),
            Username::parse("dr-backup").unwrap()
        ],
        "every tier is in the MLS group from the start"
    );
    let id = sent.sent.message_id;

    // The primary's device receives the message (role and acting human inside the
    // encryption) and the STAT alert, and does not acknowledge.
    let r = primary.client.sync().await.unwrap();
    let m = r
        .messages
        .iter()
        .find(|m| m.message_id == Some(id))
        .unwrap();
    assert_eq!(m.text, ECG_TEXT);
    assert_eq!(m.priority, "stat");
    assert_eq!(m.sender.as_str(), "medic-7");
    assert_eq!(m.to_role, Some(role("cardiology-on-call")));
    assert_eq!(r.alerts.len(), 1);
    assert_eq!(r.alerts[0].kind, AlertKind::Notify);
    assert_eq!(r.alerts[0].message_id, id);
    // The backup's device has the message already, but no alert yet.
    let r = backup.client.sync().await.unwrap();
    assert!(r.messages.iter().any(|m| m.message_id == Some(id)));
    assert!(r.alerts.is_empty());

    // Re-notified at 2 and 4 minutes; the deadline passes at 5: the backup tier is asked.
    for _ in 0..2 {
        server.advance(Duration::seconds(120));
        server.services.run_escalations().await.unwrap();
    }
    let r = primary.client.sync().await.unwrap();
    assert_eq!(
        r.alerts.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [AlertKind::Renotify, AlertKind::Renotify]
    );
    server.advance(Duration::seconds(60));
    server.services.run_escalations().await.unwrap();

    let r = backup.client.sync().await.unwrap();
    assert_eq!(
        r.alerts.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [AlertKind::Escalated]
    );
    assert_eq!(r.alerts[0].tier_role, Some(role("cardiology-backup")));
    // The backup opens the ECG (byte-exact after decryption), reads and takes it.
    let m = backup
        .client
        .history()
        .iter()
        .find(|m| m.message_id == Some(id))
        .cloned()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let saved = backup
        .client
        .download_attachments(&m, out.path(), None)
        .await
        .unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].info.media_type, "application/pdf");
    assert_eq!(std::fs::read(&saved[0].saved_path).unwrap(), ecg_pdf());
    backup.client.mark_read(id).await.unwrap();
    let after = backup
        .client
        .acknowledge(id, AckChoice::Accept)
        .await
        .unwrap();
    let esc = after.escalation.clone().unwrap();
    assert_eq!(esc.outcome, EscalationOutcome::Acknowledged);
    assert_eq!(esc.acknowledged_by.unwrap().as_str(), "dr-backup");
    assert_eq!(esc.acknowledged_as, Some(role("cardiology-backup")));
    assert_eq!(esc.response, Some(AckResponse::Accept));

    // The paramedic, following, sees the escalation, the acknowledgement alert and the
    // encrypted reply naming who took it in which role.
    let mut seen_alerts = Vec::new();
    let mut acks = Vec::new();
    let follow = paramedic.client.follow_events(|e| match e {
        FollowEvent::Alert(a) => seen_alerts.push(a.kind),
        FollowEvent::Message(m) => {
            if let Some(a) = &m.acknowledges {
                acks.push((m.sender.clone(), a.clone()));
            }
        }
    });
    // The first sync inside follow delivers everything pending; then stop following.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), follow).await;
    assert_eq!(seen_alerts, [AlertKind::Escalated, AlertKind::Acknowledged]);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0.as_str(), "dr-backup");
    assert_eq!(acks[0].1.message_id, id);
    assert_eq!(acks[0].1.response, AckResponse::Accept);
    assert_eq!(acks[0].1.as_role, Some(role("cardiology-backup")));

    // Every state change, per device, with timestamps.
    let d = paramedic.client.delivery(id).await.unwrap();
    use DeliveryState::*;
    assert_eq!(
        states(&d, "dr-primary"),
        [Queued, Sent, Delivered, Sent, Sent, Escalated]
    );
    assert_eq!(
        states(&d, "dr-backup"),
        [Queued, Delivered, Sent, Read, Acknowledged]
    );
    for dev in &d.devices {
        assert!(dev.states.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(Some(dev.state), dev.states.last().map(|c| c.state));
    }
    let primary_escalated = d
        .devices
        .iter()
        .find(|x| x.username.as_str() == "dr-primary")
        .and_then(|x| x.states.iter().find(|c| c.state == Escalated))
        .unwrap();
    assert_eq!(primary_escalated.at - d.sent_at, Duration::seconds(300));

    // The audit log holds the whole story, with role and acting human, and no text.
    let log = server
        .services
        .store
        .audit_records(0, 100_000)
        .await
        .unwrap();
    let story: Vec<&str> = log
        .iter()
        .map(|r| r.action.as_str())
        .filter(|a| {
            (a.starts_with("escalation.") && *a != "escalation.set") || *a == "message.send_to_role"
        })
        .collect();
    assert_eq!(
        story,
        [
            "message.send_to_role",
            "escalation.notify",
            "escalation.renotify",
            "escalation.renotify",
            "escalation.escalate",
            "escalation.ack",
        ]
    );
    // The ECG's upload by the paramedic's device and its download by the backup's.
    for action in [
        "blob.upload_create",
        "blob.upload_complete",
        "blob.download",
    ] {
        assert!(
            log.iter().any(|r| r.action == action),
            "no {action} audit record"
        );
    }
    let sent_rec = log
        .iter()
        .find(|r| r.action == "message.send_to_role")
        .unwrap();
    assert_eq!(sent_rec.details["acting_username"], "medic-7");
    assert_eq!(sent_rec.details["role"], "cardiology-on-call");
    let ack_rec = log.iter().find(|r| r.action == "escalation.ack").unwrap();
    assert_eq!(ack_rec.details["acting_username"], "dr-backup");
    assert_eq!(ack_rec.details["as_role"], "cardiology-backup");
    assert!(
        log.iter()
            .all(|r| !r.details.to_string().contains("ST elevation"))
    );
    assert!(
        server
            .services
            .audit
            .verify(&Actor::cli())
            .await
            .unwrap()
            .ok
    );

    // No plaintext reaches the server: not in the database, its WAL, or anything else.
    server.services.audit.checkpoint().await.unwrap();
    for marker in [&b"ECG-E2E-MARKER"[..], b"ECG-PDF-MARKER", b"ecg-12-lead"] {
        let hits = files_contain(server.data_dir.path(), marker);
        assert!(hits.is_empty(), "plaintext found in {hits:?}");
    }
    server.stop().await;
}
