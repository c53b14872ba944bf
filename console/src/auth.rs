//! Who is calling: the two tokens given by flags (admin: people and automation; defender: the
//! defenders), how they are made and kept; named tokens and sessions looked up in the store; and
//! the extractors that let a handler through or answer 401/403.
//!
//! A token comes as `Authorization: Bearer T`. The pages send the session cookie set by the
//! login page instead (HttpOnly, SameSite=Strict, so other sites cannot use it), which holds a
//! random session id, never a token or a password.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use crate::app::{ApiError, AppState};
use crate::scope::Scope;

pub const SESSION_COOKIE: &str = "defender_console";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Operator,
    Auditor,
    Defender,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Auditor, Role::Defender];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Defender => "defender",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        crate::events::parse_name(name, &Role::ALL, Role::as_str)
    }

    /// Whether people have this role (users may; a defender is a token's role only).
    pub fn is_person(self) -> bool {
        PEOPLE.contains(&self)
    }
}

pub struct Tokens {
    admin: String,
    defender: String,
}

/// Why the tokens could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{file}: a given token must be non-empty, without spaces")]
    Malformed { file: &'static str },
    #[error("{}: empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating a token: {0}")]
    Random(#[source] std::io::Error),
    #[error("the admin token and the defender token must differ")]
    Same,
}

/// Where a token came from, for the start-up message.
pub enum Origin {
    Given,
    Kept(PathBuf),
    Generated(PathBuf),
}

impl Tokens {
    /// The tokens given (flags, environment), else those kept in `dir`, else new ones written
    /// there (mode 0600).
    pub fn load(
        dir: &Path,
        admin: Option<String>,
        defender: Option<String>,
    ) -> Result<(Tokens, [Origin; 2]), TokenError> {
        let (admin, admin_origin) = token(dir, "admin.token", admin)?;
        let (defender, defender_origin) = token(dir, "defender.token", defender)?;
        if admin == defender {
            return Err(TokenError::Same);
        }
        Ok((Tokens { admin, defender }, [admin_origin, defender_origin]))
    }

    /// The role a presented token grants, compared in constant time.
    pub fn role(&self, presented: &str) -> Option<Role> {
        if same(presented, &self.admin) {
            Some(Role::Admin)
        } else if same(presented, &self.defender) {
            Some(Role::Defender)
        } else {
            None
        }
    }
}

fn token(
    dir: &Path,
    file: &'static str,
    given: Option<String>,
) -> Result<(String, Origin), TokenError> {
    if let Some(t) = given {
        if t.trim().is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::Malformed { file });
        }
        return Ok((t, Origin::Given));
    }
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_string(), Origin::Kept(path))),
        Ok(_) => return Err(TokenError::Empty { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(TokenError::File { path, source }),
    }
    let t = generate().map_err(TokenError::Random)?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{t}\n").as_bytes()));
    match written {
        Ok(()) => Ok((t, Origin::Generated(path))),
        Err(source) => Err(TokenError::File { path, source }),
    }
}

/// 32 random bytes from the kernel, in hex: tokens, session ids, CSRF tokens.
pub fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equality whose time does not depend on where the strings differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The SHA-256 of a token or a session id, in hex: what the store keeps of them. A fast hash
/// is right here, unlike for passwords: these are 32 random bytes, which no amount of guessing
/// finds, so slowing each guess down would protect nothing and slow every request.
pub fn digest(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a request presents: a bearer token, or a session id from the cookie.
enum Presented {
    Bearer(String),
    Session(String),
}

fn presented(parts: &Parts) -> Option<Presented> {
    if let Some(v) = parts.headers.get(AUTHORIZATION) {
        return v
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| Presented::Bearer(t.trim().to_string()));
    }
    session_cookie(&parts.headers).map(Presented::Session)
}

/// The session id of the request's cookie.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE && !value.is_empty()).then(|| value.to_string())
        })
}

/// Who made a request: a name for the activity log and the revisions' `by`, and a role.
/// Every handler that acts for someone takes one of the extractors below, which carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user's name, or the token's (`admin` and `defender` for the tokens given by flags).
    pub name: String,
    pub role: Role,
    /// The session's CSRF token, which every form of the pages carries back (empty for API
    /// calls with a bearer token, which no other site can make a browser send).
    pub csrf: String,
    /// A scoped defender token's collections: where its audits and heartbeats may come from.
    pub scope: Option<Scope>,
}

impl Caller {
    /// Whether a form's `csrf` field is this session's (constant time). Bearer calls have no
    /// session and pass: a browser never attaches an `Authorization` header on its own.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        self.csrf.is_empty() || same(presented, &self.csrf)
    }

    /// The hidden input every form of the pages carries.
    pub fn csrf_input(&self) -> maud::Markup {
        maud::html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// Where [`caller`] leaves the name of who made a request, for the request's log line (the
/// request's extension, put there by `operations::observe`).
#[derive(Clone, Default)]
pub struct CallerName(Arc<std::sync::Mutex<Option<String>>>);

impl CallerName {
    fn set(&self, name: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.to_owned());
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The caller a request's credential names (see [`identify`]), its name left for the log line.
async fn caller(parts: &Parts, state: &AppState) -> Result<Option<Caller>, ApiError> {
    let found = identify(parts, state).await?;
    if let (Some(c), Some(slot)) = (&found, parts.extensions.get::<CallerName>()) {
        slot.set(&c.name);
    }
    Ok(found)
}

/// The caller a request's credential names: a flag token, a named token not revoked (its use
/// recorded), or a session not idle too long. `Err` when the store could not say.
async fn identify(parts: &Parts, state: &AppState) -> Result<Option<Caller>, ApiError> {
    let now = crate::app::now();
    match presented(parts) {
        None => Ok(None),
        Some(Presented::Bearer(token)) => {
            if let Some(role) = state.tokens.role(&token) {
                return Ok(Some(Caller {
                    name: role.as_str().to_owned(),
                    role,
                    csrf: String::new(),
                    scope: None,
                }));
            }
            let hash = digest(&token);
            let Some(t) = state.store(move |s| s.use_token(&hash, &now)).await? else {
                return Ok(None);
            };
            // A row this console did not write (a bad role, unreadable collections) grants
            // nothing.
            let Some(role) = Role::parse(&t.role) else {
                return Ok(None);
            };
            let scope = match t.collections.as_deref().map(Scope::parse).transpose() {
                Ok(scope) => scope,
                Err(_) => return Ok(None),
            };
            Ok(Some(Caller {
                name: t.name,
                role,
                csrf: String::new(),
                scope,
            }))
        }
        Some(Presented::Session(id)) => {
            let hash = digest(&id);
            let cutoff = state.idle_cutoff();
            let Some(s) = state
                .store(move |s| s.session(&hash, &now, &cutoff))
                .await?
            else {
                return Ok(None);
            };
            Ok(Role::parse(&s.role)
                .filter(|r| r.is_person())
                .map(|role| Caller {
                    name: s.user,
                    role,
                    csrf: s.csrf,
                    scope: None,
                }))
        }
    }
}

/// The roles an extractor lets through.
const PEOPLE: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor];
/// The roles that may change the policy (the pages show their controls to these only).
pub const EDITORS: &[Role] = &[Role::Admin, Role::Operator];
const DEFENDERS: &[Role] = &[Role::Defender];
const ADMINS: &[Role] = &[Role::Admin];
const EVERYONE: &[Role] = &Role::ALL;

/// A change through the API made with a session cookie (the pages' scripts) must carry the
/// session's CSRF token in this header, as the pages' forms carry it in a field.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An API caller whose role is one of `allowed`: 401 without a valid credential, 403 with
/// another role, or for a change made with a session cookie without its CSRF token.
async fn api(parts: &Parts, state: &AppState, allowed: &[Role]) -> Result<Caller, ApiError> {
    match caller(parts, state).await? {
        Some(c) if !allowed.contains(&c.role) => Err(ApiError::forbidden(c.role)),
        Some(c) if !parts.method.is_safe() && !c.csrf_ok(header_csrf(parts)) => Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("a change made with a session needs its CSRF token in {CSRF_HEADER}"),
        )),
        Some(c) => Ok(c),
        None => Err(ApiError::unauthorized()),
    }
}

fn header_csrf(parts: &Parts) -> &str {
    parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A page visitor whose role is one of `allowed`: to the login page without a session, 403
/// with another role.
// The rejection is the response itself, as axum's extractors return it; it is made once per
// refused request, so its size does not matter.
#[allow(clippy::result_large_err)]
async fn page(parts: &Parts, state: &AppState, allowed: &[Role]) -> Result<Caller, Response> {
    match caller(parts, state).await {
        Ok(Some(c)) if allowed.contains(&c.role) => Ok(c),
        Ok(Some(c)) => Err(crate::web::refused(ApiError::forbidden(c.role).message)),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(e.into_response()),
    }
}

macro_rules! extractor {
    ($(#[$doc:meta])* $name:ident, $check:ident, $roles:ident, $rejection:ty) => {
        $(#[$doc])*
        #[allow(dead_code, reason = "not every handler needs to know who called")]
        pub struct $name(pub Caller);

        impl FromRequestParts<Arc<AppState>> for $name {
            type Rejection = $rejection;

            async fn from_request_parts(
                parts: &mut Parts,
                s: &Arc<AppState>,
            ) -> Result<Self, $rejection> {
                $check(parts, s, $roles).await.map($name)
            }
        }
    };
}

extractor!(
    /// Any valid credential: reading the policy (people and defenders).
    Member, api, EVERYONE, ApiError
);
extractor!(
    /// A defender: sending audits and heartbeats.
    Defends, api, DEFENDERS, ApiError
);
extractor!(
    /// A person who may read (admin, operator, auditor): audits, defenders, activity.
    Reads, api, PEOPLE, ApiError
);
extractor!(
    /// A person who may change the policy (admin, operator).
    Edits, api, EDITORS, ApiError
);
extractor!(
    /// An administrator: users and tokens.
    Admin, api, ADMINS, ApiError
);
extractor!(
    /// A page any person may see.
    Person, page, PEOPLE, Response
);
extractor!(
    /// A page that changes the policy (admin, operator).
    Editor, page, EDITORS, Response
);
extractor!(
    /// A page of an administrator's: users and tokens.
    PageAdmin, page, ADMINS, Response
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_generated_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (t, origins) = Tokens::load(dir.path(), None, None).unwrap();
        assert!(matches!(
            origins,
            [Origin::Generated(_), Origin::Generated(_)]
        ));
        let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!((admin.trim().len(), mode & 0o777), (64, 0o600));
        assert_eq!(t.role(admin.trim()), Some(Role::Admin));

        let (again, origins) = Tokens::load(dir.path(), None, Some("d-1".into())).unwrap();
        assert!(matches!(origins, [Origin::Kept(_), Origin::Given]));
        assert_eq!(again.role(admin.trim()), Some(Role::Admin));
        assert_eq!(again.role("d-1"), Some(Role::Defender));
        assert_eq!(again.role("d-2"), None);
        assert_eq!(again.role(""), None);
        assert!(Tokens::load(dir.path(), Some("x".into()), Some("x".into())).is_err());
        assert!(Tokens::load(dir.path(), Some("a b".into()), None).is_err());
    }

    #[test]
    fn roles_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Admin"), None);
        let people: Vec<Role> = Role::ALL.into_iter().filter(|r| r.is_person()).collect();
        assert_eq!(people, [Role::Admin, Role::Operator, Role::Auditor]);
    }

    #[test]
    fn digests_are_sha256_in_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_equality() {
        for (a, b, want) in [
            ("abc", "abc", true),
            ("abc", "abd", false),
            ("ab", "abc", false),
        ] {
            assert_eq!(same(a, b), want);
        }
    }
}
