//! Streaming encryption and decryption of one attachment: the `aead` crate's STREAM
//! construction (`EncryptorBE32`/`DecryptorBE32`) over ChaCha20-Poly1305, one chunk in memory.

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    AttachmentDescriptor, AttachmentError, AttachmentKey, CHUNK_AAD, MAX_ATTACHMENT_BYTES,
    MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, NONCE_PREFIX_BYTES, TAG_BYTES, ciphertext_len,
};

/// The result of encrypting one file: what goes into its [`AttachmentDescriptor`].
#[derive(Clone, Debug)]
pub struct EncryptedBlob {
    /// The per-file key.
    pub key: AttachmentKey,
    /// The STREAM nonce prefix.
    pub nonce: [u8; NONCE_PREFIX_BYTES],
    /// Plaintext chunk size.
    pub chunk_size: u32,
    /// Plaintext bytes encrypted.
    pub size: u64,
    /// Ciphertext bytes produced.
    pub ciphertext_len: u64,
    /// SHA-256 of the whole ciphertext.
    pub ciphertext_sha256: [u8; 32],
}

/// Encrypts one file as it is read, a chunk at a time.
///
/// Feed plaintext with [`push`](Self::push) in pieces of any size; complete ciphertext chunks
/// are appended to `out` as soon as they are known not to be the last one. [`finish`](Self::finish)
/// seals the last (possibly empty) chunk. The encryptor holds at most one chunk.
pub struct Encryptor {
    stream: Option<EncryptorBE32<ChaCha20Poly1305>>,
    key: AttachmentKey,
    nonce: [u8; NONCE_PREFIX_BYTES],
    chunk_size: u32,
    buf: Vec<u8>,
    hasher: Sha256,
    size: u64,
    ciphertext_len: u64,
}

impl Encryptor {
    /// A new encryptor with a fresh random key and nonce prefix.
    pub fn new(
        rng: &mut (impl rand::CryptoRng + rand::RngCore),
        chunk_size: u32,
    ) -> Result<Self, AttachmentError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(AttachmentError::ChunkSize(chunk_size));
        }
        let key = AttachmentKey::generate(rng);
        let mut nonce = [0u8; NONCE_PREFIX_BYTES];
        rng.fill_bytes(&mut nonce);
        let aead = ChaCha20Poly1305::new(key.as_bytes().into());
        Ok(Encryptor {
            stream: Some(EncryptorBE32::from_aead(aead, (&nonce).into())),
            key,
            nonce,
            chunk_size,
            buf: Vec::with_capacity(chunk_size as usize + TAG_BYTES),
            hasher: Sha256::new(),
            size: 0,
            ciphertext_len: 0,
        })
    }

    /// Encrypts `data`, appending every finished ciphertext chunk to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        let chunk = self.chunk_size as usize;
        let total = self.size.saturating_add(data.len() as u64);
        if total > MAX_ATTACHMENT_BYTES {
            return Err(AttachmentError::TooLarge {
                size: total,
                max: MAX_ATTACHMENT_BYTES,
            });
        }
        while !data.is_empty() {
            if self.buf.len() == chunk {
                // A full chunk and more data behind it: it is not the last one.
                let stream = self
                    .stream
                    .as_mut()
                    .expect("present until finish, which consumes the encryptor");
                // Fails only on counter overflow, which the size limit above excludes.
                stream
                    .encrypt_next_in_place(CHUNK_AAD, &mut self.buf)
                    .map_err(|_| AttachmentError::TooLarge {
                        size: total,
                        max: MAX_ATTACHMENT_BYTES,
                    })?;
                self.emit(out);
            }
            let take = (chunk - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            self.size += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    /// Seals the last chunk into `out` and returns what the descriptor needs.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<EncryptedBlob, AttachmentError> {
        let chunk = self.chunk_index();
        let stream = self
            .stream
            .take()
            .ok_or(AttachmentError::Corrupt { chunk })?;
        stream
            .encrypt_last_in_place(CHUNK_AAD, &mut self.buf)
            .map_err(|_| AttachmentError::Corrupt { chunk })?;
        self.emit(out);
        Ok(EncryptedBlob {
            key: self.key.clone(),
            nonce: self.nonce,
            chunk_size: self.chunk_size,
            size: self.size,
            ciphertext_len: self.ciphertext_len,
            ciphertext_sha256: self.hasher.clone().finalize().into(),
        })
    }

    fn emit(&mut self, out: &mut Vec<u8>) {
        self.hasher.update(&self.buf);
        self.ciphertext_len += self.buf.len() as u64;
        out.extend_from_slice(&self.buf);
        self.buf.clear();
    }

    fn chunk_index(&self) -> u64 {
        self.ciphertext_len / (u64::from(self.chunk_size) + TAG_BYTES as u64)
    }
}

impl Drop for Encryptor {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.buf.zeroize();
    }
}

/// Decrypts one attachment's ciphertext as it arrives, a chunk at a time, and checks it
/// against its descriptor.
///
/// Feed ciphertext with [`push`](Self::push) in pieces of any size; authenticated plaintext is
/// appended to `out` chunk by chunk. [`finish`](Self::finish) checks the last chunk, the
/// length and the ciphertext hash. Until `finish` returns `Ok`, the plaintext written so far
/// must be treated as incomplete (write to a temporary file; delete it on error).
pub struct Decryptor {
    stream: Option<DecryptorBE32<ChaCha20Poly1305>>,
    ct_chunk: usize,
    buf: Vec<u8>,
    hasher: Sha256,
    expected_len: u64,
    expected_size: u64,
    expected_hash: [u8; 32],
    received: u64,
    chunk: u64,
}

impl Decryptor {
    /// A decryptor for the attachment `descriptor` describes (validated first).
    pub fn new(descriptor: &AttachmentDescriptor) -> Result<Self, AttachmentError> {
        descriptor.validate()?;
        let nonce: [u8; NONCE_PREFIX_BYTES] =
            descriptor.nonce.as_slice().try_into().map_err(|_| {
                AttachmentError::InvalidDescriptor {
                    field: "nonce",
                    reason: "must be 7 bytes",
                }
            })?;
        let aead = ChaCha20Poly1305::new(descriptor.key.as_bytes().into());
        let ct_chunk = descriptor.chunk_size as usize + TAG_BYTES;
        Ok(Decryptor {
            stream: Some(DecryptorBE32::from_aead(aead, (&nonce).into())),
            ct_chunk,
            buf: Vec::with_capacity(ct_chunk),
            hasher: Sha256::new(),
            expected_len: ciphertext_len(descriptor.size, descriptor.chunk_size),
            expected_size: descriptor.size,
            expected_hash: descriptor.ciphertext_sha256_bytes()?,
            received: 0,
            chunk: 0,
        })
    }

    /// Ciphertext bytes accepted so far (where a resumed download continues).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Decrypts `data`, appending every authenticated plaintext chunk to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        if self.received + data.len() as u64 > self.expected_len {
            return Err(AttachmentError::TrailingData {
                expected: self.expected_len,
            });
        }
        while !data.is_empty() {
            if self.buf.len() == self.ct_chunk {
                let chunk = self.chunk;
                let stream = self
                    .stream
                    .as_mut()
                    .ok_or(AttachmentError::Corrupt { chunk })?;
                self.hasher.update(&self.buf);
                stream
                    .decrypt_next_in_place(CHUNK_AAD, &mut self.buf)
                    .map_err(|_| AttachmentError::Corrupt { chunk })?;
                out.extend_from_slice(&self.buf);
                self.buf.clear();
                self.chunk += 1;
            }
            let take = (self.ct_chunk - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            self.received += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    /// Checks and decrypts the last chunk into `out`, then the total length and the
    /// ciphertext's SHA-256 (compared in constant time).
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        if self.received < self.expected_len {
            return Err(AttachmentError::Truncated {
                got: self.received,
                expected: self.expected_len,
            });
        }
        let chunk = self.chunk;
        let stream = self
            .stream
            .take()
            .ok_or(AttachmentError::Corrupt { chunk })?;
        self.hasher.update(&self.buf);
        let hash: [u8; 32] = self.hasher.clone().finalize().into();
        if !bool::from(hash.ct_eq(&self.expected_hash)) {
            return Err(AttachmentError::HashMismatch);
        }
        stream
            .decrypt_last_in_place(CHUNK_AAD, &mut self.buf)
            .map_err(|_| AttachmentError::Corrupt { chunk })?;
        let total = self.chunk * (self.ct_chunk - TAG_BYTES) as u64 + self.buf.len() as u64;
        if total != self.expected_size {
            // Cannot happen when the length matched; kept as a guard.
            return Err(AttachmentError::Truncated {
                got: total,
                expected: self.expected_size,
            });
        }
        out.extend_from_slice(&self.buf);
        Ok(())
    }
}

impl Drop for Decryptor {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.buf.zeroize();
    }
}
