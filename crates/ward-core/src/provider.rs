//! The openmls provider of a [`Client`](crate::Client): libcrux crypto and randomness, and an
//! in-memory key→value store that [`Client::to_bytes`](crate::Client::to_bytes) serialises
//! whole.
//!
//! openmls trusts its storage completely and its storage trait is synchronous, so the store is
//! a plain map in memory; durability and encryption at rest are the SDK's job (it encrypts the
//! bytes of `to_bytes`). Values removed by ward-core itself are zeroized, and the whole map is
//! zeroized when the provider is dropped.

use std::collections::HashMap;
use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use openmls_libcrux_crypto::CryptoProvider;
use openmls_memory_storage::MemoryStorage;
use openmls_traits::OpenMlsProvider;
use zeroize::Zeroize;

use crate::CoreError;

/// The key→value map inside openmls' `MemoryStorage`.
pub(crate) type StorageMap = HashMap<Vec<u8>, Vec<u8>>;

/// libcrux crypto + in-memory storage.
pub(crate) struct WardProvider {
    crypto: CryptoProvider,
    storage: MemoryStorage,
}

impl WardProvider {
    pub(crate) fn new() -> Result<Self, CoreError> {
        Self::with_values(HashMap::new())
    }

    /// A provider whose storage starts with the given entries.
    pub(crate) fn with_values(values: StorageMap) -> Result<Self, CoreError> {
        let crypto = CryptoProvider::new()
            .map_err(|e| CoreError::Internal(format!("libcrux provider unavailable: {e:?}")))?;
        let storage = MemoryStorage::default();
        *storage
            .values
            .write()
            .map_err(|_| CoreError::Storage("storage lock poisoned".into()))? = values;
        Ok(WardProvider { crypto, storage })
    }

    pub(crate) fn values(&self) -> Result<RwLockReadGuard<'_, StorageMap>, CoreError> {
        self.storage
            .values
            .read()
            .map_err(|_| CoreError::Storage("storage lock poisoned".into()))
    }

    pub(crate) fn values_mut(&self) -> Result<RwLockWriteGuard<'_, StorageMap>, CoreError> {
        self.storage
            .values
            .write()
            .map_err(|_| CoreError::Storage("storage lock poisoned".into()))
    }

    /// Removes, and zeroizes, every entry whose key contains `needle`. Returns how many.
    pub(crate) fn purge_keys_containing(&self, needle: &[u8]) -> Result<usize, CoreError> {
        if needle.is_empty() {
            return Ok(0);
        }
        let mut values = self.values_mut()?;
        let doomed: Vec<Vec<u8>> = values
            .keys()
            .filter(|k| k.windows(needle.len()).any(|w| w == needle))
            .cloned()
            .collect();
        for key in &doomed {
            if let Some(mut value) = values.remove(key) {
                value.zeroize();
            }
        }
        Ok(doomed.len())
    }
}

impl OpenMlsProvider for WardProvider {
    type CryptoProvider = CryptoProvider;
    type RandProvider = CryptoProvider;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

impl Drop for WardProvider {
    fn drop(&mut self) {
        let mut values = match self.storage.values.write() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (mut k, mut v) in values.drain() {
            k.zeroize();
            v.zeroize();
        }
    }
}
