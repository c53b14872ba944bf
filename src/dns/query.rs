//! The strict reading of a DNS message sent by the container: exactly one well-formed standard
//! query, read from the raw bytes, or the reason it is not one.
//!
//! Name servers differ in what they forgive (a question past a QDCOUNT of 0, bytes after the last
//! record, a compression pointer in a question, a response sent as a query), so a lenient reading
//! could judge one name while the server reads another. This reading forgives nothing: the name it
//! returns is the only name any server can read from the message. hickory-proto is not used here
//! because it accepts trailing bytes and several questions; the tests check that every message
//! accepted here reads the same in hickory-proto.

/// A message that is exactly one well-formed standard query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The question name, lowercased, labels joined by dots, without the trailing dot; `.` for the
    /// root.
    pub name: String,
    /// Where the question name ends in the message (it starts right after the header, at 12).
    pub name_end: usize,
    /// Where the OPT record starts, if there is one.
    pub opt_at: Option<usize>,
}

/// Why a message is not exactly one well-formed query. The wording is the `{reason}` of the audit
/// sentence for such messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("shorter than a DNS header")]
    Short,
    #[error("a response, not a query")]
    Response,
    #[error("opcode {0}, not a standard query")]
    Opcode(u8),
    #[error("{0} questions, not one")]
    Questions(u16),
    #[error("{0} answer records in a query")]
    Answers(u16),
    #[error("{0} authority records in a query")]
    Authority(u16),
    #[error("{0} additional records, not at most one EDNS OPT record")]
    Additional(u16),
    #[error("a compression pointer in the question name")]
    Pointer,
    #[error("a reserved label type in the question name")]
    LabelType,
    #[error("a question name longer than 255 bytes")]
    LongName,
    #[error("a byte other than a letter, digit, '-' or '_' in the question name")]
    NameByte,
    #[error("the message ends inside its question or a record")]
    Truncated,
    #[error("an additional record that is not an EDNS OPT record owned by the root")]
    NotOpt,
    #[error("EDNS version {0}, not 0")]
    EdnsVersion(u8),
    #[error("EDNS options that do not fill their record exactly")]
    EdnsOptions,
    #[error("{0} bytes after the last record")]
    Trailing(usize),
}

/// A message that is not exactly one well-formed query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Malformed {
    pub reason: Reason,
    /// The name where the first question would start, when it reads exactly (whatever the counts
    /// say): what a lenient server could read, for the audit.
    pub name: Option<String>,
}

/// The header's length (RFC 1035 4.1.1).
pub const HEADER: usize = 12;
/// The longest name, in wire form (RFC 1035 2.3.4).
const MAX_NAME: usize = 255;
/// The OPT pseudo-record's type (RFC 6891 6.1.2).
const OPT: u16 = 41;

/// Reads `msg` as exactly one well-formed standard query (RFC 1035 4.1, RFC 6891):
/// - QR 0 and opcode 0 (QUERY): responses, IQUERY, STATUS, NOTIFY, UPDATE and unassigned opcodes
///   are not queries;
/// - QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1, the one additional record an EDNS OPT record
///   owned by the root, version 0, its options (any code) filling its data exactly;
/// - a question name of plain labels (no compression pointer: in the question there is nothing
///   before it to point back to; no reserved label type), at most 255 bytes in wire form, each
///   label of letters, digits, `-` and `_` only, so that its text form is unambiguous;
/// - nothing after the last record.
///
/// The other header flags (RD, CD, AD, ...), the question's type and class, and the OPT record's
/// payload size and flags are not judged: they do not change the name a server reads.
pub fn read(msg: &[u8]) -> Result<Query, Malformed> {
    let name = read_name(msg, HEADER);
    let fail = |reason| Malformed {
        reason,
        name: name.as_ref().ok().map(|(n, _)| n.clone()),
    };
    let Some(header) = msg.get(..HEADER) else {
        return Err(fail(Reason::Short));
    };
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let flags = word(2);
    let (qd, an, ns, ar) = (word(4), word(6), word(8), word(10));
    if flags & 0x8000 != 0 {
        return Err(fail(Reason::Response));
    }
    let opcode = ((flags >> 11) & 0xf) as u8;
    let checks = [
        (opcode != 0, Reason::Opcode(opcode)),
        (qd != 1, Reason::Questions(qd)),
        (an != 0, Reason::Answers(an)),
        (ns != 0, Reason::Authority(ns)),
        (ar > 1, Reason::Additional(ar)),
    ];
    if let Some((_, reason)) = checks.into_iter().find(|(bad, _)| *bad) {
        return Err(fail(reason));
    }
    let (text, end) = name.clone().map_err(fail)?;
    // QTYPE and QCLASS.
    let mut at = end + 4;
    if msg.len() < at {
        return Err(fail(Reason::Truncated));
    }
    let opt_at = (ar == 1).then_some(at);
    if ar == 1 {
        at = read_opt(msg, at).map_err(fail)?;
    }
    if msg.len() > at {
        return Err(fail(Reason::Trailing(msg.len() - at)));
    }
    Ok(Query {
        name: text,
        name_end: end,
        opt_at,
    })
}

/// The plain name starting at `at`, as text, and where it ends.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), Reason> {
    let start = at;
    let mut text = String::new();
    loop {
        let len = *msg.get(at).ok_or(Reason::Truncated)?;
        match len >> 6 {
            0 => {}
            // 11: a pointer (RFC 1035 4.1.4); 01 and 10: reserved label types (RFC 6891 5).
            0b11 => return Err(Reason::Pointer),
            _ => return Err(Reason::LabelType),
        }
        let len = usize::from(len);
        if at + 1 + len - start > MAX_NAME {
            return Err(Reason::LongName);
        }
        if len == 0 {
            if text.is_empty() {
                text.push('.');
            }
            return Ok((text, at + 1));
        }
        let label = msg.get(at + 1..at + 1 + len).ok_or(Reason::Truncated)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err(Reason::NameByte);
        }
        if !text.is_empty() {
            text.push('.');
        }
        text.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        at += 1 + len;
    }
}

/// The EDNS OPT record starting at `at` (RFC 6891 6.1.2): owned by the root, version 0, options
/// that fill its data exactly. Returns where it ends.
fn read_opt(msg: &[u8], at: usize) -> Result<usize, Reason> {
    let fixed = msg.get(at..at + 11).ok_or(Reason::Truncated)?;
    if fixed[0] != 0 || u16::from_be_bytes([fixed[1], fixed[2]]) != OPT {
        return Err(Reason::NotOpt);
    }
    // fixed[3..5]: the requestor's payload size; fixed[5..9]: extended RCODE, version, flags.
    if fixed[6] != 0 {
        return Err(Reason::EdnsVersion(fixed[6]));
    }
    let rdlen = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    let mut options = msg.get(at + 11..at + 11 + rdlen).ok_or(Reason::Truncated)?;
    while !options.is_empty() {
        let [_, _, l0, l1, rest @ ..] = options else {
            return Err(Reason::EdnsOptions);
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        options = rest.get(len..).ok_or(Reason::EdnsOptions)?;
    }
    Ok(at + 11 + rdlen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (dotted, `""` for the root) with the given header words and tail.
    fn msg(flags: u16, counts: [u16; 4], name: &str, tail: &[u8]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend(flags.to_be_bytes());
        for c in counts {
            m.extend(c.to_be_bytes());
        }
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend([0, 1, 0, 1]);
        m.extend(tail);
        m
    }

    /// An OPT record with these options' bytes.
    fn opt(version: u8, options: &[u8]) -> Vec<u8> {
        let mut r = vec![0, 0, 41, 0x04, 0xd0, 0, version, 0x80, 0];
        r.extend((options.len() as u16).to_be_bytes());
        r.extend(options);
        r
    }

    const ONE: [u16; 4] = [1, 0, 0, 0];
    /// `x. 60 IN A 1.2.3.4`.
    const A_RECORD: [u8; 17] = [1, b'x', 0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4];
    const ONE_OPT: [u16; 4] = [1, 0, 0, 1];

    #[test]
    fn well_formed_queries() {
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let cases: &[(Vec<u8>, &str)] = &[
            (msg(0x0100, ONE, "Denied.TEST", &[]), "denied.test"),
            (msg(0x0120, ONE_OPT, "a.b", &opt(0, &[])), "a.b"),
            (msg(0x0120, ONE_OPT, "a.b", &opt(0, &cookie)), "a.b"),
            (msg(0x0100, ONE, "", &[]), "."),
            (msg(0, ONE, "_srv._tcp.x-y.test", &[]), "_srv._tcp.x-y.test"),
        ];
        for (m, name) in cases {
            let labels = name.split('.').filter(|l| !l.is_empty() && *l != ".");
            let name_end = HEADER + labels.map(|l| l.len() + 1).sum::<usize>() + 1;
            assert_eq!(
                read(m),
                Ok(Query {
                    name: name.to_string(),
                    name_end,
                    opt_at: (m[11] == 1).then_some(name_end + 4),
                })
            );
        }
    }

    #[test]
    fn malformed_messages() {
        let named = Some("denied.test");
        let mut pointer = msg(0x0100, ONE, "", &[]);
        pointer.splice(12..13, [0xc0, 12]);
        let mut looped = msg(0x0100, ONE, "a", &[]);
        looped.splice(14..15, [0xc0, 12]);
        let mut reserved = msg(0x0100, ONE, "", &[]);
        reserved[12] = 0x41;
        let long = vec!["a".repeat(63); 4].join(".");
        let fits = [
            "a".repeat(63),
            "a".repeat(63),
            "a".repeat(63),
            "a".repeat(61),
        ]
        .join(".");
        let cases: Vec<(Vec<u8>, Reason, Option<&str>)> = vec![
            (vec![0; 11], Reason::Short, None),
            (
                msg(0x8100, ONE, "denied.test", &[]),
                Reason::Response,
                named,
            ),
            (
                msg(0x0900, ONE, "denied.test", &[]),
                Reason::Opcode(1),
                named,
            ),
            (
                msg(0x2800, ONE, "denied.test", &[]),
                Reason::Opcode(5),
                named,
            ),
            (
                msg(0x7800, ONE, "denied.test", &[]),
                Reason::Opcode(15),
                named,
            ),
            (
                msg(0x0100, [0, 0, 0, 0], "denied.test", &[]),
                Reason::Questions(0),
                named,
            ),
            (
                msg(0x0100, [2, 0, 0, 0], "denied.test", &[]),
                Reason::Questions(2),
                named,
            ),
            (
                msg(0x0100, [1, 1, 0, 0], "denied.test", &[]),
                Reason::Answers(1),
                named,
            ),
            (
                msg(0x0100, [1, 0, 1, 0], "denied.test", &[]),
                Reason::Authority(1),
                named,
            ),
            (
                msg(0x0100, [1, 0, 0, 2], "denied.test", &[]),
                Reason::Additional(2),
                named,
            ),
            (
                msg(0x0100, ONE, "denied.test", &[0]),
                Reason::Trailing(1),
                named,
            ),
            (
                msg(0x0100, ONE_OPT, "denied.test", &[]),
                Reason::Truncated,
                named,
            ),
            (pointer, Reason::Pointer, None),
            (looped, Reason::Pointer, None),
            (reserved, Reason::LabelType, None),
            (msg(0x0100, ONE, &long, &[]), Reason::LongName, None),
            (msg(0x0100, ONE, "a.b\\.c", &[]), Reason::NameByte, None),
            (msg(0x0100, ONE, "a b", &[]), Reason::NameByte, None),
            (
                msg(0x0100, ONE_OPT, "denied.test", &opt(1, &[])),
                Reason::EdnsVersion(1),
                named,
            ),
            (
                msg(0x0100, ONE_OPT, "denied.test", &opt(0, &[0, 10, 0, 9, 1])),
                Reason::EdnsOptions,
                named,
            ),
            (
                msg(0x0100, ONE_OPT, "denied.test", &opt(0, &[0, 10, 0])),
                Reason::EdnsOptions,
                named,
            ),
            (
                msg(0x0100, ONE_OPT, "denied.test", &A_RECORD),
                Reason::NotOpt,
                named,
            ),
            (
                msg(
                    0x0100,
                    ONE_OPT,
                    "denied.test",
                    &[&opt(0, &[])[..], &[7]].concat(),
                ),
                Reason::Trailing(1),
                named,
            ),
            (
                msg(0x0100, ONE, "denied.test", &[])[..20].to_vec(),
                Reason::Truncated,
                None,
            ),
            (
                msg(0x0100, ONE, "denied.test", &[])[..27].to_vec(),
                Reason::Truncated,
                named,
            ),
        ];
        for (m, reason, name) in cases {
            assert_eq!(
                read(&m),
                Err(Malformed {
                    reason,
                    name: name.map(str::to_string)
                }),
                "{m:02x?}"
            );
        }
        assert_eq!(read(&msg(0, ONE, &fits, &[])).unwrap().name, fits);
    }
}
