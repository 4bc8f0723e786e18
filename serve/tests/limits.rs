//! The server loop's bounds, over real sockets: a client that stalls in its request head is
//! disconnected, past the connection cap a client waits until a slot frees, then is served, and
//! a client whose request is refused before its body is read still gets the answer.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use sentra_serve::{Limits, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Generous bounds for a loaded 2-core machine; the tests wait on events, not on the clock.
const WAIT: Duration = Duration::from_secs(60);

async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let router = Router::new().route("/", get(|| async { "ok" })).route(
        "/refuse",
        post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy") }),
    );
    tokio::spawn(serve(listener, router, limits, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("the server closed the connection in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_root(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    read_to_close(stream).await
}

#[tokio::test]
async fn a_client_stalling_in_its_request_head_is_disconnected() {
    let (addr, _stop) = start(Limits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(1),
    })
    .await;
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("write half a head");
    // Without a header-read timeout this waits forever (axum::serve sets no timer).
    let answer = read_to_close(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer:?}");

    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");

    let mut fine = TcpStream::connect(addr).await.expect("connect");
    assert!(get_root(&mut fine).await.starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn past_the_connection_cap_a_client_waits_for_a_free_slot() {
    let (addr, _stop) = start(Limits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(600),
    })
    .await;
    let mut holder = TcpStream::connect(addr).await.expect("connect");
    // The holder's connection is being served (it got an answer and stays open).
    holder
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 15];
    tokio::time::timeout(WAIT, holder.read_exact(&mut first))
        .await
        .expect("answered in time")
        .expect("read");
    assert_eq!(&first, b"HTTP/1.1 200 OK");

    let waiter = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        get_root(&mut stream).await
    });
    // While the one slot is taken the second client is not served (it waits in the backlog).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "served past the cap");
    drop(holder);
    let answer = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("served once the slot freed")
        .expect("join");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
}

/// A body far larger than the socket buffers hold, so most of it would arrive after the answer.
const REFUSED_BODY: usize = 32 << 20;

/// A connection to a new server that has sent the head of a `POST /refuse` (which the server
/// answers 503 without reading the body) announcing [`REFUSED_BODY`] bytes, with `extra` headers;
/// and what stops that server.
async fn refused_post(extra: &str) -> (TcpStream, tokio::sync::oneshot::Sender<()>) {
    let (addr, stop) = start(Limits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(10),
    })
    .await;
    let mut client = TcpStream::connect(addr).await.expect("connect");
    client
        .write_all(
            format!(
                "POST /refuse HTTP/1.1\r\nhost: x\r\ncontent-length: {REFUSED_BODY}\r\n{extra}\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write the head");
    (client, stop)
}

fn assert_refused(answer: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable") && answer.ends_with("busy"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_request_refused_before_its_body_is_read_still_gets_its_answer() {
    let (mut client, _stop) = refused_post("").await;
    // Like most HTTP clients (a phone's, a tablet's), send the whole body, then read.
    // Closing with the body unread would reset the connection here, losing the answer.
    let part = vec![7u8; 64 << 10];
    for _ in 0..REFUSED_BODY / part.len() {
        tokio::time::timeout(WAIT, client.write_all(&part))
            .await
            .expect("the body was taken in time")
            .expect("the server reads the body it refused rather than resetting the connection");
    }
    assert_refused(&read_to_close(&mut client).await);
}

#[tokio::test]
async fn a_client_that_asks_to_continue_is_refused_before_sending_its_body() {
    let (mut client, _stop) = refused_post("expect: 100-continue\r\n").await;
    // No `100 Continue` for a request the server refuses unread: the answer comes at once and
    // the body is never sent.
    let answer = read_to_close(&mut client).await;
    assert!(!answer.contains("100 Continue"), "{answer:?}");
    assert_refused(&answer);
}
