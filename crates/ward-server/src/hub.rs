//! The delivery hub: live WebSocket connections per device on this node.
//!
//! Each event is serialised once and the same bytes are handed to every recipient
//! connection. Queues are bounded: a connection that falls `QUEUE_DEPTH` events behind is
//! dropped, and its client catches up through cursor-based sync after reconnecting, so a slow
//! phone never holds memory hostage and nothing acknowledged is lost (the store has it).
//!
//! With a cluster attached ([`crate::cluster`]), every [`Hub::publish`] and [`Hub::end_device`]
//! is also handed, without waiting, to the cluster publisher so the other nodes push it to
//! *their* connections; what arrives from other nodes is delivered here with the `*_local`
//! methods, which never forward again.
//!
//! Envelopes reach [`Hub::publish`] from the node's one publisher task, in the order the store
//! committed them (ADR 0020), and every queue here is FIFO: each connection receives a
//! conversation's envelopes appended through this node in seq order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use ward_proto::{DeviceId, ServerEvent};

use crate::cluster::{Outbound, OutboundKind};

/// Events buffered per connection before it is considered too slow.
pub const QUEUE_DEPTH: usize = 1024;

type Sender = mpsc::Sender<Utf8Bytes>;

/// Live connections of this node.
#[derive(Default)]
pub struct Hub {
    // std Mutex: never held across an await.
    connections: Mutex<HashMap<DeviceId, Vec<(u64, Sender)>>>,
    next_id: AtomicU64,
    dropped_slow: AtomicU64,
    cluster: OnceLock<Outbound>,
}

/// A subscription; unsubscribes when dropped.
pub struct Subscription<'a> {
    hub: &'a Hub,
    device: DeviceId,
    id: u64,
    /// Serialised events for this connection.
    pub events: mpsc::Receiver<Utf8Bytes>,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.hub.remove(self.device, self.id);
    }
}

impl Hub {
    /// Register a connection of `device`.
    pub fn subscribe(&self, device: DeviceId) -> Subscription<'_> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(device).or_default().push((id, tx));
        Subscription {
            hub: self,
            device,
            id,
            events: rx,
        }
    }

    /// Forward every later publish to the other nodes through `outbound` (once, at start).
    /// Returns `false` if a cluster was already attached.
    pub fn attach_cluster(&self, outbound: Outbound) -> bool {
        self.cluster.set(outbound).is_ok()
    }

    /// Serialise `event` once and queue it for every connection of every device in `to`, on
    /// this node and (with a cluster) on the others.
    pub fn publish(&self, to: &[DeviceId], event: &ServerEvent) {
        if to.is_empty() {
            return;
        }
        let Some(text) = serialise(event) else {
            return;
        };
        self.deliver_local(to, &text);
        if let Some(cluster) = self.cluster.get() {
            let reference = match event {
                ServerEvent::Envelope(e) => Some((e.conversation_id, e.seq)),
                _ => None,
            };
            cluster.forward(OutboundKind::Event, to, text, reference);
        }
    }

    /// Tell every connection of `device` its session ended, then drop them (on every node).
    pub fn end_device(&self, device: DeviceId, reason: &str) {
        let Some(text) = serialise(&ServerEvent::SessionEnded {
            reason: reason.to_owned(),
        }) else {
            // Still close the connections: the socket must not outlive the session.
            self.drop_local(&[device]);
            return;
        };
        self.end_local(&[device], &text);
        if let Some(cluster) = self.cluster.get() {
            cluster.forward(OutboundKind::End, &[device], text, None);
        }
    }

    /// Queue already serialised `text` for the connections of `to` on this node only.
    pub fn deliver_local(&self, to: &[DeviceId], text: &Utf8Bytes) {
        let mut map = self.lock();
        for device in to {
            if let Some(conns) = map.get_mut(device) {
                conns.retain(|(_, tx)| match tx.try_send(text.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.dropped_slow.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(device_id = %device, "dropping a slow connection; it will resync");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
                if conns.is_empty() {
                    map.remove(device);
                }
            }
        }
    }

    /// Queue `text` (a `session_ended` event) for the connections of `to` on this node, then
    /// drop them.
    pub fn end_local(&self, to: &[DeviceId], text: &Utf8Bytes) {
        self.deliver_local(to, text);
        self.drop_local(to);
    }

    /// Drop the connections of `to` on this node without a final event: each client sees its
    /// socket close, reconnects and catches up by sync.
    pub fn drop_local(&self, to: &[DeviceId]) {
        let mut map = self.lock();
        for device in to {
            map.remove(device);
        }
    }

    /// Whether `device` has a live connection on this node.
    pub fn is_connected(&self, device: DeviceId) -> bool {
        self.lock().contains_key(&device)
    }

    /// Devices with a live connection on this node.
    pub fn connected_devices(&self) -> usize {
        self.lock().len()
    }

    /// Connections dropped for being slow, since start.
    pub fn dropped_slow(&self) -> u64 {
        self.dropped_slow.load(Ordering::Relaxed)
    }

    fn remove(&self, device: DeviceId, id: u64) {
        let mut map = self.lock();
        if let Some(conns) = map.get_mut(&device) {
            conns.retain(|(i, _)| *i != id);
            if conns.is_empty() {
                map.remove(&device);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Vec<(u64, Sender)>>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn serialise(event: &ServerEvent) -> Option<Utf8Bytes> {
    match serde_json::to_string(event) {
        Ok(s) => Some(s.into()),
        Err(e) => {
            tracing::error!(error = %e, "could not serialise an event");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publishes_to_each_connection_and_unsubscribes() {
        let hub = Hub::default();
        let d = DeviceId::random();
        let mut a = hub.subscribe(d);
        let mut b = hub.subscribe(d);
        hub.publish(
            &[d, DeviceId::random()],
            &ServerEvent::SessionEnded { reason: "x".into() },
        );
        assert!(
            a.events
                .recv()
                .await
                .unwrap()
                .as_str()
                .contains("session_ended")
        );
        assert!(
            b.events
                .recv()
                .await
                .unwrap()
                .as_str()
                .contains("session_ended")
        );
        drop(a);
        drop(b);
        assert_eq!(hub.connected_devices(), 0);
    }

    #[tokio::test]
    async fn slow_connection_is_dropped() {
        let hub = Hub::default();
        let d = DeviceId::random();
        let mut sub = hub.subscribe(d);
        let ev = ServerEvent::SessionEnded { reason: "x".into() };
        for _ in 0..QUEUE_DEPTH + 1 {
            hub.publish(&[d], &ev);
        }
        assert_eq!(hub.dropped_slow(), 1);
        let mut n = 0;
        while sub.events.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(
            n, QUEUE_DEPTH,
            "buffered events drain, then the channel closes"
        );
    }
}
