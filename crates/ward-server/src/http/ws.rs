//! `GET /v1/ws`: live delivery to a device.
//!
//! The device connects, then syncs over HTTP to catch up; events that arrive during the
//! catch-up are deduplicated by seq on the client. The session is re-checked periodically,
//! so suspension, revocation, logout and the idle and absolute timeouts close the socket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use ward_proto::{ClientFrame, ServerEvent};

use crate::service::{AuthSession, Services};

/// How often a live socket re-checks its session.
const SESSION_RECHECK: Duration = Duration::from_secs(30);
/// Largest frame a device may send (acknowledgements are small).
const MAX_CLIENT_FRAME: usize = 256 * 1024;
/// Initial read buffer of a socket. tungstenite's default (128 KiB) is allocated and
/// zero-filled per connection, which made an idle socket cost about 140 KiB (measured with
/// `ward bench --idle-connections`); client frames are small acks, and the buffer grows for a
/// larger frame.
const READ_BUFFER: usize = 4 * 1024;

/// Upgrade to a WebSocket (bearer token in the `Authorization` header).
#[utoipa::path(get, path = "/v1/ws", security(("bearer" = [])),
    responses((status = 101, description = "Switching to WebSocket; JSON text frames tagged by `type`"),
              (status = 401, body = ward_proto::ErrorBody)))]
pub async fn upgrade(
    State(services): State<Arc<Services>>,
    session: AuthSession,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => {
            return crate::error::ApiError::new(
                ward_proto::ErrorCode::InvalidRequest,
                format!("expected a WebSocket upgrade request: {}", r.body_text()),
            )
            .into_response();
        }
    };
    ws.max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| run(services, session, socket))
}

async fn run(services: Arc<Services>, session: AuthSession, mut socket: WebSocket) {
    services.metrics.websockets.inc();
    let mut sub = services.hub.subscribe(session.device_id);
    let mut recheck = tokio::time::interval(SESSION_RECHECK);
    recheck.tick().await;
    let close_reason = loop {
        tokio::select! {
            ev = sub.events.recv() => match ev {
                Some(text) => {
                    let ended = text.as_str().starts_with(r#"{"type":"session_ended""#);
                    if socket.send(Message::Text(text)).await.is_err() {
                        break None;
                    }
                    if ended {
                        break Some("session ended");
                    }
                }
                // Dropped by the hub (too slow or session ended): the client resyncs.
                None => break Some("connection fell behind; reconnect and sync"),
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ClientFrame>(t.as_str()) {
                    Ok(ClientFrame::Ack(ack)) => {
                        if let Err(e) = services.ack(&session, ack).await {
                            tracing::debug!(error = %e, "websocket ack refused");
                            break Some("invalid acknowledgement");
                        }
                        let _ = services.store.touch_session(&session.token_hash, services.now()).await;
                    }
                    Ok(_) => {}
                    Err(_) => break Some("malformed frame: expected a JSON ack or ping"),
                },
                Some(Ok(Message::Binary(_))) => break Some("binary frames are not accepted"),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
            _ = recheck.tick() => {
                if let Err(e) = services.revalidate(&session).await {
                    let ev = ServerEvent::SessionEnded { reason: e.message.clone() };
                    if let Ok(text) = serde_json::to_string(&ev) {
                        let _ = socket.send(Message::Text(text.into())).await;
                    }
                    break Some("session ended");
                }
            }
        }
    };
    if let Some(reason) = close_reason {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code: 1008,
                reason: reason.into(),
            })))
            .await;
    }
    services.metrics.websockets.dec();
}
