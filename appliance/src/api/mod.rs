//! The local API for the branch's tablets and POS (axum). Owns routing, authentication of paired
//! devices, what each role may do ([`Action`], [`allows`]), idempotent writes, body limits,
//! timeouts and request metrics. Handlers parse into model types, call `store`, and never block
//! the runtime (the store runs SQLite on its own threads).

mod billing;
mod blobs;
mod bookings;
mod edc;
mod error;
mod extract;
mod inspections;
pub mod openapi;
mod ops;
mod rentals;
mod scanner;
mod schemas;
mod shared;
mod staff;
mod stock;
mod vehicles;
mod workshop;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde::Serialize;

pub use error::ApiError;
pub use extract::{Body, Caller, Fingerprint, IdempotencyKey};
pub use staff::{Manager, Sessions, StaffSession};

use crate::config::Config;
use crate::domain::Role;
use crate::store::devices::{self, Device};
use crate::store::idempotency::{self, Answer};
use crate::store::{self, Store, WriteTx};

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub started: Instant,
    pub sync: crate::sync::SyncHandle,
    pub tokens: TokenCache,
    /// The barcode scanner's live state (`GET /v1/scanner`); disabled unless the daemon wires it.
    pub scanner: crate::scanner::ScannerHandle,
    /// The broker's TLS port for the pairing answer; None while no broker runs.
    pub mqtt_port: Option<u16>,
    /// The broker's plain port (`lan.plain`), for legacy clients.
    pub mqtt_plain_port: Option<u16>,
    /// Photos being received now, at most `blobs.max_concurrent_uploads`.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// The EDC card terminal (`edc.device`), if any, and its one-sale-at-a-time lock.
    pub edc: crate::edc::EdcHandle,
    /// Staff sessions and PIN failures (memory only; `api::staff`).
    pub staff: Sessions,
}

/// Devices recently authenticated, by token hash, so a request does not cost a SQLCipher read
/// on a reader thread. Only successful look-ups are kept (at most one entry per paired device);
/// a revocation through the API clears it at once, and entries expire after
/// `TOKEN_CACHE_TTL` in case the store was changed by another process.
#[derive(Debug, Clone, Default)]
pub struct TokenCache(Arc<std::sync::Mutex<TokenCacheInner>>);

#[derive(Debug, Default)]
struct TokenCacheInner {
    devices: std::collections::HashMap<String, (Device, Instant)>,
    /// Bumped by `clear`, so a look-up that started before a revocation cannot refill the cache
    /// with the revoked device after it.
    generation: u64,
}

const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);

impl TokenCache {
    /// The cached device, or the generation to hand back to `put` after looking it up.
    fn get(&self, key: &str) -> Result<Device, u64> {
        let inner = self.0.lock().expect("token cache lock is never poisoned");
        match inner.devices.get(key) {
            Some((d, at)) if at.elapsed() < TOKEN_CACHE_TTL => Ok(d.clone()),
            _ => Err(inner.generation),
        }
    }

    fn put(&self, generation: u64, key: String, device: Device) {
        let mut inner = self.0.lock().expect("token cache lock is never poisoned");
        if inner.generation == generation {
            inner.devices.insert(key, (device, Instant::now()));
        }
    }

    /// Forget every cached device (after a revocation).
    pub fn clear(&self) {
        let mut inner = self.0.lock().expect("token cache lock is never poisoned");
        inner.devices.clear();
        inner.generation += 1;
    }
}

/// Each thing a device may ask for. Routes name one; roles allow a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    WorkOrderRead,
    WorkOrderWrite,
    PartsDispense,
    StockRead,
    StockReceive,
    CatalogueRead,
    InvoiceRead,
    InvoiceWrite,
    PaymentWrite,
    InspectionRead,
    InspectionWrite,
    PrintRead,
    PrintWrite,
    SyncRead,
    CustomerRead,
    CustomerWrite,
    DeviceAdmin,
    Docs,
    /// Open and close pick slips (scan-to-dispense).
    PickSlip,
    /// The scanner's state and latest scans.
    ScannerRead,
    /// Rental bookings and asset availability: read.
    BookingRead,
    /// Take a rental booking, hand its asset over and take it back (the counter).
    BookingWrite,
    /// Inspection photos: send (`PUT /v1/blobs/{sha256}`).
    BlobWrite,
    /// Inspection photos: read back, check what the box holds.
    BlobRead,
    /// Rotate the calling device's own credentials (every role).
    RotateOwnCredentials,
    /// Stock adjustments and cycle counts (the store room); adjusting and applying a count
    /// also pass `stock::may_adjust_stock`.
    StockCount,
    /// Open or end a staff session on this device (every role).
    StaffSession,
    /// Cashier shifts and the branch day: open, close, read, reopen (the manager gate beside).
    CashDrawer,
}

/// The role matrix: each role may do only its job.
pub fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        // Every device may replace its own token and MQTT password, and nothing of another's.
        _ if matches!(action, RotateOwnCredentials | StaffSession) => true,
        Role::Tablet => matches!(
            action,
            WorkOrderRead
                | WorkOrderWrite
                | StockRead
                | CatalogueRead
                | InspectionRead
                | InspectionWrite
                | BlobRead
                | BlobWrite
                | PrintRead
                | SyncRead
                | CustomerRead
                | CustomerWrite
                | ScannerRead
                | BookingRead
                | Docs
        ),
        Role::Pos => matches!(
            action,
            WorkOrderRead
                | StockRead
                | CatalogueRead
                | InvoiceRead
                | InvoiceWrite
                | PaymentWrite
                | InspectionRead
                | PrintRead
                | PrintWrite
                | SyncRead
                | CustomerRead
                | CustomerWrite
                | ScannerRead
                | BookingRead
                | BookingWrite
                | CashDrawer
                | Docs
        ),
        Role::Storekeeper => matches!(
            action,
            WorkOrderRead
                | StockRead
                | StockReceive
                | PartsDispense
                | CatalogueRead
                | PrintRead
                | SyncRead
                | PickSlip
                | ScannerRead
                | StockCount
                | Docs
        ),
    }
}

/// Build the router. Every `/v1` route but `/v1/pair` passes the auth layer for its action;
/// `/v1/pair` is throttled per peer address instead (`api.pair_per_minute`).
pub fn router(state: AppState) -> Router {
    let pair_throttle = sentra_serve::Throttle::per_minute(state.config.api.pair_per_minute);
    let guarded = |action: Action, route: MethodRouter<AppState>| {
        route.route_layer(middleware::from_fn_with_state(
            (state.clone(), action),
            authorize,
        ))
    };
    use Action::*;
    let v1 = Router::new()
        .route(
            "/v1/pair",
            post(ops::pair).route_layer(middleware::from_fn_with_state(
                pair_throttle,
                sentra_serve::throttle,
            )),
        )
        .route(
            "/v1/work-orders",
            guarded(WorkOrderWrite, post(workshop::create_work_order))
                .merge(guarded(WorkOrderRead, get(workshop::list_work_orders))),
        )
        .route(
            "/v1/work-orders/{id}",
            guarded(WorkOrderRead, get(workshop::get_work_order)),
        )
        .route(
            "/v1/work-orders/{id}/notes",
            guarded(WorkOrderRead, get(shared::get_notes))
                .merge(guarded(WorkOrderWrite, put(shared::put_notes))),
        )
        .route(
            "/v1/customers",
            guarded(CustomerWrite, post(shared::create_customer)),
        )
        .route(
            "/v1/customers/{id}",
            guarded(CustomerRead, get(shared::get_customer))
                .merge(guarded(CustomerWrite, patch(shared::patch_customer))),
        )
        .route(
            "/v1/vehicles",
            guarded(CustomerWrite, post(shared::create_vehicle))
                .merge(guarded(CustomerRead, get(vehicles::find_vehicle))),
        )
        .route(
            "/v1/vehicles/{id}/history",
            guarded(CustomerRead, get(vehicles::vehicle_history)),
        )
        .route(
            "/v1/vehicles/{id}",
            guarded(CustomerRead, get(shared::get_vehicle))
                .merge(guarded(CustomerWrite, patch(shared::patch_vehicle))),
        )
        .route(
            "/v1/inspections/{id}/remarks",
            guarded(InspectionRead, get(shared::get_remarks))
                .merge(guarded(InspectionWrite, put(shared::put_remarks))),
        )
        .route(
            "/v1/work-orders/{id}/status",
            guarded(WorkOrderWrite, post(workshop::set_status)),
        )
        .route(
            "/v1/work-orders/{id}/assign",
            guarded(WorkOrderWrite, post(workshop::assign)),
        )
        .route(
            "/v1/work-orders/{id}/parts",
            guarded(PartsDispense, post(workshop::dispense)),
        )
        .route(
            "/v1/work-orders/{id}/returns",
            guarded(PartsDispense, post(stock::return_parts)),
        )
        .route(
            "/v1/stock/adjustments",
            guarded(StockCount, post(stock::adjust)),
        )
        .route(
            "/v1/stock-counts",
            guarded(StockCount, post(stock::open_count)),
        )
        .route(
            "/v1/stock-counts/{id}",
            guarded(StockCount, get(stock::get_count)),
        )
        .route(
            "/v1/stock-counts/{id}/lines",
            guarded(StockCount, post(stock::add_line)),
        )
        .route(
            "/v1/stock-counts/{id}/apply",
            guarded(StockCount, post(stock::apply_count)),
        )
        .route(
            "/v1/stock-counts/{id}/cancel",
            guarded(StockCount, post(stock::cancel_count)),
        )
        .route(
            "/v1/stock/receipts",
            guarded(StockReceive, post(workshop::receive)),
        )
        .route("/v1/stock/{sku}", guarded(StockRead, get(workshop::stock)))
        .route("/v1/parts", guarded(CatalogueRead, get(workshop::parts)))
        .route(
            "/v1/mechanics",
            guarded(CatalogueRead, get(workshop::mechanics)),
        )
        .route("/v1/assets", guarded(CatalogueRead, get(workshop::assets)))
        .route(
            "/v1/assets/{id}/availability",
            guarded(BookingRead, get(bookings::availability)),
        )
        .route(
            "/v1/bookings",
            guarded(BookingWrite, post(bookings::create)),
        )
        .route(
            "/v1/bookings/{id}",
            guarded(BookingRead, get(bookings::get_booking)),
        )
        .route(
            "/v1/bookings/{id}/confirm",
            guarded(BookingWrite, post(bookings::confirm)),
        )
        .route(
            "/v1/bookings/{id}/cancel",
            guarded(BookingWrite, post(bookings::cancel)),
        )
        .route(
            "/v1/bookings/{id}/complete",
            guarded(BookingWrite, post(bookings::complete)),
        )
        .route(
            "/v1/bookings/{id}/handover",
            guarded(BookingWrite, post(rentals::hand_over)),
        )
        .route(
            "/v1/bookings/{id}/return",
            guarded(BookingWrite, post(rentals::take_back)),
        )
        .route(
            "/v1/bookings/{id}/rental",
            guarded(BookingRead, get(rentals::get_rental)),
        )
        .route(
            "/v1/bookings/{id}/print",
            guarded(PrintWrite, post(rentals::print)),
        )
        .route("/v1/tariffs", guarded(CatalogueRead, get(rentals::tariffs)))
        .route(
            "/v1/waitlist",
            guarded(BookingWrite, post(bookings::join_waitlist)),
        )
        .route("/v1/invoices", guarded(InvoiceWrite, post(billing::issue)))
        .route(
            "/v1/invoices/{id}",
            guarded(InvoiceRead, get(billing::get_invoice)),
        )
        .route(
            "/v1/invoices/{id}/payments",
            guarded(PaymentWrite, post(billing::pay)),
        )
        .route(
            "/v1/invoices/{id}/credit-notes",
            guarded(InvoiceWrite, post(billing::credit)),
        )
        .route(
            "/v1/payments/{id}/void",
            guarded(PaymentWrite, post(billing::void_payment)),
        )
        .route(
            "/v1/invoices/{id}/print",
            guarded(PrintWrite, post(billing::print)),
        )
        .route(
            "/v1/print-jobs/{id}",
            guarded(PrintRead, get(billing::print_job)),
        )
        .route(
            "/v1/inspections",
            guarded(InspectionWrite, post(inspections::create)),
        )
        .route(
            "/v1/inspections/{id}",
            guarded(InspectionRead, get(inspections::get_inspection)),
        )
        .route(
            "/v1/inspections/{id}/verify",
            guarded(InspectionRead, get(inspections::verify)),
        )
        .route(
            "/v1/blobs/{sha256}",
            guarded(BlobWrite, put(blobs::put_blob)).merge(guarded(
                BlobRead,
                get(blobs::get_blob).head(blobs::head_blob),
            )),
        )
        .route("/v1/pick-slips", guarded(PickSlip, post(scanner::open)))
        .route(
            "/v1/pick-slips/{id}",
            guarded(PickSlip, get(scanner::get_pick_slip)),
        )
        .route(
            "/v1/pick-slips/{id}/close",
            guarded(PickSlip, post(scanner::close)),
        )
        .route("/v1/scanner", guarded(ScannerRead, get(scanner::scanner)))
        .route("/v1/sync/status", guarded(SyncRead, get(ops::sync_status)))
        .route("/v1/devices", guarded(DeviceAdmin, get(ops::list_devices)))
        .route(
            "/v1/devices/self/rotate",
            guarded(RotateOwnCredentials, post(ops::rotate_credentials)),
        )
        .route(
            "/v1/devices/{id}/revoke",
            guarded(DeviceAdmin, post(ops::revoke_device)),
        )
        .route(
            "/v1/staff/sessions",
            guarded(StaffSession, post(staff::open_session)),
        )
        .route(
            "/v1/staff/sessions/current",
            guarded(StaffSession, delete(staff::end_session)),
        )
        .route("/v1/shifts", guarded(CashDrawer, post(staff::open_shift)))
        .route(
            "/v1/shifts/{id}",
            guarded(CashDrawer, get(staff::get_shift)),
        )
        .route(
            "/v1/shifts/{id}/close",
            guarded(CashDrawer, post(staff::close_shift)),
        )
        .route("/v1/days/{date}", guarded(CashDrawer, get(staff::get_day)))
        .route(
            "/v1/days/{date}/close",
            guarded(CashDrawer, post(staff::close_day)),
        )
        .route(
            "/v1/days/{date}/reopen",
            guarded(CashDrawer, post(staff::reopen_day)),
        )
        .route("/v1/openapi.json", guarded(Docs, get(ops::openapi)));

    let timeout = Duration::from_millis(state.config.api.request_timeout_ms);
    // A card payment waits for the customer at the terminal: its request may take as long as
    // `edc.timeout_ms` plus the protocol's ACK waits.
    let pay_timeout = if state.edc.configured() {
        timeout.max(
            Duration::from_millis(state.config.edc.timeout_ms)
                + Duration::from_millis(
                    crate::edc::protocol::ACK_WAIT_MS
                        * (u64::from(crate::edc::protocol::MAX_SENDS) + 2),
                ),
        )
    } else {
        timeout
    };
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("no such path; see /v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.api.max_body_bytes))
        .layer(middleware::from_fn(move |req, next| {
            observe(timeout, pay_timeout, req, next)
        }))
        .with_state(state)
}

/// Request metrics and the request timeout, around everything.
async fn observe(timeout: Duration, pay_timeout: Duration, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let timeout = if route == edc::PAY_ROUTE {
        pay_timeout
    } else {
        timeout
    };
    let method = req.method().as_str().to_owned();
    let response = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the appliance did not answer in time; retry with the same Idempotency-Key",
        )
        .into_response(),
    };
    crate::metrics::http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Authenticate the bearer token and check the role may do `action`.
async fn authorize(
    State((state, action)): State<(AppState, Action)>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("this path needs Authorization: Bearer <token>; pair the device first (POST /v1/pair)"))?
        .to_owned();
    let key = devices::sha256_hex(&token);
    let unknown = || {
        ApiError::unauthorized(
            "this token is unknown or was revoked (an MQTT password is not a token); pair the device again",
        )
    };
    let device = match state.tokens.get(&key) {
        Ok(d) => d,
        Err(generation) => {
            let lookup = token.clone();
            match state
                .store
                .read(move |c| devices::authenticate(c, &lookup))
                .await?
            {
                None => return Err(unknown()),
                Some(devices::Bearer::Current(d)) => {
                    state.tokens.put(generation, key, d.clone());
                    d
                }
                // The first use of a rotated token: from now on only the new pair works. The
                // cache may still hold the old token, so it is emptied after the commit (and not
                // refilled by this request, whose generation is older).
                Some(devices::Bearer::Pending) => {
                    let d = state
                        .store
                        .write(move |w| devices::complete_rotation(w, &token))
                        .await;
                    state.tokens.clear();
                    let d = d?.ok_or_else(unknown)?;
                    tracing::info!(device = %d.id, "rotated credentials in use; the old token and MQTT password stop");
                    d
                }
            }
        }
    };
    if !allows(device.role, action) {
        return Err(ApiError::forbidden(format!(
            "a {} device may not do this ({action:?})",
            device.role.as_str()
        )));
    }
    // A staff session, when the request names one: it must be live and this device's.
    let session = match req.headers().get(staff::STAFF_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| state.staff.touch(t.trim(), &device.id))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "staff_session_invalid",
                        "this Sentra-Staff session is unknown, ended, idle too long or another device's; open one again (POST /v1/staff/sessions)",
                    )
                })?,
        ),
    };
    req.extensions_mut().insert(Caller(device, session));
    Ok(next.run(req).await)
}

impl AppState {
    pub fn new(store: Store, config: Config, sync: crate::sync::SyncHandle) -> Self {
        Self {
            edc: crate::edc::EdcHandle::from_config(&config.edc),
            uploads: Arc::new(tokio::sync::Semaphore::new(
                config.blobs.max_concurrent_uploads,
            )),
            store,
            config: Arc::new(config),
            started: Instant::now(),
            sync,
            tokens: TokenCache::default(),
            scanner: crate::scanner::ScannerHandle::default(),
            mqtt_port: None,
            mqtt_plain_port: None,
            staff: Sessions::default(),
        }
    }

    /// Run a write for `caller`, idempotently when the request carries an `Idempotency-Key`:
    /// the check, the change, its outbox event and the stored answer are one transaction.
    pub async fn write<T, F>(
        &self,
        caller: &Caller,
        key: IdempotencyKey,
        fp: Fingerprint,
        status: StatusCode,
        f: F,
    ) -> Result<Response, ApiError>
    where
        T: Serialize + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>, &Device) -> store::Result<T> + Send + 'static,
    {
        let device = caller.0.clone();
        let staff = caller.1.as_ref().map(|s| s.staff_id.clone());
        let (answer, replayed) = self
            .store
            .write(move |w| {
                w.act_as(&device.id, staff.as_deref());
                if let Some(k) = &key.0
                    && let Some(a) = idempotency::replay(w, &device.id, k, &fp.0)?
                {
                    return Ok((a, true));
                }
                let value = f(w, &device)?;
                let answer = Answer {
                    status: status.as_u16(),
                    body: serde_json::to_string(&value).expect("response types always serialise"),
                };
                if let Some(k) = &key.0 {
                    idempotency::remember(w, &device.id, k, &fp.0, &answer)?;
                }
                Ok((answer, false))
            })
            .await?;
        let mut response = json_response(
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
            answer.body,
        );
        if replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        Ok(response)
    }
}

/// A query string that does not parse: 400 with the error envelope (axum's own is plain text).
pub(crate) fn query_rejected(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}

/// An id from the URL path, validated like any other input.
pub(crate) fn path_id(id: &str) -> Result<String, ApiError> {
    crate::domain::Id::parse(id)
        .map(String::from)
        .map_err(|e| ApiError::field("id", e.0))
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Serve until `cancel`, within `api.max_connections` and `api.header_read_timeout_secs`;
/// requests in flight finish first.
/// `/healthz` and `/readyz` alone, for the loopback door the daemon keeps on `api.listen`'s
/// port when the LAN is TLS only (see `daemon::run`).
pub async fn serve_probes(
    listener: tokio::net::TcpListener,
    state: AppState,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let limits = sentra_serve::Limits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(state.config.api.header_read_timeout_secs),
    };
    let probes = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(|| async {
            ApiError::not_found("only /healthz and /readyz here; the API is served over HTTPS")
        })
        .with_state(state);
    sentra_serve::serve(
        listener,
        probes,
        limits,
        async move { cancel.cancelled().await },
    )
    .await;
    Ok(())
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let limits = sentra_serve::Limits {
        max_connections: state.config.api.max_connections,
        header_read_timeout: Duration::from_secs(state.config.api.header_read_timeout_secs),
    };
    let shutdown = async move { cancel.cancelled().await };
    match tls {
        Some(tls) => {
            sentra_serve::serve_tls(listener, router(state), limits, tls, shutdown).await;
        }
        None => sentra_serve::serve(listener, router(state), limits, shutdown).await,
    }
    Ok(())
}

/// What a print request asks for: `?document=` (absent: the first of `allowed`), checked against
/// `allowed`, and the request's fingerprint with it (the path alone does not say which paper).
pub(crate) fn print_request(
    document: Option<String>,
    allowed: &[&str],
    fp: Fingerprint,
) -> Result<(String, Fingerprint), ApiError> {
    let document = match document {
        Some(d) => d,
        None => allowed.first().map(|d| (*d).to_owned()).unwrap_or_default(),
    };
    if !allowed.contains(&document.as_str()) {
        return Err(ApiError::field(
            "document",
            format!(
                "{document:?} is not a document here; expected one of {}",
                allowed.join(", ")
            ),
        ));
    }
    let fp = Fingerprint(format!("{}:{document}", fp.0));
    Ok((document, fp))
}
