//! `ward bench e2e` at a small scale: real SDK clients with real MLS against a `ward serve`
//! child process; every message is decrypted exactly once, in order, and the crypto cost is
//! reported.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::process::Command;

use serde_json::Value;

#[test]
fn e2e_bench_decrypts_every_message_once_in_order() {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .env_remove("WARD_MASTER_KEY")
        .args([
            "--json",
            "bench",
            "e2e",
            "--users",
            "6",
            "--group-size",
            "4",
            "--rates",
            "4",
            "--step-secs",
            "3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ward bench e2e failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {stdout}\nstderr: {stderr}");
    });
    assert_eq!(report["mode"], "e2e", "{report}");
    assert_eq!(report["users"], 6, "{report}");
    assert_eq!(report["direct_conversations"], 3, "{report}");
    assert!(report["groups"].as_u64().unwrap() >= 1, "{report}");
    let c = &report["correctness"];
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["lost"], 0, "{c}");
    assert_eq!(c["duplicates"], 0, "{c}");
    assert_eq!(c["out_of_order"], 0, "{c}");
    assert_eq!(c["decrypt_failures"], 0, "{c}");
    assert_eq!(c["send_errors"], 0, "{c}");
    let expected = c["expected_deliveries"].as_u64().unwrap();
    assert!(expected > 0, "{c}");
    assert_eq!(c["delivered"].as_u64().unwrap(), expected, "{c}");

    let step = &report["steps"][0];
    assert_eq!(step["planned"], 12, "{step}");
    assert_eq!(step["acked"], 12, "{step}");
    assert_eq!(
        step["send_to_decrypted"]["samples"].as_u64().unwrap(),
        expected,
        "{step}"
    );
    let crypto = &report["crypto"];
    assert_eq!(crypto["encrypt"]["samples"], 12, "{crypto}");
    assert!(
        crypto["decrypt"]["samples"].as_u64().unwrap() >= expected,
        "{crypto}"
    );
    assert!(
        crypto["encrypt"]["p50_us"].as_f64().unwrap() > 0.0,
        "{crypto}"
    );
    assert!(
        crypto["decrypt"]["p50_us"].as_f64().unwrap() > 0.0,
        "{crypto}"
    );
    let commits = crypto["commit_add_member"].as_array().unwrap();
    assert!(
        commits
            .iter()
            .any(|c| c["group_size_after"].as_u64().unwrap() >= 3),
        "{crypto}"
    );
}
