//! DNS: reading the questions of a query the container sends and writing the answers the defender
//! gives instead of the resolver (hickory-proto does the wire format), and the forwarder that
//! stands between the container's resolver library and its name servers.

pub mod forwarder;

use hickory_proto::op::{Message, MessageType, Metadata, Query, ResponseCode};
use hickory_proto::rr::Name;

use crate::policy::{Attack, Dns, Effect, Rule};

/// The standard DNS port, where the sensor looks for queries.
pub const PORT: u16 = 53;

/// A query the defender could not read as DNS.
#[derive(Debug, thiserror::Error)]
#[error("not a DNS query: {0}")]
pub struct NotDns(String);

/// The question names of a query, lowercased and without the trailing dot, as audits show them.
pub fn questions(packet: &[u8]) -> Result<Vec<String>, NotDns> {
    let msg = Message::from_vec(packet).map_err(|e| NotDns(e.to_string()))?;
    if msg.metadata.message_type != MessageType::Query {
        return Err(NotDns("a response, not a query".into()));
    }
    Ok(msg.queries.iter().map(|q| display_name(&q.name)).collect())
}

fn display_name(name: &Name) -> String {
    let ascii = name.to_lowercase().to_ascii();
    match ascii.strip_suffix('.') {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => ascii,
    }
}

/// The first question name the `dns` section objects to, with why.
pub fn judge(dns: &Dns, names: &[String]) -> Option<(Attack, String)> {
    names
        .iter()
        .find_map(|n| dns.check_domain(n).map(|a| (a, n.clone())))
}

/// A question the `dns` section objected to, for the supervisor to audit (and act on, for `block`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub pid: u32,
    pub process: String,
    pub domain: String,
    pub attack: Attack,
    pub effect: Effect,
}

/// The checks shared by every path a query takes: judges it against the rule and says what to do
/// and, when the rule objects to a question, what to report.
pub fn decide(rule: &Rule, query: &[u8], pid: u32, process: &str) -> (Decision, Option<Finding>) {
    let dns = rule.dns();
    if dns.effect() == Effect::Disable {
        return (Decision::Pass, None);
    }
    let names = match questions(query) {
        Ok(n) => n,
        // Not readable as a query: sent on under `alert` (which never breaks anything), dropped
        // otherwise, since its question cannot be checked (fail closed).
        Err(e) => {
            log::debug!("query from pid {pid} ({process}): {e}");
            return match dns.effect() {
                Effect::Alert => (Decision::Pass, None),
                _ => (Decision::Refuse, None),
            };
        }
    };
    let Some((attack, domain)) = judge(dns, &names) else {
        return (Decision::Pass, None);
    };
    let finding = Finding {
        pid,
        process: process.to_string(),
        domain,
        attack,
        effect: dns.effect(),
    };
    let decision = match dns.effect() {
        Effect::Alert | Effect::Disable => Decision::Pass,
        Effect::Prevent | Effect::Block => Decision::Refuse,
    };
    (decision, Some(finding))
}

/// The outcome of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The query may reach its server.
    Pass,
    /// It must not: answer NXDOMAIN where possible.
    Refuse,
}

/// The answer to a prevented query: NXDOMAIN ("not found", what policy.md asks for), with the
/// query's id and questions so that every resolver library accepts it as the reply.
pub fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata = Metadata::response_from_request(&q.metadata);
    r.metadata.recursion_available = true;
    r.metadata.response_code = ResponseCode::NXDomain;
    r.queries = q.queries;
    r.edns = q.edns;
    r.to_vec().ok()
}

/// The name a substitute query asks for: RFC 6761 reserves `invalid.`, for which every resolver
/// answers NXDOMAIN.
const SUBSTITUTE: &str = "invalid.";

/// A query that takes a prevented one's place where the defender cannot answer in the name
/// server's name (musl's resolver sends with `sendto` from an unconnected socket and accepts only
/// replies whose source is the name server, see supervisor/net.rs): the same id, flags and record
/// type, asking for `invalid.`, so that the server's NXDOMAIN is taken as the answer and the
/// prevented name never leaves the container.
pub fn substitute(query: &[u8]) -> Option<Vec<u8>> {
    let mut q = Message::from_vec(query).ok()?;
    let first = q.queries.first()?.clone();
    let mut sub = Query::query(Name::from_ascii(SUBSTITUTE).ok()?, first.query_type);
    sub.query_class = first.query_class;
    q.queries = vec![sub];
    q.to_vec().ok()
}

/// The id of a DNS message (its first two bytes), if it has one.
pub fn id(packet: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.first()?, *packet.get(1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, OpCode};
    use hickory_proto::rr::RecordType;

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

    fn rule(dns: &str) -> Rule {
        let json = format!(r#"{{"rules": [{{"name": "r", "dns": {dns}}}]}}"#);
        crate::policy::parse(&json)
            .unwrap()
            .rule_for("c", "i")
            .unwrap()
            .clone()
    }

    #[test]
    fn decisions_and_reports() {
        let prevent = rule(r#"{"effect": "prevent", "deny": ["denied.test"]}"#);
        let alert = rule(r#"{"effect": "alert", "allow": ["*.amazonaws.com"]}"#);
        let off = rule(r#"{"effect": "disable", "deny": ["*"]}"#);
        type Case<'a> = (&'a Rule, Vec<u8>, Decision, Option<(&'a str, Attack)>);
        let cases: &[Case] = &[
            (
                &prevent,
                query(9, &[("denied.test.", RecordType::A)], false),
                Decision::Refuse,
                Some(("denied.test", Attack::ExplicitlyDenied)),
            ),
            (
                &prevent,
                query(9, &[("DENIED.test.", RecordType::A)], false),
                Decision::Refuse,
                Some(("denied.test", Attack::ExplicitlyDenied)),
            ),
            (
                &prevent,
                query(9, &[("allowed.test.", RecordType::A)], false),
                Decision::Pass,
                None,
            ),
            (&prevent, b"junk".to_vec(), Decision::Refuse, None),
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
                Some(("evil.test", Attack::NotAllowed)),
            ),
            (&alert, b"junk".to_vec(), Decision::Pass, None),
            (
                &off,
                query(9, &[("anything.test.", RecordType::A)], false),
                Decision::Pass,
                None,
            ),
        ];
        for (rule, q, want, finding) in cases {
            let (decision, seen) = decide(rule, q, 42, "/usr/bin/getent");
            assert_eq!(decision, *want);
            let seen = seen.map(|f| (f.domain, f.attack, f.pid, f.process));
            let want = finding.map(|(d, a)| (d.to_string(), a, 42, "/usr/bin/getent".to_string()));
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn question_names() {
        type Case<'a> = (&'a [(&'a str, RecordType)], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[("Denied.TEST.", RecordType::A)], &["denied.test"]),
            (&[("allowed.test", RecordType::AAAA)], &["allowed.test"]),
            (
                &[
                    ("a.example.org.", RecordType::A),
                    ("b.example.org.", RecordType::MX),
                ],
                &["a.example.org", "b.example.org"],
            ),
            (&[(".", RecordType::NS)], &["."]),
        ];
        for (names, want) in cases {
            assert_eq!(questions(&query(7, names, false)).unwrap(), *want);
        }
        assert!(questions(b"\x01\x02garbage").is_err());
        let mut response =
            Message::from_vec(&query(7, &[("x.test", RecordType::A)], false)).unwrap();
        response.metadata.message_type = MessageType::Response;
        assert!(questions(&response.to_vec().unwrap()).is_err());
    }

    #[test]
    fn nxdomain_answers_the_query() {
        let q = query(0xbeef, &[("denied.test.", RecordType::AAAA)], true);
        let r = Message::from_vec(&nxdomain(&q).unwrap()).unwrap();
        assert_eq!(r.metadata.id, 0xbeef);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.metadata.recursion_desired && r.metadata.recursion_available);
        assert_eq!(r.queries, Message::from_vec(&q).unwrap().queries);
        assert!(r.answers.is_empty() && r.edns.is_some());
    }

    #[test]
    fn substitute_keeps_id_and_type_and_drops_the_name() {
        let q = query(0x1234, &[("denied.test.", RecordType::AAAA)], false);
        let s = substitute(&q).unwrap();
        assert_eq!(id(&s), Some(0x1234));
        assert_eq!(questions(&s).unwrap(), vec!["invalid"]);
        let m = Message::from_vec(&s).unwrap();
        assert_eq!(m.queries[0].query_type, RecordType::AAAA);
        assert!(m.metadata.recursion_desired);
        assert!(!String::from_utf8_lossy(&s).contains("denied"));
    }
}
