//! `defender policy import-prisma` (docs/migration.md): converts a Prisma Cloud Compute App-Embedded
//! runtime policy, as `GET /api/v1/policies/runtime/app-embedded` returns it, and optionally the
//! custom rules export (`GET /api/v1/custom-rules`), into this project's policy document.
//!
//! Pure: text in; the document and one report line per setting not carried over out. Reading files
//! and printing are `main`'s. The document is always one [`super::parse`] accepts: it is built,
//! checked, and whatever the validator refuses is left out (and reported) until it passes.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;

use serde_json::{Map, Value, json};

use super::schema::Effect;
use super::{List, PolicyError, Problem};

/// The converted policy: the document (pretty JSON, valid) and what could not be carried over.
#[derive(Debug)]
pub struct Imported {
    pub document: String,
    /// One line each, naming where the setting was in the input: `rules[0] "web":
    /// processes.checkCryptoMiners: not carried over (no equivalent): ...`.
    pub reports: Vec<String>,
}

/// Which input an [`ImportError`] is about, so that the caller can name the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The App-Embedded runtime policy.
    Policy,
    /// The custom rules export (`--custom-rules`).
    CustomRules,
}

/// Why an input is not something to convert. Settings that merely have no equivalent are not
/// errors: they are reported in [`Imported::reports`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("malformed JSON at line {line} column {column}: {message}")]
    Syntax {
        input: Input,
        line: usize,
        column: usize,
        message: String,
    },
    /// JSON, but not of the vendor's shape: `path` is the JSON path of the value at fault
    /// (`rules[0].processes.blacklist[2]`, `document` for the whole input).
    #[error("{path}: {message}")]
    Shape {
        input: Input,
        path: String,
        message: String,
    },
    /// A rule references a custom rule the export does not have: the export is not the one that
    /// goes with this policy, and converting anyway would silently drop the reference.
    #[error(
        "{path}: custom rule {id} is not in the custom rules export: export the custom rules of the \
         same console (GET /api/v1/custom-rules)"
    )]
    UnknownCustomRule { path: String, id: i64 },
    /// The built document failed validation in a way that leaving entries out cannot fix: a bug
    /// of this importer. Nothing is written rather than an invalid document.
    #[error(
        "the converted document does not validate (a bug of the importer, please report it):\n{0}"
    )]
    Internal(String),
}

impl ImportError {
    /// The input the error is about.
    pub fn input(&self) -> Input {
        match self {
            ImportError::Syntax { input, .. } | ImportError::Shape { input, .. } => *input,
            ImportError::UnknownCustomRule { .. } | ImportError::Internal(_) => Input::Policy,
        }
    }
}

/// Converts a policy (and the custom rules export, if given).
pub fn import(policy: &str, custom_rules: Option<&str>) -> Result<Imported, ImportError> {
    let policy_value = parse_json(policy, Input::Policy)?;
    let export = custom_rules
        .map(|text| read_export(&parse_json(text, Input::CustomRules)?))
        .transpose()?;
    let mut reports = Reports::default();
    let mut out = convert_policy(&policy_value, &mut reports)?;
    let mut library = match &export {
        Some(export) => resolve_custom_rules(&mut out, export, &mut reports)?,
        None => {
            for rule in &mut out {
                for reference in rule.refs.drain(..) {
                    reports.push(format!(
                        "{}: {}: custom rule {}: not carried over (no custom rules export): give \
                         the export of GET /api/v1/custom-rules with --custom-rules",
                        rule.location, reference.origin, reference.id
                    ));
                }
            }
            Vec::new()
        }
    };
    let document = validated(&mut out, &mut library, &mut reports)?;
    report_emptied_allow_lists(&out, &mut reports);
    Ok(Imported {
        document,
        reports: reports.lines,
    })
}

fn parse_json(text: &str, input: Input) -> Result<Value, ImportError> {
    serde_json::from_str(text).map_err(|error| {
        let (line, column, message) = super::validate::json_error(&error);
        ImportError::Syntax {
            input,
            line,
            column,
            message,
        }
    })
}

/// Report lines, each kept once: a rule split in several (one per collection) would otherwise
/// report the same input setting once per piece.
#[derive(Default)]
struct Reports {
    lines: Vec<String>,
    seen: HashSet<String>,
}

impl Reports {
    fn push(&mut self, line: String) {
        if self.seen.insert(line.clone()) {
            self.lines.push(line);
        }
    }
}

// ---- Reading JSON with paths ----

/// A value of an input and where it is: `path` from the input's root (for errors), `rel` from the
/// rule or custom rule being read (for reports, which name the rule first).
#[derive(Clone)]
struct Node<'a> {
    value: &'a Value,
    input: Input,
    path: String,
    rel: String,
}

impl<'a> Node<'a> {
    fn root(value: &'a Value, input: Input) -> Node<'a> {
        Node {
            value,
            input,
            path: String::new(),
            rel: String::new(),
        }
    }

    /// The member `key` of an object; `None` when absent or `null` (the vendor's Go encoder writes
    /// `null` for an empty list).
    fn get(&self, key: &str) -> Option<Node<'a>> {
        let value = self.value.get(key).filter(|v| !v.is_null())?;
        Some(Node {
            value,
            input: self.input,
            path: join(&self.path, key),
            rel: join(&self.rel, key),
        })
    }

    /// The same value, as the root of reports (`rel` empty): a rule, a custom rule.
    fn as_origin(&self) -> Node<'a> {
        Node {
            rel: String::new(),
            ..self.clone()
        }
    }

    fn error(&self, message: impl Into<String>) -> ImportError {
        ImportError::Shape {
            input: self.input,
            path: if self.path.is_empty() {
                "document".to_owned()
            } else {
                self.path.clone()
            },
            message: message.into(),
        }
    }

    fn expected(&self, what: &str) -> ImportError {
        self.error(format!("expected {what}, found {}", describe(self.value)))
    }

    fn object(&self) -> Result<&'a Map<String, Value>, ImportError> {
        self.value
            .as_object()
            .ok_or_else(|| self.expected("an object"))
    }

    fn list(&self) -> Result<Vec<Node<'a>>, ImportError> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| self.expected("a list"))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(index, value)| Node {
                value,
                input: self.input,
                path: format!("{}[{index}]", self.path),
                rel: format!("{}[{index}]", self.rel),
            })
            .collect())
    }

    fn string(&self) -> Result<&'a str, ImportError> {
        self.value.as_str().ok_or_else(|| self.expected("a string"))
    }

    fn bool(&self) -> Result<bool, ImportError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.expected("true or false"))
    }

    fn integer(&self) -> Result<i64, ImportError> {
        self.value
            .as_i64()
            .ok_or_else(|| self.expected("an integer"))
    }

    /// A list of strings, each with where it was.
    fn strings(&self) -> Result<Vec<Entry>, ImportError> {
        self.list()?
            .into_iter()
            .map(|item| {
                Ok(Entry {
                    value: item.string()?.to_owned(),
                    origin: item.rel,
                })
            })
            .collect()
    }

    fn get_bool(&self, key: &str) -> Result<bool, ImportError> {
        self.get(key).map_or(Ok(false), |n| n.bool())
    }

    fn get_strings(&self, key: &str) -> Result<Vec<Entry>, ImportError> {
        self.get(key).map_or(Ok(Vec::new()), |n| n.strings())
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A value as an error names it: `the number 7`, `a list`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// A value as a report shows it: compact JSON, cut after 100 characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

// ---- The converted document, before validation ----

/// One entry of a list, with where it was in the input rule (`processes.blacklist[2]`).
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    value: String,
    origin: String,
}

/// Every list of a rule of ours, as the validator names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    ProcessesAllow,
    ProcessesDeny,
    OutboundAllow,
    OutboundDeny,
    OutboundPortsAllow,
    OutboundPortsDeny,
    ListeningPortsAllow,
    ListeningPortsDeny,
    DnsAllow,
    DnsDeny,
}

impl Slot {
    const ALL: [Slot; 10] = [
        Slot::ProcessesAllow,
        Slot::ProcessesDeny,
        Slot::OutboundAllow,
        Slot::OutboundDeny,
        Slot::OutboundPortsAllow,
        Slot::OutboundPortsDeny,
        Slot::ListeningPortsAllow,
        Slot::ListeningPortsDeny,
        Slot::DnsAllow,
        Slot::DnsDeny,
    ];

    /// The field as the validator names it.
    fn field(self) -> &'static str {
        match self {
            Slot::ProcessesAllow => "processes.allow",
            Slot::ProcessesDeny => "processes.deny",
            Slot::OutboundAllow => "network.outbound.allow",
            Slot::OutboundDeny => "network.outbound.deny",
            Slot::OutboundPortsAllow => "network.outboundPorts.allow",
            Slot::OutboundPortsDeny => "network.outboundPorts.deny",
            Slot::ListeningPortsAllow => "network.listeningPorts.allow",
            Slot::ListeningPortsDeny => "network.listeningPorts.deny",
            Slot::DnsAllow => "dns.allow",
            Slot::DnsDeny => "dns.deny",
        }
    }

    fn is_allow(self) -> bool {
        matches!(
            self,
            Slot::ProcessesAllow
                | Slot::OutboundAllow
                | Slot::OutboundPortsAllow
                | Slot::ListeningPortsAllow
                | Slot::DnsAllow
        )
    }
}

/// A rule of ours being built from one rule of the input (a rule with several collections gives
/// several).
#[derive(Debug, Clone)]
struct OutRule {
    name: String,
    /// The input rule: its index, and how reports name it (`rules[0] "web"`).
    index: usize,
    location: String,
    disabled: bool,
    /// `None`: every container.
    scope: Option<Scope>,
    /// The effect of each section the input had (a missing section stays missing: `disable`).
    processes: Option<Effect>,
    network: Option<Effect>,
    dns: Option<Effect>,
    lists: HashMap<Slot, Vec<Entry>>,
    /// How many entries each allow list had before any was left out.
    allow_given: HashMap<Slot, usize>,
    refs: Vec<Ref>,
}

/// The `images` and `containers` of a rule.
type Scope = (Vec<Entry>, Vec<Entry>);

/// A rule's use of a custom rule.
#[derive(Debug, Clone)]
struct Ref {
    /// The vendor's `_id`.
    id: i64,
    /// Its name in our library, once resolved.
    name: String,
    effect: &'static str,
    /// `customRules[0]`.
    origin: String,
}

/// A custom rule of our library.
#[derive(Debug, Clone)]
struct LibraryRule {
    name: String,
    kind: &'static str,
    script: String,
    message: Option<String>,
    /// `custom rule 12 "netcat listener"`.
    location: String,
}

// ---- The policy ----

/// Rule-level settings that are read by the mapping, and metadata that is no setting.
const RULE_KEYS: &[&str] = &[
    "name",
    "disabled",
    "collections",
    "processes",
    "network",
    "dns",
    "customRules",
];
const RULE_METADATA: &[&str] = &["modified", "owner", "notes", "previousName", "_id"];

fn convert_policy(root: &Value, reports: &mut Reports) -> Result<Vec<OutRule>, ImportError> {
    let root = Node::root(root, Input::Policy);
    if root.value.is_array() {
        return Err(root.error(
            "expected the App-Embedded runtime policy (an object with `rules`, as GET \
             /api/v1/policies/runtime/app-embedded returns it), found a list; the custom rules \
             export goes to --custom-rules",
        ));
    }
    let object = root.object()?;
    if !object.contains_key("rules") {
        return Err(root.error(
            "missing `rules`: expected the App-Embedded runtime policy, as GET \
             /api/v1/policies/runtime/app-embedded returns it",
        ));
    }
    for key in object.keys() {
        if matches!(key.as_str(), "rules" | "_id" | "owner" | "modified") {
            continue;
        }
        if let Some(node) = root.get(key) {
            unsupported("policy", &node, Why::of(key), reports);
        }
    }
    let rules = match root.get("rules") {
        Some(rules) => rules.list()?,
        None => Vec::new(), // `"rules": null`: the vendor's encoding of no rules
    };

    // Names: every input rule keeps its own (unique there); pieces and duplicates get `NAME (2)`,
    // never one that another input rule has.
    let mut names = Names::default();
    let mut given = Vec::with_capacity(rules.len());
    for rule in &rules {
        rule.object()?;
        let name = rule
            .get("name")
            .ok_or_else(|| rule.error("missing `name`"))?;
        let text = name.string()?;
        if text.is_empty() {
            return Err(name.error("must not be empty"));
        }
        names.reserve(text);
        given.push(text);
    }
    let mut out = Vec::new();
    for (index, (rule, name)) in rules.iter().zip(given).enumerate() {
        let location = format!("rules[{index}] {name:?}");
        out.extend(convert_rule(
            &rule.as_origin(),
            (index, name),
            &location,
            &mut names,
            reports,
        )?);
    }
    Ok(out)
}

/// Rule names in use, to make new ones unique.
#[derive(Default)]
struct Names {
    reserved: HashSet<String>,
    used: HashSet<String>,
}

impl Names {
    fn reserve(&mut self, name: &str) {
        self.reserved.insert(name.to_owned());
    }

    /// `name` itself if it is still free for this use, else the first free `name (N)`.
    fn claim(&mut self, name: &str, own: bool) -> String {
        if own && self.used.insert(name.to_owned()) {
            return name.to_owned();
        }
        let fresh = (2..)
            .map(|n| format!("{name} ({n})"))
            .find(|c| !self.reserved.contains(c) && !self.used.contains(c))
            .expect("some suffix is free");
        self.used.insert(fresh.clone());
        fresh
    }
}

fn convert_rule(
    rule: &Node,
    (index, name): (usize, &str),
    location: &str,
    names: &mut Names,
    reports: &mut Reports,
) -> Result<Vec<OutRule>, ImportError> {
    let object = rule.object()?;
    let mut ctx = Ctx { location, reports };
    let mut base = OutRule {
        name: String::new(),
        index,
        location: location.to_owned(),
        disabled: rule.get_bool("disabled")?,
        scope: None,
        processes: None,
        network: None,
        dns: None,
        lists: HashMap::new(),
        allow_given: HashMap::new(),
        refs: Vec::new(),
    };
    if let Some(node) = rule.get("processes") {
        base.processes = Some(processes(&node, &mut base.lists, &mut ctx)?);
    }
    if let Some(node) = rule.get("network") {
        base.network = Some(network(&node, &mut base.lists, &mut ctx)?);
    }
    if let Some(node) = rule.get("dns") {
        base.dns = Some(dns(&node, &mut base.lists, &mut ctx)?);
    }
    for slot in Slot::ALL.into_iter().filter(|s| s.is_allow()) {
        let given = base.lists.get(&slot).map_or(0, Vec::len);
        base.allow_given.insert(slot, given);
    }
    if let Some(node) = rule.get("customRules") {
        for item in node.list()? {
            base.refs.push(custom_ref(&item, &mut ctx)?);
        }
    }
    for key in object.keys() {
        if !RULE_KEYS.contains(&key.as_str())
            && !RULE_METADATA.contains(&key.as_str())
            && let Some(node) = rule.get(key)
        {
            unsupported(location, &node, Why::of(key), ctx.reports);
        }
    }

    let scopes = match rule.get("collections") {
        Some(node) => collections(&node, &mut ctx)?,
        None => Vec::new(),
    };
    let own = names.claim(name, true);
    if own != name {
        ctx.report(
            "name",
            format!("another rule has this name: carried as {own:?}"),
        );
    }
    if scopes.len() <= 1 {
        return Ok(vec![OutRule {
            name: own,
            scope: scopes.into_iter().next(),
            ..base
        }]);
    }
    let mut pieces = vec![own];
    pieces.extend((1..scopes.len()).map(|_| names.claim(name, false)));
    ctx.report(
        "collections",
        format!(
            "{} collections of different scopes: carried as one rule each ({}), since one rule \
             with their lists joined would apply to more containers",
            scopes.len(),
            pieces
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok(scopes
        .into_iter()
        .zip(pieces)
        .map(|(scope, piece)| OutRule {
            name: piece,
            scope: Some(scope),
            ..base.clone()
        })
        .collect())
}

/// Where reports of one rule go.
struct Ctx<'r> {
    location: &'r str,
    reports: &'r mut Reports,
}

impl Ctx<'_> {
    fn report(&mut self, rel: &str, message: impl Display) {
        self.reports
            .push(format!("{}: {rel}: {message}", self.location));
    }
}

// ---- Collections ----

/// Collection keys that scope by something other than image and container name.
const OTHER_SCOPES: &[&str] = &[
    "hosts",
    "labels",
    "appIDs",
    "clusters",
    "namespaces",
    "accountIDs",
    "functions",
    "codeRepos",
];
/// Collection keys that are no scope.
const COLLECTION_METADATA: &[&str] = &[
    "name",
    "color",
    "description",
    "modified",
    "owner",
    "prisma",
    "system",
];

/// The distinct scopes of a rule's collections, in order; a scope is (images, containers), a
/// missing or empty list being `*` (as for the vendor).
fn collections(node: &Node, ctx: &mut Ctx) -> Result<Vec<Scope>, ImportError> {
    let mut scopes: Vec<Scope> = Vec::new();
    for item in node.list()? {
        let object = item.object()?;
        let name = item
            .get("name")
            .map(|n| n.string().map(str::to_owned))
            .transpose()?;
        let at = match &name {
            Some(name) => format!("{} {name:?}", item.rel),
            None => item.rel.clone(),
        };
        let list = |key: &str| -> Result<Vec<Entry>, ImportError> {
            let entries = item.get_strings(key)?;
            Ok(if entries.is_empty() {
                vec![Entry {
                    value: "*".to_owned(),
                    origin: join(&item.rel, key),
                }]
            } else {
                entries
            })
        };
        let scope = (list("images")?, list("containers")?);
        for key in object.keys() {
            let Some(value) = item.get(key) else { continue };
            if OTHER_SCOPES.contains(&key.as_str()) {
                let values = value.strings()?;
                if values.iter().any(|e| e.value != "*") {
                    ctx.report(
                        &format!("{at}: {key}"),
                        format!(
                            "not carried over (the import scopes rules by image and container \
                             only; ECS clusters, families and services can be added by hand): \
                             {}; the rule now applies whatever the {key}",
                            shown(value.value)
                        ),
                    );
                }
            } else if !matches!(key.as_str(), "images" | "containers")
                && !COLLECTION_METADATA.contains(&key.as_str())
            {
                let mut node = value.clone();
                node.rel = format!("{at}: {key}");
                unsupported(ctx.location, &node, Why::Unknown, ctx.reports);
            }
        }
        let same = |a: &[Entry], b: &[Entry]| {
            let set = |l: &[Entry]| l.iter().map(|e| e.value.clone()).collect::<HashSet<_>>();
            set(a) == set(b)
        };
        if !scopes
            .iter()
            .any(|(i, c)| same(i, &scope.0) && same(c, &scope.1))
        {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

// ---- Sections ----

/// An effect as the input gives it.
#[derive(Debug, Clone, PartialEq)]
enum Given {
    /// Missing or `""`.
    Unset,
    Known(Effect),
    /// Not one of ours (`ignore`): carried as `alert`, reported.
    Other(String),
}

fn given_effect(node: Option<Node>) -> Result<(Given, String), ImportError> {
    let Some(node) = node else {
        return Ok((Given::Unset, String::new()));
    };
    let given = match node.string()? {
        "" => Given::Unset,
        "disable" => Given::Known(Effect::Disable),
        "alert" => Given::Known(Effect::Alert),
        "prevent" => Given::Known(Effect::Prevent),
        "block" => Given::Known(Effect::Block),
        other => Given::Other(other.to_owned()),
    };
    Ok((given, node.rel))
}

fn rank(effect: Effect) -> u8 {
    match effect {
        Effect::Disable => 0,
        Effect::Alert => 1,
        Effect::Prevent => 2,
        Effect::Block => 3,
    }
}

/// Some lists of a section and the effect the input gives them. The older shape has one effect
/// for all lists of a section; the newer one an effect per list (`deniedList.effect`,
/// `defaultEffect` for what the allow list does not name, ...).
struct Group {
    effect: Effect,
    /// Where the effect was (`processes.deniedList.effect`); empty when the section had none.
    effect_at: String,
    entries: Vec<(Slot, Entry)>,
}

impl Group {
    fn new(given: (Given, String), section: &Node, ctx: &mut Ctx) -> Group {
        let (given, at) = given;
        let effect = match given {
            Given::Known(effect) => effect,
            Given::Unset => Effect::Disable,
            Given::Other(other) => {
                ctx.report(
                    &at,
                    format!(
                        "{other:?} has no equivalent: carried as \"alert\" (it audits and never \
                         stops the workload)"
                    ),
                );
                Effect::Alert
            }
        };
        let effect_at = if at.is_empty() {
            section.rel.clone()
        } else {
            at
        };
        Group {
            effect,
            effect_at,
            entries: Vec::new(),
        }
    }

    fn add(&mut self, slot: Slot, entries: Vec<Entry>) {
        self.entries
            .extend(entries.into_iter().map(|entry| (slot, entry)));
    }
}

/// The one effect of a section made of these groups, their entries put in `lists`.
///
/// Groups with entries that agree: that effect. When they differ, a group switched off
/// (`disable`) is left out, since under one effect its entries would be switched on; the others
/// get the strongest of their effects. `disabled: true` (the newer shape's switch) is `disable`
/// with every list kept.
fn combine(
    section: &Node,
    groups: Vec<Group>,
    lists: &mut HashMap<Slot, Vec<Entry>>,
    ctx: &mut Ctx,
) -> Result<Effect, ImportError> {
    let switched_off = section.get_bool("disabled")?;
    let with_entries: Vec<&Group> = groups.iter().filter(|g| !g.entries.is_empty()).collect();
    let all_same = with_entries.windows(2).all(|w| w[0].effect == w[1].effect);
    let mut kept: Vec<&Group> = Vec::new();
    if switched_off || all_same {
        kept = with_entries.clone();
    } else {
        for group in &with_entries {
            if group.effect == Effect::Disable {
                let fields: Vec<&str> = group
                    .entries
                    .iter()
                    .map(|(_, e)| e.origin.as_str())
                    .collect();
                ctx.report(
                    &group.effect_at,
                    format!(
                        "\"disable\": its {} entries are not carried over ({}), since a section \
                         here has one effect and the section's other lists are on",
                        fields.len(),
                        list_of(&fields)
                    ),
                );
            } else {
                kept.push(group);
            }
        }
    }
    let effect = if switched_off {
        Effect::Disable
    } else if kept.is_empty() {
        groups
            .iter()
            .map(|g| g.effect)
            .max_by_key(|e| rank(*e))
            .unwrap_or(Effect::Disable)
    } else {
        let strongest = kept
            .iter()
            .map(|g| g.effect)
            .max_by_key(|e| rank(*e))
            .unwrap_or(Effect::Disable);
        if kept.iter().any(|g| g.effect != strongest) {
            let each: Vec<String> = kept
                .iter()
                .map(|g| format!("{} {:?}", g.effect_at, g.effect.as_str()))
                .collect();
            ctx.report(
                &section.rel,
                format!(
                    "the lists have different effects ({}); a section here has one: carried as \
                     {:?}, the strongest",
                    each.join(", "),
                    strongest.as_str()
                ),
            );
        }
        strongest
    };
    for group in kept {
        for (slot, entry) in &group.entries {
            lists.entry(*slot).or_default().push(entry.clone());
        }
    }
    Ok(effect)
}

fn list_of(fields: &[&str]) -> String {
    match fields {
        [first, _, _, .., last] => format!("{first} … {last}"),
        few => few.join(", "),
    }
}

/// Reports the keys of a section that no group read.
fn rest(section: &Node, read: &[&str], ctx: &mut Ctx) -> Result<(), ImportError> {
    // Under `disabled: true` every setting is off: nothing is lost.
    if section.get_bool("disabled")? {
        return Ok(());
    }
    for key in section.object()?.keys() {
        if read.contains(&key.as_str()) {
            continue;
        }
        if let Some(node) = section.get(key) {
            unsupported(ctx.location, &node, Why::of(key), ctx.reports);
        }
    }
    Ok(())
}

fn processes(
    node: &Node,
    lists: &mut HashMap<Slot, Vec<Entry>>,
    ctx: &mut Ctx,
) -> Result<Effect, ImportError> {
    node.object()?;
    // The older shape: one effect, `whitelist` and `blacklist`.
    let mut old = Group::new(given_effect(node.get("effect"))?, node, ctx);
    old.add(Slot::ProcessesAllow, node.get_strings("whitelist")?);
    old.add(Slot::ProcessesDeny, node.get_strings("blacklist")?);
    // The newer shape: `deniedList` with its own effect, `allowedList` under `defaultEffect`.
    let denied = node.get("deniedList");
    let mut deny = Group::new(
        given_effect(denied.as_ref().and_then(|d| d.get("effect")))?,
        node,
        ctx,
    );
    if let Some(denied) = &denied {
        deny.add(Slot::ProcessesDeny, denied.get_strings("paths")?);
        rest(denied, &["effect", "paths"], ctx)?;
    }
    let mut allow = Group::new(given_effect(node.get("defaultEffect"))?, node, ctx);
    allow.add(Slot::ProcessesAllow, node.get_strings("allowedList")?);
    learned_only(node, &allow, ctx);
    rest(
        node,
        &[
            "effect",
            "whitelist",
            "blacklist",
            "deniedList",
            "allowedList",
            "defaultEffect",
            "disabled",
        ],
        ctx,
    )?;
    combine(node, vec![old, deny, allow], lists, ctx)
}

fn network(
    node: &Node,
    lists: &mut HashMap<Slot, Vec<Entry>>,
    ctx: &mut Ctx,
) -> Result<Effect, ImportError> {
    node.object()?;
    let mut old = Group::new(given_effect(node.get("effect"))?, node, ctx);
    old.add(Slot::OutboundAllow, node.get_strings("whitelistIPs")?);
    old.add(Slot::OutboundDeny, node.get_strings("blacklistIPs")?);
    for (key, slot) in [
        ("whitelistOutboundPorts", Slot::OutboundPortsAllow),
        ("blacklistOutboundPorts", Slot::OutboundPortsDeny),
        ("whitelistListeningPorts", Slot::ListeningPortsAllow),
        ("blacklistListeningPorts", Slot::ListeningPortsDeny),
    ] {
        old.add(slot, ports(node.get(key), slot, ctx)?);
    }
    // The newer shape.
    let mut denied_ips = Group::new(given_effect(node.get("deniedIPsEffect"))?, node, ctx);
    denied_ips.add(Slot::OutboundDeny, node.get_strings("deniedIPs")?);
    let mut allowed_ips = Group::new(given_effect(node.get("defaultEffect"))?, node, ctx);
    allowed_ips.add(Slot::OutboundAllow, node.get_strings("allowedIPs")?);
    learned_only(node, &allowed_ips, ctx);
    let mut groups = vec![old, denied_ips, allowed_ips];
    for (key, allow, deny) in [
        (
            "outboundPorts",
            Slot::OutboundPortsAllow,
            Slot::OutboundPortsDeny,
        ),
        (
            "listeningPorts",
            Slot::ListeningPortsAllow,
            Slot::ListeningPortsDeny,
        ),
    ] {
        if let Some(part) = node.get(key) {
            part.object()?;
            let mut group = Group::new(given_effect(part.get("effect"))?, &part, ctx);
            group.add(allow, ports(part.get("allowed"), allow, ctx)?);
            group.add(deny, ports(part.get("denied"), deny, ctx)?);
            rest(&part, &["effect", "allowed", "denied"], ctx)?;
            groups.push(group);
        }
    }
    rest(
        node,
        &[
            "effect",
            "whitelistIPs",
            "blacklistIPs",
            "whitelistOutboundPorts",
            "blacklistOutboundPorts",
            "whitelistListeningPorts",
            "blacklistListeningPorts",
            "deniedIPsEffect",
            "deniedIPs",
            "defaultEffect",
            "allowedIPs",
            "outboundPorts",
            "listeningPorts",
            "disabled",
        ],
        ctx,
    )?;
    combine(node, groups, lists, ctx)
}

/// `defaultEffect` judges what neither the learned model nor the allow list names; with no allow
/// list, only the model, which has no equivalent here.
fn learned_only(section: &Node, allow: &Group, ctx: &mut Ctx) {
    if allow.entries.is_empty()
        && section.value.get("disabled") != Some(&Value::Bool(true))
        && let Some(default) = section.get("defaultEffect")
    {
        unsupported(ctx.location, &default, Why::Learning, ctx.reports);
    }
}

/// Port ranges, `{start, end, deny}`, as `"443"` or `"8000-8100"`. The list decides whether a
/// range allows or denies; `deny: true` in an allow list is reported.
fn ports(node: Option<Node>, slot: Slot, ctx: &mut Ctx) -> Result<Vec<Entry>, ImportError> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for item in node.list()? {
        item.object()?;
        let start = item
            .get("start")
            .ok_or_else(|| item.error("missing `start`"))?
            .integer()?;
        let end = item.get("end").map(|n| n.integer()).transpose()?;
        if slot.is_allow() && item.get_bool("deny")? {
            ctx.report(
                &join(&item.rel, "deny"),
                "true in an allow list: carried as allowed (the list decides)",
            );
        }
        // The vendor writes a single port as start = end, or without `end` (0); port 0 is never
        // a destination nor checked on bind, so a range from 0 starts at 1 here.
        let end = end.filter(|&end| end != 0).unwrap_or(start);
        let start = if start == 0 && end > 0 { 1 } else { start };
        let value = if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        };
        entries.push(Entry {
            value,
            origin: item.rel.clone(),
        });
    }
    Ok(entries)
}

fn dns(
    node: &Node,
    lists: &mut HashMap<Slot, Vec<Entry>>,
    ctx: &mut Ctx,
) -> Result<Effect, ImportError> {
    node.object()?;
    let mut old = Group::new(given_effect(node.get("effect"))?, node, ctx);
    old.add(Slot::DnsAllow, node.get_strings("whitelist")?);
    old.add(Slot::DnsDeny, node.get_strings("blacklist")?);
    let mut groups = vec![old];
    // The newer shape: `domainList` with its own effect.
    if let Some(part) = node.get("domainList") {
        part.object()?;
        let mut group = Group::new(given_effect(part.get("effect"))?, &part, ctx);
        group.add(Slot::DnsAllow, part.get_strings("allowed")?);
        group.add(Slot::DnsDeny, part.get_strings("denied")?);
        rest(&part, &["effect", "allowed", "denied"], ctx)?;
        groups.push(group);
    }
    rest(
        node,
        &[
            "effect",
            "whitelist",
            "blacklist",
            "domainList",
            "defaultEffect",
            "disabled",
        ],
        ctx,
    )?;
    // `defaultEffect` judges what the model and the lists do not name: with no learning here,
    // nothing; it is read only to be reported when set.
    if !node.get_bool("disabled")?
        && let Some(default) = node.get("defaultEffect")
    {
        unsupported(ctx.location, &default, Why::Learning, ctx.reports);
    }
    combine(node, groups, lists, ctx)
}

// ---- Settings with no equivalent ----

/// Why a setting is not carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Filesystem,
    CryptoMiners,
    LateralMovement,
    NewBinaries,
    MainProcessOnly,
    Modified,
    ReverseShell,
    Suid,
    ParentChild,
    PortScan,
    RawSockets,
    Feeds,
    WildFire,
    Kubernetes,
    CloudMetadata,
    ExecSessions,
    Learning,
    /// A key the vendor's reference does not have.
    Unknown,
}

impl Why {
    fn of(key: &str) -> Why {
        match key {
            "filesystem" => Why::Filesystem,
            "checkCryptoMiners" | "cryptoMinersEffect" => Why::CryptoMiners,
            "checkLateralMovement" | "lateralMovementEffect" => Why::LateralMovement,
            "checkNewBinaries" | "modifiedProcessEffect" => Why::NewBinaries,
            "blockAllBinaries" => Why::MainProcessOnly,
            "skipModified" | "skipModifiedProc" | "modifiedProcEffect" => Why::Modified,
            "reverseShellEffect" => Why::ReverseShell,
            "suidBinariesEffect" => Why::Suid,
            "checkParentChild" => Why::ParentChild,
            "detectPortScan" | "portScanEffect" => Why::PortScan,
            "skipRawSockets" | "rawSocketsEffect" => Why::RawSockets,
            "advancedProtection" | "advancedProtectionEffect" => Why::Feeds,
            "wildFireAnalysis" => Why::WildFire,
            "kubernetesEnforcementEffect" => Why::Kubernetes,
            "cloudMetadataEnforcementEffect" => Why::CloudMetadata,
            "skipExecSessions" => Why::ExecSessions,
            "learningDisabled" => Why::Learning,
            _ => Why::Unknown,
        }
    }

    /// `(no equivalent)` or `(unknown setting)`, and what to do instead, if anything.
    fn explain(self) -> (&'static str, &'static str) {
        let hint = match self {
            Why::Filesystem => "the defender has no file system sensor",
            Why::CryptoMiners => {
                "no crypto-miner detection: deny the miners by name in processes, as `defender \
                 policy default` does"
            }
            Why::LateralMovement => "no lateral-movement detection",
            Why::NewBinaries => {
                "no check of binaries added to the image; an allow list lends nothing to programs \
                 created after the start (docs/policy.md)"
            }
            Why::MainProcessOnly => {
                "no \"main process only\" switch: list the programs the container runs in \
                 processes.allow"
            }
            Why::Modified => "no detection of modified processes",
            Why::ReverseShell => "no reverse-shell detection",
            Why::Suid => "no setuid-binary detection",
            Why::ParentChild => "no parent/child process check",
            Why::PortScan => "no port-scan detection",
            Why::RawSockets => "no raw-socket setting (docs/network.md says how they are judged)",
            Why::Feeds => "no threat-intelligence feeds",
            Why::WildFire => "no WildFire analysis",
            Why::Kubernetes => "no Kubernetes attack detection",
            Why::CloudMetadata => {
                "no cloud-metadata detection: deny 169.254.169.254 in network.outbound"
            }
            Why::ExecSessions => "exec sessions are judged like every other process here",
            Why::Learning => "no learned models here: only the lists judge",
            Why::Unknown => return ("unknown setting", ""),
        };
        ("no equivalent", hint)
    }
}

/// Reports every setting under `node` that is on: `true`, an effect other than `disable`, a
/// non-empty list. What is off or empty changes nothing, and is not reported.
fn unsupported(location: &str, node: &Node, why: Why, reports: &mut Reports) {
    let value = node.value;
    let on = match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty() && s != "disable",
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Array(items) => !items.is_empty(),
        Value::Object(object) => {
            // `disabled: true` (the newer shape's switch) turns everything under it off.
            if object.get("disabled") == Some(&Value::Bool(true)) {
                return;
            }
            for key in object.keys() {
                if let Some(child) = node.get(key) {
                    // A section without an equivalent keeps its reason; inside it, a key of
                    // its own (`checkCryptoMiners`) may have a better one.
                    let why = match Why::of(key) {
                        Why::Unknown => why,
                        own => own,
                    };
                    unsupported(location, &child, why, reports);
                }
            }
            return;
        }
        Value::Bool(true) => true,
    };
    if !on {
        return;
    }
    let (kind, hint) = why.explain();
    let mut line = format!(
        "{location}: {}: not carried over ({kind}): {}",
        node.rel,
        shown(value)
    );
    if !hint.is_empty() {
        line.push_str("; ");
        line.push_str(hint);
    }
    reports.push(line);
}

// ---- Custom rules ----

/// One custom rule of the vendor's export.
struct Exported {
    name: String,
    kind: String,
    script: String,
    message: Option<String>,
}

/// The export, by `_id`.
fn read_export(root: &Value) -> Result<HashMap<i64, Exported>, ImportError> {
    let root = Node::root(root, Input::CustomRules);
    if root.value.is_object() {
        return Err(root.error(
            "expected the custom rules export (a list, as GET /api/v1/custom-rules returns it), \
             found an object; the runtime policy is the FILE argument",
        ));
    }
    let mut export = HashMap::new();
    for item in root.list()? {
        item.object()?;
        let field = |key: &str| {
            item.get(key)
                .ok_or_else(|| item.error(format!("missing `{key}`")))
        };
        let id_node = field("_id")?;
        let id = id_node.integer()?;
        let exported = Exported {
            name: field("name")?.string()?.to_owned(),
            kind: field("type")?.string()?.to_owned(),
            script: item
                .get("script")
                .map(|n| n.string().map(str::to_owned))
                .transpose()?
                .unwrap_or_default(),
            message: item
                .get("message")
                .map(|n| n.string().map(str::to_owned))
                .transpose()?
                .filter(|m| !m.is_empty()),
        };
        if export.insert(id, exported).is_some() {
            return Err(id_node.error(format!("custom rule {id} is in the export twice")));
        }
    }
    Ok(export)
}

/// A rule's `customRules[i]`: `{_id, action, effect}`.
fn custom_ref(item: &Node, ctx: &mut Ctx) -> Result<Ref, ImportError> {
    let object = item.object()?;
    let id = item
        .get("_id")
        .ok_or_else(|| item.error("missing `_id`"))?
        .integer()?;
    let effect_node = item.get("effect");
    let given = effect_node.as_ref().map(|n| n.string()).transpose()?;
    let at = join(&item.rel, "effect");
    let effect = match given.unwrap_or("") {
        "allow" => "allow",
        "alert" => "alert",
        "prevent" => "prevent",
        "block" => "block",
        "disable" => "disable",
        "ban" => {
            ctx.report(
                &at,
                "\"ban\" has no equivalent: carried as \"block\" (the container is stopped; \
                 nothing keeps it from starting again)",
            );
            "block"
        }
        "" => {
            ctx.report(&at, "missing: carried as \"alert\"");
            "alert"
        }
        other => {
            ctx.report(
                &at,
                format!("{other:?} has no equivalent: carried as \"alert\""),
            );
            "alert"
        }
    };
    if let Some(action) = item.get("action") {
        let text = action.string()?;
        if !text.is_empty() && text != "audit" {
            ctx.report(
                &action.rel,
                format!(
                    "not carried over (no equivalent): {text:?}; the defender writes audits, \
                     not incidents"
                ),
            );
        }
    }
    for key in object.keys() {
        if !matches!(key.as_str(), "_id" | "effect" | "action")
            && let Some(node) = item.get(key)
        {
            unsupported(ctx.location, &node, Why::Unknown, ctx.reports);
        }
    }
    Ok(Ref {
        id,
        name: String::new(),
        effect,
        origin: item.rel.clone(),
    })
}

/// The custom rule types the defender has a sensor for, as the vendor names them, and ours.
fn our_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "processes" => Some("processes"),
        "network-outgoing" => Some("network-outgoing"),
        _ => None,
    }
}

/// Puts every referenced custom rule into the library (once, with a unique name) and names it
/// in the references; custom rules of a type without a sensor are left out with their references.
fn resolve_custom_rules(
    out: &mut [OutRule],
    export: &HashMap<i64, Exported>,
    reports: &mut Reports,
) -> Result<Vec<LibraryRule>, ImportError> {
    // Every reference must be in the export, checked before anything is carried.
    for rule in out.iter() {
        for reference in &rule.refs {
            if !export.contains_key(&reference.id) {
                return Err(ImportError::UnknownCustomRule {
                    path: format!("rules[{}].{}._id", rule.index, reference.origin),
                    id: reference.id,
                });
            }
        }
    }
    // Where each is referenced, in order of first use, for the reports.
    let mut order: Vec<i64> = Vec::new();
    let mut users: HashMap<i64, Vec<String>> = HashMap::new();
    for rule in out.iter() {
        for reference in &rule.refs {
            let list = users.entry(reference.id).or_default();
            if list.is_empty() {
                order.push(reference.id);
            }
            if !list.contains(&rule.location) {
                list.push(rule.location.clone());
            }
        }
    }
    let mut library = Vec::new();
    let mut names: HashMap<i64, String> = HashMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    for id in &order {
        let exported = &export[id];
        let location = format!("custom rule {id} {:?}", exported.name);
        let Some(kind) = our_kind(&exported.kind) else {
            let why = match exported.kind.as_str() {
                "filesystem" => "the defender has no file system sensor",
                "kubernetes-audit" => "the defender reads no Kubernetes audit",
                "waas-request" | "waas-response" => "the defender has no web application firewall",
                _ => "unknown type",
            };
            reports.push(format!(
                "{location}: type: not carried over ({why}): {:?}, nor its references in {}",
                exported.kind,
                users[id].join(", ")
            ));
            continue;
        };
        let mut name = if exported.name.is_empty() {
            format!("custom rule {id}")
        } else {
            exported.name.clone()
        };
        if taken.contains(&name) {
            let fresh = (2..)
                .map(|n| format!("{name} ({n})"))
                .find(|c| !taken.contains(c))
                .expect("some suffix is free");
            reports.push(format!(
                "{location}: name: another custom rule has it: carried as {fresh:?}"
            ));
            name = fresh;
        }
        taken.insert(name.clone());
        names.insert(*id, name.clone());
        library.push(LibraryRule {
            name,
            kind,
            script: exported.script.clone(),
            message: exported.message.clone(),
            location,
        });
    }
    for rule in out.iter_mut() {
        let mut seen: HashSet<i64> = HashSet::new();
        let location = rule.location.clone();
        rule.refs.retain_mut(|reference| {
            let Some(name) = names.get(&reference.id) else {
                return false;
            };
            if !seen.insert(reference.id) {
                // References are tried in order and the first decides: a second is never reached.
                reports.push(format!(
                    "{location}: {}: custom rule {} is referenced twice: only the first is \
                     carried over",
                    reference.origin, reference.id
                ));
                return false;
            }
            reference.name = name.clone();
            true
        });
    }
    let unreferenced = export.len() - order.len();
    if unreferenced > 0 {
        reports.push(format!(
            "custom rules export: {unreferenced} of its {} custom rules are referenced by no rule: \
             not carried over",
            export.len()
        ));
    }
    Ok(library)
}

// ---- Building and validating ----

fn entries_json(entries: &[Entry]) -> Value {
    Value::from(
        entries
            .iter()
            .map(|e| Value::from(e.value.clone()))
            .collect::<Vec<_>>(),
    )
}

fn build(out: &[OutRule], library: &[LibraryRule]) -> Value {
    let list = |rule: &OutRule, slot: Slot| entries_json(rule.lists.get(&slot).map_or(&[], |v| v));
    // A section that is off and lists nothing is what a missing one means: left out, for a
    // shorter document.
    let written = |effect: Option<Effect>, rule: &OutRule, slots: &[Slot]| {
        effect.filter(|&effect| {
            effect != Effect::Disable
                || slots
                    .iter()
                    .any(|s| rule.lists.get(s).is_some_and(|l| !l.is_empty()))
        })
    };
    let rules: Vec<Value> = out
        .iter()
        .map(|rule| {
            let mut object = Map::new();
            object.insert("name".into(), rule.name.clone().into());
            object.insert("disabled".into(), rule.disabled.into());
            if let Some((images, containers)) = &rule.scope {
                object.insert(
                    "collections".into(),
                    json!({"images": entries_json(images), "containers": entries_json(containers)}),
                );
            }
            if !rule.refs.is_empty() {
                let refs: Vec<Value> = rule
                    .refs
                    .iter()
                    .map(|r| json!({"name": r.name, "effect": r.effect}))
                    .collect();
                object.insert("customRules".into(), refs.into());
            }
            if let Some(effect) = written(
                rule.processes,
                rule,
                &[Slot::ProcessesAllow, Slot::ProcessesDeny],
            ) {
                object.insert(
                    "processes".into(),
                    json!({"effect": effect.as_str(),
                           "allow": list(rule, Slot::ProcessesAllow),
                           "deny": list(rule, Slot::ProcessesDeny)}),
                );
            }
            if let Some(effect) = written(rule.network, rule, &Slot::ALL[2..8]) {
                object.insert(
                    "network".into(),
                    json!({"effect": effect.as_str(),
                           "outbound": {"allow": list(rule, Slot::OutboundAllow),
                                        "deny": list(rule, Slot::OutboundDeny)},
                           "outboundPorts": {"allow": list(rule, Slot::OutboundPortsAllow),
                                             "deny": list(rule, Slot::OutboundPortsDeny)},
                           "listeningPorts": {"allow": list(rule, Slot::ListeningPortsAllow),
                                              "deny": list(rule, Slot::ListeningPortsDeny)}}),
                );
            }
            if let Some(effect) = written(rule.dns, rule, &[Slot::DnsAllow, Slot::DnsDeny]) {
                object.insert(
                    "dns".into(),
                    json!({"effect": effect.as_str(),
                           "allow": list(rule, Slot::DnsAllow),
                           "deny": list(rule, Slot::DnsDeny)}),
                );
            }
            Value::Object(object)
        })
        .collect();
    let mut document = Map::new();
    if !library.is_empty() {
        let custom: Vec<Value> = library
            .iter()
            .map(|c| {
                let mut object = Map::new();
                object.insert("name".into(), c.name.clone().into());
                object.insert("type".into(), c.kind.into());
                object.insert("script".into(), c.script.clone().into());
                if let Some(message) = &c.message {
                    object.insert("message".into(), message.clone().into());
                }
                Value::Object(object)
            })
            .collect();
        document.insert("customRules".into(), custom.into());
    }
    document.insert("rules".into(), rules.into());
    Value::Object(document)
}

/// What a validation problem makes us leave out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Drop {
    Entry(usize, Slot, usize),
    /// A rule whose collections have an entry the validator refuses: leaving the entry out would
    /// change which containers the rule is for (an emptied list is `*`), so the rule goes.
    Rule(usize),
    Ref(usize, usize),
    Library(usize),
}

/// `processes.deny[3]` → (`processes.deny`, 3, rest after `]`).
fn indexed(field: &str) -> Option<(&str, usize, &str)> {
    let (list, rest) = field.split_once('[')?;
    let (index, rest) = rest.split_once(']')?;
    Some((list, index.parse().ok()?, rest))
}

fn target(problem: &Problem) -> Option<Drop> {
    let rule = problem.rule.as_ref()?;
    if rule.list == List::CustomRules {
        return Some(Drop::Library(rule.index));
    }
    let (list, index, _) = indexed(&problem.field)?;
    if let Some(slot) = Slot::ALL.into_iter().find(|s| s.field() == list) {
        return Some(Drop::Entry(rule.index, slot, index));
    }
    match list {
        "collections.images" | "collections.containers" => Some(Drop::Rule(rule.index)),
        "customRules" => Some(Drop::Ref(rule.index, index)),
        _ => None,
    }
}

/// Builds the document and validates it, leaving out (and reporting) what the validator refuses
/// until it passes. Every pass leaves something out, so this ends.
fn validated(
    out: &mut Vec<OutRule>,
    library: &mut Vec<LibraryRule>,
    reports: &mut Reports,
) -> Result<String, ImportError> {
    loop {
        let text = build(out, library).to_string();
        let problems = match super::parse(&text) {
            Ok(policy) => return Ok(policy.to_json_pretty()),
            Err(PolicyError::Invalid(problems)) => problems,
            Err(syntax @ PolicyError::Syntax { .. }) => {
                return Err(ImportError::Internal(syntax.to_string()));
            }
        };
        let mut drops: Vec<(Drop, &Problem)> = Vec::new();
        for problem in &problems {
            match target(problem) {
                Some(drop) => drops.push((drop, problem)),
                None => {
                    return Err(ImportError::Internal(
                        problems
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ));
                }
            }
        }
        if !apply(out, library, drops, reports) {
            return Err(ImportError::Internal(
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ));
        }
    }
}

/// Leaves out what the problems name; whether anything was left out (if not, another pass would
/// meet the same problems).
fn apply(
    out: &mut Vec<OutRule>,
    library: &mut Vec<LibraryRule>,
    drops: Vec<(Drop, &Problem)>,
    reports: &mut Reports,
) -> bool {
    let mut entries: HashSet<(usize, Slot, usize)> = HashSet::new();
    let mut rules: HashSet<usize> = HashSet::new();
    let mut refs: HashSet<(usize, usize)> = HashSet::new();
    let mut custom: HashSet<usize> = HashSet::new();
    // A custom rule left out takes its references with it, and the validator's complaints about
    // those references ("no custom rule named ...") say nothing more.
    let gone: HashSet<&str> = drops
        .iter()
        .filter_map(|(drop, _)| match drop {
            Drop::Library(index) => library.get(*index).map(|c| c.name.as_str()),
            _ => None,
        })
        .collect();
    for (drop, problem) in &drops {
        let field = if problem.field.is_empty() {
            String::new()
        } else {
            format!("{}: ", problem.field)
        };
        match *drop {
            Drop::Entry(rule, slot, index) => {
                let Some(entry) = out[rule].lists.get(&slot).and_then(|l| l.get(index)) else {
                    continue;
                };
                reports.push(format!(
                    "{}: {}: left out: {}",
                    out[rule].location, entry.origin, problem.message
                ));
                entries.insert((rule, slot, index));
            }
            Drop::Rule(rule) => {
                let origin = origin_in_scope(&out[rule], &problem.field);
                reports.push(format!(
                    "{}: {origin}: the rule {:?} is left out: {}; without the entry it would \
                     apply to other containers",
                    out[rule].location, out[rule].name, problem.message
                ));
                rules.insert(rule);
            }
            Drop::Ref(rule, index) => {
                let Some(reference) = out[rule].refs.get(index) else {
                    continue;
                };
                if !gone.contains(reference.name.as_str()) {
                    reports.push(format!(
                        "{}: {}: left out: {field}{}",
                        out[rule].location, reference.origin, problem.message
                    ));
                }
                refs.insert((rule, index));
            }
            Drop::Library(index) => {
                let Some(entry) = library.get(index) else {
                    continue;
                };
                let users: Vec<&str> = out
                    .iter()
                    .filter(|r| r.refs.iter().any(|x| x.name == entry.name))
                    .map(|r| r.location.as_str())
                    .collect::<Vec<_>>();
                let mut users_once: Vec<&str> = Vec::new();
                for user in users {
                    if !users_once.contains(&user) {
                        users_once.push(user);
                    }
                }
                reports.push(format!(
                    "{}: {field}left out, with its references in {}: {}",
                    entry.location,
                    users_once.join(", "),
                    problem.message
                ));
                custom.insert(index);
            }
        }
    }
    let gone: HashSet<String> = gone.into_iter().map(str::to_owned).collect();
    for (rule_index, rule) in out.iter_mut().enumerate() {
        for (slot, list) in rule.lists.iter_mut() {
            let mut index = 0;
            list.retain(|_| {
                let keep = !entries.contains(&(rule_index, *slot, index));
                index += 1;
                keep
            });
        }
        let mut index = 0;
        rule.refs.retain(|reference| {
            let keep = !refs.contains(&(rule_index, index)) && !gone.contains(&reference.name);
            index += 1;
            keep
        });
    }
    let mut index = 0;
    out.retain(|_| {
        let keep = !rules.contains(&index);
        index += 1;
        keep
    });
    let mut index = 0;
    library.retain(|_| {
        let keep = !custom.contains(&index);
        index += 1;
        keep
    });
    !(entries.is_empty() && rules.is_empty() && refs.is_empty() && custom.is_empty())
}

/// The input path of the collections entry the validator names (`collections.images[1]`).
fn origin_in_scope(rule: &OutRule, field: &str) -> String {
    let found = indexed(field).and_then(|(list, index, _)| {
        let (images, containers) = rule.scope.as_ref()?;
        let list = if list.ends_with("images") {
            images
        } else {
            containers
        };
        list.get(index).map(|e| e.origin.clone())
    });
    found.unwrap_or_else(|| "collections".to_owned())
}

/// An allow list whose every entry was left out allows everything: said, since the input
/// allowed only what it listed.
fn report_emptied_allow_lists(out: &[OutRule], reports: &mut Reports) {
    for rule in out {
        for slot in Slot::ALL {
            let given = rule.allow_given.get(&slot).copied().unwrap_or(0);
            let now = rule.lists.get(&slot).map_or(0, Vec::len);
            if given > 0 && now == 0 {
                reports.push(format!(
                    "{}: {} of {:?}: every entry was left out, and an empty allow list allows \
                     everything: review this rule",
                    rule.location,
                    slot.field(),
                    rule.name
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy of these rules (JSON objects), converted: the document's rules and the reports.
    fn convert(rules: &str, export: Option<&str>) -> (Value, Vec<String>) {
        let policy = format!(r#"{{"_id": "appEmbeddedRuntime", "rules": [{rules}]}}"#);
        let imported = import(&policy, export).unwrap_or_else(|e| panic!("{e}: {policy}"));
        let document: Value = serde_json::from_str(&imported.document).unwrap();
        (document, imported.reports)
    }

    /// The error for this policy (and export).
    fn error(policy: &str, export: Option<&str>) -> ImportError {
        match import(policy, export) {
            Ok(imported) => panic!("accepted: {policy}\n{}", imported.document),
            Err(e) => e,
        }
    }

    #[test]
    fn inputs_not_of_the_vendors_shape_are_errors_naming_the_json_path() {
        let export =
            r#"[{"_id": 1, "name": "a", "type": "processes", "script": "proc.name = \"x\""}]"#;
        let cases: &[(&str, Option<&str>, Input, &str)] = &[
            (
                "{",
                None,
                Input::Policy,
                "malformed JSON at line 1 column 1: EOF while parsing an object",
            ),
            (
                "[]",
                None,
                Input::Policy,
                "document: expected the App-Embedded runtime policy (an object with `rules`, as GET \
                 /api/v1/policies/runtime/app-embedded returns it), found a list; the custom rules \
                 export goes to --custom-rules",
            ),
            (
                "7",
                None,
                Input::Policy,
                "document: expected an object, found the number 7",
            ),
            (
                r#"{"_id": "x"}"#,
                None,
                Input::Policy,
                "document: missing `rules`: expected the App-Embedded runtime policy, as GET \
                 /api/v1/policies/runtime/app-embedded returns it",
            ),
            (
                r#"{"rules": {}}"#,
                None,
                Input::Policy,
                "rules: expected a list, found an object",
            ),
            (
                r#"{"rules": [{"disabled": true}]}"#,
                None,
                Input::Policy,
                "rules[0]: missing `name`",
            ),
            (
                r#"{"rules": [7]}"#,
                None,
                Input::Policy,
                "rules[0]: expected an object, found the number 7",
            ),
            (
                r#"{"rules": [{"name": ""}]}"#,
                None,
                Input::Policy,
                "rules[0].name: must not be empty",
            ),
            (
                r#"{"rules": [{"name": 3}]}"#,
                None,
                Input::Policy,
                "rules[0].name: expected a string, found the number 3",
            ),
            (
                r#"{"rules": [{"name": "a", "processes": {"effect": "alert", "blacklist": ["nc", 7]}}]}"#,
                None,
                Input::Policy,
                "rules[0].processes.blacklist[1]: expected a string, found the number 7",
            ),
            (
                r#"{"rules": [{"name": "a", "processes": {"effect": true}}]}"#,
                None,
                Input::Policy,
                "rules[0].processes.effect: expected a string, found `true`",
            ),
            (
                r#"{"rules": [{"name": "a", "network": {"effect": "alert", "whitelistOutboundPorts": [{"end": 80}]}}]}"#,
                None,
                Input::Policy,
                "rules[0].network.whitelistOutboundPorts[0]: missing `start`",
            ),
            (
                r#"{"rules": [{"name": "a", "network": {"effect": "alert", "whitelistOutboundPorts": ["443"]}}]}"#,
                None,
                Input::Policy,
                "rules[0].network.whitelistOutboundPorts[0]: expected an object, found the string \"443\"",
            ),
            (
                r#"{"rules": [{"name": "a", "collections": {"name": "All"}}]}"#,
                None,
                Input::Policy,
                "rules[0].collections: expected a list, found an object",
            ),
            (
                r#"{"rules": [{"name": "a", "collections": [{"images": "*"}]}]}"#,
                None,
                Input::Policy,
                "rules[0].collections[0].images: expected a list, found the string \"*\"",
            ),
            (
                r#"{"rules": [{"name": "a", "customRules": [{"effect": "alert"}]}]}"#,
                None,
                Input::Policy,
                "rules[0].customRules[0]: missing `_id`",
            ),
            (
                r#"{"rules": [{"name": "a", "customRules": [{"_id": 2, "effect": "alert"}]}]}"#,
                Some(export),
                Input::Policy,
                "rules[0].customRules[0]._id: custom rule 2 is not in the custom rules export: \
                 export the custom rules of the same console (GET /api/v1/custom-rules)",
            ),
            (
                r#"{"rules": []}"#,
                Some(r#"{"rules": []}"#),
                Input::CustomRules,
                "document: expected the custom rules export (a list, as GET /api/v1/custom-rules \
                 returns it), found an object; the runtime policy is the FILE argument",
            ),
            (
                r#"{"rules": []}"#,
                Some("[1"),
                Input::CustomRules,
                "malformed JSON at line 1 column 2: EOF while parsing a list",
            ),
            (
                r#"{"rules": []}"#,
                Some(r#"[{"_id": 1, "name": "a", "script": ""}]"#),
                Input::CustomRules,
                "[0]: missing `type`",
            ),
            (
                r#"{"rules": []}"#,
                Some(r#"[{"_id": "1", "name": "a", "type": "processes"}]"#),
                Input::CustomRules,
                "[0]._id: expected an integer, found the string \"1\"",
            ),
            (
                r#"{"rules": []}"#,
                Some(
                    r#"[{"_id": 1, "name": "a", "type": "processes"}, {"_id": 1, "name": "b", "type": "processes"}]"#,
                ),
                Input::CustomRules,
                "[1]._id: custom rule 1 is in the export twice",
            ),
        ];
        for (policy, export, input, want) in cases {
            let e = error(policy, *export);
            assert_eq!(e.to_string(), *want, "{policy}");
            assert_eq!(e.input(), *input, "{policy}");
        }
    }

    #[test]
    fn sections_of_both_shapes() {
        // (input rule members, output rule members, reports)
        let cases: &[(&str, Value, &[&str])] = &[
            (
                r#""processes": {"effect": "prevent", "whitelist": ["node"], "blacklist": ["nc"], "checkCryptoMiners": false}"#,
                json!({"processes": {"effect": "prevent", "allow": ["node"], "deny": ["nc"]}}),
                &[],
            ),
            (
                r#""processes": {"effect": "block", "blacklist": ["nc"], "checkCryptoMiners": true}"#,
                json!({"processes": {"effect": "block", "allow": [], "deny": ["nc"]}}),
                &[
                    "rules[0] \"r\": processes.checkCryptoMiners: not carried over (no equivalent): true; no \
                   crypto-miner detection: deny the miners by name in processes, as `defender policy default` does",
                ],
            ),
            (
                r#""processes": {"effect": "ignore", "blacklist": ["nc"]}"#,
                json!({"processes": {"effect": "alert", "allow": [], "deny": ["nc"]}}),
                &[
                    "rules[0] \"r\": processes.effect: \"ignore\" has no equivalent: carried as \"alert\" (it audits \
                   and never stops the workload)",
                ],
            ),
            (
                // Off and empty: the same as no section.
                r#""processes": {"effect": "disable", "whitelist": [], "blacklist": []}, "dns": {"effect": ""}"#,
                json!({}),
                &[],
            ),
            (
                r#""processes": {"defaultEffect": "alert", "allowedList": ["java"], "deniedList": {"effect": "alert", "paths": ["nc"]}}"#,
                json!({"processes": {"effect": "alert", "allow": ["java"], "deny": ["nc"]}}),
                &[],
            ),
            (
                r#""processes": {"disabled": true, "defaultEffect": "prevent", "deniedList": {"effect": "prevent", "paths": ["nc"]}, "cryptoMinersEffect": "block"}"#,
                json!({"processes": {"effect": "disable", "allow": [], "deny": ["nc"]}}),
                &[],
            ),
            (
                r#""processes": {"defaultEffect": "disable", "allowedList": ["java"], "deniedList": {"effect": "block", "paths": ["nc"]}}"#,
                json!({"processes": {"effect": "block", "allow": [], "deny": ["nc"]}}),
                &[
                    "rules[0] \"r\": processes.defaultEffect: \"disable\": its 1 entries are not carried over \
                   (processes.allowedList[0]), since a section here has one effect and the section's other lists are on",
                ],
            ),
            (
                r#""network": {"effect": "alert", "whitelistOutboundPorts": [{"start": 443, "end": 443, "deny": false}, {"start": 8000, "end": 8100}, {"start": 53}, {"start": 0, "end": 1023, "deny": true}]}"#,
                json!({"network": {"effect": "alert", "outbound": {"allow": [], "deny": []},
                        "outboundPorts": {"allow": ["443", "8000-8100", "53", "1-1023"], "deny": []},
                        "listeningPorts": {"allow": [], "deny": []}}}),
                &[
                    "rules[0] \"r\": network.whitelistOutboundPorts[3].deny: true in an allow list: carried as allowed \
                   (the list decides)",
                ],
            ),
            (
                r#""network": {"deniedIPsEffect": "prevent", "deniedIPs": ["10.0.0.0/8"], "listeningPorts": {"effect": "block", "denied": [{"start": 22, "end": 22}]}, "portScanEffect": "alert"}"#,
                json!({"network": {"effect": "block", "outbound": {"allow": [], "deny": ["10.0.0.0/8"]},
                        "outboundPorts": {"allow": [], "deny": []},
                        "listeningPorts": {"allow": [], "deny": ["22"]}}}),
                &[
                    "rules[0] \"r\": network.portScanEffect: not carried over (no equivalent): \"alert\"; no port-scan detection",
                    "rules[0] \"r\": network: the lists have different effects (network.deniedIPsEffect \"prevent\", \
                     network.listeningPorts.effect \"block\"); a section here has one: carried as \"block\", the strongest",
                ],
            ),
            (
                r#""dns": {"effect": "prevent", "whitelist": ["*.amazonaws.com", "*.s3.*.amazonaws.com"], "blacklist": []}"#,
                json!({"dns": {"effect": "prevent", "allow": ["*.amazonaws.com"], "deny": []}}),
                &[
                    "rules[0] \"r\": dns.whitelist[1]: left out: \"*.s3.*.amazonaws.com\" is not a domain pattern \
                   (\"*\", \"*.name\" or \"name\")",
                ],
            ),
            (
                r#""dns": {"domainList": {"effect": "alert", "allowed": ["example.org"], "denied": ["*.onion.ws"]}}"#,
                json!({"dns": {"effect": "alert", "allow": ["example.org"], "deny": ["*.onion.ws"]}}),
                &[],
            ),
            (
                r#""processes": {"effect": "prevent", "whitelist": ["bin/node"]}"#,
                json!({"processes": {"effect": "prevent", "allow": [], "deny": []}}),
                &[
                    "rules[0] \"r\": processes.whitelist[0]: left out: \"bin/node\" is not an absolute path glob \
                     (an entry with \"/\" matches the absolute path)",
                    "rules[0] \"r\": processes.allow of \"r\": every entry was left out, and an empty allow list \
                     allows everything: review this rule",
                ],
            ),
            (
                r#""filesystem": {"effect": "alert", "blacklist": ["/etc/shadow"], "backdoorFiles": false}, "wildFireAnalysis": "disable", "notes": "n", "futureSetting": {"on": true}"#,
                json!({}),
                &[
                    "rules[0] \"r\": filesystem.effect: not carried over (no equivalent): \"alert\"; the defender has no file system sensor",
                    "rules[0] \"r\": filesystem.blacklist: not carried over (no equivalent): [\"/etc/shadow\"]; the defender has no file system sensor",
                    "rules[0] \"r\": futureSetting.on: not carried over (unknown setting): true",
                ],
            ),
        ];
        for (members, want, reports) in cases {
            let (document, got) = convert(&format!(r#"{{"name": "r", {members}}}"#), None);
            let mut rule = document["rules"][0].as_object().unwrap().clone();
            assert_eq!(rule.remove("name"), Some(json!("r")));
            assert_eq!(rule.remove("disabled"), Some(json!(false)));
            assert_eq!(Value::Object(rule), *want, "{members}");
            assert_eq!(got, *reports, "{members}");
        }
    }

    #[test]
    fn collections_scope_the_rule_by_image_and_container() {
        let all = r#"{"name": "All", "images": ["*"], "containers": ["*"], "hosts": ["*"], "labels": ["*"], "system": true}"#;
        let (document, reports) = convert(
            &format!(
                r#"{{"name": "web", "collections": [{all}], "processes": {{"effect": "alert", "blacklist": ["nc"]}}}},
                       {{"name": "db", "collections": [{{"name": "db", "images": ["pg:*"], "containers": [], "hosts": ["db-1"]}}]}}"#
            ),
            None,
        );
        assert_eq!(
            document["rules"][0]["collections"],
            json!({"images": ["*"], "containers": ["*"]})
        );
        assert_eq!(
            document["rules"][1]["collections"],
            json!({"images": ["pg:*"], "containers": ["*"]})
        );
        assert_eq!(
            reports,
            [
                "rules[1] \"db\": collections[0] \"db\": hosts: not carried over (the import scopes rules by \
                 image and container only; ECS clusters, families and services can be added by hand): \
                 [\"db-1\"]; the rule now applies whatever the hosts"
            ]
        );
    }

    #[test]
    fn several_collections_make_one_rule_each_with_names_no_other_rule_has() {
        let (document, reports) = convert(
            r#"{"name": "a", "collections": [{"name": "x", "images": ["x:*"]}, {"name": "x again", "images": ["x:*"], "containers": ["*"]}, {"name": "y", "containers": ["y-*"]}],
                "dns": {"effect": "alert", "blacklist": ["evil.example"]}},
               {"name": "a (2)"},
               {"name": "a"}"#,
            None,
        );
        let names: Vec<&str> = document["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "a (3)", "a (2)", "a (4)"]);
        assert_eq!(
            document["rules"][1]["collections"],
            json!({"images": ["*"], "containers": ["y-*"]})
        );
        assert_eq!(document["rules"][1]["dns"], document["rules"][0]["dns"]);
        assert_eq!(
            reports,
            [
                "rules[0] \"a\": collections: 2 collections of different scopes: carried as one rule each (\"a\", \
                 \"a (3)\"), since one rule with their lists joined would apply to more containers",
                "rules[2] \"a\": name: another rule has this name: carried as \"a (4)\"",
            ]
        );
    }

    #[test]
    fn a_collection_entry_the_validator_refuses_takes_its_rule_out() {
        let (document, reports) = convert(
            r#"{"name": "a", "collections": [{"name": "bad", "images": ["{x"]}], "processes": {"effect": "alert", "blacklist": ["nc"]}}, {"name": "b"}"#,
            None,
        );
        assert_eq!(document["rules"].as_array().unwrap().len(), 1);
        assert_eq!(document["rules"][0]["name"], "b");
        assert_eq!(
            reports,
            [
                "rules[0] \"a\": collections[0].images[0]: the rule \"a\" is left out: \"{x\" is not a valid glob: \
              unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?); without the entry it would \
              apply to other containers"
            ]
        );
    }

    const EXPORT: &str = r#"[
        {"_id": 1, "type": "processes", "name": "nc listen", "message": "nc -l", "script": "proc.name = \"nc\" and proc.cmdline contains \" -l\""},
        {"_id": 2, "type": "network-outgoing", "name": "ssh out", "script": "net.outgoing_port = 22"},
        {"_id": 3, "type": "filesystem", "name": "shadow", "script": "file.path = \"/etc/shadow\""},
        {"_id": 4, "type": "processes", "name": "nc listen", "script": "proc.name = \"ncat\""},
        {"_id": 5, "type": "processes", "name": "bad", "script": "proc.name = "},
        {"_id": 6, "type": "waas-request", "name": "unused", "script": "x"}
    ]"#;

    #[test]
    fn custom_rules_go_into_the_library_and_are_referenced_by_name() {
        let (document, reports) = convert(
            r#"{"name": "a", "customRules": [
                   {"_id": 1, "action": "audit", "effect": "block"},
                   {"_id": 2, "action": "incident", "effect": "ban"},
                   {"_id": 3, "effect": "alert"},
                   {"_id": 4, "effect": "allow"},
                   {"_id": 5, "effect": "prevent"},
                   {"_id": 1, "effect": "alert"}]},
               {"name": "b", "customRules": [{"_id": 2, "effect": "warn"}, {"_id": 5, "effect": "alert"}]}"#,
            Some(EXPORT),
        );
        assert_eq!(
            document["customRules"],
            json!([
                {"name": "nc listen", "type": "processes", "script": "proc.name = \"nc\" and proc.cmdline contains \" -l\"", "message": "nc -l"},
                {"name": "ssh out", "type": "network-outgoing", "script": "net.outgoing_port = 22"},
                {"name": "nc listen (2)", "type": "processes", "script": "proc.name = \"ncat\""},
            ])
        );
        assert_eq!(
            document["rules"][0]["customRules"],
            json!([{"name": "nc listen", "effect": "block"}, {"name": "ssh out", "effect": "block"},
                   {"name": "nc listen (2)", "effect": "allow"}])
        );
        assert_eq!(
            document["rules"][1]["customRules"],
            json!([{"name": "ssh out", "effect": "alert"}])
        );
        assert_eq!(
            reports,
            [
                "rules[0] \"a\": customRules[1].effect: \"ban\" has no equivalent: carried as \"block\" (the \
                 container is stopped; nothing keeps it from starting again)",
                "rules[0] \"a\": customRules[1].action: not carried over (no equivalent): \"incident\"; the \
                 defender writes audits, not incidents",
                "rules[1] \"b\": customRules[0].effect: \"warn\" has no equivalent: carried as \"alert\"",
                "custom rule 3 \"shadow\": type: not carried over (the defender has no file system sensor): \
                 \"filesystem\", nor its references in rules[0] \"a\"",
                "custom rule 4 \"nc listen\": name: another custom rule has it: carried as \"nc listen (2)\"",
                "rules[0] \"a\": customRules[5]: custom rule 1 is referenced twice: only the first is carried over",
                "custom rules export: 1 of its 6 custom rules are referenced by no rule: not carried over",
                "custom rule 5 \"bad\": script:1:13: left out, with its references in rules[0] \"a\", rules[1] \
                 \"b\": expected a value after \"=\", found the end of the script",
            ]
        );
    }

    #[test]
    fn without_the_export_references_are_reported_and_left_out() {
        let (document, reports) = convert(
            r#"{"name": "a", "customRules": [{"_id": 7, "effect": "alert"}], "processes": {"effect": "alert", "blacklist": ["nc"]}}"#,
            None,
        );
        assert_eq!(document.get("customRules"), None);
        assert_eq!(document["rules"][0].get("customRules"), None);
        assert_eq!(
            reports,
            [
                "rules[0] \"a\": customRules[0]: custom rule 7: not carried over (no custom rules export): give the \
              export of GET /api/v1/custom-rules with --custom-rules"
            ]
        );
    }

    #[test]
    fn no_rules_is_an_empty_policy() {
        for policy in [r#"{"_id": "x", "rules": null}"#, r#"{"rules": []}"#] {
            let imported = import(policy, None).unwrap();
            assert_eq!(imported.document, "{\n  \"rules\": []\n}");
            assert!(imported.reports.is_empty());
        }
    }
}
