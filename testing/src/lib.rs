//! Test support for Ward: a real server on an ephemeral loopback port (in-process, over real
//! TCP, plain HTTP or TLS), users enrolled through the real API, and a small JSON client.
//!
//! Used by the integration tests of `ward-server` and `ward`. Not part of the product.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: failures should panic loudly"
)]
#![allow(missing_docs, reason = "test support")]

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use ward_proto::{Role, Username};
use ward_server::clock::{Clock, ManualClock, SystemClock};
use ward_server::config::{Config, Overrides, RawConfig};
use ward_server::service::Actor;
use ward_server::{Running, Services};

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// How to start a test server.
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Serve TLS with the generated CA (default: plain HTTP on loopback).
    pub tls: bool,
    /// Use a hand-moved clock.
    pub manual_clock: bool,
    /// Database URL (default: SQLite in the temp data directory).
    pub database_url: Option<String>,
    /// Raw config tweaks.
    pub raw: Option<RawConfig>,
}

/// A running server.
pub struct TestServer {
    pub url: String,
    pub addr: std::net::SocketAddr,
    opts: ServerOptions,
    pub ca_pem: Option<String>,
    pub services: Arc<Services>,
    pub manual_clock: Option<Arc<ManualClock>>,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// SQLite, plain HTTP, system clock.
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(opts: ServerOptions) -> Self {
        Self::start_in(opts, tempfile::tempdir().unwrap(), "127.0.0.1:0".into()).await
    }

    /// Stop and start again on the same data directory and port (a server restart).
    pub async fn restart(mut self) -> Self {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        let opts = self.opts.clone();
        let addr = self.addr.to_string();
        let dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        Self::start_in(opts, dir, addr).await
    }

    /// Stop serving but keep the data, to restart later with [`TestServer::restart`].
    pub async fn pause(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    async fn start_in(opts: ServerOptions, data_dir: tempfile::TempDir, listen: String) -> Self {
        let mut raw = opts.raw.clone().unwrap_or_default();
        // Tests hammer one IP; the limiter has its own test.
        if opts.raw.is_none() {
            raw.limits.requests_per_second = 100_000;
            raw.limits.request_burst = 100_000;
            raw.limits.logins_per_minute = 100_000;
        }
        let config = Config::validate(
            raw,
            Overrides {
                data_dir: Some(data_dir.path().to_path_buf()),
                listen: Some(listen),
                database_url: opts.database_url.clone(),
                dangerous_plain_http: !opts.tls,
            },
        )
        .unwrap();
        let manual_clock = opts
            .manual_clock
            .then(|| Arc::new(ManualClock::new(OffsetDateTime::now_utc())));
        let clock: Arc<dyn Clock> = match &manual_clock {
            Some(c) => c.clone(),
            None => Arc::new(SystemClock),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let Running {
            addr,
            ca_pem,
            services,
            task,
            ..
        } = ward_server::start_with_clock(&config, clock, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        let scheme = if opts.tls { "https" } else { "http" };
        let url = if opts.tls {
            format!("{scheme}://localhost:{}", addr.port())
        } else {
            format!("{scheme}://{addr}")
        };
        TestServer {
            url,
            addr,
            opts,
            ca_pem,
            services,
            manual_clock,
            data_dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A client trusting the server's CA (when TLS).
    pub fn client(&self) -> reqwest::Client {
        client_for(self.ca_pem.as_deref())
    }

    /// Now, on the server's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.services.now()
    }

    /// Move the manual clock.
    pub fn advance(&self, d: time::Duration) {
        self.manual_clock
            .as_ref()
            .expect("server started with manual_clock")
            .advance(d);
    }

    /// Create a user (as the admin CLI would) and return the enrollment code.
    pub async fn create_user(&self, username: &str, role: Role) -> String {
        self.services
            .create_user(
                &Actor::cli(),
                ward_proto::CreateUserRequest {
                    username: Username::parse(username).unwrap(),
                    role,
                    display_name: None,
                },
            )
            .await
            .unwrap()
            .enrollment_code
    }

    /// Create and enroll a user with one device.
    pub async fn enroll(&self, username: &str, role: Role) -> TestUser {
        let code = self.create_user(username, role).await;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let http = self.client();
        let (status, body) = send(
            &http,
            reqwest::Method::POST,
            &format!("{}/v1/enroll", self.url),
            None,
            Some(json!({
                "username": username,
                "enrollment_code": code,
                "password": PASSWORD,
                "device": {"name": "test device", "signature_key": b64(key.verifying_key().as_bytes())},
            })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "enroll {username}: {body}");
        TestUser {
            username: username.to_owned(),
            role,
            user_id: body["user_id"].as_str().unwrap().to_owned(),
            device_id: body["device"]["device_id"].as_str().unwrap().to_owned(),
            token: body["session"]["token"].as_str().unwrap().to_owned(),
            totp_secret: body["totp_secret"].as_str().unwrap().to_owned(),
            signing_key: key,
            http,
            base: self.url.clone(),
        }
    }

    /// Stop gracefully and wait.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// An enrolled user with one logged-in device.
pub struct TestUser {
    pub username: String,
    pub role: Role,
    pub user_id: String,
    pub device_id: String,
    pub token: String,
    pub totp_secret: String,
    pub signing_key: SigningKey,
    pub http: reqwest::Client,
    pub base: String,
}

impl TestUser {
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(
            &self.http,
            reqwest::Method::GET,
            &format!("{}{path}", self.base),
            Some(&self.token),
            None,
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(
            &self.http,
            reqwest::Method::POST,
            &format!("{}{path}", self.base),
            Some(&self.token),
            Some(body),
        )
        .await
    }

    /// The TOTP code at `now`.
    pub fn totp_at(&self, now: OffsetDateTime) -> String {
        totp_code(&self.totp_secret, now)
    }

    /// Log in on a new device; returns that device as a user handle.
    pub async fn login_new_device(&self, now: OffsetDateTime) -> TestUser {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let (status, body) = send(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/v1/login", self.base),
            None,
            Some(json!({
                "username": self.username, "password": PASSWORD, "totp": self.totp_at(now),
                "new_device": {"name": "second device", "signature_key": b64(key.verifying_key().as_bytes())},
            })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "login {}: {body}", self.username);
        TestUser {
            username: self.username.clone(),
            role: self.role,
            user_id: self.user_id.clone(),
            device_id: body["device"]["device_id"].as_str().unwrap().to_owned(),
            token: body["session"]["token"].as_str().unwrap().to_owned(),
            totp_secret: self.totp_secret.clone(),
            signing_key: key,
            http: self.http.clone(),
            base: self.base.clone(),
        }
    }

    /// Upload `n` opaque one-time KeyPackages and a last-resort one.
    pub async fn upload_key_packages(&self, n: usize) {
        let kps: Vec<String> = (0..n)
            .map(|i| b64(format!("kp-{}-{i}", self.device_id).as_bytes()))
            .collect();
        let (s, b) = self
            .post(
                "/v1/devices/me/key-packages",
                json!({"key_packages": kps, "last_resort": b64(b"last-resort")}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
}

/// The TOTP code for a base32 secret at a time.
pub fn totp_code(secret_b32: &str, now: OffsetDateTime) -> String {
    let secret = totp_rs::Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .unwrap();
    let totp =
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, "t".into()).unwrap();
    totp.generate(now.unix_timestamp() as u64)
}

/// Standard base64.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A reqwest client trusting `ca_pem` (aws-lc-rs provider, post-quantum key exchange first).
pub fn client_for(ca_pem: Option<&str>) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    // Always an explicit provider: reqwest is built without a default one.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}

/// One JSON request; returns status and body (Null when empty).
pub async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}
