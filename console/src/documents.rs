//! The policy documents the console keeps, each with the same lifecycle (revisions with authors,
//! ETag and long poll, `If-Match`, restore, the activity log): the runtime policy and the web
//! application firewall (WAAS) policy. What differs between them is here: where the API serves
//! each, how it is validated (the defender's own code), the document a new console starts with.

use defender::policy::{self, PolicyError};
use defender::waas::{self, WaasError};
use serde_json::{Value, json};

/// Which document: stored in its own table, served at its own path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Doc {
    Runtime,
    Waas,
}

impl Doc {
    pub const ALL: [Doc; 2] = [Doc::Runtime, Doc::Waas];

    /// The document's path in the API.
    pub fn path(self) -> &'static str {
        match self {
            Doc::Runtime => "/api/v1/policies/runtime/app-embedded",
            Doc::Waas => "/api/v1/policies/firewall/app/app-embedded",
        }
    }

    /// The activity log's action for a new revision.
    pub fn action(self) -> &'static str {
        match self {
            Doc::Runtime => "policy",
            Doc::Waas => "waasPolicy",
        }
    }

    /// Its name in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Doc::Runtime => "policy",
            Doc::Waas => "WAAS policy",
        }
    }

    /// The slot of this document in per-document arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A kind of document, as a type: the API's handlers are generic over it, so that each document's
/// routes are the same code with its own validation.
pub trait Kind: Send + Sync + 'static {
    const DOC: Doc;
    /// Why a document of this kind is invalid.
    type Invalid: Send + 'static;
    /// The document as the defender's parser validated it, in the form it is stored in.
    fn validated(text: &str) -> Result<String, Self::Invalid>;
    /// Every problem of an invalid document, for the API: where and what, plus the one-line text
    /// the defender prints.
    fn problems(e: &Self::Invalid) -> Vec<Value>;
}

/// The runtime policy (docs/policy.md).
pub struct Runtime;

/// The WAAS policy (docs/waas.md).
pub struct Waas;

impl Kind for Runtime {
    const DOC: Doc = Doc::Runtime;
    type Invalid = PolicyError;

    fn validated(text: &str) -> Result<String, PolicyError> {
        Ok(policy::parse(text)?.to_json_pretty())
    }

    fn problems(e: &PolicyError) -> Vec<Value> {
        match e {
            PolicyError::Syntax {
                line,
                column,
                message,
            } => vec![json!({
                "list": null, "rule": null, "name": null, "field": "", "line": line,
                "column": column, "message": message, "text": e.to_string(),
            })],
            PolicyError::Invalid(list) => list
                .iter()
                .map(|p| {
                    json!({
                        "list": p.rule.as_ref().map(|r| r.list.as_str()),
                        "rule": p.rule.as_ref().map(|r| r.index),
                        "name": p.rule.as_ref().and_then(|r| r.name.clone()),
                        "field": p.field,
                        "message": p.message,
                        "text": p.to_string(),
                    })
                })
                .collect(),
        }
    }
}

impl Kind for Waas {
    const DOC: Doc = Doc::Waas;
    type Invalid = WaasError;

    /// Pretty-printed as the user wrote it (not re-serialized from the parsed document, which
    /// would add every defaulted field).
    fn validated(text: &str) -> Result<String, WaasError> {
        waas::compile(text)?;
        let value: Value = serde_json::from_str(text).map_err(|e| WaasError {
            path: "document".into(),
            message: e.to_string(),
        })?;
        Ok(serde_json::to_string_pretty(&value).expect("a JSON value always serializes"))
    }

    fn problems(e: &WaasError) -> Vec<Value> {
        vec![json!({ "field": e.path, "message": e.message, "text": e.to_string() })]
    }
}

/// The document a new console starts with, as revision 1: defenders always get one.
pub fn first_document(doc: Doc) -> String {
    match doc {
        Doc::Runtime => policy::default_policy().to_json_pretty(),
        // No firewall anywhere until someone writes a rule.
        Doc::Waas => "{\n  \"rules\": []\n}".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_documents_are_valid_and_kept_as_written() {
        for doc in Doc::ALL {
            let first = first_document(doc);
            let validated = match doc {
                Doc::Runtime => Runtime::validated(&first).ok(),
                Doc::Waas => Waas::validated(&first).ok(),
            };
            assert_eq!(validated.as_deref(), Some(first.as_str()), "{doc:?}");
            assert_eq!(Doc::ALL[doc.index()], doc);
        }
        // A WAAS document is stored as written (pretty), without the defaults filled in.
        let text = r#"{"rules":[{"name":"web","apps":[{"port":8080}]}]}"#;
        let stored = Waas::validated(text).unwrap();
        assert!(!stored.contains("protections"), "{stored}");
        assert!(stored.contains("\"port\": 8080"), "{stored}");
        let e = Waas::validated(r#"{"rules":[{"name":"web","apps":[{"port":0}]}]}"#).unwrap_err();
        let problems = Waas::problems(&e);
        assert_eq!(problems[0]["field"], r#"rules[0] "web": apps[0].port"#);
    }
}
