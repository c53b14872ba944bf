//! The inspection of one HTTP request: plain data in ([`Request`]), what was found out
//! ([`Finding`]: the attack and the field it was in). Pure: no I/O, no clock.

use super::decode::label;
use super::fields::{Field, Origin, fields};
use super::policy::{Attack, Effect, Protections};
use super::rules;

/// One request as the firewall read it off the wire, before any decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target as sent: path and query, percent-encoded.
    pub target: &'a str,
    /// Header names and values in the order sent (values as bytes: HTTP allows non-UTF-8).
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The whole body (at most the app's `maxBodyBytes`).
    pub body: &'a [u8],
}

/// An attack found in one field: `query:id`, `header:User-Agent`, `cookie:session`, `body:name`,
/// `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub attack: Attack,
    pub field: String,
}

/// The signature classes in the contract's order, each with the fields it applies to: tool
/// signatures are looked for in headers only, the injections everywhere but in the protocol's own
/// headers, Shellshock everywhere.
const CLASSES: &[(Attack, &[Origin])] = &[
    (Attack::Sqli, DATA),
    (Attack::Xss, DATA),
    (Attack::Cmdi, DATA),
    (Attack::CodeInjection, DATA),
    (Attack::Lfi, DATA),
    (Attack::Shellshock, ALL),
    (
        Attack::AttackTools,
        &[Origin::Header, Origin::ProtocolHeader],
    ),
];
const DATA: &[Origin] = &[
    Origin::Path,
    Origin::Query,
    Origin::Header,
    Origin::Cookie,
    Origin::Body,
    Origin::BinaryForm,
];
const ALL: &[Origin] = &[
    Origin::Path,
    Origin::Query,
    Origin::Header,
    Origin::ProtocolHeader,
    Origin::Cookie,
    Origin::Body,
    Origin::BinaryForm,
];

/// Whether a part of `field` carries `attack`: by every signature, or only by the strong ones for
/// a field of a binary body read as a form (its values are mostly chance bytes).
fn carries(field: &Field, attack: Attack, part: &[u8]) -> bool {
    match field.origin {
        Origin::BinaryForm => rules::matches_strong(attack, part),
        _ => rules::matches(attack, part),
    }
}

/// The most bytes of one decoded value the signatures read whole. The scan costs about 20 µs per
/// KiB (libinjection's two tokenizers and the expression sets), so an unbounded value would let a
/// client buy milliseconds of the proxy's time per request. A longer value has its first and last
/// half of this read (each on its own), which catches an attack padded on one side, and is itself
/// a `malformedRequest`: padding on both sides would hide an attack in the unread middle, so
/// under `prevent` such a value is refused, and under `alert` it passes with an audit saying so
/// (docs/waas.md, "Long values"). 16 KiB is twice the 8 KiB that web servers allow one header
/// line by default, and more than a form or JSON field usually holds.
pub const INSPECTED_VALUE_BYTES: usize = 16 * 1024;

/// Whether a view of `field` is longer than the signatures read of one value. A body, or a part
/// of one, not read as values ([`Field::whole`]: an opaque type, XML as a document, a binary
/// body's text) is not a value: it is read whole, bounded by `maxBodyBytes`, as an upload by `PUT`
/// must not be refused for its size.
fn too_long(field: &Field, view: &[u8]) -> bool {
    view.len() > INSPECTED_VALUE_BYTES && !field.whole
}

/// The parts of one decoded view of `field` the signatures read: all of it up to the cap, else its
/// head and its tail.
fn inspected<'v>(field: &Field, view: &'v [u8]) -> impl Iterator<Item = &'v [u8]> {
    let half = INSPECTED_VALUE_BYTES / 2;
    let (head, tail) = match too_long(field, view) {
        true => (&view[..half], Some(&view[view.len() - half..])),
        false => (view, None),
    };
    std::iter::once(head).chain(tail)
}

/// Every attack the enabled `protections` find in `request`, in the order of the contract's list
/// (so the first is the one a refusal names): at most one finding per attack, in the first field
/// (in request order: path, query, headers, cookies, body) that carries it. A malformation is
/// found even where the rest of the request could still be read.
pub fn inspect(request: &Request<'_>, protections: &Protections) -> Vec<Finding> {
    let enabled = |attack| protections.effect(attack) != Some(Effect::Disable);
    let (fields, malformed) = fields(request);
    let mut found: Vec<Finding> = CLASSES
        .iter()
        .filter(|(attack, _)| enabled(*attack))
        .filter_map(|(attack, origins)| {
            let field = fields.iter().find(|field| {
                origins.contains(&field.origin)
                    && field.views.iter().any(|view| {
                        inspected(field, view).any(|part| carries(field, *attack, part))
                    })
            });
            let field = field.map(|f| f.name.clone()).or_else(|| {
                (*attack == Attack::AttackTools)
                    .then(|| {
                        request
                            .headers
                            .iter()
                            .find(|(name, _)| rules::tool_header(name))
                            .map(|(name, _)| format!("header:{}", label(name.as_bytes())))
                    })
                    .flatten()
            })?;
            Some(Finding {
                attack: *attack,
                field,
            })
        })
        .collect();
    let too_long = || {
        fields
            .iter()
            .find(|f| f.views.iter().any(|v| too_long(f, v)))
            .map(|f| f.name.clone())
    };
    if enabled(Attack::MalformedRequest)
        && let Some(field) = malformed
            .into_iter()
            .next()
            .map(|m| m.field)
            .or_else(too_long)
    {
        found.push(Finding {
            attack: Attack::MalformedRequest,
            field,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
        protections: &Protections,
    ) -> Vec<(&'static str, String)> {
        let request = Request {
            method: "POST",
            target,
            headers: headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect(),
            body: body.as_bytes(),
        };
        inspect(&request, protections)
            .into_iter()
            .map(|f| (f.attack.as_str(), f.field))
            .collect()
    }

    /// Target, headers, body, and the (attack, field) findings expected.
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        &'a [(&'a str, &'a str)],
    );

    #[test]
    fn findings_per_attack_in_contract_order() {
        let on = Protections::all(Effect::Alert);
        let form = ("Content-Type", "application/x-www-form-urlencoded");
        let json = ("Content-Type", "application/json");
        let table: &[Case] = &[
            (
                "/products?id=42&q=shoes",
                &[("User-Agent", "curl/8.5.0")],
                "",
                &[],
            ),
            (
                "/p?id=1%27%20OR%20%271%27%3D%271",
                &[],
                "",
                &[("sqli", "query:id")],
            ),
            // Double encoding, then HTML references.
            (
                "/p?x=%253Cscript%253Ealert(1)%253C/script%253E",
                &[],
                "",
                &[("xss", "query:x")],
            ),
            (
                "/p",
                &[form],
                "c=%26lt%3Bsvg%20onload%3Dalert(1)%26gt%3B",
                &[("xss", "body:c")],
            ),
            (
                "/p",
                &[json],
                r#"{"a":{"b":["ok","; cat /etc/passwd"]}}"#,
                &[("cmdi", "body:a.b[1]"), ("lfi", "body:a.b[1]")],
            ),
            (
                "/p",
                &[("Cookie", "s=1; t=${jndi:ldap://x/a}")],
                "",
                &[("codeInjection", "cookie:t")],
            ),
            ("/files/..%2f..%2fetc/passwd", &[], "", &[("lfi", "path")]),
            (
                "/cgi-bin/x",
                &[("Accept", "() { :; }; /bin/id")],
                "",
                // A protocol header: only Shellshock and tools are looked for in it.
                &[("shellshock", "header:Accept")],
            ),
            (
                "/",
                &[("User-Agent", "sqlmap/1.8 (https://sqlmap.org)")],
                "",
                &[("attackTools", "header:User-Agent")],
            ),
            (
                "/",
                &[("Acunetix-Product", "WVS")],
                "",
                &[("attackTools", "header:Acunetix-Product")],
            ),
            ("/p?a=100%", &[], "", &[("malformedRequest", "query:a")]),
            (
                "/p?id=1%27%20or%201%3D1--&bad=%zz",
                &[],
                "",
                &[("sqli", "query:id"), ("malformedRequest", "query:bad")],
            ),
        ];
        for (target, headers, body, want) in table {
            let want: Vec<(&str, String)> = want.iter().map(|(a, f)| (*a, f.to_string())).collect();
            assert_eq!(
                found(target, headers, body, &on),
                want,
                "{target} {headers:?} {body}"
            );
        }
    }

    #[test]
    fn long_values_are_read_at_both_ends_and_are_malformed() {
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let pad = |n: usize| "a".repeat(n);
        let attack = "%3Cscript%3Ealert(1)%3C/script%3E";
        let cap = INSPECTED_VALUE_BYTES;
        let on = Protections::all(Effect::Prevent);
        let no_malformed = Protections {
            malformed_request: Effect::Disable,
            ..Protections::all(Effect::Prevent)
        };
        let xss = ("xss", "body:t");
        let long = ("malformedRequest", "body:t");
        // (body, protections, the findings expected)
        type Case<'a> = (String, &'a Protections, &'a [(&'a str, &'a str)]);
        let table: &[Case] = &[
            (format!("t={}", pad(cap)), &on, &[]),
            (format!("t={}", pad(cap + 1)), &on, &[long]),
            (format!("t={attack}{}", pad(3 * cap)), &on, &[xss, long]),
            (format!("t={}{attack}", pad(3 * cap)), &on, &[xss, long]),
            // In the unread middle: found only as a value too long to read whole.
            (format!("t={0}{attack}{0}", pad(cap)), &on, &[long]),
            (format!("t={0}{attack}{0}", pad(cap)), &no_malformed, &[]),
            // The other fields are still read whole.
            (
                format!("t={}&u={attack}", pad(cap + 1)),
                &on,
                &[("xss", "body:u"), long],
            ),
        ];
        for (body, protections, want) in table {
            let want: Vec<(&str, String)> = want.iter().map(|(a, f)| (*a, f.to_string())).collect();
            assert_eq!(
                found("/p", &form, body, protections),
                want,
                "{}",
                body.len()
            );
        }
        // A body of a type not read as values is read whole, however long.
        let raw = [("Content-Type", "application/octet-stream")];
        let middle = format!("{0}<script>alert(1)</script>{0}", pad(cap));
        assert_eq!(
            found("/p", &raw, &middle, &on),
            [("xss", "body".to_owned())]
        );
        assert!(found("/p", &raw, &pad(3 * cap), &on).is_empty());
    }

    /// The fields of a binary body read as a form are trusted less: strong signatures find an
    /// attack there, chance bytes that only a weaker one reads as one are not flagged.
    #[test]
    fn binary_form_fields_need_strong_signatures() {
        let on = Protections::all(Effect::Prevent);
        let binary = |body: &[u8]| {
            let request = Request {
                method: "PUT",
                target: "/",
                headers: vec![("Content-Type", b"application/octet-stream")],
                body,
            };
            inspect(&request, &on)
                .into_iter()
                .map(|f| (f.attack.as_str(), f.field))
                .collect::<Vec<_>>()
        };
        let found = |attack: &'static str, field: &str| vec![(attack, field.to_owned())];
        /// The body after a control byte, and what is found.
        type Case<'a> = (&'a [u8], Vec<(&'a str, String)>);
        let table: &[Case] = &[
            (b"&q=%27+OR+1%3D1--&n=2", found("sqli", "body:q")),
            // A name escaped as a form parser decodes it is the same field.
            (b"&%71=%27+OR+1%3D1--", found("sqli", "body:q")),
            (
                b"&q=x%3Cscript%3Ealert(1)%3C/script%3E",
                found("xss", "body:q"),
            ),
            (b"&q=<img src=x onerror=alert(1)>", found("xss", "body:q")),
            (
                b"&host=127.0.0.1;cat /etc/passwd",
                found("cmdi", "body:host"),
            ),
            (b"&h=() { :; }", found("shellshock", "body:h")),
            // What fonts and catalogues hold by chance: a history escape, a short SQL-ish
            // string, markup without a tag of script, a path.
            (b"&x=!2\x01\x02", vec![]),
            (b"&x='--", vec![]),
            (
                b"&component=general\x00Report <bugs@example.org> a=b",
                vec![],
            ),
            (b"&s=/etc/passwd\x00", vec![]),
        ];
        for (tail, want) in table {
            let body = [&b"\x89PNG\x01\x00"[..], tail].concat();
            assert_eq!(&binary(&body), want, "{}", String::from_utf8_lossy(tail));
        }
        // The same weak values as a form are flagged: the weaker trust is the binary body's.
        let form = found("cmdi", "query:x");
        assert_eq!(found_in("/p?x=!2"), form);
    }

    fn found_in(target: &str) -> Vec<(&'static str, String)> {
        found(target, &[], "", &Protections::all(Effect::Prevent))
    }

    /// A remote client must not crash PID 1 (the release build aborts on a panic): `inspect` on
    /// arbitrary requests, built from the bytes its decoders and parsers branch on, never panics.
    /// `PROPTEST_CASES=1000000 cargo test --lib waas::inspect::tests::fuzz` runs it longer.
    #[test]
    fn fuzz_inspect_never_panics() {
        use proptest::prelude::*;
        let alphabet: Vec<u8> = b"%25uUaF0&=;+<>\"'`(){}[]$\\/.:-#*?!|\x00\x01\n\r\t \xac\xed\x05\xc0\xafxmlJSON{}bound"
            .to_vec();
        let bytes = move |max: usize| {
            prop_oneof![
                proptest::collection::vec(proptest::sample::select(alphabet.clone()), 0..max),
                proptest::collection::vec(any::<u8>(), 0..max),
            ]
        };
        let types = proptest::sample::select(vec![
            "application/x-www-form-urlencoded",
            "application/json",
            "multipart/form-data; boundary=b",
            "text/xml",
            "application/octet-stream",
            "",
        ]);
        let on = Protections::all(Effect::Prevent);
        proptest!(ProptestConfig::with_cases(3000), |(
            target in bytes(64), cookie in bytes(48), body in bytes(300), content_type in types
        )| {
            let target = String::from_utf8_lossy(&target).into_owned();
            let request = Request {
                method: "POST",
                target: &target,
                headers: vec![("Content-Type", content_type.as_bytes()), ("Cookie", &cookie)],
                body: &body,
            };
            inspect(&request, &on);
        });
    }

    #[test]
    fn disabled_protections_find_nothing() {
        let off = Protections::all(Effect::Disable);
        assert!(found("/p?id=1' or '1'='1&a=%", &[], "", &off).is_empty());
        let only_xss = Protections {
            xss: Effect::Prevent,
            ..Protections::all(Effect::Disable)
        };
        assert_eq!(
            found(
                "/p?id=1' or '1'='1&q=<script>alert(1)</script>",
                &[],
                "",
                &only_xss
            ),
            [("xss", "query:q".to_owned())]
        );
    }
}
