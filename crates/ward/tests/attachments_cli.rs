//! `ward send --attach` and `ward sync --download-dir` through the real binary against a real
//! `ward serve` (TLS, SQLite): a photo with GPS EXIF and a PDF round-trip (the photo stripped),
//! `--json` gives the attachment metadata and saved paths, the photo's thumbnail is written
//! beside it as `NAME.thumb.jpg`, and bad attachments are refused with the reason and a
//! failing exit status.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use ward_testing::PASSWORD;

const GPS: &[u8] = b"GPS-51.5072N-0.1276W";

fn ward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
    c.env_remove("WARD_MASTER_KEY").env("WARD_LOG", "warn");
    c
}

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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin_json(data: &Path, args: &[&str]) -> Value {
    let out = ward()
        .arg("admin")
        .arg("--data")
        .arg(data)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

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

fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(payload);
    s
}

/// A small JPEG with an EXIF block carrying a GPS-like value.
fn photo() -> Vec<u8> {
    let mut exif = b"Exif\0\0MM\x00\x2a\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00".to_vec();
    exif.extend_from_slice(GPS);
    let mut j = vec![0xFF, 0xD8];
    j.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    j.extend(segment(0xE1, &exif));
    j.extend(segment(0xDB, &[&[0u8][..], &[1u8; 64][..]].concat()));
    j.extend(segment(0xC0, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]));
    let mut counts = [0u8; 16];
    counts[0] = 1;
    j.extend(segment(0xC4, &[&[0x00][..], &counts, &[0x00]].concat()));
    j.extend(segment(0xC4, &[&[0x10][..], &counts, &[0x00]].concat()));
    j.extend(segment(0xDA, &[1, 1, 0x00, 0, 63, 0]));
    j.push(0x3F);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn send_attach_and_sync_download_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward-data");
    let server = Server::start(&data);
    // ADR 0022: the server runs with glibc's mmap threshold fixed (same pid after its exec).
    let environ = std::fs::read(format!("/proc/{}/environ", server.child.id())).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"MALLOC_MMAP_THRESHOLD_=1048576"),
        "ward serve re-executed itself with the fixed threshold"
    );
    let ca = data.join("tls/ca.pem");
    let ca = ca.to_str().unwrap();
    let passphrase = [("WARD_PASSPHRASE", "a passphrase for the profile")];
    let mut profiles = Vec::new();
    for user in ["alice", "bob"] {
        let created = admin_json(&data, &["user", "add", user, "--role", "physician"]);
        let code = created["enrollment_code"].as_str().unwrap().to_owned();
        let profile = dir.path().join(format!("{user}-profile"));
        let env = [
            ("WARD_ENROLLMENT_CODE", code.as_str()),
            ("WARD_PASSWORD", PASSWORD),
            passphrase[0],
        ];
        let (ok, _, err) = client(
            &profile,
            &env,
            &[
                "enroll",
                "--server",
                &server.url,
                "--ca-cert",
                ca,
                "--username",
                user,
            ],
        );
        assert!(ok, "enroll {user}: {err}");
        profiles.push(profile);
    }
    let (alice, bob) = (&profiles[0], &profiles[1]);
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let jpg = files.join("ulcer.jpg");
    std::fs::write(&jpg, photo()).unwrap();
    let mut pdf = b"%PDF-1.7\nINR 3.4 for bed 12\n".to_vec();
    pdf.extend((0..200_000u32).map(|i| (i * 7 % 251) as u8));
    let lab = files.join("inr.pdf");
    std::fs::write(&lab, &pdf).unwrap();

    // Files alone, without text.
    let (ok, out, err) = client(
        alice,
        &passphrase,
        &[
            "--json",
            "send",
            "--to",
            "bob",
            "--attach",
            jpg.to_str().unwrap(),
            "--attach",
            lab.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let sent: Value = serde_json::from_str(out.trim()).unwrap();
    let attached = sent["attachments"].as_array().unwrap();
    assert_eq!(attached.len(), 2, "{sent}");
    assert_eq!(attached[0]["file_name"], "ulcer.jpg");
    assert_eq!(attached[0]["media_type"], "image/jpeg");
    assert_eq!(attached[1]["size"], pdf.len());
    assert!(attached[1]["blob_id"].is_string());
    assert!(
        attached[0].get("key").is_none() && !out.contains("\"key\""),
        "no key in the output: {out}"
    );
    let thumb = &attached[0]["thumbnail"];
    assert_eq!(thumb["media_type"], "image/jpeg", "{sent}");
    assert!(thumb["size"].as_u64().unwrap() > 0, "{sent}");
    assert!(thumb["blob_id"].is_string() && thumb["blob_id"] != attached[0]["blob_id"]);
    assert!(
        attached[1].get("thumbnail").is_none(),
        "no thumbnail for a PDF: {sent}"
    );

    // Human output names the attachments.
    let (ok, out, err) = client(
        alice,
        &passphrase,
        &[
            "send",
            "--to",
            "bob",
            "--attach",
            lab.to_str().unwrap(),
            "INR attached",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("attached inr.pdf (application/pdf"), "{out}");

    let downloads = dir.path().join("downloads");
    let (ok, out, err) = client(
        bob,
        &passphrase,
        &[
            "--json",
            "sync",
            "--download-dir",
            downloads.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    let first = lines[0]["attachments"].as_array().unwrap();
    assert_eq!(first.len(), 2);
    let photo_path = first[0]["saved_path"].as_str().unwrap();
    let pdf_path = first[1]["saved_path"].as_str().unwrap();
    assert_eq!(Path::new(photo_path), downloads.join("ulcer.jpg"));
    let got = std::fs::read(photo_path).unwrap();
    assert!(got.starts_with(&[0xFF, 0xD8]));
    assert!(!contains(&got, GPS), "GPS stripped");
    assert!(!contains(&got, b"Exif"), "EXIF stripped");
    assert_eq!(std::fs::read(pdf_path).unwrap(), pdf);
    assert_eq!(
        first[0]["thumbnail"], *thumb,
        "the recipient sees the same thumbnail"
    );
    let thumb_path = first[0]["thumbnail_path"].as_str().unwrap();
    assert_eq!(Path::new(thumb_path), downloads.join("ulcer.jpg.thumb.jpg"));
    let preview = std::fs::read(thumb_path).unwrap();
    assert_eq!(preview.len() as u64, thumb["size"].as_u64().unwrap());
    assert!(preview.starts_with(&[0xFF, 0xD8]) && preview.ends_with(&[0xFF, 0xD9]));
    assert!(!contains(&preview, GPS) && !contains(&preview, b"Exif"));
    assert!(first[1].get("thumbnail_path").is_none());
    let second = lines[1]["attachments"].as_array().unwrap();
    assert_eq!(lines[1]["text"], "INR attached");
    assert_eq!(
        Path::new(second[0]["saved_path"].as_str().unwrap()),
        downloads.join("inr (1).pdf"),
        "never overwrites"
    );
    assert!(!out.contains("\"key\""), "no key in the sync output: {out}");

    // Again later, from the history: `ward download`.
    let again = dir.path().join("again");
    let id = lines[0]["message_id"].as_str().unwrap();
    let (ok, out, err) = client(
        bob,
        &passphrase,
        &["--json", "download", id, "--dir", again.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["attachments"][1]["file_name"], "inr.pdf");
    let p = v["attachments"][1]["saved_path"].as_str().unwrap();
    assert_eq!(std::fs::read(p).unwrap(), pdf);
    let t = v["attachments"][0]["thumbnail_path"].as_str().unwrap();
    assert_eq!(Path::new(t), again.join("ulcer.jpg.thumb.jpg"));
    assert_eq!(std::fs::read(t).unwrap(), preview);
    // Human output names the thumbnail too.
    let (ok, out, err) = client(
        bob,
        &passphrase,
        &["download", id, "--dir", again.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("thumbnail saved to") && out.contains("ulcer (1).jpg.thumb.jpg"),
        "{out}"
    );
    let (ok, _, err) = client(
        bob,
        &passphrase,
        &[
            "download",
            "7f1c1d4e-0000-4000-8000-000000000000",
            "--dir",
            again.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("not in this device's history"), "{err}");

    // Bad attachments: named, nothing sent.
    let exe = files.join("ecg.pdf");
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(4096, 0);
    std::fs::write(&exe, elf).unwrap();
    let (ok, _, err) = client(
        alice,
        &passphrase,
        &["send", "--to", "bob", "--attach", exe.to_str().unwrap()],
    );
    assert!(!ok && err.contains("forbidden"), "{err}");
    let missing = files.join("nothing-here.pdf");
    let (ok, _, err) = client(
        alice,
        &passphrase,
        &["send", "--to", "bob", "--attach", missing.to_str().unwrap()],
    );
    assert!(!ok && err.contains("no such file"), "{err}");
    let (ok, out, err) = client(bob, &passphrase, &["sync"]);
    assert!(ok, "{err}");
    assert!(out.contains("No new messages."), "{out}");

    // Without --download-dir, the metadata is shown and nothing is written.
    let (ok, _, err) = client(
        alice,
        &passphrase,
        &["send", "--to", "bob", "--attach", lab.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = client(bob, &passphrase, &["sync"]);
    assert!(ok, "{err}");
    assert!(out.contains("attachment inr.pdf (application/pdf"), "{out}");
    // ulcer.jpg, its thumbnail, inr.pdf, inr (1).pdf.
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 4);

    // `sync --follow --download-dir`: a file sent while bob follows is saved as it arrives.
    let live = dir.path().join("live");
    let mut follower = ward()
        .arg("--profile")
        .arg(bob)
        .args(["--json", "sync", "--follow", "--download-dir"])
        .arg(&live)
        .env(passphrase[0].0, passphrase[0].1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The follower is connected once the directory exists and its first sync is done; send
    // until a message shows up (the first may go before its WebSocket is open: the initial
    // sync picks it up either way).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (ok, _, err) = client(
        alice,
        &passphrase,
        &[
            "send",
            "--to",
            "bob",
            "--attach",
            jpg.to_str().unwrap(),
            "live photo",
        ],
    );
    assert!(ok, "{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the follower printed the message");
        if line.contains("live photo") {
            break line;
        }
    };
    let _ = follower.kill();
    let _ = follower.wait();
    let v: Value = serde_json::from_str(&line).unwrap();
    let a = &v["attachments"][0];
    let saved = std::path::PathBuf::from(a["saved_path"].as_str().unwrap());
    assert!(saved.starts_with(&live), "{v}");
    let got = std::fs::read(&saved).unwrap();
    assert!(!contains(&got, GPS), "metadata stripped before sending");
    assert!(
        Path::new(a["thumbnail_path"].as_str().unwrap()).exists(),
        "{v}"
    );
}
