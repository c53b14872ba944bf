//! The policy document as it is written in JSON: serde types only, no logic.
//!
//! The contract is the policy format in docs/policy.md. Every struct denies unknown fields,
//! because a typo such as `"dens"` must be an error rather than a silently missing (hence
//! disabled) section. Serializing gives back the same shape, so `defender policy
//! default` and the console can print what was parsed.

use serde::{Deserialize, Serialize};

/// The whole document.
///
/// Generic over the rule types so that validation can first read the outer shape with every rule
/// and custom rule left as raw JSON (`Document<Value, Value>`), then each on its own: serde stops
/// at the first error, and one bad rule must not hide the errors of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object with a `rules` list (and a `customRules` library)"
)]
pub struct Document<R = Rule, C = CustomRule> {
    /// The custom rules library: written first, as the spec's example has it; left out when empty.
    /// (`Vec::new` rather than `default`, which would make serde require `C: Default`.)
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub custom_rules: Vec<C>,
    pub rules: Vec<R>,
}

/// One custom rule of the library: a script over the fields of one event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a custom rule object with `name`, `type` and `script`"
)]
pub struct CustomRule {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: CustomKind,
    pub script: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A custom rule's `type`. `filesystem` is the original product's; it is read, then refused by
/// validation until a file system sensor exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustomKind {
    Processes,
    NetworkOutgoing,
    Dns,
    Listening,
    Filesystem,
}

impl CustomKind {
    /// The name used in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomKind::Processes => "processes",
            CustomKind::NetworkOutgoing => "network-outgoing",
            CustomKind::Dns => "dns",
            CustomKind::Listening => "listening",
            CustomKind::Filesystem => "filesystem",
        }
    }
}

/// A runtime rule's use of a custom rule: which one, and with what effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object with a custom rule's `name` and an `effect`"
)]
pub struct CustomRef {
    pub name: String,
    pub effect: CustomEffect,
}

/// The effect of a custom rule reference: a section's effects, plus `allow` (an exception: the
/// sections do not judge the event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomEffect {
    Allow,
    Alert,
    Prevent,
    Block,
    /// The reference is off.
    Disable,
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
    /// The custom rules switched on for this rule, tried in order; left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_rules: Vec<CustomRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Section>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Section>,
}

/// Which containers a rule applies to. A missing `images` or `containers` list means `["*"]`; the
/// ECS lists (`clusters`, `families`, `services`) are kept apart from a missing one because a list
/// that is present does not match a container whose value is unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an object with `images`, `containers`, `clusters`, `families` and `services` lists"
)]
pub struct Collections {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<String>>,
    /// ECS cluster names (not ARNs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
    /// ECS task-definition families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub families: Option<Vec<String>>,
    /// ECS service names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
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

impl CustomEffect {
    /// The name used in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomEffect::Allow => "allow",
            CustomEffect::Alert => "alert",
            CustomEffect::Prevent => "prevent",
            CustomEffect::Block => "block",
            CustomEffect::Disable => "disable",
        }
    }
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
    fn custom_names_match_serde() {
        for kind in [
            CustomKind::Processes,
            CustomKind::NetworkOutgoing,
            CustomKind::Dns,
            CustomKind::Listening,
            CustomKind::Filesystem,
        ] {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        for effect in [
            CustomEffect::Allow,
            CustomEffect::Alert,
            CustomEffect::Prevent,
            CustomEffect::Block,
            CustomEffect::Disable,
        ] {
            assert_eq!(
                serde_json::to_string(&effect).unwrap(),
                format!("\"{}\"", effect.as_str())
            );
        }
    }

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
