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
            Attack::DeniedSource | Attack::RateLimit | Attack::ApiViolation | Attack::Banned => {
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
/// naming where it is.
pub fn parse(text: &str) -> Result<Document, WaasError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| WaasError {
        path: match e.path().to_string() {
            p if p == "." => "document".to_owned(),
            p => p,
        },
        message: e.inner().to_string(),
    })
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
        .map_err(|e| WaasError {
            path: "rules".to_owned(),
            message: e.to_string(),
        })?;
    Ok(Compiled { document, selector })
}
