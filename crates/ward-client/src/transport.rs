//! HTTPS and WebSocket transport to one Ward server, trusting exactly the organisation's CA.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use ward_proto::{ErrorBody, ErrorCode, ErrorDetail};

use crate::WardError;

/// A TLS client configuration trusting only the CA certificates in `ca_pem`
/// (aws-lc-rs provider: X25519MLKEM768 hybrid key exchange preferred).
pub fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, WardError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert
            .map_err(|e| WardError::InvalidInput(format!("the CA file is not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| WardError::InvalidInput(format!("the CA certificate is unusable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(WardError::InvalidInput(
            "the CA file holds no certificate".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WardError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// SHA-256 fingerprint of the first certificate in `ca_pem`, colon-separated upper-case hex
/// (the form `ward serve` prints).
pub fn ca_fingerprint(ca_pem: &str) -> Result<String, WardError> {
    let cert = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .next()
        .ok_or_else(|| WardError::InvalidInput("the CA file holds no certificate".into()))?
        .map_err(|e| WardError::InvalidInput(format!("the CA file is not valid PEM: {e}")))?;
    let digest = Sha256::digest(cert.as_ref());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The HTTP API of one server.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client for `base` (e.g. `https://ward.example.org:8443`) trusting `ca_pem`.
    pub fn new(base: &str, ca_pem: &str) -> Result<Api, WardError> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| WardError::InvalidInput(format!("server URL {base:?} is invalid: {e}")))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
            return Err(WardError::InvalidInput(
                "the server URL must use https:// (plain http only on loopback)".into(),
            ));
        }
        let tls = tls_config(ca_pem)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| WardError::Transport(e.to_string()))?;
        Ok(Api {
            http,
            tls,
            base,
            token: None,
        })
    }

    /// Use this session token.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET a JSON resource.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, WardError> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }

    /// POST JSON, expect JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, WardError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// POST JSON, expect no body.
    pub async fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<(), WardError> {
        let _: serde_json::Value = self.call(reqwest::Method::POST, path, Some(body)).await?;
        Ok(())
    }

    /// PUT JSON, expect JSON.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, WardError> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// DELETE, expect no body.
    pub async fn delete(&self, path: &str) -> Result<(), WardError> {
        let _: serde_json::Value = self
            .call(reqwest::Method::DELETE, path, None::<&()>)
            .await?;
        Ok(())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, WardError> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(transport_error)?;
        Self::json_answer(resp).await
    }

    async fn json_answer<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, WardError> {
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(bytes).map_err(|e| {
                WardError::Transport(format!("unexpected answer from the server: {e}"))
            });
        }
        Err(error_of(status, &bytes))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// PUT raw bytes (`application/octet-stream`), expect JSON. The request may take up to
    /// `timeout` (a part of a large upload on a slow link).
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<T, WardError> {
        let resp = self
            .request(reqwest::Method::PUT, path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        Self::json_answer(resp).await
    }

    /// GET bytes `first..=last` of a binary resource; the response (status checked: 206, or
    /// 200 when the range is the whole resource) is returned for the caller to stream.
    pub async fn get_range(
        &self,
        path: &str,
        first: u64,
        last: u64,
        timeout: std::time::Duration,
    ) -> Result<reqwest::Response, WardError> {
        let resp = self
            .request(reqwest::Method::GET, path)
            .header(reqwest::header::RANGE, format!("bytes={first}-{last}"))
            .timeout(timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.map_err(transport_error)?;
        Err(error_of(status, &bytes))
    }
}

/// The error a failed answer stands for.
fn error_of(status: reqwest::StatusCode, bytes: &[u8]) -> WardError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(b) if b.error.code == ErrorCode::Unauthenticated => {
            WardError::SessionExpired(b.error.message)
        }
        Ok(ErrorBody {
            error:
                ErrorDetail {
                    code: ErrorCode::DeviceWiped,
                    wipe: Some(instruction),
                    ..
                },
        }) => WardError::WipeOrdered(Box::new(instruction)),
        Ok(b) => WardError::Api {
            code: b.error.code,
            message: b.error.message,
            current_epoch: b.error.current_epoch,
        },
        Err(_) => WardError::Transport(format!("server answered HTTP {status}")),
    }
}

impl Api {
    /// Open the WebSocket `/v1/ws` with the session token.
    pub async fn websocket(
        &self,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        WardError,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url =
            reqwest::Url::parse(&self.base).map_err(|e| WardError::InvalidInput(e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| WardError::InvalidInput("server URL has no host".into()))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        if url.scheme() != "https" {
            return Err(WardError::InvalidInput(
                "live delivery needs an https:// server URL".into(),
            ));
        }
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| WardError::Transport(format!("cannot connect to {host}:{port}: {e}")))?;
        let name = ServerName::try_from(host.clone())
            .map_err(|_| WardError::InvalidInput(format!("invalid host name {host}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| WardError::Tls(tls_message(&e.to_string())))?;
        let mut req = format!("wss://{host}:{port}/v1/ws")
            .into_client_request()
            .map_err(|e| WardError::Transport(e.to_string()))?;
        if let Some(t) = &self.token {
            let value = format!("Bearer {t}")
                .parse()
                .map_err(|_| WardError::Transport("bad token".into()))?;
            req.headers_mut().insert("authorization", value);
        }
        let (ws, _) = tokio_tungstenite::client_async(req, tls)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401 => {
                    WardError::SessionExpired("session expired; run `ward login`".into())
                }
                other => WardError::Transport(format!("WebSocket: {other}")),
            })?;
        Ok(ws)
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        h == "localhost"
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

fn transport_error(e: reqwest::Error) -> WardError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if msg.contains("certificate")
        || msg.contains("UnknownIssuer")
        || msg.contains("NotValidForName")
    {
        WardError::Tls(tls_message(&msg))
    } else {
        WardError::Transport(msg)
    }
}

fn tls_message(detail: &str) -> String {
    format!(
        "the server's certificate was not accepted (it must be issued by the CA given with --ca-cert \
         and name this host): {detail}"
    )
}
