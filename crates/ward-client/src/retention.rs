//! Obeying deletion orders (ADR 0013): when the server deletes messages (their lifespan
//! ended, or an erasure request), it orders the devices that received them to delete their
//! local copies. On every sync the SDK fetches the orders, has `ward-core` verify the
//! organisation CA's signature, deletes the named messages of that conversation from the
//! profile's history, **saves the profile**, and only then acknowledges each order. A forged
//! order deletes nothing and becomes a warning (it is not acknowledged, so a genuine copy
//! would still be applied).

use std::collections::HashSet;

use ward_proto::{DeletionOrderList, MessageId};

use crate::{WardClient, WardError};

impl WardClient {
    /// Apply pending deletion orders; returns (messages deleted, warnings).
    pub(crate) async fn apply_deletion_orders(
        &mut self,
    ) -> Result<(usize, Vec<String>), WardError> {
        let list: DeletionOrderList = self.api.get("/v1/deletion-orders").await?;
        if list.orders.is_empty() {
            return Ok((0, Vec::new()));
        }
        let mut deleted = 0;
        let mut warnings = Vec::new();
        let mut accepted = Vec::new();
        for order in &list.orders {
            if let Err(e) = self.core.verify_deletion_order(order) {
                let w = format!("deletion order {} ignored: {e}", order.order_id);
                tracing::warn!(order = %order.order_id, "deletion order refused");
                // A refused order is never acknowledged, so it comes back on every sync:
                // keep one saved warning for it, not one per sync.
                if !self.profile.data.warnings.contains(&w) {
                    self.profile.data.warnings.push(w.clone());
                }
                warnings.push(w);
                continue;
            }
            let ids: HashSet<MessageId> = order.message_ids.iter().copied().collect();
            let before = self.profile.data.messages.len();
            self.profile.data.messages.retain(|m| {
                !(m.conversation_id == order.conversation_id
                    && m.message_id.is_some_and(|id| ids.contains(&id)))
            });
            deleted += before - self.profile.data.messages.len();
            accepted.push(order.order_id);
        }
        // Saved before acknowledging: an acknowledged order is never re-sent.
        self.save()?;
        for id in accepted {
            self.api
                .post_empty(&format!("/v1/deletion-orders/{id}/ack"), &())
                .await?;
        }
        Ok((deleted, warnings))
    }
}
