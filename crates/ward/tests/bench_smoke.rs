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

fn postgres_url() -> String {
    std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn nats_url() -> String {
    std::env::var("WARD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Run `ward bench` with these arguments; the parsed JSON report (fails on a non-zero exit).
fn bench_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .env_remove("WARD_MASTER_KEY")
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ward bench {args:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {stdout}\nstderr: {stderr}");
    })
}

/// `ward bench --nodes 2` at a small scale: two server nodes over one fresh PostgreSQL schema
/// and NATS (the machine's), devices alternating between them; about half the deliveries
/// cross nodes, and none is lost, duplicated or reordered.
#[test]
fn two_node_bench_crosses_nodes_and_loses_nothing() {
    let pg = postgres_url();
    let nats = nats_url();
    let report = bench_json(&[
        "--nodes",
        "2",
        "--database-url",
        &pg,
        "--nats-url",
        &nats,
        "--users",
        "40",
        "--rates",
        "20",
        "--step-secs",
        "2",
        "--warmup-secs",
        "1",
    ]);
    assert_eq!(report["nodes"], 2, "{report}");
    assert_eq!(report["database"], "postgresql", "{report}");
    let c = &report["correctness"];
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["lost"], 0, "{c}");
    assert_eq!(c["duplicates"], 0, "{c}");
    assert_eq!(c["out_of_order"], 0, "{c}");
    assert!(c["expected_deliveries"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["delivered"], c["expected_deliveries"], "{c}");
    let share = report["cross_node_delivery_share"].as_f64().unwrap();
    assert!((0.25..=0.75).contains(&share), "cross-node share {share}");
    // Live pushes happened in the measured step (some of them through NATS, given the share).
    let step = &report["steps"][0];
    assert!(
        step["send_to_delivered"]["samples"].as_u64().unwrap() > 0,
        "{step}"
    );
}

/// `--nodes 2` without PostgreSQL is refused with a message naming what is missing.
#[test]
fn two_nodes_need_postgres() {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .args(["bench", "--nodes", "2", "--users", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--database-url postgres"), "{stderr}");
}

/// Idle connections over several processes on both sides: `ward serve --workers 2` shares one
/// TLS port with SO_REUSEPORT over PostgreSQL and NATS, two client processes hold the
/// connections, every connection answers a ping at the end, and both workers got some.
#[test]
fn idle_connections_over_server_workers_and_client_processes() {
    let pg = postgres_url();
    let nats = nats_url();
    let report = bench_json(&[
        "--idle-connections",
        "200",
        "--idle-secs",
        "1",
        "--server-workers",
        "2",
        "--client-processes",
        "2",
        "--database-url",
        &pg,
        "--nats-url",
        &nats,
    ]);
    assert_eq!(report["connections"], 200, "{report}");
    assert_eq!(report["alive_at_end"], 200, "{report}");
    assert_eq!(report["client_processes"], 2, "{report}");
    assert_eq!(report["key_exchange"], "X25519MLKEM768", "{report}");
    let workers = report["server_workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{report}");
    let pids: std::collections::HashSet<u64> =
        workers.iter().map(|w| w["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 2, "two distinct processes: {report}");
    // 300 connections in all (100 warm-up); a worker that got none would hold only its ~30
    // base descriptors.
    for w in workers {
        assert!(
            w["open_fds"].as_u64().unwrap() > 60,
            "SO_REUSEPORT spread: {report}"
        );
        assert!(w["rss_after_kib"].as_u64().unwrap() > 0, "{report}");
    }
}

/// Several server workers are refused on SQLite, naming the reason.
#[test]
fn server_workers_need_postgres() {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .args(["bench", "--idle-connections", "10", "--server-workers", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SQLite stays a single process"), "{stderr}");
}
