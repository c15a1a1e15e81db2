//! Server secrets at rest.
//!
//! A [`MasterKey`] (a local file or the `WARD_MASTER_KEY` environment variable) seals every
//! secret the server keeps elsewhere: the signing keys in the database ([`ServerKeys`]) and
//! the TLS private keys on disk. Sealing is XChaCha20-Poly1305 with a random nonce and a
//! purpose label as associated data, so a database dump alone reveals no key and a sealed
//! blob stored for one purpose cannot be swapped in for another.

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;

use anyhow::{Context, bail};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::SigningKey;
use rand::RngCore;
use rand::rngs::OsRng;
use ward_store::OrgStore;
use zeroize::Zeroizing;

/// Length of a master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// First byte of every sealed blob; bump when the format changes.
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Database secret name (and seal label) of the organisation CA signing key.
pub const ORG_CA_KEY_NAME: &str = "org_ca_signing_key";
/// Database secret name (and seal label) of the audit checkpoint signing key.
pub const AUDIT_KEY_NAME: &str = "audit_signing_key";
/// Database secret name (and seal label) of the MLS external sender signing key.
pub const EXTERNAL_SENDER_KEY_NAME: &str = "external_sender_signing_key";

/// The 32-byte key that seals all other server secrets. Zeroized on drop; `Debug` never
/// prints it.
///
/// On disk it is stored as 64 hex characters (an optional trailing newline is allowed), in
/// a file only the server's user may read (mode 0600).
pub struct MasterKey {
    key: Zeroizing<[u8; MASTER_KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh key from OS randomness.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        OsRng.fill_bytes(key.as_mut_slice());
        Self { key }
    }

    /// Parse 64 hex characters (surrounding whitespace ignored), e.g. from the
    /// `WARD_MASTER_KEY` environment variable. Errors never echo the input.
    pub fn from_hex(hex_key: &str) -> anyhow::Result<Self> {
        let hex_key = hex_key.trim();
        if hex_key.len() != MASTER_KEY_LEN * 2 {
            bail!(
                "master key must be {} hex characters, got {}",
                MASTER_KEY_LEN * 2,
                hex_key.len()
            );
        }
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        // The hex crate's error names the offending character; do not pass it on.
        if hex::decode_to_slice(hex_key, key.as_mut_slice()).is_err() {
            bail!("master key is not valid hex");
        }
        Ok(Self { key })
    }

    /// Read the key file at `path` (64 hex characters), or create it with a fresh random
    /// key (mode 0600, parent directories created) if it does not exist.
    ///
    /// Refuses a file that does not hold exactly one key; warns if the file is readable
    /// by group or others.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                warn_if_exposed(path);
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    anyhow::anyhow!(
                        "master key file {} is not text (expected {} hex characters)",
                        path.display(),
                        MASTER_KEY_LEN * 2
                    )
                })?;
                Self::from_hex(text)
                    .with_context(|| format!("invalid master key file {}", path.display()))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Self::create(path),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read master key file {}", path.display()))
            }
        }
    }

    fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        let key = Self::generate();
        let mut text = Zeroizing::new(hex::encode(key.key.as_slice()));
        text.push('\n');
        match write_new_private_file(path, text.as_bytes()) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created a new master key");
                Ok(key)
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::load_or_create(path),
            Err(e) => {
                Err(e).with_context(|| format!("cannot create master key file {}", path.display()))
            }
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.as_slice().into())
    }

    /// Encrypt `plaintext` for storage under the purpose `label`.
    ///
    /// Layout: version byte, 24-byte random nonce, ciphertext with 16-byte tag. The version
    /// byte and `label` are authenticated as associated data.
    pub fn seal(&self, label: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(SEAL_VERSION, label);
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // The AEAD only fails for plaintexts beyond ~256 GiB, never for our secrets.
            .expect("XChaCha20-Poly1305 encryption of a bounded plaintext");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypt a blob made by [`seal`](Self::seal) with the same key and `label`.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Truncated)?;
        if version != SEAL_VERSION {
            return Err(SealError::UnknownVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Truncated);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = associated_data(version, label);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::WrongKeyOrTampered)
    }
}

fn associated_data(version: u8, label: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + label.len());
    aad.push(version);
    aad.extend_from_slice(label.as_bytes());
    aad
}

/// Why a sealed blob could not be opened. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Shorter than version byte, nonce and tag.
    #[error("sealed data is truncated")]
    Truncated,
    /// Authentication failed: another master key, another label, or modified data.
    #[error("sealed data cannot be opened: wrong key, wrong purpose or tampered")]
    WrongKeyOrTampered,
    /// Made by an unknown (newer?) format version.
    #[error("sealed data has unknown format version {0}")]
    UnknownVersion(u8),
}

/// The server's long-lived Ed25519 signing keys, stored sealed in the database.
/// `Debug` prints only public keys.
pub struct ServerKeys {
    /// Signs device and user credentials (the organisation CA).
    pub org_ca: SigningKey,
    /// Signs audit log checkpoints.
    pub audit: SigningKey,
    /// The MLS external sender used for server-initiated proposals.
    pub external_sender: SigningKey,
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public = |k: &SigningKey| hex::encode(k.verifying_key().as_bytes());
        f.debug_struct("ServerKeys")
            .field(
                "org_ca",
                &format_args!("<secret, public {}>", public(&self.org_ca)),
            )
            .field(
                "audit",
                &format_args!("<secret, public {}>", public(&self.audit)),
            )
            .field(
                "external_sender",
                &format_args!("<secret, public {}>", public(&self.external_sender)),
            )
            .finish()
    }
}

impl ServerKeys {
    /// Load the signing keys from the store, generating and storing any that are missing.
    ///
    /// Uses `put_secret_if_absent` and opens whatever is stored, so several nodes starting
    /// at once against one database end up with the same keys.
    pub async fn load_or_create(
        store: &dyn ward_store::Store,
        master: &MasterKey,
    ) -> anyhow::Result<Self> {
        load_keys(store, master).await
    }
}

// Generic so tests can use a store implementing only `OrgStore`.
async fn load_keys<S: OrgStore + Sync + ?Sized>(
    store: &S,
    master: &MasterKey,
) -> anyhow::Result<ServerKeys> {
    Ok(ServerKeys {
        org_ca: load_signing_key(store, master, ORG_CA_KEY_NAME).await?,
        audit: load_signing_key(store, master, AUDIT_KEY_NAME).await?,
        external_sender: load_signing_key(store, master, EXTERNAL_SENDER_KEY_NAME).await?,
    })
}

async fn load_signing_key<S: OrgStore + Sync + ?Sized>(
    store: &S,
    master: &MasterKey,
    name: &str,
) -> anyhow::Result<SigningKey> {
    let existing = store
        .secret(name)
        .await
        .with_context(|| format!("cannot read secret {name} from the database"))?;
    let sealed = match existing {
        Some(sealed) => sealed,
        None => {
            let fresh = SigningKey::generate(&mut OsRng);
            let secret = Zeroizing::new(fresh.to_bytes());
            let sealed = master.seal(name, secret.as_slice());
            let stored = store
                .put_secret_if_absent(name, &sealed)
                .await
                .with_context(|| format!("cannot store secret {name} in the database"))?;
            if stored == sealed {
                tracing::info!(secret = name, "generated a new server signing key");
            }
            stored
        }
    };
    let opened = master.open(name, &sealed).map_err(|e| match e {
        SealError::WrongKeyOrTampered => anyhow::anyhow!(
            "the master key does not match this database: cannot open secret {name} \
             (wrong master key, or the stored secret was modified)"
        ),
        other => anyhow::Error::new(other).context(format!(
            "stored secret {name} is corrupt or from a newer Ward"
        )),
    })?;
    let bytes: &[u8; 32] = opened.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "stored secret {name} has length {} (expected 32)",
            opened.len()
        )
    })?;
    Ok(SigningKey::from_bytes(bytes))
}

/// Create `dir` (and parents) if missing; new directories get mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Create a new file (failing if it exists) with mode 0600 and write `contents` durably.
fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if written.is_err() {
        // Do not leave a half-written key behind for the next start to trip over.
        let _ = fs::remove_file(path);
    }
    written
}

/// Atomically replace `path` with `contents` (temp file + rename), mode 0600 if `private`,
/// else 0644.
pub(crate) fn write_file_atomic(path: &Path, contents: &[u8], private: bool) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(contents).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Warn (do not refuse: some deployments manage permissions themselves) when a secret file
/// is readable by group or others.
pub(crate) fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "secret file is accessible by group or others; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use ward_store::{OrgPolicy, Organisation, StoreResult};

    #[test]
    fn seal_open_round_trip() {
        let key = MasterKey::generate();
        let sealed = key.seal("purpose", b"secret bytes");
        assert_eq!(
            sealed.len(),
            1 + NONCE_LEN + b"secret bytes".len() + TAG_LEN
        );
        assert_eq!(
            key.open("purpose", &sealed).unwrap().as_slice(),
            b"secret bytes"
        );
        // Fresh nonce each time.
        assert_ne!(sealed, key.seal("purpose", b"secret bytes"));
        // Empty plaintext works too.
        let empty = key.seal("purpose", b"");
        assert!(key.open("purpose", &empty).unwrap().is_empty());
    }

    #[test]
    fn tampering_is_detected() {
        let key = MasterKey::generate();
        let sealed = key.seal("purpose", b"secret bytes");
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                key.open("purpose", &bad),
                Err(SealError::WrongKeyOrTampered),
                "byte {i}"
            );
        }
        let mut bad = sealed.clone();
        bad[0] = 2;
        assert_eq!(key.open("purpose", &bad), Err(SealError::UnknownVersion(2)));
        let mut longer = sealed;
        longer.push(0);
        assert_eq!(
            key.open("purpose", &longer),
            Err(SealError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn label_mismatch_fails() {
        let key = MasterKey::generate();
        let sealed = key.seal("audit_signing_key", b"k");
        assert_eq!(
            key.open("org_ca_signing_key", &sealed),
            Err(SealError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = MasterKey::generate().seal("purpose", b"k");
        assert_eq!(
            MasterKey::generate().open("purpose", &sealed),
            Err(SealError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn truncated_input_fails() {
        let key = MasterKey::generate();
        let sealed = key.seal("purpose", b"");
        assert_eq!(key.open("purpose", &[]), Err(SealError::Truncated));
        for len in 1..sealed.len() {
            assert_eq!(
                key.open("purpose", &sealed[..len]),
                Err(SealError::Truncated)
            );
        }
    }

    #[test]
    fn from_hex_validates_without_echoing() {
        let hex_key = "ab".repeat(32);
        let a = MasterKey::from_hex(&format!(" {hex_key}\n")).unwrap();
        let b = MasterKey::from_hex(&hex_key.to_uppercase()).unwrap();
        assert_eq!(*a.key, *b.key);
        let short = MasterKey::from_hex("abcd").unwrap_err().to_string();
        assert!(short.contains("64 hex characters"), "{short}");
        let bad = format!("{}zz", "ab".repeat(31));
        let msg = format!("{:#}", MasterKey::from_hex(&bad).unwrap_err());
        assert!(!msg.contains("zz") && !msg.contains('z'), "{msg}");
        assert_eq!(format!("{a:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn master_key_file_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/master.key");
        let created = MasterKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        let reloaded = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(*created.key, *reloaded.key);
        let sealed = created.seal("x", b"y");
        assert_eq!(reloaded.open("x", &sealed).unwrap().as_slice(), b"y");
    }

    #[test]
    fn master_key_file_of_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "abcdef\n").unwrap();
        let err = format!("{:#}", MasterKey::load_or_create(&path).unwrap_err());
        assert!(
            err.contains("master.key") && err.contains("64 hex"),
            "{err}"
        );
        fs::write(&path, [0u8; 32]).unwrap();
        assert!(MasterKey::load_or_create(&path).is_err());
    }

    /// Just enough of a store for the secrets. With `blind_reads`, `secret` always answers
    /// `None`, as when two nodes both read before either writes.
    #[derive(Default)]
    struct SecretsOnly(Mutex<HashMap<String, Vec<u8>>>, bool);

    #[async_trait]
    impl OrgStore for SecretsOnly {
        async fn organisation(&self) -> StoreResult<Option<Organisation>> {
            panic!("the SecretsOnly test double implements only the secret store")
        }
        async fn init_organisation(&self, _org: &Organisation) -> StoreResult<Organisation> {
            panic!("the SecretsOnly test double implements only the secret store")
        }
        async fn set_policy(&self, _policy: &OrgPolicy) -> StoreResult<()> {
            panic!("the SecretsOnly test double implements only the secret store")
        }
        async fn secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
            if self.1 {
                return Ok(None);
            }
            Ok(self.0.lock().unwrap().get(name).cloned())
        }
        async fn put_secret_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .entry(name.to_owned())
                .or_insert_with(|| value.to_vec())
                .clone())
        }
    }

    /// Compile-time check: the future can be spawned onto a multi-threaded runtime.
    #[allow(dead_code)]
    fn load_or_create_future_is_send(store: &dyn ward_store::Store, master: &MasterKey) {
        fn is_send<T: Send>(_: T) {}
        is_send(ServerKeys::load_or_create(store, master));
    }

    #[tokio::test]
    async fn server_keys_created_once_and_reloaded() {
        let store = SecretsOnly::default();
        let master = MasterKey::generate();
        let first = load_keys(&store, &master).await.unwrap();
        let second = load_keys(&store, &master).await.unwrap();
        assert_eq!(first.org_ca.to_bytes(), second.org_ca.to_bytes());
        assert_eq!(first.audit.to_bytes(), second.audit.to_bytes());
        assert_eq!(
            first.external_sender.to_bytes(),
            second.external_sender.to_bytes()
        );
        assert_ne!(first.org_ca.to_bytes(), first.audit.to_bytes());
        assert_ne!(first.audit.to_bytes(), first.external_sender.to_bytes());
        assert_eq!(store.0.lock().unwrap().len(), 3);
        let debug = format!("{first:?}");
        assert!(
            !debug.contains(&hex::encode(first.org_ca.to_bytes())),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn server_keys_concurrent_first_start_agree() {
        let store = SecretsOnly(Mutex::default(), true);
        let master = MasterKey::generate();
        let (a, b) = tokio::join!(load_keys(&store, &master), load_keys(&store, &master));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.org_ca.to_bytes(), b.org_ca.to_bytes());
        assert_eq!(a.audit.to_bytes(), b.audit.to_bytes());
        assert_eq!(a.external_sender.to_bytes(), b.external_sender.to_bytes());
    }

    #[tokio::test]
    async fn server_keys_with_wrong_master_key_fail_clearly() {
        let store = SecretsOnly::default();
        load_keys(&store, &MasterKey::generate()).await.unwrap();
        let err = load_keys(&store, &MasterKey::generate()).await.unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("the master key does not match this database"),
            "{msg}"
        );
    }
}
