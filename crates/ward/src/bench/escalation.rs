//! `ward bench --escalation-samples N`: escalation latency on the real clock (ADR 0018).
//!
//! One in-process server (plain HTTP on loopback, SQLite in a temporary directory, the
//! system clock), a sender, a primary and a backup; `cardiology-on-call` (the primary) with
//! the shortest policy the server allows (acknowledge within 30 s, then
//! `cardiology-backup`). The backup holds a WebSocket open. N STAT messages go to the role,
//! one every 1.5 s, and nobody acknowledges; for each, latency is the time from the primary
//! tier's deadline (`tier_started_at + 30 s`, read from the store right after the send) to
//! the arrival of the backup's `escalated` alert on its WebSocket. Samples overlap, so the
//! run takes about 30 s + 1.5 s × N.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_proto::{
    AlertKind, ClinicalRoleName, CreateClinicalRoleRequest, EscalationPolicyRequest, MessageAlert,
    MessageId, ServerEvent, Username,
};
use ward_server::service::Actor;

use super::{create_conversations, enroll_all, http_client, post_json, start_server};

/// The deadline of the benchmark's policy, seconds (the server's minimum).
const ACK_WITHIN_SECS: u64 = 30;
/// Gap between two sends.
const SPACING: Duration = Duration::from_millis(1500);

/// The report.
#[derive(Serialize, Debug)]
pub struct EscalationReport {
    /// Samples asked for.
    pub samples: usize,
    /// Samples received.
    pub received: usize,
    /// Deadline → alert on the backup's WebSocket, milliseconds, in send order.
    pub latencies_ms: Vec<f64>,
    /// Median, minimum and maximum of `latencies_ms`.
    pub median_ms: f64,
    /// See `median_ms`.
    pub min_ms: f64,
    /// See `median_ms`.
    pub max_ms: f64,
    /// How it was measured.
    pub notes: Vec<String>,
}

/// Run the benchmark.
pub async fn run(samples: usize) -> anyhow::Result<EscalationReport> {
    let tmp = std::env::temp_dir().join(format!(
        "ward-bench-escalation-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&tmp)?;
    let result = run_in(&tmp, samples).await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn run_in(tmp: &std::path::Path, samples: usize) -> anyhow::Result<EscalationReport> {
    let mut server = start_server(tmp.join("data"), None, None).await?;
    let http = http_client()?;
    let devs = enroll_all(&server, &http, 3).await?;
    let (medic, backup) = (&devs[0], &devs[2]);
    let services = server.services.clone();
    server
        .runtime
        .spawn(async move {
            let admin = Actor::cli();
            let role = |s: &str| ClinicalRoleName::parse(s).map_err(|e| anyhow::anyhow!("{e}"));
            for (name, holder) in [
                ("cardiology-on-call", "bench-u00001"),
                ("cardiology-backup", "bench-u00002"),
            ] {
                services
                    .create_clinical_role(
                        &admin,
                        CreateClinicalRoleRequest {
                            name: role(name)?,
                            description: None,
                        },
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                services
                    .assign_clinical_role(&admin, &role(name)?, &Username::parse(holder)?)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            }
            services
                .set_escalation_policy(
                    &admin,
                    &role("cardiology-on-call")?,
                    EscalationPolicyRequest {
                        ack_within_secs: ACK_WITHIN_SECS,
                        renotify_every_secs: None,
                        then: vec!["role:cardiology-backup".into()],
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            anyhow::Ok(())
        })
        .await??;
    let conv = create_conversations(&server.url, &http, &devs, &[vec![0, 1, 2]])
        .await?
        .remove(0);

    // The backup's WebSocket: record when each escalated alert arrives.
    let arrivals: Arc<Mutex<HashMap<MessageId, OffsetDateTime>>> = Arc::default();
    let mut req =
        format!("{}/v1/ws", server.url.replacen("http", "ws", 1)).into_client_request()?;
    req.headers_mut()
        .insert("Authorization", format!("Bearer {}", backup.token).parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let seen = arrivals.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let WsMessage::Text(t) = frame else { continue };
            let at = OffsetDateTime::now_utc();
            if let Ok(ServerEvent::Inbox(item)) = serde_json::from_str::<ServerEvent>(t.as_str())
                && let Some(a) = MessageAlert::from_inbox(&item)
                && a.kind == AlertKind::Escalated
            {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(a.message_id, at);
            }
        }
    });

    let mut deadlines: Vec<(MessageId, OffsetDateTime)> = Vec::new();
    for i in 0..samples {
        let b = post_json(
            &http,
            &conv.url,
            Some(&medic.token),
            &json!({
                "client_message_id": uuid::Uuid::new_v4(), "kind": "application", "epoch": 1,
                "payload": base64::engine::general_purpose::STANDARD.encode(format!("bench stat {i}")),
                "to_role": {"role": "cardiology-on-call", "priority": "stat"},
            }),
        )
        .await?;
        let id: MessageId = b["message_id"]
            .as_str()
            .context("message id")?
            .parse()
            .map_err(|_| anyhow::anyhow!("bad message id"))?;
        let services = server.services.clone();
        let e = server
            .runtime
            .spawn(async move { services.store.escalation(id).await })
            .await??
            .context("the send started no escalation")?;
        deadlines.push((
            id,
            e.tier_started_at + time::Duration::seconds(ACK_WITHIN_SECS as i64),
        ));
        tokio::time::sleep(SPACING).await;
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(ACK_WITHIN_SECS + 15);
    while arrivals.lock().unwrap_or_else(|p| p.into_inner()).len() < samples
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reader.abort();
    let got = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let latencies_ms: Vec<f64> = deadlines
        .iter()
        .filter_map(|(id, deadline)| {
            got.get(id)
                .map(|at| (*at - *deadline).as_seconds_f64() * 1e3)
        })
        .collect();
    if let Some(tx) = server.shutdown.take() {
        let _ = tx.send(());
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut server.task).await;
    let super::ServerHandle { runtime, .. } = server;
    runtime.shutdown_background();
    if latencies_ms.is_empty() {
        bail!(
            "no escalation alert arrived within {} s of its deadline",
            ACK_WITHIN_SECS + 15
        );
    }
    let mut sorted = latencies_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ms = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    Ok(EscalationReport {
        samples,
        received: latencies_ms.len(),
        min_ms: sorted[0],
        max_ms: sorted[sorted.len() - 1],
        median_ms,
        latencies_ms,
        notes: vec![
            "one process: server (own runtime, 2 threads) and client share the machine".into(),
            "plain HTTP/WebSocket on 127.0.0.1, SQLite, system clock".into(),
            format!(
                "policy: acknowledge within {ACK_WITHIN_SECS} s, then cardiology-backup; one STAT message every {} ms, none acknowledged",
                SPACING.as_millis()
            ),
            "latency = arrival of the backup's `escalated` alert on its WebSocket − the primary tier's deadline".into(),
        ],
    })
}

/// The human-readable summary.
pub fn print_summary(r: &EscalationReport) {
    println!(
        "Escalation latency (deadline → next tier's WebSocket), {} of {} samples: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        r.received, r.samples, r.median_ms, r.min_ms, r.max_ms
    );
    for n in &r.notes {
        println!("  note: {n}");
    }
}
