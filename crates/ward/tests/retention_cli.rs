//! `ward admin retention|hold|erasure` through the real binary on a fresh data directory:
//! valid changes shown back, invalid durations and targets refused with the reason, a hold's
//! lifecycle, and an erasure request against a held user answered with a `refused` report.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn admin(data: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env_remove("WARD_MASTER_KEY")
        .env("WARD_LOG", "warn")
        .arg("admin")
        .arg("--data")
        .arg(data)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn retention_hold_and_erasure_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    for (args, why) in [
        (vec!["--lifespan", "0d"], "is zero"),
        (vec!["--lifespan=-3d"], "negative"),
        (vec!["--statutory", "1.5y"], "unknown unit"),
        (vec!["--journal", "forever"], "whole number"),
        (vec!["--lifespan", "500y"], "too long"),
        (
            vec!["--kind", "ward-round", "--lifespan", "1d"],
            "unknown conversation kind",
        ),
        (vec![], "nothing to change"),
    ] {
        let mut all = vec!["retention", "set"];
        all.extend(args.iter().copied());
        let (ok, _, err) = admin(data, &all);
        assert!(!ok, "{all:?} succeeded");
        assert!(err.contains(why), "{all:?}: {err}");
    }
    let (ok, p, err) = admin(
        data,
        &[
            "retention",
            "set",
            "--kind",
            "group",
            "--lifespan",
            "30d",
            "--statutory",
            "7y",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(p["per_kind"]["group"]["message_lifespan"], "30d");
    assert_eq!(p["per_kind"]["group"]["statutory_retention"], "7y");
    let (ok, p, _) = admin(data, &["retention", "show"]);
    assert!(ok);
    assert_eq!(p["purge_interval_secs"], 3600);
    let (ok, r, err) = admin(data, &["retention", "run"]);
    assert!(ok, "{err}");
    assert_eq!(r["envelopes_deleted"], 0);

    let (ok, _, err) = admin(data, &["hold", "add", "--user", "nobody", "--reason", "x"]);
    assert!(!ok && err.contains("user not found"), "{err}");
    let (ok, _, err) = admin(data, &["hold", "add", "--reason", "x"]);
    assert!(!ok && err.contains("required arguments"), "{err}");
    let (ok, _, err) = admin(data, &["user", "add", "alice", "--role", "physician"]);
    assert!(ok, "{err}");
    let (ok, h, err) = admin(
        data,
        &[
            "hold",
            "add",
            "--user",
            "alice",
            "--reason",
            "litigation",
            "--case",
            "C-1",
        ],
    );
    assert!(ok, "{err}");
    let id = h["id"].as_str().unwrap().to_owned();
    let (ok, l, _) = admin(data, &["hold", "list"]);
    assert!(ok);
    assert_eq!(l["holds"][0]["case_ref"], "C-1");

    let (ok, report, err) = admin(data, &["erasure", "request", "--user", "alice"]);
    assert!(ok, "{err}");
    assert_eq!(report["status"], "refused");
    assert!(
        report["kept"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["rule"] == "legal_hold" && k["detail"].as_str().unwrap().contains(&id)),
        "{report}"
    );

    let (ok, _, err) = admin(data, &["hold", "release", &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = admin(data, &["hold", "release", &id]);
    assert!(!ok && err.contains("already released"), "{err}");
    let (ok, _, err) = admin(data, &["hold", "release", "not-a-uuid"]);
    assert!(!ok && err.contains("not a hold id"), "{err}");
    let (ok, report, _) = admin(data, &["erasure", "request", "--user", "alice"]);
    assert!(ok);
    assert_eq!(report["status"], "completed");

    // Every change is in the verified audit chain.
    let (ok, page, _) = admin(data, &["audit", "list", "--limit", "500"]);
    assert!(ok);
    let actions: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "hold.add",
        "hold.release",
        "erasure.request",
        "retention.run",
        "policy.change",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}
