//! Deletion orders (ADR 0013): the organisation tells devices to delete messages from their
//! local history after the server deleted them (lifespan or erasure).
//!
//! A device obeys only an order the organisation CA it pinned at enrollment signed, as with a
//! remote wipe (ADR 0011): a server or network attacker without the CA key cannot make a
//! device delete anything. This module only verifies; deleting from the profile is the SDK's.

use ward_proto::{DeletionOrder, MAX_DELETION_ORDER_IDS};

use crate::{Client, CoreError, TrustAnchor};

impl Client {
    /// Verify a deletion order against this device's trust anchor; see [`verify_deletion_order`].
    pub fn verify_deletion_order(&self, order: &DeletionOrder) -> Result<(), CoreError> {
        verify_deletion_order(self.trust_anchor(), order)
    }
}

/// Check that the organisation CA signed [`DeletionOrder::signed_bytes`] of this order
/// (strict Ed25519) and that it is within bounds. Anything else is
/// [`CoreError::InvalidDeletionOrder`] and the caller must delete nothing.
pub fn verify_deletion_order(trust: &TrustAnchor, order: &DeletionOrder) -> Result<(), CoreError> {
    if order.message_ids.len() > MAX_DELETION_ORDER_IDS {
        return Err(CoreError::InvalidDeletionOrder("too many message ids"));
    }
    let ca = ed25519_dalek::VerifyingKey::from_bytes(&trust.org_ca_public_key)
        .map_err(|_| CoreError::InvalidDeletionOrder("the trusted CA key is unusable"))?;
    let signature: [u8; 64] = order
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| CoreError::InvalidDeletionOrder("the signature is not 64 bytes"))?;
    let signed = DeletionOrder::signed_bytes(
        order.order_id,
        order.conversation_id,
        &order.message_ids,
        order.issued_at,
    );
    ca.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| CoreError::InvalidDeletionOrder("not signed by the organisation CA"))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Signer as _;
    use ward_proto::{ConversationId, MessageId};

    use super::*;

    fn trust(key: &ed25519_dalek::SigningKey) -> TrustAnchor {
        TrustAnchor {
            org_ca_public_key: key.verifying_key().to_bytes(),
            external_sender_public_key: None,
            external_sender_identity: None,
        }
    }

    fn signed(key: &ed25519_dalek::SigningKey, ids: Vec<MessageId>) -> DeletionOrder {
        let order_id = uuid::Uuid::new_v4();
        let conversation_id = ConversationId(uuid::Uuid::new_v4());
        let sig = key.sign(&DeletionOrder::signed_bytes(
            order_id,
            conversation_id,
            &ids,
            42,
        ));
        DeletionOrder {
            order_id,
            conversation_id,
            message_ids: ids,
            issued_at: 42,
            signature: sig.to_bytes().to_vec().into(),
        }
    }

    #[test]
    fn genuine_orders_pass_and_forgeries_fail() {
        let ca = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let ids = vec![MessageId(uuid::Uuid::new_v4())];
        let good = signed(&ca, ids.clone());
        verify_deletion_order(&trust(&ca), &good).expect("genuine");
        // Signed by someone else.
        let forged = signed(&other, ids.clone());
        assert!(matches!(
            verify_deletion_order(&trust(&ca), &forged),
            Err(CoreError::InvalidDeletionOrder(
                "not signed by the organisation CA"
            ))
        ));
        // A genuine order with one more id slipped in.
        let mut widened = good.clone();
        widened.message_ids.push(MessageId(uuid::Uuid::new_v4()));
        assert!(verify_deletion_order(&trust(&ca), &widened).is_err());
        // Moved to another conversation.
        let mut moved = good.clone();
        moved.conversation_id = ConversationId(uuid::Uuid::new_v4());
        assert!(verify_deletion_order(&trust(&ca), &moved).is_err());
        // Truncated signature.
        let mut short = good;
        short.signature = vec![0u8; 10].into();
        assert!(matches!(
            verify_deletion_order(&trust(&ca), &short),
            Err(CoreError::InvalidDeletionOrder(
                "the signature is not 64 bytes"
            ))
        ));
    }
}
