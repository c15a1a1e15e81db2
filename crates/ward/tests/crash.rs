//! Durability under SIGKILL: while clients send concurrently, the server process is killed
//! with SIGKILL and restarted. Every message the server acknowledged must be there after the
//! restart, exactly once, in a gap-free order; retrying unacknowledged sends with the same
//! client message id never duplicates.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use ward_testing::{PASSWORD, b64, client_for, send};

fn start(data: &Path, listen: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env_remove("WARD_MASTER_KEY")
        .env("WARD_LOG", "error")
        .args([
            "serve",
            "--dangerous-plain-http",
            "--listen",
            listen,
            "--data",
        ])
        .arg(data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server printed its URL").unwrap();
        if let Some(u) = line.strip_prefix("Ward is listening on ") {
            break u.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn admin_add(data: &Path, user: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .args(["admin", "--json", "--data"])
        .arg(data)
        .args(["user", "add", user, "--role", "physician"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["enrollment_code"].as_str().unwrap().to_owned()
}

async fn enroll(
    http: &reqwest::Client,
    url: &str,
    user: &str,
    code: &str,
) -> (String, String, String) {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let (s, b) = send(
        http,
        reqwest::Method::POST,
        &format!("{url}/v1/enroll"),
        None,
        Some(json!({
            "username": user, "enrollment_code": code, "password": PASSWORD,
            "device": {"name": "d", "signature_key": b64(key.verifying_key().as_bytes())},
        })),
    )
    .await;
    assert_eq!(s.as_u16(), 200, "{b}");
    (
        b["session"]["token"].as_str().unwrap().to_owned(),
        b["user_id"].as_str().unwrap().to_owned(),
        b["device"]["device_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_sustained_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (alice_code, bob_code) = (admin_add(&data, "alice"), admin_add(&data, "bob"));
    let (mut server, url) = start(&data, "127.0.0.1:0");
    let http = client_for(None);
    let (alice, _, _) = enroll(&http, &url, "alice", &alice_code).await;
    let (bob, bob_id, bob_device) = enroll(&http, &url, "bob", &bob_code).await;
    let (_, conv) = send(
        &http,
        reqwest::Method::POST,
        &format!("{url}/v1/conversations"),
        Some(&alice),
        Some(json!({"kind": "group", "ciphersuite": 77})),
    )
    .await;
    let conv = conv["conversation_id"].as_str().unwrap().to_owned();
    let (s, b) = send(&http, reqwest::Method::POST, &format!("{url}/v1/conversations/{conv}/envelopes"), Some(&alice), Some(json!({
        "client_message_id": uuid::Uuid::new_v4(), "kind": "commit", "epoch": 0, "payload": b64(b"add bob"),
        "add_users": [bob_id], "welcome": {"payload": b64(b"w"), "devices": [bob_device]},
    }))).await;
    assert_eq!(s.as_u16(), 200, "{b}");

    // Four senders, each sending sequentially with its own client message ids.
    let acked: Arc<Mutex<HashMap<uuid::Uuid, (u64, String)>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<(uuid::Uuid, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for sender in 0..4 {
        let (http, url, conv, alice) = (http.clone(), url.clone(), conv.clone(), alice.clone());
        let (acked, attempted) = (acked.clone(), attempted.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let cmid = uuid::Uuid::new_v4();
                let payload = format!("s{sender}-m{i}");
                attempted.lock().unwrap().push((cmid, payload.clone()));
                let resp = http
                    .post(format!("{url}/v1/conversations/{conv}/envelopes"))
                    .bearer_auth(&alice)
                    .json(&json!({"client_message_id": cmid, "kind": "application", "epoch": 1, "payload": b64(payload.as_bytes())}))
                    .send()
                    .await;
                let Ok(resp) = resp else { break };
                let Ok(v) = resp.json::<Value>().await else { break };
                let Some(seq) = v["seq"].as_u64() else { break };
                acked.lock().unwrap().insert(cmid, (seq, payload));
            }
        }));
    }
    // Let load build up, then kill without warning.
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        Command::new("kill")
            .args(["-KILL", &server.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    server.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();

    // Restart on the same data; retry every attempted send with its original id.
    let (mut server, url) = start(&data, "127.0.0.1:0");
    for (cmid, payload) in &attempted {
        let (s, v) = send(&http, reqwest::Method::POST, &format!("{url}/v1/conversations/{conv}/envelopes"), Some(&alice), Some(json!({
            "client_message_id": cmid, "kind": "application", "epoch": 1, "payload": b64(payload.as_bytes()),
        }))).await;
        assert_eq!(s.as_u16(), 200, "{v}");
        if let Some((seq, _)) = acked.get(cmid) {
            assert_eq!(
                v["duplicate"], true,
                "an acknowledged message is recognised after restart"
            );
            assert_eq!(v["seq"].as_u64(), Some(*seq), "same seq as acknowledged");
        }
    }

    // Bob reads everything: each payload exactly once, seqs gap-free from 2.
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    loop {
        let (_, page) = send(
            &http,
            reqwest::Method::GET,
            &format!("{url}/v1/sync?limit=1000"),
            Some(&bob),
            None,
        )
        .await;
        let envs = page["envelopes"].as_array().unwrap().clone();
        for e in &envs {
            use base64::Engine;
            let p = base64::engine::general_purpose::STANDARD
                .decode(e["payload"].as_str().unwrap())
                .unwrap();
            assert!(
                seen.insert(e["seq"].as_u64().unwrap(), String::from_utf8(p).unwrap())
                    .is_none()
            );
        }
        let last = envs.last().map(|e| e["seq"].as_u64().unwrap());
        let inbox = page["inbox"]
            .as_array()
            .unwrap()
            .last()
            .map(|i| i["inbox_seq"].clone());
        send(&http, reqwest::Method::POST, &format!("{url}/v1/sync/ack"), Some(&bob), Some(json!({
            "conversations": last.map(|s| vec![json!({"conversation_id": conv, "seq": s})]).unwrap_or_default(),
            "inbox_seq": inbox,
        }))).await;
        if page["more"] != true {
            break;
        }
    }
    let seqs: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(
        seqs,
        (2..2 + seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in seen.values() {
        *counts.entry(p.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|c| *c == 1), "no duplicates");
    for (seq, payload) in acked.values() {
        assert_eq!(
            seen.get(seq),
            Some(payload),
            "acknowledged message kept at its seq"
        );
    }
    assert_eq!(
        seen.len(),
        attempted.len(),
        "every attempt landed exactly once after retry"
    );
    // Per sender, order is kept.
    for s in 0..4 {
        let mine: Vec<u64> = seen
            .iter()
            .filter(|(_, p)| p.starts_with(&format!("s{s}-")))
            .map(|(q, _)| *q)
            .collect();
        let idx: Vec<u64> = seen
            .iter()
            .filter(|(_, p)| p.starts_with(&format!("s{s}-")))
            .map(|(_, p)| p.rsplit('m').next().unwrap().parse().unwrap())
            .collect();
        let mut sorted = idx.clone();
        sorted.sort();
        assert_eq!(
            idx,
            sorted,
            "sender {s} order kept ({} messages, seqs {mine:?})",
            idx.len()
        );
    }
    eprintln!(
        "acknowledged before SIGKILL: {}, attempted: {}",
        acked.len(),
        attempted.len()
    );
    let _ = Command::new("kill")
        .args(["-KILL", &server.id().to_string()])
        .status();
    let _ = server.wait();
}
