//! Writes the MLS fixture snapshots (`fixtures/`) and the seed corpora (`corpus/<target>/seed-*`).
//!
//! Run from `fuzz/`: `cargo +nightly run --release --example gen_seeds`. Re-run it when the
//! format of `Client::to_bytes`, the content schema or a wire type changes; `mls_process`
//! refuses to start on a snapshot that no longer restores.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;
use ward_core::{Client, MessageContent, MessageRef, PatientContext, Priority};
use ward_fuzz::fixture::{self, CONVERSATION_X25519, Org};
use ward_proto::{
    AckRequest, AuditRecord, Bytes, ClaimKeyPackagesRequest, ClientFrame, ConversationCursor,
    ConversationKind, CreateConversationRequest, CreateUserRequest, DeviceId, EnrollRequest,
    EnvelopeKind, LoginRequest, NewDevice, ReadReceiptRequest, Role, SendEnvelopeRequest,
    UpdatePolicyRequest, UploadKeyPackagesRequest, UserId, Username, WelcomeDelivery,
};
use ward_store::audit;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create directory");
    fs::write(dir.join(name), bytes).expect("write file");
}

fn seed(target: &str, name: &str, bytes: &[u8]) {
    write(
        &root().join("corpus").join(target),
        &format!("seed-{name}"),
        bytes,
    );
}

fn json_seed<T: Serialize>(target: &str, name: &str, value: &T) {
    seed(
        target,
        name,
        &serde_json::to_vec(value).expect("seed encodes"),
    );
}

fn main() {
    mls();
    content();
    frames();
    bodies();
    audit_records();
    println!("fixtures and seeds written under {}", root().display());
}

fn mls() {
    let built = fixture::build();
    let member = built.member.to_bytes().expect("member state");
    let joiner = built.joiner.to_bytes().expect("joiner state");
    fixture::check(&member, &joiner, &built);
    let fixtures = root().join("fixtures");
    write(&fixtures, "member.state", &member);
    write(&fixtures, "joiner.state", &joiner);
    for (name, bytes) in built
        .messages
        .iter()
        .chain(&built.welcomes)
        .chain(&built.key_packages)
    {
        seed("mls_process", name, bytes);
    }
    seed("core_state", "member", &member);
    seed("core_state", "joiner", &joiner);
    let fresh = Org::new().client(9, "erin");
    seed(
        "core_state",
        "fresh",
        &fresh.to_bytes().expect("fresh state"),
    );
    // A state with a revocation list (carol's device).
    let mut revoked = Client::from_bytes(&joiner).expect("joiner restores");
    revoked.set_revoked(vec![DeviceId(Uuid::from_u128(
        0xdddd_0000_0000_4000_8000_0000_0000_0003,
    ))]);
    seed("core_state", "revoked", &revoked.to_bytes().expect("state"));
    println!(
        "member state {} bytes, joiner state {} bytes",
        member.len(),
        joiner.len()
    );
}

fn content() {
    let target = "message_content";
    let plain = MessageContent::text("Please call the ward", Priority::Routine, 1_700_000_000_000);
    seed(target, "text", &plain.to_bytes().expect("valid"));
    let mut rich = MessageContent::text("K+ 6.1, repeat stat", Priority::Stat, 1_700_000_000_001);
    rich.reply_to = Some(MessageRef {
        conversation_id: CONVERSATION_X25519,
        message_id: Some(ward_proto::MessageId(Uuid::from_u128(11))),
        seq: Some(42),
        client_message_id: None,
    });
    rich.patient = Some(PatientContext {
        system: "urn:oid:2.16.840.1.113883.2.4.6.3".to_owned(),
        value: "123456782".to_owned(),
        display: Some("Doe, Jane".to_owned()),
        birth_date: Some("1970-12-31".to_owned()),
    });
    rich.extra.insert(
        "attachments".to_owned(),
        serde_json::json!([{"name": "ecg.pdf", "size": 1024, "sha256": "00ff"}]),
    );
    seed(target, "rich", &rich.to_bytes().expect("valid"));
    seed(
        target,
        "unsupported-body",
        br#"{"v":1,"body":{"type":"poll","options":["a","b"]},"priority":"urgent","sent_at_ms":-1,"future":null}"#,
    );
    seed(
        target,
        "unknown-priority",
        "{\"v\":1,\"body\":{\"type\":\"text\",\"text\":\"\\u00e9t\\u00e9 \\ud83d\\ude00\"},\"priority\":\"critical\",\"sent_at_ms\":0,\"x\":[1.5e300,-0,{\"k\":true}]}".as_bytes(),
    );
}

fn frames() {
    let target = "ws_client_frame";
    json_seed(
        target,
        "ack",
        &ClientFrame::Ack(AckRequest {
            conversations: vec![ConversationCursor {
                conversation_id: CONVERSATION_X25519,
                seq: 17,
            }],
            inbox_seq: Some(3),
        }),
    );
    seed(target, "ping", br#"{"type":"ping"}"#);
    seed(target, "ack-empty", br#"{"type":"ack"}"#);
}

fn device() -> NewDevice {
    NewDevice {
        name: "ward-5 workstation".to_owned(),
        signature_key: Bytes(vec![7; 32]),
    }
}

fn username(s: &str) -> Username {
    Username::parse(s).expect("valid username")
}

fn bodies() {
    let target = "api_bodies";
    // Through JSON, so fields added later with a default do not break the generator.
    let send: SendEnvelopeRequest = serde_json::from_value(serde_json::json!({
        "client_message_id": Uuid::from_u128(1),
        "kind": EnvelopeKind::Commit,
        "epoch": 3,
        "payload": Bytes(vec![0, 1, 2, 3, 250]),
        "welcome": WelcomeDelivery {
            payload: Bytes(vec![9; 8]),
            devices: vec![DeviceId(Uuid::from_u128(2))],
        },
        "add_users": [UserId(Uuid::from_u128(3))],
        "remove_devices": [DeviceId(Uuid::from_u128(4))],
        "labels": ["us_ssn"],
    }))
    .expect("a valid SendEnvelopeRequest");
    json_seed(target, "send-envelope", &send);
    json_seed(
        target,
        "enroll",
        &EnrollRequest {
            username: username("dr.house"),
            enrollment_code: "ABCD-EFGH-IJKL".to_owned(),
            password: "correct horse battery staple".to_owned(),
            device: device(),
        },
    );
    json_seed(
        target,
        "login",
        &LoginRequest {
            username: username("nurse-1"),
            password: "correct horse battery staple".to_owned(),
            totp: Some("123456".to_owned()),
            device_id: None,
            new_device: Some(device()),
        },
    );
    json_seed(
        target,
        "create-conversation",
        &CreateConversationRequest {
            kind: ConversationKind::Direct,
            ciphersuite: 0x004D,
            peer: Some(username("bob")),
        },
    );
    json_seed(
        target,
        "upload-key-packages",
        &UploadKeyPackagesRequest {
            key_packages: vec![Bytes(vec![1; 12]), Bytes(vec![])],
            last_resort: Some(Bytes(vec![2; 5])),
        },
    );
    json_seed(
        target,
        "ack",
        &AckRequest {
            conversations: vec![ConversationCursor {
                conversation_id: CONVERSATION_X25519,
                seq: 5,
            }],
            inbox_seq: Some(9),
        },
    );
    json_seed(
        target,
        "read-receipt",
        &ReadReceiptRequest {
            conversations: vec![ConversationCursor {
                conversation_id: CONVERSATION_X25519,
                seq: 5,
            }],
        },
    );
    json_seed(
        target,
        "create-user",
        &CreateUserRequest {
            username: username("pharm_01"),
            role: Role::Pharmacist,
            display_name: Some("Pharmacy desk".to_owned()),
        },
    );
    json_seed(
        target,
        "claim-key-packages",
        &ClaimKeyPackagesRequest {
            devices: vec![DeviceId(Uuid::from_u128(5))],
        },
    );
    json_seed(
        target,
        "update-policy",
        &UpdatePolicyRequest {
            mfa_required: Some(true),
            idle_timeout_secs: Some(900),
            absolute_timeout_secs: Some(43_200),
            enrollment_ttl_secs: None,
            max_failed_logins: Some(5),
            lockout_secs: Some(900),
            ciphersuites: Some(vec![0x004D, 0x0001]),
        },
    );
    seed(target, "username", b"alice.smith-2");
}

fn audit_records() {
    let target = "audit_record";
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time");
    let user = UserId(Uuid::from_u128(21));
    let device = DeviceId(Uuid::from_u128(22));
    let details = serde_json::json!({"ip": "10.0.0.1", "mfa": true, "attempt": 1});
    let prev = audit::GENESIS_HASH;
    let hash = audit::record_hash(
        &prev,
        1,
        at,
        Some(&user.to_string()),
        Some(&device.to_string()),
        "login.success",
        None,
        &audit::canonical_details(&details),
    );
    let first = AuditRecord {
        seq: 1,
        at,
        actor_user_id: Some(user),
        actor_device_id: Some(device),
        action: "login.success".to_owned(),
        target: None,
        details,
        prev_hash: hex(&prev),
        hash: hex(&hash),
    };
    assert_eq!(audit::recompute(&first), Some(hash));
    json_seed(target, "login", &first);
    let details = serde_json::json!({"bytes": 4096, "kind": "application"});
    let second = AuditRecord {
        seq: 2,
        at: at + time::Duration::microseconds(1_500),
        actor_user_id: None,
        actor_device_id: None,
        action: "message.send".to_owned(),
        target: Some(CONVERSATION_X25519.to_string()),
        hash: hex(&audit::record_hash(
            &hash,
            2,
            at + time::Duration::microseconds(1_500),
            None,
            None,
            "message.send",
            Some(&CONVERSATION_X25519.to_string()),
            &audit::canonical_details(&details),
        )),
        details,
        prev_hash: hex(&hash),
    };
    json_seed(target, "message-send", &second);
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
