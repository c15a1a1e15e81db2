//! The real `ward` binary end to end for ADR 0019: an iCalendar rota imported with `ward
//! admin schedule import FILE.ics` (and a bad one refused with line numbers), templates
//! (`ward admin template …`, `ward send --template`), a patient-bound group whose banner the
//! other member's `ward sync`/`ward conversations` show, `ward dnd on` making a direct message
//! reach the cover, and `ward compliance patient-search` finding the conversation.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use ward_testing::PASSWORD;

const JOURNAL_PASS: &str = "journal passphrase for tests";
const PROFILE_PASS: &str = "a passphrase for the profile";
const SYSTEM: &str = "urn:oid:1.2.36.146.595.217.0.1";

fn ward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
    c.env_remove("WARD_MASTER_KEY")
        .env_remove("WARD_JOURNAL_PASSPHRASE")
        .env_remove("WARD_PATIENT_ID_SYSTEM")
        .env("WARD_LOG", "warn")
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = ward();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

struct Server(Child);

impl Server {
    fn start(data: &Path) -> (Server, String) {
        let mut child = ward()
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(u) = line.strip_prefix("Ward is listening on ") {
                port = u.rsplit(':').next().map(str::to_owned);
            }
            if line.starts_with("TLS CA SHA-256 fingerprint: ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let url = format!("https://localhost:{}", port.unwrap());
        (Server(child), url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ical_rota_templates_patient_banner_coverage_and_patient_search() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let data_s = data.to_str().unwrap();
    let (_server, url) = Server::start(&data);
    let admin = |args: &[&str]| {
        let mut a = vec!["admin", "--data", data_s, "--json"];
        a.extend_from_slice(args);
        run(&a, &[])
    };
    let keys = dir.path().join("journal-keys");
    let jenv = [("WARD_JOURNAL_PASSPHRASE", JOURNAL_PASS)];
    let (ok, _, err) = run(
        &["compliance", "keygen", "--out", keys.to_str().unwrap()],
        &jenv,
    );
    assert!(ok, "{err}");
    let public = keys.join("journal-public.json");
    let (ok, _, err) = admin(&["org", "set-journal-key", public.to_str().unwrap()]);
    assert!(ok, "{err}");

    let ca = data.join("tls/ca.pem");
    let mut profiles: Vec<PathBuf> = Vec::new();
    for (user, role) in [
        ("alice", "physician"),
        ("bob", "nurse"),
        ("carol", "nurse"),
        ("olivia", "compliance"),
    ] {
        let (ok, created, err) = admin(&["user", "add", user, "--role", role]);
        assert!(ok, "{err}");
        let code = json_of(&created)["enrollment_code"]
            .as_str()
            .unwrap()
            .to_owned();
        let profile = dir.path().join(format!("{user}-profile"));
        let (ok, _, err) = run(
            &[
                "--profile",
                profile.to_str().unwrap(),
                "enroll",
                "--server",
                &url,
                "--ca-cert",
                ca.to_str().unwrap(),
                "--username",
                user,
            ],
            &[
                ("WARD_ENROLLMENT_CODE", code.as_str()),
                ("WARD_PASSWORD", PASSWORD),
                ("WARD_PASSPHRASE", PROFILE_PASS),
            ],
        );
        assert!(ok, "enroll {user}: {err}");
        profiles.push(profile);
    }
    let as_user = |i: usize, args: &[&str], extra: &[(&str, &str)]| {
        let mut a = vec!["--profile", profiles[i].to_str().unwrap()];
        a.extend_from_slice(args);
        let mut env = vec![("WARD_PASSPHRASE", PROFILE_PASS)];
        env.extend_from_slice(extra);
        run(&a, &env)
    };

    // iCalendar rota: a weekly series for bob, imported; a bad file refused with lines.
    let (ok, _, err) = admin(&["role", "create", "cardio"]);
    assert!(ok, "{err}");
    let rota = dir.path().join("rota.ics");
    std::fs::write(
        &rota,
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//hospital//rota//EN\r\n\
         BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:cardio\r\nX-WARD-USER:bob\r\n\
         DTSTART;TZID=Europe/Berlin:20300107T080000\r\nDTEND;TZID=Europe/Berlin:20300107T200000\r\n\
         RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=4\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    let (ok, out, err) = admin(&["schedule", "import", rota.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["imported"], 4, "{out}");
    let bad = dir.path().join("bad.ics");
    std::fs::write(
        &bad,
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:cardio\nX-WARD-USER:bob\n\
         DTSTART;TZID=Europe/Berlin:20300107T100000\nDTEND;TZID=Europe/Berlin:20300107T120000\n\
         END:VEVENT\nBEGIN:VEVENT\nSUMMARY:neuro\nX-WARD-USER:bob\nDTSTART:20300201T080000\n\
         DTEND:20300201T090000Z\nEND:VEVENT\nEND:VCALENDAR\n",
    )
    .unwrap();
    let (ok, _, err) = admin(&["schedule", "import", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 2: overlaps a stored shift of bob in cardio"),
        "{err}"
    );
    assert!(
        err.contains("line 8: DTSTART 20300201T080000 is a floating time"),
        "{err}"
    );

    // Templates.
    let (ok, out, err) = admin(&[
        "template",
        "create",
        "code-blue",
        "--text",
        "Code Blue, room {room}",
        "--priority",
        "stat",
    ]);
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["variables"], serde_json::json!(["room"]));
    let (ok, _, err) = admin(&["template", "create", "bad", "--text", "room {room"]);
    assert!(!ok && err.contains("malformed placeholder"), "{err}");
    let (ok, out, _) = admin(&["template", "list"]);
    assert!(ok);
    assert_eq!(json_of(&out)["templates"][0]["name"], "code-blue");

    // A patient-bound group; bob's client shows the banner.
    let penv = [("WARD_PATIENT_ID_SYSTEM", SYSTEM)];
    let (ok, _, err) = as_user(
        0,
        &[
            "group",
            "create",
            "--name",
            "Bed 12",
            "--member",
            "bob",
            "--patient-mrn",
            "MRN-4711",
            "--patient-birth-date",
            "2999-01-01",
        ],
        &penv,
    );
    assert!(!ok && err.contains("not in the future"), "{err}");
    let (ok, out, err) = as_user(
        0,
        &[
            "--json",
            "group",
            "create",
            "--name",
            "Bed 12",
            "--member",
            "bob",
            "--patient-mrn",
            "MRN-4711",
            "--patient-name",
            "Ada Quist",
            "--patient-birth-date",
            "1957-03-14",
        ],
        &penv,
    );
    assert!(ok, "{err}");
    let conv = json_of(&out)["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out, err) = as_user(
        0,
        &[
            "--json",
            "send",
            "--conversation",
            &conv,
            "--template",
            "code-blue",
            "--var",
            "room=12",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(json_of(&out)["message_id"].is_string());
    let (ok, _, err) = as_user(
        0,
        &[
            "send",
            "--conversation",
            &conv,
            "--template",
            "code-blue",
            "--var",
            "bed=3",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("template has no variable bed (it uses: room)"),
        "{err}"
    );
    let (ok, out, err) = as_user(1, &["--json", "sync"], &[]);
    assert!(ok, "{err}");
    let lines: Vec<Value> = out.lines().map(json_of).collect();
    let banner = lines.iter().find(|l| l.get("patient").is_some()).unwrap();
    assert_eq!(banner["patient"]["value"], "MRN-4711");
    assert_eq!(banner["patient"]["display"], "Ada Quist");
    let code = lines
        .iter()
        .find(|l| l["text"] == "Code Blue, room 12")
        .unwrap();
    assert_eq!(code["priority"], "stat");
    let (ok, out, err) = as_user(1, &["conversations"], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "== Patient: Ada Quist | born 1957-03-14 | {SYSTEM}|MRN-4711 =="
        )),
        "{out}"
    );

    // carol hands over to bob: alice's direct message to carol reaches bob too.
    let (ok, out, err) = as_user(2, &["dnd", "on", "--cover", "bob"], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("carol is on do-not-disturb; bob covers"),
        "{out}"
    );
    let (ok, _, err) = as_user(2, &["dnd", "on", "--cover", "carol"], &[]);
    assert!(
        !ok && err.contains("you cannot cover for yourself"),
        "{err}"
    );
    let (ok, out, err) = as_user(
        0,
        &["send", "--to", "carol", "Please call me about bed 12"],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("carol is on do-not-disturb; bob covers"),
        "{out}"
    );
    assert!(out.contains("Also sent to bob"), "{out}");
    let (ok, out, _) = as_user(1, &["--json", "sync"], &[]);
    assert!(ok);
    assert!(
        out.lines()
            .map(json_of)
            .any(|l| l["text"] == "[covering for carol] Please call me about bed 12"),
        "{out}"
    );
    let (ok, _, err) = as_user(2, &["dnd", "off"], &[]);
    assert!(ok, "{err}");

    // The compliance officer finds the conversation; a physician may not read the index.
    let private = keys.join("journal-private.key");
    let search = |i: usize| {
        as_user(
            i,
            &[
                "--json",
                "compliance",
                "patient-search",
                "--key",
                private.to_str().unwrap(),
                "--identifier",
                &format!("{SYSTEM}|MRN-4711"),
            ],
            &jenv,
        )
    };
    let (ok, out, err) = search(3);
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["conversations"], serde_json::json!([conv]));
    let (ok, _, err) = search(0);
    assert!(
        !ok && err.contains("the physician role may not do this"),
        "{err}"
    );
}
