//! The real `ward` binary end to end for the clinical-workflow admin commands (ADR 0014):
//! `ward admin role create|list|assign|unassign|who`, `ward admin schedule import FILE` and
//! `ward admin escalation set`, run with `--json` on the database of a running `ward serve`
//! (users enroll with the client CLI, since only active accounts hold roles), asserting exit
//! status, JSON fields and the error text on stderr.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use time::{Duration, OffsetDateTime};
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

/// Runs an admin command that must fail and returns its stderr.
fn fails(data: &Path, args: &[&str]) -> String {
    let (ok, v, err) = admin_json(data, args);
    assert!(!ok, "ward admin {args:?} must fail, printed {v}");
    assert_eq!(v, Value::Null, "a refused command prints no result");
    err
}

/// Civil UTC date-time `YYYY-MM-DDTHH:MM` for the schedule CSV.
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

/// (username, source) of the holders `who` reports.
fn holders(who: &Value) -> Vec<(String, String)> {
    who["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["username"].as_str().unwrap().to_owned(),
                h["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn role_names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn roles_schedules_and_escalation_through_the_admin_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let data = data.as_path();
    let mut server = Server::start(data);

    for (user, role) in [
        ("alice", "physician"),
        ("bob", "nurse"),
        ("carol", "physician"),
        ("pat", "patient"),
    ] {
        let created = ok(data, &["user", "add", user, "--role", role]);
        let code = created["enrollment_code"].as_str().unwrap();
        if role != "patient" {
            enroll(&server, data, &dir.path().join(user), user, code);
        }
    }

    // Roles: create, refuse bad and duplicate names, list.
    let r = ok(
        data,
        &[
            "role",
            "create",
            "cardio",
            "--description",
            "Cardiology on call",
        ],
    );
    assert_eq!(r["name"], "cardio");
    assert_eq!(r["description"], "Cardiology on call");
    assert!(r["created_at"].is_string(), "{r}");
    for name in ["cardio-backup", "chief"] {
        assert_eq!(ok(data, &["role", "create", name])["name"], name);
    }
    let err = fails(data, &["role", "create", "cardio"]);
    assert!(err.contains("clinical role cardio already exists"), "{err}");
    let err = fails(data, &["role", "create", "Cardio On Call"]);
    assert!(err.contains("invalid clinical role name"), "{err}");
    let list = ok(data, &["role", "list"]);
    assert_eq!(role_names(&list), ["cardio", "cardio-backup", "chief"]);

    // Assignment: alice holds cardio; `who` lists her.
    let a = ok(data, &["role", "assign", "cardio", "--user", "alice"]);
    assert_eq!(
        (&a["role"], &a["username"], &a["new"]),
        (&"cardio".into(), &"alice".into(), &true.into())
    );
    let a = ok(data, &["role", "assign", "cardio", "--user", "alice"]);
    assert_eq!(a["new"], false, "assigning twice changes nothing");
    let who = ok(data, &["role", "who", "cardio"]);
    assert_eq!(who["role"], "cardio");
    assert_eq!(holders(&who), [("alice".into(), "assignment".into())]);
    assert!(who["holders"][0]["until"].is_null(), "{who}");
    let who = ok(data, &["role", "who", "chief"]);
    assert_eq!(holders(&who), [], "a role nobody holds is answered, empty");
    let err = fails(data, &["role", "assign", "cardio", "--user", "nobody"]);
    // The shared user lookup answers "user not found" without the name (reported, not
    // changed here: it is shared by every user-addressed command).
    assert!(err.contains("user not found"), "{err}");

    // A schedule that succeeds: bob's shift covering now, and a later one.
    let now = OffsetDateTime::now_utc();
    let start = civil(now - Duration::hours(1));
    let end = civil(now + Duration::hours(2));
    let later_start = civil(now + Duration::days(2));
    let later_end = civil(now + Duration::days(2) + Duration::hours(8));
    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        format!(
            "# week rota\nrole,username,start,end,time_zone\n\
             cardio-backup,bob,{start},{end},UTC\n\
             cardio-backup,bob,{later_start},{later_end},UTC\n"
        ),
    )
    .unwrap();
    let report = ok(data, &["schedule", "import", good.to_str().unwrap()]);
    assert_eq!(report["imported"], 2, "{report}");
    assert_eq!(report["roles"], serde_json::json!(["cardio-backup"]));
    let who_backup = ok(data, &["role", "who", "cardio-backup"]);
    assert_eq!(holders(&who_backup), [("bob".into(), "shift".into())]);
    assert!(
        who_backup["holders"][0]["until"].is_string(),
        "a shift holder has an end: {who_backup}"
    );

    // A schedule with an overlap inside the file, a malformed line, an overlap with a stored
    // shift and an unknown role: refused as a whole, every bad line named, nothing stored.
    // Line 3 alone would make carol a holder of cardio now.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "role,username,start,end,time_zone\n\
             # comment lines count\n\
             cardio,carol,{start},{end},UTC\n\
             cardio,carol,{end_minus},{later_end},UTC\n\
             cardio,carol,yesterday,{end},UTC\n\
             cardio-backup,bob,{start},{end},UTC\n\
             neurology,carol,{start},{end},UTC\n",
            end_minus = civil(now + Duration::hours(1)),
        ),
    )
    .unwrap();
    let list_before = ok(data, &["role", "list"]);
    let err = fails(data, &["schedule", "import", bad.to_str().unwrap()]);
    assert!(err.contains("bad.csv"), "the file is named: {err}");
    assert!(err.contains("nothing imported"), "{err}");
    assert!(err.contains("line 4: overlaps line 3"), "{err}");
    assert!(err.contains("line 5: start \"yesterday\""), "{err}");
    assert!(
        err.contains("line 6: overlaps a stored shift of bob in cardio-backup"),
        "{err}"
    );
    assert!(
        err.contains("line 7: unknown clinical role neurology"),
        "{err}"
    );
    assert!(
        !err.contains("line 3:"),
        "the good line is not blamed: {err}"
    );
    assert_eq!(
        holders(&ok(data, &["role", "who", "cardio"])),
        [("alice".into(), "assignment".into())],
        "the refused schedule stored nothing"
    );
    assert_eq!(
        ok(data, &["role", "who", "cardio-backup"])["holders"],
        who_backup["holders"]
    );
    assert_eq!(ok(data, &["role", "list"]), list_before);
    // The good file again: its shifts are stored now, so every line overlaps.
    let err = fails(data, &["schedule", "import", good.to_str().unwrap()]);
    assert!(
        err.contains("line 3: overlaps a stored shift") && err.contains("line 4: overlaps"),
        "{err}"
    );
    let missing = dir.path().join("missing.csv");
    let err = fails(data, &["schedule", "import", missing.to_str().unwrap()]);
    assert!(err.contains("missing.csv"), "{err}");

    // Escalation: cardio → cardio-backup, then carol; cardio-backup → chief.
    let p = ok(
        data,
        &[
            "escalation",
            "set",
            "cardio",
            "--ack-within",
            "5m",
            "--renotify-every",
            "1m",
            "--then",
            "role:cardio-backup",
            "user:carol",
        ],
    );
    assert_eq!(p["role"], "cardio");
    assert_eq!(p["ack_within_secs"], 300);
    assert_eq!(p["renotify_every_secs"], 60);
    assert_eq!(
        p["then"],
        serde_json::json!([
            {"type": "role", "name": "cardio-backup"},
            {"type": "user", "name": "carol"}
        ])
    );
    let p = ok(
        data,
        &[
            "escalation",
            "set",
            "cardio-backup",
            "--ack-within",
            "2m",
            "--then",
            "chief",
        ],
    );
    assert_eq!(
        p["then"],
        serde_json::json!([{"type": "role", "name": "chief"}]),
        "a bare name that is only a role"
    );
    assert!(p["renotify_every_secs"].is_null(), "{p}");
    let who = ok(data, &["role", "who", "cardio"]);
    let chain: Vec<(Value, Vec<String>)> = who["escalation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["role"].clone(),
                t["users"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u["username"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    assert!(chain.len() >= 3, "the chain is resolved: {who}");
    assert_eq!(chain[0], ("cardio".into(), vec!["alice".to_owned()]));
    assert_eq!(chain[1], ("cardio-backup".into(), vec!["bob".to_owned()]));
    assert!(
        chain
            .iter()
            .any(|(_, users)| users == &["carol".to_owned()]),
        "the user tier: {who}"
    );

    // A loop is refused with its path, and the refused policy is not stored.
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "chief",
            "--ack-within",
            "5m",
            "--then",
            "role:cardio",
        ],
    );
    assert!(
        err.contains("escalation loop: chief → cardio → cardio-backup → chief"),
        "{err}"
    );
    let who_chief = ok(data, &["role", "who", "chief"]);
    assert!(
        who_chief["escalation"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["role"] != "cardio"),
        "no policy stored for chief: {who_chief}"
    );

    // Unknown roles are named.
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "cardio",
            "--ack-within",
            "5m",
            "--then",
            "role:neurology",
        ],
    );
    assert!(
        err.contains("clinical role neurology does not exist"),
        "{err}"
    );
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "cardio",
            "--ack-within",
            "5m",
            "--then",
            "gastro",
        ],
    );
    assert!(
        err.contains("\"gastro\" is neither a clinical role nor a user"),
        "{err}"
    );
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "neurology",
            "--ack-within",
            "5m",
            "--then",
            "user:carol",
        ],
    );
    assert!(
        err.contains("clinical role neurology does not exist"),
        "{err}"
    );
    let err = fails(data, &["role", "who", "neurology"]);
    assert!(
        err.contains("clinical role neurology does not exist"),
        "{err}"
    );
    let err = fails(data, &["role", "assign", "neurology", "--user", "alice"]);
    assert!(err.contains("neurology"), "{err}");
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "cardio",
            "--ack-within",
            "5m",
            "--then",
            "user:pat",
        ],
    );
    assert!(err.contains("pat"), "a patient tier is refused: {err}");

    // Invalid durations are named.
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "cardio",
            "--ack-within",
            "5 parsecs",
            "--then",
            "user:carol",
        ],
    );
    assert!(
        err.contains("--ack-within") && err.contains("unknown duration unit"),
        "{err}"
    );
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "cardio",
            "--ack-within",
            "soon",
            "--then",
            "user:carol",
        ],
    );
    assert!(err.contains("\"soon\" is not a duration"), "{err}");
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "cardio",
            "--ack-within",
            "10s",
            "--then",
            "user:carol",
        ],
    );
    assert!(err.contains("ack_within must be between 30 s"), "{err}");
    let err = fails(
        data,
        &[
            "escalation",
            "set",
            "cardio",
            "--ack-within",
            "5m",
            "--renotify-every",
            "10m",
            "--then",
            "user:carol",
        ],
    );
    assert!(
        err.contains("renotify_every must be at least 30 s and shorter than ack_within (300 s)"),
        "{err}"
    );
    // The refused changes left the stored policy as it was.
    let chain_after = ok(data, &["role", "who", "cardio"])["escalation"].clone();
    assert_eq!(chain_after, who["escalation"]);

    // Unassign: alice no longer holds cardio.
    let u = ok(data, &["role", "unassign", "cardio", "--user", "alice"]);
    assert_eq!(
        (&u["role"], &u["username"]),
        (&"cardio".into(), &"alice".into())
    );
    assert_eq!(holders(&ok(data, &["role", "who", "cardio"])), []);

    // Every change above is in the verified audit chain.
    let v = ok(data, &["audit", "verify"]);
    assert!(v["records"].as_u64().unwrap() >= 10, "{v}");
    server.stop();
}
