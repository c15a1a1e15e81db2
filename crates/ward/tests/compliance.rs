//! `ward compliance` with the real binary and a real server: keygen, installing the key with
//! `ward admin org set-journal-key`, a message between two CLI clients, and an offline export
//! whose JSON holds exactly what the recipient read and whose HTML escapes it; plus the bad
//! inputs (short or wrong passphrase, a key of another organisation, a key file that is not
//! one, an existing key directory, a non-empty output directory), each changing nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use ward_testing::PASSWORD;

const JOURNAL_PASS: &str = "journal passphrase for tests";
const PROFILE_PASS: &str = "a passphrase for the profile";

fn ward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
    c.env_remove("WARD_MASTER_KEY")
        .env_remove("WARD_JOURNAL_PASSPHRASE")
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
fn keygen_install_send_and_export_decrypts_what_the_recipient_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let data_s = data.to_str().unwrap();
    let (_server, url) = Server::start(&data);
    let keys = dir.path().join("journal-keys");
    let keys_s = keys.to_str().unwrap();
    let jenv = [("WARD_JOURNAL_PASSPHRASE", JOURNAL_PASS)];

    // keygen: a short passphrase is refused and writes nothing.
    let (ok, _, err) = run(
        &["compliance", "keygen", "--out", keys_s],
        &[("WARD_JOURNAL_PASSPHRASE", "short")],
    );
    assert!(!ok && err.contains("at least 12 characters"), "{err}");
    assert!(!keys.join("journal-private.key").exists());
    // No passphrase and no terminal: a clear error naming the variable.
    let (ok, _, err) = run(&["compliance", "keygen", "--out", keys_s], &[]);
    assert!(!ok && err.contains("WARD_JOURNAL_PASSPHRASE"), "{err}");
    let (ok, out, err) = run(&["--json", "compliance", "keygen", "--out", keys_s], &jenv);
    assert!(ok, "{err}");
    let key_id = json_of(&out)["key_id"].as_str().unwrap().to_owned();
    let (ok, _, err) = run(&["compliance", "keygen", "--out", keys_s], &jenv);
    assert!(!ok && err.contains("never overwritten"), "{err}");

    // Install: a file that is not a key is refused; the key installs once.
    let bogus = dir.path().join("bogus.json");
    std::fs::write(
        &bogus,
        br#"{"key_id": "x", "suite": "", "public_key": "AAAA"}"#,
    )
    .unwrap();
    let admin = |args: &[&str]| {
        let mut a = vec!["admin", "--data", data_s, "--json"];
        a.extend_from_slice(args);
        run(&a, &[])
    };
    let (ok, _, err) = admin(&["org", "set-journal-key", bogus.to_str().unwrap()]);
    assert!(!ok && err.contains("no valid journal key"), "{err}");
    let public = keys.join("journal-public.json");
    let (ok, out, err) = admin(&["org", "set-journal-key", public.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["key_id"], key_id.as_str());
    let (ok, _, err) = admin(&["org", "set-journal-key", public.to_str().unwrap()]);
    assert!(!ok && err.contains("already installed"), "{err}");

    // Two CLI users; alice sends bob a message with markup in it.
    let ca = data.join("tls/ca.pem");
    let mut profiles = Vec::new();
    for (user, role) in [("alice", "physician"), ("bob", "nurse")] {
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
    let penv = [("WARD_PASSPHRASE", PROFILE_PASS)];
    let text = "Na 128 <b>low</b> & falling: \"recheck\" at 6";
    let (ok, out, err) = run(
        &[
            "--profile",
            profiles[0].to_str().unwrap(),
            "--json",
            "send",
            "--to",
            "bob",
            text,
        ],
        &penv,
    );
    assert!(ok, "{err}");
    let sent = json_of(&out);
    // And a lab report as an encrypted attachment: the export must include the file.
    let pdf = dir.path().join("potassium-report.pdf");
    let pdf_bytes =
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nK+ 6.9 mmol/L\n%%EOF\n".repeat(50);
    std::fs::write(&pdf, &pdf_bytes).unwrap();
    let (ok, out, err) = run(
        &[
            "--profile",
            profiles[0].to_str().unwrap(),
            "--json",
            "send",
            "--to",
            "bob",
            "--attach",
            pdf.to_str().unwrap(),
            "lab report attached",
        ],
        &penv,
    );
    assert!(ok, "{err}");
    let with_file = json_of(&out);
    let (ok, out, err) = run(
        &["--profile", profiles[1].to_str().unwrap(), "--json", "sync"],
        &penv,
    );
    assert!(ok, "{err}");
    let read = json_of(out.lines().next().unwrap());
    assert_eq!(read["text"], text);

    // Export: wrong passphrase, then a key of another organisation: clear errors, no output.
    let private = keys.join("journal-private.key");
    let out_dir = dir.path().join("export");
    let export = |key: &Path, pass: &str, extra: &[&str]| {
        let mut a = vec![
            "--json",
            "compliance",
            "export",
            "--key",
            key.to_str().unwrap(),
            "--data",
            data_s,
            "--out",
            out_dir.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        run(&a, &[("WARD_JOURNAL_PASSPHRASE", pass)])
    };
    let (ok, _, err) = export(&private, "not the journal passphrase", &[]);
    assert!(!ok && err.contains("wrong journal key passphrase"), "{err}");
    assert!(!out_dir.exists());
    let other = dir.path().join("other-keys");
    let (ok, _, err) = run(
        &["compliance", "keygen", "--out", other.to_str().unwrap()],
        &jenv,
    );
    assert!(ok, "{err}");
    let (ok, _, err) = export(&other.join("journal-private.key"), JOURNAL_PASS, &[]);
    assert!(
        !ok && err.contains("not a journal key of this organisation"),
        "{err}"
    );
    assert!(!out_dir.exists());
    let (ok, _, err) = export(&public, JOURNAL_PASS, &[]);
    assert!(
        !ok && err.contains("not a Ward journal private key file"),
        "{err}"
    );
    for (extra, needle) in [
        (&["--since", "yesterday"][..], "RFC 3339"),
        (
            &[
                "--since",
                "2026-12-02T00:00:00Z",
                "--until",
                "2026-12-01T00:00:00Z",
            ][..],
            "--since must be before --until",
        ),
        (&["--conversation", "nope"][..], "not a conversation id"),
        (&["--user", "Not A Name"][..], "--user"),
        (&["--user", "nobody"][..], "no user nobody"),
        (&["--patient", " "][..], "--patient must not be empty"),
        (
            &["--server", "https://localhost:1"][..],
            "either --server or --data",
        ),
    ] {
        let (ok, _, err) = export(&private, JOURNAL_PASS, extra);
        assert!(!ok && err.contains(needle), "{extra:?}: {err}");
        assert!(!out_dir.exists(), "{extra:?} wrote output");
    }

    // Filtered to bob's messages: nothing (alice sent it).
    let (ok, out, err) = export(&private, JOURNAL_PASS, &["--user", "bob"]);
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["messages"], 0);
    std::fs::remove_dir_all(&out_dir).unwrap();

    let (ok, out, err) = export(&private, JOURNAL_PASS, &["--user", "alice"]);
    assert!(ok, "{err}");
    let summary = json_of(&out);
    assert_eq!(
        (
            summary["messages"].as_u64(),
            summary["conversations"].as_u64(),
            summary["attachments"].as_u64(),
            summary["attachments_missing"].as_u64(),
        ),
        (Some(2), Some(1), Some(1), Some(0)),
        "{summary}"
    );
    let conv = sent["conversation_id"].as_str().unwrap();
    let doc = json_of(&std::fs::read_to_string(out_dir.join(format!("{conv}.json"))).unwrap());
    let m = &doc["messages"][0];
    assert_eq!(
        m["text"], read["text"],
        "the journal holds exactly what bob read"
    );
    assert_eq!(m["message_id"], sent["message_id"]);
    assert_eq!(m["sender_username"], "alice");
    assert_eq!(m["journal_key_id"], key_id.as_str());
    // The attachment: decrypted byte-exact under attachments/<message id>/, listed without
    // its key, linked from the transcript.
    let m2 = &doc["messages"][1];
    assert_eq!(m2["message_id"], with_file["message_id"]);
    let file = &m2["attachments"][0];
    assert_eq!(file["file_name"], "potassium-report.pdf");
    assert_eq!(file["media_type"], "application/pdf");
    assert_eq!(file["size"].as_u64(), Some(pdf_bytes.len() as u64));
    assert!(
        file.get("key").is_none() && file.get("error").is_none(),
        "{file}"
    );
    let rel = file["path"].as_str().unwrap();
    assert_eq!(
        rel,
        format!(
            "attachments/{}/potassium-report.pdf",
            with_file["message_id"].as_str().unwrap()
        )
    );
    assert_eq!(std::fs::read(out_dir.join(rel)).unwrap(), pdf_bytes);
    let html = std::fs::read_to_string(out_dir.join(format!("{conv}.html"))).unwrap();
    assert!(html.contains("Na 128 &lt;b&gt;low&lt;/b&gt; &amp; falling: &quot;recheck&quot; at 6"));
    assert!(
        !html.contains("<b>low</b>"),
        "message text never becomes markup"
    );
    assert!(html.contains(&format!("<a href=\"{rel}\">potassium-report.pdf</a>")));
    // A second export into the same directory is refused.
    let (ok, _, err) = export(&private, JOURNAL_PASS, &[]);
    assert!(!ok && err.contains("not empty"), "{err}");

    // The same archive over the API with a compliance account; a nurse's session is refused.
    let (ok, created, err) = admin(&["user", "add", "carol", "--role", "compliance"]);
    assert!(ok, "{err}");
    let code = json_of(&created)["enrollment_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let carol = dir.path().join("carol-profile");
    let (ok, _, err) = run(
        &[
            "--profile",
            carol.to_str().unwrap(),
            "enroll",
            "--server",
            &url,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--username",
            "carol",
        ],
        &[
            ("WARD_ENROLLMENT_CODE", code.as_str()),
            ("WARD_PASSWORD", PASSWORD),
            ("WARD_PASSPHRASE", PROFILE_PASS),
        ],
    );
    assert!(ok, "enroll carol: {err}");
    let over_api = dir.path().join("export-api");
    let export_api = |profile: &Path, server: &str| {
        run(
            &[
                "--profile",
                profile.to_str().unwrap(),
                "--json",
                "compliance",
                "export",
                "--key",
                private.to_str().unwrap(),
                "--server",
                server,
                "--out",
                over_api.to_str().unwrap(),
            ],
            &[
                ("WARD_JOURNAL_PASSPHRASE", JOURNAL_PASS),
                ("WARD_PASSPHRASE", PROFILE_PASS),
            ],
        )
    };
    let (ok, _, err) = export_api(&profiles[1], &url);
    assert!(!ok && err.contains("may not do this"), "a nurse: {err}");
    let (ok, _, err) = export_api(&carol, "https://elsewhere.invalid:8443");
    assert!(!ok && err.contains("belongs to"), "{err}");
    assert!(!over_api.exists());
    let (ok, out, err) = export_api(&carol, &url);
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["messages"], 2);
    assert_eq!(
        std::fs::read(over_api.join(rel)).unwrap(),
        pdf_bytes,
        "the compliance account downloads the blob over the API"
    );
    let via_api = json_of(&std::fs::read_to_string(over_api.join(format!("{conv}.json"))).unwrap());
    assert_eq!(
        via_api, doc,
        "the API and the database give the same export"
    );

    // Every export is audited, with filters and counts but no content.
    let (ok, out, err) = admin(&["audit", "list", "--limit", "1000"]);
    assert!(ok, "{err}");
    let exports: Vec<Value> = out
        .lines()
        .flat_map(|l| {
            let v = json_of(l);
            match v["records"].as_array() {
                Some(a) => a.clone(),
                None => vec![v],
            }
        })
        .filter(|r| r["action"] == "compliance.export")
        .collect();
    assert_eq!(exports.len(), 2, "{out}");
    assert!(
        out.contains("journal.archive_read"),
        "API reads are audited: {out}"
    );
    assert!(!out.contains("falling"), "no content in the audit log");
    assert!(!out.contains("potassium"), "no file name in the audit log");
    let compliance_reads = out
        .lines()
        .flat_map(|l| {
            let v = json_of(l);
            match v["records"].as_array() {
                Some(a) => a.clone(),
                None => vec![v],
            }
        })
        .filter(|r| r["action"] == "blob.download" && r["details"]["access"] == "compliance")
        .count();
    assert_eq!(
        compliance_reads, 2,
        "each export's blob read is audited: {out}"
    );
    let (ok, _, err) = admin(&["audit", "verify"]);
    assert!(ok, "{err}");
}
