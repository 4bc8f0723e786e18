//! The HTTP server loop that `sentra-edge` (the branch's local API) and `sentra-cloud` both serve
//! with, and the per-address throttle both put in front of their unauthenticated doors.
//!
//! `axum::serve` sets no timer, so hyper never times out a client that sends half a header and
//! waits (slowloris), and it accepts every connection the kernel hands it. [`serve`] is the same
//! loop with the three bounds a server on a shared Wi-Fi or the internet needs:
//! - at most [`Limits::max_connections`] connections at once: past it the loop stops accepting
//!   and new connections wait in the kernel's backlog until one closes (nothing is refused while
//!   the backlog has room, and a client that waits is served);
//! - the request head must arrive within [`Limits::header_read_timeout`], counted from when the
//!   connection starts waiting for it, so the same timeout also closes idle keep-alive
//!   connections;
//! - each request carries its peer address as axum's `ConnectInfo<SocketAddr>`.
//!
//! [`serve_tls`] is the same loop over TLS (tokio-rustls): the handshake happens inside the
//! connection's slot and must finish within the same header-read timeout; a handshake that fails
//! or stalls just closes the connection, and hyper never sees it.
//!
//! Closing: a request refused before its body is read (too large, busy, not allowed) leaves that
//! body unread in the socket, and closing a socket with unread bytes makes the kernel send a
//! reset, which can reach the client before it has read the answer: a tablet sending a photo to
//! a busy box sees "connection reset" instead of `503` with `Retry-After`. So a connection is
//! closed the way web servers call a lingering close: the answer is sent, then our side is shut
//! for writing, then what the client still sends is read and thrown away until it closes its
//! side, goes quiet for [`LINGER_IDLE`] or [`LINGER_MAX`] has passed. The connection keeps its
//! slot meanwhile.
//!
//! Shutdown: once `shutdown` resolves no connection is accepted, every connection is told to
//! finish the request in flight and close, and `serve` returns when all have (their lingering
//! closes end on their own, within [`LINGER_MAX`]).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

/// The bounds [`serve`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; at least 1.
    pub max_connections: usize,
    /// How long a connection may take to send a request head (and how long it may stay idle
    /// between requests).
    pub header_read_timeout: Duration,
}

/// A failed `accept` (out of file descriptors, most often) is retried after this pause rather
/// than in a tight loop; connections already open keep being served meanwhile.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A lingering close stops once the client has sent nothing for this long.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);
/// A lingering close lasts at most this long, whatever the client keeps sending.
pub const LINGER_MAX: Duration = Duration::from_secs(30);
/// What a lingering close reads at a time. Small: every connection that closes lingers, for up
/// to [`LINGER_IDLE`] when the client stays silent, so the box's 256 at once hold 1 MiB; a
/// refused 20 MB photo is read in 5 000 reads.
const LINGER_READ: usize = 4 * 1024;

/// Serve `router` on `listener` within `limits` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve_with(listener, router, limits, None, shutdown).await;
}

/// [`serve`] over TLS with `tls` (its ALPN should offer `http/1.1`: the loop speaks HTTP/1.1).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    serve_with(listener, router, limits, Some(acceptor), shutdown).await;
}

async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; trying again");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let stream = Lingering(Some((stream, permit)));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(Body::new))
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        match &tls {
            None => {
                let connection =
                    graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                // Watched only once the handshake is done: a shutdown meanwhile waits at most
                // the header-read timeout for it, then the connection is served and closed.
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Some(stream) =
                        finish_handshake(handshake, limits.header_read_timeout, peer).await
                    else {
                        return;
                    };
                    let connection =
                        watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A served connection's socket and its slot. Dropped (hyper is done with it, or its TLS
/// handshake failed), it closes lingering (see the crate's docs) on a task of its own, and only
/// then gives its slot back. `None` only once dropped.
struct Lingering(Option<(TcpStream, OwnedSemaphorePermit)>);

impl Lingering {
    fn stream(&mut self) -> std::io::Result<Pin<&mut TcpStream>> {
        match self.0.as_mut() {
            Some((stream, _)) => Ok(Pin::new(stream)),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.stream()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|(stream, _)| stream.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream()?.poll_shutdown(cx)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some((stream, permit)) = self.0.take() else {
            return;
        };
        // Dropped on the runtime (a connection's task); elsewhere it just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, permit));
        }
    }
}

/// Shut our side for writing, then read and discard until the client closes its side, is
/// quiet for [`LINGER_IDLE`] or [`LINGER_MAX`] has passed; then close and free the slot.
async fn linger(mut stream: TcpStream, permit: OwnedSemaphorePermit) {
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER_MAX;
    let mut sink = vec![0u8; LINGER_READ];
    loop {
        let quiet = (tokio::time::Instant::now() + LINGER_IDLE).min(deadline);
        match tokio::time::timeout_at(quiet, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    drop(stream);
    drop(permit);
}

/// Wait for a TLS server handshake for at most `limit`; `None` (logged at debug with `peer`)
/// when it fails or takes longer, and the caller just closes. One rule for every TLS door the
/// box and the cloud serve (the API here, the broker's TLS terminator).
pub async fn finish_handshake<IO>(
    handshake: tokio_rustls::Accept<IO>,
    limit: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Most keys a [`Throttle`] remembers before it forgets those that are back to a full
/// allowance; bounds its memory whatever the callers send.
const THROTTLE_MAX_KEYS: usize = 10_000;

/// An allowance of requests per window for each key: a peer address (the default, for the
/// unauthenticated doors, through [`throttle`]) or a caller's name (a device or token, checked in
/// a handler). The whole allowance is available at once and refills evenly over the window
/// (GCRA). Over it: [`too_many_requests`].
#[derive(Clone)]
pub struct Throttle<K = IpAddr>
where
    K: std::hash::Hash + Eq + Clone,
{
    limiter: Arc<DefaultKeyedRateLimiter<K>>,
}

impl Throttle<IpAddr> {
    /// `per_minute` requests a minute per address (0 is taken as 1).
    pub fn per_minute(per_minute: u32) -> Throttle {
        Throttle::new(per_minute, Duration::from_secs(60))
    }
}

impl<K: std::hash::Hash + Eq + Clone> Throttle<K> {
    /// `allowance` requests per `window` per key (0 is taken as 1).
    pub fn new(allowance: u32, window: Duration) -> Throttle<K> {
        let allowance = NonZeroU32::new(allowance).unwrap_or(NonZeroU32::MIN);
        let period = (window / allowance.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(allowance);
        Throttle {
            limiter: Arc::new(RateLimiter::keyed(quota)),
        }
    }

    /// Whether `key` may go on now; otherwise how long until it may.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.limiter.len() > THROTTLE_MAX_KEYS {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

/// The middleware behind [`Throttle`]. A request without a peer address (not served by
/// [`serve`], as in a router test) is not throttled.
pub async fn throttle(State(throttle): State<Throttle>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    match peer.map(|peer| throttle.check(&peer)) {
        Some(Err(wait)) => too_many_requests(wait, "too many requests from this address"),
        _ => next.run(request).await,
    }
}

/// `429 rate_limited` in the error envelope both services answer with, its message `what` and
/// when to try again, and `Retry-After` in whole seconds (at least 1).
pub fn too_many_requests(wait: Duration, what: &str) -> Response {
    let seconds = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1);
    let body = serde_json::json!({"error": {
        "code": "rate_limited",
        "message": format!("{what}; try again in {seconds} s"),
    }});
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_counts_per_address() {
        let throttle = Throttle::per_minute(2);
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        assert!(throttle.check(&a).is_ok());
        assert!(throttle.check(&a).is_ok());
        let wait = throttle.check(&a).expect_err("third in a minute");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(
            throttle.check(&b).is_ok(),
            "another address has its own allowance"
        );
    }

    #[test]
    fn a_caller_gets_its_allowance_then_waits_for_a_refill() {
        // 2 per minute: a refill every 30 s, so the third call waits (about) 30 s.
        let throttle = Throttle::<String>::new(2, Duration::from_secs(60));
        let a = "device:a".to_owned();
        assert!(throttle.check(&a).is_ok());
        assert!(throttle.check(&a).is_ok());
        let wait = throttle.check(&a).expect_err("third in the window");
        assert!(
            wait > Duration::from_secs(29) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(throttle.check(&"token:b".to_owned()).is_ok());
    }

    #[test]
    fn the_keys_stay_bounded() {
        let throttle = Throttle::<String>::new(1, Duration::from_millis(1));
        for n in 0..(THROTTLE_MAX_KEYS + 10) {
            let _ = throttle.check(&format!("token:{n}"));
        }
        std::thread::sleep(Duration::from_millis(5));
        let _ = throttle.check(&"one more".to_owned());
        assert!(
            throttle.limiter.len() <= THROTTLE_MAX_KEYS,
            "{}",
            throttle.limiter.len()
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let response = too_many_requests(Duration::from_millis(1500), "slow down");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
