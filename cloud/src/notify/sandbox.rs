//! The sandbox messaging gateway: an HTTP server with the WhatsApp Cloud API's request and answer
//! shape for `POST /{phone_number_id}/messages`, for tests, `demo` and development, where no real
//! WhatsApp account exists. It keeps what it accepted in memory and answers what tests and
//! operators ask of it:
//!
//! - `GET /_sandbox/messages[?key=K]` → `{"messages": [{id, key, to, template, parameters}]}`:
//!   what it accepted (with `key`, the lookup a worker makes after an interrupted send);
//! - `POST /_sandbox/fail` `{"count": N, "status": S}`: the next N sends are refused with status
//!   S (default 503) and the Graph API's error body, and not recorded;
//! - `POST /_sandbox/hold` `{"count": N}`: the next N sends are recorded as accepted but never
//!   answered (the request hangs until the client gives up): a gateway that took the message
//!   while the worker died or timed out.
//!
//! The control paths start with `_`, which no phone number id contains (`notify.phone_number_id`
//! is letters and digits). With a token configured, every request must carry it as
//! `Authorization: Bearer`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One message the sandbox accepted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Received {
    pub id: String,
    pub key: Option<String>,
    pub to: String,
    pub template: String,
    pub parameters: Vec<String>,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    fail_next: u32,
    fail_status: u16,
    hold_next: u32,
}

#[derive(Clone)]
struct Sandbox {
    inner: Arc<Mutex<Inner>>,
    token: Option<Arc<str>>,
    /// Ends held requests when the sandbox stops, so its graceful shutdown finishes.
    stop: CancellationToken,
}

impl Sandbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock is a bug in a handler; the data stays usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Binds `listen` and serves the sandbox until `stop` is cancelled; the bound address is
/// returned as soon as it listens.
pub async fn start(
    listen: SocketAddr,
    token: Option<String>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(token, stop.clone());
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "the sandbox gateway stopped");
        }
    });
    Ok((addr, task))
}

fn router(token: Option<String>, stop: CancellationToken) -> Router {
    let state = Sandbox {
        inner: Arc::new(Mutex::new(Inner::default())),
        token: token.map(Arc::from),
        stop,
    };
    Router::new()
        .route("/_sandbox/messages", get(messages))
        .route("/_sandbox/fail", post(fail))
        .route("/_sandbox/hold", post(hold))
        .route("/{phone_number_id}/messages", post(send))
        .with_state(state)
}

/// The Graph API's error body.
fn graph_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(
            json!({"error": {"message": message, "type": "OAuthException", "code": code,
                              "fbtrace_id": "sandbox"}}),
        ),
    )
        .into_response()
}

fn authorized(sandbox: &Sandbox, headers: &HeaderMap) -> bool {
    let Some(token) = &sandbox.token else {
        return true;
    };
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|sent| sent == &**token)
}

#[derive(Deserialize)]
struct SendBody {
    messaging_product: String,
    to: String,
    #[serde(rename = "type")]
    kind: String,
    template: Option<Template>,
    biz_opaque_callback_data: Option<String>,
}

#[derive(Deserialize)]
struct Template {
    name: String,
    #[serde(default)]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(default)]
    parameters: Vec<Parameter>,
}

#[derive(Deserialize)]
struct Parameter {
    text: Option<String>,
}

async fn send(
    State(sandbox): State<Sandbox>,
    Path(_phone_number_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&sandbox, &headers) {
        return graph_error(StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token.");
    }
    let body: SendBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                100,
                &format!("Invalid parameter: {error}"),
            );
        }
    };
    let valid_to = (8..=15).contains(&body.to.len()) && body.to.bytes().all(|b| b.is_ascii_digit());
    let template = match (&*body.messaging_product, &*body.kind, body.template) {
        ("whatsapp", "template", Some(template)) if valid_to && !template.name.is_empty() => {
            template
        }
        _ => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                131_009,
                "(#131009) Parameter value is not valid",
            );
        }
    };
    let (fail, hold, id) = {
        let mut inner = sandbox.lock();
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            (Some(inner.fail_status), false, String::new())
        } else {
            let id = format!("wamid.sandbox-{}", crate::web::random_hex());
            inner.received.push(Received {
                id: id.clone(),
                key: body.biz_opaque_callback_data.clone(),
                to: body.to.clone(),
                template: template.name.clone(),
                parameters: template
                    .components
                    .iter()
                    .flat_map(|component| &component.parameters)
                    .filter_map(|parameter| parameter.text.clone())
                    .collect(),
            });
            let hold = inner.hold_next > 0;
            if hold {
                inner.hold_next -= 1;
            }
            (None, hold, id)
        }
    };
    if let Some(status) = fail {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return graph_error(status, 131_016, "(#131016) Service unavailable (sandbox)");
    }
    if hold {
        // Accepted, never answered: the client's timeout or death ends the request (or the
        // sandbox stopping, which answers 503 so that its shutdown does not wait forever).
        sandbox.stop.cancelled().await;
        return graph_error(
            StatusCode::SERVICE_UNAVAILABLE,
            131_016,
            "(#131016) The sandbox is stopping",
        );
    }
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": body.to, "wa_id": body.to}],
        "messages": [{"id": id}],
    }))
    .into_response()
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

async fn messages(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    if !authorized(&sandbox, &headers) {
        return graph_error(StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token.");
    }
    let inner = sandbox.lock();
    let messages: Vec<&Received> = inner
        .received
        .iter()
        .filter(|message| query.key.is_none() || message.key == query.key)
        .collect();
    Json(json!({ "messages": messages })).into_response()
}

#[derive(Deserialize)]
struct FailBody {
    count: u32,
    status: Option<u16>,
}

async fn fail(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&sandbox, &headers) {
        return graph_error(StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token.");
    }
    let body: FailBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => return bad_control(&error.to_string()),
    };
    let status = body.status.unwrap_or(503);
    if !(400..=599).contains(&status) {
        return bad_control("status: expected an HTTP error status from 400 to 599");
    }
    let mut inner = sandbox.lock();
    inner.fail_next = body.count;
    inner.fail_status = status;
    Json(json!({"fail_next": body.count, "status": status})).into_response()
}

#[derive(Deserialize)]
struct HoldBody {
    count: u32,
}

async fn hold(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&sandbox, &headers) {
        return graph_error(StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token.");
    }
    let body: HoldBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => return bad_control(&error.to_string()),
    };
    sandbox.lock().hold_next = body.count;
    Json(json!({"hold_next": body.count})).into_response()
}

/// Our own error envelope for the sandbox's control endpoints (they are not WhatsApp's).
fn bad_control(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": "invalid_body", "message": message}})),
    )
        .into_response()
}
