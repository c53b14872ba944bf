//! The WAAS policy document (`--waas-policy`, or the console's
//! `/api/v1/policies/firewall/app/app-embedded`): rules chosen like the runtime policy's, each
//! listing the application ports it protects and how.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::schema::Collections;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with a `rules` list")]
pub struct Document {
    pub rules: Vec<Rule>,
}

/// One rule: the first enabled rule whose collections match the container is in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a WAAS rule object"
)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Collections>,
    #[serde(default)]
    pub apps: Vec<App>,
}

/// One protected application port and its protections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an app object with a `port`"
)]
pub struct App {
    /// The port the application listens on (its `bind`), which the firewall takes over.
    pub port: u16,
    #[serde(default)]
    pub protections: Protections,
    /// CIDRs refused at connect time (effect prevent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// A body above this is a `malformedRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// How long an effect `ban` refuses the source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban: Option<Ban>,
    /// An OpenAPI 3 document (JSON object); `null` or absent: no API enforcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<Value>,
    /// What a request outside `openapi` gets.
    #[serde(default)]
    pub api_effect: Effect,
}

/// The effect of each protection; a missing one is `disable`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object of protections"
)]
pub struct Protections {
    #[serde(default)]
    pub sqli: Effect,
    #[serde(default)]
    pub xss: Effect,
    #[serde(default)]
    pub cmdi: Effect,
    #[serde(default)]
    pub code_injection: Effect,
    #[serde(default)]
    pub lfi: Effect,
    #[serde(default)]
    pub shellshock: Effect,
    #[serde(default)]
    pub attack_tools: Effect,
    #[serde(default)]
    pub malformed_request: Effect,
}

impl Protections {
    /// Every protection with the same `effect` (what benchmarks and corpus tests run).
    pub fn all(effect: Effect) -> Self {
        Protections {
            sqli: effect,
            xss: effect,
            cmdi: effect,
            code_injection: effect,
            lfi: effect,
            shellshock: effect,
            attack_tools: effect,
            malformed_request: effect,
        }
    }

    /// The effect of the protection against `attack`; `None` for the attacks that are not
    /// protections (denied sources, rate limit, API, bans), whose effects are set elsewhere.
    pub fn effect(&self, attack: Attack) -> Option<Effect> {
        Some(match attack {
            Attack::Sqli => self.sqli,
            Attack::Xss => self.xss,
            Attack::Cmdi => self.cmdi,
            Attack::CodeInjection => self.code_injection,
            Attack::Lfi => self.lfi,
            Attack::Shellshock => self.shellshock,
            Attack::AttackTools => self.attack_tools,
            Attack::MalformedRequest => self.malformed_request,
            Attack::DeniedSource
            | Attack::RateLimit
            | Attack::ApiViolation
            | Attack::Banned
            | Attack::InternalError => {
                return None;
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a rate limit object"
)]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
    pub effect: Effect,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with `minutes`")]
pub struct Ban {
    pub minutes: u32,
}

/// What happens to a request an inspection flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    #[default]
    Disable,
    /// Pass it, and audit.
    Alert,
    /// Answer 403 with a request id, and audit; the application never sees it.
    Prevent,
    /// Prevent, and refuse the source address for `ban.minutes`.
    Ban,
}

/// What an inspection found (`attack` in a `waas` audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attack {
    Sqli,
    Xss,
    Cmdi,
    CodeInjection,
    Lfi,
    Shellshock,
    AttackTools,
    MalformedRequest,
    DeniedSource,
    RateLimit,
    ApiViolation,
    Banned,
    /// The firewall itself failed on the request (a panic, contained): refused, never passed.
    InternalError,
}

impl Attack {
    /// The name in audits.
    pub fn as_str(self) -> &'static str {
        match self {
            Attack::Sqli => "sqli",
            Attack::Xss => "xss",
            Attack::Cmdi => "cmdi",
            Attack::CodeInjection => "codeInjection",
            Attack::Lfi => "lfi",
            Attack::Shellshock => "shellshock",
            Attack::AttackTools => "attackTools",
            Attack::MalformedRequest => "malformedRequest",
            Attack::DeniedSource => "deniedSource",
            Attack::RateLimit => "rateLimit",
            Attack::ApiViolation => "apiViolation",
            Attack::Banned => "banned",
            Attack::InternalError => "internalError",
        }
    }
}

/// Why a WAAS document was refused: where (`rules[0] "orders front end": apps[0].port`) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WaasError {
    pub path: String,
    pub message: String,
}

/// Reads a WAAS document strictly: an unknown field, a wrong type or a missing field is an error
/// naming where it is (with the rule's name, as the runtime policy's errors do:
/// `rules[0] "orders front end": apps[0].port`).
pub fn parse(text: &str) -> Result<Document, WaasError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        WaasError {
            path: match path.as_str() {
                "." => "document".to_owned(),
                _ => named(text, &path),
            },
            message: e.inner().to_string(),
        }
    })
}

/// `rules[N].rest` as `rules[N] "name": rest`, the name read from the raw JSON (the rule did not
/// deserialize, so only the raw JSON has it); any other path as it is.
fn named(text: &str, path: &str) -> String {
    let Some((index, rest)) = path
        .strip_prefix("rules[")
        .and_then(|p| p.split_once(']'))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)))
    else {
        return path.to_owned();
    };
    let raw: Option<Value> = serde_json::from_str(text).ok();
    let name = raw
        .as_ref()
        .and_then(|v| v.get("rules")?.get(index)?.get("name")?.as_str());
    rule_path(index, name, rest.strip_prefix('.').unwrap_or(rest))
}

/// `rules[N] "name": field` (`rules[N]: field` for a rule without a name, `rules[N] "name"` for
/// the rule as a whole).
fn rule_path(index: usize, name: Option<&str>, field: &str) -> String {
    let mut path = format!("rules[{index}]");
    if let Some(name) = name {
        path.push_str(&format!(" {name:?}"));
    }
    if !field.is_empty() {
        path.push_str(&format!(": {field}"));
    }
    path
}

/// The meaning of a document serde read: the first problem, named by rule and field.
fn validate(document: &Document) -> Result<(), WaasError> {
    let mut seen_names: Vec<&str> = Vec::new();
    for (index, rule) in document.rules.iter().enumerate() {
        let at = |field: &str, message: String| WaasError {
            path: rule_path(index, Some(&rule.name), field),
            message,
        };
        if rule.name.trim().is_empty() {
            return Err(at("name", "must not be empty".into()));
        }
        if let Some(first) = seen_names.iter().position(|n| *n == rule.name) {
            return Err(at("name", format!("duplicate of rules[{first}]")));
        }
        seen_names.push(&rule.name);
        for (i, app) in rule.apps.iter().enumerate() {
            check_app(app, &rule.apps[..i])
                .map_err(|(field, message)| at(&format!("apps[{i}].{field}"), message))?;
        }
    }
    Ok(())
}

/// One app's problem: the field within the app and what is wrong. `before` are the rule's apps
/// listed before it.
fn check_app(app: &App, before: &[App]) -> Result<(), (String, String)> {
    let problem = |field: &str, message: String| Err((field.to_owned(), message));
    if app.port == 0 {
        return problem("port", "0 is not a port an application listens on".into());
    }
    if let Some(first) = before.iter().position(|other| other.port == app.port) {
        return problem(
            "port",
            format!("port {} is protected by apps[{first}] already", app.port),
        );
    }
    for (i, source) in app.denied_sources.iter().enumerate() {
        if source.trim().parse::<ipnet::IpNet>().is_err() {
            return problem(
                &format!("deniedSources[{i}]"),
                format!(
                    "{source:?} is not a CIDR (an address and a prefix length: 203.0.113.0/24)"
                ),
            );
        }
    }
    if let Some(limit) = &app.rate_limit {
        if limit.requests_per_second == 0 {
            return problem("rateLimit.requestsPerSecond", "must be more than 0".into());
        }
        if limit.burst == 0 {
            return problem("rateLimit.burst", "must be more than 0".into());
        }
    }
    if app.max_body_bytes == Some(0) {
        return problem("maxBodyBytes", "must be more than 0".into());
    }
    match (&app.ban, banning(app)) {
        (None, Some(field)) => {
            return problem(
                "ban",
                format!("required: {field} is `ban`, which needs `ban.minutes`"),
            );
        }
        (Some(ban), _) if ban.minutes == 0 => {
            return problem("ban.minutes", "must be more than 0".into());
        }
        _ => {}
    }
    match &app.openapi {
        None => {}
        // Only the shape is checked here. The OpenAPI document's own checks (its version, paths
        // and schemas) belong to the detection's `waas::openapi`: its compilation is called in
        // this arm, its error returned as `problem("openapi...", ...)` like the others.
        Some(Value::Object(_)) => {}
        Some(other) => {
            return problem(
                "openapi",
                format!(
                    "must be an OpenAPI 3 document (a JSON object) or null, not {}",
                    json_kind(other)
                ),
            );
        }
    }
    Ok(())
}

/// The first field of `app` whose effect is `ban`, if any.
fn banning(app: &App) -> Option<String> {
    const PROTECTIONS: [Attack; 8] = [
        Attack::Sqli,
        Attack::Xss,
        Attack::Cmdi,
        Attack::CodeInjection,
        Attack::Lfi,
        Attack::Shellshock,
        Attack::AttackTools,
        Attack::MalformedRequest,
    ];
    PROTECTIONS
        .into_iter()
        .find(|a| app.protections.effect(*a) == Some(Effect::Ban))
        .map(|a| format!("protections.{}", a.as_str()))
        .or_else(|| {
            app.rate_limit
                .as_ref()
                .filter(|l| l.effect == Effect::Ban)
                .map(|_| "rateLimit.effect".to_owned())
        })
        .or_else(|| (app.api_effect == Effect::Ban).then(|| "apiEffect".to_owned()))
}

/// What a JSON value is, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A document checked beyond its shape, ready to choose the rule for a container.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub document: Document,
    /// The rules' names, switches and collections as a runtime policy with no sections, so that
    /// a WAAS rule is chosen by the very code that chooses a runtime rule.
    selector: crate::policy::Policy,
}

impl Compiled {
    /// The first enabled rule whose collections match `who`.
    pub fn rule_in_force(&self, who: &crate::policy::Identity) -> Option<&Rule> {
        self.selector
            .index_in_force(who)
            .map(|index| &self.document.rules[index])
    }
}

/// Parses and checks a WAAS document (see [`parse`]); the collections' globs are checked as the
/// runtime policy checks them.
pub fn compile(text: &str) -> Result<Compiled, WaasError> {
    let document = parse(text)?;
    validate(&document)?;
    let rules: Vec<Value> = document
        .rules
        .iter()
        .map(|rule| {
            serde_json::json!({
                "name": rule.name,
                "disabled": rule.disabled,
                "collections": rule.collections,
            })
        })
        .collect();
    let selector = crate::policy::parse(&serde_json::json!({ "rules": rules }).to_string())
        .map_err(|e| match e {
            // The collections are the only part of a rule the selector reads: its problem
            // names the rule and field as ours do.
            crate::policy::PolicyError::Invalid(problems) if !problems.is_empty() => {
                let first = &problems[0];
                let path = match &first.rule {
                    Some(rule) => rule_path(rule.index, rule.name.as_deref(), &first.field),
                    None => "rules".to_owned(),
                };
                WaasError {
                    path,
                    message: first.message.clone(),
                }
            }
            other => WaasError {
                path: "rules".to_owned(),
                message: other.to_string(),
            },
        })?;
    Ok(Compiled { document, selector })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document with one rule "web" holding one app: `app` (JSON object members) added to
    /// `"port": 8080`.
    fn with_app(app: &str) -> String {
        let comma = if app.is_empty() { "" } else { ", " };
        format!(r#"{{"rules": [{{"name": "web", "apps": [{{"port": 8080{comma}{app}}}]}}]}}"#)
    }

    #[test]
    fn valid_documents() {
        for text in [
            r#"{"rules": []}"#.to_owned(),
            with_app(""),
            with_app(
                r#""protections": {"sqli": "ban", "xss": "prevent"}, "ban": {"minutes": 10},
                   "deniedSources": ["203.0.113.0/24", "2001:db8::/32", "10.0.0.1/32"],
                   "rateLimit": {"requestsPerSecond": 50, "burst": 100, "effect": "prevent"},
                   "maxBodyBytes": 1048576, "openapi": {"openapi": "3.0.0"}, "apiEffect": "alert""#,
            ),
            with_app(r#""openapi": null"#),
            // A ban block with no effect `ban` is harmless.
            with_app(r#""ban": {"minutes": 1}"#),
            r#"{"rules": [{"name": "a", "apps": [{"port": 80}, {"port": 8080}]},
                          {"name": "b", "apps": [{"port": 80}]}]}"#
                .to_owned(),
        ] {
            if let Err(e) = compile(&text) {
                panic!("{text}: {e}");
            }
        }
    }

    #[test]
    fn every_problem_names_the_rule_and_field() {
        let cases = [
            (
                r#"{"rules": [{"name": "", "apps": []}]}"#.to_owned(),
                r#"rules[0] "": name: must not be empty"#,
            ),
            (
                r#"{"rules": [{"name": "a"}, {"name": "a"}]}"#.to_owned(),
                r#"rules[1] "a": name: duplicate of rules[0]"#,
            ),
            (
                r#"{"rules": [{"name": "web", "apps": [{"port": 0}]}]}"#.to_owned(),
                r#"rules[0] "web": apps[0].port: 0 is not a port"#,
            ),
            (
                r#"{"rules": [{"name": "web", "apps": [{"port": 80}, {"port": 80}]}]}"#.to_owned(),
                r#"rules[0] "web": apps[1].port: port 80 is protected by apps[0] already"#,
            ),
            (
                with_app(r#""deniedSources": ["10.0.0.0/8", "203.0.113.0"]"#),
                r#"rules[0] "web": apps[0].deniedSources[1]: "203.0.113.0" is not a CIDR"#,
            ),
            (
                with_app(r#""deniedSources": ["10.0.0.0/33"]"#),
                r#"rules[0] "web": apps[0].deniedSources[0]: "10.0.0.0/33" is not a CIDR"#,
            ),
            (
                with_app(r#""rateLimit": {"requestsPerSecond": 0, "burst": 1, "effect": "alert"}"#),
                r#"rules[0] "web": apps[0].rateLimit.requestsPerSecond: must be more than 0"#,
            ),
            (
                with_app(r#""rateLimit": {"requestsPerSecond": 1, "burst": 0, "effect": "alert"}"#),
                r#"rules[0] "web": apps[0].rateLimit.burst: must be more than 0"#,
            ),
            (
                with_app(r#""maxBodyBytes": 0"#),
                r#"rules[0] "web": apps[0].maxBodyBytes: must be more than 0"#,
            ),
            (
                with_app(r#""protections": {"lfi": "ban"}"#),
                r#"rules[0] "web": apps[0].ban: required: protections.lfi is `ban`"#,
            ),
            (
                with_app(r#""rateLimit": {"requestsPerSecond": 1, "burst": 1, "effect": "ban"}"#),
                r#"rules[0] "web": apps[0].ban: required: rateLimit.effect is `ban`"#,
            ),
            (
                with_app(r#""apiEffect": "ban""#),
                r#"rules[0] "web": apps[0].ban: required: apiEffect is `ban`"#,
            ),
            (
                with_app(r#""apiEffect": "ban", "ban": {"minutes": 0}"#),
                r#"rules[0] "web": apps[0].ban.minutes: must be more than 0"#,
            ),
            (
                with_app(r#""openapi": "openapi.yaml""#),
                r#"rules[0] "web": apps[0].openapi: must be an OpenAPI 3 document (a JSON object) or null, not a string"#,
            ),
            (
                with_app(r#""openapi": []"#),
                r#"rules[0] "web": apps[0].openapi: must be an OpenAPI 3 document (a JSON object) or null, not an array"#,
            ),
            // Shape errors (serde's) name the rule by its name too.
            (
                with_app(r#""protections": {"sqli": "block"}"#),
                r#"rules[0] "web": apps[0].protections.sqli: unknown variant `block`"#,
            ),
            (
                with_app(r#""port": 70000"#),
                r#"rules[0] "web": apps[0]: duplicate field `port`"#,
            ),
            (
                r#"{"rules": [{"name": "web", "apps": [{"port": 70000}]}]}"#.to_owned(),
                r#"rules[0] "web": apps[0].port: invalid value: integer `70000`"#,
            ),
            (
                r#"{"rules": [{"name": "web", "apps": [{"port": 80, "paths": []}]}]}"#.to_owned(),
                r#"rules[0] "web": apps[0].paths: unknown field `paths`"#,
            ),
            (
                r#"{"rules": [{"apps": []}]}"#.to_owned(),
                r#"rules[0]: missing field `name`"#,
            ),
            (r#"{"rule": []}"#.to_owned(), "rule: unknown field `rule`"),
            (r#"{"rules": ["#.to_owned(), "rules: EOF while parsing"),
            (r#"3"#.to_owned(), "document: invalid type: integer `3`"),
            // The collections are checked by the runtime policy's own code, named the same way.
            (
                r#"{"rules": [{"name": "web", "collections": {"containers": ["a[b"]}}]}"#
                    .to_owned(),
                r#"rules[0] "web": collections.containers[0]:"#,
            ),
        ];
        for (text, want) in cases {
            match compile(&text) {
                Ok(_) => panic!("{text}: accepted, want {want}"),
                Err(e) => assert!(e.to_string().starts_with(want), "{text}:\n{e}\nwant {want}"),
            }
        }
    }
}
