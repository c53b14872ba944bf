//! Validation: turns a policy document into a compiled [`Policy`], or into every problem found in it,
//! each naming the rule and the field (`rules[2] "web": network.outboundPorts.allow[0]: "70000" is
//! not a port`).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use globset::{Glob, GlobBuilder, GlobMatcher};
use ipnet::{IpNet, Ipv4Net};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Policy;
use super::custom::{self, Kind};
use super::matching::{
    Collection, Custom, Dns, DomainPattern, Entry, Lists, NameGlob, Network, PortRange,
    ProcessPattern, Processes, Reference, Rule,
};
use super::schema::{self as doc, Document};

/// Why a policy document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON: nothing else could be checked. `message` is serde_json's, without the position.
    #[error("malformed JSON at line {line} column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// JSON, but not a valid policy: every problem found, in document order, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One problem in a document that is JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The rule (or custom rule) at fault; `None` for the outer shape of the document (e.g. a
    /// missing `rules`).
    pub rule: Option<RuleRef>,
    /// Where in the rule (or document): `network.outboundPorts.allow[0]`; empty for the whole of it
    /// (shown as `document` when there is no rule either).
    pub field: String,
    pub message: String,
}

/// A rule named in a [`Problem`]: a runtime rule, or a custom rule of the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    pub list: List,
    pub index: usize,
    /// `None` when the rule has no `name` string to show.
    pub name: Option<String>,
}

/// Which list of the document a [`RuleRef`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Rules,
    CustomRules,
}

impl List {
    /// The list's name in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            List::Rules => "rules",
            List::CustomRules => "customRules",
        }
    }
}

/// `rules[2] "web": network.outboundPorts.allow[0]: "70000" is not a port`; `document: ...` for
/// the outer shape of the document as a whole.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rule.is_none() && self.field.is_empty() {
            f.write_str("document: ")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, "{}[{}]", rule.list.as_str(), rule.index)?;
            if let Some(name) = &rule.name {
                write!(f, " {name:?}")?;
            }
            f.write_str(": ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Parses, checks and compiles a document.
///
/// In passes, because serde stops at the first error: the syntax; then the outer shape with each
/// rule left as raw JSON; then each rule on its own (shape, then meaning), so that every rule's
/// problems are reported.
pub(super) fn compile(text: &str) -> Result<Policy, PolicyError> {
    let value: Value = serde_json::from_str(text).map_err(syntax_error)?;
    let outer: Document<Value, Value> = deserialize(&value).map_err(|(field, message)| {
        PolicyError::Invalid(vec![Problem {
            rule: None,
            field,
            message,
        }])
    })?;

    let mut problems = Vec::new();
    let (library, custom_documents) = compile_library(&outer.custom_rules, &mut problems);
    let mut documents = Vec::new();
    let mut rules = Vec::new();
    each_named(
        &outer.rules,
        List::Rules,
        &mut problems,
        |value, report| match deserialize::<doc::Rule>(value) {
            Ok(document) => {
                rules.push(compile_rule(&document, &library, report));
                documents.push(document);
            }
            Err((field, message)) => report.push(field, message),
        },
    );

    if problems.is_empty() {
        Ok(Policy {
            document: Document {
                custom_rules: custom_documents,
                rules: documents,
            },
            rules,
        })
    } else {
        Err(PolicyError::Invalid(problems))
    }
}

/// Calls `each` with every entry of a list of named objects (rules, custom rules) and a report
/// naming it, after reporting a name used twice. The name is read from the raw JSON, so that an
/// entry with a bad field is still reported by name.
fn each_named(
    list: &[Value],
    which: List,
    problems: &mut Vec<Problem>,
    mut each: impl FnMut(&Value, &mut Report),
) {
    let mut first_with_name: HashMap<&str, usize> = HashMap::new();
    for (index, value) in list.iter().enumerate() {
        let name = value.get("name").and_then(Value::as_str);
        let mut report = Report {
            rule: RuleRef {
                list: which,
                index,
                name: name.map(str::to_owned),
            },
            problems,
        };
        if let Some(name) = name.filter(|name| !name.is_empty()) {
            match first_with_name.get(name) {
                Some(first) => report.push(
                    "name".to_owned(),
                    format!("duplicate of {}[{first}]", which.as_str()),
                ),
                None => {
                    first_with_name.insert(name, index);
                }
            }
        }
        each(value, &mut report);
    }
}

/// The custom rules library, compiled, by name (and the documents, to write back). A custom rule
/// with a problem of its own is in it as `None`: references to it are not reported again.
fn compile_library(
    list: &[Value],
    problems: &mut Vec<Problem>,
) -> (HashMap<String, Option<Arc<Entry>>>, Vec<doc::CustomRule>) {
    let mut library = HashMap::new();
    let mut documents = Vec::new();
    each_named(list, List::CustomRules, problems, |value, report| {
        let document = match deserialize::<doc::CustomRule>(value) {
            Ok(document) => document,
            Err((field, message)) => {
                if let Some(name) = value.get("name").and_then(Value::as_str) {
                    library.entry(name.to_owned()).or_insert(None);
                }
                return report.push(field, message);
            }
        };
        if document.name.is_empty() {
            report.push("name".to_owned(), "must not be empty".to_owned());
        }
        let kind = match document.kind {
            doc::CustomKind::Processes => Kind::Processes,
            doc::CustomKind::NetworkOutgoing => Kind::NetworkOutgoing,
            doc::CustomKind::Dns => Kind::Dns,
            doc::CustomKind::Listening => Kind::Listening,
            doc::CustomKind::Filesystem => {
                report.push(
                    "type".to_owned(),
                    "filesystem custom rules are not supported yet: the defender has no file \
                     system sensor"
                        .to_owned(),
                );
                library.entry(document.name.clone()).or_insert(None);
                documents.push(document);
                return;
            }
        };
        let entry = match custom::compile(kind, &document.script) {
            Ok(script) => Some(Arc::new(Entry {
                name: document.name.clone(),
                message: document.message.clone(),
                script,
            })),
            Err(e) => {
                let (line, column) = e.position(&document.script);
                report.push(format!("script:{line}:{column}"), e.message);
                None
            }
        };
        library.entry(document.name.clone()).or_insert(entry);
        documents.push(document);
    });
    (library, documents)
}

fn syntax_error(error: serde_json::Error) -> PolicyError {
    let (line, column, message) = json_error(&error);
    PolicyError::Syntax {
        line,
        column,
        message,
    }
}

/// A JSON syntax error's line, column and message, the message without the position that
/// serde_json appends to it (the position has fields of its own here).
pub(super) fn json_error(error: &serde_json::Error) -> (usize, usize, String) {
    let (line, column) = (error.line(), error.column());
    let text = error.to_string();
    let message = text
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&text)
        .to_owned();
    (line, column, message)
}

/// Deserializes from raw JSON; an error comes with the path of the field at fault (empty for the
/// value itself) and serde's message, which names unknown fields and variants.
fn deserialize<T: DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { path };
        (field, error.into_inner().to_string())
    })
}

/// Collects the problems of one rule.
struct Report<'a> {
    rule: RuleRef,
    problems: &'a mut Vec<Problem>,
}

impl Report<'_> {
    fn push(&mut self, field: String, message: String) {
        self.problems.push(Problem {
            rule: Some(self.rule.clone()),
            field,
            message,
        });
    }
}

/// Checks what serde cannot (the entries' syntax, a non-empty name, custom rules that exist) and
/// compiles the entries. What is returned is meaningful only if nothing was reported.
fn compile_rule(
    document: &doc::Rule,
    library: &HashMap<String, Option<Arc<Entry>>>,
    report: &mut Report,
) -> Rule {
    if document.name.is_empty() {
        report.push("name".to_owned(), "must not be empty".to_owned());
    }
    let collections = document.collections.as_ref();
    let images = collection(
        collections.and_then(|c| c.images.as_deref()),
        "collections.images",
        report,
    );
    let containers = collection(
        collections.and_then(|c| c.containers.as_deref()),
        "collections.containers",
        report,
    );
    // Only a list that is present is compiled: a missing ECS list matches any value, even none.
    let ecs = |list: fn(&doc::Collections) -> Option<&Vec<String>>, field, report: &mut Report| {
        collections
            .and_then(list)
            .map(|list| collection(Some(list.as_slice()), field, report))
    };
    let clusters = ecs(|c| c.clusters.as_ref(), "collections.clusters", report);
    let families = ecs(|c| c.families.as_ref(), "collections.families", report);
    let services = ecs(|c| c.services.as_ref(), "collections.services", report);
    let processes = document
        .processes
        .as_ref()
        .map_or_else(Processes::default, |section| {
            Processes::new(
                section.effect,
                lists(
                    &section.allow,
                    &section.deny,
                    "processes",
                    report,
                    process_pattern,
                ),
            )
        });
    let network = document
        .network
        .as_ref()
        .map_or_else(Network::default, |network| Network {
            effect: network.effect,
            outbound: pair(&network.outbound, "network.outbound", report, ip_net),
            outbound_ports: pair(
                &network.outbound_ports,
                "network.outboundPorts",
                report,
                port_range,
            ),
            listening_ports: pair(
                &network.listening_ports,
                "network.listeningPorts",
                report,
                port_range,
            ),
        });
    let dns = document
        .dns
        .as_ref()
        .map_or_else(Dns::default, |section| Dns {
            effect: section.effect,
            lists: lists(&section.allow, &section.deny, "dns", report, domain_pattern),
        });
    Rule {
        name: document.name.clone(),
        disabled: document.disabled,
        images,
        containers,
        clusters,
        families,
        services,
        custom: references(&document.custom_rules, library, report),
        processes,
        network,
        dns,
    }
}

/// A rule's custom rule references, compiled per event type, in order; `disable`d ones are left
/// out (they are off), and each must name a custom rule of the library, once.
fn references(
    list: &[doc::CustomRef],
    library: &HashMap<String, Option<Arc<Entry>>>,
    report: &mut Report,
) -> [Custom; 4] {
    let mut custom: [Custom; 4] = Default::default();
    for (index, reference) in list.iter().enumerate() {
        let field = format!("customRules[{index}].name");
        if let Some(first) = list[..index].iter().position(|r| r.name == reference.name) {
            report.push(field, format!("duplicate of customRules[{first}]"));
            continue;
        }
        let Some(entry) = library.get(&reference.name) else {
            report.push(
                field,
                format!(
                    "no custom rule named {:?} in the library (the document's customRules)",
                    reference.name
                ),
            );
            continue;
        };
        // A custom rule with a problem of its own was reported where it is.
        let Some(entry) = entry else { continue };
        if reference.effect != doc::CustomEffect::Disable {
            custom[entry.script.kind().index()].push(Reference {
                effect: reference.effect,
                entry: entry.clone(),
            });
        }
    }
    custom
}

/// Parses each entry of a list; `field` names the list (`processes.deny`).
fn entries<T>(
    list: &[String],
    field: &str,
    report: &mut Report,
    parse: fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let mut parsed = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        match parse(entry) {
            Ok(value) => parsed.push(value),
            Err(message) => report.push(format!("{field}[{index}]"), message),
        }
    }
    parsed
}

fn lists<T>(
    allow: &[String],
    deny: &[String],
    section: &str,
    report: &mut Report,
    parse: fn(&str) -> Result<T, String>,
) -> Lists<T> {
    Lists {
        allow: entries(allow, &format!("{section}.allow"), report, parse),
        deny: entries(deny, &format!("{section}.deny"), report, parse),
    }
}

fn pair<T>(
    pair: &doc::Lists,
    section: &str,
    report: &mut Report,
    parse: fn(&str) -> Result<T, String>,
) -> Lists<T> {
    lists(&pair.allow, &pair.deny, section, report, parse)
}

/// A missing list compiles to no patterns at all, which matches everything, like `["*"]`.
fn collection(list: Option<&[String]>, field: &str, report: &mut Report) -> Collection {
    let mut compiled = Collection::default();
    for (exclude, glob) in entries(list.unwrap_or_default(), field, report, collection_pattern) {
        if exclude {
            compiled.exclude.push(glob);
        } else {
            compiled.include.push(glob);
        }
    }
    compiled
}

/// `-pattern` excludes. Case-insensitive (spec), and `*` crosses `/`: image names are paths
/// (`docker.io/library/nginx:1`) that `*nginx*` should match.
fn collection_pattern(entry: &str) -> Result<(bool, GlobMatcher), String> {
    let (exclude, pattern) = match entry.strip_prefix('-') {
        Some(pattern) => (true, pattern),
        None => (false, entry),
    };
    let glob = GlobBuilder::new(pattern).case_insensitive(true).build();
    matcher(entry, pattern, glob).map(|glob| (exclude, glob))
}

/// An entry with `/` is a glob on the absolute path, else on the file name.
///
/// Case-sensitive, like the file systems the paths come from. In path globs `*` stops at `/`, so that
/// `/usr/bin/*` does not reach into subdirectories (`**` does).
fn process_pattern(entry: &str) -> Result<ProcessPattern, String> {
    let on_path = entry.contains('/');
    // `bin/nc` could never match an absolute path: a typo that would silently deny nothing.
    if on_path && !entry.starts_with(['/', '*', '{']) {
        return Err(format!(
            "{entry:?} is not an absolute path glob (an entry with \"/\" matches the absolute path)"
        ));
    }
    // An empty entry goes on to `matcher`, which refuses it.
    if !entry.is_empty() && !entry.contains(GLOB_SYNTAX) {
        let glob = NameGlob::Literal(entry.to_owned());
        return Ok(ProcessPattern { glob, on_path });
    }
    let glob = GlobBuilder::new(entry).literal_separator(true).build();
    parsed(entry, entry, glob).map(|glob| ProcessPattern {
        glob: NameGlob::Glob(glob, OnceLock::new()),
        on_path,
    })
}

/// The characters that make an entry a glob (globset's syntax: wildcards, classes, alternatives,
/// and `\`, which escapes on Unix). An entry with none of them matches exactly itself.
const GLOB_SYNTAX: [char; 7] = ['*', '?', '[', ']', '{', '}', '\\'];

/// The matcher of a built glob. `pattern` is `entry` without any prefix of ours (`-`).
fn matcher(
    entry: &str,
    pattern: &str,
    glob: Result<Glob, globset::Error>,
) -> Result<GlobMatcher, String> {
    parsed(entry, pattern, glob).map(|glob| glob.compile_matcher())
}

/// A built glob, or what is wrong with it.
fn parsed(entry: &str, pattern: &str, glob: Result<Glob, globset::Error>) -> Result<Glob, String> {
    // globset accepts an empty glob, which matches only an empty name: certainly a mistake.
    if pattern.is_empty() {
        return Err(format!("{entry:?} is an empty pattern"));
    }
    glob.map_err(|error| format!("{entry:?} is not a valid glob: {}", error.kind()))
}

/// An address or a CIDR.
///
/// A bare address is a /32 or /128. A CIDR with host bits set (`10.0.0.1/8`) is accepted as its
/// network (`10.0.0.0/8`): the intent is plain, and the document keeps what was written. An
/// IPv4-mapped entry (`::ffff:192.0.2.1`) becomes IPv4, as destinations do, or it could never match.
fn ip_net(entry: &str) -> Result<IpNet, String> {
    let net = entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{entry:?} is not an IP address or CIDR"))?
        .trunc();
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(v4) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return Ok(IpNet::V4(v4));
    }
    Ok(net)
}

/// `"443"` or `"8000-8100"`, ports 1 to 65535, the range not reversed.
fn port_range(entry: &str) -> Result<PortRange, String> {
    match entry.split_once('-') {
        None => port(entry)
            .map(|port| PortRange { lo: port, hi: port })
            .ok_or_else(|| format!("{entry:?} is not a port")),
        Some((lo, hi)) => match (port(lo), port(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => Ok(PortRange { lo, hi }),
            (Some(lo), Some(hi)) => Err(format!("{entry:?} is not a port range: {lo} > {hi}")),
            _ => Err(format!("{entry:?} is not a port range")),
        },
    }
}

fn port(text: &str) -> Option<u16> {
    // Digits only: `u16::from_str` would also take "+443".
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&port| port != 0)
}

/// `*`, `*.name` or `name`, with an optional trailing dot; stored lowercase without it.
fn domain_pattern(entry: &str) -> Result<DomainPattern, String> {
    if entry == "*" {
        return Ok(DomainPattern::Any);
    }
    let (below, name) = match entry.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, entry),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if !is_domain_name(name) {
        return Err(format!(
            "{entry:?} is not a domain pattern (\"*\", \"*.name\" or \"name\")"
        ));
    }
    let name = name.to_ascii_lowercase();
    Ok(if below {
        DomainPattern::Below(name)
    } else {
        DomainPattern::Exact(name)
    })
}

/// Labels of 1 to 63 letters, digits, `-` or `_` (`_` appears in SRV and DKIM names), 253 bytes in all
/// (RFC 1035). A `*` anywhere but in front (`foo*.com`) is not a pattern this policy has.
fn is_domain_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::custom::Kind;

    /// An entry without glob syntax is compared as text, and matches exactly what globset's
    /// matcher of the same entry would; an entry with any glob syntax stays a glob.
    #[test]
    fn literal_process_entries_match_as_their_glob_would() {
        let literals = [
            "nmap",
            "nc",
            "nc.traditional",
            "/usr/bin/nc",
            "/opt/my tool",
            "a,b",
            "!x",
            "^y",
            ".hidden",
            "/",
            "NC",
        ];
        let texts = [
            "nmap",
            "nc",
            "NC",
            "Nmap",
            "nmap ",
            "nc.",
            "",
            "nc.traditional",
            "/usr/bin/nc",
            "/usr/bin/nc/",
            "usr/bin/nc",
            "/opt/my tool",
            "a,b",
            "a",
            "!x",
            "x",
            "^y",
            ".hidden",
            "/",
        ];
        for entry in literals {
            let NameGlob::Literal(literal) = process_pattern(entry).unwrap().glob else {
                panic!("{entry:?} is not compared as text");
            };
            let glob = GlobBuilder::new(entry)
                .literal_separator(true)
                .build()
                .unwrap()
                .compile_matcher();
            for text in texts {
                assert_eq!(
                    literal == text,
                    glob.is_match(text),
                    "{entry:?} on {text:?}"
                );
            }
        }
        for entry in [
            "nc.*",
            "xmrig*",
            "/usr/bin/n?",
            "[n]c",
            "{nc,ncat}",
            "n\\c",
            "/usr/**/nc",
        ] {
            let pattern = process_pattern(entry).unwrap();
            assert!(matches!(pattern.glob, NameGlob::Glob(..)), "{entry:?}");
        }
    }

    /// The messages of a rejected document, one per problem.
    fn errors(text: &str) -> Vec<String> {
        match compile(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(PolicyError::Syntax { .. }) => panic!("not JSON: {text}"),
            Err(PolicyError::Invalid(problems)) => {
                problems.iter().map(ToString::to_string).collect()
            }
        }
    }

    /// A document with one rule named "web" made of `body` (JSON members after the name).
    fn web(body: &str) -> String {
        format!(r#"{{"rules": [{{"name": "web", {body}}}]}}"#)
    }

    #[test]
    fn spec_example_is_valid() {
        let text = r#"{
          "rules": [
            {
              "name": "fargate-sample: no mkdir, only AWS DNS",
              "disabled": false,
              "collections": { "images": ["*"], "containers": ["twistlock-fargate-task"] },
              "processes": { "effect": "prevent", "allow": [], "deny": ["mkdir", "/usr/bin/nc*"] },
              "network": {
                "effect": "prevent",
                "outbound":       { "allow": [], "deny": ["203.0.113.0/24", "2001:db8::/32"] },
                "outboundPorts":  { "allow": ["80", "443", "8000-8100"], "deny": [] },
                "listeningPorts": { "allow": ["8080"], "deny": [] }
              },
              "dns": { "effect": "prevent", "allow": ["*.amazonaws.com", "example.org"], "deny": [] }
            }
          ]
        }"#;
        let policy = compile(text).unwrap();
        // Written back and read again, it is the same document.
        let again = compile(&policy.to_json_pretty()).unwrap();
        assert_eq!(again.document, policy.document);
    }

    /// The custom rules example of the spec: valid, written back the same, and its references
    /// compiled per event type in order.
    #[test]
    fn custom_rules_example_is_valid() {
        let text = r#"{
          "customRules": [
            { "name": "netcat listener", "type": "processes",
              "script": "proc.name in (\"nc\", \"ncat\", \"netcat\") and proc.cmdline contains \" -l\"",
              "message": "a netcat listener was started" },
            { "name": "ssh out", "type": "network-outgoing", "script": "net.outgoing_port = 22" },
            { "name": "paste sites", "type": "dns", "script": "dns.name endswith \".pastebin.com\"" },
            { "name": "migrations may mkdir", "type": "processes",
              "script": "proc.name = \"mkdir\" and proc.pname = \"migrate\"" },
            { "name": "unused", "type": "listening", "script": "net.listening_port < 1024" }
          ],
          "rules": [
            { "name": "orders",
              "collections": { "containers": ["orders-*"] },
              "customRules": [
                { "name": "migrations may mkdir", "effect": "allow" },
                { "name": "netcat listener", "effect": "block" },
                { "name": "ssh out", "effect": "prevent" },
                { "name": "paste sites", "effect": "alert" },
                { "name": "unused", "effect": "disable" }
              ],
              "processes": { "effect": "prevent", "deny": ["mkdir"] } }
          ]
        }"#;
        let policy = compile(text).unwrap();
        let again = compile(&policy.to_json_pretty()).unwrap();
        assert_eq!(again.document, policy.document);
        let rule = policy.rule_for("orders-1", "i").unwrap();
        let names = |kind| rule.custom(kind).decide(&[]).map(|m| m.name.to_owned());
        // No facts, nothing matches; what is compiled is seen through the effects and fields.
        assert_eq!(names(Kind::Processes), None);
        assert_eq!(rule.custom(Kind::Processes).strictest(), doc::Effect::Block);
        assert_eq!(
            rule.custom(Kind::NetworkOutgoing).strictest(),
            doc::Effect::Prevent
        );
        assert_eq!(rule.custom(Kind::Dns).strictest(), doc::Effect::Alert);
        // `disable` switches the reference off.
        assert!(rule.custom(Kind::Listening).is_empty());
        assert!(rule.judges_launches() && rule.enforces_network());
        assert_eq!(rule.launch_verification(), doc::Effect::Block);
        assert_eq!(rule.socket_effect(), doc::Effect::Prevent);
        assert_eq!(
            policy.summary_lines(),
            [
                "rules[0] \"orders\": images [*] containers [orders-*]; customRules [migrations may mkdir \
                 allow, netcat listener block, ssh out prevent, paste sites alert, unused disable]; \
                 processes prevent (deny 1); network disable; dns disable",
                "customRules[0] \"netcat listener\": processes; used by orders (block)",
                "customRules[1] \"ssh out\": network-outgoing; used by orders (prevent)",
                "customRules[2] \"paste sites\": dns; used by orders (alert)",
                "customRules[3] \"migrations may mkdir\": processes; used by orders (allow)",
                "customRules[4] \"unused\": listening; used by orders (disable)",
            ]
        );
    }

    /// Every kind of custom rule problem, each named by its place, all reported together.
    #[test]
    fn custom_rule_problems() {
        let text = r#"{
          "customRules": [
            { "name": "netcat listener", "type": "processes",
              "script": "proc.name in (\"nc\", \"ncat\", \"netcat\") and proc.cmdline contains" },
            { "name": "netcat listener", "type": "processes", "script": "proc.uid = 0" },
            { "name": "", "type": "dns", "script": "dns.name = \"x\"" },
            { "name": "files", "type": "filesystem", "script": "file.path = \"/etc/shadow\"" },
            { "name": "bad type", "type": "kubernetes-audit", "script": "x" },
            { "name": "no script", "type": "processes" },
            { "name": "wrong field", "type": "dns", "script": "dns.name = \"a\" and\n net.outgoing_port = 22" },
            { "name": "extra", "type": "dns", "script": "dns.name = \"a\"", "owner": "me" }
          ],
          "rules": [
            { "name": "r", "customRules": [
                { "name": "nope", "effect": "alert" },
                { "name": "netcat listener", "effect": "deny" },
                { "name": "ok", "effect": "alert" },
                { "name": "ok", "effect": "block" }
            ] }
          ]
        }"#;
        let text = text.replace(
            r#"{ "name": "extra""#,
            r#"{ "name": "ok", "type": "dns", "script": "dns.name = \"b\"" },
            { "name": "extra""#,
        );
        assert_eq!(
            errors(&text),
            [
                "customRules[0] \"netcat listener\": script:1:64: expected a value after \"contains\", found the end of the script",
                "customRules[1] \"netcat listener\": name: duplicate of customRules[0]",
                "customRules[2] \"\": name: must not be empty",
                "customRules[3] \"files\": type: filesystem custom rules are not supported yet: the defender has no file system sensor",
                "customRules[4] \"bad type\": type: unknown variant `kubernetes-audit`, expected one of `processes`, `network-outgoing`, `dns`, `listening`, `filesystem`",
                "customRules[5] \"no script\": missing field `script`",
                "customRules[6] \"wrong field\": script:2:2: net.outgoing_port is a field of network-outgoing events, not of dns events",
                "customRules[8] \"extra\": owner: unknown field `owner`, expected one of `name`, `type`, `script`, `message`",
                // A rule that is not of the right shape is not checked further.
                "rules[0] \"r\": customRules[1].effect: unknown variant `deny`, expected one of `allow`, `alert`, `prevent`, `block`, `disable`",
            ]
        );
        // A reference to a custom rule that has a problem of its own is not reported again.
        let refs_broken = text.replace(
            r#"{ "name": "nope", "effect": "alert" }"#,
            r#"{ "name": "files", "effect": "alert" }, { "name": "no script", "effect": "alert" }"#,
        ).replace(r#""effect": "deny""#, r#""effect": "alert""#);
        assert_eq!(
            errors(&refs_broken)[8..],
            ["rules[0] \"r\": customRules[4].name: duplicate of customRules[3]"]
        );
        // With the bad effect fixed, the duplicate reference shows.
        let fixed = text.replace(r#""effect": "deny""#, r#""effect": "alert""#);
        assert_eq!(
            errors(&fixed)[8..],
            [
                "rules[0] \"r\": customRules[0].name: no custom rule named \"nope\" in the library (the document's customRules)",
                "rules[0] \"r\": customRules[3].name: duplicate of customRules[2]",
            ]
        );
    }

    #[test]
    fn malformed_json_gives_line_and_column() {
        let cases = [
            (
                "{\n  \"rules\": [],\n}",
                "malformed JSON at line 3 column 1: trailing comma",
            ),
            (
                "",
                "malformed JSON at line 1 column 0: EOF while parsing a value",
            ),
            (
                "{\"rules\": [} ",
                "malformed JSON at line 1 column 12: expected value",
            ),
        ];
        for (text, want) in cases {
            let error = compile(text).unwrap_err();
            assert!(matches!(error, PolicyError::Syntax { .. }), "{text:?}");
            assert_eq!(error.to_string(), want, "{text:?}");
        }
    }

    #[test]
    fn each_invalid_case_names_rule_and_field() {
        let cases = [
            (
                r#"{"rules": [], "rule": []}"#.to_owned(),
                "rule: unknown field `rule`, expected `customRules` or `rules`",
            ),
            (r#"{}"#.to_owned(), "document: missing field `rules`"),
            (
                r#""x""#.to_owned(),
                "document: invalid type: string \"x\", expected an object with a `rules` list (and a `customRules` library)",
            ),
            (
                r#"{"rules": [7]}"#.to_owned(),
                "rules[0]: invalid type: integer `7`, expected a rule object",
            ),
            (
                r#"{"rules": {}}"#.to_owned(),
                "rules: invalid type: map, expected a sequence",
            ),
            (
                web(r#""procesess": {}"#),
                "rules[0] \"web\": procesess: unknown field `procesess`, expected one of `name`, `disabled`, `collections`, `customRules`, `processes`, `network`, `dns`",
            ),
            (
                web(r#""network": {"effect": "alert", "outbound": {"alow": []}}"#),
                "rules[0] \"web\": network.outbound.alow: unknown field `alow`, expected `allow` or `deny`",
            ),
            (
                web(r#""processes": {"effect": "warn"}"#),
                "rules[0] \"web\": processes.effect: unknown variant `warn`, expected one of `disable`, `alert`, `prevent`, `block`",
            ),
            (
                web(r#""processes": {"effect": "Alert"}"#),
                "rules[0] \"web\": processes.effect: unknown variant `Alert`, expected one of `disable`, `alert`, `prevent`, `block`",
            ),
            (
                web(r#""dns": {"deny": ["x.org"]}"#),
                "rules[0] \"web\": dns: missing field `effect`",
            ),
            (
                web(r#""network": {"effect": "alert", "outboundPorts": {"allow": [443]}}"#),
                "rules[0] \"web\": network.outboundPorts.allow[0]: invalid type: integer `443`, expected a string",
            ),
            (
                r#"{"rules": [{"disabled": true}]}"#.to_owned(),
                "rules[0]: missing field `name`",
            ),
            (
                web(r#""disabled": false"#).replace("\"web\"", "\"\""),
                "rules[0] \"\": name: must not be empty",
            ),
            (
                web(r#""processes": {"effect": "alert", "deny": ["[a-"]}"#),
                "rules[0] \"web\": processes.deny[0]: \"[a-\" is not a valid glob: unclosed character class; missing ']'",
            ),
            (
                web(r#""processes": {"effect": "alert", "allow": ["ok", "bin/nc"]}"#),
                "rules[0] \"web\": processes.allow[1]: \"bin/nc\" is not an absolute path glob (an entry with \"/\" matches the absolute path)",
            ),
            (
                web(r#""processes": {"effect": "alert", "deny": [""]}"#),
                "rules[0] \"web\": processes.deny[0]: \"\" is an empty pattern",
            ),
            (
                web(r#""collections": {"containers": ["-"]}"#),
                "rules[0] \"web\": collections.containers[0]: \"-\" is an empty pattern",
            ),
            (
                web(r#""collections": {"images": ["{a,b"]}"#),
                "rules[0] \"web\": collections.images[0]: \"{a,b\" is not a valid glob: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
            ),
            (
                web(r#""collections": {"clusters": ["prod", "-"]}"#),
                "rules[0] \"web\": collections.clusters[1]: \"-\" is an empty pattern",
            ),
            (
                web(r#""collections": {"families": ["[a-"]}"#),
                "rules[0] \"web\": collections.families[0]: \"[a-\" is not a valid glob: unclosed character class; missing ']'",
            ),
            (
                web(r#""collections": {"services": [""]}"#),
                "rules[0] \"web\": collections.services[0]: \"\" is an empty pattern",
            ),
            (
                web(r#""collections": {"service": ["orders"]}"#),
                "rules[0] \"web\": collections.service: unknown field `service`, expected one of `images`, `containers`, `clusters`, `families`, `services`",
            ),
            (
                web(r#""network": {"effect": "alert", "outbound": {"deny": ["10.0.0.0/33"]}}"#),
                "rules[0] \"web\": network.outbound.deny[0]: \"10.0.0.0/33\" is not an IP address or CIDR",
            ),
            (
                web(r#""network": {"effect": "alert", "outbound": {"allow": ["example.org"]}}"#),
                "rules[0] \"web\": network.outbound.allow[0]: \"example.org\" is not an IP address or CIDR",
            ),
            (
                web(r#""network": {"effect": "alert", "outboundPorts": {"allow": ["70000"]}}"#),
                "rules[0] \"web\": network.outboundPorts.allow[0]: \"70000\" is not a port",
            ),
            (
                web(r#""network": {"effect": "alert", "listeningPorts": {"deny": ["0"]}}"#),
                "rules[0] \"web\": network.listeningPorts.deny[0]: \"0\" is not a port",
            ),
            (
                web(r#""network": {"effect": "alert", "outboundPorts": {"deny": ["9-3"]}}"#),
                "rules[0] \"web\": network.outboundPorts.deny[0]: \"9-3\" is not a port range: 9 > 3",
            ),
            (
                web(r#""network": {"effect": "alert", "outboundPorts": {"deny": ["1-70000"]}}"#),
                "rules[0] \"web\": network.outboundPorts.deny[0]: \"1-70000\" is not a port range",
            ),
            (
                web(r#""network": {"effect": "alert", "outboundPorts": {"deny": ["+443"]}}"#),
                "rules[0] \"web\": network.outboundPorts.deny[0]: \"+443\" is not a port",
            ),
            (
                web(r#""network": {"effect": "alert", "outboundPorts": {"deny": ["http"]}}"#),
                "rules[0] \"web\": network.outboundPorts.deny[0]: \"http\" is not a port",
            ),
            (
                web(r#""dns": {"effect": "alert", "allow": ["foo*.com"]}"#),
                "rules[0] \"web\": dns.allow[0]: \"foo*.com\" is not a domain pattern (\"*\", \"*.name\" or \"name\")",
            ),
            (
                web(r#""dns": {"effect": "alert", "deny": ["a..b"]}"#),
                "rules[0] \"web\": dns.deny[0]: \"a..b\" is not a domain pattern (\"*\", \"*.name\" or \"name\")",
            ),
            (
                web(r#""dns": {"effect": "alert", "deny": ["*."]}"#),
                "rules[0] \"web\": dns.deny[0]: \"*.\" is not a domain pattern (\"*\", \"*.name\" or \"name\")",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(errors(&text), [want], "{text}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let text = r#"{"rules": [
            {"name": "web", "network": {"effect": "prevent",
                "outbound": {"deny": ["10.0.0.0/8", "10.0.0.300"]},
                "outboundPorts": {"allow": ["70000", "443", "9-3"]}}},
            {"name": "db", "dns": {"effect": "alert", "alow": []}},
            {"name": "web", "processes": {"effect": "never"}},
            {"name": "ok"},
            {"name": "web", "dns": {"effect": "alert", "deny": ["foo*.com"]}}
        ]}"#;
        let want = [
            r#"rules[0] "web": network.outbound.deny[1]: "10.0.0.300" is not an IP address or CIDR"#,
            r#"rules[0] "web": network.outboundPorts.allow[0]: "70000" is not a port"#,
            r#"rules[0] "web": network.outboundPorts.allow[2]: "9-3" is not a port range: 9 > 3"#,
            "rules[1] \"db\": dns.alow: unknown field `alow`, expected one of `effect`, `allow`, `deny`",
            r#"rules[2] "web": name: duplicate of rules[0]"#,
            "rules[2] \"web\": processes.effect: unknown variant `never`, expected one of `disable`, `alert`, `prevent`, `block`",
            r#"rules[4] "web": name: duplicate of rules[0]"#,
            r#"rules[4] "web": dns.deny[0]: "foo*.com" is not a domain pattern ("*", "*.name" or "name")"#,
        ];
        assert_eq!(errors(text), want);
        // Display gives the same, one per line.
        assert_eq!(compile(text).unwrap_err().to_string(), want.join("\n"));
    }

    #[test]
    fn ports() {
        let cases = [
            ("1", Some((1, 1))),
            ("65535", Some((65535, 65535))),
            ("0443", Some((443, 443))),
            ("8000-8100", Some((8000, 8100))),
            ("22-22", Some((22, 22))),
            ("0", None),
            ("65536", None),
            ("", None),
            ("-", None),
            ("1-", None),
            ("-1", None),
            ("0-10", None),
            ("1-2-3", None),
            (" 80", None),
        ];
        for (entry, want) in cases {
            let got = port_range(entry).ok().map(|range| (range.lo, range.hi));
            assert_eq!(got, want, "{entry:?}");
        }
    }

    #[test]
    fn networks() {
        let cases = [
            ("192.0.2.1", Some("192.0.2.1/32")),
            ("2001:db8::1", Some("2001:db8::1/128")),
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            ("10.0.0.1/8", Some("10.0.0.0/8")), // host bits dropped
            ("::ffff:192.0.2.1", Some("192.0.2.1/32")),
            ("::ffff:192.0.2.0/120", Some("192.0.2.0/24")),
            ("::/0", Some("::/0")),
            ("10.0.0.0/33", None),
            ("10.0.0", None),
            ("", None),
        ];
        for (entry, want) in cases {
            let got = ip_net(entry).ok().map(|net| net.to_string());
            assert_eq!(got.as_deref(), want, "{entry:?}");
        }
    }

    #[test]
    fn domains() {
        use DomainPattern::*;
        let cases = [
            ("*", Some(Any)),
            ("Example.ORG", Some(Exact("example.org".to_owned()))),
            ("example.org.", Some(Exact("example.org".to_owned()))),
            ("*.AmazonAWS.com", Some(Below("amazonaws.com".to_owned()))),
            (
                "_sip._tcp.example.org",
                Some(Exact("_sip._tcp.example.org".to_owned())),
            ),
            ("localhost", Some(Exact("localhost".to_owned()))),
            ("", None),
            (".", None),
            ("*.", None),
            ("**.example.org", None),
            ("*example.org", None),
            ("a.*.org", None),
            ("a..b", None),
            (".example.org", None),
            ("exa mple.org", None),
            (&"a".repeat(64), None),
        ];
        for (entry, want) in cases {
            assert_eq!(domain_pattern(entry).ok(), want, "{entry:?}");
        }
    }
}
