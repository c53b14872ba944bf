//! Learning: from what the containers of a scope were seen doing since some time (the activity
//! their defenders report with heartbeats, and the `alert` audits stored), a draft rule whose allow
//! lists hold exactly that, for a person to review and save (`GET .../proposal`, and the learning
//! page in web/learn.rs). Nothing here saves anything.
//!
//! The draft is a rule of the policy, every section `prevent`: saved first, it lets the workload
//! do what it did and refuses the rest. Its lists:
//! - `processes.allow`: the paths launched, as executed, glob characters escaped;
//! - `dns.allow`: the names asked;
//! - `network.outbound.allow`: the addresses reached (exact, not widened to CIDRs), the name
//!   servers among them; loopback is left out (exempt from allow lists);
//! - `network.outboundPorts.allow`, `network.listeningPorts.allow`: the ports.
//!
//! A list with nothing seen would allow everything (an empty allow list judges nothing), so it
//! refuses all instead: `dns.deny` `*`, `processes.deny` `*`, `listeningPorts.deny` `1-65535`,
//! and `outbound.allow` holds only `127.0.0.1` (loopback, allowed anyway). A value the policy
//! cannot hold (a name that is not a DNS name) is left out and said on the page.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use defender::activity::{self, Kind, Observed};
use defender::policy::schema::{self, Collections, Effect, Lists, Network, Section};
use defender::policy::{self, Policy};

use crate::app::{ApiError, AppState};
use crate::auth::Reads;
use crate::events::{self, Event};
use crate::store::{AuditField, AuditQuery, Observation, Pattern};

/// Where the proposal is served.
pub const PROPOSAL: &str = "/api/v1/policies/runtime/app-embedded/proposal";
/// The most audits read for one proposal (the newest).
const MAX_AUDITS: u32 = 100_000;
/// What an allow list of outbound addresses holds when no destination was seen: loopback only,
/// which allow lists exempt anyway.
const LOOPBACK_ONLY: &str = "127.0.0.1";

/// Which containers, and since when: the query of the proposal and of the learning page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Globs as in a rule's collections (`*` when not given).
    pub container: String,
    pub image: String,
    /// RFC 3339, normalized; `None`: everything stored.
    pub since: Option<String>,
}

impl Scope {
    /// From a query string; an unknown parameter, a bad time or glob is an error naming it.
    pub fn parse(query: Option<&str>) -> Result<Scope, String> {
        let (mut container, mut image, mut since) = (None, None, None);
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.into_owned();
            match &*name {
                "container" => container = Some(value),
                "image" => image = Some(value),
                "since" => since = Some(value),
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        let since = since
            .filter(|t| !t.trim().is_empty())
            .map(|t| events::normalize_time(&t).map_err(|e| format!("since: {e}")))
            .transpose()?;
        Scope::new(container.as_deref(), image.as_deref(), since)
    }

    /// A scope of these globs (empty or missing: `*`) since `since` (RFC 3339, normalized).
    pub fn new(
        container: Option<&str>,
        image: Option<&str>,
        since: Option<String>,
    ) -> Result<Scope, String> {
        let glob = |g: Option<&str>| match g.map(str::trim) {
            None | Some("") => "*".to_string(),
            Some(g) => g.to_string(),
        };
        let scope = Scope {
            container: glob(container),
            image: glob(image),
            since,
        };
        scope.matcher()?;
        Ok(scope)
    }

    /// The scope as a policy with one rule, so that containers are matched exactly as rules
    /// match them.
    fn matcher(&self) -> Result<Policy, String> {
        let doc =
            serde_json::json!({"rules": [{"name": "scope", "collections": self.collections()}]});
        policy::parse(&doc.to_string()).map_err(|e| match e {
            policy::PolicyError::Invalid(problems) => problems
                .iter()
                .map(|p| {
                    let field = p.field.replace("collections.containers[0]", "container");
                    let field = field.replace("collections.images[0]", "image");
                    format!("{field}: {}", p.message)
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })
    }

    fn collections(&self) -> Collections {
        Collections {
            containers: Some(vec![self.container.clone()]),
            images: Some(vec![self.image.clone()]),
            clusters: None,
            families: None,
            services: None,
        }
    }

    /// The draft rule's name.
    pub fn rule_name(&self) -> String {
        match self.image.as_str() {
            "*" => format!("learned: {}", self.container),
            image => format!("learned: {} in {image}", self.container),
        }
    }
}

/// One value seen, with where from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    /// Reported by defenders (activity), found in audits.
    pub reported: bool,
    pub audited: bool,
}

/// Everything seen in a scope: per kind, per value.
pub type SeenAll = BTreeMap<(Kind, String), Seen>;

/// What the observations and the audits say the scope's containers did. Audits count when
/// their effect is `alert` (the activity happened; a refused one did not).
pub fn gather(scope: &Scope, observations: &[Observation], audits: &[Event]) -> SeenAll {
    let Ok(matcher) = scope.matcher() else {
        return SeenAll::new();
    };
    let inside = |container: &str, image: &str| matcher.rule_for(container, image).is_some();
    let mut seen = SeenAll::new();
    for o in observations
        .iter()
        .filter(|o| inside(&o.container, &o.image))
    {
        let s = seen.entry((o.kind, o.value.clone())).or_default();
        s.count += o.count;
        s.reported = true;
    }
    let audits = audits.iter().filter(|e| {
        e.effect == events::Effect::Alert
            && scope.since.as_ref().is_none_or(|since| &e.time >= since)
            && inside(&e.container, &e.image)
    });
    for e in audits {
        let value = match e.kind {
            events::Kind::Process => Some((Kind::Process, e.process.clone())),
            events::Kind::Dns => e.domain.clone().map(|d| (Kind::Dns, d)),
            events::Kind::Network => {
                e.ip.as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .zip(e.port)
                    .map(|(ip, port)| (Kind::Outbound, SocketAddr::new(ip, port).to_string()))
            }
            events::Kind::Listen => e.port.map(|p| (Kind::Listen, p.to_string())),
            // Firewall refusals are requests from outside, not what the workload does.
            events::Kind::Defender | events::Kind::Waas => None,
        };
        if let Some(key) = value {
            let s = seen.entry(key).or_default();
            s.count += e.count;
            s.audited = true;
        }
    }
    seen
}

/// The `observed` field of a heartbeat body (empty when absent), checked: a defender never sends
/// more than its caps, nor a value of the wrong form, so such a heartbeat is refused whole,
/// naming the first bad entry.
pub fn observed(body: &[u8]) -> Result<Observed, String> {
    #[derive(serde::Deserialize)]
    struct Beat {
        #[serde(default)]
        observed: Observed,
    }
    let beat: Beat =
        serde_json::from_slice(body).map_err(|e| format!("heartbeat: observed: {e}"))?;
    let observed = beat.observed;
    let most = activity::MAX_ENTRIES * Kind::ALL.len();
    if observed.entries.len() > most {
        return Err(format!(
            "heartbeat: observed.entries: {} entries; at most {most}",
            observed.entries.len()
        ));
    }
    for (i, e) in observed.entries.iter().enumerate() {
        check_entry(e.kind, &e.value)
            .map_err(|why| format!("heartbeat: observed.entries[{i}].value: {why}"))?;
    }
    Ok(observed)
}

/// Whether `value` has the form of its kind (docs/console-api.md, the heartbeat).
fn check_entry(kind: Kind, value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > activity::MAX_VALUE {
        return Err("must be 1 to 256 bytes");
    }
    if value.chars().any(char::is_control) {
        return Err("must hold no control character");
    }
    let protocol = |v: &str| matches!(v.rsplit_once('/'), Some((_, "tcp" | "udp")));
    let fits = match kind {
        Kind::Process => value.starts_with('/'),
        Kind::Dns => true,
        Kind::Outbound => protocol(value) && destination(value).is_some(),
        Kind::Listen => protocol(value) && listening_port(value).is_some(),
    };
    match fits {
        true => Ok(()),
        false => Err(match kind {
            Kind::Process => "a process must be an absolute path",
            Kind::Dns => "",
            Kind::Outbound => "an outbound destination must be ADDRESS:PORT/tcp or /udp",
            Kind::Listen => "a listening port must be PORT/tcp or /udp",
        }),
    }
}

/// The address and port of an outbound value (`10.0.0.1:80/tcp`, or `10.0.0.1:80` from an
/// audit).
pub fn destination(value: &str) -> Option<SocketAddr> {
    let address = value.split_once('/').map_or(value, |(a, _)| a);
    address.parse().ok()
}

/// The port of a listening value (`8080/tcp`, or `8080` from an audit).
pub fn listening_port(value: &str) -> Option<u16> {
    value.split_once('/').map_or(value, |(p, _)| p).parse().ok()
}

/// A path as a `processes` entry that matches exactly it: glob characters escaped.
fn exact_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The draft, and what could not go in it (value and why).
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub rule: schema::Rule,
    pub left_out: Vec<(Kind, String, String)>,
}

/// The draft rule for `scope` from what was seen.
pub fn draft(scope: &Scope, seen: &SeenAll) -> Draft {
    let mut left_out = Vec::new();
    let mut lists: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (kind, value) in seen.keys() {
        let entries: Result<Vec<(&str, String)>, &str> = match kind {
            Kind::Process if value.starts_with('/') => Ok(vec![("processes", exact_path(value))]),
            Kind::Process => Err("not an absolute path"),
            Kind::Dns => Ok(vec![("dns", value.clone())]),
            Kind::Outbound => match destination(value) {
                // Loopback (and the unspecified address, judged as loopback) is exempt.
                Some(d) if d.ip().to_canonical().is_loopback() || d.ip().is_unspecified() => {
                    Ok(vec![])
                }
                Some(d) => {
                    let mut entries = vec![("outbound", d.ip().to_canonical().to_string())];
                    if d.port() != 0 {
                        entries.push(("outboundPorts", d.port().to_string()));
                    }
                    Ok(entries)
                }
                None => Err("not an address and port"),
            },
            Kind::Listen => match listening_port(value) {
                Some(0) => Ok(vec![]),
                Some(p) => Ok(vec![("listeningPorts", p.to_string())]),
                None => Err("not a port"),
            },
        };
        let entries = match entries {
            Ok(entries) => entries,
            Err(why) => {
                left_out.push((*kind, value.clone(), why.to_string()));
                continue;
            }
        };
        for (list, entry) in entries {
            let held = lists.entry(list).or_default();
            if held.contains(&entry) {
                continue;
            }
            match accepted(list, &entry) {
                Ok(()) => held.push(entry),
                Err(why) => left_out.push((*kind, value.clone(), why)),
            }
        }
    }
    let mut take = |list: &str| lists.remove(list).unwrap_or_default();
    let (processes, dns) = (take("processes"), take("dns"));
    let (mut outbound, mut ports, mut listening) = (
        take("outbound"),
        take("outboundPorts"),
        take("listeningPorts"),
    );
    // In numeric order, as a person reads them (they were accepted, so they parse).
    outbound.sort_by_key(|a| a.parse::<IpAddr>().ok());
    for list in [&mut ports, &mut listening] {
        list.sort_by_key(|p| p.parse::<u16>().ok());
    }
    let everything = |allow: Vec<String>, all: &str| match allow.is_empty() {
        true => (allow, vec![all.to_string()]),
        false => (allow, vec![]),
    };
    let section = |(allow, deny)| Section {
        effect: Effect::Prevent,
        allow,
        deny,
    };
    let (listen_allow, listen_deny) = everything(listening, "1-65535");
    let outbound = match outbound.is_empty() {
        true => vec![LOOPBACK_ONLY.to_string()],
        false => outbound,
    };
    let rule = schema::Rule {
        name: scope.rule_name(),
        disabled: false,
        collections: Some(scope.collections()),
        custom_rules: vec![],
        processes: Some(section(everything(processes, "*"))),
        network: Some(Network {
            effect: Effect::Prevent,
            outbound: Lists {
                allow: outbound,
                deny: vec![],
            },
            outbound_ports: Lists {
                allow: ports,
                deny: vec![],
            },
            listening_ports: Lists {
                allow: listen_allow,
                deny: listen_deny,
            },
        }),
        dns: Some(section(everything(dns, "*"))),
    };
    Draft { rule, left_out }
}

/// Whether the policy takes `entry` in `list` (checked by the defender's own validation).
fn accepted(list: &str, entry: &str) -> Result<(), String> {
    let rule = match list {
        "processes" | "dns" => serde_json::json!({list: {"effect": "prevent", "allow": [entry]}}),
        _ => serde_json::json!({"network": {"effect": "prevent", list: {"allow": [entry]}}}),
    };
    let mut rule = rule;
    rule["name"] = "check".into();
    let doc = serde_json::json!({ "rules": [rule] });
    match policy::parse(&doc.to_string()) {
        Ok(_) => Ok(()),
        Err(policy::PolicyError::Invalid(problems)) => Err(problems
            .first()
            .map_or_else(String::new, |p| p.message.clone())),
        Err(e) => Err(e.to_string()),
    }
}

/// What was seen in `scope`, from storage.
pub async fn seen(state: &AppState, scope: &Scope) -> Result<SeenAll, ApiError> {
    crate::beats::flush_before_reading(&state.operations.beats).await?;
    let since = scope.since.clone();
    let observations = state
        .store(move |s| s.observations(since.as_deref()))
        .await?;
    let query = AuditQuery {
        since: scope.since.clone(),
        limit: MAX_AUDITS,
        ..AuditQuery::default()
    }
    .with(
        AuditField::Effect,
        Pattern::Exact(events::Effect::Alert.as_str().into()),
    );
    let audits: Vec<Event> = state
        .store(move |s| s.audits(&query))
        .await?
        .into_iter()
        .map(|stored| stored.event)
        .collect();
    Ok(gather(scope, &observations, &audits))
}

/// `GET .../proposal?container=&image=&since=`: the draft rule (nothing is saved).
pub async fn proposal(
    _: Reads,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Json<schema::Rule>, ApiError> {
    let scope = Scope::parse(query.as_deref()).map_err(ApiError::bad_request)?;
    let seen = seen(&state, &scope).await?;
    Ok(Json(draft(&scope, &seen).rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(container: &str, kind: Kind, value: &str, count: u64) -> Observation {
        Observation {
            container: container.into(),
            image: "shop:1".into(),
            kind,
            value: value.into(),
            count,
            first_seen: "2026-11-29T10:00:00.000000Z".into(),
            last_seen: "2026-11-29T10:00:00.000000Z".into(),
        }
    }

    fn audit(kind: events::Kind, effect: events::Effect, container: &str) -> Event {
        Event {
            id: "a".into(),
            time: "2026-11-29T10:00:00.000000Z".into(),
            kind,
            effect,
            rule: Some("all".into()),
            attack: None,
            custom_rule: None,
            container: container.into(),
            image: "shop:1".into(),
            task: None,
            cluster: None,
            family: None,
            service: None,
            pid: 1,
            process: "/usr/bin/wget".into(),
            cmdline: None,
            parent: None,
            domain: Some("audited.test".into()),
            ip: Some("192.0.2.7".into()),
            port: Some(8443),
            method: None,
            url: None,
            source_ip: None,
            field: None,
            request_id: None,
            message: "m".into(),
            count: 2,
        }
    }

    fn scope(query: &str) -> Scope {
        Scope::parse(Some(query)).unwrap()
    }

    #[test]
    fn heartbeat_entries_are_checked() {
        let beat = |entries: &str| {
            observed(format!(r#"{{"id": "x", "observed": {{"entries": [{entries}]}}}}"#).as_bytes())
        };
        let entry = |kind: &str, value: &str| {
            serde_json::json!({"kind": kind, "value": value, "count": 1}).to_string()
        };
        assert_eq!(observed(br#"{"id": "x"}"#).unwrap(), Observed::default());
        for (kind, value) in [
            ("process", "/bin/sh"),
            ("dns", "a.test"),
            ("outbound", "[fd00::80]:443/tcp"),
            ("listen", "8080/udp"),
        ] {
            assert!(beat(&entry(kind, value)).is_ok(), "{kind} {value}");
        }
        for (kind, value, want) in [
            ("process", "sh", "absolute path"),
            ("outbound", "10.0.0.1:80", "ADDRESS:PORT"),
            ("outbound", "10.0.0.1/tcp", "ADDRESS:PORT"),
            ("listen", "http/tcp", "PORT"),
            ("dns", "", "1 to 256"),
            ("dns", "a\nb", "control"),
        ] {
            let err = beat(&entry(kind, value)).unwrap_err();
            assert!(
                err.starts_with("heartbeat: observed.entries[0].value: "),
                "{err}"
            );
            assert!(err.contains(want), "{kind} {value}: {err}");
        }
        assert!(beat(&entry("file", "/x")).is_err());
        let too_many = vec![entry("dns", "a.test"); activity::MAX_ENTRIES * 4 + 1].join(",");
        assert!(beat(&too_many).unwrap_err().contains("at most"));
    }

    #[test]
    fn the_query() {
        let s = scope("container=orders-*&since=2026-11-29T10:00:00Z&image=");
        assert_eq!(
            (s.container.as_str(), s.image.as_str(), s.since.as_deref()),
            ("orders-*", "*", Some("2026-11-29T10:00:00.000000Z"))
        );
        assert_eq!(s.rule_name(), "learned: orders-*");
        assert_eq!(scope("image=shop:*").rule_name(), "learned: * in shop:*");
        for (bad, want) in [
            ("q=1", "unknown parameter \"q\""),
            ("since=yesterday", "since: "),
            ("container=[", "container: "),
        ] {
            let err = Scope::parse(Some(bad)).unwrap_err();
            assert!(err.starts_with(want), "{bad}: {err}");
        }
    }

    #[test]
    fn what_was_seen_in_scope_from_reports_and_alert_audits() {
        let observations = [
            observation("orders-1", Kind::Process, "/bin/sh", 3),
            observation("orders-2", Kind::Process, "/bin/sh", 1),
            observation("billing", Kind::Process, "/bin/evil", 1),
        ];
        let audits = [
            audit(events::Kind::Process, events::Effect::Alert, "orders-1"),
            audit(events::Kind::Dns, events::Effect::Alert, "orders-1"),
            audit(events::Kind::Network, events::Effect::Alert, "orders-1"),
            audit(events::Kind::Listen, events::Effect::Alert, "orders-1"),
            // Refused: it did not happen.
            audit(events::Kind::Dns, events::Effect::Prevent, "orders-2"),
            audit(events::Kind::Process, events::Effect::Alert, "billing"),
        ];
        let seen = gather(&scope("container=orders-*"), &observations, &audits);
        let got: Vec<(Kind, &str, u64, bool, bool)> = seen
            .iter()
            .map(|((k, v), s)| (*k, v.as_str(), s.count, s.reported, s.audited))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Process, "/bin/sh", 4, true, false),
                (Kind::Process, "/usr/bin/wget", 2, false, true),
                (Kind::Dns, "audited.test", 2, false, true),
                (Kind::Outbound, "192.0.2.7:8443", 2, false, true),
                (Kind::Listen, "8443", 2, false, true),
            ]
        );
    }

    fn seen_of(values: &[(Kind, &str)]) -> SeenAll {
        values
            .iter()
            .map(|(k, v)| ((*k, v.to_string()), Seen::default()))
            .collect()
    }

    #[test]
    fn the_draft_holds_what_was_seen_and_validates() {
        let seen = seen_of(&[
            (Kind::Process, "/usr/bin/curl"),
            (Kind::Process, "/tmp/a*b[1]"),
            (Kind::Process, "relative"),
            (Kind::Dns, "web.test"),
            (Kind::Dns, "not a name"),
            (Kind::Outbound, "10.53.0.1:53/udp"),
            (Kind::Outbound, "10.80.0.1:80/tcp"),
            (Kind::Outbound, "10.80.0.1:0/udp"),
            (Kind::Outbound, "127.0.0.1:8080/tcp"),
            (Kind::Outbound, "[::ffff:10.80.0.2]:443/tcp"),
            (Kind::Listen, "8080/tcp"),
            (Kind::Listen, "0/udp"),
        ]);
        let d = draft(&scope("container=web"), &seen);
        let r = &d.rule;
        let processes = r.processes.as_ref().unwrap();
        assert_eq!(processes.allow, ["/tmp/a\\*b\\[1\\]", "/usr/bin/curl"]);
        assert_eq!(processes.effect, Effect::Prevent);
        assert_eq!(r.dns.as_ref().unwrap().allow, ["web.test"]);
        let n = r.network.as_ref().unwrap();
        assert_eq!(n.outbound.allow, ["10.53.0.1", "10.80.0.1", "10.80.0.2"]);
        assert_eq!(n.outbound_ports.allow, ["53", "80", "443"]);
        assert_eq!(n.listening_ports.allow, ["8080"]);
        let left: Vec<&str> = d.left_out.iter().map(|(_, v, _)| v.as_str()).collect();
        assert_eq!(left, ["relative", "not a name"]);
        let doc = serde_json::json!({ "rules": [r] }).to_string();
        let policy = policy::parse(&doc).expect("the draft validates");
        let rule = policy.rule_for("web", "any").unwrap();
        assert_eq!(rule.processes().check(&["/tmp/a*b[1]"]), None);
        assert!(rule.processes().check(&["/tmp/aXb1"]).is_some(), "escaped");
    }

    #[test]
    fn a_list_with_nothing_seen_refuses_everything() {
        let d = draft(&scope(""), &SeenAll::new());
        let doc = serde_json::json!({ "rules": [&d.rule] }).to_string();
        let policy = policy::parse(&doc).unwrap();
        let rule = policy.rule_for("c", "i").unwrap();
        assert!(rule.processes().check(&["/bin/sh"]).is_some());
        assert!(rule.dns().check_domain("a.test").is_some());
        let net = rule.network();
        assert!(
            net.check_outbound("192.0.2.1".parse().unwrap(), 80)
                .is_some()
        );
        assert!(
            net.check_outbound("127.0.0.1".parse().unwrap(), 80)
                .is_none()
        );
        assert!(net.check_listen(8080).is_some());
    }
}
