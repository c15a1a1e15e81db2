//! `ward bench` at a small scale: the load generator runs end to end against its in-process
//! server on SQLite and its correctness check passes (no loss, no duplicates, order kept).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

#[test]
fn bench_small_run_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .env_remove("WARD_MASTER_KEY")
        .args([
            "bench",
            "--users",
            "60",
            "--rates",
            "20,40",
            "--step-secs",
            "2",
            "--warmup-secs",
            "1",
            "--strict-order",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ward bench failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {stdout}\nstderr: {stderr}");
    });
    let c = &report["correctness"];
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["lost"], 0, "{c}");
    assert_eq!(c["duplicates"], 0, "{c}");
    assert_eq!(c["out_of_order"], 0, "{c}");
    // One node publishes each conversation's envelopes in seq order (ADR 0020).
    assert_eq!(c["push_out_of_order"], 0, "{c}");
    assert!(c["expected_deliveries"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["delivered"], c["expected_deliveries"], "{c}");

    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report}");
    for s in steps {
        assert!(s["acked"].as_u64().unwrap() > 0, "{s}");
        assert!(
            s["send_to_delivered"]["samples"].as_u64().unwrap() > 0,
            "{s}"
        );
        assert!(s["send_ack"]["p50_ms"].as_f64().unwrap() > 0.0, "{s}");
    }
    let storm = &report["storm"];
    assert_eq!(storm["devices"], 12, "{storm}");
    assert!(storm["envelopes_synced"].as_u64().unwrap() > 0, "{storm}");
    assert!(
        started.elapsed().as_secs() < 120,
        "the smoke run should stay short: {:?}",
        started.elapsed()
    );
}

/// `ward bench --idle-connections` at a small scale: a real `ward serve` child with TLS, every
/// connection authenticated, held, and alive at the end; memory is reported; the hybrid
/// post-quantum key exchange is what was negotiated.
#[test]
fn idle_connections_are_held_and_measured() {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .env_remove("WARD_MASTER_KEY")
        .args([
            "bench",
            "--idle-connections",
            "300",
            "--idle-secs",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ward bench failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {stdout}\nstderr: {stderr}");
    });
    assert_eq!(report["connections"], 300, "{report}");
    assert_eq!(report["alive_at_end"], 300, "{report}");
    assert!(
        report["server_rss_after_kib"].as_u64().unwrap()
            >= report["server_rss_before_kib"].as_u64().unwrap() / 2,
        "{report}"
    );
    assert!(
        report["server_kib_per_connection"].as_f64().is_some(),
        "{report}"
    );
    assert_eq!(report["key_exchange"], "X25519MLKEM768", "{report}");
}

/// Asking for more connections than the file-descriptor limit allows is refused up front,
/// naming the limit.
#[test]
fn idle_connections_beyond_the_fd_limit_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .args(["bench", "--idle-connections", "4000000000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("file descriptors"), "{stderr}");
}
