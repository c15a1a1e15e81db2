//! Remote wipe (ADR 0011): order, deliver and confirm the erasure of a device's profile.
//!
//! Ordering a wipe revokes the device at once (sessions, KeyPackages, routing, as
//! `revoke_device` does) and stores a wipe order with the hashes of the sessions the device
//! held. From then on, the device's next contact — a request with its old token, or a login
//! naming its device id — is answered with `device_wiped` and an instruction signed by the
//! organisation CA; the device verifies it, erases its profile and posts a confirmation signed
//! with its MLS signature key. Each step is audited (`device.wipe.ordered`,
//! `device.wipe.delivered`, `device.wipe.confirmed`).
//!
//! What this does NOT do: remove the device from MLS groups itself. The server cannot build
//! an MLS remove proposal without the group's ratchet tree, which it never sees (ADR 0011); it
//! pushes a `device_revoked` event to the devices sharing a conversation with the wiped one,
//! and the first member online commits the removal (architecture §11.9).

use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use rand::Rng;
use rand::rngs::OsRng;
use ward_proto::{
    DeviceId, ErrorCode, Role, ServerEvent, WipeConfirmation, WipeInstruction, WipeOrderInfo,
};
use ward_store::{StoreError, WipeOrder};

use super::{Actor, Services, require_role};
use crate::error::{ApiError, ApiResult};

impl Services {
    /// Order the wipe of a device (admins only): revoke it, store the order, push a
    /// `device_revoked` event to the devices that share a conversation with it, and audit
    /// `device.wipe.ordered`. A device revoked earlier can still be wiped.
    pub async fn wipe_device(&self, actor: &Actor, id: DeviceId) -> ApiResult<WipeOrderInfo> {
        require_role(actor, &[Role::Admin])?;
        let device = self
            .store
            .device(id)
            .await?
            .ok_or_else(|| ApiError::not_found("device"))?;
        // Whom to tell, read before the routing closes.
        let mut peers: Vec<DeviceId> = Vec::new();
        for c in self.store.conversations_of_device(id).await? {
            for m in self.store.member_devices(c.id).await? {
                if m.device_id != id && !peers.contains(&m.device_id) {
                    peers.push(m.device_id);
                }
            }
        }
        let mut nonce = [0u8; 32];
        OsRng.fill(&mut nonce);
        let order = WipeOrder {
            device_id: id,
            user_id: device.user_id,
            nonce,
            ordered_at: self.now(),
            delivered_at: None,
            confirmed_at: None,
        };
        let revoked_now = match self.store.order_wipe(&order).await {
            Ok(r) => r,
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "a wipe of this device was already ordered",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        self.hub.end_device(id, "device wiped");
        if revoked_now {
            self.hub
                .publish(&peers, &ServerEvent::DeviceRevoked { device_id: id });
        }
        self.audit
            .record(
                actor,
                "device.wipe.ordered",
                Some(id.to_string()),
                serde_json::json!({
                    "user_id": device.user_id,
                    "revoked_now": revoked_now,
                    "peers_notified": if revoked_now { peers.len() } else { 0 },
                }),
            )
            .await?;
        Ok(wipe_info(&order))
    }

    /// The state of a device's wipe order (admins only).
    pub async fn wipe_status(&self, actor: &Actor, id: DeviceId) -> ApiResult<WipeOrderInfo> {
        require_role(actor, &[Role::Admin])?;
        let order = self
            .store
            .wipe_order(id)
            .await?
            .ok_or_else(|| ApiError::not_found("wipe order"))?;
        Ok(wipe_info(&order))
    }

    /// The `device_wiped` error for a device with a wipe order, if it has one: signs the
    /// instruction, records the delivery and audits `device.wipe.delivered` (`via` says how
    /// the device got it: `session` or `login`).
    pub(crate) async fn wipe_answer(
        &self,
        order: Option<WipeOrder>,
        via: &'static str,
    ) -> ApiResult<Option<ApiError>> {
        let Some(order) = order else {
            return Ok(None);
        };
        let issued_at = order.ordered_at.unix_timestamp();
        let signature = self
            .keys
            .org_ca
            .sign(&WipeInstruction::signed_bytes(
                order.device_id,
                issued_at,
                &order.nonce,
            ))
            .to_bytes()
            .to_vec();
        let instruction = WipeInstruction {
            device_id: order.device_id,
            issued_at,
            nonce: order.nonce.to_vec().into(),
            signature: signature.into(),
        };
        self.store
            .mark_wipe_delivered(order.device_id, self.now())
            .await?;
        let actor = Actor {
            user_id: Some(order.user_id),
            device_id: Some(order.device_id),
            role: Role::Patient,
            via: "api",
        };
        self.audit
            .record(
                &actor,
                "device.wipe.delivered",
                Some(order.device_id.to_string()),
                serde_json::json!({"user_id": order.user_id, "channel": via}),
            )
            .await?;
        Ok(Some(ApiError::device_wiped(instruction)))
    }

    /// The wiped device's confirmation (no session): the nonce must be the order's and the
    /// signature must verify under the device's MLS signature key. Audits
    /// `device.wipe.confirmed`.
    pub async fn confirm_wipe(&self, id: DeviceId, c: &WipeConfirmation) -> ApiResult<()> {
        // One answer for every refusal, so the endpoint does not tell which devices exist.
        let refused = || {
            ApiError::new(
                ErrorCode::Forbidden,
                "wipe confirmation refused: no pending wipe of this device matches this nonce and signature",
            )
        };
        if c.nonce.len() != 32 {
            return Err(ApiError::invalid("nonce must be 32 bytes"));
        }
        let signature: [u8; 64] = c
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::invalid("signature must be a 64-byte Ed25519 signature"))?;
        let Some(order) = self.store.wipe_order(id).await? else {
            return Err(refused());
        };
        let device = self
            .store
            .device(id)
            .await?
            .ok_or_else(|| ApiError::internal(&"wipe order without device"))?;
        let key: [u8; 32] = device
            .signature_key
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::internal(&"stored device key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| ApiError::internal(&e))?;
        let nonce_ok = bool::from(subtle::ConstantTimeEq::ct_eq(
            &order.nonce[..],
            c.nonce.as_slice(),
        ));
        let signed = WipeConfirmation::signed_bytes(id, c.nonce.as_slice());
        if !nonce_ok
            || key
                .verify_strict(&signed, &Signature::from_bytes(&signature))
                .is_err()
        {
            return Err(refused());
        }
        if !self.store.mark_wipe_confirmed(id, self.now()).await? {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the wipe of this device was already confirmed",
            ));
        }
        let actor = Actor {
            user_id: Some(order.user_id),
            device_id: Some(id),
            role: Role::Patient,
            via: "api",
        };
        self.audit
            .record(
                &actor,
                "device.wipe.confirmed",
                Some(id.to_string()),
                serde_json::json!({"user_id": order.user_id}),
            )
            .await
    }
}

fn wipe_info(o: &WipeOrder) -> WipeOrderInfo {
    WipeOrderInfo {
        device_id: o.device_id,
        user_id: o.user_id,
        ordered_at: o.ordered_at,
        delivered_at: o.delivered_at,
        confirmed_at: o.confirmed_at,
    }
}
