//! The local API's server bounds, against the real daemon over real sockets: pairing is
//! throttled per address, and a client stalling in its request head is disconnected (the loop
//! itself is tested in `serve/tests/limits.rs`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::Site;

/// Generous: a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn pairing_attempts_are_throttled_per_address_and_a_stalled_head_is_closed() {
    let site = Site::with_config("pair_per_minute = 3\nheader_read_timeout_secs = 1\n");
    let edge = site.start().await;
    let wrong = json!({"code": "AAAA-AAAA", "device_name": "guesser"});
    for attempt in 0..3 {
        let (status, body) = edge
            .call(None, Method::POST, "/v1/pair", Some(wrong.clone()), None)
            .await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{attempt}: {body}");
        assert!(status.is_client_error(), "{attempt}: {status} {body}");
    }
    let response = edge
        .http
        .post(format!("{}/v1/pair", edge.base))
        .json(&wrong)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // A right code is refused too while the address is over its allowance (guessing is what the
    // throttle stops), and the rest of the API is not throttled.
    let code = site.pairing_code("tablet");
    let (status, _) = edge
        .call(
            None,
            Method::POST,
            "/v1/pair",
            Some(json!({"code": code, "device_name": "Tablet"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = edge.call(None, Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);

    // Half a request head, then silence: the box closes the connection (header_read_timeout_secs).
    let addr = edge.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("write");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut rest))
        .await
        .expect("the box closed the stalled connection")
        .expect("read");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
}
