//! The byte format of [`Client::to_bytes`](crate::Client::to_bytes) (format version 1).
//!
//! ```text
//! magic        8 bytes  "WARDCORE"
//! version      u16 BE   1
//! secret key   32 bytes the device's Ed25519 secret key
//! meta         u32 BE length + JSON of `Meta` (credential, trust anchor, revocation list, groups)
//! entries      u64 BE count, then per entry: u32 BE key length, key, u32 BE value length, value
//!              (the openmls key→value storage)
//! ```
//!
//! Integers are big-endian. Decoding checks every length against the remaining input, so
//! truncated or hostile bytes give an error, never a panic or a huge allocation. The bytes are
//! secret (signing key, epoch secrets, HPKE private keys): the SDK encrypts them at rest, and
//! the buffer is `Zeroizing`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use ward_proto::{ConversationId, DeviceCredential, DeviceId};
use zeroize::Zeroizing;

use crate::{CoreError, TrustAnchor};

const MAGIC: &[u8; 8] = b"WARDCORE";
/// Current format version; bump it and keep a decoder for the old one when the layout changes.
pub(crate) const FORMAT_VERSION: u16 = 1;

/// Everything of a client that is not key material or openmls storage.
#[derive(Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) credential: DeviceCredential,
    pub(crate) trust: TrustAnchor,
    pub(crate) revoked: Vec<DeviceId>,
    pub(crate) groups: Vec<GroupMeta>,
}

/// What ward-core records per group beside openmls' own state.
#[derive(Serialize, Deserialize)]
pub(crate) struct GroupMeta {
    pub(crate) conversation: ConversationId,
    /// The ciphersuite code point the group was created or joined with.
    pub(crate) ciphersuite: u16,
}

/// A decoded state.
pub(crate) struct Decoded {
    pub(crate) secret_key: Zeroizing<[u8; 32]>,
    pub(crate) meta: Meta,
    pub(crate) values: HashMap<Vec<u8>, Vec<u8>>,
}

pub(crate) fn encode(
    secret_key: &[u8; 32],
    meta: &Meta,
    values: &HashMap<Vec<u8>, Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    let meta_json = serde_json::to_vec(meta)
        .map_err(|e| CoreError::Internal(format!("cannot encode client metadata: {e}")))?;
    let entries_len: usize = values.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    // Allocate once, exactly: a growing Vec would leave unzeroized copies of secrets behind.
    let total = MAGIC.len() + 2 + 32 + 4 + meta_json.len() + 8 + entries_len;
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(secret_key);
    out.extend_from_slice(&len_u32(meta_json.len())?.to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(&(values.len() as u64).to_be_bytes());
    // Sorted, so equal states give equal bytes.
    let mut keys: Vec<&Vec<u8>> = values.keys().collect();
    keys.sort();
    for key in keys {
        let value = &values[key];
        out.extend_from_slice(&len_u32(key.len())?.to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&len_u32(value.len())?.to_be_bytes());
        out.extend_from_slice(value);
    }
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, CoreError> {
    let mut r = Reader { rest: bytes };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(invalid("not a Ward client state (bad magic)"));
    }
    let version = u16::from_be_bytes(r.array()?);
    if version != FORMAT_VERSION {
        return Err(invalid(&format!(
            "client state format version {version} is not supported (expected {FORMAT_VERSION})"
        )));
    }
    let mut secret_key = Zeroizing::new([0u8; 32]);
    secret_key.copy_from_slice(r.take(32)?);
    let meta_len = u32::from_be_bytes(r.array()?) as usize;
    let meta: Meta = serde_json::from_slice(r.take(meta_len)?)
        .map_err(|e| invalid(&format!("client metadata: {e}")))?;
    let count = u64::from_be_bytes(r.array()?);
    // Each entry takes at least 8 bytes: a larger count is a lie, refuse before allocating.
    if count > (r.rest.len() / 8) as u64 {
        return Err(invalid("storage entry count exceeds the input"));
    }
    let mut values = HashMap::with_capacity(count as usize);
    for _ in 0..count {
        let klen = u32::from_be_bytes(r.array()?) as usize;
        let key = r.take(klen)?.to_vec();
        let vlen = u32::from_be_bytes(r.array()?) as usize;
        let value = r.take(vlen)?.to_vec();
        if values.insert(key, value).is_some() {
            return Err(invalid("duplicate storage key"));
        }
    }
    if !r.rest.is_empty() {
        return Err(invalid("trailing bytes after the client state"));
    }
    Ok(Decoded {
        secret_key,
        meta,
        values,
    })
}

fn len_u32(len: usize) -> Result<u32, CoreError> {
    u32::try_from(len).map_err(|_| CoreError::Internal("state entry larger than 4 GiB".into()))
}

fn invalid(what: &str) -> CoreError {
    CoreError::InvalidInput(format!("client state: {what}"))
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CoreError> {
        if n > self.rest.len() {
            return Err(invalid("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_after_a_valid_header(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
            bytes.extend_from_slice(&tail);
            let _ = decode(&bytes);
        }
    }
}
