//! The real `ward` binary end to end: first start on SQLite with TLS, admin commands on the
//! running server's database, enrollment over HTTPS with post-quantum key exchange, graceful
//! shutdown, and audit verification catching edited, deleted and reordered records.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};
use ward_testing::{PASSWORD, b64, client_for, send};

fn ward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
    c.env_remove("WARD_MASTER_KEY").env("WARD_LOG", "warn");
    c
}

struct Server {
    child: Child,
    url: String,
    port: u16,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = ward()
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = None;
        let mut fingerprint = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(u) = line.strip_prefix("Ward is listening on ") {
                url = Some(u.to_owned());
            }
            if let Some(f) = line.strip_prefix("TLS CA SHA-256 fingerprint: ") {
                fingerprint = Some(f.to_owned());
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let url = url.expect("server printed its URL");
        assert!(url.starts_with("https://"), "TLS by default: {url}");
        let fp = fingerprint.expect("server printed the CA fingerprint");
        assert_eq!(fp.split(':').count(), 32, "SHA-256 fingerprint: {fp}");
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child,
            url: format!("https://localhost:{port}"),
            port,
        }
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    }
}

fn admin_json(data: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = ward()
        .arg("admin")
        .arg("--data")
        .arg(data)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.success(),
        value,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn negotiated_group(port: u16, ca_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    format!(
        "{:?}",
        tls.get_ref()
            .1
            .negotiated_key_exchange_group()
            .unwrap()
            .name()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_enroll_login_suspend_and_audit_tamper_detection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let server = Server::start(&data);
    let ca_pem = std::fs::read_to_string(data.join("tls/ca.pem")).unwrap();
    assert!(
        data.join("master.key").exists(),
        "master key created apart from the database"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "data directory is private");
        assert_eq!(
            mode(&data.join("ward.db")),
            0o600,
            "database file is private"
        );
        assert_eq!(
            mode(&data.join("master.key")),
            0o600,
            "master key is private"
        );
    }
    assert_eq!(
        negotiated_group(server.port, &ca_pem).await,
        "X25519MLKEM768"
    );

    let http = client_for(Some(&ca_pem));
    let (s, health) = send(
        &http,
        reqwest::Method::GET,
        &format!("{}/v1/health", server.url),
        None,
        None,
    )
    .await;
    assert_eq!((s.as_u16(), health["status"].as_str()), (200, Some("ok")));
    // A client that does not trust the CA is refused.
    assert!(
        client_for(None)
            .get(format!("{}/v1/health", server.url))
            .send()
            .await
            .is_err()
    );

    // Admin CLI against the running server's database.
    let (ok, created, err) = admin_json(
        &data,
        &[
            "user",
            "add",
            "alice",
            "--role",
            "physician",
            "--display-name",
            "Dr Alice",
        ],
    );
    assert!(ok, "{err}");
    let code = created["enrollment_code"].as_str().unwrap().to_owned();
    let (ok, _, err) = admin_json(&data, &["user", "add", "alice", "--role", "physician"]);
    assert!(
        !ok && err.contains("taken"),
        "duplicate username named: {err}"
    );
    let (ok, _, err) = admin_json(&data, &["user", "add", "bob", "--role", "surgeon"]);
    assert!(!ok && err.contains("unknown role"), "{err}");

    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let (s, enrolled) = send(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/enroll", server.url),
        None,
        Some(json!({
            "username": "alice", "enrollment_code": code, "password": PASSWORD,
            "device": {"name": "phone", "signature_key": b64(key.verifying_key().as_bytes())},
        })),
    )
    .await;
    assert_eq!(s.as_u16(), 200, "{enrolled}");
    assert!(
        enrolled["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let token = enrolled["session"]["token"].as_str().unwrap().to_owned();
    let (s, _) = send(
        &http,
        reqwest::Method::GET,
        &format!("{}/v1/me", server.url),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s.as_u16(), 200);

    let (ok, list, _) = admin_json(&data, &["user", "list"]);
    assert!(ok);
    assert_eq!(list["users"][0]["status"], "active");
    let (ok, _, err) = admin_json(&data, &["user", "suspend", "alice"]);
    assert!(ok, "{err}");
    let (s, body) = send(
        &http,
        reqwest::Method::GET,
        &format!("{}/v1/me", server.url),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        s.as_u16(),
        401,
        "suspension revokes sessions at once: {body}"
    );
    let (ok, devices, _) = admin_json(&data, &["device", "list", "--user", "alice"]);
    assert!(ok);
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);

    server.stop();

    let (ok, report, err) = admin_json(&data, &["audit", "verify"]);
    assert!(ok, "intact log verifies: {report} {err}");
    assert!(report["records"].as_u64().unwrap() >= 4, "{report}");
    assert!(
        report["checkpoints"].as_u64().unwrap() >= 1,
        "shutdown wrote a signed checkpoint: {report}"
    );

    // Tamper with copies of the database three ways; each is caught at the right record.
    let db = data.join("ward.db");
    for (name, sql, bad) in [
        (
            "edit",
            "UPDATE audit_log SET action = 'login.success' WHERE seq = 3",
            3,
        ),
        ("delete", "DELETE FROM audit_log WHERE seq = 3", 3),
        (
            "reorder",
            "UPDATE audit_log SET seq = CASE seq WHEN 2 THEN 1000002 WHEN 3 THEN 2 END WHERE seq IN (2, 3); UPDATE audit_log SET seq = 3 WHERE seq = 1000002",
            2,
        ),
    ] {
        let copy = dir.path().join(format!("tampered-{name}"));
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["ward.db", "ward.db-wal", "ward.db-shm", "master.key"] {
            if data.join(f).exists() {
                std::fs::copy(data.join(f), copy.join(f)).unwrap();
            }
        }
        let url = format!("sqlite://{}", copy.join("ward.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        for stmt in sql.split("; ") {
            sqlx::query(stmt).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let out = ward()
            .args(["admin", "--data"])
            .arg(&copy)
            .args(["audit", "verify"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{name}: verify must fail");
        assert!(
            text.contains(&format!("record {bad}")),
            "{name}: names record {bad}: {text}"
        );
        let (_, r, _) = admin_json(&copy, &["audit", "verify"]);
        assert_eq!(r["first_bad_seq"], bad, "{name}: {r}");
    }
    let _ = db;
}

#[test]
fn plain_http_is_refused_off_loopback_and_bad_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = ward()
        .args([
            "serve",
            "--dangerous-plain-http",
            "--listen",
            "0.0.0.0:0",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = ward()
        .args(["serve", "--listen", "nonsense", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen address"));
    let out = ward()
        .args(["admin", "--data"])
        .arg(dir.path())
        .args(["device", "revoke", "not-a-uuid"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a device id"));
}

/// Run a client command with secrets in the environment (never argv).
fn client(profile: &Path, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let mut c = ward();
    c.arg("--profile").arg(profile).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.stdin(Stdio::null()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The README walkthrough, as a newcomer would paste it: two users enroll with the CLI,
/// message each other, see receipts, make a group. Secrets come from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_with_the_client_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let server = Server::start(&data);
    let ca = data.join("tls/ca.pem");
    let ca = ca.to_str().unwrap();
    let fingerprint = {
        let pem = std::fs::read_to_string(ca).unwrap();
        ward_client::ca_fingerprint(&pem).unwrap()
    };
    let mut profiles = Vec::new();
    for (user, role) in [
        ("alice", "physician"),
        ("bob", "nurse"),
        ("carol", "pharmacist"),
    ] {
        let (ok, created, err) = admin_json(&data, &["user", "add", user, "--role", role]);
        assert!(ok, "{err}");
        let code = created["enrollment_code"].as_str().unwrap().to_owned();
        let profile = dir.path().join(format!("{user}-profile"));
        let env = [
            ("WARD_ENROLLMENT_CODE", code.as_str()),
            ("WARD_PASSWORD", PASSWORD),
            ("WARD_PASSPHRASE", "a passphrase for the profile"),
        ];
        let (ok, out, err) = client(
            &profile,
            &env,
            &[
                "--json",
                "enroll",
                "--server",
                &server.url,
                "--ca-cert",
                ca,
                "--ca-fingerprint",
                &fingerprint,
                "--username",
                user,
            ],
        );
        assert!(ok, "enroll {user}: {err}");
        let v = json_of(&out);
        for key in ["device_id", "totp_secret", "otpauth_uri"] {
            assert!(v[key].is_string(), "enroll JSON has {key}: {v}");
        }
        profiles.push(profile);
    }
    let env = [("WARD_PASSPHRASE", "a passphrase for the profile")];
    let (alice, bob, carol) = (&profiles[0], &profiles[1], &profiles[2]);

    let (ok, out, err) = client(
        alice,
        &env,
        &[
            "--json",
            "send",
            "--to",
            "bob",
            "--priority",
            "stat",
            "Trop I 2.1, please call",
        ],
    );
    assert!(ok, "{err}");
    let sent = json_of(&out);
    for key in ["conversation_id", "message_id", "seq"] {
        assert!(!sent[key].is_null(), "send JSON has {key}: {sent}");
    }
    let (ok, out, err) = client(bob, &env, &["--json", "sync"]);
    assert!(ok, "{err}");
    let line = json_of(out.lines().next().unwrap());
    assert_eq!(line["text"], "Trop I 2.1, please call");
    assert_eq!(line["sender"], "alice");
    assert_eq!(line["priority"], "stat");
    for key in ["conversation_id", "message_id", "seq", "sent_at"] {
        assert!(!line[key].is_null(), "sync JSON has {key}: {line}");
    }
    let id = sent["message_id"].as_str().unwrap();
    let (ok, _, err) = client(bob, &env, &["read", id]);
    assert!(ok, "{err}");
    let (ok, out, err) = client(alice, &env, &["--json", "status", id]);
    assert!(ok, "{err}");
    let status = json_of(&out);
    assert_eq!(status["devices"][0]["state"], "read", "{status}");
    let states: Vec<&str> = status["devices"][0]["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["at"].is_string(), "{status}");
            c["state"].as_str().unwrap()
        })
        .collect();
    assert_eq!(states, ["queued", "delivered", "read"], "{status}");

    // A group, and a message from stdin.
    let (ok, out, err) = client(
        alice,
        &env,
        &[
            "--json", "group", "create", "--name", "Cath lab", "--member", "bob", "--member",
            "carol",
        ],
    );
    assert!(ok, "{err}");
    let group = json_of(&out)["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = ward();
    c.arg("--profile")
        .arg(carol)
        .args(["send", "--conversation", &group])
        .env("WARD_PASSPHRASE", env[0].1);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // Carol is not in the group until she syncs the Welcome: she must be told so.
        stdin.write_all(b"table ready").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in conversation"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(client(carol, &env, &["sync"]).0);
    let (ok, _, err) = client(
        carol,
        &env,
        &["send", "--conversation", &group, "table ready"],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = client(bob, &env, &["--json", "sync"]);
    assert!(ok);
    assert!(
        out.lines().any(|l| json_of(l)["text"] == "table ready"),
        "{out}"
    );
    let (ok, out, _) = client(bob, &env, &["--json", "conversations"]);
    assert!(ok);
    let convs = json_of(&out);
    assert!(
        convs["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Cath lab"),
        "{convs}"
    );

    // Bad input is named; a wrong passphrase changes nothing.
    let (ok, _, err) = client(bob, &[("WARD_PASSPHRASE", "wrong passphrase!")], &["sync"]);
    assert!(!ok && err.contains("wrong passphrase"), "{err}");
    let (ok, _, err) = client(
        bob,
        &env,
        &["send", "--to", "bob", "--priority", "whenever", "x"],
    );
    assert!(!ok && err.contains("priority"), "{err}");
    let (ok, _, err) = client(bob, &env, &["send", "--to", "nobody-here", "x"]);
    assert!(!ok && err.contains("nobody-here"), "{err}");
    let (ok, _, err) = client(bob, &[], &["sync"]);
    assert!(
        !ok && err.contains("WARD_PASSPHRASE"),
        "no terminal, no env: {err}"
    );

    // Password change: a broken rule and a wrong current password are named; then it works.
    let pw_env = |current: &'static str, new: &'static str| {
        [
            ("WARD_PASSPHRASE", "a passphrase for the profile"),
            ("WARD_PASSWORD", current),
            ("WARD_NEW_PASSWORD", new),
        ]
    };
    let (ok, _, err) = client(carol, &pw_env(PASSWORD, "short"), &["passwd"]);
    assert!(!ok && err.contains("characters"), "{err}");
    let new_pw = "a new passphrase for the night shift";
    let (ok, _, err) = client(carol, &pw_env("not the password", new_pw), &["passwd"]);
    assert!(!ok && err.contains("current_password"), "{err}");
    let (ok, out, err) = client(carol, &pw_env(PASSWORD, new_pw), &["--json", "passwd"]);
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["sessions_ended"], 0, "{out}");
    assert!(
        client(carol, &env, &["sync"]).0,
        "the session that changed it stays"
    );
    server.stop();
}

#[test]
fn admin_policy_show_and_set_with_durations() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, p, err) = admin_json(dir.path(), &["policy", "show"]);
    assert!(ok, "{err}");
    assert_eq!(p["idle_timeout_secs"], 900);
    let (ok, p, err) = admin_json(
        dir.path(),
        &[
            "policy",
            "set",
            "--idle-timeout",
            "5m",
            "--absolute-timeout",
            "8h",
            "--ciphersuites",
            "xwing,x25519",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        (
            p["idle_timeout_secs"].as_u64(),
            p["absolute_timeout_secs"].as_u64()
        ),
        (Some(300), Some(28_800))
    );
    let (ok, _, err) = admin_json(
        dir.path(),
        &["policy", "set", "--idle-timeout", "5 parsecs"],
    );
    assert!(!ok && err.contains("duration"), "{err}");
    let (ok, _, err) = admin_json(dir.path(), &["policy", "set", "--idle-timeout", "10s"]);
    assert!(
        !ok && err.contains("idle_timeout_secs must be between 60 and 14400"),
        "{err}"
    );
    let (ok, _, err) = admin_json(dir.path(), &["policy", "set", "--ciphersuites", "rot13"]);
    assert!(!ok && err.contains("unknown ciphersuite"), "{err}");
    let (_, p, _) = admin_json(dir.path(), &["policy", "show"]);
    assert_eq!(
        p["idle_timeout_secs"], 300,
        "refused changes change nothing"
    );
}

#[test]
fn admin_policy_attachment_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, p, err) = admin_json(dir.path(), &["policy", "show"]);
    assert!(ok, "{err}");
    assert_eq!(p["attachment_max_bytes"], 2u64 << 30);
    let (ok, p, err) = admin_json(
        dir.path(),
        &[
            "policy",
            "set",
            "--attachment-max",
            "500MiB",
            "--attachment-quota",
            "1TiB",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        (
            p["attachment_max_bytes"].as_u64(),
            p["attachment_quota_bytes"].as_u64()
        ),
        (Some(500 << 20), Some(1 << 40))
    );
    let (ok, _, err) = admin_json(dir.path(), &["policy", "set", "--attachment-max", "2GB"]);
    assert!(!ok && err.contains("size unit"), "{err}");
    let (ok, _, err) = admin_json(
        dir.path(),
        &["policy", "set", "--attachment-quota", "100MiB"],
    );
    assert!(
        !ok && err.contains("attachment_max_bytes must be at most attachment_quota_bytes"),
        "{err}"
    );

    // Refused types and extensions: replaced as a whole, normalised, `none` empties a list.
    let (ok, p, err) = admin_json(
        dir.path(),
        &[
            "policy",
            "set",
            "--attachment-deny-types",
            "application/pdf,Application/X-Msdownload",
            "--attachment-deny-extensions",
            ".EXE,docm",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        p["attachment_denied_media_types"],
        serde_json::json!(["application/pdf", "application/x-msdownload"])
    );
    assert_eq!(
        p["attachment_denied_extensions"],
        serde_json::json!(["docm", "exe"])
    );
    let (ok, _, err) = admin_json(
        dir.path(),
        &["policy", "set", "--attachment-deny-types", "pdf"],
    );
    assert!(!ok && err.contains("is not a media type"), "{err}");
    let (ok, p, err) = admin_json(
        dir.path(),
        &["policy", "set", "--attachment-deny-extensions", "none"],
    );
    assert!(ok, "{err}");
    assert_eq!(p["attachment_denied_extensions"], serde_json::json!([]));
    assert_eq!(
        p["attachment_denied_media_types"].as_array().unwrap().len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_device_wipe_erases_the_profile_on_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let server = Server::start(&data);
    let ca = data.join("tls/ca.pem");
    let (ok, created, err) = admin_json(&data, &["user", "add", "bob", "--role", "nurse"]);
    assert!(ok, "{err}");
    let code = created["enrollment_code"].as_str().unwrap().to_owned();
    let profile = dir.path().join("bob-profile");
    let env = [
        ("WARD_ENROLLMENT_CODE", code.as_str()),
        ("WARD_PASSWORD", PASSWORD),
        ("WARD_PASSPHRASE", "a passphrase for the profile"),
    ];
    let (ok, out, err) = client(
        &profile,
        &env,
        &[
            "--json",
            "enroll",
            "--server",
            &server.url,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--username",
            "bob",
        ],
    );
    assert!(ok, "{err}");
    let device = json_of(&out)["device_id"].as_str().unwrap().to_owned();

    // Bad ids are named; unknown ones are not found.
    let (ok, _, err) = admin_json(&data, &["device", "wipe", "not-a-uuid"]);
    assert!(!ok && err.contains("not a device id"), "{err}");
    let (ok, _, err) = admin_json(
        &data,
        &["device", "wipe", "00000000-0000-4000-8000-000000000000"],
    );
    assert!(!ok && err.contains("device not found"), "{err}");
    let (ok, _, err) = admin_json(&data, &["device", "wipe-status", &device]);
    assert!(!ok && err.contains("wipe order not found"), "{err}");

    let (ok, order, err) = admin_json(&data, &["device", "wipe", &device]);
    assert!(ok, "{err}");
    assert_eq!(order["device_id"], device.as_str());
    let (ok, _, err) = admin_json(&data, &["device", "wipe", &device]);
    assert!(!ok && err.contains("already ordered"), "{err}");

    // Bob's next sync erases his profile and says so.
    let env = [("WARD_PASSPHRASE", "a passphrase for the profile")];
    let (ok, _, err) = client(&profile, &env, &["sync"]);
    assert!(!ok && err.contains("wiped by your organisation"), "{err}");
    assert!(!profile.exists(), "profile directory removed");
    let (ok, status, err) = admin_json(&data, &["device", "wipe-status", &device]);
    assert!(ok, "{err}");
    assert!(status["confirmed_at"].is_string(), "{status}");
    let (ok, _, err) = client(&profile, &env, &["sync"]);
    assert!(!ok && err.contains("no Ward profile"), "{err}");
    let (ok, v, err) = admin_json(&data, &["audit", "verify"]);
    assert!(ok && v["ok"] == true, "{err} {v}");
    server.stop();
}

#[test]
fn admin_policy_password_minimum_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, p, err) = admin_json(dir.path(), &["policy", "show"]);
    assert!(ok, "{err}");
    assert_eq!(p["password_min_length"], 12);
    assert_eq!(p["notification_privacy"], true);
    for bad in ["7", "65"] {
        let (ok, _, err) = admin_json(dir.path(), &["policy", "set", "--password-min-length", bad]);
        assert!(
            !ok && err.contains("password_min_length must be between 8 and 64"),
            "{bad}: {err}"
        );
    }
    let (ok, p, err) = admin_json(
        dir.path(),
        &["policy", "set", "--password-min-length", "16"],
    );
    assert!(ok, "{err}");
    assert_eq!(p["password_min_length"], 16);
}

/// `ward break-glass` through the binary (ADR 0016): an unauthorised role, a too-short reason
/// and a reason with an identifier are refused; a nurse opens a group; the member's `ward sync`
/// adds her and prints the notice; the compliance officer and `ward admin` list the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let server = Server::start(&data);
    let ca = data.join("tls/ca.pem");
    let ca = ca.to_str().unwrap();
    let passphrase = ("WARD_PASSPHRASE", "a passphrase for the profile");
    let mut profiles = Vec::new();
    for (user, role) in [
        ("alice", "physician"),
        ("bob", "nurse"),
        ("dana", "nurse"),
        ("pete", "pharmacist"),
        ("officer", "compliance"),
    ] {
        let (ok, created, err) = admin_json(&data, &["user", "add", user, "--role", role]);
        assert!(ok, "{err}");
        let code = created["enrollment_code"].as_str().unwrap().to_owned();
        let profile = dir.path().join(format!("{user}-profile"));
        let env = [
            ("WARD_ENROLLMENT_CODE", code.as_str()),
            ("WARD_PASSWORD", PASSWORD),
            passphrase,
        ];
        let args = [
            "enroll",
            "--server",
            &server.url,
            "--ca-cert",
            ca,
            "--username",
            user,
        ];
        let (ok, _, err) = client(&profile, &env, &args);
        assert!(ok, "enroll {user}: {err}");
        profiles.push(profile);
    }
    let env = [passphrase];
    let (alice, bob, dana, pete, officer) = (
        &profiles[0],
        &profiles[1],
        &profiles[2],
        &profiles[3],
        &profiles[4],
    );
    let (ok, out, err) = client(
        alice,
        &env,
        &[
            "--json", "group", "create", "--name", "ICU", "--member", "bob",
        ],
    );
    assert!(ok, "{err}");
    let group = json_of(&out)["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reason = "Rapid response, covering for the ICU nurse";

    let (ok, _, err) = client(
        pete,
        &env,
        &["break-glass", "--conversation", &group, "--reason", reason],
    );
    assert!(!ok);
    assert!(err.contains("may not open break-glass"), "{err}");
    let (ok, _, err) = client(
        dana,
        &env,
        &["break-glass", "--conversation", &group, "--reason", "help"],
    );
    assert!(!ok);
    assert!(err.contains("reason must be 10 to 500 characters"), "{err}");
    let (ok, _, err) = client(
        dana,
        &env,
        &[
            "break-glass",
            "--conversation",
            &group,
            "--reason",
            "Patient SSN 123-45-6789 crashing",
        ],
    );
    assert!(!ok);
    assert!(err.contains("patient information"), "{err}");
    let (ok, _, err) = client(dana, &env, &["break-glass", "--conversation", &group]);
    assert!(!ok);
    assert!(err.contains("--reason"), "{err}");

    let (ok, out, err) = client(
        dana,
        &env,
        &[
            "--json",
            "break-glass",
            "--conversation",
            &group,
            "--reason",
            reason,
            "--minutes",
            "20",
        ],
    );
    assert!(ok, "{err}");
    let grant = json_of(&out);
    assert_eq!(grant["username"], "dana");
    let (ok, out, err) = client(bob, &env, &["sync"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("BREAK-GLASS: dana has emergency access") && out.contains(reason),
        "{out}"
    );
    let (ok, out, err) = client(officer, &env, &["--json", "break-glass", "list"]);
    assert!(ok, "{err}");
    let listed = json_of(&out);
    assert_eq!(listed["grants"][0]["grant_id"], grant["grant_id"]);
    assert!(listed["grants"][0]["added_at"].is_string(), "{listed}");
    let (ok, listed, err) = admin_json(&data, &["break-glass", "list"]);
    assert!(ok, "{err}");
    assert_eq!(listed["grants"][0]["grant_id"], grant["grant_id"]);
    server.stop();
}
