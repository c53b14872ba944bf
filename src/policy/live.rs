//! The policy in force while the defender runs: one shared handle that the console feed replaces
//! atomically when a new revision arrives and that the supervisor reads on every decision.
//!
//! A decision takes one snapshot ([`Live::current`]) and decides with it from start to end, so a
//! change never lands half-way through a decision; the next decision sees the new revision.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::{Identity, Policy, Rule};

/// Where the policy in force came from (reported in `defender` audits and heartbeats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Compiled into the binary.
    Default,
    /// The `--policy` file.
    File(PathBuf),
    /// The console, at this revision (its `ETag`).
    Console { revision: String },
    /// The last policy the console gave, kept on disk, at this revision.
    Cached { revision: String },
}

impl Source {
    /// The console revision, when the policy came from the console (directly or cached).
    pub fn revision(&self) -> Option<&str> {
        match self {
            Source::Console { revision } | Source::Cached { revision } => Some(revision),
            Source::Default | Source::File(_) => None,
        }
    }
}

/// As audit messages name it: "the cached policy revision 7".
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default policy"),
            Source::File(path) => write!(f, "the policy file {}", path.display()),
            Source::Console { revision } => write!(f, "policy revision {revision}"),
            Source::Cached { revision } => write!(f, "the cached policy revision {revision}"),
        }
    }
}

/// A policy in force and the rule it selects for this container.
#[derive(Debug)]
pub struct InForce {
    pub policy: Policy,
    /// `policy.rule_in_force(identity)`, computed once per revision; shared with threads that
    /// decide on their own (the DNS forwarder).
    pub rule: Option<Arc<Rule>>,
    pub source: Source,
}

impl InForce {
    pub fn rule_name(&self) -> Option<&str> {
        self.rule.as_deref().map(Rule::name)
    }
}

/// The shared handle. Cloning it shares the same policy.
#[derive(Clone, Debug)]
pub struct Live {
    identity: Arc<Identity>,
    current: Arc<RwLock<Arc<InForce>>>,
}

impl Live {
    /// The handle for one container, starting with `policy`.
    pub fn new(policy: Policy, source: Source, identity: Identity) -> Live {
        let rule = policy.rule_in_force(&identity).cloned().map(Arc::new);
        Live {
            identity: Arc::new(identity),
            current: Arc::new(RwLock::new(Arc::new(InForce {
                policy,
                rule,
                source,
            }))),
        }
    }

    /// The policy in force now: decide a whole call with this one snapshot.
    pub fn current(&self) -> Arc<InForce> {
        // A poisoned lock still holds a whole value: the only write is one assignment.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `policy` in force for every decision that starts after this returns; returns it.
    pub fn set(&self, policy: Policy, source: Source) -> Arc<InForce> {
        let rule = policy.rule_in_force(&self.identity).cloned().map(Arc::new);
        let next = Arc::new(InForce {
            policy,
            rule,
            source,
        });
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next.clone();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(containers: &str, deny: &str) -> Policy {
        super::super::parse(&format!(
            r#"{{"rules": [{{"name": "r-{deny}", "collections": {{"containers": ["{containers}"]}},
                "processes": {{"effect": "prevent", "deny": ["{deny}"]}}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_new_revision_replaces_the_rule_for_later_snapshots_only() {
        let web = Identity {
            container: "web".into(),
            image: "img".into(),
            ..Identity::default()
        };
        let live = Live::new(policy("web", "mkdir"), Source::Default, web);
        let before = live.current();
        assert_eq!(before.rule_name(), Some("r-mkdir"));
        assert_eq!(before.source.revision(), None);

        let clone = live.clone();
        clone.set(
            policy("web", "rmdir"),
            Source::Console {
                revision: "2".into(),
            },
        );
        // The snapshot taken before keeps deciding with its own revision.
        assert_eq!(before.rule_name(), Some("r-mkdir"));
        let after = live.current();
        assert_eq!(after.rule_name(), Some("r-rmdir"));
        assert_eq!(after.source.revision(), Some("2"));

        // A policy with no rule for this container: nothing in force.
        live.set(
            policy("db", "rm"),
            Source::Cached {
                revision: "3".into(),
            },
        );
        assert_eq!(live.current().rule_name(), None);
        assert_eq!(live.current().source.revision(), Some("3"));
    }
}
