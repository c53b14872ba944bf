//! The pages for a person: the policy (rules in order with scope and effects, edited as JSON with
//! the validation errors shown inline), the audits (newest first, filters, live refresh), the
//! defenders. Server-rendered HTML; the only script refreshes the audit rows.
//!
//! The pages need the admin token, given once on the login page and kept in a session cookie.

mod html;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use defender::policy::schema::{self, Document, Effect};
use serde::Deserialize;

use crate::api::{self, AuditFilter};
use crate::app::{AppState, ReplaceError, Replaced, problems};
use crate::auth::{Person, Role, SESSION_COOKIE};
use crate::events::{Effect as AuditEffect, Event, Kind};
use html::{esc, page};

/// Rows on the audits page when no limit is asked for.
const PAGE_ROWS: u32 = 200;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/audits") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/policy", get(policy_page).post(save_policy))
        .route("/audits", get(audits_page))
        .route("/audits/rows", get(audit_rows))
        .route("/defenders", get(defenders_page))
}

fn internal(message: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "Error",
            "",
            &format!("<p class=\"errors\">{}</p>", esc(message)),
        ),
    )
        .into_response()
}

// ---- Login ----

fn login_form(error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<p class=\"errors\" id=\"errors\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        "Log in",
        "",
        &format!(
            "{error}<form method=\"post\" action=\"/login\"><p><label>Admin token \
             <input type=\"password\" name=\"token\" id=\"token\" size=\"70\" autofocus></label></p>\
             <p><button id=\"login\">Log in</button></p></form>\
             <p class=\"muted\">The admin token is in the console's data directory (admin.token) \
             unless it was given with --admin-token.</p>"
        ),
    )
}

async fn login_page() -> Html<String> {
    login_form(None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<Arc<AppState>>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    if state.tokens.role(token) != Some(Role::Admin) {
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some("That is not the admin token.")),
        )
            .into_response();
    }
    let secure = if state.https { "; Secure" } else { "" };
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    ([(SET_COOKIE, cookie)], Redirect::to("/audits")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

// ---- Policy ----

#[derive(Deserialize)]
struct Saved {
    saved: Option<u64>,
    changed: Option<u8>,
}

async fn policy_page(
    _: Person,
    State(state): State<Arc<AppState>>,
    Query(saved): Query<Saved>,
) -> Html<String> {
    let current = state.policy();
    let notice = match (saved.saved, saved.changed) {
        (Some(r), Some(0)) => format!(
            "<p class=\"ok\" id=\"saved\">No change: that document is revision {r}, already in force.</p>"
        ),
        (Some(r), _) => format!(
            "<p class=\"ok\" id=\"saved\">Saved revision {r}. Defenders apply it as they receive it.</p>"
        ),
        _ => String::new(),
    };
    policy_view(&state, &notice, &current.document)
}

/// The page: revision, rules table, and the editor holding `text`.
fn policy_view(state: &AppState, notice: &str, text: &str) -> Html<String> {
    let current = state.policy();
    let rules = match serde_json::from_str::<Document>(&current.document) {
        Ok(doc) => rules_table(&doc),
        Err(e) => format!(
            "<p class=\"errors\">stored policy unreadable: {}</p>",
            esc(&e.to_string())
        ),
    };
    page(
        "App-Embedded policy",
        "Policy",
        &format!(
            "{notice}<p>Revision <strong id=\"revision\">{}</strong>, saved {}. The first rule that \
             is not disabled and whose collections match a container is the one in force for it.</p>\
             {rules}<h2>Edit</h2>\
             <form method=\"post\" action=\"/policy\"><textarea name=\"document\" id=\"document\" \
             spellcheck=\"false\">{}</textarea><p><button id=\"save\">Save</button> \
             <span class=\"muted\">Validated as <code>defender policy check</code> does; an invalid \
             document changes nothing.</span></p></form>",
            current.revision,
            esc(&current.updated),
            esc(text)
        ),
    )
}

fn rules_table(doc: &Document) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "—".to_string()
        } else {
            v.iter()
                .map(|e| format!("<code>{}</code>", esc(e)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let effect = |e: Effect| format!("<span class=\"effect-{0}\">{0}</span>", e.as_str());
    let pair = |name: &str, allow: &[String], deny: &[String]| {
        if allow.is_empty() && deny.is_empty() {
            String::new()
        } else {
            format!(
                "<br>{name}allow: {}<br>{name}deny: {}",
                list(allow),
                list(deny)
            )
        }
    };
    let section = |s: Option<&schema::Section>| match s {
        Some(s) => format!("{}{}", effect(s.effect), pair("", &s.allow, &s.deny)),
        None => effect(Effect::Disable),
    };
    let mut out = String::from(
        "<table id=\"rules\"><tr><th>#</th><th>rule</th><th>scope</th><th>processes</th>\
         <th>network</th><th>dns</th></tr>",
    );
    for (i, rule) in doc.rules.iter().enumerate() {
        let collections = rule.collections.as_ref();
        let scope = |v: Option<&Vec<String>>| v.map_or("<code>*</code>".into(), |v| list(v));
        let network = match &rule.network {
            Some(n) => format!(
                "{}{}{}{}",
                effect(n.effect),
                pair("outbound ", &n.outbound.allow, &n.outbound.deny),
                pair("ports ", &n.outbound_ports.allow, &n.outbound_ports.deny),
                pair(
                    "listening ",
                    &n.listening_ports.allow,
                    &n.listening_ports.deny
                ),
            ),
            None => effect(Effect::Disable),
        };
        out.push_str(&format!(
            "<tr><td>{i}</td><td>{}{}</td><td>images: {}<br>containers: {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rule.name),
            if rule.disabled { " <span class=\"muted\">(disabled)</span>" } else { "" },
            scope(collections.and_then(|c| c.images.as_ref())),
            scope(collections.and_then(|c| c.containers.as_ref())),
            section(rule.processes.as_ref()),
            network,
            section(rule.dns.as_ref()),
        ));
    }
    out.push_str("</table>");
    if doc.rules.is_empty() {
        out.push_str("<p class=\"muted\">No rules: nothing is enforced anywhere.</p>");
    }
    out
}

#[derive(Deserialize)]
struct PolicyForm {
    document: String,
}

async fn save_policy(
    _: Person,
    State(state): State<Arc<AppState>>,
    Form(form): Form<PolicyForm>,
) -> Response {
    match state.replace_policy(&form.document).await {
        Ok(Replaced::New(p)) => {
            Redirect::to(&format!("/policy?saved={}", p.revision)).into_response()
        }
        Ok(Replaced::Same(p)) => {
            Redirect::to(&format!("/policy?saved={}&changed=0", p.revision)).into_response()
        }
        Err(ReplaceError::Invalid(e)) => {
            let items: String = problems(&e)
                .iter()
                .map(|p| format!("<li>{}</li>", esc(p["text"].as_str().unwrap_or_default())))
                .collect();
            let notice = format!(
                "<div class=\"errors\" id=\"errors\"><p>Not saved: the document is invalid. \
                 The policy in force is unchanged.</p><ul>{items}</ul></div>"
            );
            (
                StatusCode::BAD_REQUEST,
                policy_view(&state, &notice, &form.document),
            )
                .into_response()
        }
        Err(ReplaceError::Store(e)) => internal(&e.message),
    }
}

// ---- Audits ----

fn options<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, chosen: Option<&str>) -> String {
    let mut out = String::from("<option value=\"\">any</option>");
    for v in all {
        let n = name(*v);
        let sel = if chosen == Some(n) { " selected" } else { "" };
        out.push_str(&format!("<option value=\"{n}\"{sel}>{n}</option>"));
    }
    out
}

async fn audits_page(
    _: Person,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<AuditFilter>,
) -> Response {
    let rows = match rows(&state, &filter).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let text = |name: &str, v: &Option<String>, hint: &str| {
        format!(
            "<label>{name} <input name=\"{name}\" id=\"filter-{name}\" value=\"{}\" placeholder=\"{hint}\"></label>",
            esc(v.as_deref().unwrap_or_default())
        )
    };
    let query = serde_urlencoded_query(&filter);
    let body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/audits\">{}{}<label>type \
         <select name=\"type\" id=\"filter-type\">{}</select></label><label>effect \
         <select name=\"effect\" id=\"filter-effect\">{}</select></label>{}{}{}\
         <button id=\"apply\">Filter</button></form>\
         <p><label><input type=\"checkbox\" id=\"live\" checked> live refresh</label> · \
         <a href=\"/api/v1/audits/runtime/app-embedded/download{query}\">download CSV</a></p>\
         <table><thead><tr><th>time</th><th>type</th><th>effect</th><th>container</th><th>image</th>\
         <th>rule</th><th>message</th><th>count</th></tr></thead><tbody id=\"rows\">{rows}</tbody></table>\
         <script>\
         setInterval(async () => {{\
           if (!document.getElementById('live').checked) return;\
           const r = await fetch('/audits/rows' + location.search, {{credentials: 'same-origin'}});\
           if (r.ok) document.getElementById('rows').innerHTML = await r.text();\
         }}, 2000);\
         </script>",
        text("container", &filter.container, "any"),
        text("image", &filter.image, "any"),
        options(&Kind::ALL, Kind::as_str, filter.kind.as_deref()),
        options(
            &AuditEffect::ALL,
            AuditEffect::as_str,
            filter.effect.as_deref()
        ),
        text("rule", &filter.rule, "any"),
        text("since", &filter.since, "2026-11-29T10:00:00Z"),
        text("until", &filter.until, "2026-11-29T11:00:00Z"),
    );
    page("App-Embedded audits", "Audits", &body).into_response()
}

/// `?a=b&...` for the current filters (empty when none).
fn serde_urlencoded_query(filter: &AuditFilter) -> String {
    let value = serde_json::to_value(filter).unwrap_or_default();
    let pairs: Vec<String> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) if !s.is_empty() => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(format!("{}={}", percent(k), percent(&v)))
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The table rows for `filter`, or the page to show instead (a bad filter, a storage error).
async fn rows(state: &AppState, filter: &AuditFilter) -> Result<String, Response> {
    let query = match filter.query(PAGE_ROWS) {
        Ok(q) => q,
        Err(e) => {
            return Ok(format!(
                "<tr><td colspan=\"8\" class=\"errors\" id=\"errors\">{}</td></tr>",
                esc(&e)
            ));
        }
    };
    let events = state
        .store(move |s| s.audits(&query))
        .await
        .map_err(|e| internal(&e.message))?;
    if events.is_empty() {
        return Ok("<tr><td colspan=\"8\" class=\"muted\">No audit events.</td></tr>".into());
    }
    Ok(events.iter().map(row).collect())
}

fn row(e: &Event) -> String {
    format!(
        "<tr class=\"audit\" data-type=\"{kind}\"><td>{}</td><td>{kind}</td><td class=\"effect-{effect}\">{effect}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&e.time),
        esc(&e.container),
        esc(&e.image),
        esc(e.rule.as_deref().unwrap_or_default()),
        esc(&e.message),
        e.count,
        kind = e.kind.as_str(),
        effect = e.effect.as_str(),
    )
}

async fn audit_rows(
    _: Person,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<AuditFilter>,
) -> Response {
    match rows(&state, &filter).await {
        Ok(r) => Html(r).into_response(),
        Err(r) => r,
    }
}

// ---- Defenders ----

async fn defenders_page(_: Person, State(state): State<Arc<AppState>>) -> Response {
    let defenders = match api::defenders(&state).await {
        Ok(d) => d,
        Err(e) => return internal(&e.message),
    };
    let revision = state.policy().revision;
    let mut body = format!(
        "<p>Policy revision in force: <strong>{revision}</strong>. A defender is connected while \
         its heartbeats arrive (every 5 s).</p><table id=\"defenders\"><tr><th>container</th>\
         <th>image</th><th>task</th><th>revision</th><th>version</th><th>last seen</th>\
         <th>state</th></tr>"
    );
    for d in &defenders {
        let revision = match (&d.beat.revision, d.current) {
            (Some(r), true) => esc(r),
            (Some(r), false) => format!(
                "<span class=\"effect-alert\">{} (not current)</span>",
                esc(r)
            ),
            (None, _) => "<span class=\"muted\">local policy</span>".into(),
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{revision}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.beat.container),
            esc(&d.beat.image),
            esc(d.beat.task.as_deref().unwrap_or("—")),
            esc(&d.beat.version),
            esc(&d.last_seen),
            if d.connected { "connected" } else { "<span class=\"muted\">gone</span>" },
        ));
    }
    body.push_str("</table>");
    if defenders.is_empty() {
        body.push_str("<p class=\"muted\">No defender has reported yet.</p>");
    }
    page("Defenders", "Defenders", &body).into_response()
}
