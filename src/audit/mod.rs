//! Audit events: the record of every violation and every defender lifecycle event, built exactly
//! as `docs/audit.md` says (fields, `attack` names, messages), and the local sink they go to.
//!
//! [`Event`] is the one wire type of an audit: the defender writes it, the console reads it
//! (strictly: an unknown field is an error) and serves it back.

mod sink;

pub use sink::{Sink, SinkError, Tee};

use serde::{Deserialize, Serialize};

use crate::policy::{self, Attack, Matched};

/// What kind of activity an event is about (`type` in the spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Process,
    Network,
    Dns,
    Listen,
    Defender,
    /// A request to a port the web application firewall protects (docs/waas.md).
    Waas,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Process,
        Kind::Network,
        Kind::Dns,
        Kind::Listen,
        Kind::Defender,
        Kind::Waas,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Process => "process",
            Kind::Network => "network",
            Kind::Dns => "dns",
            Kind::Listen => "listen",
            Kind::Defender => "defender",
            Kind::Waas => "waas",
        }
    }
}

/// `effect`: what was done. A policy's `disable` is not one: a sensor that is off reports nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Alert,
    Prevent,
    Block,
}

impl Effect {
    pub const ALL: [Effect; 3] = [Effect::Alert, Effect::Prevent, Effect::Block];

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Alert => "alert",
            Effect::Prevent => "prevent",
            Effect::Block => "block",
        }
    }

    /// What a violation under a section with `effect` did. `disable` lets the call through, as
    /// `alert` does, and so is reported as `alert` should a violation under it ever be recorded:
    /// never as a refusal that did not happen.
    pub fn of(effect: policy::Effect) -> Effect {
        match effect {
            policy::Effect::Disable | policy::Effect::Alert => Effect::Alert,
            policy::Effect::Prevent => Effect::Prevent,
            policy::Effect::Block => Effect::Block,
        }
    }
}

/// The protected container, as every event names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub container: String,
    pub image: String,
    pub task: Option<String>,
    /// The ECS cluster's name (not its ARN), task-definition family and service, when known.
    pub cluster: Option<String>,
    pub family: Option<String>,
    pub service: Option<String>,
}

impl Scope {
    /// The container as policy rules select it.
    pub fn identity(&self) -> policy::Identity {
        policy::Identity {
            container: self.container.clone(),
            image: self.image.clone(),
            cluster: self.cluster.clone(),
            family: self.family.clone(),
            service: self.service.clone(),
        }
    }
}

/// One audit event: one JSON object on one line, as the defender writes it and the console reads it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: String,
    pub time: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub effect: Effect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<String>,
    /// The custom rule that decided, when one did (`attack` is then `customRule`).
    #[serde(
        default,
        rename = "customRule",
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_rule: Option<String>,
    pub container: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub pid: u32,
    pub process: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `waas` events: the request's method and URL (path and query, as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `waas` events: the client's address (not the firewall's own hop).
    #[serde(default, rename = "sourceIp", skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// `waas` events: where the attack matched: `query:id`, `header:User-Agent`, `body:name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `waas` events: the id the refused client was answered with.
    #[serde(default, rename = "requestId", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub message: String,
    pub count: u64,
}

/// Why an activity violated the rule in force: a section's lists, or one of its custom rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    Section(Attack),
    Custom {
        name: String,
        /// The custom rule's own message for the audit, if it has one.
        message: Option<String>,
    },
}

impl From<Attack> for Cause {
    fn from(attack: Attack) -> Cause {
        Cause::Section(attack)
    }
}

impl From<Matched<'_>> for Cause {
    fn from(m: Matched<'_>) -> Cause {
        Cause::Custom {
            name: m.name.to_owned(),
            message: m.message.map(str::to_owned),
        }
    }
}

impl Cause {
    /// The event's `attack` for an event of type `kind`: `processExplicitlyDenied`, ...,
    /// `customRule`.
    fn attack(&self, kind: Kind) -> String {
        match self {
            Cause::Section(attack) => attack.name(kind.as_str()),
            Cause::Custom { .. } => "customRule".to_owned(),
        }
    }

    /// The message: the contract's sentence, `what` followed by `verdict` for a section; for a
    /// custom rule its own message, or `what` and the rule's name.
    fn message(&self, what: &str, verdict: &str) -> String {
        match self {
            Cause::Section(_) => format!("{what} {verdict} by a runtime rule"),
            Cause::Custom {
                message: Some(message),
                ..
            } => message.clone(),
            Cause::Custom {
                name,
                message: None,
            } => format!("{what} matched custom rule {name:?}"),
        }
    }
}

/// A process launch that violated the rule in force.
pub struct ProcessViolation<'a> {
    pub rule: &'a str,
    pub effect: policy::Effect,
    pub cause: Cause,
    pub pid: u32,
    pub process: &'a str,
    pub parent: &'a str,
    pub cmdline: &'a str,
}

/// What a network, listen or DNS violation was about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Activity {
    /// `ip` as audits show it: IPv4-mapped IPv6 addresses in their IPv4 form.
    Outbound {
        ip: std::net::IpAddr,
        port: u16,
    },
    Listen {
        port: u16,
    },
    Dns {
        domain: String,
    },
}

/// A socket call or DNS question that violated the rule in force.
pub struct ActivityViolation<'a> {
    pub rule: &'a str,
    pub effect: policy::Effect,
    pub cause: Cause,
    pub pid: u32,
    pub process: &'a str,
    pub activity: Activity,
}

/// A DNS message that is not exactly one well-formed query: the contract's DNS sentences name a
/// domain, so it has a sentence of its own, `Malformed DNS message ({reason}) sent by {process} is
/// not allowed by a runtime rule`; its attack is `dnsNotAllowed` (no allow list can allow it).
pub struct MalformedDns<'a> {
    pub rule: &'a str,
    pub effect: policy::Effect,
    pub pid: u32,
    pub process: &'a str,
    /// The question name when it could be read exactly, else empty.
    pub domain: &'a str,
    pub reason: &'a str,
}

/// A request to a port the web application firewall protects that it audits (docs/waas.md):
/// plain names, so that the audit module needs nothing of the firewall's.
pub struct WaasFinding<'a> {
    pub rule: &'a str,
    /// What was done: `alert` (passed), `prevent` (refused, and for `ban` the source banned).
    pub effect: Effect,
    /// `sqli`, `xss`, ..., `deniedSource`, `rateLimit`, `apiViolation`, `banned`.
    pub attack: &'a str,
    pub method: &'a str,
    pub url: &'a str,
    pub source_ip: std::net::IpAddr,
    pub field: &'a str,
    pub request_id: &'a str,
    /// The protected application's port.
    pub port: u16,
}

/// Cuts `s` to at most `max` bytes (at a character boundary) when it is longer, ending it with
/// `… (truncated, N bytes in all{note})`; whether it was cut.
pub fn cut(s: &mut String, max: usize, note: &str) -> bool {
    if s.len() <= max {
        return false;
    }
    let whole = s.len();
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(&format!("… (truncated, {whole} bytes in all{note})"));
    true
}

impl Event {
    fn new(
        scope: &Scope,
        kind: Kind,
        effect: Effect,
        pid: u32,
        process: &str,
        message: String,
    ) -> Event {
        Event {
            id: new_id(),
            time: now(),
            kind,
            effect,
            rule: None,
            attack: None,
            custom_rule: None,
            container: scope.container.clone(),
            image: scope.image.clone(),
            task: scope.task.clone(),
            cluster: scope.cluster.clone(),
            family: scope.family.clone(),
            service: scope.service.clone(),
            pid,
            process: process.to_string(),
            cmdline: None,
            parent: None,
            domain: None,
            ip: None,
            port: None,
            method: None,
            url: None,
            source_ip: None,
            field: None,
            request_id: None,
            message,
            count: 1,
        }
    }

    /// A violation of the rule in force: an event of `kind` with the rule and the attack named.
    #[allow(clippy::too_many_arguments)] // the fields every violation carries, each its own
    fn violation(
        scope: &Scope,
        kind: Kind,
        effect: policy::Effect,
        rule: &str,
        cause: &Cause,
        pid: u32,
        process: &str,
        message: String,
    ) -> Event {
        let mut e = Event::new(scope, kind, Effect::of(effect), pid, process, message);
        e.rule = Some(rule.to_string());
        e.attack = Some(cause.attack(kind));
        if let Cause::Custom { name, .. } = cause {
            e.custom_rule = Some(name.clone());
        }
        e
    }

    pub fn process(scope: &Scope, v: &ProcessViolation<'_>) -> Event {
        let verdict = match v.cause {
            Cause::Section(Attack::ExplicitlyDenied) => "is explicitly denied",
            _ => "is not allowed",
        };
        let what = format!("{} launched from {}", v.process, v.parent);
        // The contract's sentence ends with the command; so does the default for a custom rule.
        let message = match &v.cause {
            Cause::Custom {
                message: Some(_), ..
            } => v.cause.message(&what, verdict),
            _ => format!(
                "{}. Full command: {}",
                v.cause.message(&what, verdict),
                v.cmdline
            ),
        };
        let mut e = Event::violation(
            scope,
            Kind::Process,
            v.effect,
            v.rule,
            &v.cause,
            v.pid,
            v.process,
            message,
        );
        e.cmdline = Some(v.cmdline.to_string());
        e.parent = Some(v.parent.to_string());
        e
    }

    /// An outbound connection or send (`network`), a bind (`listen`) or a DNS question (`dns`)
    /// that violated the rule in force.
    pub fn activity(scope: &Scope, v: &ActivityViolation<'_>) -> Event {
        // docs/audit.md's sentences say "explicitly denied" but "is not allowed" for these three types.
        let verdict = match v.cause {
            Cause::Section(Attack::ExplicitlyDenied) => "explicitly denied",
            _ => "is not allowed",
        };
        let (kind, what) = match &v.activity {
            Activity::Outbound { ip, port } => (
                Kind::Network,
                format!("Outbound connection by {} to {ip}:{port}", v.process),
            ),
            Activity::Listen { port } => (
                Kind::Listen,
                format!("Process {} listening on port {port}", v.process),
            ),
            Activity::Dns { domain } => (
                Kind::Dns,
                format!(
                    "DNS resolution of domain name {domain} triggered by {}",
                    v.process
                ),
            ),
        };
        let message = v.cause.message(&what, verdict);
        let mut e = Event::violation(
            scope, kind, v.effect, v.rule, &v.cause, v.pid, v.process, message,
        );
        match &v.activity {
            Activity::Outbound { ip, port } => {
                e.ip = Some(ip.to_string());
                e.port = Some(*port);
            }
            Activity::Listen { port } => e.port = Some(*port),
            Activity::Dns { domain } => e.domain = Some(domain.clone()),
        }
        e
    }

    /// A DNS message that is not exactly one well-formed query (see [`MalformedDns`]).
    pub fn malformed_dns(scope: &Scope, v: &MalformedDns<'_>) -> Event {
        let message = format!(
            "Malformed DNS message ({}) sent by {} is not allowed by a runtime rule",
            v.reason, v.process
        );
        let mut e = Event::violation(
            scope,
            Kind::Dns,
            v.effect,
            v.rule,
            &Attack::NotAllowed.into(),
            v.pid,
            v.process,
            message,
        );
        e.domain = Some(v.domain.to_string());
        e
    }

    /// A request the firewall audits: `{attack} detected in {field} of {method} {url} from
    /// {sourceIp}`, by the defender's process (the firewall runs in it).
    pub fn waas(scope: &Scope, w: &WaasFinding<'_>) -> Event {
        let message = format!(
            "{} detected in {} of {} {} from {}",
            w.attack, w.field, w.method, w.url, w.source_ip
        );
        let mut e = Event::defender(scope, w.effect, Some(w.rule), message);
        e.kind = Kind::Waas;
        e.attack = Some(w.attack.to_owned());
        e.method = Some(w.method.to_owned());
        e.url = Some(w.url.to_owned());
        e.source_ip = Some(w.source_ip.to_string());
        e.field = Some(w.field.to_owned());
        e.request_id = Some(w.request_id.to_owned());
        e.port = Some(w.port);
        e
    }

    /// A lifecycle event of the defender itself (policy applied, enforcement degraded, container
    /// blocked, ...). `effect` is what the defender did: `alert` for a report, `block` when it
    /// stopped the container.
    pub fn defender(scope: &Scope, effect: Effect, rule: Option<&str>, message: String) -> Event {
        let process = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "defender".into());
        let mut e = Event::new(
            scope,
            Kind::Defender,
            effect,
            std::process::id(),
            &process,
            message,
        );
        e.rule = rule.map(str::to_string);
        e
    }

    /// A hash of what [`Event::same_activity`] compares, so that folding finds an open window in
    /// constant time however many distinct activities a flood brings.
    fn activity_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.folding_key().hash(&mut h);
        h.finish()
    }

    /// Whether two events are the same activity, for folding floods.
    fn same_activity(&self, other: &Event) -> bool {
        self.folding_key() == other.folding_key()
    }

    /// What makes two events the same activity: every field but the id, the time, the pid and
    /// the count.
    fn folding_key(&self) -> impl std::hash::Hash + Eq + '_ {
        (
            (
                self.kind,
                self.effect,
                &self.rule,
                &self.attack,
                &self.custom_rule,
            ),
            (&self.process, &self.cmdline, &self.parent),
            (&self.domain, &self.ip, self.port, &self.message),
        )
    }
}

/// The current time as audit events carry it: RFC 3339, UTC, microseconds.
fn now() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// A random 128-bit id (UUID v4): unique without coordination between defenders.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            container: "web".into(),
            image: "nginx:1".into(),
            ..Scope::default()
        }
    }

    #[test]
    fn process_messages_follow_the_spec() {
        let cases = [
            (
                Attack::ExplicitlyDenied,
                "processExplicitlyDenied",
                "/bin/mkdir launched from /bin/sh is explicitly denied by a runtime rule. Full command: mkdir /tmp/x",
            ),
            (
                Attack::NotAllowed,
                "processNotAllowed",
                "/bin/mkdir launched from /bin/sh is not allowed by a runtime rule. Full command: mkdir /tmp/x",
            ),
        ];
        for (attack, name, message) in cases {
            let v = ProcessViolation {
                rule: "r1",
                effect: policy::Effect::Prevent,
                cause: attack.into(),
                pid: 42,
                process: "/bin/mkdir",
                parent: "/bin/sh",
                cmdline: "mkdir /tmp/x",
            };
            let e = Event::process(&scope(), &v);
            let json: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
            assert_eq!(json["message"], message);
            assert_eq!(json["attack"], name);
            assert_eq!(json["type"], "process");
            assert_eq!(json["effect"], "prevent");
            assert_eq!(json["rule"], "r1");
            assert_eq!(json["pid"], 42);
            assert_eq!(json["parent"], "/bin/sh");
            assert_eq!(json["count"], 1);
            assert!(json.get("task").is_none() && json.get("domain").is_none());
            // RFC 3339, UTC, microseconds: 2026-11-29T06:58:16.123456Z
            let t = json["time"].as_str().unwrap();
            assert_eq!((t.len(), &t[26..]), (27, "Z"), "{t}");
        }
    }

    #[test]
    fn activity_messages_follow_the_spec() {
        let ip = "203.0.113.5".parse().unwrap();
        let cases = [
            (
                Activity::Outbound { ip, port: 80 },
                Attack::ExplicitlyDenied,
                "network",
                "networkExplicitlyDenied",
                "Outbound connection by /usr/bin/curl to 203.0.113.5:80 explicitly denied by a runtime rule",
            ),
            (
                Activity::Outbound { ip, port: 22 },
                Attack::NotAllowed,
                "network",
                "networkNotAllowed",
                "Outbound connection by /usr/bin/curl to 203.0.113.5:22 is not allowed by a runtime rule",
            ),
            (
                Activity::Listen { port: 2222 },
                Attack::NotAllowed,
                "listen",
                "listenNotAllowed",
                "Process /usr/bin/curl listening on port 2222 is not allowed by a runtime rule",
            ),
            (
                Activity::Dns {
                    domain: "denied.test".into(),
                },
                Attack::ExplicitlyDenied,
                "dns",
                "dnsExplicitlyDenied",
                "DNS resolution of domain name denied.test triggered by /usr/bin/curl explicitly denied by a runtime rule",
            ),
        ];
        for (activity, attack, kind, name, message) in cases {
            let v = ActivityViolation {
                rule: "r",
                effect: policy::Effect::Prevent,
                cause: attack.into(),
                pid: 7,
                process: "/usr/bin/curl",
                activity: activity.clone(),
            };
            let json = serde_json::to_value(Event::activity(&scope(), &v)).unwrap();
            assert_eq!(json["type"], kind);
            assert_eq!(json["attack"], name);
            assert_eq!(json["message"], message);
            match activity {
                Activity::Outbound { port, .. } => {
                    assert_eq!(json["ip"], "203.0.113.5");
                    assert_eq!(json["port"], port);
                }
                Activity::Listen { port } => {
                    assert_eq!(json["port"], port);
                    assert!(json.get("ip").is_none());
                }
                Activity::Dns { .. } => assert_eq!(json["domain"], "denied.test"),
            }
        }
    }

    /// A custom rule's event: `attack` customRule, the `customRule` field, and its own message or
    /// the default sentence naming it.
    #[test]
    fn custom_rule_events() {
        let custom = |message: Option<&str>| Cause::Custom {
            name: "netcat listener".into(),
            message: message.map(str::to_owned),
        };
        let launch = |cause| {
            let v = ProcessViolation {
                rule: "orders",
                effect: policy::Effect::Block,
                cause,
                pid: 9,
                process: "/usr/bin/nc",
                parent: "/bin/sh",
                cmdline: "nc -l 4444",
            };
            serde_json::to_value(Event::process(&scope(), &v)).unwrap()
        };
        let outbound = |cause| {
            let v = ActivityViolation {
                rule: "orders",
                effect: policy::Effect::Prevent,
                cause,
                pid: 9,
                process: "/usr/bin/ssh",
                activity: Activity::Outbound {
                    ip: "192.0.2.7".parse().unwrap(),
                    port: 22,
                },
            };
            serde_json::to_value(Event::activity(&scope(), &v)).unwrap()
        };
        let dns = |cause| {
            let v = ActivityViolation {
                rule: "orders",
                effect: policy::Effect::Alert,
                cause,
                pid: 9,
                process: "/usr/bin/curl",
                activity: Activity::Dns {
                    domain: "x.pastebin.com".into(),
                },
            };
            serde_json::to_value(Event::activity(&scope(), &v)).unwrap()
        };
        let cases = [
            (
                launch(custom(None)),
                "process",
                "/usr/bin/nc launched from /bin/sh matched custom rule \"netcat listener\". Full command: nc -l 4444",
            ),
            (
                launch(custom(Some("a netcat listener was started"))),
                "process",
                "a netcat listener was started",
            ),
            (
                outbound(custom(None)),
                "network",
                "Outbound connection by /usr/bin/ssh to 192.0.2.7:22 matched custom rule \"netcat listener\"",
            ),
            (
                dns(custom(None)),
                "dns",
                "DNS resolution of domain name x.pastebin.com triggered by /usr/bin/curl matched custom rule \"netcat listener\"",
            ),
        ];
        for (json, kind, message) in cases {
            assert_eq!(json["type"], kind);
            assert_eq!(json["attack"], "customRule");
            assert_eq!(json["customRule"], "netcat listener");
            assert_eq!(json["rule"], "orders");
            assert_eq!(json["message"], message);
            assert_eq!(
                serde_json::from_value::<Event>(json)
                    .unwrap()
                    .custom_rule
                    .as_deref(),
                Some("netcat listener")
            );
        }
        // A section's violation has no customRule field.
        assert!(
            launch(Attack::NotAllowed.into())
                .get("customRule")
                .is_none()
        );
    }

    /// The wire type reads back what it writes; a field the contract does not have is refused,
    /// and so is a policy effect that is not something done.
    #[test]
    fn events_read_back_and_unknown_fields_are_refused() {
        let v = ProcessViolation {
            rule: "r1",
            effect: policy::Effect::Block,
            cause: Attack::NotAllowed.into(),
            pid: 42,
            process: "/bin/mkdir",
            parent: "/bin/sh",
            cmdline: "mkdir \"<x>\"",
        };
        let e = Event::process(&scope(), &v);
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        let mut json = serde_json::to_value(&e).unwrap();
        json["extra"] = 1.into();
        assert!(serde_json::from_value::<Event>(json).is_err());
        let mut json = serde_json::to_value(&e).unwrap();
        json["effect"] = "disable".into();
        assert!(serde_json::from_value::<Event>(json).is_err());
        assert_eq!(Effect::of(policy::Effect::Disable), Effect::Alert);
    }

    /// The ECS identity travels in every event when known, and is absent (not null) otherwise.
    #[test]
    fn events_carry_the_ecs_identity_when_known() {
        let ecs = Scope {
            task: Some("arn:aws:ecs:us-west-2:111122223333:task/prod/1".into()),
            cluster: Some("prod".into()),
            family: Some("orders".into()),
            service: Some("orders-api".into()),
            ..scope()
        };
        let json = serde_json::to_value(Event::defender(&ecs, Effect::Alert, None, "x".into()));
        let json = json.unwrap();
        let fields = ["cluster", "family", "service"].map(|f| json[f].as_str());
        assert_eq!(fields, [Some("prod"), Some("orders"), Some("orders-api")]);
        let json = serde_json::to_value(Event::defender(&scope(), Effect::Alert, None, "x".into()));
        let json = json.unwrap();
        for field in ["cluster", "family", "service"] {
            assert!(json.get(field).is_none(), "{field}: {json}");
        }
        assert_eq!(
            ecs.identity().service.as_deref(),
            Some("orders-api"),
            "rules select by the same identity"
        );
    }

    #[test]
    fn ids_are_unique_and_folding_ignores_them() {
        let a = Event::defender(&scope(), Effect::Alert, None, "x".into());
        let b = Event::defender(&scope(), Effect::Alert, None, "x".into());
        let c = Event::defender(&scope(), Effect::Alert, None, "y".into());
        assert_ne!(a.id, b.id);
        assert!(a.same_activity(&b));
        assert!(!a.same_activity(&c));
    }

    #[test]
    fn waas_events_follow_the_spec() {
        let w = WaasFinding {
            rule: "orders front end",
            effect: Effect::Prevent,
            attack: "sqli",
            method: "GET",
            url: "/items?id=1%27%20OR%20%271%27=%271",
            source_ip: "203.0.113.7".parse().unwrap(),
            field: "query:id",
            request_id: "r-1",
            port: 8080,
        };
        let e = Event::waas(&scope(), &w);
        assert_eq!(e.kind, Kind::Waas);
        assert_eq!(
            e.message,
            "sqli detected in query:id of GET /items?id=1%27%20OR%20%271%27=%271 from 203.0.113.7"
        );
        let json = serde_json::to_value(&e).unwrap();
        for (key, want) in [
            ("type", "waas"),
            ("effect", "prevent"),
            ("rule", "orders front end"),
            ("attack", "sqli"),
            ("method", "GET"),
            ("sourceIp", "203.0.113.7"),
            ("field", "query:id"),
            ("requestId", "r-1"),
        ] {
            assert_eq!(json[key], want, "{key}");
        }
        assert_eq!(json["port"], 8080);
        // The same attack again from the same place folds into this one, whatever its id.
        let again = Event::waas(
            &scope(),
            &WaasFinding {
                request_id: "r-2",
                ..w
            },
        );
        assert!(e.same_activity(&again));
    }
}
