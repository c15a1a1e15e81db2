//! Remote wipe end to end (ADR 0011): the real server over TLS and real clients. An admin
//! wipes Bob's phone; the next member online removes it from every MLS group; the phone's
//! next sync erases its profile and confirms; it cannot log in again; Alice and Bob's tablet
//! carry on. A hostile server's forged or foreign instruction erases nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use ward_client::{EnrollParams, Target, WardClient, WardError};
use ward_core::{CoreError, Priority};
use ward_proto::{Bytes, DeviceId, Role, Username, WipeInstruction};
use ward_testing::{PASSWORD, ServerOptions, TestServer};

const PASSPHRASE: &str = "profile passphrase for tests";

struct Device {
    client: WardClient,
    dir: TempDir,
}

impl Device {
    fn profile_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("profile")
    }
}

async fn tls_server() -> TestServer {
    TestServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    })
    .await
}

async fn enroll_with(server: &TestServer, ca_pem: &str, name: &str, role: Role) -> Device {
    let code = server.create_user(name, role).await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = WardClient::enroll(EnrollParams {
        profile_dir: &dir.path().join("profile"),
        passphrase: PASSPHRASE,
        server_url: &server.url,
        ca_pem,
        username: Username::parse(name).unwrap(),
        enrollment_code: &code,
        password: PASSWORD,
        device_name: "phone",
    })
    .await
    .unwrap();
    Device { client, dir }
}

async fn totp_secret_of(server: &TestServer, username: &Username) -> String {
    let user = server
        .services
        .store
        .user_by_name(username)
        .await
        .unwrap()
        .unwrap();
    let seed = server
        .services
        .master
        .open(
            &format!("totp-secret:{}", user.id),
            &user.totp_secret_enc.unwrap(),
        )
        .unwrap();
    totp_rs::Secret::Raw(seed.to_vec()).to_encoded().to_string()
}

async fn second_device(server: &TestServer, first: &Device) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let secret = totp_secret_of(server, first.client.username()).await;
    let client = WardClient::register_device(
        EnrollParams {
            profile_dir: &dir.path().join("profile"),
            passphrase: PASSPHRASE,
            server_url: &server.url,
            ca_pem: server.ca_pem.as_deref().unwrap(),
            username: first.client.username().clone(),
            enrollment_code: "",
            password: PASSWORD,
            device_name: "tablet",
        },
        Some(ward_testing::totp_code(&secret, server.now())),
    )
    .await
    .unwrap();
    Device { client, dir }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_device_loses_data_and_access_while_the_others_carry_on() {
    let server = tls_server().await;
    let ca = server.ca_pem.clone().unwrap();
    let admin = server.enroll("root", Role::Admin).await;
    let mut alice = enroll_with(&server, &ca, "alice", Role::Physician).await;
    let mut bob = enroll_with(&server, &ca, "bob", Role::Nurse).await;
    let mut tablet = second_device(&server, &bob).await;
    let phone = bob.client.device_id();

    // Both of Bob's devices are in a direct conversation and a group with Alice.
    let direct = alice
        .client
        .send_text(
            Target::User("bob".parse().unwrap()),
            "before the wipe",
            Priority::Routine,
        )
        .await
        .unwrap()
        .conversation_id;
    let group = alice
        .client
        .create_group("Ward 7", &["bob".parse().unwrap()])
        .await
        .unwrap();
    assert!(texts(&mut bob).await.iter().any(|t| t == "before the wipe"));
    tablet.client.sync().await.unwrap();
    for conv in [direct, group] {
        let roster = alice.client.group_devices(conv);
        assert!(
            roster.contains(&phone) && roster.contains(&tablet.client.device_id()),
            "{roster:?}"
        );
    }

    // Bad device ids name the problem.
    let (st, body) = admin
        .post("/v1/admin/devices/not-a-uuid/wipe", json!({}))
        .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("device_id"),
        "{body}"
    );
    let (st, body) = admin
        .post(
            &format!("/v1/admin/devices/{}/wipe", DeviceId::random()),
            json!({}),
        )
        .await;
    assert_eq!(st, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (st, body) = admin.get(&format!("/v1/admin/devices/{phone}/wipe")).await;
    assert_eq!(st, 404, "no order yet: {body}");

    // The admin orders the wipe: revoked at once.
    let (st, order) = admin
        .post(&format!("/v1/admin/devices/{phone}/wipe"), json!({}))
        .await;
    assert_eq!(st, 200, "{order}");
    assert_eq!(order["device_id"], phone.to_string());
    assert_eq!(order["confirmed_at"], Value::Null);
    let (st, body) = admin
        .post(&format!("/v1/admin/devices/{phone}/wipe"), json!({}))
        .await;
    assert_eq!(st, 409, "second order: {body}");

    // The next member online removes the phone from every MLS group.
    alice.client.sync().await.unwrap();
    for conv in [direct, group] {
        let roster = alice.client.group_devices(conv);
        assert!(
            !roster.contains(&phone),
            "phone still in {conv}: {roster:?}"
        );
        assert!(roster.contains(&tablet.client.device_id()), "{roster:?}");
    }

    // The phone's next contact: it verifies the instruction, erases its profile, confirms.
    let profile_dir = bob.profile_dir();
    assert!(profile_dir.join("profile.ward").exists());
    let err = bob.client.sync().await.unwrap_err();
    assert!(
        matches!(err, WardError::Wiped { confirmed: true }),
        "{err:?}"
    );
    assert!(
        !profile_dir.exists(),
        "profile directory still exists: {:?}",
        std::fs::read_dir(&profile_dir).map(|d| d.count())
    );
    assert!(WardClient::open(&profile_dir, PASSPHRASE).is_err());

    // The audit log records every step, and the order shows delivery and confirmation.
    let (st, status) = admin.get(&format!("/v1/admin/devices/{phone}/wipe")).await;
    assert_eq!(st, 200, "{status}");
    assert!(status["delivered_at"].is_string(), "{status}");
    assert!(status["confirmed_at"].is_string(), "{status}");
    let (st, page) = admin.get("/v1/admin/audit?limit=1000").await;
    assert_eq!(st, 200);
    let actions: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == phone.to_string())
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for step in [
        "device.wipe.ordered",
        "device.wipe.delivered",
        "device.wipe.confirmed",
    ] {
        assert!(actions.contains(&step), "{step} missing from {actions:?}");
    }
    let (st, verify) = admin.get("/v1/admin/audit/verify").await;
    assert_eq!(st, 200);
    assert_eq!(verify["ok"], true, "{verify}");

    // The wiped device cannot log in again, even with the right password and code.
    let secret = totp_secret_of(&server, &"bob".parse().unwrap()).await;
    let http = server.client();
    let (st, body) = ward_testing::send(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/login", server.url),
        None,
        Some(json!({
            "username": "bob",
            "password": PASSWORD,
            "totp": ward_testing::totp_code(&secret, server.now() + time::Duration::seconds(30)),
            "device_id": phone,
        })),
    )
    .await;
    assert_eq!(st, 401, "{body}");
    assert_eq!(body["error"]["code"], "device_wiped");
    assert_eq!(body["error"]["wipe"]["device_id"], phone.to_string());
    // A confirmation cannot be replayed, nor forged with another key.
    let nonce = body["error"]["wipe"]["nonce"].clone();
    let forger = SigningKey::generate(&mut rand::rngs::OsRng);
    let raw_nonce = Bytes(base64_decode(nonce.as_str().unwrap()));
    let forged_sig = forger.sign(&ward_proto::WipeConfirmation::signed_bytes(
        phone,
        raw_nonce.as_slice(),
    ));
    let (st, body) = ward_testing::send(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/devices/{phone}/wipe-confirmation", server.url),
        None,
        Some(json!({"nonce": nonce, "signature": ward_testing::b64(&forged_sig.to_bytes())})),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = ward_testing::send(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/devices/not-a-uuid/wipe-confirmation", server.url),
        None,
        Some(json!({"nonce": nonce, "signature": ward_testing::b64(&[0u8; 64])})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = ward_testing::send(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/devices/{phone}/wipe-confirmation", server.url),
        None,
        Some(json!({"nonce": nonce, "signature": "AAAA"})),
    )
    .await;
    assert_eq!(st, 400, "short signature: {body}");

    // The others carry on: Alice's messages reach Bob's tablet.
    alice
        .client
        .send_text(
            Target::Conversation(group),
            "after the wipe, group",
            Priority::Routine,
        )
        .await
        .unwrap();
    alice
        .client
        .send_text(
            Target::Conversation(direct),
            "after the wipe, direct",
            Priority::Routine,
        )
        .await
        .unwrap();
    let got = texts(&mut tablet).await;
    for t in ["after the wipe, group", "after the wipe, direct"] {
        assert!(got.iter().any(|g| g == t), "{t} missing from {got:?}");
    }
    for conv in [direct, group] {
        assert!(!tablet.client.group_devices(conv).contains(&phone));
    }
    server.stop().await;
}

/// Serve every connection on `addr` with one canned `device_wiped` answer, as a hostile or
/// impersonating server would.
async fn hostile_server(
    addr: std::net::SocketAddr,
    instruction: WipeInstruction,
) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let body = json!({"error": {
        "code": "device_wiped",
        "message": "wiped",
        "wipe": instruction,
    }})
    .to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    })
}

fn instruction(signer: &SigningKey, device: DeviceId) -> WipeInstruction {
    let nonce = [9u8; 32];
    let issued_at = 1_800_000_000;
    WipeInstruction {
        device_id: device,
        issued_at,
        nonce: Bytes(nonce.to_vec()),
        signature: Bytes(
            signer
                .sign(&WipeInstruction::signed_bytes(device, issued_at, &nonce))
                .to_bytes()
                .to_vec(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unsigned_or_foreign_wipe_instructions_erase_nothing() {
    // A plain-HTTP loopback server, so a stand-in can take its port; the client still needs a
    // CA file, which a TLS server provides.
    let tls = tls_server().await;
    let ca = tls.ca_pem.clone().unwrap();
    tls.stop().await;
    let mut server = TestServer::start().await;
    let mut carol = enroll_with(&server, &ca, "carol", Role::Nurse).await;
    carol.client.sync().await.unwrap();
    let me = carol.client.device_id();
    let real_ca = server.services.keys.org_ca.clone();
    let addr = server.addr;
    server.pause().await;

    let forger = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut unsigned = instruction(&real_ca, me);
    unsigned.signature = Bytes(Vec::new());
    let cases = [
        ("signed by another key", instruction(&forger, me)),
        ("unsigned", unsigned),
        (
            "for another device",
            instruction(&real_ca, DeviceId::random()),
        ),
    ];
    for (what, bad) in cases {
        let hostile = hostile_server(addr, bad).await;
        let err = carol.client.sync().await.unwrap_err();
        assert!(
            matches!(err, WardError::Core(CoreError::InvalidWipeInstruction(_))),
            "{what}: {err:?}"
        );
        assert!(
            err.to_string().contains("wipe instruction refused"),
            "{err}"
        );
        assert!(
            carol.profile_dir().join("profile.ward").exists(),
            "{what}: profile erased"
        );
        hostile.abort();
        let _ = hostile.await;
    }
    // The profile is intact and opens.
    let dir = carol.profile_dir();
    drop(carol.client);
    let reopened = WardClient::open(&dir, PASSPHRASE).unwrap();
    assert_eq!(reopened.device_id(), me);
}

fn base64_decode(s: &str) -> Vec<u8> {
    serde_json::from_value::<Bytes>(Value::String(s.to_owned()))
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_passwords_are_checked_by_the_client_before_sending() {
    let server = tls_server().await;
    let ca = server.ca_pem.clone().unwrap();
    let code = server.create_user("erin", Role::Nurse).await;
    for (password, needle) in [
        ("short one", "at least 12"),
        ("Password1234", "common passwords"),
        ("erin's long password", "username"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err = WardClient::enroll(EnrollParams {
            profile_dir: &dir.path().join("profile"),
            passphrase: PASSPHRASE,
            server_url: &server.url,
            ca_pem: &ca,
            username: Username::parse("erin").unwrap(),
            enrollment_code: &code,
            password,
            device_name: "phone",
        })
        .await
        .err()
        .unwrap();
        // Refused locally (InvalidInput), not by the server (Api).
        assert!(
            matches!(&err, WardError::InvalidInput(m) if m.contains(needle)),
            "{password}: {err:?}"
        );
        assert!(!dir.path().join("profile").join("profile.ward").exists());
    }
    // The code is still unused: a good password enrolls.
    let dir = tempfile::tempdir().unwrap();
    let (erin, _) = WardClient::enroll(EnrollParams {
        profile_dir: &dir.path().join("profile"),
        passphrase: PASSPHRASE,
        server_url: &server.url,
        ca_pem: &ca,
        username: Username::parse("erin").unwrap(),
        enrollment_code: &code,
        password: PASSWORD,
        device_name: "phone",
    })
    .await
    .unwrap();
    assert_eq!(erin.username().as_str(), "erin");
    server.stop().await;
}
