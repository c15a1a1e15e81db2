//! The real `ward` binary end to end for messages sent to a clinical role (ADR 0018):
//! `ward send --to-role`, `ward sync` showing the STAT alert, `ward ack` (refused for the
//! sender, accepted for the holder), `ward status --json` with per-device states and
//! timestamps, and the clear errors for an unknown role. Deadlines are tested with the
//! manual clock in ward-server's tests; nothing here waits for one.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use ward_testing::PASSWORD;

fn ward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
    c.env_remove("WARD_MASTER_KEY").env("WARD_LOG", "warn");
    c
}

/// `ward serve` on an ephemeral loopback port with TLS.
struct Server {
    child: Child,
    url: String,
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
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(u) = line.strip_prefix("Ward is listening on ") {
                url = Some(u.to_owned());
            }
            if line.starts_with("TLS CA SHA-256 fingerprint: ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let url = url.expect("server printed its URL");
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child,
            url: format!("https://localhost:{port}"),
        }
    }

    fn stop(&mut self) {
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

impl Drop for Server {
    /// A failed assertion does not leave the server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ward enroll` with the CLI, so that the account becomes active.
fn enroll(server: &Server, data: &Path, profile: &Path, user: &str, code: &str) {
    let ca = data.join("tls/ca.pem");
    let fingerprint = ward_client::ca_fingerprint(&std::fs::read_to_string(&ca).unwrap()).unwrap();
    let out = ward()
        .arg("--profile")
        .arg(profile)
        .args(["--json", "enroll", "--server", &server.url, "--ca-cert"])
        .arg(&ca)
        .args(["--ca-fingerprint", &fingerprint, "--username", user])
        .env("WARD_ENROLLMENT_CODE", code)
        .env("WARD_PASSWORD", PASSWORD)
        .env("WARD_PASSPHRASE", "a passphrase for the profile")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enroll {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ward admin --data DATA --json ARGS…`: (exit status success, stdout as JSON, stderr).
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

/// Runs an admin command that must succeed and returns its JSON.
fn ok(data: &Path, args: &[&str]) -> Value {
    let (ok, v, err) = admin_json(data, args);
    assert!(ok, "ward admin {args:?} failed: {err}");
    assert_ne!(v, Value::Null, "ward admin {args:?} printed JSON");
    v
}

/// `ward --profile P ARGS…` as a user: (success, stdout, stderr).
fn client(profile: &Path, args: &[&str]) -> (bool, String, String) {
    let out = ward()
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("WARD_PASSPHRASE", "a passphrase for the profile")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn send_to_role_ack_and_status_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let data = data.as_path();
    let mut server = Server::start(data);
    for (user, role) in [
        ("medic", "nurse"),
        ("dr-a", "physician"),
        ("dr-b", "physician"),
    ] {
        let created = ok(data, &["user", "add", user, "--role", role]);
        let code = created["enrollment_code"].as_str().unwrap();
        enroll(&server, data, &dir.path().join(user), user, code);
    }
    ok(data, &["role", "create", "cardiology-on-call"]);
    ok(data, &["role", "create", "cardiology-backup"]);
    ok(
        data,
        &["role", "assign", "cardiology-on-call", "--user", "dr-a"],
    );
    ok(
        data,
        &["role", "assign", "cardiology-backup", "--user", "dr-b"],
    );
    ok(
        data,
        &[
            "escalation",
            "set",
            "cardiology-on-call",
            "--ack-within",
            "5m",
            "--renotify-every",
            "1m",
            "--then",
            "role:cardiology-backup",
        ],
    );
    let medic = dir.path().join("medic");
    let dr_a = dir.path().join("dr-a");

    // An unknown role: a clear error, nothing sent.
    let (ok_, _, err) = client(
        &medic,
        &[
            "send",
            "--to-role",
            "neurology-on-call",
            "--priority",
            "stat",
            "help",
        ],
    );
    assert!(!ok_);
    assert!(
        err.contains("clinical role neurology-on-call does not exist"),
        "{err}"
    );

    // The STAT message to the role: the chain is in the group, the holder notified.
    let (ok_, out, err) = client(
        &medic,
        &[
            "--json",
            "send",
            "--to-role",
            "cardiology-on-call",
            "--priority",
            "stat",
            "STAT ECG CLI-MARKER",
        ],
    );
    assert!(ok_, "{err}");
    let sent: Value = serde_json::from_str(out.trim()).unwrap();
    let id = sent["sent"]["message_id"].as_str().unwrap().to_owned();
    assert_eq!(sent["sent"]["to_role"]["nobody_on_call"], false);
    assert_eq!(sent["members"], serde_json::json!(["dr-a", "dr-b"]));
    let (ok_, out, err) = client(
        &medic,
        &[
            "send",
            "--to-role",
            "cardiology-on-call",
            "--priority",
            "urgent",
            "second",
        ],
    );
    assert!(ok_, "{err}");
    assert!(out.contains("Notified (tier 0): dr-a."), "{out}");

    // The holder's sync shows the message and the alert.
    let (ok_, out, err) = client(&dr_a, &["--json", "sync"]);
    assert!(ok_, "{err}");
    let lines = json_lines(&out);
    assert!(
        lines.iter().any(|l| l["text"] == "STAT ECG CLI-MARKER"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["alert"]["kind"] == "notify" && l["alert"]["message_id"] == id.as_str()),
        "{out}"
    );

    // The sender may not acknowledge; the holder may.
    let (ok_, _, err) = client(&medic, &["ack", &id]);
    assert!(!ok_);
    assert!(err.contains("only a recipient can acknowledge it"), "{err}");
    let (ok_, out, err) = client(&dr_a, &["ack", &id, "--response", "call-me"]);
    assert!(ok_, "{err}");
    assert!(
        out.contains("dr-a answered call_me as cardiology-on-call"),
        "{out}"
    );

    // The sender's status: per-device states with timestamps.
    let (ok_, out, err) = client(&medic, &["--json", "status", &id]);
    assert!(ok_, "{err}");
    let st: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(st["escalation"]["outcome"], "acknowledged");
    let a = st["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["username"] == "dr-a")
        .unwrap();
    assert_eq!(a["state"], "acknowledged");
    let states: Vec<&str> = a["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["at"].is_string(), "{st}");
            c["state"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        states,
        ["queued", "sent", "delivered", "acknowledged"],
        "{st}"
    );
    let (ok_, out, err) = client(&medic, &["status", &id]);
    assert!(ok_, "{err}");
    assert!(out.contains("acknowledged"), "{out}");

    // The sender's sync shows the acknowledgement alert and the encrypted reply.
    let (ok_, out, err) = client(&medic, &["sync"]);
    assert!(ok_, "{err}");
    assert!(out.contains("answered: call_me"), "{out}");
    assert!(out.contains("Call me."), "{out}");
    server.stop();
}
