//! The runtime policy (its contract: docs/policy.md): its JSON document,
//! validation into a compiled [`Policy`], and the pure decisions made from it.
//!
//! `schema` holds the serde types, `validate` the checks and compilation, `matching` the compiled
//! rules and every match, `live` the policy in force while the defender runs.

pub mod custom;
pub mod live;
mod matching;
pub mod prisma;
pub mod schema;
mod validate;

pub use live::Live;
pub use matching::{Attack, Consequence, Custom, Dns, Identity, Matched, Network, Processes, Rule};
pub use schema::{CustomEffect, Effect};
pub use validate::{List, PolicyError, Problem, RuleRef};

/// The policy in force when neither `--policy` nor `--console` is given: alert-only, so it never
/// breaks a workload.
pub const DEFAULT_POLICY_JSON: &str = include_str!("default.json");

/// A validated, compiled policy, cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The document as parsed, to write it back.
    document: schema::Document,
    /// The compiled rules, in document order.
    rules: Vec<Rule>,
}

/// Parses and validates a policy document; the error lists every problem found.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    validate::compile(text)
}

pub fn default_policy() -> Policy {
    parse(DEFAULT_POLICY_JSON).expect("the compiled-in default policy is valid (see its test)")
}

impl Policy {
    /// The document, pretty-printed: the same shape as it was read.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.document)
            .expect("a policy document has only string keys and no floats, so it always serializes")
    }

    /// One line per rule, for `defender policy check`, e.g. `rules[0] "web": images [*] containers
    /// [web-*]; processes prevent (deny 2); network disable; dns alert (allow 2)`; then one per
    /// custom rule: `customRules[0] "ssh out": network-outgoing; used by web (prevent)`.
    pub fn summary_lines(&self) -> Vec<String> {
        let rules = self.document.rules.iter().enumerate();
        let rules = rules.map(|(index, rule)| summary(index, rule));
        let custom = self.document.custom_rules.iter().enumerate();
        let custom = custom.map(|(index, custom)| {
            let uses: Vec<String> = self
                .document
                .rules
                .iter()
                .flat_map(|rule| {
                    rule.custom_rules
                        .iter()
                        .filter(|r| r.name == custom.name)
                        .map(|r| format!("{} ({})", rule.name, r.effect.as_str()))
                })
                .collect();
            let uses = match uses.is_empty() {
                true => "used by no rule".to_owned(),
                false => format!("used by {}", uses.join(", ")),
            };
            format!(
                "customRules[{index}] {:?}: {}; {uses}",
                custom.name,
                custom.kind.as_str()
            )
        });
        rules.chain(custom).collect()
    }
}

fn summary(index: usize, rule: &schema::Rule) -> String {
    let collections = rule.collections.as_ref();
    let patterns = |list: Option<&Vec<String>>| match list {
        Some(list) => list.join(", "),
        None => "*".to_owned(),
    };
    let mut line = format!("rules[{index}] {:?}", rule.name);
    if rule.disabled {
        line.push_str(" (disabled)");
    }
    line.push_str(&format!(
        ": images [{}] containers [{}]",
        patterns(collections.and_then(|c| c.images.as_ref())),
        patterns(collections.and_then(|c| c.containers.as_ref())),
    ));
    // The ECS lists only when written: a missing one is no condition at all.
    let ecs = collections.map(|c| [&c.clusters, &c.families, &c.services]);
    let names = ["clusters", "families", "services"];
    for (name, list) in names.iter().zip(ecs.into_iter().flatten()) {
        if let Some(list) = list {
            line.push_str(&format!(" {name} [{}]", list.join(", ")));
        }
    }
    let processes = rule
        .processes
        .as_ref()
        .map(|s| (s.effect, counts("", &s.allow, &s.deny)));
    let network = rule.network.as_ref().map(|n| {
        let lists = [
            ("outbound ", &n.outbound),
            ("outboundPorts ", &n.outbound_ports),
            ("listeningPorts ", &n.listening_ports),
        ];
        let counts = lists
            .iter()
            .flat_map(|(name, pair)| counts(name, &pair.allow, &pair.deny));
        (n.effect, counts.collect())
    });
    let dns = rule
        .dns
        .as_ref()
        .map(|s| (s.effect, counts("", &s.allow, &s.deny)));
    if !rule.custom_rules.is_empty() {
        let refs: Vec<String> = rule
            .custom_rules
            .iter()
            .map(|r| format!("{} {}", r.name, r.effect.as_str()))
            .collect();
        line.push_str(&format!("; customRules [{}]", refs.join(", ")));
    }
    for (name, section) in [("processes", processes), ("network", network), ("dns", dns)] {
        let (effect, counts) = section.unwrap_or_default();
        line.push_str(&format!("; {name} {}", effect.as_str()));
        if !counts.is_empty() {
            line.push_str(&format!(" ({})", counts.join(", ")));
        }
    }
    line
}

/// `["allow 2", "deny 1"]`, leaving out empty lists; each prefixed by `list`.
fn counts(list: &str, allow: &[String], deny: &[String]) -> Vec<String> {
    [("allow", allow), ("deny", deny)]
        .into_iter()
        .filter(|(_, entries)| !entries.is_empty())
        .map(|(kind, entries)| format!("{list}{kind} {}", entries.len()))
        .collect()
}

/// Rules for the decision tables of the modules that judge by a rule.
#[cfg(test)]
pub(crate) mod testing {
    use super::Rule;

    /// The rule of a one-rule policy (named `r`, for every container) whose sections are the
    /// given JSON members (`"network": {...}`; empty for a rule with none).
    pub fn rule(sections: &str) -> Rule {
        let json = format!(
            r#"{{"rules": [{{"name": "r"{}{sections}}}]}}"#,
            if sections.is_empty() { "" } else { ", " }
        );
        super::parse(&json)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
            .rule_for("c", "i")
            .unwrap()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_round_trips() {
        let policy = default_policy();
        assert_eq!(policy.to_json_pretty(), DEFAULT_POLICY_JSON.trim_end());
        let rule = policy
            .rule_for("any-container", "any/image:1")
            .expect("applies to every container");
        assert_eq!(rule.processes().effect(), Effect::Alert);
        assert_eq!(rule.network().effect(), Effect::Disable);
        assert_eq!(rule.dns().effect(), Effect::Disable);
        let cases: &[(&[&str], Option<Attack>)] = &[
            (&["/usr/bin/nmap"], Some(Attack::ExplicitlyDenied)),
            (&["/bin/nc", "/bin/busybox"], Some(Attack::ExplicitlyDenied)),
            (&["/bin/nc.openbsd"], Some(Attack::ExplicitlyDenied)),
            (&["/tmp/xmrig-6.21"], Some(Attack::ExplicitlyDenied)),
            (&["/usr/local/bin/node"], None),
            (&["/bin/sh", "/bin/busybox"], None),
        ];
        for (candidates, want) in cases {
            assert_eq!(rule.processes().check(candidates), *want, "{candidates:?}");
        }
    }

    #[test]
    fn summary() {
        let policy = parse(
            r#"{"rules": [
                {"name": "fargate", "collections": {"containers": ["twistlock-fargate-task"]},
                 "processes": {"effect": "prevent", "allow": [], "deny": ["mkdir", "/usr/bin/nc*"]},
                 "network": {"effect": "prevent", "outbound": {"deny": ["203.0.113.0/24"]},
                             "outboundPorts": {"allow": ["80", "443"]}},
                 "dns": {"effect": "prevent", "allow": ["*.amazonaws.com", "example.org"]}},
                {"name": "off", "disabled": true, "collections": {"images": ["a*", "-ab"], "containers": []}},
                {"name": "orders", "collections": {"clusters": ["prod-*", "-prod-eu"], "services": []}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            policy.summary_lines(),
            [
                "rules[0] \"fargate\": images [*] containers [twistlock-fargate-task]; processes prevent (deny 2); \
                 network prevent (outbound deny 1, outboundPorts allow 2); dns prevent (allow 2)",
                "rules[1] \"off\" (disabled): images [a*, -ab] containers []; processes disable; network disable; \
                 dns disable",
                "rules[2] \"orders\": images [*] containers [*] clusters [prod-*, -prod-eu] services []; \
                 processes disable; network disable; dns disable",
            ]
        );
    }
}
