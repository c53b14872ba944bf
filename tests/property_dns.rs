//! Property tests of the DNS message judge (`defender::dns`): arbitrary bytes never panic it;
//! every message it accepts is exactly one well-formed query whose name is the name hickory-proto
//! reads; every well-formed query mutated by one malformation (a response, another opcode, no or
//! several questions, answer or authority records, extra additional records, trailing bytes, a
//! compression pointer or loop, a byte outside a hostname's, a truncation) is rejected, and refused
//! under `prevent` with a finding that says why. Cases are bounded so that the file runs in
//! seconds.

use defender::dns::query::{self, Reason};
use defender::dns::{Decision, decide, refusal, substitute};
use defender::policy::Rule;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use proptest::prelude::*;

/// A rule that prevents one name and allows every other.
fn prevent() -> Rule {
    rule("prevent")
}

fn rule(effect: &str) -> Rule {
    let json = format!(
        r#"{{"rules": [{{"name": "r", "dns": {{"effect": "{effect}", "deny": ["denied.test"]}}}}]}}"#
    );
    defender::policy::parse(&json)
        .unwrap()
        .rule_for("c", "i")
        .unwrap()
        .clone()
}

/// An EDNS option: code, data.
type EdnsOption = (u16, Vec<u8>);
/// An OPT record: payload size, DO flag, options.
type Opt = (u16, bool, Vec<EdnsOption>);

/// The parts of a well-formed query.
#[derive(Clone, Debug)]
struct Parts {
    id: u16,
    /// The flags other than QR and opcode (AA, TC, RD, RA, Z, AD, CD, RCODE), as sent.
    flags: u16,
    labels: Vec<String>,
    qtype: u16,
    qclass: u16,
    opt: Option<Opt>,
}

impl Parts {
    fn name(&self) -> String {
        match self.labels.is_empty() {
            true => ".".into(),
            false => self.labels.join(".").to_ascii_lowercase(),
        }
    }

    /// Offset of the question name, and of the end of the question.
    fn question_end(&self) -> usize {
        12 + self.labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1 + 4
    }

    fn bytes(&self) -> Vec<u8> {
        let mut m = self.id.to_be_bytes().to_vec();
        m.extend((self.flags & 0x07ff).to_be_bytes());
        m.extend([0, 1, 0, 0, 0, 0, 0, u8::from(self.opt.is_some())]);
        for l in &self.labels {
            m.push(l.len() as u8);
            m.extend(l.as_bytes());
        }
        m.push(0);
        m.extend(self.qtype.to_be_bytes());
        m.extend(self.qclass.to_be_bytes());
        if let Some((size, dnssec_ok, options)) = &self.opt {
            m.extend([0, 0, 41]);
            m.extend(size.to_be_bytes());
            m.extend([0, 0, if *dnssec_ok { 0x80 } else { 0 }, 0]);
            let data: Vec<u8> = options
                .iter()
                .flat_map(|(code, d)| {
                    let mut o = code.to_be_bytes().to_vec();
                    o.extend((d.len() as u16).to_be_bytes());
                    o.extend(d);
                    o
                })
                .collect();
            m.extend((data.len() as u16).to_be_bytes());
            m.extend(data);
        }
        m
    }
}

fn label() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,63}"
}

fn parts() -> impl Strategy<Value = Parts> {
    let labels = prop::collection::vec(label(), 0..6)
        .prop_filter("a name fits in 255 bytes", |ls| {
            ls.iter().map(|l| l.len() + 1).sum::<usize>() < 255
        });
    // Option codes hickory-proto reads as opaque data (the local and experimental range).
    let option = (65001u16..65534, prop::collection::vec(any::<u8>(), 0..16));
    let opt = prop::option::of((
        512u16..4096,
        any::<bool>(),
        prop::collection::vec(option, 0..3),
    ));
    (
        any::<u16>(),
        any::<u16>(),
        labels,
        prop::sample::select(vec![1u16, 2, 5, 6, 12, 15, 16, 28, 33, 65, 255]),
        prop::sample::select(vec![1u16, 3, 4, 255]),
        opt,
    )
        .prop_map(|(id, flags, labels, qtype, qclass, opt)| Parts {
            // RCODE 0 in a query; the rest as sent.
            flags: flags & 0x07f0,
            id,
            labels,
            qtype,
            qclass,
            opt,
        })
}

/// What hickory-proto reads from a message the judge accepted: exactly one query, its name.
fn hickory_name(msg: &[u8]) -> String {
    let m = Message::from_vec(msg).expect("hickory-proto reads an accepted message");
    assert_eq!(m.metadata.message_type, MessageType::Query);
    assert_eq!(m.metadata.op_code, OpCode::Query);
    assert_eq!(m.queries.len(), 1, "{m:?}");
    assert!(m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty());
    // The raw labels: hickory-proto's text form escapes some (`\\-` for a leading hyphen).
    let labels: Vec<String> = m.queries[0]
        .name
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    match labels.is_empty() {
        true => ".".into(),
        false => labels.join("."),
    }
}

/// Everything the DNS paths do with a message: none of it may panic; an accepted message must
/// read the same in hickory-proto. Returns whether it was accepted.
fn judge_everything(msg: &[u8]) -> bool {
    let read = query::read(msg);
    for effect in ["alert", "prevent", "block"] {
        let (_, finding) = decide(&rule(effect), msg, || (1, "/bin/x".into()), None);
        if let Some(f) = finding {
            assert_eq!(f.malformed.is_some(), read.is_err());
        }
    }
    match &read {
        // Read as hickory-proto reads it. A refused query is answered NXDOMAIN with its own id and
        // question; its substitute asks the same of `invalid.`.
        Ok(q) => {
            assert_eq!(q.name, hickory_name(msg));
            let asked = Message::from_vec(msg).unwrap();
            let r = Message::from_vec(&refusal(msg).unwrap()).unwrap();
            assert_eq!(r.metadata.message_type, MessageType::Response);
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(r.metadata.id, asked.metadata.id);
            assert_eq!(r.queries, asked.queries);
            let s = substitute(msg).unwrap();
            assert_eq!(query::read(&s).unwrap().name, "invalid");
            let s = Message::from_vec(&s).unwrap();
            assert_eq!(s.queries[0].query_type, asked.queries[0].query_type);
            assert_eq!(s.queries[0].query_class, asked.queries[0].query_class);
            assert_eq!((s.metadata.id, s.edns), (asked.metadata.id, asked.edns));
        }
        Err(_) => {
            let _ = refusal(msg);
            assert_eq!(substitute(msg), None);
        }
    }
    read.is_ok()
}

/// One malformation applied to a well-formed query, and the reason it must be rejected with.
#[derive(Clone, Debug)]
enum Mutation {
    Response,
    Opcode(u8),
    Questions(u16),
    Answers(u16),
    Authority(u16),
    Additional(u16),
    Trailing(Vec<u8>),
    /// The name replaced by a pointer to this offset.
    Pointer(u16),
    /// A pointer after the first label, back to the name's start: a loop.
    Loop,
    /// A byte of the name's first label replaced by one outside a hostname's.
    NameByte(usize, u8),
    /// The message cut at a fraction of its length.
    Cut(f64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let outside = any::<u8>().prop_filter("outside a hostname's bytes", |b| {
        !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    });
    prop_oneof![
        Just(Mutation::Response),
        (1u8..16).prop_map(Mutation::Opcode),
        prop_oneof![Just(0u16), 2u16..].prop_map(Mutation::Questions),
        (1u16..).prop_map(Mutation::Answers),
        (1u16..).prop_map(Mutation::Authority),
        (2u16..).prop_map(Mutation::Additional),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(Mutation::Trailing),
        (0u16..0x3fff).prop_map(Mutation::Pointer),
        Just(Mutation::Loop),
        (any::<usize>(), outside).prop_map(|(i, b)| Mutation::NameByte(i, b)),
        (0.0f64..1.0).prop_map(Mutation::Cut),
    ]
}

/// Applies `m` to `p`'s bytes; returns them and the reason they must be rejected with (`None`:
/// any reason).
fn apply(p: &Parts, m: &Mutation) -> Option<(Vec<u8>, Option<Reason>)> {
    let mut b = p.bytes();
    let set = |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    let reason = match m {
        Mutation::Response => {
            b[2] |= 0x80;
            Reason::Response
        }
        Mutation::Opcode(op) => {
            b[2] |= op << 3;
            Reason::Opcode(*op)
        }
        Mutation::Questions(n) => {
            set(&mut b, 4, *n);
            Reason::Questions(*n)
        }
        Mutation::Answers(n) => {
            set(&mut b, 6, *n);
            Reason::Answers(*n)
        }
        Mutation::Authority(n) => {
            set(&mut b, 8, *n);
            Reason::Authority(*n)
        }
        Mutation::Additional(n) => {
            set(&mut b, 10, *n);
            Reason::Additional(*n)
        }
        Mutation::Trailing(t) => {
            b.extend(t);
            Reason::Trailing(t.len())
        }
        Mutation::Pointer(to) => {
            let end = p.question_end() - 4;
            b.splice(12..end, (0xc000 | to).to_be_bytes());
            Reason::Pointer
        }
        Mutation::Loop => {
            let first = p.labels.first()?;
            b.splice(13 + first.len()..14 + first.len(), [0xc0, 12]);
            Reason::Pointer
        }
        Mutation::NameByte(i, byte) => {
            let first = p.labels.first()?;
            b[13 + i % first.len()] = *byte;
            Reason::NameByte
        }
        Mutation::Cut(f) => {
            let at = ((b.len() as f64) * f) as usize;
            b.truncate(at.min(b.len() - 1));
            return Some((b, None));
        }
    };
    Some((b, Some(reason)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(msg in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = judge_everything(&msg);
    }

    #[test]
    fn well_formed_queries_are_accepted_and_judged_by_their_name(p in parts()) {
        let msg = p.bytes();
        prop_assert!(judge_everything(&msg));
        let q = query::read(&msg).expect("well-formed");
        prop_assert_eq!(&q.name, &p.name());
        prop_assert_eq!(hickory_name(&msg), p.name());
        let (decision, finding) = decide(&prevent(), &msg, || (1, "/bin/x".into()), None);
        prop_assert_eq!(decision, Decision::Pass);
        prop_assert!(finding.is_none());
        // The same query for the denied name is refused and reported under that name.
        let denied = Parts { labels: vec!["Denied".into(), "TEST".into()], ..p };
        let (decision, finding) = decide(&prevent(), &denied.bytes(), || (1, "/bin/x".into()), None);
        prop_assert_eq!(decision, Decision::Refuse);
        let f = finding.expect("a finding");
        prop_assert_eq!(f.domain, "denied.test");
        prop_assert_eq!(f.malformed, None);
    }

    #[test]
    fn malformed_queries_are_rejected_and_refused(p in parts(), m in mutation()) {
        let Some((msg, reason)) = apply(&p, &m) else { return Ok(()) };
        let err = query::read(&msg).expect_err("malformed");
        if let Some(reason) = reason {
            prop_assert_eq!(err.reason, reason);
        }
        for (effect, want) in [("prevent", Decision::Refuse), ("block", Decision::Refuse), ("alert", Decision::Pass)] {
            let (decision, finding) = decide(&rule(effect), &msg, || (1, "/bin/x".into()), None);
            prop_assert_eq!(decision, want);
            let f = finding.expect("a malformed message is always reported");
            prop_assert_eq!(f.malformed, Some(err.reason));
            prop_assert_eq!(f.cause, defender::audit::Cause::Section(defender::policy::Attack::NotAllowed));
            // The name is reported only when it reads exactly, and then it is the query's.
            prop_assert!(f.domain.is_empty() || f.domain == p.name(), "{}", f.domain);
        }
        prop_assert_eq!(substitute(&msg), None);
        // The refusal is a bare FORMERR with the message's id.
        if let Some(r) = refusal(&msg) {
            prop_assert_eq!(r.len(), 12);
            prop_assert_eq!(&r[..2], &msg[..2]);
            prop_assert_eq!(r[3] & 0x0f, 1);
        }
    }
}

/// Well-formed queries with a few bytes overwritten, inserted or removed anywhere: some stay
/// well-formed (a letter for a letter, another type, flag or id), and must then read the same in
/// hickory-proto; the others must be rejected without a panic. Enough must stay well-formed for
/// the first half to mean something.
#[test]
fn near_valid_messages() {
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    // A fixed seed: the share of edits that keep a message well-formed is a property of the
    // generator, not of the reader, and must not make the test flaky.
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        ProptestConfig {
            cases: 1000,
            failure_persistence: None,
            ..ProptestConfig::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let edits = prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4);
    runner
        .run(&(parts(), edits), |(p, edits)| {
            let mut msg = p.bytes();
            for (at, byte, kind) in edits {
                let at = at % (msg.len() + 1);
                match kind {
                    0 if at < msg.len() => msg[at] = byte,
                    1 => msg.insert(at, byte),
                    _ if at < msg.len() => {
                        msg.remove(at);
                    }
                    _ => {}
                }
            }
            if judge_everything(&msg) {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    let accepted = accepted.into_inner();
    assert!(
        accepted >= 50,
        "only {accepted} of 1000 near-valid messages accepted"
    );
}
