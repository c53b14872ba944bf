//! DNS: judging the messages the container sends to name servers (each must be exactly one
//! well-formed query, see [`query`], whose name the custom rules on DNS and the `dns` section
//! allow), writing the answers
//! the defender gives instead of the name server, and the forwarder that stands between the
//! container's resolver library and its name servers.

pub mod forwarder;
pub mod query;

use crate::audit::{self, Activity, ActivityViolation, Cause, Event, MalformedDns, Scope};
use crate::policy::custom::{Facts, Kind, Process, Subject};
use crate::policy::{Attack, Consequence, Effect, Rule};
use query::Reason;

/// The standard DNS port, where the sensor looks for queries.
pub const PORT: u16 = 53;

/// A DNS message a custom rule or the `dns` section objected to, for the supervisor to audit (and
/// act on, for `block`); or a question let through under `alert` although the facts the custom
/// rules in force read could not be had (`unread`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub pid: u32,
    pub process: String,
    /// The question name; for a malformed message, the name a lenient server could read, or empty.
    pub domain: String,
    pub cause: Cause,
    pub effect: Effect,
    /// Why the message is not exactly one well-formed query, when it is not.
    pub malformed: Option<Reason>,
    /// The asking process's facts were not read when its socket was connected to the forwarder
    /// (the rule in force now reads more than the one in force then, or they were unreadable):
    /// the question was not judged by the custom rules, and is reported as a `defender` event.
    pub unread: bool,
}

impl Finding {
    /// The audit event.
    pub fn event(&self, scope: &Scope, rule: &str) -> Event {
        if self.unread {
            return Event::defender(
                scope,
                audit::Effect::of(self.effect),
                Some(rule),
                format!(
                    "Could not inspect the process asking for a DNS name (pid {}, {}): the facts custom rules read were not read when its socket was connected; it was let through because rule {rule} only alerts",
                    self.pid, self.process
                ),
            );
        }
        match self.malformed {
            None => Event::activity(
                scope,
                &ActivityViolation {
                    rule,
                    effect: self.effect,
                    cause: self.cause.clone(),
                    pid: self.pid,
                    process: &self.process,
                    activity: Activity::Dns {
                        domain: self.domain.clone(),
                    },
                },
            ),
            Some(reason) => Event::malformed_dns(
                scope,
                &MalformedDns {
                    rule,
                    effect: self.effect,
                    pid: self.pid,
                    process: &self.process,
                    domain: &self.domain,
                    reason: &reason.to_string(),
                },
            ),
        }
    }

    /// What was done, for the `block` event.
    pub fn what(&self) -> String {
        match self.malformed {
            None => format!("{} resolving {}", self.process, self.domain),
            Some(reason) => format!(
                "{} sending a malformed DNS message ({reason})",
                self.process
            ),
        }
    }
}

/// Whether DNS questions are judged under `rule`: by the `dns` section or by a custom rule that can
/// object to one (a rule that only allows excepts from nothing when the section is off).
pub fn judged(rule: &Rule) -> bool {
    strictest(rule) != Effect::Disable
}

/// The strictest effect DNS questions are judged with: the section's or a custom rule's.
fn strictest(rule: &Rule) -> Effect {
    rule.dns()
        .effect()
        .stricter(rule.custom(Kind::Dns).strictest())
}

/// The checks shared by every path a message to a name server takes: judges it against the rule
/// (its custom rules on DNS first, with the asking process's `facts` when they were read, then
/// the `dns` section) and says what to do and, when the rule objects to it, what to report. A
/// message that is not exactly one well-formed query cannot be judged by a custom rule and is
/// outside what any allow list can allow (`notAllowed`), under the strictest effect of both.
/// `asker` gives the asking process's pid and program, called only for a finding: an allowed
/// question never pays for the /proc reads behind them.
pub fn decide(
    rule: &Rule,
    msg: &[u8],
    asker: impl FnOnce() -> (u32, String),
    facts: Option<&Process>,
) -> (Decision, Option<Finding>) {
    let dns = rule.dns();
    if !judged(rule) {
        return (Decision::Pass, None);
    }
    let (domain, cause, effect, malformed) = match query::read(msg) {
        Ok(q) => {
            // Every name asked, allowed or not, for the console's activity report.
            crate::activity::note(crate::activity::Kind::Dns, || Some(q.name.clone()));
            let said = facts.and_then(|process| {
                let subject = Subject::Dns { name: &q.name };
                rule.custom(Kind::Dns)
                    .decide(&[Facts { process, subject }])
                    .map(|m| (m.violation(), Cause::from(m)))
            });
            match said {
                Some((None, _)) => return (Decision::Pass, None),
                Some((Some(effect), cause)) => (q.name, cause, effect, None),
                None if dns.effect() == Effect::Disable => return (Decision::Pass, None),
                None => match dns.check_domain(&q.name) {
                    None => return (Decision::Pass, None),
                    Some(attack) => (q.name, attack.into(), dns.effect(), None),
                },
            }
        }
        Err(m) => {
            log::debug!("malformed DNS message: {m}");
            (
                m.name.unwrap_or_default(),
                Attack::NotAllowed.into(),
                strictest(rule),
                Some(m.reason),
            )
        }
    };
    let (pid, process) = asker();
    let finding = Finding {
        pid,
        process,
        domain,
        cause,
        effect,
        malformed,
        unread: false,
    };
    let decision = match effect.consequence() {
        Consequence::Proceed => Decision::Pass,
        Consequence::Refuse | Consequence::Stop => Decision::Refuse,
    };
    (decision, Some(finding))
}

/// The outcome of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The message may reach its server.
    Pass,
    /// It must not: answer with a refusal where possible.
    Refuse,
}

/// The answer to a refused message. For a well-formed query: NXDOMAIN ("not found", what
/// docs/policy.md asks for), the query itself with QR, RA and RCODE 3 set (same id, question and
/// EDNS record, whose extended RCODE bits are cleared since they extend the header's), so that
/// every resolver library accepts it as the reply. For anything else: a bare header with its id and
/// FORMERR, what a name server answers a message it cannot read (RFC 1035 4.1.1); nothing when it
/// has no id.
pub fn refusal(msg: &[u8]) -> Option<Vec<u8>> {
    // Byte 2: QR, opcode (4 bits), AA, TC, RD. Byte 3: RA, Z, AD, CD, RCODE (4 bits).
    let opcode_and_rd = msg.get(2).map_or(0, |b| b & 0x79);
    let Ok(q) = query::read(msg) else {
        let mut r = id(msg)?.to_be_bytes().to_vec();
        r.extend([0x80 | opcode_and_rd, 0x01]);
        r.extend([0; 8]);
        return Some(r);
    };
    let mut r = msg.to_vec();
    r[2] = 0x80 | opcode_and_rd;
    r[3] = 0x80 | (msg[3] & 0x10) | 0x03;
    if let Some(opt) = q.opt_at {
        // The OPT record: owner (1 byte), type (2), payload size (2), then the extended RCODE.
        r[opt + 5] = 0;
    }
    Some(r)
}

/// The name a substitute query asks for: RFC 6761 reserves `invalid.`, for which every resolver
/// answers NXDOMAIN.
const SUBSTITUTE: &[u8] = b"\x07invalid\x00";

/// A query that takes a prevented one's place where the defender cannot answer in the name
/// server's name (musl's resolver sends with `sendto` from an unconnected socket and accepts only
/// replies whose source is the name server, see sensors/dns.rs): the same query (id, flags,
/// record type and class, EDNS record) asking for `invalid.`, so that the server's NXDOMAIN is
/// taken as the answer and the prevented name never leaves the container. None for a message that
/// is not exactly one well-formed query: there is no lookup to end, and it is not sent.
pub fn substitute(msg: &[u8]) -> Option<Vec<u8>> {
    let q = query::read(msg).ok()?;
    Some([&msg[..query::HEADER], SUBSTITUTE, &msg[q.name_end..]].concat())
}

/// The id of a DNS message (its first two bytes), if it has one.
pub fn id(packet: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.first()?, *packet.get(1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    fn query(id: u16, names: &[(&str, RecordType)], edns: bool) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        for (n, t) in names {
            m.queries
                .push(Query::query(Name::from_ascii(n).unwrap(), *t));
        }
        if edns {
            m.edns = Some(Edns::new());
        }
        m.to_vec().unwrap()
    }

    /// A rule whose `dns` section is this JSON.
    fn rule(dns: &str) -> Rule {
        crate::policy::testing::rule(&format!(r#""dns": {dns}"#))
    }

    #[test]
    fn decisions_and_reports() {
        let prevent = rule(r#"{"effect": "prevent", "deny": ["denied.test"]}"#);
        let alert = rule(r#"{"effect": "alert", "allow": ["*.amazonaws.com"]}"#);
        let off = rule(r#"{"effect": "disable", "deny": ["*"]}"#);
        let denied = query(9, &[("denied.test.", RecordType::A)], false);
        let two = query(
            9,
            &[
                ("allowed.test.", RecordType::A),
                ("denied.test.", RecordType::A),
            ],
            false,
        );
        let trailing = [
            &query(9, &[("s3.amazonaws.com.", RecordType::A)], true)[..],
            b"x",
        ]
        .concat();
        type Case<'a> = (
            &'a Rule,
            Vec<u8>,
            Decision,
            Option<(&'a str, Attack, Option<Reason>)>,
        );
        let cases: &[Case] = &[
            (
                &prevent,
                denied.clone(),
                Decision::Refuse,
                Some(("denied.test", Attack::ExplicitlyDenied, None)),
            ),
            (
                &prevent,
                query(9, &[("DENIED.test.", RecordType::A)], true),
                Decision::Refuse,
                Some(("denied.test", Attack::ExplicitlyDenied, None)),
            ),
            (
                &prevent,
                query(9, &[("allowed.test.", RecordType::A)], false),
                Decision::Pass,
                None,
            ),
            // Not a query at all: refused and reported, with no name.
            (
                &prevent,
                b"junk".to_vec(),
                Decision::Refuse,
                Some(("", Attack::NotAllowed, Some(Reason::Short))),
            ),
            // Two questions, the first allowed: refused whole, reported under the first name.
            (
                &prevent,
                two.clone(),
                Decision::Refuse,
                Some((
                    "allowed.test",
                    Attack::NotAllowed,
                    Some(Reason::Questions(2)),
                )),
            ),
            (
                &alert,
                query(9, &[("s3.amazonaws.com.", RecordType::A)], false),
                Decision::Pass,
                None,
            ),
            (
                &alert,
                query(9, &[("evil.test.", RecordType::A)], false),
                Decision::Pass,
                Some(("evil.test", Attack::NotAllowed, None)),
            ),
            (
                &alert,
                b"junk".to_vec(),
                Decision::Pass,
                Some(("", Attack::NotAllowed, Some(Reason::Short))),
            ),
            // An allowed name is no excuse for a malformed message.
            (
                &alert,
                trailing,
                Decision::Pass,
                Some((
                    "s3.amazonaws.com",
                    Attack::NotAllowed,
                    Some(Reason::Trailing(1)),
                )),
            ),
            (&off, denied, Decision::Pass, None),
            (&off, two, Decision::Pass, None),
        ];
        for (rule, q, want, finding) in cases {
            let (decision, seen) = decide(rule, q, || (42, "/usr/bin/getent".into()), None);
            assert_eq!(decision, *want, "{q:02x?}");
            let seen = seen.map(|f| (f.domain, f.cause, f.malformed, f.pid, f.process));
            let want = finding.map(|(d, a, m)| {
                let process = "/usr/bin/getent".to_string();
                (d.to_string(), Cause::Section(a), m, 42, process)
            });
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn custom_rules_on_questions() {
        let custom_rule = |members: &str| {
            let json = format!(
                r#"{{"customRules": [
                    {{"name": "paste", "type": "dns", "script": "dns.name endswith \".pastebin.com\""}},
                    {{"name": "internal", "type": "dns",
                      "script": "dns.name endswith \".internal\" and proc.name = \"app\""}}],
                  "rules": [{{"name": "r", {members}}}]}}"#
            );
            crate::policy::parse(&json)
                .unwrap()
                .rule_for("c", "i")
                .unwrap()
                .clone()
        };
        let with_section = custom_rule(
            r#""customRules": [{"name": "internal", "effect": "allow"},
                                {"name": "paste", "effect": "block"}],
               "dns": {"effect": "prevent", "deny": ["*.internal", "evil.test"]}"#,
        );
        let custom_only = custom_rule(r#""customRules": [{"name": "paste", "effect": "prevent"}]"#);
        let alert_only = custom_rule(r#""customRules": [{"name": "paste", "effect": "alert"}]"#);
        let allow_only = custom_rule(r#""customRules": [{"name": "internal", "effect": "allow"}]"#);
        let app = Process {
            name: "app".into(),
            ..Process::default()
        };
        let other = Process::default();
        let q = |name: &str| query(7, &[(name, RecordType::A)], false);
        let paste = Cause::Custom {
            name: "paste".into(),
            message: None,
        };
        let denied = Cause::Section(Attack::ExplicitlyDenied);
        let malformed = Cause::Section(Attack::NotAllowed);
        type Case<'a> = (
            &'a str,
            &'a Rule,
            Vec<u8>,
            Option<&'a Process>,
            Decision,
            Option<(Cause, Effect)>,
        );
        let cases: &[Case] = &[
            (
                "allow: an exception to the section",
                &with_section,
                q("db.internal."),
                Some(&app),
                Decision::Pass,
                None,
            ),
            (
                "the allow's process does not match",
                &with_section,
                q("db.internal."),
                Some(&other),
                Decision::Refuse,
                Some((denied.clone(), Effect::Prevent)),
            ),
            (
                "facts not read: the section judges",
                &with_section,
                q("db.internal."),
                None,
                Decision::Refuse,
                Some((denied.clone(), Effect::Prevent)),
            ),
            (
                "block, names compared lower-cased",
                &with_section,
                q("X.PASTEBIN.com."),
                Some(&other),
                Decision::Refuse,
                Some((paste.clone(), Effect::Block)),
            ),
            (
                "nothing true, the section allows",
                &with_section,
                q("ok.test."),
                Some(&other),
                Decision::Pass,
                None,
            ),
            (
                "a custom rule with the section off",
                &custom_only,
                q("a.pastebin.com."),
                Some(&other),
                Decision::Refuse,
                Some((paste.clone(), Effect::Prevent)),
            ),
            (
                "nothing true, the section off",
                &custom_only,
                q("evil.test."),
                Some(&other),
                Decision::Pass,
                None,
            ),
            (
                "malformed: refused by the custom rules' effect",
                &custom_only,
                b"junk".to_vec(),
                Some(&other),
                Decision::Refuse,
                Some((malformed.clone(), Effect::Prevent)),
            ),
            (
                "malformed: the stricter effect",
                &with_section,
                b"junk".to_vec(),
                Some(&other),
                Decision::Refuse,
                Some((malformed.clone(), Effect::Block)),
            ),
            (
                "malformed under alert-only custom rules",
                &alert_only,
                b"junk".to_vec(),
                None,
                Decision::Pass,
                Some((malformed.clone(), Effect::Alert)),
            ),
            (
                "alert",
                &alert_only,
                q("a.pastebin.com."),
                Some(&other),
                Decision::Pass,
                Some((paste.clone(), Effect::Alert)),
            ),
            (
                "an allow alone judges nothing",
                &allow_only,
                b"junk".to_vec(),
                Some(&app),
                Decision::Pass,
                None,
            ),
        ];
        for (what, rule, msg, facts, want, finding) in cases {
            let asked = std::cell::Cell::new(false);
            let asker = || {
                asked.set(true);
                (1, "/bin/x".to_string())
            };
            let (decision, seen) = decide(rule, msg, asker, *facts);
            // The asker is looked up for a finding alone.
            assert_eq!(asked.get(), seen.is_some(), "{what}");
            assert_eq!(decision, *want, "{what}");
            assert_eq!(seen.map(|f| (f.cause, f.effect)), *finding, "{what}");
        }
        assert!(judged(&custom_only) && judged(&alert_only) && !judged(&allow_only));
    }

    #[test]
    fn audits_of_findings() {
        let scope = Scope {
            container: "c".into(),
            image: "i".into(),
            ..Scope::default()
        };
        let finding = |domain: &str, malformed| Finding {
            pid: 7,
            process: "/usr/bin/python3".into(),
            domain: domain.into(),
            cause: Attack::NotAllowed.into(),
            effect: Effect::Prevent,
            malformed,
            unread: false,
        };
        let cases = [
            (
                finding("evil.test", None),
                "DNS resolution of domain name evil.test triggered by /usr/bin/python3 is not allowed by a runtime rule",
                "/usr/bin/python3 resolving evil.test",
            ),
            (
                finding("evil.test", Some(Reason::Questions(0))),
                "Malformed DNS message (0 questions, not one) sent by /usr/bin/python3 is not allowed by a runtime rule",
                "/usr/bin/python3 sending a malformed DNS message (0 questions, not one)",
            ),
            (
                finding("", Some(Reason::Pointer)),
                "Malformed DNS message (a compression pointer in the question name) sent by /usr/bin/python3 is not allowed by a runtime rule",
                "/usr/bin/python3 sending a malformed DNS message (a compression pointer in the question name)",
            ),
        ];
        let unread = Finding {
            unread: true,
            effect: Effect::Alert,
            ..finding("", None)
        };
        let e = unread.event(&scope, "r");
        assert_eq!(
            (e.kind, e.effect),
            (crate::audit::Kind::Defender, crate::audit::Effect::Alert)
        );
        assert!(e.message.starts_with(
            "Could not inspect the process asking for a DNS name (pid 7, /usr/bin/python3)"
        ));
        let custom = Finding {
            cause: Cause::Custom {
                name: "paste".into(),
                message: None,
            },
            ..finding("x.pastebin.com", None)
        };
        let e = custom.event(&scope, "r");
        assert_eq!(
            (e.attack.as_deref(), e.custom_rule.as_deref()),
            (Some("customRule"), Some("paste"))
        );
        for (f, message, what) in cases {
            let e = f.event(&scope, "r");
            assert_eq!(e.message, message);
            assert_eq!(f.what(), what);
            assert_eq!(e.kind, crate::audit::Kind::Dns);
            assert_eq!(e.attack.as_deref(), Some("dnsNotAllowed"));
            assert_eq!(e.domain.as_deref(), Some(f.domain.as_str()));
            assert_eq!(
                (e.effect, e.rule.as_deref(), e.pid),
                (crate::audit::Effect::Prevent, Some("r"), 7)
            );
        }
    }

    /// The strict reading agrees with hickory-proto on the queries resolver libraries send.
    #[test]
    fn question_names() {
        type Case<'a> = (&'a str, RecordType, &'a str);
        let cases: &[Case] = &[
            ("Denied.TEST.", RecordType::A, "denied.test"),
            ("allowed.test", RecordType::AAAA, "allowed.test"),
            ("b.example.org.", RecordType::MX, "b.example.org"),
            (".", RecordType::NS, "."),
        ];
        for (name, kind, want) in cases {
            for edns in [false, true] {
                let q = query(7, &[(name, *kind)], edns);
                assert_eq!(query::read(&q).unwrap().name, *want);
            }
        }
    }

    #[test]
    fn nxdomain_answers_a_refused_query() {
        let mut q = query(0xbeef, &[("denied.test.", RecordType::AAAA)], true);
        // Extended RCODE bits in the query's OPT record (the last 11 bytes) must not reach the
        // answer's RCODE.
        let ext = q.len() - 6;
        q[ext] = 0x05;
        let r = Message::from_vec(&refusal(&q).unwrap()).unwrap();
        assert_eq!(r.metadata.id, 0xbeef);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.metadata.recursion_desired && r.metadata.recursion_available);
        assert_eq!(r.queries, Message::from_vec(&q).unwrap().queries);
        assert!(r.answers.is_empty() && r.edns.is_some());
    }

    #[test]
    fn formerr_answers_a_malformed_message() {
        let mut q = query(0xbeef, &[("denied.test.", RecordType::A)], false);
        q[5] = 0; // QDCOUNT 0, the question still there.
        let r = refusal(&q).unwrap();
        assert_eq!(r, [0xbe, 0xef, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.queries.is_empty());
        assert_eq!(
            refusal(b"\x12\x34\x28"),
            Some(vec![0x12, 0x34, 0xa8, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(refusal(b"x"), None);
    }

    #[test]
    fn substitute_keeps_id_and_type_and_drops_the_name() {
        let q = query(0x1234, &[("denied.test.", RecordType::AAAA)], false);
        let s = substitute(&q).unwrap();
        assert_eq!(id(&s), Some(0x1234));
        assert_eq!(query::read(&s).unwrap().name, "invalid");
        let m = Message::from_vec(&s).unwrap();
        assert_eq!(m.queries[0].query_type, RecordType::AAAA);
        assert!(m.metadata.recursion_desired);
        assert!(!String::from_utf8_lossy(&s).contains("denied"));
        let two = query(
            0x1234,
            &[("a.test.", RecordType::A), ("denied.test.", RecordType::A)],
            false,
        );
        assert_eq!(substitute(&two), None);
    }
}
