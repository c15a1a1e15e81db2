//! The device identity: the Ed25519 key pair that signs this device's MLS leaf, KeyPackages,
//! commits and messages, and whose public half the organisation CA binds to the device in its
//! [`DeviceCredential`](ward_proto::DeviceCredential).
//!
//! The secret key is zeroized on drop (`ed25519-dalek` with its `zeroize` feature) and never
//! printed: `Debug` shows only the public key.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::CoreError;

/// A device's signature key pair (Ed25519, the signature scheme of both Ward ciphersuites).
pub struct Identity {
    /// The secret key; `SigningKey` zeroizes itself on drop.
    key: SigningKey,
}

impl Identity {
    /// A fresh key pair from the operating system's random number generator.
    pub fn generate() -> Result<Identity, CoreError> {
        let mut rng = rand::rngs::OsRng;
        // OsRng panics rather than returning weak randomness; probe it through the fallible API
        // first so a broken RNG surfaces as an error.
        let mut probe = [0u8; 1];
        rng.try_fill_bytes(&mut probe)
            .map_err(|e| CoreError::Internal(format!("system randomness unavailable: {e}")))?;
        Ok(Identity::generate_with(&mut rng))
    }

    /// A fresh key pair from the given cryptographically secure RNG (tests pass a seeded one).
    pub fn generate_with(rng: &mut (impl RngCore + CryptoRng)) -> Identity {
        Identity {
            key: SigningKey::generate(rng),
        }
    }

    /// The public key, which the organisation CA puts in the device credential.
    pub fn signature_public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The secret key bytes, for [`Client::to_bytes`](crate::Client::to_bytes).
    pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// Rebuilds an identity from its secret key bytes.
    pub(crate) fn from_secret_bytes(bytes: &[u8; 32]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(bytes),
        }
    }
}

impl Signer for Identity {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.key.sign(payload).to_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &hex_prefix(&self.signature_public_key()))
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// The first 8 bytes of a public key in hex, enough to tell keys apart in a debug print.
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_keys_round_trip() {
        let id = Identity::generate().unwrap();
        let secret = id.secret_bytes();
        let hex_secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let dbg = format!("{id:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&hex_secret[..16]));
        let again = Identity::from_secret_bytes(&secret);
        assert_eq!(again.signature_public_key(), id.signature_public_key());
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        let id = Identity::generate().unwrap();
        let sig = id.sign(b"payload").unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&id.signature_public_key()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        vk.verify_strict(b"payload", &sig).unwrap();
    }
}
