//! What the firewall decides about a request besides its inspection, and the state it keeps for
//! that: denied sources, the rate limit (a token bucket per source address), the bans, and the
//! one mapping from findings to what happens (pass, audit, refuse, ban). Pure: the clock is an
//! argument, nothing here performs I/O. The state is bounded: at most [`MAX_SOURCES`] addresses
//! are tracked by each table (docs/waas.md says how they are evicted).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::inspect::Finding;
use super::policy::{App, Attack, Effect, RateLimit};

/// The most source addresses one protected port tracks for its rate limit, and separately for
/// its bans. Past it, entries are evicted (see [`Buckets::take`], [`Bans::ban`]).
pub const MAX_SOURCES: usize = 16_384;

/// The body a request may have when the app sets no `maxBodyBytes`.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;

/// The address a client connects from, as audits and decisions see it: an IPv4 client of a
/// dual-stack listener (`::ffff:a.b.c.d`) is the IPv4 address.
pub fn source(peer: IpAddr) -> IpAddr {
    peer.to_canonical()
}

/// Whether `source` is in the app's `deniedSources` (CIDRs). An entry that is not one denies
/// everything: a policy that cannot be read is not a policy that allows (the document's checks
/// refuse such entries before they are in force).
pub fn denied(app: &App, source: IpAddr) -> bool {
    app.denied_sources.iter().any(|entry| {
        entry
            .parse::<IpNet>()
            .ok()
            .is_none_or(|net| net.contains(&source))
    })
}

/// The body size above which a request is a `malformedRequest`.
pub fn max_body(app: &App) -> u64 {
    app.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY)
}

/// What becomes of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Each finding audited, with the effect applied to it.
    pub audits: Vec<(Finding, Effect)>,
    /// Answered 403 (the first audit is the refusal's); the application never sees it.
    pub refuse: bool,
    /// The source is banned for the app's `ban.minutes` from now.
    pub ban: bool,
}

impl Verdict {
    pub fn pass() -> Verdict {
        Verdict {
            audits: Vec::new(),
            refuse: false,
            ban: false,
        }
    }
}

/// The verdict on `findings` (in the contract's order) under their effects (`effect_of`):
/// `disable`d ones are dropped; each attack is audited once (its first field); the refusal, when
/// any finding prevents or bans, is audited first.
pub fn judge(findings: &[Finding], effect_of: impl Fn(Attack) -> Effect) -> Verdict {
    let mut audits: Vec<(Finding, Effect)> = Vec::new();
    for f in findings {
        let effect = effect_of(f.attack);
        if effect != Effect::Disable && !audits.iter().any(|(a, _)| a.attack == f.attack) {
            audits.push((f.clone(), effect));
        }
    }
    let refusing = |e: Effect| matches!(e, Effect::Prevent | Effect::Ban);
    if let Some(first) = audits.iter().position(|(_, e)| refusing(*e)) {
        let refusal = audits.remove(first);
        audits.insert(0, refusal);
    }
    Verdict {
        refuse: audits.iter().any(|(_, e)| refusing(*e)),
        ban: audits.iter().any(|(_, e)| *e == Effect::Ban),
        audits,
    }
}

/// The effect of `attack` in `app`: its protection's, `apiEffect` for an API violation.
pub fn effect_of(app: &App, attack: Attack) -> Effect {
    match attack {
        Attack::ApiViolation => app.api_effect,
        Attack::RateLimit => app
            .rate_limit
            .as_ref()
            .map_or(Effect::Disable, |r| r.effect),
        Attack::DeniedSource | Attack::Banned | Attack::InternalError => Effect::Prevent,
        other => app.protections.effect(other).unwrap_or(Effect::Disable),
    }
}

/// One source's bucket: `tokens` as of `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The rate limit's token buckets, one per source address: each holds up to `burst` requests and
/// refills at `requestsPerSecond`.
#[derive(Debug, Default)]
pub struct Buckets {
    by_source: HashMap<IpAddr, Bucket>,
}

impl Buckets {
    /// Takes one token for a request from `source` at `now`; false when its bucket is empty (the
    /// request is over the limit). When [`MAX_SOURCES`] addresses are tracked, the buckets that
    /// have refilled (which say nothing a fresh bucket would not) are dropped first, then others
    /// until an eighth of the room is free.
    pub fn take(&mut self, limit: &RateLimit, source: IpAddr, now: Instant) -> bool {
        let burst = f64::from(limit.burst.max(1));
        let rate = f64::from(limit.requests_per_second);
        let refilled = |b: &Bucket| {
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(burst)
        };
        if !self.by_source.contains_key(&source) && self.by_source.len() >= MAX_SOURCES {
            self.by_source.retain(|_, b| refilled(b) < burst);
            let excess = self
                .by_source
                .len()
                .saturating_sub(MAX_SOURCES - MAX_SOURCES / 8);
            let evicted: Vec<IpAddr> = self.by_source.keys().take(excess).copied().collect();
            for k in evicted {
                self.by_source.remove(&k);
            }
        }
        let bucket = self.by_source.entry(source).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = refilled(bucket);
        let allowed = tokens >= 1.0;
        *bucket = Bucket {
            tokens: if allowed { tokens - 1.0 } else { tokens },
            at: now,
        };
        allowed
    }

    pub fn len(&self) -> usize {
        self.by_source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }
}

/// Banned source addresses and until when.
#[derive(Debug, Default)]
pub struct Bans {
    until: HashMap<IpAddr, Instant>,
}

impl Bans {
    /// Bans `source` for `minutes` from `now`. When [`MAX_SOURCES`] addresses are banned, the
    /// expired bans are dropped, then the bans ending soonest.
    pub fn ban(&mut self, source: IpAddr, minutes: u32, now: Instant) {
        let until = now + Duration::from_secs(u64::from(minutes) * 60);
        if !self.until.contains_key(&source) && self.until.len() >= MAX_SOURCES {
            self.until.retain(|_, end| *end > now);
            if self.until.len() >= MAX_SOURCES {
                // Down to seven eighths of the room at once: this sort is paid once per
                // MAX_SOURCES / 8 new bans.
                let mut ends: Vec<(Instant, IpAddr)> =
                    self.until.iter().map(|(ip, end)| (*end, *ip)).collect();
                ends.sort_unstable();
                let excess = ends.len() - (MAX_SOURCES - MAX_SOURCES / 8);
                for (_, ip) in &ends[..excess] {
                    self.until.remove(ip);
                }
            }
        }
        let end = self.until.entry(source).or_insert(until);
        *end = (*end).max(until);
    }

    /// Whether `source` is banned at `now` (an expired ban is forgotten).
    pub fn banned(&mut self, source: IpAddr, now: Instant) -> bool {
        match self.until.get(&source) {
            Some(end) if *end > now => true,
            Some(_) => {
                self.until.remove(&source);
                false
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(json: &str) -> App {
        serde_json::from_str(json).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn denied_sources() {
        let a = app(
            r#"{"port": 80, "deniedSources": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]}"#,
        );
        let bad = app(r#"{"port": 80, "deniedSources": ["not an address"]}"#);
        let none = app(r#"{"port": 80}"#);
        let cases: &[(&str, &App, &str, bool)] = &[
            ("in the v4 block", &a, "203.0.113.9", true),
            ("outside", &a, "203.0.114.9", false),
            ("a mapped v4 client", &a, "::ffff:203.0.113.9", true),
            ("in the v6 block", &a, "2001:db8::1", true),
            ("a single address", &a, "198.51.100.7", true),
            ("next to it", &a, "198.51.100.8", false),
            ("an unreadable entry denies", &bad, "192.0.2.1", true),
            ("no list", &none, "203.0.113.9", false),
        ];
        for (what, app, addr, want) in cases {
            assert_eq!(denied(app, source(ip(addr))), *want, "{what}");
        }
    }

    #[test]
    fn verdicts() {
        let f = |attack, field: &str| Finding {
            attack,
            field: field.into(),
        };
        let protections = app(
            r#"{"port": 80, "protections": {"sqli": "alert", "xss": "prevent", "lfi": "ban", "cmdi": "disable"}, "apiEffect": "alert"}"#,
        );
        let effect = |a| effect_of(&protections, a);
        type Case<'a> = (&'a str, Vec<Finding>, Vec<(Attack, &'a str)>, bool, bool);
        let cases: Vec<Case> = vec![
            ("nothing found", vec![], vec![], false, false),
            (
                "alert passes",
                vec![f(Attack::Sqli, "query:id")],
                vec![(Attack::Sqli, "query:id")],
                false,
                false,
            ),
            (
                "disable is not audited",
                vec![f(Attack::Cmdi, "body:c")],
                vec![],
                false,
                false,
            ),
            (
                "the refusal comes first, alerts after",
                vec![f(Attack::Sqli, "query:id"), f(Attack::Xss, "body:name")],
                vec![(Attack::Xss, "body:name"), (Attack::Sqli, "query:id")],
                true,
                false,
            ),
            (
                "one audit per attack",
                vec![f(Attack::Xss, "query:a"), f(Attack::Xss, "query:b")],
                vec![(Attack::Xss, "query:a")],
                true,
                false,
            ),
            (
                "ban refuses and bans",
                vec![f(Attack::Lfi, "path")],
                vec![(Attack::Lfi, "path")],
                true,
                true,
            ),
            (
                "an API violation under its own effect",
                vec![f(Attack::ApiViolation, "path")],
                vec![(Attack::ApiViolation, "path")],
                false,
                false,
            ),
        ];
        for (what, findings, want, refuse, ban) in cases {
            let v = judge(&findings, effect);
            let got: Vec<(Attack, &str)> = v
                .audits
                .iter()
                .map(|(f, _)| (f.attack, f.field.as_str()))
                .collect();
            assert_eq!(got, want, "{what}");
            assert_eq!((v.refuse, v.ban), (refuse, ban), "{what}");
        }
    }

    #[test]
    fn token_buckets() {
        let limit = RateLimit {
            requests_per_second: 2,
            burst: 3,
            effect: Effect::Prevent,
        };
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut b = Buckets::default();
        let (a, c) = (ip("192.0.2.1"), ip("192.0.2.2"));
        // (source, ms, allowed)
        let steps = [
            (a, 0, true),
            (a, 0, true),
            (a, 0, true),
            (a, 0, false),
            (c, 0, true),
            (a, 400, false),
            (a, 500, true),
            (a, 600, false),
            (a, 5000, true),
        ];
        for (i, (src, ms, want)) in steps.into_iter().enumerate() {
            assert_eq!(b.take(&limit, src, at(ms)), want, "step {i}");
        }
    }

    #[test]
    fn buckets_are_bounded() {
        let limit = RateLimit {
            requests_per_second: 1,
            burst: 1,
            effect: Effect::Prevent,
        };
        let now = Instant::now();
        let mut b = Buckets::default();
        for i in 0..(MAX_SOURCES as u32 * 2) {
            b.take(&limit, IpAddr::from(i.to_be_bytes()), now);
            assert!(b.len() <= MAX_SOURCES);
        }
        // An address over its limit stays tracked while there is room.
        let mut b = Buckets::default();
        let hot = ip("192.0.2.9");
        assert!(b.take(&limit, hot, now));
        assert!(!b.take(&limit, hot, now));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn bans() {
        let t0 = Instant::now();
        let mut bans = Bans::default();
        let (a, c) = (ip("192.0.2.1"), ip("2001:db8::1"));
        bans.ban(a, 10, t0);
        assert!(bans.banned(a, t0 + Duration::from_secs(599)));
        assert!(!bans.banned(c, t0));
        assert!(!bans.banned(a, t0 + Duration::from_secs(600)));
        assert!(bans.is_empty(), "an expired ban is forgotten");
        for i in 0..(MAX_SOURCES as u32 + 10) {
            bans.ban(IpAddr::from(i.to_be_bytes()), 1 + i % 7, t0);
            assert!(bans.len() <= MAX_SOURCES);
        }
        // The longest bans are kept when room must be made.
        assert!(bans.banned(IpAddr::from(6u32.to_be_bytes()), t0));
    }
}
