//! A defender token's scope: the collections (a rule's, same shape and globs) of the containers
//! it may report for. Matching is the defender's own: the scope is compiled as the collections of
//! a one-rule policy, and a container is inside when that rule would be in force for it, ECS
//! lists failing closed on an unknown value as they do there.

use std::sync::Arc;

use defender::policy::schema::Collections;
use defender::policy::{self, Identity, Policy};

/// Why collections cannot scope a token.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("collections: {0}")]
    Shape(#[source] serde_json::Error),
    #[error("collections: {0}")]
    Invalid(String),
}

/// A defender token's collections, compiled.
#[derive(Clone, Debug)]
pub struct Scope {
    collections: Collections,
    compiled: Arc<Policy>,
}

impl PartialEq for Scope {
    fn eq(&self, other: &Scope) -> bool {
        self.collections == other.collections
    }
}

impl Eq for Scope {}

impl Scope {
    /// Collections from JSON, checked as a rule's are (their globs included).
    pub fn parse(json: &str) -> Result<Scope, ScopeError> {
        let collections: Collections = serde_json::from_str(json).map_err(ScopeError::Shape)?;
        let document = serde_json::json!({
            "rules": [{ "name": "token scope", "collections": collections }]
        });
        let compiled =
            policy::parse(&document.to_string()).map_err(|e| ScopeError::Invalid(e.to_string()))?;
        Ok(Scope {
            collections,
            compiled: Arc::new(compiled),
        })
    }

    /// The collections as stored (normalized JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.collections).expect("collections serialize")
    }

    /// Whether a container of this identity is inside.
    pub fn admits(&self, who: &Identity) -> bool {
        self.compiled.rule_in_force(who).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(container: &str, image: &str, service: Option<&str>) -> Identity {
        Identity {
            container: container.into(),
            image: image.into(),
            service: service.map(str::to_owned),
            ..Identity::default()
        }
    }

    #[test]
    fn scopes_admit_what_a_rule_of_the_same_collections_matches() {
        let cases = [
            (
                r#"{"containers": ["orders-*"]}"#,
                who("orders-api", "i", None),
                true,
            ),
            (
                r#"{"containers": ["orders-*"]}"#,
                who("billing", "i", None),
                false,
            ),
            (
                r#"{"images": ["reg/orders:*"]}"#,
                who("x", "reg/orders:1", None),
                true,
            ),
            (
                r#"{"images": ["reg/orders:*"]}"#,
                who("x", "reg/billing:1", None),
                false,
            ),
            (
                r#"{"services": ["orders"]}"#,
                who("x", "i", Some("orders")),
                true,
            ),
            // An ECS list and a container whose service is unknown: outside (fail closed).
            (r#"{"services": ["orders"]}"#, who("x", "i", None), false),
            ("{}", who("any", "thing", None), true),
        ];
        for (json, identity, want) in cases {
            let scope = Scope::parse(json).unwrap();
            assert_eq!(scope.admits(&identity), want, "{json} {identity:?}");
        }
    }

    #[test]
    fn bad_collections_are_refused_with_what_is_wrong() {
        for (json, want) in [
            (r#"{"containers": "web"}"#, "collections: invalid type"),
            (r#"{"pods": ["web"]}"#, "collections: unknown field `pods`"),
            ("[1]", "collections: invalid type"),
        ] {
            let err = Scope::parse(json).unwrap_err().to_string();
            assert!(err.starts_with(want), "{json}: {err}");
        }
    }
}
