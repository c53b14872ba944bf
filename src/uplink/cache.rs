//! The last good documents from the console (the runtime policy, the WAAS policy), each kept on
//! disk in a file of its own so that a defender that starts while the console is away enforces
//! what the console last said rather than something older.
//!
//! Only a document that validated is ever saved, and it is validated again when read: a damaged
//! or foreign file is ignored, never trusted. So is a document from another console than
//! `--console` (a state directory reused, or copied into an image): it says nothing about this
//! one.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::{self, Policy};
use crate::waas;

/// A document the console sends and the cache keeps, validated by the defender's own code.
pub trait Document: Sized {
    /// Its file in the state directory.
    const FILE: &'static str;
    fn parse(text: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>>;
    /// The document as JSON.
    fn to_json(&self) -> io::Result<serde_json::Value>;
}

impl Document for Policy {
    const FILE: &'static str = "policy.json";

    fn parse(text: &str) -> Result<Policy, Box<dyn std::error::Error + Send + Sync>> {
        Ok(policy::parse(text)?)
    }

    fn to_json(&self) -> io::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.to_json_pretty())?)
    }
}

impl Document for waas::Compiled {
    const FILE: &'static str = "waas-policy.json";

    fn parse(text: &str) -> Result<waas::Compiled, Box<dyn std::error::Error + Send + Sync>> {
        Ok(waas::compile(text)?)
    }

    fn to_json(&self) -> io::Result<serde_json::Value> {
        Ok(serde_json::to_value(&self.document)?)
    }
}

/// The file's content.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Saved {
    /// The console it came from.
    console: String,
    revision: String,
    /// RFC 3339, when it was saved.
    saved_at: String,
    policy: serde_json::Value,
}

/// A document read back from the cache.
pub struct Cached<D> {
    pub revision: String,
    pub saved_at: String,
    pub policy: D,
}

/// The cache of one kind of document `D`.
pub struct Cache<D> {
    path: PathBuf,
    kind: std::marker::PhantomData<fn() -> D>,
}

/// Why the cached policy cannot be used (it is then ignored).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{0}")]
    Read(#[source] io::Error),
    #[error("{0}")]
    Damaged(#[source] serde_json::Error),
    #[error("it came from the console {saved}, not {console}")]
    OtherConsole { saved: String, console: String },
    #[error("{0}")]
    Invalid(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl<D: Document> Cache<D> {
    pub fn new(state_dir: &Path) -> Cache<D> {
        Cache {
            path: state_dir.join(D::FILE),
            kind: std::marker::PhantomData,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The document cached from `console`; `Ok(None)` when there is none, `Err` when the file is
    /// unusable or from another console.
    pub fn load(&self, console: &str) -> Result<Option<Cached<D>>, CacheError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Read(e)),
        };
        let saved: Saved = serde_json::from_str(&text).map_err(CacheError::Damaged)?;
        if saved.console != console {
            return Err(CacheError::OtherConsole {
                saved: saved.console,
                console: console.into(),
            });
        }
        let policy = D::parse(&saved.policy.to_string()).map_err(CacheError::Invalid)?;
        Ok(Some(Cached {
            revision: saved.revision,
            saved_at: saved.saved_at,
            policy,
        }))
    }

    /// Replaces the cache with `policy` at `revision`.
    pub fn save(&self, console: &str, revision: &str, policy: &D) -> io::Result<()> {
        let document = policy.to_json()?;
        let saved = Saved {
            console: console.into(),
            revision: revision.into(),
            saved_at: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            policy: document,
        };
        let text = serde_json::to_vec_pretty(&saved)?;
        super::write_whole(&self.path.with_extension("json.new"), &self.path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_only_valid_policies() {
        let dir = tempfile::tempdir().unwrap();
        let cache: Cache<Policy> = Cache::new(dir.path());
        assert!(cache.load("http://c").unwrap().is_none());

        let p = policy::parse(
            r#"{"rules": [{"name": "r", "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#,
        )
        .unwrap();
        cache.save("http://c", "7", &p).unwrap();
        let back = cache.load("http://c").unwrap().unwrap();
        // Another console's policy is not this one's.
        let err = cache.load("http://other").err().unwrap().to_string();
        assert!(
            err.contains("from the console http://c, not http://other"),
            "{err}"
        );
        assert_eq!(back.revision, "7");
        assert_eq!(back.policy.to_json_pretty(), p.to_json_pretty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // A document that no longer validates (edited by hand, or from another version) is an
        // error, not a policy.
        let mut saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cache.path()).unwrap()).unwrap();
        saved["policy"]["rules"][0]["processes"]["effect"] = "deny".into();
        std::fs::write(cache.path(), saved.to_string()).unwrap();
        let err = cache.load("http://c").err().unwrap().to_string();
        assert!(err.contains("processes.effect"), "{err}");
        std::fs::write(cache.path(), "{").unwrap();
        assert!(cache.load("http://c").is_err());
    }

    #[test]
    fn waas_documents_have_their_own_file_and_are_validated_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache: Cache<waas::Compiled> = Cache::new(dir.path());
        let compiled =
            waas::compile(r#"{"rules": [{"name": "web", "apps": [{"port": 8080}]}]}"#).unwrap();
        cache.save("http://c", "3", &compiled).unwrap();
        assert_eq!(cache.path(), dir.path().join("waas-policy.json"));
        let back = cache.load("http://c").unwrap().unwrap();
        assert_eq!(
            (back.revision.as_str(), &back.policy.document),
            ("3", &compiled.document)
        );
        let mut saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cache.path()).unwrap()).unwrap();
        saved["policy"]["rules"][0]["apps"][0]["port"] = 0.into();
        std::fs::write(cache.path(), saved.to_string()).unwrap();
        let err = cache.load("http://c").err().unwrap().to_string();
        assert!(err.contains(r#"rules[0] "web": apps[0].port"#), "{err}");
    }
}
