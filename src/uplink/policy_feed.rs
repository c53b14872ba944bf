//! The policy feeds: a long poll on each of the console's policy documents (the runtime policy,
//! the WAAS policy) that puts each new revision in force the moment it arrives (one atomic swap,
//! see `policy::live` and `waas::live`), keeps it on disk as the last good one (when there is a
//! state directory), and audits what happened. A revision that does not validate here is audited
//! and ignored: the document in force stays.
//!
//! A console that does not serve the WAAS policy (404: older than the firewall) is asked again
//! only every [`NO_WAAS_RETRY`], and said once: the WAAS document in force (the `--waas-policy`
//! file, the cached one, or none) stays.

use std::time::Duration;

use super::client::{ClientError, Fetched, POLICY, WAAS_POLICY};
use super::{Backoff, Shared};
use crate::policy::{self, live::Source};
use crate::waas;

/// How long the console holds a poll open when nothing changes.
const LONG_POLL: Duration = Duration::from_secs(30);
/// How much longer than that a poll may take before it counts as lost.
const SLACK: Duration = Duration::from_secs(10);
/// How often a console that answered 404 for the WAAS policy is asked again (it may be upgraded).
const NO_WAAS_RETRY: Duration = Duration::from_secs(300);

/// Which document a feed polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Feed {
    Runtime,
    Waas,
}

impl Feed {
    pub(super) fn path(self) -> &'static str {
        match self {
            Feed::Runtime => POLICY,
            Feed::Waas => WAAS_POLICY,
        }
    }

    /// Validates `document` with the same code as the flag and puts it in force, or audits why
    /// not.
    pub(super) fn apply(self, shared: &Shared, revision: &str, document: &str) {
        match self {
            Feed::Runtime => apply(shared, revision, document),
            Feed::Waas => apply_waas(shared, revision, document),
        }
    }
}

/// Runs forever (the thread ends with the process). `have` is the revision already in force
/// from the console, if any.
pub(super) fn run(shared: &Shared, feed: Feed, mut have: Option<String>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut said_no_waas = false;
    loop {
        let ticket = shared.exchange();
        match shared
            .client
            .fetch_policy(feed.path(), have.as_deref(), LONG_POLL, SLACK)
        {
            Ok(Fetched::Unchanged) => {
                shared.reached(ticket);
                backoff.reset();
            }
            Ok(Fetched::Policy { revision, document }) => {
                shared.reached(ticket);
                backoff.reset();
                feed.apply(shared, &revision, &document);
                have = Some(revision);
            }
            Err(ClientError::Refused { status: 404, .. }) if feed == Feed::Waas => {
                // Not a failure of the link (the runtime feed says how that is): this console
                // has no WAAS policy to give.
                if !said_no_waas {
                    said_no_waas = true;
                    shared.report(no_waas(shared));
                }
                std::thread::sleep(NO_WAAS_RETRY);
            }
            Err(e) => {
                shared.missed(ticket, &e);
                let pause = backoff.next_delay();
                log::debug!(
                    "policy poll {}: {e}; next in {} ms",
                    feed.path(),
                    pause.as_millis()
                );
                std::thread::sleep(pause);
            }
        }
    }
}

/// What a console without the WAAS endpoint means.
pub(super) fn no_waas(shared: &Shared) -> String {
    format!(
        "Console {} serves no WAAS policy (HTTP 404): {} stays in force",
        shared.client.base(),
        shared.waas.current().describe()
    )
}

/// Validates `document` with the same code as `--policy` and puts it in force, or audits why not.
pub(super) fn apply(shared: &Shared, revision: &str, document: &str) {
    match policy::parse(document) {
        Ok(p) => {
            let in_force = shared.live.set(
                p,
                Source::Console {
                    revision: revision.into(),
                },
            );
            // Without a state directory nothing is kept (said once, at start).
            if let Some(cache) = &shared.cache
                && let Err(e) = cache.save(shared.client.base(), revision, &in_force.policy)
            {
                log::warn!(
                    "cannot keep policy revision {revision} in {}: {e}",
                    cache.path().display()
                );
            }
            let rule = match in_force.rule_name() {
                Some(name) => format!("rule {name:?} is in force for this container"),
                None => "no rule matches this container: nothing is enforced".into(),
            };
            shared.report(format!(
                "Policy revision {revision} from the console applied: {rule}"
            ));
        }
        Err(e) => {
            let errors = e.to_string().replace('\n', "; ");
            shared.report(format!(
                "Policy revision {revision} from the console rejected, {} stays in force: {errors}",
                shared.live.current().source
            ));
        }
    }
}

/// Validates `document` with the same code as `--waas-policy` and puts it in force (for the next
/// connection accepted on a protected port, and the next bind of one), or audits why not.
pub(super) fn apply_waas(shared: &Shared, revision: &str, document: &str) {
    match waas::compile(document) {
        Ok(compiled) => {
            let in_force = shared.waas.set(
                Some(&compiled),
                Source::Console {
                    revision: revision.into(),
                },
            );
            if let Some(cache) = &shared.waas_cache
                && let Err(e) = cache.save(shared.client.base(), revision, &compiled)
            {
                log::warn!(
                    "cannot keep WAAS policy revision {revision} in {}: {e}",
                    cache.path().display()
                );
            }
            let rule = match in_force.rule.as_deref() {
                Some(rule) => format!(
                    "WAAS rule {:?} is in force for this container, protecting ports {:?}",
                    rule.name,
                    in_force.ports()
                ),
                None => "no WAAS rule matches this container: no port is protected".into(),
            };
            shared.report(format!(
                "WAAS policy revision {revision} from the console applied: {rule}"
            ));
        }
        Err(e) => {
            shared.report(format!(
                "WAAS policy revision {revision} from the console rejected, {} stays in force: {e}",
                shared.waas.current().describe()
            ));
        }
    }
}
