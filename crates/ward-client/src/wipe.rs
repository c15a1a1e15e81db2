//! Obeying a remote wipe (ADR 0011).
//!
//! When the server answers a request with `device_wiped`, the SDK asks `ward-core` to verify
//! the instruction (organisation CA signature, this device's id). Only then does it erase the
//! profile directory — every file overwritten with zeros, synced and deleted, then the
//! directory removed — and post the confirmation the core signed with the device key. A
//! forged, unsigned or foreign instruction erases nothing and surfaces as
//! [`CoreError::InvalidWipeInstruction`](ward_core::CoreError::InvalidWipeInstruction).
//!
//! Overwriting is best effort on flash storage and copy-on-write file systems; the profile is
//! encrypted under the passphrase either way (architecture §11.1), so what may survive on the
//! medium is ciphertext.

use crate::{WardClient, WardError};

impl WardClient {
    /// Turn a `device_wiped` answer into the wipe itself; pass every other result through.
    pub(crate) async fn obey_wipe<T>(
        &mut self,
        result: Result<T, WardError>,
    ) -> Result<T, WardError> {
        let instruction = match result {
            Err(WardError::WipeOrdered(i)) => i,
            other => return other,
        };
        // Verify before touching anything: a refusal leaves the profile as it is.
        let confirmation = self.core.accept_wipe(&instruction)?;
        let device_id = self.profile.data.device_id;
        self.profile.erase()?;
        tracing::warn!(%device_id, "device wiped by the organisation; profile erased");
        self.api.set_token(None);
        let confirmed = match self
            .api
            .post_empty(
                &format!("/v1/devices/{device_id}/wipe-confirmation"),
                &confirmation,
            )
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "wipe confirmation not accepted");
                false
            }
        };
        Err(WardError::Wiped { confirmed })
    }
}
