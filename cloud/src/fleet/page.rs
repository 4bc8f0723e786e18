//! The fleet page for the cloud team: `GET /fleet` (the fleet at a glance), `GET
//! /fleet/devices/{id}`, `GET /fleet/rollouts/{id}` (with pause, resume and abort buttons), plain
//! server-rendered HTML that refreshes itself (meta refresh), no JavaScript, readable from a
//! phone's width up.
//!
//! Who may look: an operator API token, as `Authorization: Bearer` (curl, scripts) or through a
//! login: the form at `/fleet` trades the token for a session cookie (`POST /fleet/login`), and
//! `POST /v1/fleet/login-links` (operator token) makes a one-time link that does the same from
//! another device (a phone): the link opens a page whose button POSTs its code, so a chat app or
//! mail scanner that fetches the link to preview it does not use it up. Every fleet page answers
//! with `Referrer-Policy: no-referrer`. The cookie holds a random session secret, never the token; the
//! database holds its SHA-256. Sessions end after [`SESSION_TTL`], on logout, and at once when
//! their token is revoked.
//!
//! Invariants:
//! - every value shown is HTML-escaped ([`esc`]); nothing from a device reaches the page raw;
//! - state-changing forms are POSTs that also need the cookie, which is `SameSite=Strict`, and a
//!   same-origin `Origin` or `Sec-Fetch-Site` when the browser sends one: another site cannot
//!   press the buttons for you.

use std::fmt::Write as _;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use sqlx::PgPool;

use super::rollout::{self, RolloutSummary};
use super::{DeviceView, FleetState, FleetView};
use crate::devices::auth::Caller;
use crate::devices::tokens;
use crate::web::ApiError;

/// How long a login lasts: a working day.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a login link may wait to be opened.
pub const TICKET_TTL: Duration = Duration::from_secs(300);
/// The page refreshes itself this often.
pub const REFRESH_SECS: u32 = 30;
const COOKIE: &str = "sentra_fleet";

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The operator's name, from a Bearer operator token or a live session cookie; None if neither.
async fn operator(db: &PgPool, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let db_error = |error: sqlx::Error| ApiError::database(&error);
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT name FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AND role = 'operator'",
        )
        .bind(tokens::hash(token.trim()))
        .fetch_optional(db)
        .await
        .map_err(db_error)?;
        return Ok(name);
    }
    let Some(secret) = cookie(headers) else {
        return Ok(None);
    };
    sqlx::query_scalar(
        "SELECT t.name FROM fleet_sessions s JOIN api_tokens t ON t.id = s.token_id
         WHERE s.secret_hash = $1 AND NOT s.ticket AND s.expires_at > now()
           AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()) AND t.role = 'operator'",
    )
    .bind(tokens::hash(&secret))
    .fetch_optional(db)
    .await
    .map_err(db_error)
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

/// The session cookie: only for `/fleet`, never readable by scripts, only over HTTPS, never sent
/// from another site; `max_age` zero deletes it.
fn session_cookie(secret: String, max_age: Duration) -> HeaderValue {
    let cookie = Cookie::build((COOKIE, secret))
        .path("/fleet")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    // The secret is hex and the attributes fixed: always a valid header value.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A new session (or ticket) for token `token_id`; its secret.
async fn new_session(db: &PgPool, token_id: i64, ticket: bool) -> Result<String, sqlx::Error> {
    let secret = tokens::generate();
    let ttl = if ticket { TICKET_TTL } else { SESSION_TTL };
    sqlx::query(
        "INSERT INTO fleet_sessions (secret_hash, token_id, ticket, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(tokens::hash(&secret))
    .bind(token_id)
    .bind(ticket)
    .bind(ttl.as_secs_f64())
    .execute(db)
    .await?;
    Ok(secret)
}

/// Every fleet page and its redirects tell the browser to send no `Referer` onwards: a page
/// opened from a login link must not hand the link to whatever it links to or loads.
fn no_referrer(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn html(body: String) -> Response {
    no_referrer(Html(body).into_response())
}

fn logged_in(secret: &str) -> Response {
    let mut response = no_referrer(Redirect::to("/fleet").into_response());
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(secret.to_owned(), SESSION_TTL),
    );
    response
}

fn page(title: &str, refresh: bool, body: &str) -> String {
    let refresh = if refresh {
        format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">")
    } else {
        String::new()
    };
    format!(
        "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<meta name=\"referrer\" content=\"no-referrer\">{refresh}
<title>{title}</title>
<style>
body{{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:0;padding:0 1rem 2rem;color:#1d2330;background:#f5f6f8}}
header{{display:flex;flex-wrap:wrap;align-items:baseline;gap:.5rem 1rem;padding:.75rem 0}}
h1{{font-size:1.3rem;margin:0}} h2{{font-size:1.1rem;margin:1.5rem 0 .5rem}}
a{{color:#1450a3}} small,.muted{{color:#5b6475}}
.cards{{display:grid;grid-template-columns:repeat(auto-fit,minmax(8.5rem,1fr));gap:.6rem}}
.card{{background:#fff;border-radius:.5rem;padding:.7rem .9rem;box-shadow:0 1px 2px #0002}}
.card b{{display:block;font-size:1.8rem}}
.card.bad b{{color:#b3261e}} .card.good b{{color:#1e7b34}}
.rollout{{background:#fff;border-radius:.5rem;padding:.7rem .9rem;margin:.5rem 0;box-shadow:0 1px 2px #0002;border-left:.4rem solid #8a94a6}}
.rollout.state-running{{border-color:#1450a3}} .rollout.state-completed{{border-color:#1e7b34}}
.rollout.state-halted,.rollout.state-aborted{{border-color:#b3261e;background:#fdecea}}
.rollout.state-paused{{border-color:#c77700}}
.badge{{display:inline-block;font-weight:700;font-size:.8rem;padding:.1rem .45rem;border-radius:.3rem;background:#e3e7ee}}
.badge.halted,.badge.aborted,.badge.offline,.badge.failed{{background:#b3261e;color:#fff}}
.badge.running,.badge.online{{background:#1450a3;color:#fff}} .badge.completed,.badge.succeeded{{background:#1e7b34;color:#fff}}
.badge.paused{{background:#c77700;color:#fff}}
.bar{{height:.6rem;background:#e3e7ee;border-radius:.3rem;overflow:hidden;display:flex;margin:.4rem 0}}
.bar .ok{{background:#1e7b34}} .bar .fail{{background:#b3261e}} .bar .busy{{background:#1450a3}}
.scroll{{overflow-x:auto}} table{{border-collapse:collapse;width:100%;background:#fff;font-size:.92rem}}
th,td{{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e3e7ee;vertical-align:top}}
tr.attention td:first-child{{border-left:.3rem solid #b3261e}}
ul.attention{{margin:0;padding-left:1rem;color:#b3261e}}
form.inline{{display:inline}} button{{font-size:.95rem;padding:.35rem .8rem;margin:.2rem .3rem .2rem 0;border-radius:.3rem;border:1px solid #8a94a6;background:#fff}}
button.danger{{border-color:#b3261e;color:#b3261e}}
</style></head><body>
{body}
</body></html>"
    )
}

fn login_page(message: Option<&str>) -> Response {
    let message = message.map_or(String::new(), |m| {
        format!("<p class=\"badge failed\">{}</p>", esc(m))
    });
    let body = format!(
        "<header><h1>Sentra fleet</h1></header>
<p>Sign in with an operator API token (<code>sentra-cloud api-token --name NAME --role operator</code>).</p>
{message}
<form method=\"post\" action=\"/fleet/login\">
<label>Operator token<br><input name=\"token\" type=\"password\" autocomplete=\"current-password\" size=\"40\" required></label>
<p><button type=\"submit\">Sign in</button></p></form>"
    );
    no_referrer(
        (
            StatusCode::UNAUTHORIZED,
            Html(page("Sentra fleet: sign in", false, &body)),
        )
            .into_response(),
    )
}

/// The page a login link opens: one button that POSTs the link's code. Opening the link (a GET,
/// which chat apps and mail scanners do to preview it) signs nobody in and does not use it up.
fn ticket_page(ticket: &str) -> Response {
    let body = format!(
        "<header><h1>Sentra fleet</h1></header>
<p>This one-time link signs this browser in to the fleet page.</p>
<form method=\"post\" action=\"/fleet/login\">
<input type=\"hidden\" name=\"ticket\" value=\"{}\">
<p><button type=\"submit\">Sign in</button></p></form>",
        esc(ticket)
    );
    let mut response = html(page("Sentra fleet: sign in", false, &body));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn nav(name: &str) -> String {
    format!(
        "<header><h1><a href=\"/fleet\">Sentra fleet</a></h1>
<small>signed in as {} · refreshes every {REFRESH_SECS} s</small>
<form class=\"inline\" method=\"post\" action=\"/fleet/logout\"><button type=\"submit\">Sign out</button></form></header>",
        esc(name)
    )
}

fn rollout_card(r: &RolloutSummary, with_buttons: bool) -> String {
    let total = r.devices.max(1);
    let pct = |n: i64| n * 100 / total;
    let wave = if r.current_wave == 0 {
        "canaries".to_owned()
    } else {
        format!(
            "wave {} of {} ({} %)",
            r.current_wave,
            r.waves.len(),
            r.waves
                .get(usize::try_from(r.current_wave - 1).unwrap_or(0))
                .copied()
                .unwrap_or(0)
        )
    };
    let reason = r.reason.as_deref().map_or(String::new(), |reason| {
        format!("<p class=\"reason\"><b>{}</b></p>", esc(reason))
    });
    let mut buttons = String::new();
    if with_buttons {
        for (action, label, class, states) in [
            ("pause", "Pause", "", &["running"][..]),
            ("resume", "Resume", "", &["paused"][..]),
            (
                "abort",
                "Abort",
                "danger",
                &["running", "paused", "halted"][..],
            ),
        ] {
            if states.contains(&r.state.as_str()) {
                let _ = write!(
                    buttons,
                    "<form class=\"inline\" method=\"post\" action=\"/fleet/rollouts/{}/{action}\"><button class=\"{class}\" type=\"submit\">{label}</button></form>",
                    esc(&r.id)
                );
            }
        }
    }
    format!(
        "<div class=\"rollout state-{state}\" data-rollout=\"{id}\">
<a href=\"/fleet/rollouts/{id}\"><b>{version}</b> to channel <b>{channel}</b></a>
<span class=\"badge {state}\">{state_upper}</span> <small>{wave}</small>
{reason}
<div class=\"bar\" title=\"succeeded / failed / in progress\"><span class=\"ok\" style=\"width:{ok}%\"></span><span class=\"fail\" style=\"width:{fail}%\"></span><span class=\"busy\" style=\"width:{busy}%\"></span></div>
<small>{succeeded} succeeded · {failed} failed · {updating} updating · {offered} told · {admitted} of {devices} devices admitted · go on at {success} %, halt at {failure} % failed</small>
<div>{buttons}</div></div>",
        state = esc(&r.state),
        state_upper = esc(&r.state.to_uppercase()),
        id = esc(&r.id),
        version = esc(&r.version),
        channel = esc(&r.channel),
        ok = pct(r.succeeded),
        fail = pct(r.failed),
        busy = pct(r.updating + r.offered),
        succeeded = r.succeeded,
        failed = r.failed,
        updating = r.updating,
        offered = r.offered,
        admitted = r.admitted,
        devices = r.devices,
        success = r.success_threshold_pct,
        failure = r.failure_threshold_pct,
    )
}

fn device_row(d: &DeviceView) -> String {
    let state = if d.online {
        "<span class=\"badge online\">online</span>".to_owned()
    } else {
        match d.offline_secs {
            Some(secs) => format!(
                "<span class=\"badge offline\">offline</span> <small>for {}</small>",
                esc(&super::human(secs))
            ),
            None => "<span class=\"badge offline\">never seen</span>".to_owned(),
        }
    };
    let backlog = d.heartbeat.as_ref().map_or(String::new(), |b| {
        format!(
            "{} <small>({} KiB)</small>",
            b.backlog.count,
            b.backlog.bytes / 1024
        )
    });
    let attention = if d.attention.is_empty() {
        String::new()
    } else {
        let items: String = d
            .attention
            .iter()
            .map(|a| format!("<li>{}</li>", esc(a)))
            .collect();
        format!("<ul class=\"attention\">{items}</ul>")
    };
    format!(
        "<tr class=\"{class}\" data-device=\"{id}\"><td><a href=\"/fleet/devices/{id}\">{branch}</a><br><small>{branch_name} · {host}</small></td><td>{version}<br><small>{channel}</small></td><td>{state}</td><td>{update}</td><td>{backlog}</td><td>{attention}</td></tr>",
        class = if d.attention.is_empty() {
            ""
        } else {
            "attention"
        },
        id = esc(&d.id),
        branch = esc(&d.branch_id),
        branch_name = esc(&d.branch_name),
        host = esc(d.hostname.as_deref().unwrap_or("")),
        version = esc(d.version.as_deref().unwrap_or("?")),
        channel = esc(&d.channel),
        update = esc(d.update_state.as_deref().unwrap_or("")),
    )
}

fn devices_table(devices: &[DeviceView]) -> String {
    let rows: String = devices.iter().map(device_row).collect();
    format!(
        "<div class=\"scroll\"><table><thead><tr><th>Branch</th><th>Version</th><th>State</th><th>Update</th><th>Backlog</th><th>Needs attention</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

/// The overview's HTML.
pub fn overview_html(name: &str, view: &FleetView) -> String {
    let s = &view.summary;
    let mut body = nav(name);
    let _ = write!(
        body,
        "<section class=\"cards\">
<div class=\"card\"><b id=\"count-devices\">{}</b>devices</div>
<div class=\"card good\"><b id=\"count-online\">{}</b>online</div>
<div class=\"card{}\"><b id=\"count-offline\">{}</b>offline</div>
<div class=\"card{}\"><b id=\"count-attention\">{}</b>need attention</div>
</section>",
        s.devices,
        s.online,
        if s.offline > 0 { " bad" } else { "" },
        s.offline,
        if s.needing_attention > 0 { " bad" } else { "" },
        s.needing_attention
    );
    body.push_str("<h2>Rollouts</h2>");
    if view.rollouts.is_empty() {
        body.push_str("<p class=\"muted\">No rollouts yet.</p>");
    }
    for r in &view.rollouts {
        body.push_str(&rollout_card(r, true));
    }
    body.push_str("<h2>Versions</h2><p>");
    for (version, count) in &s.by_version {
        let _ = write!(
            body,
            "<span class=\"badge\">{} × {count}</span> ",
            esc(version)
        );
    }
    body.push_str("</p><h2>Devices</h2><p class=\"muted\">Those needing attention first, longest offline first.</p>");
    body.push_str(&devices_table(&view.devices));
    page("Sentra fleet", true, &body)
}

async fn authorized(state: &FleetState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    operator(&state.db, headers).await
}

/// `GET /fleet`.
pub async fn overview(
    State(state): State<FleetState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(name) = authorized(&state, &headers).await? else {
        return Ok(login_page(None));
    };
    let view = super::fleet_view(&state.db, state.fleet.offline_after)
        .await
        .map_err(|error| ApiError::database(&error))?;
    Ok(html(overview_html(&name, &view)))
}

/// `GET /fleet/devices/{id}`.
pub async fn device(
    State(state): State<FleetState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(name) = authorized(&state, &headers).await? else {
        return Ok(login_page(None));
    };
    let detail = super::device_detail(&state.db, &id, state.fleet.offline_after).await?;
    let d = &detail.device;
    let mut body = nav(&name);
    let _ = write!(
        body,
        "<h2>{} <small>{}</small></h2>{}",
        esc(&d.branch_id),
        esc(&d.branch_name),
        devices_table(std::slice::from_ref(d))
    );
    if let Some(beat) = &d.heartbeat {
        let opt = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
        let mib =
            |v: Option<u64>| v.map_or("?".to_owned(), |v| format!("{} MiB", v / (1024 * 1024)));
        let facts = [
            ("Device", d.id.clone()),
            ("Last heartbeat", d.last_seen.clone().unwrap_or_default()),
            (
                "Uptime",
                super::human(i64::try_from(beat.uptime_secs).unwrap_or(i64::MAX)),
            ),
            (
                "Update",
                format!(
                    "{} {} {}",
                    beat.update.state.as_str(),
                    beat.update.target_version.as_deref().unwrap_or(""),
                    beat.update.reason.as_deref().unwrap_or("")
                ),
            ),
            ("Healthy", beat.healthy.to_string()),
            (
                "Sync backlog",
                format!(
                    "{} events, {} bytes, oldest {}",
                    beat.backlog.count,
                    beat.backlog.bytes,
                    beat.backlog
                        .oldest_age_secs
                        .map_or("-".to_owned(), |s| super::human(
                            i64::try_from(s).unwrap_or(i64::MAX)
                        ))
                ),
            ),
            ("Parked events", beat.parked.to_string()),
            ("Clock skew", format!("{} ms", beat.skew_ms)),
            (
                "Disk free / total",
                format!(
                    "{} / {}",
                    mib(beat.resources.disk_free_bytes),
                    mib(beat.resources.disk_total_bytes)
                ),
            ),
            (
                "Memory available / total",
                format!(
                    "{} / {}",
                    mib(beat.resources.mem_available_bytes),
                    mib(beat.resources.mem_total_bytes)
                ),
            ),
            ("Store", mib(beat.resources.store_bytes)),
            (
                "Printer",
                beat.printer.clone().unwrap_or_else(|| "-".to_owned()),
            ),
            (
                "Scanner",
                beat.scanner.clone().unwrap_or_else(|| "-".to_owned()),
            ),
            (
                "Broker",
                beat.broker.clone().unwrap_or_else(|| "-".to_owned()),
            ),
            ("Paired clients", opt(beat.paired_clients)),
        ];
        body.push_str("<h2>Now</h2><div class=\"scroll\"><table>");
        for (label, value) in facts {
            let _ = write!(body, "<tr><th>{label}</th><td>{}</td></tr>", esc(&value));
        }
        body.push_str("</table></div>");
    }
    body.push_str("<h2>Rollouts</h2><div class=\"scroll\"><table><tr><th>Release</th><th>Wave</th><th>State</th><th>Reason</th></tr>");
    for r in &detail.rollouts {
        let _ = write!(
            body,
            "<tr><td><a href=\"/fleet/rollouts/{id}\">{}</a></td><td>{}</td><td><span class=\"badge {state}\">{state}</span></td><td>{}</td></tr>",
            esc(&r.version),
            r.wave.map_or("-".to_owned(), |w| w.to_string()),
            esc(r.reason.as_deref().unwrap_or("")),
            id = esc(&r.rollout_id),
            state = esc(&r.state),
        );
    }
    body.push_str("</table></div><h2>Last 24 hours</h2><div class=\"scroll\"><table><tr><th>At</th><th>Version</th><th>Update</th><th>Healthy</th><th>Backlog</th><th>Skew</th></tr>");
    // Newest first, at most one row per ten minutes: a readable day on a phone.
    let mut last_bucket = None;
    for point in detail.history.iter().rev() {
        let bucket = point.at.get(..15).map(str::to_owned);
        if bucket == last_bucket {
            continue;
        }
        last_bucket = bucket;
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td></tr>",
            esc(&point.at),
            esc(&point.version),
            esc(&point.update_state),
            point.healthy,
            point.backlog,
            point.skew_ms
        );
    }
    body.push_str("</table></div>");
    Ok(html(page("Sentra fleet: device", true, &body)))
}

/// `GET /fleet/rollouts/{id}`.
pub async fn rollout(
    State(state): State<FleetState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(name) = authorized(&state, &headers).await? else {
        return Ok(login_page(None));
    };
    let detail = super::rollout_detail(&state.db, &id).await?;
    let mut body = nav(&name);
    body.push_str("<h2>Rollout</h2>");
    body.push_str(&rollout_card(&detail.rollout, true));
    let _ = write!(
        body,
        "<p><small>waves: canaries, then {} · started {} by {}</small></p>",
        esc(&detail
            .rollout
            .waves
            .iter()
            .map(|p| format!("{p} %"))
            .collect::<Vec<_>>()
            .join(", ")),
        esc(&detail.rollout.created_at),
        esc(&detail.rollout.created_by)
    );
    body.push_str("<h2>Devices</h2><div class=\"scroll\"><table><tr><th>Branch</th><th>Wave</th><th>State</th><th>Reason</th><th>Since</th></tr>");
    for d in &detail.devices {
        let _ = write!(
            body,
            "<tr><td><a href=\"/fleet/devices/{id}\">{}</a></td><td>{}</td><td><span class=\"badge {state}\">{state}</span></td><td>{}</td><td>{}</td></tr>",
            esc(&d.branch_id),
            d.wave.map_or("not in it".to_owned(), |w| if w == 0 {
                "canary".to_owned()
            } else {
                w.to_string()
            }),
            esc(d.reason.as_deref().unwrap_or("")),
            esc(&d.updated_at),
            id = esc(&d.device_id),
            state = esc(&d.state),
        );
    }
    body.push_str("</table></div>");
    Ok(html(page("Sentra fleet: rollout", true, &body)))
}

/// True when the browser says the form came from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, rest)| rest) != Some(host),
        _ => false,
    }
}

/// `POST /fleet/rollouts/{id}/{action}` (the page's buttons).
pub async fn rollout_action(
    State(state): State<FleetState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        return Err(ApiError::Forbidden("cross-site form refused".to_owned()));
    }
    let Some(name) = authorized(&state, &headers).await? else {
        return Ok(login_page(None));
    };
    let action = rollout::Action::parse(&action)
        .ok_or_else(|| ApiError::NotFound(format!("no rollout action {action:?}")))?;
    rollout::act(&state.db, &id, action, &name).await?;
    Ok(no_referrer(
        Redirect::to(&format!("/fleet/rollouts/{id}")).into_response(),
    ))
}

/// The sign-in form: an operator token (the form at `/fleet`) or a login link's code (the button
/// of the page the link opens).
#[derive(Deserialize)]
pub struct LoginForm {
    token: Option<String>,
    ticket: Option<String>,
}

/// `POST /fleet/login`: an operator token, or a login link's one-time code, for a session cookie.
pub async fn login(
    State(state): State<FleetState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        return Err(ApiError::Forbidden("cross-site form refused".to_owned()));
    }
    let token = match (form.token, form.ticket) {
        (Some(token), None) => token,
        (None, Some(ticket)) => return redeem_ticket(&state, &ticket).await,
        _ => {
            return Err(ApiError::MalformedBody(
                "expected one of the form fields token or ticket".to_owned(),
            ));
        }
    };
    let token: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, name FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AND role = 'operator'",
    )
    .bind(tokens::hash(token.trim()))
    .fetch_optional(&state.db)
    .await
    .map_err(|error| ApiError::database(&error))?;
    let Some((token_id, name)) = token else {
        tracing::warn!("fleet page: sign-in with an unknown or non-operator token");
        return Ok(login_page(Some(
            "that token is unknown, revoked, or not an operator token",
        )));
    };
    let secret = new_session(&state.db, token_id, false)
        .await
        .map_err(|error| ApiError::database(&error))?;
    tracing::info!(%name, "fleet page: signed in");
    Ok(logged_in(&secret))
}

#[derive(Deserialize)]
pub struct TicketQuery {
    ticket: String,
}

/// `GET /fleet/login?ticket=T`, the page a one-time login link opens: a button that POSTs the
/// code. The GET changes nothing, so a link preview cannot use the link up.
pub async fn login_link(Query(query): Query<TicketQuery>) -> Response {
    ticket_page(&query.ticket)
}

/// The login link's code for a session cookie, once.
async fn redeem_ticket(state: &FleetState, ticket: &str) -> Result<Response, ApiError> {
    let token_id: Option<i64> = sqlx::query_scalar(
        "DELETE FROM fleet_sessions WHERE secret_hash = $1 AND ticket AND expires_at > now() RETURNING token_id",
    )
    .bind(tokens::hash(ticket))
    .fetch_optional(&state.db)
    .await
    .map_err(|error| ApiError::database(&error))?;
    let Some(token_id) = token_id else {
        return Ok(login_page(Some(
            "that login link is unknown, used or expired; make a new one",
        )));
    };
    let secret = new_session(&state.db, token_id, false)
        .await
        .map_err(|error| ApiError::database(&error))?;
    Ok(logged_in(&secret))
}

/// `POST /fleet/logout`.
pub async fn logout(
    State(state): State<FleetState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(secret) = cookie(&headers) {
        sqlx::query("DELETE FROM fleet_sessions WHERE secret_hash = $1")
            .bind(tokens::hash(&secret))
            .execute(&state.db)
            .await
            .map_err(|error| ApiError::database(&error))?;
    }
    let mut response = Redirect::to("/fleet").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(String::new(), Duration::ZERO),
    );
    Ok(response)
}

/// `POST /v1/fleet/login-links` (operator token): `{"url": "/fleet/login?ticket=…", "expires_in_secs"}`,
/// a link whose page signs in the first browser to press its button (for a phone) within
/// [`TICKET_TTL`].
#[utoipa::path(post, path = "/v1/fleet/login-links", tag = "fleet", responses((status = 200, description = "done", body = Object), (status = 429, description = "too many sign-ins from this address")), security(("bearer" = [])))]
pub async fn make_login_link(
    State(state): State<FleetState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let operator = caller.operator()?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("an operator token is needed".to_owned()))?;
    let token_id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens WHERE token_hash = $1")
        .bind(tokens::hash(token.trim()))
        .fetch_one(&state.db)
        .await
        .map_err(|error| ApiError::database(&error))?;
    let ticket = new_session(&state.db, token_id, true)
        .await
        .map_err(|error| ApiError::database(&error))?;
    tracing::info!(name = %operator.name, "fleet page: login link made");
    Ok(axum::Json(serde_json::json!({
        "url": format!("/fleet/login?ticket={ticket}"),
        "expires_in_secs": TICKET_TTL.as_secs(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_strict_and_read_back() {
        let set = session_cookie("ab12".to_owned(), SESSION_TTL);
        let set = set.to_str().expect("ASCII");
        assert!(set.starts_with("sentra_fleet=ab12;"), "{set}");
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/fleet",
            &format!("Max-Age={}", SESSION_TTL.as_secs()),
        ] {
            assert!(
                set.split("; ").any(|a| a == attribute),
                "{attribute} in {set}"
            );
        }
        let gone = session_cookie(String::new(), Duration::ZERO);
        assert!(gone.to_str().expect("ASCII").contains("Max-Age=0"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; sentra_fleet=ab12; x=y"),
        );
        assert_eq!(cookie(&headers).as_deref(), Some("ab12"));
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn cross_site_forms_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!cross_site(&headers));
        headers.insert(header::HOST, HeaderValue::from_static("cloud:8090"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://cloud:8090"),
        );
        assert!(!cross_site(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&headers));
    }
}
