//! Who is calling: the two tokens (admin: people and automation; defender: the defenders), how
//! they are made and kept, and the extractors that let a handler through or answer 401/403.
//!
//! A token comes as `Authorization: Bearer T`, or, for the web pages, in the session cookie set
//! by the login page (HttpOnly, SameSite=Strict, so other sites cannot use it).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use crate::app::{ApiError, AppState};

pub const SESSION_COOKIE: &str = "defender_console";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Operator,
    Auditor,
    Defender,
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

/// 32 random bytes from the kernel, in hex.
fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equality whose time does not depend on where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token a request presents: the bearer header, else the session cookie.
fn presented(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(AUTHORIZATION) {
        return v
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string());
    }
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_string())
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

fn caller(parts: &Parts, state: &AppState) -> Option<Caller> {
    let role = presented(parts).and_then(|t| state.tokens.role(&t))?;
    let name = match role {
        Role::Defender => "defender",
        _ => "admin",
    };
    Some(Caller {
        name: name.to_string(),
        role,
        csrf: String::new(),
    })
}

/// The roles an extractor lets through.
const PEOPLE: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor];
const EDITORS: &[Role] = &[Role::Admin, Role::Operator];
const DEFENDERS: &[Role] = &[Role::Defender];

/// An API caller whose role is one of `allowed`: 401 without a valid credential, 403 with
/// another role.
fn api(parts: &Parts, state: &AppState, allowed: &[Role]) -> Result<Caller, ApiError> {
    match caller(parts, state) {
        Some(c) if allowed.contains(&c.role) => Ok(c),
        Some(_) => Err(ApiError::forbidden()),
        None => Err(ApiError::unauthorized()),
    }
}

/// A page visitor whose role is one of `allowed`: to the login page without a session, 403
/// with another role.
// The rejection is the response itself, as axum's extractors return it; it is made once per
// refused request, so its size does not matter.
#[allow(clippy::result_large_err)]
fn page(parts: &Parts, state: &AppState, allowed: &[Role]) -> Result<Caller, Response> {
    match caller(parts, state) {
        Some(c) if allowed.contains(&c.role) => Ok(c),
        Some(_) => Err(ApiError::forbidden().into_response()),
        None => Err(Redirect::to("/login").into_response()),
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
                $check(parts, s, $roles).map($name)
            }
        }
    };
}

extractor!(
    /// Any valid credential: reading the policy (people and defenders).
    Member, api, ALL, ApiError
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
    /// A page any person may see.
    Person, page, PEOPLE, Response
);
extractor!(
    /// A page that changes the policy (admin, operator).
    Editor, page, EDITORS, Response
);

const ALL: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor, Role::Defender];

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
