//! TLS, on by default: a local CA and server certificate created on first start (or
//! operator-provided PEM files), served with rustls on aws-lc-rs with the post-quantum
//! hybrid key exchange X25519MLKEM768 preferred.
//!
//! Files in the TLS directory:
//! - `ca.pem`, `server.pem`: certificates (public, mode 0644);
//! - `ca.key.sealed`, `server.key.sealed`: PKCS#8 private keys sealed with the
//!   [`MasterKey`] (labels `tls-ca-key` / `tls-server-key`, mode 0600).
//!
//! Clients trust `ca.pem` (or check its fingerprint). The CA lives ten years; the server
//! certificate 825 days and is re-issued from the stored CA when it lacks a requested
//! hostname, expires within 30 days, or does not match the CA or its key.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration as StdDuration, SystemTime};

use anyhow::{Context, bail};
use rand::RngCore;
use rand::rngs::OsRng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use rustls::ServerConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::keys::{MasterKey, create_private_dir, warn_if_exposed, write_file_atomic};

/// File name of the local CA certificate.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the sealed local CA private key.
pub const CA_KEY_FILE: &str = "ca.key.sealed";
/// File name of the server certificate.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the sealed server private key.
pub const SERVER_KEY_FILE: &str = "server.key.sealed";
/// Seal label of the CA private key.
pub const CA_KEY_LABEL: &str = "tls-ca-key";
/// Seal label of the server private key.
pub const SERVER_KEY_LABEL: &str = "tls-server-key";

const CA_VALIDITY: Duration = Duration::days(3650);
const SERVER_VALIDITY: Duration = Duration::days(825);
/// Re-issue the server certificate when it expires sooner than this.
const RENEW_BEFORE: Duration = Duration::days(30);
/// Backdating tolerates clients whose clocks are slightly behind.
const BACKDATE: Duration = Duration::hours(1);
const ALWAYS_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A ready server TLS configuration plus what clients need to trust it.
pub struct TlsMaterial {
    /// rustls server configuration (aws-lc-rs, TLS 1.2/1.3, ALPN h2 + http/1.1).
    pub server_config: Arc<ServerConfig>,
    /// The local CA certificate, PEM, for clients to trust.
    pub ca_pem: String,
    /// SHA-256 of the CA certificate DER as colon-separated upper-case hex.
    pub ca_fingerprint: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish_non_exhaustive()
    }
}

/// The crypto provider for every TLS config Ward builds: aws-lc-rs with its default
/// (post-quantum first) key exchange groups. Passed explicitly so that no process-wide
/// default provider is ever relied on.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// SHA-256 of a certificate's DER, as `AB:CD:…` (the form browsers and `openssl x509
/// -fingerprint -sha256` print).
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = Sha256::digest(cert_der);
    let hex = hex::encode_upper(digest);
    let mut out = String::with_capacity(hex.len() / 2 * 3);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.extend(pair.iter().map(|&b| char::from(b)));
    }
    out
}

/// Load the local CA and server certificate from `tls_dir`, creating them on first run
/// and re-issuing the server certificate when needed (see the module docs).
///
/// `hostnames` are DNS names or IP addresses added to `localhost`, `127.0.0.1` and `::1`.
pub fn load_or_create(
    tls_dir: &Path,
    master: &MasterKey,
    hostnames: &[String],
) -> anyhow::Result<TlsMaterial> {
    let names = requested_names(hostnames)?;
    create_private_dir(tls_dir)?;
    let ca = load_or_create_ca(tls_dir, master, &names)?;
    let (leaf, key) = load_or_issue_server_cert(tls_dir, master, &ca, &names)?;
    let server_config = build_server_config(vec![leaf], key)
        .with_context(|| format!("cannot use the server certificate in {}", tls_dir.display()))?;
    Ok(TlsMaterial {
        server_config,
        ca_pem: ca.pem,
        ca_fingerprint: fingerprint(&ca.der),
    })
}

/// A server config from operator-provided PEM files: `cert` holds the chain (leaf first),
/// `key` the private key (PKCS#8, PKCS#1 or SEC1).
pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read TLS certificate file {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in TLS certificate file {}", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "no CERTIFICATE found in TLS certificate file {}",
            cert.display()
        );
    }
    warn_if_exposed(key);
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    build_server_config(chain, key_der).with_context(|| {
        format!(
            "TLS certificate {} and key {} are not usable together",
            cert.display(),
            key.display()
        )
    })
}

fn build_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("invalid certificate or private key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A subject alternative name the server certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SanName {
    Dns(String),
    Ip(IpAddr),
}

impl SanName {
    fn parse(raw: &str) -> anyhow::Result<Self> {
        let s = raw.trim();
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let valid = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid {
            bail!("invalid TLS hostname {raw:?}: expected a DNS name or an IP address");
        }
        Ok(Self::Dns(s.to_ascii_lowercase()))
    }

    fn as_string(&self) -> String {
        match self {
            Self::Dns(d) => d.clone(),
            Self::Ip(ip) => ip.to_string(),
        }
    }
}

fn requested_names(hostnames: &[String]) -> anyhow::Result<Vec<SanName>> {
    let mut names = vec![
        SanName::Dns(ALWAYS_NAMES[0].to_owned()),
        SanName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    for h in hostnames {
        let name = SanName::parse(h)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The local CA: certificate plus an rcgen issuer able to sign with its key.
struct LocalCa {
    der: CertificateDer<'static>,
    pem: String,
    subject_raw: Vec<u8>,
    issuer: rcgen::Certificate,
    key: KeyPair,
}

fn random_serial() -> SerialNumber {
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    // Positive and 16 bytes long when DER-encoded.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&serial)
}

fn ca_params(dn: DistinguishedName, not_before: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_before + CA_VALIDITY;
    params
}

fn load_or_create_ca(dir: &Path, master: &MasterKey, names: &[SanName]) -> anyhow::Result<LocalCa> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => load_ca(&cert_path, &key_path, master),
        (false, false) => create_ca(&cert_path, &key_path, master, names),
        (has_cert, _) => {
            let (present, missing) = if has_cert {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            bail!(
                "{} exists but {} is missing; restore it, or delete both to create a new \
                 local CA (clients will then have to trust the new {CA_CERT_FILE})",
                present.display(),
                missing.display()
            )
        }
    }
}

fn create_ca(
    cert_path: &Path,
    key_path: &Path,
    master: &MasterKey,
    names: &[SanName],
) -> anyhow::Result<LocalCa> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the CA key")?;
    // Name the CA after the server's main hostname so users can tell CAs apart.
    let main_name = names
        .get(3)
        .map_or_else(|| "localhost".to_owned(), SanName::as_string);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ward");
    dn.push(DnType::CommonName, format!("{main_name} Ward local CA"));
    let mut params = ca_params(dn, OffsetDateTime::now_utc() - BACKDATE);
    params.serial_number = Some(random_serial());
    let cert = params
        .self_signed(&key)
        .context("self-signing the CA certificate")?;
    let pkcs8 = Zeroizing::new(key.serialize_der());
    // Key first: a present ca.pem then implies its key was written.
    write_file_atomic(key_path, &master.seal(CA_KEY_LABEL, &pkcs8), true)?;
    write_file_atomic(cert_path, cert.pem().as_bytes(), false)?;
    tracing::info!(
        path = %cert_path.display(),
        fingerprint = %fingerprint(cert.der()),
        "created a new local TLS CA"
    );
    load_ca(cert_path, key_path, master)
}

fn load_ca(cert_path: &Path, key_path: &Path, master: &MasterKey) -> anyhow::Result<LocalCa> {
    let pem = fs::read_to_string(cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .with_context(|| format!("no certificate in {}", cert_path.display()))?;
    let key = load_sealed_key(key_path, master, CA_KEY_LABEL)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("cannot parse {}: {e}", cert_path.display()))?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        bail!(
            "{} does not belong to the certificate in {}",
            key_path.display(),
            cert_path.display()
        );
    }
    let not_after = parsed.validity().not_after.to_datetime();
    let now = OffsetDateTime::now_utc();
    if not_after <= now {
        bail!(
            "the local CA {} expired on {not_after}; delete {} and {} to create a new one \
             (clients will then have to trust the new {CA_CERT_FILE})",
            cert_path.display(),
            cert_path.display(),
            key_path.display()
        );
    }
    if not_after - now < RENEW_BEFORE {
        tracing::warn!(path = %cert_path.display(), %not_after, "the local TLS CA expires soon");
    }

    // rcgen signs with an issuer `Certificate`; rebuild one with the stored CA's subject
    // name and key (only the name and key identifier end up in issued certificates).
    let subject_raw = parsed.subject().as_raw().to_vec();
    let mut dn = DistinguishedName::new();
    for rdn in parsed.subject().iter() {
        for attr in rdn.iter() {
            let value = attr.as_str().map_err(|_| {
                anyhow::anyhow!("unsupported subject name in {}", cert_path.display())
            })?;
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .with_context(|| format!("unsupported subject name in {}", cert_path.display()))?
                .collect();
            dn.push(DnType::from_oid(&oid), value);
        }
    }
    let issuer = ca_params(dn, now)
        .self_signed(&key)
        .context("rebuilding the CA issuer")?;
    let (_, rebuilt) = x509_parser::parse_x509_certificate(issuer.der())
        .map_err(|e| anyhow::anyhow!("cannot parse the rebuilt CA: {e}"))?;
    if rebuilt.subject().as_raw() != subject_raw.as_slice() {
        bail!(
            "cannot issue certificates from {}: its subject name was not made by Ward",
            cert_path.display()
        );
    }
    Ok(LocalCa {
        der,
        pem,
        subject_raw,
        issuer,
        key,
    })
}

fn load_sealed_key(path: &Path, master: &MasterKey, label: &str) -> anyhow::Result<KeyPair> {
    let sealed = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let pkcs8 = master.open(label, &sealed).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "cannot open {} (was it sealed with another master key?)",
            path.display()
        ))
    })?;
    let der = PrivatePkcs8KeyDer::from(pkcs8.as_slice());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P256_SHA256)
        .with_context(|| format!("{} does not hold a P-256 private key", path.display()))
}

/// The stored server certificate and key if they are still good, else newly issued ones.
fn load_or_issue_server_cert(
    dir: &Path,
    master: &MasterKey,
    ca: &LocalCa,
    names: &[SanName],
) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let cert_path = dir.join(SERVER_CERT_FILE);
    let key_path = dir.join(SERVER_KEY_FILE);
    match load_server_cert(&cert_path, &key_path, master, ca, names) {
        Ok(Some(loaded)) => return Ok(loaded),
        Ok(None) => {}
        Err(reason) => {
            tracing::info!(reason = %format!("{reason:#}"), "re-issuing the TLS server certificate");
        }
    }
    issue_server_cert(&cert_path, &key_path, master, ca, names)
}

/// `Ok(None)` if the files do not exist; `Err(why)` if they must be replaced.
fn load_server_cert(
    cert_path: &Path,
    key_path: &Path,
    master: &MasterKey,
    ca: &LocalCa,
    names: &[SanName],
) -> anyhow::Result<Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>> {
    let pem = match fs::read(cert_path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", cert_path.display())),
    };
    let leaf = CertificateDer::from_pem_slice(&pem)
        .with_context(|| format!("no certificate in {}", cert_path.display()))?;
    let key = load_sealed_key(key_path, master, SERVER_KEY_LABEL)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Key and certificate must match; rustls checks that when building a config.
    build_server_config(vec![leaf.clone()], key_der.clone_key())?;

    // Verify as a client would, 30 days from now: chains to this CA, valid for every
    // requested name, and not expiring before then.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).context("CA certificate")?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .context("building a certificate verifier")?;
    let horizon =
        SystemTime::now() + StdDuration::from_secs(RENEW_BEFORE.whole_seconds().unsigned_abs());
    let at = UnixTime::since_unix_epoch(
        horizon
            .duration_since(SystemTime::UNIX_EPOCH)
            .context("system clock before 1970")?,
    );
    for name in names {
        let server_name = ServerName::try_from(name.as_string())
            .with_context(|| format!("invalid server name {}", name.as_string()))?;
        verifier
            .verify_server_cert(&leaf, &[], &server_name, &[], at)
            .with_context(|| {
                format!(
                    "server certificate not valid for {} in 30 days",
                    name.as_string()
                )
            })?;
    }
    Ok(Some((leaf, key_der)))
}

fn issue_server_cert(
    cert_path: &Path,
    key_path: &Path,
    master: &MasterKey,
    ca: &LocalCa,
    names: &[SanName],
) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the server key")?;
    let san_strings: Vec<String> = names.iter().map(SanName::as_string).collect();
    let mut params =
        CertificateParams::new(san_strings).context("server certificate subject names")?;
    let common_name = names.get(3).unwrap_or(&names[0]).as_string();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + SERVER_VALIDITY;
    let cert = params
        .signed_by(&key, &ca.issuer, &ca.key)
        .context("signing the server certificate")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der())
        .map_err(|e| anyhow::anyhow!("cannot parse the new server certificate: {e}"))?;
    if parsed.issuer().as_raw() != ca.subject_raw.as_slice() {
        bail!("the new server certificate's issuer does not match the local CA");
    }
    let pkcs8 = Zeroizing::new(key.serialize_der());
    write_file_atomic(key_path, &master.seal(SERVER_KEY_LABEL, &pkcs8), true)?;
    write_file_atomic(cert_path, cert.pem().as_bytes(), false)?;
    tracing::info!(
        path = %cert_path.display(),
        names = %names.iter().map(SanName::as_string).collect::<Vec<_>>().join(", "),
        "issued a TLS server certificate"
    );
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()));
    Ok((cert.der().clone(), key_der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConfig, NamedGroup, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn client_config(ca_pem: Option<&str>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        if let Some(pem) = ca_pem {
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
        }
        let mut cfg = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(cfg)
    }

    /// Handshake over an in-memory pipe; returns the client's view on success.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Result<(NamedGroup, Option<Vec<u8>>, Vec<CertificateDer<'static>>), std::io::Error> {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let server_task = tokio::spawn(async move {
            let mut tls = TlsAcceptor::from(server).accept(s).await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(&buf).await?;
            tls.shutdown().await?;
            Ok::<_, std::io::Error>(())
        });
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = TlsConnector::from(client).connect(server_name, c).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        let (_, conn) = tls.get_ref();
        let group = conn.negotiated_key_exchange_group().unwrap().name();
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let certs = conn.peer_certificates().unwrap().to_vec();
        server_task.await.unwrap()?;
        Ok((group, alpn, certs))
    }

    #[test]
    fn provider_prefers_post_quantum_hybrid() {
        let provider = crypto_provider();
        assert_eq!(provider.kx_groups[0].name(), NamedGroup::X25519MLKEM768);
    }

    #[test]
    fn fingerprint_format() {
        let fp = fingerprint(b"abc");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF:"), "{fp}");
    }

    #[tokio::test]
    async fn handshake_uses_x25519mlkem768_and_trusts_local_ca() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let tls = load_or_create(dir.path(), &master, &["ward.example.org".into()]).unwrap();
        assert!(tls.ca_pem.contains("BEGIN CERTIFICATE"));
        for name in ["localhost", "127.0.0.1", "::1", "ward.example.org"] {
            let (group, alpn, certs) = handshake(
                tls.server_config.clone(),
                client_config(Some(&tls.ca_pem)),
                name,
            )
            .await
            .unwrap();
            assert_eq!(group, NamedGroup::X25519MLKEM768);
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
            assert_eq!(certs.len(), 1);
        }
        // Not in the certificate.
        let err = handshake(
            tls.server_config.clone(),
            client_config(Some(&tls.ca_pem)),
            "other.example",
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[tokio::test]
    async fn client_not_trusting_the_ca_fails() {
        let dir = tempfile::tempdir().unwrap();
        let tls = load_or_create(dir.path(), &MasterKey::generate(), &[]).unwrap();
        let err = handshake(tls.server_config.clone(), client_config(None), "localhost")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn reload_keeps_ca_and_server_cert() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let first = load_or_create(dir.path(), &master, &["10.1.2.3".into()]).unwrap();
        assert_eq!(mode(&dir.path().join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(SERVER_KEY_FILE)), 0o600);
        let ca_key = fs::read(dir.path().join(CA_KEY_FILE)).unwrap();
        assert!(!String::from_utf8_lossy(&ca_key).contains("PRIVATE KEY"));
        let server_pem = fs::read(dir.path().join(SERVER_CERT_FILE)).unwrap();

        let second = load_or_create(dir.path(), &master, &["10.1.2.3".into()]).unwrap();
        assert_eq!(first.ca_fingerprint, second.ca_fingerprint);
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(
            server_pem,
            fs::read(dir.path().join(SERVER_CERT_FILE)).unwrap()
        );
        let expected =
            fingerprint(&CertificateDer::from_pem_slice(first.ca_pem.as_bytes()).unwrap());
        assert_eq!(first.ca_fingerprint, expected);
        handshake(
            second.server_config,
            client_config(Some(&second.ca_pem)),
            "10.1.2.3",
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn new_hostname_reissues_server_cert_from_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let first = load_or_create(dir.path(), &master, &[]).unwrap();
        let server_pem = fs::read(dir.path().join(SERVER_CERT_FILE)).unwrap();
        let second = load_or_create(dir.path(), &master, &["chat.example.org".into()]).unwrap();
        assert_eq!(first.ca_fingerprint, second.ca_fingerprint);
        assert_ne!(
            server_pem,
            fs::read(dir.path().join(SERVER_CERT_FILE)).unwrap()
        );
        // The re-issued certificate chains to the original CA.
        handshake(
            second.server_config,
            client_config(Some(&first.ca_pem)),
            "chat.example.org",
        )
        .await
        .unwrap();
    }

    #[test]
    fn expiring_server_cert_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        load_or_create(dir.path(), &master, &[]).unwrap();
        let names = requested_names(&[]).unwrap();
        let ca = load_ca(
            &dir.path().join(CA_CERT_FILE),
            &dir.path().join(CA_KEY_FILE),
            &master,
        )
        .unwrap();
        // Replace the server certificate with one expiring in 10 days.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(10);
        let short = params.signed_by(&key, &ca.issuer, &ca.key).unwrap();
        fs::write(dir.path().join(SERVER_CERT_FILE), short.pem()).unwrap();
        let sealed = master.seal(SERVER_KEY_LABEL, &key.serialize_der());
        fs::write(dir.path().join(SERVER_KEY_FILE), sealed).unwrap();
        let cert_path = dir.path().join(SERVER_CERT_FILE);
        let key_path = dir.path().join(SERVER_KEY_FILE);
        let err = load_server_cert(&cert_path, &key_path, &master, &ca, &names).unwrap_err();
        assert!(format!("{err:#}").contains("in 30 days"), "{err:#}");

        load_or_create(dir.path(), &master, &[]).unwrap();
        let (reissued, _) = load_server_cert(&cert_path, &key_path, &master, &ca, &names)
            .unwrap()
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&reissued).unwrap();
        let not_after = parsed.validity().not_after.to_datetime();
        assert!(not_after - OffsetDateTime::now_utc() > Duration::days(800));
    }

    #[test]
    fn wrong_master_key_and_half_missing_ca_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path(), &MasterKey::generate(), &[]).unwrap();
        let err = load_or_create(dir.path(), &MasterKey::generate(), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("another master key"), "{err:#}");
        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = load_or_create(dir.path(), &MasterKey::generate(), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("is missing"), "{err:#}");
    }

    #[test]
    fn hostnames_are_validated() {
        assert!(
            load_or_create(
                Path::new("/nonexistent"),
                &MasterKey::generate(),
                &["a b".into()]
            )
            .unwrap_err()
            .to_string()
            .contains("invalid TLS hostname")
        );
        assert_eq!(
            SanName::parse("[::1]").unwrap(),
            SanName::Ip(Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(
            SanName::parse("Ward.Example").unwrap(),
            SanName::Dns("ward.example".into())
        );
        assert!(SanName::parse("host:443").is_err());
        assert!(SanName::parse("-bad.example").is_err());
    }

    #[tokio::test]
    async fn operator_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        fs::write(&cert_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        let config = from_pem_files(&cert_path, &key_path).unwrap();
        let (group, _, _) = handshake(config, client_config(Some(&cert.pem())), "localhost")
            .await
            .unwrap();
        assert_eq!(group, NamedGroup::X25519MLKEM768);

        // Mismatched key.
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        fs::write(&key_path, other.serialize_pem()).unwrap();
        let err = format!("{:#}", from_pem_files(&cert_path, &key_path).unwrap_err());
        assert!(err.contains("key.pem"), "{err}");
        // Empty certificate file.
        fs::write(&cert_path, "").unwrap();
        let err = format!("{:#}", from_pem_files(&cert_path, &key_path).unwrap_err());
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}
