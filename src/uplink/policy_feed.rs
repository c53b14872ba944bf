//! The policy feed: a long poll on the console's policy that puts each new revision in force the
//! moment it arrives (one atomic swap, see `policy::live`), keeps it on disk as the last good one
//! (when there is a state directory),
//! and audits what happened. A revision that does not validate here is audited and ignored: the
//! policy in force stays.

use std::time::Duration;

use super::client::Fetched;
use super::{Backoff, Shared};
use crate::policy::{self, live::Source};

/// How long the console holds a poll open when nothing changes.
const LONG_POLL: Duration = Duration::from_secs(30);
/// How much longer than that a poll may take before it counts as lost.
const SLACK: Duration = Duration::from_secs(10);

/// Runs forever (the thread ends with the process). `have` is the revision already in force
/// from the console, if any.
pub(super) fn run(shared: &Shared, mut have: Option<String>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        match shared
            .client
            .fetch_policy(have.as_deref(), LONG_POLL, SLACK)
        {
            Ok(Fetched::Unchanged) => {
                shared.reached();
                backoff.reset();
            }
            Ok(Fetched::Policy { revision, document }) => {
                shared.reached();
                backoff.reset();
                apply(shared, &revision, &document);
                have = Some(revision);
            }
            Err(e) => {
                shared.missed(&e);
                std::thread::sleep(backoff.next_delay());
            }
        }
    }
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
