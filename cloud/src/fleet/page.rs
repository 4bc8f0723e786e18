//! The fleet page for the cloud team: `GET /fleet` (the fleet at a glance, its devices filtered
//! and in pages by a plain GET form: [`super::filter`]), `GET /fleet/devices/{id}`, `GET
//! /fleet/rollouts/{id}` (with pause, resume and abort buttons), server-rendered HTML readable
//! from a phone's width up. Charts are inline SVG drawn here on the server ([`super::charts`]),
//! each with its figures as text. The overview keeps itself current without reloading: a small
//! inline script (allowed by its hash in the page's `Content-Security-Policy`, nothing else may
//! run) asks `GET /fleet/live` with the page's own query every [`LIVE_POLL_SECS`] and puts the
//! counts and the rows it answers in place, leaving scroll position and focus alone; without
//! scripts the page works the same and has a Refresh link. No page refreshes itself.
//!
//! Pause, abort and the resume of a halted rollout ask first: the button's POST answers a page
//! that says what will happen (and, for a halted rollout, asks what was fixed); only its own POST,
//! with `confirm=yes`, acts. That works with scripts off, and a stray click does nothing.
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
//! - every value shown is HTML-escaped: maud's `html!` escapes whatever it splices (the charts'
//!   and the QR's SVG included), and `PreEscaped` wraps only the constant style sheet and script,
//!   and a device row's cells as `html!` itself rendered them; nothing from a device reaches the
//!   page raw (nor the rows `/fleet/live` hands the script, which are the same rendering);
//! - state-changing forms are POSTs that also need the cookie, which is `SameSite=Strict`, and a
//!   same-origin `Origin` or `Sec-Fetch-Site` when the browser sends one: another site cannot
//!   press the buttons for you.

use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use sqlx::PgPool;

use super::charts::{self, HourCount, Unit};
use super::filter::{Filter, StateFilter};
use super::rollout::{self, RolloutSummary};
use super::{
    DeviceDetail, DeviceView, FleetState, FleetView, HistoryPoint, PageInfo, RolloutDetail,
};
use crate::devices::auth::Caller;
use crate::devices::tokens;
use crate::web::ApiError;

/// How long a login lasts: a working day.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a login link may wait to be opened.
pub const TICKET_TTL: Duration = Duration::from_secs(300);
/// How often a page that asks refreshes itself. None does: a meta refresh is an automatic change
/// a reader cannot stop (WCAG 2.2.1, axe's `meta-refresh`), so the pages are reloaded by hand.
pub const REFRESH_SECS: u32 = 30;
/// The overview's script asks for fresh counts and rows this often.
pub const LIVE_POLL_SECS: u32 = 15;
/// The page sizes the overview's form offers.
const PAGE_SIZES: [u32; 4] = [25, 50, 100, 200];
const COOKIE: &str = "sentra_fleet";

/// The operator's name, from a Bearer operator token or a live session cookie; None if neither.
async fn operator(db: &PgPool, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    Ok(operator_token(db, headers).await?.map(|(_, name)| name))
}

/// The operator's token id and name, from a Bearer operator token or a live session cookie.
async fn operator_token(
    db: &PgPool,
    headers: &HeaderMap,
) -> Result<Option<(i64, String)>, ApiError> {
    let db_error = |error: sqlx::Error| ApiError::database(&error);
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        return sqlx::query_as(
            "SELECT id, name FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AND role = 'operator'",
        )
        .bind(tokens::hash(token.trim()))
        .fetch_optional(db)
        .await
        .map_err(db_error);
    }
    let Some(secret) = cookie(headers) else {
        return Ok(None);
    };
    sqlx::query_as(
        "SELECT t.id, t.name FROM fleet_sessions s JOIN api_tokens t ON t.id = s.token_id
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

fn html(body: Markup) -> Response {
    no_referrer(Html(body.into_string()).into_response())
}

fn logged_in(secret: &str) -> Response {
    let mut response = no_referrer(Redirect::to("/fleet").into_response());
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(secret.to_owned(), SESSION_TTL),
    );
    response
}

/// The pages' style sheet: a constant, the only text a page takes unescaped.
const STYLE: &str = "
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:0;padding:0 1rem 2rem;color:#1d2330;background:#f5f6f8}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.5rem 1rem;padding:.75rem 0}
h1{font-size:1.3rem;margin:0} h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
a{color:#1450a3} small,.muted{color:#5b6475}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(8.5rem,1fr));gap:.6rem}
.card{background:#fff;border-radius:.5rem;padding:.7rem .9rem;box-shadow:0 1px 2px #0002}
.card b{display:block;font-size:1.8rem}
.card.bad b{color:#b3261e} .card.good b{color:#1e7b34}
.rollout{background:#fff;border-radius:.5rem;padding:.7rem .9rem;margin:.5rem 0;box-shadow:0 1px 2px #0002;border-left:.4rem solid #8a94a6}
.rollout.state-running{border-color:#1450a3} .rollout.state-completed{border-color:#1e7b34}
.rollout.state-halted,.rollout.state-aborted{border-color:#b3261e;background:#fdecea}
.rollout.state-paused{border-color:#c77700}
.badge{display:inline-block;font-weight:700;font-size:.8rem;padding:.1rem .45rem;border-radius:.3rem;background:#e3e7ee}
.badge.halted,.badge.aborted,.badge.offline,.badge.failed{background:#b3261e;color:#fff}
.badge.running,.badge.online{background:#1450a3;color:#fff} .badge.completed,.badge.succeeded{background:#1e7b34;color:#fff}
.badge.paused{background:#9a5400;color:#fff}
.bar{height:.6rem;background:#e3e7ee;border-radius:.3rem;overflow:hidden;display:flex;margin:.4rem 0}
.bar .ok{background:#1e7b34} .bar .fail{background:#b3261e} .bar .busy{background:#1450a3}
.scroll{overflow-x:auto} table{border-collapse:collapse;width:100%;background:#fff;font-size:.92rem}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e3e7ee;vertical-align:top}
tr.attention td:first-child{border-left:.3rem solid #b3261e}
ul.attention{margin:0;padding-left:1rem;color:#b3261e}
form.inline{display:inline} button{font-size:.95rem;padding:.35rem .8rem;margin:.2rem .3rem .2rem 0;border-radius:.3rem;border:1px solid #8a94a6;background:#fff}
button.danger{border-color:#b3261e;color:#b3261e}
.sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}
figure{margin:.4rem 0} figcaption{font-size:.85rem;color:#5b6475}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:.6rem}
.panel{background:#fff;border-radius:.5rem;padding:.5rem .8rem;box-shadow:0 1px 2px #0002;margin:0}
ul.legend{list-style:none;margin:.3rem 0 0;padding:0;display:flex;flex-wrap:wrap;gap:.2rem 1rem;color:#1d2330}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:.15rem;margin-right:.3rem;vertical-align:-.1rem}
caption{text-align:left;font-weight:700;padding:.4rem .5rem} td.barcell{min-width:8rem;vertical-align:middle}
td.bad{color:#b3261e;font-weight:700} tr.current th{font-weight:700}
details{margin:.5rem 0} summary{cursor:pointer;color:#1450a3}
ol.history{background:#fff;border-radius:.5rem;padding:.6rem 1rem .6rem 2rem;box-shadow:0 1px 2px #0002}
.panel{max-width:40rem} .panel input[type=text]{font:inherit;width:100%;box-sizing:border-box;padding:.3rem}
p.error{color:#b3261e;font-weight:700}
.qr svg{width:min(18rem,80vw);height:auto}
form.filter{display:flex;flex-wrap:wrap;gap:.5rem .8rem;align-items:flex-end;margin:.5rem 0}
form.filter label{display:flex;flex-direction:column;font-size:.85rem;color:#3d4555}
form.filter input,form.filter select{font-size:1rem;padding:.3rem;max-width:14rem}
nav.pages{display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:baseline;margin:.6rem 0}
progress{width:7rem;vertical-align:middle}
";

/// The overview's script: every `data-every` seconds (while the tab is visible) it fetches
/// `/fleet/live` with the page's query and puts the counts and the rows in place. A row whose
/// `data-v` (a digest of its cells) did not change is kept as it is, so a focused link stays
/// focused; a row that moved or changed is replaced and the focus put back on the same link.
const LIVE_SCRIPT: &str = r#"(() => {
  const live = document.getElementById('live');
  const rows = document.getElementById('device-rows');
  if (!live || !rows || !window.fetch) return;
  const every = Math.max(5, Number(live.dataset.every) || 15) * 1000;
  const url = '/fleet/live' + location.search;
  const say = (text) => { live.textContent = text; };
  const apply = (data) => {
    for (const [name, value] of Object.entries(data.counts)) {
      const count = document.getElementById('count-' + name);
      if (!count) continue;
      if (count.textContent !== String(value)) count.textContent = value;
      const card = count.closest('[data-warn]');
      if (card) card.classList.toggle('bad', value > 0);
    }
    const shown = document.getElementById('shown');
    if (shown) shown.textContent = data.shown;
    const focused = rows.contains(document.activeElement) ? document.activeElement : null;
    const focusRow = focused ? focused.closest('tr') : null;
    const focusHref = focused ? focused.getAttribute('href') : null;
    const y = window.scrollY;
    const old = new Map();
    for (const tr of Array.from(rows.rows)) old.set(tr.dataset.device, tr);
    const want = data.rows.map((row) => {
      const tr = old.get(row.id);
      if (tr && tr.dataset.v === row.v) { old.delete(row.id); return tr; }
      const template = document.createElement('template');
      template.innerHTML = row.html;
      return template.content.firstElementChild;
    });
    want.forEach((tr, i) => { if (rows.rows[i] !== tr) rows.insertBefore(tr, rows.rows[i] || null); });
    for (const tr of old.values()) tr.remove();
    while (rows.rows.length > want.length) rows.rows[rows.rows.length - 1].remove();
    if (focused && document.activeElement !== focused && focusRow && focusHref) {
      const tr = Array.from(rows.rows).find((r) => r.dataset.device === focusRow.dataset.device);
      const link = tr && Array.from(tr.querySelectorAll('a')).find((a) => a.getAttribute('href') === focusHref);
      if (link) link.focus({ preventScroll: true });
    }
    if (window.scrollY !== y) window.scrollTo(window.scrollX, y);
    say('Updated ' + new Date().toLocaleTimeString() + '.');
  };
  const poll = () => {
    if (document.hidden) { setTimeout(poll, every); return; }
    fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then((r) => { if (!r.ok) throw new Error('the cloud answered ' + r.status); return r.json(); })
      .then(apply)
      .catch((e) => say('Not updated (' + e.message + '): use Refresh.'))
      .finally(() => setTimeout(poll, every));
  };
  setTimeout(poll, every);
})();"#;

/// The overview's `Content-Security-Policy`: its one script by hash, styles inline (the style
/// sheet and the rollout bars' widths), fetches and forms only to this origin, nothing else.
static OVERVIEW_CSP: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(LIVE_SCRIPT.as_bytes()));
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    );
    // Base64 and fixed ASCII: always a valid header value.
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

fn page(title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                @if refresh { meta http-equiv="refresh" content=(REFRESH_SECS); }
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
}

fn login_page(message: Option<&str>) -> Response {
    let body = html! {
        header { h1 { "Sentra fleet" } }
        p {
            "Sign in with an operator API token ("
            code { "sentra-cloud api-token --name NAME --role operator" } ")."
        }
        @if let Some(message) = message { p.badge.failed { (message) } }
        form method="post" action="/fleet/login" {
            label {
                "Operator token" br;
                input name="token" type="password" autocomplete="current-password" size="40"
                    required;
            }
            p { button type="submit" { "Sign in" } }
        }
    };
    let page = html(page("Sentra fleet: sign in", false, body));
    (StatusCode::UNAUTHORIZED, page).into_response()
}

/// The page a login link opens: one button that POSTs the link's code. Opening the link (a GET,
/// which chat apps and mail scanners do to preview it) signs nobody in and does not use it up.
fn ticket_page(ticket: &str) -> Response {
    let body = html! {
        header { h1 { "Sentra fleet" } }
        p { "This one-time link signs this browser in to the fleet page." }
        form method="post" action="/fleet/login" {
            input type="hidden" name="ticket" value=(ticket);
            p { button type="submit" { "Sign in" } }
        }
    };
    let mut response = html(page("Sentra fleet: sign in", false, body));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn nav(name: &str) -> Markup {
    html! {
        header {
            h1 { a href="/fleet" { "Sentra fleet" } }
            small { "signed in as " (name) }
            form.inline method="post" action="/fleet/phone-link" {
                button type="submit" { "Sign in on a phone" }
            }
            form.inline method="post" action="/fleet/logout" { button type="submit" { "Sign out" } }
        }
    }
}

/// A rollout's buttons and their class; each is shown in the states its action is allowed in.
const BUTTONS: [(rollout::Action, &str); 3] = [
    (rollout::Action::Pause, ""),
    (rollout::Action::Resume, ""),
    (rollout::Action::Abort, "danger"),
];

/// Whether `action` asks first in `state`: pause, abort, and the resume of a halted rollout
/// (which needs a reason); resuming a paused one does not.
fn asks_first(action: rollout::Action, state: &str) -> bool {
    action != rollout::Action::Resume || state == "halted"
}

/// A button's label: "…" when pressing it asks first.
fn button_label(action: rollout::Action, state: &str) -> String {
    let verb = match action {
        rollout::Action::Pause => "Pause",
        rollout::Action::Resume => "Resume",
        rollout::Action::Abort => "Abort",
    };
    if asks_first(action, state) {
        format!("{verb}…")
    } else {
        verb.to_owned()
    }
}

/// A rollout's progress: a bar with its figures as ARIA values and visible text.
fn progress(r: &RolloutSummary) -> Markup {
    let pct = |n: i64| n.max(0).saturating_mul(100) / r.devices.max(1);
    let text = format!(
        "{} of {} devices succeeded, {} failed, {} in progress",
        r.succeeded,
        r.devices,
        r.failed,
        r.updating.saturating_add(r.offered)
    );
    html! {
        div.bar role="progressbar" aria-label={ "Rollout of " (r.version) " to " (r.channel) }
            aria-valuemin="0" aria-valuemax=(r.devices.max(1)) aria-valuenow=(r.succeeded)
            aria-valuetext=(text) {
            span.ok style={ "width:" (pct(r.succeeded)) "%" } {}
            span.fail style={ "width:" (pct(r.failed)) "%" } {}
            span.busy style={ "width:" (pct(r.updating.saturating_add(r.offered))) "%" } {}
        }
    }
}

fn rollout_card(r: &RolloutSummary) -> Markup {
    let wave = if r.current_wave == 0 {
        "canaries".to_owned()
    } else {
        let share = usize::try_from(r.current_wave - 1).unwrap_or(0);
        let share = r.waves.get(share).copied().unwrap_or(0);
        format!("wave {} of {} ({share} %)", r.current_wave, r.waves.len())
    };
    html! {
        div class={ "rollout state-" (r.state) } data-rollout=(r.id) {
            a href={ "/fleet/rollouts/" (r.id) } {
                b { (r.version) } " to channel " b { (r.channel) }
            }
            " " span class={ "badge " (r.state) } { (r.state.to_uppercase()) } " " small { (wave) }
            @if let Some(reason) = &r.reason { p.reason { b { (reason) } } }
            (progress(r))
            small {
                (r.succeeded) " succeeded · " (r.failed) " failed · " (r.updating) " updating · "
                (r.offered) " told · " (r.admitted) " of " (r.devices) " devices admitted · "
                "go on at " (r.success_threshold_pct) " %, halt at " (r.failure_threshold_pct)
                " % failed"
            }
            div {
                @for (action, class) in BUTTONS {
                    @if action.allowed_in(&r.state) {
                        form.inline method="post"
                            action={ "/fleet/rollouts/" (r.id) "/" (action.as_str()) } {
                            button class=(class) type="submit" {
                                (button_label(action, &r.state))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A download's progress as text and a `<progress>` (whose content is the text again, for
/// browsers without it); nothing unless the box is downloading and said how far it is.
pub fn download_progress(beat: &sentra_protocol::fleet::Heartbeat) -> Markup {
    let Some(download) = beat.download else {
        return html! {};
    };
    if beat.update.state != sentra_protocol::fleet::UpdateState::Downloading {
        return html! {};
    }
    let mb = |bytes: u64| format!("{:.1}", bytes as f64 / 1e6);
    let text = format!(
        "{} of {} MB",
        mb(download.received_bytes),
        mb(download.total_bytes)
    );
    html! {
        span.download {
            br; small { (text) } " "
            progress value=(download.received_bytes) max=(download.total_bytes.max(1))
                aria-label="download" { (text) }
        }
    }
}

/// A device's row and its version: a digest of its cells, which the overview's script compares
/// to leave an unchanged row (and the focus in it) alone.
fn device_row_parts(d: &DeviceView) -> (String, Markup) {
    use sha2::Digest as _;
    let cells = device_cells(d).into_string();
    let digest = sha2::Sha256::digest(cells.as_bytes());
    let version = hex::encode(&digest[..8]);
    let row = html! {
        tr class=(if d.attention.is_empty() { "" } else { "attention" }) data-device=(d.id)
            data-v=(version) {
            (PreEscaped(cells))
        }
    };
    (version, row)
}

fn device_row(d: &DeviceView) -> Markup {
    device_row_parts(d).1
}

fn device_cells(d: &DeviceView) -> Markup {
    html! {
            td {
                a href={ "/fleet/devices/" (d.id) } { (d.branch_id) } br;
                small { (d.branch_name) " · " (d.hostname.as_deref().unwrap_or("")) }
                @if let Some(old) = &d.replaces {
                    br; small.replaces { "replaces " (old) " (retired)" }
                }
            }
            td { (d.version.as_deref().unwrap_or("?")) br; small { (d.channel) } }
            td {
                @if d.online {
                    span.badge.online { "online" }
                } @else if let Some(secs) = d.offline_secs {
                    span.badge.offline { "offline" } " " small { "for " (super::human(secs)) }
                } @else {
                    span.badge.offline { "never seen" }
                }
            }
            td {
                (d.update_state.as_deref().unwrap_or(""))
                @if let Some(beat) = &d.heartbeat { (download_progress(beat)) }
            }
            td {
                @if let Some(beat) = &d.heartbeat {
                    (beat.backlog.count) " " small { "(" (beat.backlog.bytes / 1024) " KiB)" }
                }
            }
            td {
                @if !d.attention.is_empty() {
                    ul.attention { @for a in &d.attention { li { (a) } } }
                }
            }
    }
}

/// A table's header row.
fn head_row(labels: &[&str]) -> Markup {
    html! { tr { @for label in labels { th { (label) } } } }
}

fn devices_table(devices: &[DeviceView]) -> Markup {
    devices_table_with(devices, None)
}

/// The devices' table; its body gets `body_id` (what the overview's script updates).
fn devices_table_with(devices: &[DeviceView], body_id: Option<&str>) -> Markup {
    html! {
        div.scroll { table {
            thead {
                (head_row(&["Branch", "Version", "State", "Update", "Backlog", "Needs attention"]))
            }
            tbody id=[body_id] { @for d in devices { (device_row(d)) } }
        } }
    }
}

/// The overview's charts: the fleet's versions as a bar, and its week online and offline
/// (`week`: the current hour's start and the hourly counts, [`super::counts::week`]).
fn overview_charts(view: &FleetView, week: &(i64, Vec<HourCount>)) -> Markup {
    let versions: Vec<(String, usize)> = view
        .summary
        .by_version
        .iter()
        .map(|(version, n)| (version.clone(), *n))
        .collect();
    html! {
        h2 { "Versions and the week" }
        section.charts {
            div.panel { (charts::share_bar("chart-versions", "Devices by version", &versions)) }
            div.panel { (charts::week_chart("chart-week", week.0, &week.1)) }
        }
    }
}

/// "Devices 51–100 of 812", or why there are none.
fn shown_text(page: &PageInfo, rows: usize) -> String {
    if page.matching == 0 {
        return "No device matches.".to_owned();
    }
    if rows == 0 {
        return format!(
            "Page {} is past the last ({}) of {} devices.",
            page.page, page.pages, page.matching
        );
    }
    let first = (page.page as usize)
        .saturating_sub(1)
        .saturating_mul(page.size as usize)
        .saturating_add(1);
    format!(
        "Devices {first}–{} of {}.",
        first.saturating_add(rows - 1),
        page.matching
    )
}

/// The overview's GET form: search, filters, page size. Works without scripts.
fn filter_form(filter: &Filter, view: &FleetView) -> Markup {
    let s = &view.summary;
    let mut versions: Vec<&str> = s.by_version.keys().map(String::as_str).collect();
    let mut channels: Vec<&str> = s.by_channel.keys().map(String::as_str).collect();
    for (list, chosen) in [
        (&mut versions, filter.version.as_deref()),
        (&mut channels, filter.channel.as_deref()),
    ] {
        if let Some(chosen) = chosen
            && !list.contains(&chosen)
        {
            list.push(chosen);
        }
    }
    let mut sizes = PAGE_SIZES.to_vec();
    if !sizes.contains(&filter.size) {
        sizes.push(filter.size);
        sizes.sort_unstable();
    }
    html! {
        form.filter method="get" action="/fleet" role="search" aria-label="Devices" {
            label {
                "Search" input type="search" name="q" value=[filter.q.as_deref()]
                    maxlength=(super::filter::MAX_SEARCH) placeholder="branch or hostname";
            }
            label {
                "Branch id" input name="branch" value=[filter.branch.as_deref()] size="10"
                    maxlength=(crate::branches::MAX_BRANCH_ID_LEN);
            }
            label { "Version" select name="version" {
                option value="" { "any" }
                @for v in &versions {
                    option value=(v) selected[filter.version.as_deref() == Some(*v)] { (v) }
                }
            } }
            label { "State" select name="state" {
                option value="" { "any" }
                @for state in StateFilter::ALL {
                    option value=(state.as_str()) selected[filter.state == Some(state)] {
                        (state.label())
                    }
                }
            } }
            label { "Channel" select name="channel" {
                option value="" { "any" }
                @for c in &channels {
                    option value=(c) selected[filter.channel.as_deref() == Some(*c)] { (c) }
                }
            } }
            label { "Per page" select name="size" {
                @for n in &sizes { option value=(n) selected[*n == filter.size] { (n) } }
            } }
            button type="submit" { "Show" }
            @if filter.narrows() { a href="/fleet" { "Clear" } }
        }
    }
}

/// Where the page is, the links to the next and previous pages, and the manual refresh.
fn pager(view: &FleetView, filter: &Filter, top: bool) -> Markup {
    let page = &view.page;
    let here = usize::try_from(filter.page).unwrap_or(usize::MAX);
    html! {
        nav.pages aria-label=(if top { "Pages" } else { "Pages, again" }) {
            @if top {
                span #shown { (shown_text(page, view.devices.len())) }
            } @else {
                span { "Page " (filter.page) " of " (page.pages) }
            }
            @if filter.page > 1 {
                a rel="prev" href={ "/fleet" (filter.query_string(filter.page - 1)) } { "← Previous" }
            }
            @if here < page.pages {
                a rel="next" href={ "/fleet" (filter.query_string(filter.page + 1)) } { "Next →" }
            }
            @if top {
                a href={ "/fleet" (filter.query_string(filter.page)) } { "Refresh" }
            }
        }
    }
}

/// The overview's HTML for `filter`'s page of devices.
pub fn overview_html(
    name: &str,
    view: &FleetView,
    filter: &Filter,
    week: &(i64, Vec<HourCount>),
) -> Markup {
    let s = &view.summary;
    let body = html! {
        (nav(name))
        section.cards {
            div.card { b id="count-devices" { (s.devices) } "devices" }
            div.card.good { b id="count-online" { (s.online) } "online" }
            div.card.bad[s.offline > 0] data-warn { b id="count-offline" { (s.offline) } "offline" }
            div.card.bad[s.needing_attention > 0] data-warn {
                b id="count-attention" { (s.needing_attention) } "need attention"
            }
        }
        h2 { "Rollouts" }
        @if view.rollouts.is_empty() { p.muted { "No rollouts yet." } }
        @for r in &view.rollouts { (rollout_card(r)) }
        (overview_charts(view, week))
        h2 #devices { "Devices" }
        (filter_form(filter, view))
        p.muted {
            "Those needing attention first, longest offline first. "
            span #live data-every=(LIVE_POLL_SECS) role="status" {
                "As of " (clock_now()) " UTC; kept current while this page is open."
            }
        }
        (pager(view, filter, true))
        (devices_table_with(&view.devices, Some("device-rows")))
        @if view.page.pages > 1 { (pager(view, filter, false)) }
        script { (PreEscaped(LIVE_SCRIPT)) }
    };
    page("Sentra fleet", false, body)
}

/// One figure of a history row, if the row has it.
type Figure = fn(&HistoryPoint) -> Option<i64>;

/// A device's day as sparklines: backlog, its oldest change's age, clock skew, memory and disk,
/// over the 24 hours up to its last heartbeat.
fn day_charts(history: &[HistoryPoint]) -> Markup {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let at = |p: &HistoryPoint| {
        time::OffsetDateTime::parse(&p.at, rfc3339)
            .ok()
            .map(time::OffsetDateTime::unix_timestamp)
    };
    let end = history.iter().filter_map(at).max().unwrap_or(0);
    let window = (end.saturating_sub(86_400), end);
    let series = |value: Figure| -> Vec<(i64, i64)> {
        history
            .iter()
            .filter_map(|p| Some((at(p)?, value(p)?)))
            .collect()
    };
    let charts: [(&str, &str, Unit, Figure); 5] = [
        ("chart-backlog", "Sync backlog (events)", Unit::Count, |p| {
            Some(p.backlog)
        }),
        ("chart-oldest", "Oldest change waiting", Unit::Secs, |p| {
            p.backlog_oldest_secs
        }),
        ("chart-skew", "Clock skew", Unit::Millis, |p| {
            Some(p.skew_ms)
        }),
        ("chart-memory", "Memory available", Unit::Bytes, |p| {
            p.mem_available_bytes
        }),
        ("chart-disk", "Disk free", Unit::Bytes, |p| {
            p.disk_free_bytes
        }),
    ];
    html! {
        section.charts {
            @for (id, title, unit, value) in charts {
                div.panel { (charts::sparkline(id, title, unit, window, &series(value))) }
            }
        }
    }
}

/// The time of day in UTC, `HH:MM:SS`.
fn clock_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}

/// A device's page: its row, what its last heartbeat says, its rollouts and its day.
fn device_html(name: &str, detail: &DeviceDetail) -> Markup {
    let d = &detail.device;
    let human = |secs: u64| super::human(i64::try_from(secs).unwrap_or(i64::MAX));
    let mib = |v: Option<u64>| v.map_or("?".to_owned(), |v| format!("{} MiB", v / (1024 * 1024)));
    // Newest first, at most one row per ten minutes: a readable day on a phone.
    let mut last_bucket = None;
    let history = detail.history.iter().rev().filter(|point| {
        let bucket = point.at.get(..15);
        bucket != std::mem::replace(&mut last_bucket, bucket)
    });
    let body = html! {
        (nav(name))
        h2 { (d.branch_id) " " small { (d.branch_name) } }
        (devices_table(std::slice::from_ref(d)))
        @if let Some(beat) = &d.heartbeat {
            @let (update, backlog, res) = (&beat.update, &beat.backlog, &beat.resources);
            h2 { "Now" }
            div.scroll tabindex="0" role="region" aria-label="Now" { table {
                tr { th { "Device" } td { (d.id) } }
                tr { th { "Last heartbeat" } td { (d.last_seen.as_deref().unwrap_or("")) } }
                tr { th { "Uptime" } td { (human(beat.uptime_secs)) } }
                tr { th { "Update" } td {
                    (update.state.as_str()) " " (update.target_version.as_deref().unwrap_or(""))
                    " " (update.reason.as_deref().unwrap_or(""))
                    (download_progress(beat))
                } }
                tr { th { "Healthy" } td { (beat.healthy) } }
                tr { th { "Sync backlog" } td {
                    (backlog.count) " events, " (backlog.bytes) " bytes, oldest "
                    (backlog.oldest_age_secs.map_or("-".to_owned(), human))
                } }
                tr { th { "Parked events" } td { (beat.parked) } }
                tr { th { "Clock skew" } td { (beat.skew_ms) " ms" } }
                tr { th { "Disk free / total" } td {
                    (mib(res.disk_free_bytes)) " / " (mib(res.disk_total_bytes))
                } }
                tr { th { "Memory available / total" } td {
                    (mib(res.mem_available_bytes)) " / " (mib(res.mem_total_bytes))
                } }
                tr { th { "Store" } td { (mib(res.store_bytes)) } }
                tr { th { "Printer" } td { (beat.printer.as_deref().unwrap_or("-")) } }
                tr { th { "Scanner" } td { (beat.scanner.as_deref().unwrap_or("-")) } }
                tr { th { "Broker" } td { (beat.broker.as_deref().unwrap_or("-")) } }
                tr { th { "Paired clients" } td {
                    (beat.paired_clients.map_or("?".to_owned(), |n| n.to_string()))
                } }
            } }
        }
        h2 { "Rollouts" }
        div.scroll { table {
            (head_row(&["Release", "Wave", "State", "Reason"]))
            @for r in &detail.rollouts {
                tr {
                    td { a href={ "/fleet/rollouts/" (r.rollout_id) } { (r.version) } }
                    td { @match r.wave { Some(wave) => (wave), None => "-" } }
                    td { span class={ "badge " (r.state) } { (r.state) } }
                    td { (r.reason.as_deref().unwrap_or("")) }
                }
            }
        } }
        h2 { "Last 24 hours" }
        (day_charts(&detail.history))
        details {
            summary { "The day as a table (a row per ten minutes, newest first)" }
            div.scroll tabindex="0" role="region" aria-label="The day as a table" { table {
                (head_row(&[
                    "At", "Version", "Update", "Healthy", "Backlog", "Oldest change", "Skew",
                    "Disk free", "Memory available",
                ]))
                @for p in history {
                    tr {
                        td { (p.at) } td { (p.version) } td { (p.update_state) }
                        td { (p.healthy) } td { (p.backlog) }
                        td { (p.backlog_oldest_secs.map_or("-".to_owned(), super::human)) }
                        td { (p.skew_ms) " ms" }
                        td { (p.disk_free_bytes.map_or("?".to_owned(), |v| Unit::Bytes.format(v))) }
                        td { (p.mem_available_bytes.map_or("?".to_owned(), |v| Unit::Bytes.format(v))) }
                    }
                }
            } }
        }
    };
    page("Sentra fleet: device", false, body)
}

/// A rollout's page: its card with the buttons, its waves, its history and each device's part
/// in it.
fn rollout_html(
    name: &str,
    detail: &RolloutDetail,
    waves: &[rollout::WaveCount],
    history: &[rollout::RolloutEvent],
) -> Markup {
    let r = &detail.rollout;
    let percentages: Vec<String> = r.waves.iter().map(|p| format!("{p} %")).collect();
    let body = html! {
        (nav(name))
        h2 { "Rollout" }
        (rollout_card(r))
        p { small {
            "waves: canaries, then " (percentages.join(", ")) " · started " (r.created_at)
            " by " (r.created_by)
        } }
        (charts::waves_chart(waves, &r.waves, r.current_wave))
        h2 { "History" }
        @if history.is_empty() {
            p.muted { "Nothing recorded yet." }
        } @else {
            ol.history reversed {
                @for e in history {
                    li {
                        time datetime=(e.at) { (e.at) } " " b { (e.action) } " by " (e.by)
                        @if let Some(reason) = &e.reason { ": " (reason) }
                    }
                }
            }
        }
        h2 { "Devices" }
        div.scroll { table {
            (head_row(&["Branch", "Wave", "State", "Reason", "Since"]))
            @for d in &detail.devices {
                tr {
                    td { a href={ "/fleet/devices/" (d.device_id) } { (d.branch_id) } }
                    td {
                        @match d.wave { None => "not in it", Some(0) => "canary", Some(w) => (w) }
                    }
                    td { span class={ "badge " (d.state) } { (d.state) } }
                    td { (d.reason.as_deref().unwrap_or("")) }
                    td { (d.updated_at) }
                }
            }
        } }
    };
    page("Sentra fleet: rollout", false, body)
}

async fn authorized(state: &FleetState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    operator(&state.db, headers).await
}

/// A 400 page for a query the overview cannot show: what was wrong and a way back.
fn bad_query_page(name: &str, error: &ApiError) -> Response {
    let body = html! {
        (nav(name))
        h2 { "That list cannot be shown" }
        p.badge.failed { (error.to_string()) }
        p { a href="/fleet" { "Show the whole fleet" } }
    };
    (
        StatusCode::BAD_REQUEST,
        html(page("Sentra fleet: bad query", false, body)),
    )
        .into_response()
}

/// `GET /fleet?q=&branch=&version=&state=&channel=&page=&size=`.
pub async fn overview(
    State(state): State<FleetState>,
    headers: HeaderMap,
    query: super::filter::RawQuery,
) -> Result<Response, ApiError> {
    let Some(name) = authorized(&state, &headers).await? else {
        return Ok(login_page(None));
    };
    let filter = match Filter::from_query(query) {
        Ok(filter) => filter,
        Err(error) => return Ok(bad_query_page(&name, &error)),
    };
    let view = super::fleet_view(&state.db, state.fleet.offline_after, &filter)
        .await
        .map_err(|error| ApiError::database(&error))?;
    let week = super::counts::week(&state.db)
        .await
        .map_err(|error| ApiError::database(&error))?;
    let mut response = html(overview_html(&name, &view, &filter, &week));
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, OVERVIEW_CSP.clone());
    Ok(response)
}

/// What `GET /fleet/live` answers: the fleet's counts, where the page is, and its rows as the
/// overview renders them.
#[derive(Debug, serde::Serialize)]
pub struct Live {
    /// `devices`, `online`, `offline`, `attention`: the `count-*` cards.
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    pub page: PageInfo,
    /// The page's "Devices 1–50 of 812" line.
    pub shown: String,
    pub rows: Vec<LiveRow>,
}

#[derive(Debug, serde::Serialize)]
pub struct LiveRow {
    pub id: String,
    /// A digest of the row's cells: unchanged, unchanged row.
    pub v: String,
    /// The row's `<tr>`, escaped as on the page.
    pub html: String,
}

/// The overview's live data for `view`.
pub fn live_view(view: &FleetView) -> Live {
    let s = &view.summary;
    Live {
        counts: [
            ("devices", s.devices),
            ("online", s.online),
            ("offline", s.offline),
            ("attention", s.needing_attention),
        ]
        .into_iter()
        .collect(),
        page: view.page.clone(),
        shown: shown_text(&view.page, view.devices.len()),
        rows: view
            .devices
            .iter()
            .map(|d| {
                let (v, row) = device_row_parts(d);
                LiveRow {
                    id: d.id.clone(),
                    v,
                    html: row.into_string(),
                }
            })
            .collect(),
    }
}

/// `GET /fleet/live?<the overview's query>`: what the overview's script polls, behind the same
/// sign-in as the page (401 without it, 400 for a query the page would refuse).
pub async fn live(
    State(state): State<FleetState>,
    headers: HeaderMap,
    query: super::filter::RawQuery,
) -> Result<Response, ApiError> {
    if authorized(&state, &headers).await?.is_none() {
        return Err(ApiError::Unauthorized(
            "sign in at /fleet first (or send an operator token)".to_owned(),
        ));
    }
    let filter = Filter::from_query(query)?;
    let view = super::fleet_view(&state.db, state.fleet.offline_after, &filter)
        .await
        .map_err(|error| ApiError::database(&error))?;
    let mut response = axum::Json(live_view(&view)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(no_referrer(response))
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
    Ok(html(device_html(&name, &detail)))
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
    let waves = rollout::wave_counts(&state.db, &id).await?;
    let history = rollout::history(&state.db, &id).await?;
    Ok(html(rollout_html(&name, &detail, &waves, &history)))
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

/// What a rollout button's form sends: nothing from the card's buttons; `confirm=yes` and a
/// `reason` from the page that asks first.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    confirm: Option<String>,
    reason: Option<String>,
}

/// `POST /fleet/rollouts/{id}/{action}` (the page's buttons): pause, abort and the resume of a
/// halted rollout answer a page that asks first; its POST, with `confirm=yes`, acts.
pub async fn rollout_action(
    State(state): State<FleetState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        return Err(ApiError::Forbidden("cross-site form refused".to_owned()));
    }
    let Some(name) = authorized(&state, &headers).await? else {
        return Ok(login_page(None));
    };
    let action = rollout::Action::parse(&action)
        .ok_or_else(|| ApiError::NotFound(format!("no rollout action {action:?}")))?;
    let confirmed = form.confirm.as_deref() == Some("yes");
    if !confirmed {
        let summary = rollout::summary(&state.db, &id).await?;
        if asks_first(action, &summary.state) {
            return Ok(html(confirm_html(&name, &summary, action, None)));
        }
    }
    match rollout::act(&state.db, &id, action, &name, form.reason.as_deref()).await {
        Ok(_) => Ok(no_referrer(
            Redirect::to(&format!("/fleet/rollouts/{id}")).into_response(),
        )),
        // A missing or too long reason: the same question again, saying what is wrong.
        Err(rollout::RolloutError::Invalid(message)) => {
            let summary = rollout::summary(&state.db, &id).await?;
            let page = html(confirm_html(&name, &summary, action, Some(&message)));
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// The page that asks before `action` acts on rollout `r`: what it will do, a reason field
/// (required to resume a halted rollout), the confirming button and a way back.
fn confirm_html(
    name: &str,
    r: &RolloutSummary,
    action: rollout::Action,
    error: Option<&str>,
) -> Markup {
    let halted = r.state == "halted";
    let (question, consequence, button) = match action {
        rollout::Action::Pause => (
            "Pause this rollout?",
            "Devices not yet told about the release are not told until it is resumed; those \
             already updating carry on.",
            "Yes, pause it",
        ),
        rollout::Action::Abort => (
            "Abort this rollout?",
            "Nobody is offered this release any more, and an aborted rollout cannot be resumed: \
             to go on, start a new rollout. Devices already on the new version stay on it.",
            "Yes, abort it",
        ),
        rollout::Action::Resume if halted => (
            "Resume this halted rollout?",
            "Do this once the cause of the failures is fixed. Its failed devices are offered the \
             release again and the failure threshold counts afresh. Say what was fixed: it goes \
             in the rollout's history with your name.",
            "Resume it",
        ),
        rollout::Action::Resume => (
            "Resume this rollout?",
            "Devices not yet told are told again as their waves open.",
            "Resume it",
        ),
    };
    let required = action == rollout::Action::Resume && halted;
    let body = html! {
        (nav(name))
        h2 { (question) }
        div.panel {
            p {
                a href={ "/fleet/rollouts/" (r.id) } { b { (r.version) } " to channel " b { (r.channel) } }
                " " span class={ "badge " (r.state) } { (r.state.to_uppercase()) }
            }
            @if let Some(reason) = &r.reason { p { "Now: " (reason) } }
            (progress(r))
            p { (consequence) }
            form method="post" action={ "/fleet/rollouts/" (r.id) "/" (action.as_str()) } {
                input type="hidden" name="confirm" value="yes";
                p {
                    label for="reason" {
                        @if required { "What was fixed (required)" } @else { "Why (optional, for the history)" }
                    }
                    br;
                    input id="reason" type="text" name="reason" maxlength=(super::MAX_TEXT)
                        autocomplete="off" required[required]
                        aria-describedby=[error.map(|_| "reason-error")];
                }
                @if let Some(error) = error { p.error id="reason-error" role="alert" { (error) } }
                p {
                    button.danger[action == rollout::Action::Abort] type="submit" { (button) }
                    " "
                    a href={ "/fleet/rollouts/" (r.id) } { "No, go back" }
                }
            }
        }
    };
    page("Sentra fleet: confirm", false, body)
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

/// The origin the browser used (`Origin` of the form's POST, which [`cross_site`] checked against
/// `Host`), else `https://` and `Host`: what a phone on the same network opens.
fn page_origin(headers: &HeaderMap) -> String {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), _) if origin.starts_with("https://") || origin.starts_with("http://") => {
            origin.to_owned()
        }
        (_, Some(host)) => format!("https://{host}"),
        _ => String::new(),
    }
}

/// A QR of `content` as inline SVG (a path of its dark modules inside the quiet zone), named for
/// screen readers; None when it does not fit in a QR.
fn qr_svg(content: &str) -> Option<Markup> {
    let code = tokens::qr_code(content).ok()?;
    let width = code.width();
    let mut path = String::new();
    for (index, colour) in code.to_colors().iter().enumerate() {
        if *colour == qrcode::Color::Dark {
            let (x, y) = (index % width + 4, index / width + 4);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    let side = width + 8;
    Some(html! {
        svg role="img" aria-label="QR code of the sign-in link written below it"
            viewBox={ "0 0 " (side) " " (side) } shape-rendering="crispEdges" {
            rect width=(side) height=(side) fill="#fff" {}
            path d=(path) fill="#000" {}
        }
    })
}

/// `POST /fleet/phone-link` (the page's "Sign in on a phone" button): a one-time login link, as
/// `POST /v1/fleet/login-links` makes, shown as a QR for the phone's camera and as text.
pub async fn phone_link(
    State(state): State<FleetState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        return Err(ApiError::Forbidden("cross-site form refused".to_owned()));
    }
    let Some((token_id, name)) = operator_token(&state.db, &headers).await? else {
        return Ok(login_page(None));
    };
    let ticket = new_session(&state.db, token_id, true)
        .await
        .map_err(|error| ApiError::database(&error))?;
    tracing::info!(%name, "fleet page: phone login link made");
    let url = format!("{}/fleet/login?ticket={ticket}", page_origin(&headers));
    let body = html! {
        (nav(&name))
        h2 { "Sign in on a phone" }
        div.panel {
            p {
                "Point the phone's camera at the code, open the link and press Sign in. The link "
                "works once, within " (TICKET_TTL.as_secs() / 60) " minutes, and signs the phone "
                "in as " b { (name) } "."
            }
            figure.qr {
                @match qr_svg(&url) {
                    Some(svg) => (svg),
                    None => p.error { "This link is too long for a QR code; type it instead." },
                }
                figcaption { "The link: " code { (url) } }
            }
            p { a href="/fleet" { "Back to the fleet" } }
        }
    };
    let mut response = html(page("Sentra fleet: sign in on a phone", false, body));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
    fn what_a_device_sends_is_escaped_on_the_page() {
        let evil = "<script>\"x\" & 'y'</script>";
        let device = DeviceView {
            id: evil.to_owned(),
            branch_id: evil.to_owned(),
            branch_name: evil.to_owned(),
            hostname: Some(evil.to_owned()),
            replaces: Some(evil.to_owned()),
            channel: evil.to_owned(),
            version: Some(evil.to_owned()),
            online: false,
            last_seen: None,
            offline_secs: None,
            update_state: Some(evil.to_owned()),
            heartbeat: None,
            attention: vec![evil.to_owned()],
        };
        let row = device_row(&device).into_string();
        assert!(!row.contains("<script>") && !row.contains("\"x\""), "{row}");
        assert!(
            row.contains("&lt;script&gt;&quot;x&quot; &amp; 'y'&lt;/script&gt;"),
            "{row}"
        );
    }

    /// WCAG's contrast ratio of two `#rrggbb` colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let luminance = |hex: &str| {
            let channel = |i: usize| {
                let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")) / 255.0;
                if c <= 0.039_28 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
        };
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    /// Every text colour of the style sheet reads at 4.5:1 or more: on each background the pages
    /// use, and, where a rule sets both, on its own background (the badges).
    #[test]
    fn text_contrast_is_at_least_four_and_a_half_to_one() {
        let colour = |block: &str, property: &str| {
            block
                .split(';')
                .find_map(|d| d.trim().strip_prefix(property))
                .filter(|value| value.len() == 7 && value.starts_with('#'))
                .map(str::to_owned)
        };
        let mut checked = 0;
        for rule in STYLE.split('}') {
            let Some((selector, block)) = rule.split_once('{') else {
                continue;
            };
            let Some(text) = colour(block, "color:") else {
                continue;
            };
            let backgrounds = match colour(block, "background:") {
                Some(own) => vec![own],
                None => vec![
                    "#ffffff".to_owned(),
                    "#f5f6f8".to_owned(),
                    "#fdecea".to_owned(),
                ],
            };
            for background in backgrounds {
                let ratio = contrast(&text, &background);
                assert!(
                    ratio >= 4.5,
                    "{} : {text} on {background} is {ratio:.2}:1",
                    selector.trim()
                );
                checked += 1;
            }
        }
        assert!(checked >= 15, "{checked} pairs");
        // What issue 20 found: white on the old orange.
        assert!(contrast("#ffffff", "#c77700") < 4.5);
    }

    #[test]
    fn a_download_shows_bytes_of_total_as_text_and_progress() {
        let mut beat: sentra_protocol::fleet::Heartbeat =
            serde_json::from_value(serde_json::json!({
                "version": "1.0.0", "uptime_secs": 1,
                "update": {"state": "downloading", "target_version": "2.0.0"},
                "download": {"received_bytes": 12_345_678, "total_bytes": 40_000_000},
            }))
            .expect("a heartbeat");
        let shown = download_progress(&beat).into_string();
        assert!(shown.contains("<small>12.3 of 40.0 MB</small>"), "{shown}");
        assert!(
            shown.contains(
                "<progress value=\"12345678\" max=\"40000000\" aria-label=\"download\">12.3 of 40.0 MB</progress>"
            ),
            "{shown}"
        );
        beat.update.state = sentra_protocol::fleet::UpdateState::Installing;
        assert_eq!(download_progress(&beat).into_string(), "");
        beat.update.state = sentra_protocol::fleet::UpdateState::Downloading;
        beat.download = None;
        assert_eq!(download_progress(&beat).into_string(), "");
    }

    #[test]
    fn the_shown_line_says_where_the_page_is() {
        let page = |page, matching| PageInfo {
            page,
            size: 50,
            matching,
            pages: matching.div_ceil(50).max(1),
        };
        assert_eq!(shown_text(&page(1, 812), 50), "Devices 1–50 of 812.");
        assert_eq!(shown_text(&page(17, 812), 12), "Devices 801–812 of 812.");
        assert_eq!(shown_text(&page(1, 0), 0), "No device matches.");
        assert_eq!(
            shown_text(&page(99, 812), 0),
            "Page 99 is past the last (17) of 812 devices."
        );
    }

    #[test]
    fn the_overview_csp_allows_its_script_by_hash_and_nothing_else() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let csp = OVERVIEW_CSP.to_str().expect("ASCII");
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(LIVE_SCRIPT.as_bytes()));
        assert!(
            csp.contains(&format!("script-src 'sha256-{hash}';")),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
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
