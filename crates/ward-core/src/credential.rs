//! Ward device credentials inside MLS, and their verification.
//!
//! A leaf's MLS credential is an openmls `BasicCredential` whose identity bytes are the JSON
//! (`serde_json::to_vec`) of a [`DeviceCredential`]. A credential is valid when
//! 1. it is a basic credential holding such JSON,
//! 2. the organisation CA's Ed25519 signature over
//!    [`DeviceCredential::signed_bytes`] verifies (strict verification),
//! 3. its `signature_key` equals the leaf's (or KeyPackage's) MLS signature key, and
//! 4. its device is not on the revocation list.
//!
//! The organisation is trusted for identity (DESIGN.md §2); this module makes sure nobody
//! else — the server included — can put a device into a group.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use ed25519_dalek::{Signature, VerifyingKey};
use openmls::prelude::{BasicCredential, Credential, CredentialType};
use serde::{Deserialize, Serialize};
use ward_proto::{DeviceCredential, DeviceId};

use crate::CoreError;

/// What a client trusts: the organisation CA, and the server's key as MLS external sender.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustAnchor {
    /// The organisation CA's Ed25519 public key (`ServerInfo::org_ca_public_key`); it signs
    /// every device credential.
    pub org_ca_public_key: [u8; 32],
    /// The server's MLS signature public key. When set, groups this device creates list it in
    /// the `external_senders` extension (RFC 9420 §12.1.8.1), so the server can propose the
    /// removal of a revoked or wiped device.
    pub external_sender_public_key: Option<Vec<u8>>,
    /// The identity in the server's external-sender basic credential (e.g. the server's
    /// host name); defaults to `ward-server` when absent.
    pub external_sender_identity: Option<String>,
}

impl std::fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustAnchor")
            .field(
                "org_ca_public_key",
                &crate::identity::hex_prefix(&self.org_ca_public_key),
            )
            .field(
                "external_sender_public_key",
                &self
                    .external_sender_public_key
                    .as_deref()
                    .map(crate::identity::hex_prefix),
            )
            .field("external_sender_identity", &self.external_sender_identity)
            .finish()
    }
}

/// Most CA-verified credentials remembered by a [`Verifier`]; the cache is emptied when full.
/// A group has one entry per member device, so this covers several 1,000-device groups.
const VERIFIED_CACHE_ENTRIES: usize = 4096;

/// Verifies device credentials against a trust anchor and a revocation list.
pub(crate) struct Verifier {
    ca: VerifyingKey,
    revoked: HashSet<DeviceId>,
    /// Credentials whose CA signature already verified, by their exact MLS identity bytes.
    /// Saves an Ed25519 verification and a JSON parse per received message (about a quarter of
    /// the decryption cost). Only the signature result is cached: revocation and the leaf key
    /// are checked every time.
    verified: Mutex<HashMap<Vec<u8>, DeviceCredential>>,
}

impl Verifier {
    pub(crate) fn new(trust: &TrustAnchor) -> Result<Self, CoreError> {
        let ca = VerifyingKey::from_bytes(&trust.org_ca_public_key)
            .map_err(|_| CoreError::credential("the organisation CA key is not an Ed25519 key"))?;
        if let Some(key) = &trust.external_sender_public_key
            && VerifyingKey::try_from(key.as_slice()).is_err()
        {
            return Err(CoreError::InvalidInput(
                "trust anchor: the external sender key is not an Ed25519 public key".into(),
            ));
        }
        Ok(Verifier {
            ca,
            revoked: HashSet::new(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn set_revoked(&mut self, revoked: impl IntoIterator<Item = DeviceId>) {
        self.revoked = revoked.into_iter().collect();
    }

    pub(crate) fn revoked(&self) -> impl Iterator<Item = &DeviceId> {
        self.revoked.iter()
    }

    /// Checks a [`DeviceCredential`] on its own: CA signature, key shape, revocation.
    pub(crate) fn verify_device_credential(&self, dc: &DeviceCredential) -> Result<(), CoreError> {
        let signature = Signature::from_slice(dc.signature.as_slice())
            .map_err(|_| CoreError::credential("the CA signature is not 64 bytes"))?;
        self.ca
            .verify_strict(&dc.signed_bytes(), &signature)
            .map_err(|_| CoreError::credential("not signed by the organisation CA"))?;
        if dc.signature_key.len() != 32 {
            return Err(CoreError::credential(
                "the device signature key is not a 32-byte Ed25519 key",
            ));
        }
        if self.revoked.contains(&dc.device_id) {
            return Err(CoreError::RevokedDevice(dc.device_id));
        }
        Ok(())
    }

    /// Checks an MLS credential together with the signature key of the leaf that carries it,
    /// and returns the device credential inside.
    pub(crate) fn verify_leaf(
        &self,
        credential: &Credential,
        leaf_signature_key: &[u8],
    ) -> Result<DeviceCredential, CoreError> {
        let dc = self.verify_cached(credential)?;
        if dc.signature_key.as_slice() != leaf_signature_key {
            return Err(CoreError::credential(
                "the MLS signature key differs from the key the organisation certified",
            ));
        }
        Ok(dc)
    }
}

impl Verifier {
    /// Parses and verifies a leaf's credential, using the cache of CA-verified credentials.
    pub(crate) fn verify_cached(
        &self,
        credential: &Credential,
    ) -> Result<DeviceCredential, CoreError> {
        if credential.credential_type() != CredentialType::Basic {
            return Err(CoreError::credential("not a basic credential"));
        }
        let identity = credential.serialized_content();
        let cached = self
            .verified
            .lock()
            .map_err(|_| CoreError::Internal("credential cache lock poisoned".into()))?
            .get(identity)
            .cloned();
        let dc = match cached {
            Some(dc) => dc,
            None => {
                let dc = parse_leaf_credential(credential)?;
                self.verify_device_credential(&dc)?;
                let mut cache = self
                    .verified
                    .lock()
                    .map_err(|_| CoreError::Internal("credential cache lock poisoned".into()))?;
                if cache.len() >= VERIFIED_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(identity.to_vec(), dc.clone());
                dc
            }
        };
        if self.revoked.contains(&dc.device_id) {
            return Err(CoreError::RevokedDevice(dc.device_id));
        }
        Ok(dc)
    }
}

/// The MLS credential that carries a device credential.
pub(crate) fn to_mls_credential(dc: &DeviceCredential) -> Result<Credential, CoreError> {
    let json = serde_json::to_vec(dc)
        .map_err(|e| CoreError::Internal(format!("cannot encode device credential: {e}")))?;
    Ok(BasicCredential::new(json).into())
}

/// Parses the device credential out of an MLS credential, without verifying it.
pub(crate) fn parse_leaf_credential(
    credential: &Credential,
) -> Result<DeviceCredential, CoreError> {
    if credential.credential_type() != CredentialType::Basic {
        return Err(CoreError::credential("not a basic credential"));
    }
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| CoreError::credential("not a basic credential"))?;
    serde_json::from_slice(basic.identity())
        .map_err(|_| CoreError::credential("the identity is not a Ward device credential"))
}
