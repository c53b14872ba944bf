//! The policy documents' lifecycle in the API, the same for each (`documents::Kind`): `If-Match`
//! on a replacement (412 when stale), the revisions kept with their authors, restoring one; and
//! for the runtime policy "which rule applies" to a container (decided by the defender's own
//! matching). The pages (`web::history`, `web::waas`) use the same calls.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use defender::policy::schema::{self, Document};
use defender::policy::{self, Identity};
use serde_json::json;

use crate::app::{ApiError, AppState, Expect, Refused, ReplaceError, Replaced};
use crate::auth::{Edits, Reads};
use crate::documents::{self, Doc, Kind};
use crate::store::{Revision, StoredPolicy};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(revision_routes::<documents::Runtime>())
        .merge(revision_routes::<documents::Waas>())
        .route(
            "/api/v1/policies/runtime/app-embedded/resolve",
            get(resolve_rule),
        )
}

/// The revisions of the document of kind `K`: list, one, restore.
fn revision_routes<K: Kind>() -> Router<Arc<AppState>> {
    let revisions = format!("{}/revisions", K::DOC.path());
    Router::new()
        .route(&revisions, get(list_revisions::<K>))
        .route(&format!("{revisions}/{{n}}"), get(get_revision::<K>))
        .route(
            &format!("{revisions}/{{n}}/restore"),
            post(restore_revision::<K>),
        )
}

/// What an `If-Match` header asks: absent or `*`, any revision; else the revisions its strong
/// entity tags name (`"7"`). A weak tag (`W/"7"`) never matches, as RFC 9110 compares `If-Match`
/// strongly; anything else is refused, naming the header.
pub fn if_match(headers: &HeaderMap) -> Result<Expect, ApiError> {
    let mut values = headers.get_all(IF_MATCH).iter().peekable();
    if values.peek().is_none() {
        return Ok(Expect::Any);
    }
    let mut revisions = Vec::new();
    for value in values {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("If-Match: not ASCII"))?;
        for tag in value.split(',').map(str::trim) {
            match parse_tag(tag) {
                Some(Tag::Any) => return Ok(Expect::Any),
                Some(Tag::Revision(n)) => revisions.push(n),
                Some(Tag::Weak) => {}
                None => {
                    return Err(ApiError::bad_request(format!(
                        "If-Match: {tag:?} is not a revision in quotes (\"7\") or *"
                    )));
                }
            }
        }
    }
    Ok(Expect::OneOf(revisions))
}

enum Tag {
    Any,
    Revision(u64),
    Weak,
}

fn parse_tag(tag: &str) -> Option<Tag> {
    if tag == "*" {
        return Some(Tag::Any);
    }
    let (weak, quoted) = match tag.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    };
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    if weak {
        return Some(Tag::Weak);
    }
    inner.parse().ok().map(Tag::Revision)
}

/// Who saved a revision, as shown: its author, or "unknown" for revisions saved before authors
/// were kept.
pub fn author(by: &Option<String>) -> &str {
    by.as_deref().unwrap_or("unknown")
}

/// The 412 of a change of `doc` that expected another revision than `current`.
pub fn stale(doc: Doc, current: &StoredPolicy) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        format!(
            "the {} changed: revision {} (by {}, {}) is in force; nothing was changed",
            doc.noun(),
            current.revision,
            author(&current.by),
            current.updated
        ),
    )
}

/// A conditional replacement's refusal, for the API.
pub fn refused<K: Kind>(r: Refused<K::Invalid>) -> ApiError {
    match r {
        Refused::Stale(current) => stale(K::DOC, &current),
        Refused::Failed(ReplaceError::Invalid(e)) => ApiError::invalid::<K>(&e),
        Refused::Failed(ReplaceError::Store(e)) => e,
    }
}

async fn list_revisions<K: Kind>(
    _: Reads,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<Revision>>, ApiError> {
    Ok(Json(state.store(|s| s.revisions(K::DOC)).await?))
}

/// A revision number from the path: digits, else 400 naming it.
pub fn revision_number(n: &str) -> Result<u64, ApiError> {
    n.parse()
        .map_err(|_| ApiError::bad_request(format!("revision: {n:?} is not a revision number")))
}

/// Revision `n` of `doc`, or 404.
pub async fn revision(state: &AppState, doc: Doc, n: u64) -> Result<StoredPolicy, ApiError> {
    state
        .store(move |s| s.revision(doc, n))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no revision {n}")))
}

async fn get_revision<K: Kind>(
    _: Reads,
    State(state): State<Arc<AppState>>,
    Path(n): Path<String>,
) -> Result<Response, ApiError> {
    let stored = revision(&state, K::DOC, revision_number(&n)?).await?;
    Ok((
        [
            (ETAG, format!("\"{}\"", stored.revision)),
            (CONTENT_TYPE, "application/json".into()),
        ],
        stored.document,
    )
        .into_response())
}

/// Makes revision `n`'s document of kind `K` the one in force, as a new revision, if the
/// revision in force is one `expect` allows. Validated again: a document an older console
/// accepted may no longer be valid.
pub async fn restore<K: Kind>(
    state: &AppState,
    n: u64,
    by: &str,
    expect: &Expect,
) -> Result<Replaced, ApiError> {
    let old = revision(state, K::DOC, n).await?;
    state
        .replace_if::<K>(&old.document, by, expect)
        .await
        .map_err(refused::<K>)
}

/// 201 `{"revision": new, "changed": true}`; when revision `n`'s document is the one in force
/// already, no new revision: 200 `{"revision": current, "changed": false}`, as a `PUT` of the
/// same document answers.
async fn restore_revision<K: Kind>(
    Edits(caller): Edits,
    State(state): State<Arc<AppState>>,
    Path(n): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let n = revision_number(&n)?;
    let expect = if_match(&headers)?;
    let (status, stored, changed) = match restore::<K>(&state, n, &caller.name, &expect).await? {
        Replaced::New(p) => (StatusCode::CREATED, p, true),
        Replaced::Same(p) => (StatusCode::OK, p, false),
    };
    let body = json!({ "revision": stored.revision, "changed": changed });
    Ok((
        status,
        [(ETAG, format!("\"{}\"", stored.revision))],
        Json(body),
    )
        .into_response())
}

/// The parameters of "which rule applies"; absent and empty are the same (as a form sends them).
pub const RESOLVE_PARAMETERS: [&str; 5] = ["container", "image", "cluster", "family", "service"];

/// The container a query string describes: `container` and `image` (empty when not given, as a
/// name no collection pattern but `*` matches), and the ECS identity (unknown when not given,
/// which an ECS collection never matches). An unknown or repeated parameter is refused, named.
pub fn identity(query: Option<&str>) -> Result<Identity, String> {
    let mut given: [Option<String>; 5] = Default::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let Some(i) = RESOLVE_PARAMETERS.iter().position(|p| *p == name) else {
            return Err(format!(
                "unknown parameter {name:?} (known: {})",
                RESOLVE_PARAMETERS.join(", ")
            ));
        };
        if given[i].replace(value.into_owned()).is_some() {
            return Err(format!("parameter {name:?} given twice"));
        }
    }
    let [container, image, cluster, family, service] = given.map(|v| v.filter(|v| !v.is_empty()));
    Ok(Identity {
        container: container.unwrap_or_default(),
        image: image.unwrap_or_default(),
        cluster,
        family,
        service,
    })
}

/// The rule of `document` in force for `who`, with its place in `rules`: the defender's own
/// choice ([`policy::Policy::index_in_force`]) on the stored document, which was validated when
/// saved.
pub fn resolve(document: &str, who: &Identity) -> Result<Option<(usize, schema::Rule)>, String> {
    let compiled = policy::parse(document).map_err(|e| format!("stored policy: {e}"))?;
    let Some(index) = compiled.index_in_force(who) else {
        return Ok(None);
    };
    let mut written: Document =
        serde_json::from_str(document).map_err(|e| format!("stored policy: {e}"))?;
    Ok(Some((index, written.rules.swap_remove(index))))
}

async fn resolve_rule(
    _: Reads,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = identity(query.as_deref()).map_err(ApiError::bad_request)?;
    let current = state.policy();
    Ok(Json(match resolve(&current.document, &who) {
        Ok(Some((index, rule))) => json!({ "rule": rule, "index": index }),
        Ok(None) => json!({ "rule": null }),
        Err(e) => return Err(ApiError::internal(e)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_headers() {
        let any = Ok(Expect::Any);
        let one_of = |r: &[u64]| Ok(Expect::OneOf(r.to_vec()));
        let cases: [(&[&str], Result<Expect, &str>); 9] = [
            (&[], any.clone()),
            (&["*"], any.clone()),
            (&["\"7\""], one_of(&[7])),
            (&["\"6\", \"7\""], one_of(&[6, 7])),
            (&["\"6\"", "\"8\""], one_of(&[6, 8])),
            // Strong comparison: a weak tag matches nothing.
            (&["W/\"7\""], one_of(&[])),
            (&["7"], Err("If-Match: \"7\" is not a revision in quotes")),
            (&["\"seven\""], Err("If-Match: \"\\\"seven\\\"\" is not")),
            (&["\"7"], Err("If-Match: \"\\\"7\" is not")),
        ];
        for (values, want) in cases {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(IF_MATCH, v.parse().unwrap());
            }
            match (if_match(&headers), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{values:?}"),
                (Err(got), Err(want)) => {
                    assert_eq!(got.status, StatusCode::BAD_REQUEST);
                    assert!(got.message.starts_with(want), "{values:?}: {}", got.message);
                }
                (got, want) => panic!("{values:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn identities_from_query_strings() {
        let who = |c: &str, i: &str, cl: Option<&str>, f: Option<&str>, s: Option<&str>| Identity {
            container: c.into(),
            image: i.into(),
            cluster: cl.map(str::to_owned),
            family: f.map(str::to_owned),
            service: s.map(str::to_owned),
        };
        let cases = [
            (None, Ok(who("", "", None, None, None))),
            (
                Some("container=web+1&image=nginx%3A1&cluster=&service=orders"),
                Ok(who("web 1", "nginx:1", None, None, Some("orders"))),
            ),
            (
                Some("family=f&container=c"),
                Ok(who("c", "", None, Some("f"), None)),
            ),
            (
                Some("container=a&task=t"),
                Err(
                    "unknown parameter \"task\" (known: container, image, cluster, family, service)",
                ),
            ),
            (
                Some("image=a&image=b"),
                Err("parameter \"image\" given twice"),
            ),
        ];
        for (query, want) in cases {
            assert_eq!(identity(query), want.map_err(str::to_owned), "{query:?}");
        }
    }

    #[test]
    fn the_rule_in_force_is_the_first_enabled_match() {
        let document = r#"{"rules": [
            {"name": "off", "disabled": true, "collections": {"containers": ["web-*"]}},
            {"name": "web", "collections": {"containers": ["web-*"], "images": ["nginx*"]}},
            {"name": "prod", "collections": {"clusters": ["prod"], "services": ["orders-*"]}},
            {"name": "rest", "collections": {"containers": ["*"]}}
        ]}"#;
        let who =
            |container: &str, image: &str, cluster: Option<&str>, service: Option<&str>| Identity {
                container: container.into(),
                image: image.into(),
                cluster: cluster.map(str::to_owned),
                family: None,
                service: service.map(str::to_owned),
            };
        let cases = [
            (who("web-1", "nginx:1", None, None), Some((1, "web"))),
            (who("web-1", "redis", None, None), Some((3, "rest"))),
            (
                who("db", "pg", Some("prod"), Some("orders-api")),
                Some((2, "prod")),
            ),
            // An ECS rule is not applied to a container whose service is unknown.
            (who("db", "pg", Some("prod"), None), Some((3, "rest"))),
        ];
        for (identity, want) in cases {
            let got = resolve(document, &identity).unwrap();
            let got = got.as_ref().map(|(i, rule)| (*i, rule.name.as_str()));
            assert_eq!(got, want, "{identity:?}");
        }
        let only_web = r#"{"rules": [{"name": "web", "collections": {"containers": ["web"]}}]}"#;
        assert!(
            resolve(only_web, &who("db", "pg", None, None))
                .unwrap()
                .is_none()
        );
    }
}
