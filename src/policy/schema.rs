//! The policy document as it is written in JSON: serde types only, no logic.
//!
//! The contract is the policy format in docs/policy.md. Every struct denies unknown fields,
//! because a typo such as `"dens"` must be an error rather than a silently missing (hence
//! disabled) section. Serializing gives back the same shape, so `defender policy
//! default` and the console can print what was parsed.

use serde::{Deserialize, Serialize};

/// The whole document.
///
/// Generic over the rule type so that validation can first read the outer shape with every rule left
/// as raw JSON (`Document<serde_json::Value>`), then each rule on its own: serde stops at the first
/// error, and one bad rule must not hide the errors of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object with a `rules` list"
)]
pub struct Document<R = Rule> {
    pub rules: Vec<R>,
}

/// One rule. A missing section means effect `disable`, so it is kept as `None` and not written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a rule object"
)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Collections>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Section>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Section>,
}

/// Which containers a rule applies to. A missing list means `["*"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object with `images` and `containers` lists"
)]
pub struct Collections {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<String>>,
}

/// A section made of one effect and one pair of lists: `processes` and `dns`.
///
/// `effect` is required once the section is written: defaulting it to `disable` would let a forgotten
/// line switch the sensor off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object with an `effect` and `allow` and `deny` lists"
)]
pub struct Section {
    pub effect: Effect,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// The `network` section: one effect for three pairs of lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object with an `effect` and `outbound`, `outboundPorts` and `listeningPorts` lists"
)]
pub struct Network {
    pub effect: Effect,
    #[serde(default)]
    pub outbound: Lists,
    #[serde(default)]
    pub outbound_ports: Lists,
    #[serde(default)]
    pub listening_ports: Lists,
}

/// An allow list and a deny list, both empty when missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object with `allow` and `deny` lists"
)]
pub struct Lists {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// What happens on a violation (the table in the spec).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The sensor is off; also what a missing section means.
    #[default]
    Disable,
    Alert,
    Prevent,
    Block,
}

impl Effect {
    /// The name used in the document and in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Disable => "disable",
            Effect::Alert => "alert",
            Effect::Prevent => "prevent",
            Effect::Block => "block",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effect_names_match_serde() {
        for effect in [
            Effect::Disable,
            Effect::Alert,
            Effect::Prevent,
            Effect::Block,
        ] {
            let json = serde_json::to_string(&effect).unwrap();
            assert_eq!(json, format!("\"{}\"", effect.as_str()));
        }
    }
}
