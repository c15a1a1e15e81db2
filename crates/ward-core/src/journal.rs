//! The compliance journal (DESIGN.md §3, ADR 0010): every application message carries a copy
//! sealed with HPKE (RFC 9180, base mode) to the organisation's journal key, a key kept
//! offline, so the institution — not the server — can read the archive.
//!
//! Suite: KEM X-Wing (ML-KEM-768 + X25519, `XWingDraft06`, 0x647A), KDF HKDF-SHA256, AEAD
//! ChaCha20-Poly1305, through `hpke-rs` with the libcrux provider (the same cryptography
//! openmls uses here).
//!
//! **Derandomized, so recipients can check it.** The sender draws a fresh 32-byte seed and
//! puts it, with the key id, into the MLS plaintext (`extra.journal`, see [`JournalMarker`]).
//! The HPKE encapsulation randomness comes from an HMAC-DRBG (SP 800-90A, libcrux) seeded with
//! that seed, so the journal ciphertext is a pure function of (journal public key, seed,
//! record). Every recipient rebuilds the [`JournalRecord`] from what it decrypted and its
//! verified sender, seals it again, and compares the result in constant time with the copy
//! the server delivered ([`verify_copy`]). A modified client that journals something else, or
//! nothing, is caught by every honest recipient.
//!
//! The record holds the exact MLS plaintext bytes (which contain the seed): no re-encoding,
//! so recipients recompute byte for byte. Knowing the seed lets a group member recompute this
//! one copy's HPKE secrets, which reveals nothing the member did not already read.
//!
//! What this module does NOT do: fetch or store keys, talk to the server, or encrypt the
//! private key file at rest (the SDK and CLI do).

use std::fmt;

use hpke_rs::hpke_types::{AeadAlgorithm, KdfAlgorithm, KemAlgorithm};
use hpke_rs::libcrux::{HpkeLibcrux, HpkeLibcruxPrng};
use hpke_rs::{Hpke, HpkePublicKey, Mode};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ward_proto::{Bytes, ConversationId, DeviceId, SignedJournalKey, UserId};
use zeroize::{Zeroize, Zeroizing};

/// Length of an X-Wing public key (encapsulation key), bytes.
pub const JOURNAL_PUBLIC_KEY_LEN: usize = 1216;
/// Length of the X-Wing encapsulation at the front of a journal copy, bytes.
pub const JOURNAL_ENC_LEN: usize = 1120;
/// Length of the per-message seed and of the key pair's secret, bytes.
pub const JOURNAL_SEED_LEN: usize = 32;
/// The content field (`MessageContent::extra`) that carries the [`JournalMarker`].
pub const CONTENT_FIELD: &str = "journal";

/// HPKE `info`: binds the copy to Ward's journal, version 1.
const HPKE_INFO: &[u8] = b"ward journal v1";
/// Domain separation label at the front of an encoded [`JournalRecord`].
const RECORD_LABEL: &[u8] = b"ward journal record v1";

/// Why a journal operation failed. No variant carries key material or content.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A public key has the wrong length, or its signature by the organisation CA does not
    /// verify, or its key id does not match it.
    #[error("invalid journal key: {0}")]
    InvalidKey(&'static str),
    /// The copy does not open with this private key: another key, or altered bytes.
    #[error(
        "the journal copy does not open with this key (wrong journal key, or the copy was altered)"
    )]
    Open,
    /// The decrypted record is not a journal record of this version.
    #[error("the journal record is malformed: {0}")]
    Malformed(&'static str),
    /// The copy the server delivered is not the one the message implies.
    #[error("the journal copy does not match the message: {0}")]
    Mismatch(&'static str),
    /// The HPKE library failed (randomness, key derivation).
    #[error("journal cryptography failed: {0}")]
    Crypto(String),
}

/// An organisation journal public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct JournalPublicKey {
    key_id: String,
    public_key: Vec<u8>,
}

impl JournalPublicKey {
    /// Wraps an X-Wing public key and computes its key id. Refuses a key of the wrong length.
    pub fn from_bytes(public_key: Vec<u8>) -> Result<Self, JournalError> {
        if public_key.len() != JOURNAL_PUBLIC_KEY_LEN {
            return Err(JournalError::InvalidKey(
                "an X-Wing public key is 1216 bytes",
            ));
        }
        Ok(Self {
            key_id: key_id_of(&public_key),
            public_key,
        })
    }

    /// Accepts a key the server served only if the organisation CA signed it and its key id
    /// is the key's.
    pub fn verify(signed: &SignedJournalKey, org_ca: &[u8; 32]) -> Result<Self, JournalError> {
        let key = Self::from_bytes(signed.public_key.0.clone())?;
        if key.key_id != signed.key_id {
            return Err(JournalError::InvalidKey(
                "the key id does not match the key",
            ));
        }
        let ca = ed25519_dalek::VerifyingKey::from_bytes(org_ca)
            .map_err(|_| JournalError::InvalidKey("the organisation CA key is invalid"))?;
        let signature = ed25519_dalek::Signature::from_slice(signed.signature.as_slice())
            .map_err(|_| JournalError::InvalidKey("the signature is malformed"))?;
        ca.verify_strict(
            &SignedJournalKey::signed_bytes(
                &signed.key_id,
                &signed.public_key.0,
                signed.created_at,
            ),
            &signature,
        )
        .map_err(|_| JournalError::InvalidKey("not signed by the organisation CA"))?;
        Ok(key)
    }

    /// Hex of the first 16 bytes of SHA-256 of the key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The X-Wing public key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.public_key
    }
}

impl fmt::Debug for JournalPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalPublicKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The key id of an X-Wing public key: hex of the first 16 bytes of its SHA-256.
pub fn key_id_of(public_key: &[u8]) -> String {
    let digest = Sha256::digest(public_key);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The organisation's journal key pair. The secret is the 32-byte HPKE `DeriveKeyPair` input,
/// zeroized on drop; `Debug` shows the key id only.
pub struct JournalKeyPair {
    secret: Zeroizing<[u8; JOURNAL_SEED_LEN]>,
    public: JournalPublicKey,
}

impl JournalKeyPair {
    /// A fresh key pair from `rng` (made offline by `ward compliance keygen`).
    pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Result<Self, JournalError> {
        let mut secret = Zeroizing::new([0u8; JOURNAL_SEED_LEN]);
        rng.fill_bytes(secret.as_mut());
        Self::from_secret(&secret)
    }

    /// The key pair derived from its secret (as stored in the encrypted key file).
    pub fn from_secret(secret: &[u8; JOURNAL_SEED_LEN]) -> Result<Self, JournalError> {
        let pair = hpke(HpkeLibcruxPrng::from_seed([0; 32]))
            .derive_key_pair(secret)
            .map_err(|e| JournalError::Crypto(format!("{e:?}")))?;
        let (_, public) = pair.into_keys();
        Ok(Self {
            secret: Zeroizing::new(*secret),
            public: JournalPublicKey::from_bytes(public.as_slice().to_vec())?,
        })
    }

    /// The secret to store (encrypted) in the key file.
    pub fn secret(&self) -> &[u8; JOURNAL_SEED_LEN] {
        &self.secret
    }

    /// The public half, to install on the server.
    pub fn public(&self) -> &JournalPublicKey {
        &self.public
    }

    /// Opens a journal copy sealed to this key.
    pub fn open(&self, copy: &[u8]) -> Result<JournalRecord, JournalError> {
        if copy.len() <= JOURNAL_ENC_LEN {
            return Err(JournalError::Open);
        }
        let (enc, ciphertext) = copy.split_at(JOURNAL_ENC_LEN);
        let suite = hpke(HpkeLibcruxPrng::from_seed([0; 32]));
        let pair = suite
            .derive_key_pair(self.secret.as_slice())
            .map_err(|e| JournalError::Crypto(format!("{e:?}")))?;
        let (private, _) = pair.into_keys();
        let plaintext = Zeroizing::new(
            suite
                .open(enc, &private, HPKE_INFO, &[], ciphertext, None, None, None)
                .map_err(|_| JournalError::Open)?,
        );
        JournalRecord::from_bytes(&plaintext)
    }
}

impl fmt::Debug for JournalKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalKeyPair")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

/// What is journaled for one application message: who sent it (the verified device
/// credential's user and device), where, and the exact MLS plaintext (the content JSON, whose
/// `sent_at_ms` is the sender's time).
#[derive(Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Sending user.
    pub sender_user_id: UserId,
    /// Sending device.
    pub sender_device_id: DeviceId,
    /// The MLS plaintext, byte for byte (`MessageContent` JSON).
    pub content: Vec<u8>,
}

impl JournalRecord {
    /// Encoding: for each of the label, the three ids (16 bytes each) and the content, a
    /// 4-byte big-endian length, then the bytes. Unambiguous and free of re-encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content.len() + 96);
        for part in [
            RECORD_LABEL,
            self.conversation_id.0.as_bytes(),
            self.sender_user_id.0.as_bytes(),
            self.sender_device_id.0.as_bytes(),
            &self.content,
        ] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Decodes [`JournalRecord::to_bytes`]; refuses anything else without panicking.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JournalError> {
        let mut rest = bytes;
        let mut next = || -> Result<&[u8], JournalError> {
            if rest.len() < 4 {
                return Err(JournalError::Malformed("truncated"));
            }
            let (len, tail) = rest.split_at(4);
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if tail.len() < len {
                return Err(JournalError::Malformed("truncated"));
            }
            let (part, tail) = tail.split_at(len);
            rest = tail;
            Ok(part)
        };
        if next()? != RECORD_LABEL {
            return Err(JournalError::Malformed("not a version-1 journal record"));
        }
        let uuid = |b: &[u8]| {
            uuid::Uuid::from_slice(b).map_err(|_| JournalError::Malformed("an id is not 16 bytes"))
        };
        let conversation_id = ConversationId(uuid(next()?)?);
        let sender_user_id = UserId(uuid(next()?)?);
        let sender_device_id = DeviceId(uuid(next()?)?);
        let content = next()?.to_vec();
        if !rest.is_empty() {
            return Err(JournalError::Malformed("trailing bytes"));
        }
        Ok(Self {
            conversation_id,
            sender_user_id,
            sender_device_id,
            content,
        })
    }
}

impl fmt::Debug for JournalRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalRecord")
            .field("conversation_id", &self.conversation_id)
            .field("sender_user_id", &self.sender_user_id)
            .field("sender_device_id", &self.sender_device_id)
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .finish()
    }
}

/// The journal fields inside the MLS plaintext (`extra.journal`): the key the copy is sealed
/// to and the seed of its encapsulation. `Debug` omits the seed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalMarker {
    /// The journal key id.
    pub key_id: String,
    /// The 32-byte seed of the HPKE encapsulation randomness.
    pub seed: Bytes,
}

impl JournalMarker {
    /// A marker with a fresh seed for `key`.
    pub fn generate(key: &JournalPublicKey, rng: &mut (impl CryptoRng + RngCore)) -> Self {
        let mut seed = vec![0u8; JOURNAL_SEED_LEN];
        rng.fill_bytes(&mut seed);
        Self {
            key_id: key.key_id.clone(),
            seed: Bytes(seed),
        }
    }

    /// The marker of decoded content, if any; a present but malformed marker is an error.
    pub fn of(content: &crate::MessageContent) -> Result<Option<Self>, JournalError> {
        let Some(value) = content.extra.get(CONTENT_FIELD) else {
            return Ok(None);
        };
        let marker: Self = serde_json::from_value(value.clone())
            .map_err(|_| JournalError::Mismatch("the message's journal field is malformed"))?;
        if marker.seed.len() != JOURNAL_SEED_LEN {
            return Err(JournalError::Mismatch(
                "the message's journal seed is not 32 bytes",
            ));
        }
        Ok(Some(marker))
    }

    /// Puts this marker into `content` (replacing any earlier one).
    pub fn attach(&self, content: &mut crate::MessageContent) -> Result<(), JournalError> {
        let value = serde_json::to_value(self)
            .map_err(|e| JournalError::Crypto(format!("encoding the marker: {e}")))?;
        content.extra.insert(CONTENT_FIELD.to_owned(), value);
        Ok(())
    }

    fn seed(&self) -> Result<Zeroizing<[u8; JOURNAL_SEED_LEN]>, JournalError> {
        let mut seed = Zeroizing::new([0u8; JOURNAL_SEED_LEN]);
        if self.seed.len() != JOURNAL_SEED_LEN {
            return Err(JournalError::Mismatch("the journal seed is not 32 bytes"));
        }
        seed.copy_from_slice(self.seed.as_slice());
        Ok(seed)
    }
}

impl fmt::Debug for JournalMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalMarker")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Seals `record` to `key` with encapsulation randomness derived from `marker`'s seed:
/// returns `enc ‖ ciphertext`. The same inputs always give the same bytes.
pub fn seal(
    key: &JournalPublicKey,
    marker: &JournalMarker,
    record: &JournalRecord,
) -> Result<Vec<u8>, JournalError> {
    if marker.key_id != key.key_id {
        return Err(JournalError::Mismatch(
            "the marker names another journal key",
        ));
    }
    let seed = marker.seed()?;
    let prng = HpkeLibcruxPrng::try_from_seed(*seed)
        .map_err(|e| JournalError::Crypto(format!("{e:?}")))?;
    let mut plaintext = Zeroizing::new(record.to_bytes());
    let (mut enc, ciphertext) = hpke(prng)
        .seal(
            &HpkePublicKey::new(key.public_key.clone()),
            HPKE_INFO,
            &[],
            &plaintext,
            None,
            None,
            None,
        )
        .map_err(|e| JournalError::Crypto(format!("{e:?}")))?;
    plaintext.zeroize();
    enc.extend_from_slice(&ciphertext);
    Ok(enc)
}

/// Checks a delivered copy against the message a recipient read: the copy must name the
/// marker's key, and sealing the recipient's own record with the marker's seed must give the
/// delivered bytes exactly (compared in constant time).
pub fn verify_copy(
    key: &JournalPublicKey,
    marker: &JournalMarker,
    record: &JournalRecord,
    delivered_key_id: &str,
    delivered: &[u8],
) -> Result<(), JournalError> {
    if delivered_key_id != marker.key_id {
        return Err(JournalError::Mismatch(
            "the copy and the message name different journal keys",
        ));
    }
    let expected = seal(key, marker, record)?;
    if expected.len() != delivered.len() || !bool::from(expected.ct_eq(delivered)) {
        return Err(JournalError::Mismatch(
            "the copy is not the encryption of this message",
        ));
    }
    Ok(())
}

pub(crate) fn hpke(prng: HpkeLibcruxPrng) -> Hpke<HpkeLibcrux> {
    Hpke::new_with_rng(
        Mode::Base,
        KemAlgorithm::XWingDraft06,
        KdfAlgorithm::HkdfSha256,
        AeadAlgorithm::ChaCha20Poly1305,
        prng,
    )
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Signer;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use time::OffsetDateTime;

    use super::*;

    fn record(content: &[u8]) -> JournalRecord {
        JournalRecord {
            conversation_id: ConversationId(uuid::Uuid::from_u128(1)),
            sender_user_id: UserId(uuid::Uuid::from_u128(2)),
            sender_device_id: DeviceId(uuid::Uuid::from_u128(3)),
            content: content.to_vec(),
        }
    }

    fn pair(seed: u64) -> JournalKeyPair {
        JournalKeyPair::generate(&mut StdRng::seed_from_u64(seed)).expect("key pair")
    }

    #[test]
    fn seal_open_round_trip_and_determinism() {
        let keys = pair(1);
        let marker = JournalMarker::generate(keys.public(), &mut StdRng::seed_from_u64(9));
        let r = record(br#"{"v":1,"body":{"type":"text","text":"hello"}}"#);
        let a = seal(keys.public(), &marker, &r).expect("seal");
        let b = seal(keys.public(), &marker, &r).expect("seal");
        assert_eq!(
            a, b,
            "derandomized: same seed, key and record give the same bytes"
        );
        assert_eq!(keys.open(&a).expect("open"), r);
        let other = JournalMarker::generate(keys.public(), &mut StdRng::seed_from_u64(10));
        assert_ne!(seal(keys.public(), &other, &r).expect("seal"), a);
        verify_copy(keys.public(), &marker, &r, keys.public().key_id(), &a).expect("verifies");
    }

    #[test]
    fn key_pair_is_derived_from_its_secret() {
        let keys = pair(2);
        let again = JournalKeyPair::from_secret(keys.secret()).expect("derive");
        assert_eq!(again.public(), keys.public());
        assert_eq!(keys.public().as_bytes().len(), JOURNAL_PUBLIC_KEY_LEN);
        assert_eq!(keys.public().key_id().len(), ward_proto::JOURNAL_KEY_ID_LEN);
        assert!(!format!("{keys:?}").contains(&format!("{:?}", keys.secret())));
    }

    #[test]
    fn wrong_key_and_tampering_fail_to_open() {
        let keys = pair(3);
        let marker = JournalMarker::generate(keys.public(), &mut StdRng::seed_from_u64(1));
        let copy = seal(keys.public(), &marker, &record(b"text")).expect("seal");
        assert!(matches!(pair(4).open(&copy), Err(JournalError::Open)));
        for i in [0, JOURNAL_ENC_LEN, copy.len() - 1] {
            let mut bad = copy.clone();
            bad[i] ^= 1;
            assert!(
                matches!(keys.open(&bad), Err(JournalError::Open)),
                "byte {i}"
            );
        }
        assert!(matches!(
            keys.open(&copy[..JOURNAL_ENC_LEN]),
            Err(JournalError::Open)
        ));
        assert!(matches!(keys.open(&[]), Err(JournalError::Open)));
    }

    #[test]
    fn a_copy_of_anything_else_does_not_verify() {
        let keys = pair(5);
        let marker = JournalMarker::generate(keys.public(), &mut StdRng::seed_from_u64(1));
        let read = record(b"what the recipient read");
        let forged = seal(keys.public(), &marker, &record(b"something else")).expect("seal");
        assert!(matches!(
            verify_copy(
                keys.public(),
                &marker,
                &read,
                keys.public().key_id(),
                &forged
            ),
            Err(JournalError::Mismatch(_))
        ));
        let mut other_sender = read.clone();
        other_sender.sender_device_id = DeviceId(uuid::Uuid::from_u128(99));
        let copy = seal(keys.public(), &marker, &other_sender).expect("seal");
        assert!(verify_copy(keys.public(), &marker, &read, keys.public().key_id(), &copy).is_err());
        let good = seal(keys.public(), &marker, &read).expect("seal");
        assert!(
            verify_copy(
                keys.public(),
                &marker,
                &read,
                "0".repeat(32).as_str(),
                &good
            )
            .is_err()
        );
        assert!(
            verify_copy(
                keys.public(),
                &marker,
                &read,
                keys.public().key_id(),
                &good[1..]
            )
            .is_err()
        );
    }

    #[test]
    fn signed_keys_verify_only_with_the_organisation_ca() {
        let keys = pair(6);
        let ca = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let pk = keys.public().as_bytes().to_vec();
        let id = keys.public().key_id().to_owned();
        let sig = ca.sign(&SignedJournalKey::signed_bytes(&id, &pk, at));
        let signed = SignedJournalKey {
            key_id: id.clone(),
            public_key: Bytes(pk.clone()),
            created_at: at,
            signature: Bytes(sig.to_bytes().to_vec()),
        };
        let ca_pub = ca.verifying_key().to_bytes();
        assert_eq!(
            &JournalPublicKey::verify(&signed, &ca_pub).expect("ok"),
            keys.public()
        );
        let other_ca = ed25519_dalek::SigningKey::from_bytes(&[8; 32])
            .verifying_key()
            .to_bytes();
        assert!(JournalPublicKey::verify(&signed, &other_ca).is_err());
        let mut later = signed.clone();
        later.created_at = at + time::Duration::seconds(1);
        assert!(JournalPublicKey::verify(&later, &ca_pub).is_err());
        let mut wrong_id = signed;
        wrong_id.key_id = "0".repeat(32);
        assert!(JournalPublicKey::verify(&wrong_id, &ca_pub).is_err());
        assert!(JournalPublicKey::from_bytes(vec![0; 32]).is_err());
    }

    #[test]
    fn record_decoding_refuses_garbage() {
        let r = record(b"x");
        let bytes = r.to_bytes();
        assert_eq!(JournalRecord::from_bytes(&bytes).expect("decodes"), r);
        assert!(JournalRecord::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(JournalRecord::from_bytes(&longer).is_err());
        assert!(JournalRecord::from_bytes(b"").is_err());
        assert!(!format!("{r:?}").contains("x\""));
    }

    #[test]
    fn markers_travel_in_content_extra() {
        let keys = pair(7);
        let marker = JournalMarker::generate(keys.public(), &mut StdRng::seed_from_u64(3));
        let mut content = crate::MessageContent::text("hi", crate::Priority::Routine, 0);
        assert_eq!(JournalMarker::of(&content).expect("none"), None);
        marker.attach(&mut content).expect("attach");
        let back = crate::MessageContent::from_bytes(&content.to_bytes().expect("encode"))
            .expect("decode");
        assert_eq!(JournalMarker::of(&back).expect("some"), Some(marker));
        content
            .extra
            .insert(CONTENT_FIELD.into(), serde_json::json!({"key_id": 1}));
        assert!(JournalMarker::of(&content).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_record_round_trips(content in proptest::collection::vec(any::<u8>(), 0..2048),
                                  seed in any::<u64>()) {
            let keys = pair(11);
            let marker = JournalMarker::generate(keys.public(), &mut StdRng::seed_from_u64(seed));
            let r = record(&content);
            let copy = seal(keys.public(), &marker, &r).expect("seal");
            prop_assert_eq!(copy.len(), JOURNAL_ENC_LEN + r.to_bytes().len() + 16);
            prop_assert_eq!(keys.open(&copy).expect("open"), r);
        }
    }
}
