//! The inspection of one HTTP request: plain data in ([`Request`]), what was found out
//! ([`Finding`]: the attack and the field it was in). Pure: no I/O, no clock.

use super::decode::label;
use super::fields::{Origin, fields};
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
];
const ALL: &[Origin] = &[
    Origin::Path,
    Origin::Query,
    Origin::Header,
    Origin::ProtocolHeader,
    Origin::Cookie,
    Origin::Body,
];

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
                    && field.views.iter().any(|view| rules::matches(*attack, view))
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
    if enabled(Attack::MalformedRequest)
        && let Some(first) = malformed.into_iter().next()
    {
        found.push(Finding {
            attack: Attack::MalformedRequest,
            field: first.field,
        });
    }
    found
}
