//! ADR 0020: with group commit, the WebSocket pushes of one conversation leave in seq order.
//! Many concurrent sends from three members go to one group through the real server (SQLite,
//! and PostgreSQL); a fourth member's WebSocket must receive every one of them exactly once,
//! in strictly increasing seq order.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::Role;
use ward_testing::{ServerOptions, TestServer, TestUser, b64};

/// Sends in the storm, and how many are in flight at once.
const SENDS: usize = 600;
const IN_FLIGHT: usize = 48;

fn pg_url() -> String {
    std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, migrated schema of the PostgreSQL test database and the URL selecting it; `None`
/// when `WARD_TEST_POSTGRES=skip`.
async fn postgres_schema() -> Option<(String, String)> {
    if std::env::var("WARD_TEST_POSTGRES").as_deref() == Ok("skip") {
        return None;
    }
    let url = pg_url();
    let schema = format!("ward_order_{}", uuid::Uuid::new_v4().simple());
    let store = ward_store_postgres::PgStore::connect_isolated(&url, &schema)
        .await
        .expect("PostgreSQL test database (WARD_TEST_POSTGRES=skip to skip)");
    store.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((format!("{url}{sep}options[search_path]={schema}"), schema))
}

async fn send_app(u: &TestUser, conv: &str, payload: &[u8]) -> u64 {
    let (s, b) = u
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({"client_message_id": uuid::Uuid::new_v4().to_string(), "kind": "application",
                   "epoch": 1, "payload": b64(payload)}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["duplicate"], false, "{b}");
    b["seq"].as_u64().unwrap()
}

/// The next envelope pushed on `ws` for `conv` (other events are skipped): its seq.
async fn next_envelope_seq<S>(ws: &mut S, conv: &str) -> u64
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a push within 20 s")
            .expect("socket open")
            .expect("frame");
        let Ok(text) = msg.to_text() else { continue };
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["type"] == "envelope" && v["conversation_id"] == conv {
            return v["seq"].as_u64().unwrap();
        }
        assert_ne!(v["type"], "session_ended", "socket ended: {v}");
    }
}

async fn pushes_in_seq_order(database_url: Option<String>) {
    let server = TestServer::start_with(ServerOptions {
        database_url,
        ..Default::default()
    })
    .await;
    let senders: Vec<Arc<TestUser>> = vec![
        Arc::new(server.enroll("sender-a", Role::Physician).await),
        Arc::new(server.enroll("sender-b", Role::Nurse).await),
        Arc::new(server.enroll("sender-c", Role::Nurse).await),
    ];
    let reader = server.enroll("reader", Role::Physician).await;
    let (s, b) = senders[0]
        .post(
            "/v1/conversations",
            json!({"kind": "group", "ciphersuite": 0x004D}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let conv = b["conversation_id"].as_str().unwrap().to_owned();
    let others = [&*senders[1], &*senders[2], &reader];
    let (s, b) = senders[0]
        .post(
            &format!("/v1/conversations/{conv}/envelopes"),
            json!({
                "client_message_id": uuid::Uuid::new_v4().to_string(), "kind": "commit",
                "epoch": 0, "payload": b64(b"commit-add"),
                "add_users": others.iter().map(|u| u.user_id.clone()).collect::<Vec<_>>(),
                "welcome": {"payload": b64(b"welcome"),
                            "devices": others.iter().map(|u| u.device_id.clone()).collect::<Vec<_>>()},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let mut req = format!("{}/v1/ws", server.url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", reader.token).parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (_sink, mut ws) = ws.split();
    // The socket is subscribed once a marker sent after it arrives.
    let marker = loop {
        let seq = send_app(&senders[0], &conv, b"marker").await;
        match tokio::time::timeout(
            Duration::from_millis(500),
            next_envelope_seq(&mut ws, &conv),
        )
        .await
        {
            Ok(got) if got == seq => break seq,
            Ok(got) => panic!("first push was seq {got}, expected the marker {seq}"),
            Err(_) => continue,
        }
    };

    // The storm: SENDS sends from three members, IN_FLIGHT at a time.
    let conv_ref = conv.as_str();
    let mut accepted: Vec<u64> = stream::iter(0..SENDS)
        .map(|i| {
            let u = senders[i % senders.len()].clone();
            async move { send_app(&u, conv_ref, format!("m{i}").as_bytes()).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    accepted.sort_unstable();
    assert_eq!(
        accepted,
        ((marker + 1)..=(marker + SENDS as u64)).collect::<Vec<_>>(),
        "every send accepted with its own seq"
    );

    let mut pushed = Vec::with_capacity(SENDS);
    while pushed.len() < SENDS {
        pushed.push(next_envelope_seq(&mut ws, &conv).await);
    }
    let out_of_order = pushed.windows(2).filter(|w| w[0] >= w[1]).count();
    assert_eq!(
        out_of_order, 0,
        "pushes must arrive in strictly increasing seq order"
    );
    assert_eq!(pushed, accepted, "every accepted seq pushed exactly once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_are_pushed_in_seq_order_sqlite() {
    pushes_in_seq_order(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_are_pushed_in_seq_order_postgres() {
    if let Some((url, schema)) = postgres_schema().await {
        pushes_in_seq_order(Some(url)).await;
        ward_store_postgres::PgStore::drop_schema(&pg_url(), &schema)
            .await
            .unwrap();
    }
}
