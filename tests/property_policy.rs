//! Property tests of the policy parser (`defender::policy::parse`): arbitrary text and arbitrary
//! JSON values shaped like policies (every field right, of the wrong type, or of a wrong value)
//! never panic it, and every rejection names where the problem is: a line and column for text
//! that is not JSON, a rule or a field for each problem of a document that is. Cases are bounded
//! so that the file runs in seconds.

use defender::policy::{PolicyError, parse};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value};

/// Parses `text`; on rejection, checks that every problem names its location.
fn parse_and_locate(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(policy) => {
            // What was accepted reads back the same.
            let again = parse(&policy.to_json_pretty());
            prop_assert!(again.is_ok(), "{again:?}");
        }
        Err(PolicyError::Syntax { line, column, .. }) => {
            prop_assert!(line >= 1 && column <= text.len() + 1, "{line}:{column}");
        }
        Err(PolicyError::Invalid(problems)) => {
            prop_assert!(!problems.is_empty());
            for p in problems {
                // A rule, a field, or the document as a whole, said so.
                let text = p.to_string();
                prop_assert!(
                    p.rule.is_some() || !p.field.is_empty() || text.starts_with("document: "),
                    "a problem without a location: {text}"
                );
                prop_assert!(!text.contains("struct"), "a Rust type in a message: {text}");
                prop_assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
            }
        }
    }
    Ok(())
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The keys of policies, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "rules", "name", "disabled", "collections", "images", "containers", "processes",
            "network", "dns", "effect", "allow", "deny", "outbound", "outboundPorts",
            "listeningPorts",
        ])
        .prop_map(str::to_string),
        1 => "[a-zA-Z]{0,8}",
    ]
}

/// `right` most of the time, else any JSON value.
fn or_wrong(right: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![4 => right, 1 => any_json()].boxed()
}

/// Strings a list of the policy may hold: patterns, paths, names, addresses, CIDRs, ports, port
/// ranges, and wrong ones.
fn entry() -> BoxedStrategy<Value> {
    or_wrong(
        prop_oneof![
            prop::sample::select(vec![
                "*",
                "**",
                "/usr/bin/curl",
                "curl",
                "/bin/*",
                "*.amazonaws.com",
                "a.test",
                "10.0.0.0/8",
                "::1",
                "203.0.113.5",
                "0.0.0.0/0",
                "fd00::/8",
                "443",
                "1-1024",
                "0",
                "65535",
                "65536",
                "80-79",
                "",
                "[",
                "*.",
                "..",
                "10.0.0.0/33",
                "a*b",
            ])
            .prop_map(|s| Value::from(s.to_string())),
            ".{0,16}".prop_map(Value::String),
        ]
        .boxed(),
    )
}

fn list() -> BoxedStrategy<Value> {
    or_wrong(prop::collection::vec(entry(), 0..4).prop_map(Value::Array))
}

fn effect() -> BoxedStrategy<Value> {
    or_wrong(
        prop::sample::select(vec![
            "disable", "alert", "prevent", "block", "Block", "deny", "",
        ])
        .prop_map(|s| Value::from(s.to_string())),
    )
}

/// An object with each of `fields` present or not.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(k, v)| prop::option::of(v.prop_map(move |v| (k.to_string(), v))).boxed())
        .collect();
    (parts, prop::option::weighted(0.1, (key(), any_json())))
        .prop_map(|(fields, extra)| {
            let mut m: Map<String, Value> = fields.into_iter().flatten().collect();
            if let Some((k, v)) = extra {
                m.entry(k).or_insert(v);
            }
            Value::Object(m)
        })
        .boxed()
}

fn section() -> BoxedStrategy<Value> {
    or_wrong(object(vec![
        ("effect", effect()),
        ("allow", list()),
        ("deny", list()),
    ]))
}

fn lists() -> BoxedStrategy<Value> {
    or_wrong(object(vec![("allow", list()), ("deny", list())]))
}

fn rule() -> BoxedStrategy<Value> {
    let name = or_wrong(
        prop::sample::select(vec!["web", "db", "", "web"]).prop_map(|s| Value::from(s.to_string())),
    );
    let network = or_wrong(object(vec![
        ("effect", effect()),
        ("outbound", lists()),
        ("outboundPorts", lists()),
        ("listeningPorts", lists()),
    ]));
    let collections = or_wrong(object(vec![("images", list()), ("containers", list())]));
    or_wrong(object(vec![
        ("name", name),
        ("disabled", or_wrong(any::<bool>().prop_map(Value::Bool))),
        ("collections", collections),
        ("processes", section()),
        ("network", network),
        ("dns", section()),
    ]))
}

fn policy() -> BoxedStrategy<Value> {
    or_wrong(object(vec![(
        "rules",
        or_wrong(prop::collection::vec(rule(), 0..4).prop_map(Value::Array)),
    )]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in any::<String>()) {
        parse_and_locate(&text)?;
    }

    #[test]
    fn json_like_text(text in r#"[\[\]{}":,0-9a-z \n\\.-]{0,60}"#) {
        parse_and_locate(&text)?;
    }

    #[test]
    fn json_values_shaped_like_policies(doc in policy()) {
        parse_and_locate(&doc.to_string())?;
        parse_and_locate(&serde_json::to_string_pretty(&doc).unwrap())?;
    }

    /// A policy cut anywhere is not JSON, and says where.
    #[test]
    fn truncated_policies(doc in policy(), cut in 0.0f64..1.0) {
        let text = doc.to_string();
        let at = (text.len() as f64 * cut) as usize;
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        parse_and_locate(&text[..at])?;
    }
}

/// The generator is not all noise: it reaches valid policies too, so that the parser's accepting
/// paths run as well.
#[test]
fn the_generator_reaches_valid_policies() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = policy();
    let valid = (0..500)
        .filter(|_| {
            let doc = strategy.new_tree(&mut runner).unwrap().current();
            parse(&doc.to_string()).is_ok()
        })
        .count();
    assert!(valid >= 5, "{valid} valid policies in 500");
}
