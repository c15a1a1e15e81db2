//! Remote wipe: the instruction the server hands a wiped device and the confirmation the
//! device sends back (ADR 0011).
//!
//! The instruction is signed by the organisation CA, whose key every device pinned at
//! enrollment, so a device erases its profile only on the organisation's word and only for its
//! own device id. The confirmation is signed with the device's MLS signature key, whose public
//! half the server holds from the device credential, so only the device itself can confirm.
//! Both signed forms are length-prefixed like [`crate::DeviceCredential::signed_bytes`] and
//! start with a distinct label, so neither can be replayed as the other or as a credential.
//! This module only defines the bytes; signing and verifying happen in the server and in
//! `ward-core`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{Bytes, DeviceId, UserId};

/// The order to erase a device's profile, carried in the `device_wiped` error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WipeInstruction {
    /// The device that must erase itself; a device refuses an instruction for any other id.
    pub device_id: DeviceId,
    /// When the wipe was ordered, Unix seconds.
    pub issued_at: i64,
    /// 32 random bytes naming this order; the confirmation signs it.
    pub nonce: Bytes,
    /// Ed25519 signature of the organisation CA over [`WipeInstruction::signed_bytes`].
    pub signature: Bytes,
}

impl WipeInstruction {
    /// Domain separation label of the instruction signature.
    pub const LABEL: &'static [u8] = b"ward wipe instruction v1";

    /// The exact bytes the organisation CA signs.
    pub fn signed_bytes(device_id: DeviceId, issued_at: i64, nonce: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        push_field(&mut out, Self::LABEL);
        push_field(&mut out, device_id.0.as_bytes());
        push_field(&mut out, &issued_at.to_be_bytes());
        push_field(&mut out, nonce);
        out
    }
}

/// `POST /v1/devices/{device_id}/wipe-confirmation` (no session: the wiped device has none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WipeConfirmation {
    /// The nonce of the instruction being confirmed.
    pub nonce: Bytes,
    /// Ed25519 signature with the device's MLS signature key over
    /// [`WipeConfirmation::signed_bytes`].
    pub signature: Bytes,
}

impl WipeConfirmation {
    /// Domain separation label of the confirmation signature.
    pub const LABEL: &'static [u8] = b"ward wipe confirmation v1";

    /// The exact bytes the device signs.
    pub fn signed_bytes(device_id: DeviceId, nonce: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        push_field(&mut out, Self::LABEL);
        push_field(&mut out, device_id.0.as_bytes());
        push_field(&mut out, nonce);
        out
    }
}

/// Answer to `POST /v1/admin/devices/{device_id}/wipe` and `ward admin device wipe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WipeOrderInfo {
    /// The device.
    pub device_id: DeviceId,
    /// Its owner.
    pub user_id: UserId,
    /// When the wipe was ordered.
    #[serde(with = "time::serde::rfc3339")]
    pub ordered_at: OffsetDateTime,
    /// When the device first received the instruction.
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    /// When the device confirmed the erasure.
    #[serde(with = "time::serde::rfc3339::option")]
    pub confirmed_at: Option<OffsetDateTime>,
}

/// A 4-byte big-endian length, then the bytes. Every field here is far below 4 GiB.
fn push_field(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_and_confirmation_bytes_differ_and_bind_every_field() {
        let d = DeviceId::random();
        let n = [7u8; 32];
        let i = WipeInstruction::signed_bytes(d, 10, &n);
        assert_ne!(i, WipeInstruction::signed_bytes(d, 11, &n));
        assert_ne!(i, WipeInstruction::signed_bytes(DeviceId::random(), 10, &n));
        assert_ne!(i, WipeInstruction::signed_bytes(d, 10, &[8u8; 32]));
        assert_ne!(
            WipeConfirmation::signed_bytes(d, &n),
            WipeConfirmation::signed_bytes(DeviceId::random(), &n)
        );
        assert!(i.starts_with(&[0, 0, 0, 24]));
        assert!(i[4..].starts_with(WipeInstruction::LABEL));
    }
}
