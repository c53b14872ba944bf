//! Failed logins, throttled: per user name and per client address, a few failures are free, then
//! each further one locks that name (or address) out for twice as long as the one before, up to
//! an hour. A locked-out attempt is answered 429 without its password being checked, so that
//! guessing costs time whatever the guess. A success clears the name's and the address's count.
//!
//! Kept in memory: a restart forgets the counts, which gives a guesser one more round of free
//! attempts per restart, and the console does not restart on request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures allowed per user name before the lockouts start.
pub const FREE_PER_NAME: u32 = 5;
/// Failures allowed per client address (several people may share one) before the lockouts start.
pub const FREE_PER_ADDRESS: u32 = 20;
/// The first lockout; each next failure doubles it.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// Counts kept at most; beyond, those not locked out are forgotten first.
const MAX_KEYS: usize = 10_000;

/// The lockout that follows the `failures`-th failure, given `free` free ones.
fn lockout(failures: u32, free: u32) -> Option<Duration> {
    let beyond = failures.checked_sub(free)?;
    let doubled = FIRST_LOCKOUT
        .checked_mul(1u32.checked_shl(beyond).unwrap_or(u32::MAX))
        .unwrap_or(MAX_LOCKOUT);
    Some(doubled.min(MAX_LOCKOUT))
}

struct Count {
    failures: u32,
    until: Option<Instant>,
}

#[derive(Default)]
pub struct Throttle {
    counts: HashMap<String, Count>,
}

/// What is throttled: a user name, or a client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Name(String),
    Address(String),
}

impl Key {
    fn text(&self) -> String {
        match self {
            Key::Name(n) => format!("name:{n}"),
            Key::Address(a) => format!("address:{a}"),
        }
    }

    fn free(&self) -> u32 {
        match self {
            Key::Name(_) => FREE_PER_NAME,
            Key::Address(_) => FREE_PER_ADDRESS,
        }
    }
}

impl Throttle {
    /// How long until these keys may try again; `None`: now.
    pub fn wait(&self, keys: &[Key], now: Instant) -> Option<Duration> {
        keys.iter()
            .filter_map(|k| self.counts.get(&k.text())?.until)
            .filter_map(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
            .max()
    }

    pub fn failed(&mut self, keys: &[Key], now: Instant) {
        if self.counts.len() >= MAX_KEYS {
            self.counts
                .retain(|_, c| c.until.is_some_and(|until| until > now));
        }
        for key in keys {
            let count = self.counts.entry(key.text()).or_insert(Count {
                failures: 0,
                until: None,
            });
            count.failures = count.failures.saturating_add(1);
            count.until = lockout(count.failures, key.free()).map(|d| now + d);
        }
    }

    pub fn succeeded(&mut self, keys: &[Key]) {
        for key in keys {
            self.counts.remove(&key.text());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_after_the_free_failures_up_to_the_cap() {
        let s = Duration::from_secs;
        for (failures, free, want) in [
            (1, 5, None),
            (4, 5, None),
            (5, 5, Some(s(30))),
            (6, 5, Some(s(60))),
            (8, 5, Some(s(240))),
            (12, 5, Some(MAX_LOCKOUT)),
            (u32::MAX, 5, Some(MAX_LOCKOUT)),
            (20, 20, Some(s(30))),
        ] {
            assert_eq!(lockout(failures, free), want, "{failures}/{free}");
        }
    }

    #[test]
    fn names_and_addresses_are_counted_apart_and_cleared_by_a_success() {
        let now = Instant::now();
        let mut t = Throttle::default();
        let alice = [Key::Name("alice".into()), Key::Address("10.0.0.1".into())];
        let bob = [Key::Name("bob".into()), Key::Address("10.0.0.1".into())];
        for _ in 0..FREE_PER_NAME - 1 {
            t.failed(&alice, now);
        }
        assert_eq!(t.wait(&alice, now), None);
        t.failed(&alice, now);
        assert_eq!(t.wait(&alice, now), Some(FIRST_LOCKOUT));
        assert_eq!(t.wait(&alice, now + FIRST_LOCKOUT), None);
        // Another name from the same address: the address has failures, not yet too many.
        assert_eq!(t.wait(&bob, now), None);
        t.succeeded(&alice);
        assert_eq!(t.wait(&alice, now), None);
    }
}
