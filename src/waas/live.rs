//! The WAAS policy in force while the defender runs: one shared handle, replaced atomically when
//! the console sends a new revision, read by the firewall for every connection it accepts.

use std::sync::{Arc, RwLock};

use super::policy::{App, Compiled, Rule};
use crate::policy::Identity;
use crate::policy::live::Source;

/// A WAAS document in force and the rule it selects for this container (`None`: no firewall).
#[derive(Debug)]
pub struct InForce {
    pub rule: Option<Arc<Rule>>,
    pub source: Source,
}

impl InForce {
    /// Where the document in force came from, as audit messages name it: "WAAS policy revision
    /// 7", "no WAAS policy".
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Default => "no WAAS policy".to_owned(),
            Source::File(path) => format!("the WAAS policy file {}", path.display()),
            Source::Console { revision } => format!("WAAS policy revision {revision}"),
            Source::Cached { revision } => format!("the cached WAAS policy revision {revision}"),
        }
    }

    /// The ports the rule in force protects, in its order.
    pub fn ports(&self) -> Vec<u16> {
        self.rule.as_deref().map_or_else(Vec::new, |rule| {
            rule.apps.iter().map(|app| app.port).collect()
        })
    }

    /// What protects `port`, if the rule in force protects it.
    pub fn app(&self, port: u16) -> Option<&App> {
        self.rule
            .as_deref()?
            .apps
            .iter()
            .find(|app| app.port == port)
    }
}

/// The shared handle; clones share the same document.
#[derive(Clone, Debug)]
pub struct Live {
    identity: Arc<Identity>,
    current: Arc<RwLock<Arc<InForce>>>,
}

impl Live {
    /// The handle for one container, starting with `document` (`None`: no WAAS document at all).
    pub fn new(document: Option<&Compiled>, source: Source, identity: Identity) -> Live {
        let live = Live {
            identity: Arc::new(identity),
            current: Arc::new(RwLock::new(Arc::new(InForce {
                rule: None,
                source: source.clone(),
            }))),
        };
        live.set(document, source);
        live
    }

    /// The document in force now: decide a whole request with this one snapshot.
    pub fn current(&self) -> Arc<InForce> {
        // A poisoned lock still holds a whole value: the only write is one assignment.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `document` in force for every request inspected after this returns.
    pub fn set(&self, document: Option<&Compiled>, source: Source) -> Arc<InForce> {
        let rule = document
            .and_then(|d| d.rule_in_force(&self.identity))
            .cloned()
            .map(Arc::new);
        let next = Arc::new(InForce { rule, source });
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next.clone();
        next
    }
}
