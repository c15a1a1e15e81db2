//! The accept loop: serves an axum [`Router`] over TLS or plain TCP with HTTP/1.1, HTTP/2
//! and WebSocket upgrades, bounded concurrency and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// How long in-flight requests may run after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Interval of HTTP/2 keep-alive pings.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(500);

/// Connection limits and timeouts for [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Maximum concurrent connections; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time an HTTP/1 client has to send a request's headers.
    pub header_read_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, over TLS when `tls` is given.
///
/// Every request carries [`ConnectInfo<SocketAddr>`] (the peer address) in its extensions.
/// After `shutdown`, no new connections are accepted and in-flight requests get up to
/// 10 s to finish; connections still open then are dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(%local, tls = tls.is_some(), "listening");

    let acceptor = tls.map(TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Extended CONNECT lets axum accept WebSockets over HTTP/2 too.
    builder
        .http2()
        .timer(TokioTimer::new())
        // Pings find dead peers, whose idle HTTP/2 connections would otherwise hold a slot.
        .keep_alive_interval(H2_KEEP_ALIVE)
        .enable_connect_protocol();
    let builder = Arc::new(builder);

    let semaphore = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connection tasks so the set does not grow.
            Some(joined) = connections.join_next() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    tracing::error!("connection task panicked");
                }
            }
            acquired = Arc::clone(&semaphore).acquire_owned(), if permit.is_none() => {
                permit = Some(acquired.context("connection semaphore closed")?);
            }
            accepted = listener.accept(), if permit.is_some() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if is_connection_error(&e) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                };
                let Some(permit) = permit.take() else { continue };
                let conn = Connection {
                    peer,
                    acceptor: acceptor.clone(),
                    builder: Arc::clone(&builder),
                    app: app.clone(),
                    watcher: graceful.watcher(),
                    handshake_timeout: limits.tls_handshake_timeout,
                    header_read_timeout: limits.header_read_timeout,
                };
                connections.spawn(async move {
                    conn.run(stream).await;
                    drop(permit);
                });
            }
        }
    }

    drop(listener);
    tracing::info!(
        open_connections = graceful.count(),
        "shutting down: no longer accepting connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(
                open_connections = connections.len(),
                "connections still open after the shutdown grace period; dropping them"
            );
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// Errors about a single connection; the listener itself is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One accepted connection, handled in its own task.
struct Connection {
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    watcher: Watcher,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let ip = self.peer.ip();
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%ip, error = %e, "cannot set TCP_NODELAY");
        }
        match self.acceptor.clone() {
            None => self.serve_http(stream).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await;
                match handshake {
                    Ok(Ok(tls)) => self.serve_http(tls).await,
                    Ok(Err(e)) => tracing::debug!(%ip, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%ip, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_http<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let app = self.app;
        let first_request = Arc::new(Notify::new());
        let notify = Arc::clone(&first_request);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            notify.notify_one();
            req.extensions_mut().insert(ConnectInfo(peer));
            // Router is always ready, so calling without poll_ready is fine.
            app.clone().call(req.map(axum::body::Body::new))
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        let conn = self.watcher.watch(conn);
        let mut conn = std::pin::pin!(conn);
        // hyper's header timeout starts only once it has detected the protocol, so a client
        // that connects and stays silent would hold a connection slot forever.
        let result = tokio::select! {
            result = &mut conn => result,
            first = tokio::time::timeout(self.header_read_timeout, first_request.notified()) => {
                match first {
                    Ok(()) => conn.await,
                    Err(_) => {
                        tracing::debug!(ip = %peer.ip(), "no request before the header timeout");
                        return;
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(ip = %peer.ip(), error = %e, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
    use axum::routing::get;
    use futures_util::{SinkExt, StreamExt};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use tokio::sync::oneshot;

    fn app() -> Router {
        Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow done"
                }),
            )
            .route("/ws", get(|ws: WebSocketUpgrade| async { ws.on_upgrade(echo) }))
    }

    async fn echo(mut socket: WebSocket) {
        while let Some(Ok(msg)) = socket.recv().await {
            if let Message::Text(_) = msg
                && socket.send(msg).await.is_err()
            {
                break;
            }
        }
    }

    struct Running {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, tls, app(), ServeLimits::default(), async {
            let _ = stopped.await;
        }));
        Running { addr, stop, task }
    }

    impl Running {
        async fn stop(self) {
            self.stop.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("serve returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }

    /// reqwest is built without a default crypto provider, so every client gets an
    /// explicit rustls config; `ca_pem` None trusts nothing (for plain HTTP).
    fn http_client(ca_pem: Option<&str>) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = ca_pem {
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .use_preconfigured_tls(cfg)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn serves_https_with_connect_info() {
        let dir = tempfile::tempdir().unwrap();
        let tls = crate::tls::load_or_create(dir.path(), &MasterKey::generate(), &[]).unwrap();
        let server = start(Some(tls.server_config.clone())).await;
        let client = http_client(Some(&tls.ca_pem));
        let port = server.addr.port();

        let resp = client
            .get(format!("https://localhost:{port}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.text().await.unwrap(), "hello");

        let peer = client
            .get(format!("https://127.0.0.1:{port}/peer"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(peer, "127.0.0.1");

        // Plain HTTP against the TLS port fails cleanly and the server keeps serving.
        let plain = http_client(None);
        assert!(
            plain
                .get(format!("http://127.0.0.1:{port}/hello"))
                .send()
                .await
                .is_err()
        );
        let again = client
            .get(format!("https://localhost:{port}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 200);

        server.stop().await;
    }

    #[tokio::test]
    async fn serves_plain_http_and_websocket() {
        let server = start(None).await;
        let port = server.addr.port();
        let client = http_client(None);
        let resp = client
            .get(format!("http://127.0.0.1:{port}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_11);
        assert_eq!(resp.text().await.unwrap(), "hello");
        let peer = client
            .get(format!("http://127.0.0.1:{port}/peer"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(peer, "127.0.0.1");

        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::text("hi"))
            .await
            .unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), "hi");
        ws.close(None).await.unwrap();

        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_lets_in_flight_requests_finish() {
        let server = start(None).await;
        let port = server.addr.port();
        let slow = tokio::spawn(async move {
            http_client(None)
                .get(format!("http://127.0.0.1:{port}/slow"))
                .send()
                .await?
                .text()
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.stop().await;
        assert_eq!(slow.await.unwrap().unwrap(), "slow done");
        // No longer accepting.
        assert!(
            http_client(None)
                .get(format!("http://127.0.0.1:{port}/hello"))
                .send()
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn slow_tls_handshake_does_not_block_others() {
        let dir = tempfile::tempdir().unwrap();
        let tls = crate::tls::load_or_create(dir.path(), &MasterKey::generate(), &[]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let limits = ServeLimits {
            tls_handshake_timeout: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Some(tls.server_config.clone()),
            app(),
            limits,
            async {
                let _ = stopped.await;
            },
        ));
        // A client that connects and never speaks.
        let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let client = http_client(Some(&tls.ca_pem));
        let resp = client
            .get(format!("https://localhost:{port}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        // The idle one is dropped after the handshake timeout.
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut idle, &mut buf),
        )
        .await
        .expect("server closes the idle connection");
        assert!(matches!(read, Ok(0) | Err(_)));
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connection_limit_and_header_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let limits = ServeLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, None, app(), limits, async {
            let _ = stopped.await;
        }));
        // Holds the only slot while sending half a request head...
        let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /hello HTTP/1.1\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...so this request waits until the header timeout frees the slot.
        let started = std::time::Instant::now();
        let resp = http_client(None)
            .get(format!("http://127.0.0.1:{port}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), "hello");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn silent_client_is_dropped_after_header_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, None, app(), limits, async {
            let _ = stopped.await;
        }));
        // Never sends a byte, so hyper cannot even pick HTTP/1 or HTTP/2.
        let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
        )
        .await
        .expect("server closes the silent connection");
        assert!(matches!(read, Ok(0) | Err(_)));
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
