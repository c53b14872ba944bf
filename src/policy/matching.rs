//! The compiled policy and every decision made from it: which rule is in force, and whether a process
//! launch, an outbound connection, a listening port or a DNS name violates it. Pure: no I/O.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use globset::{Candidate, Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use ipnet::IpNet;

use super::Policy;
use super::custom::{Facts, FieldSet, Kind, Script};
use super::schema::{CustomEffect, Effect};

/// Why an activity is a violation.
///
/// Declared in order of severity so that combining two checks is `Option::max`: a deny entry in one
/// list outranks falling outside the allow list of another ("deny wins").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attack {
    /// Outside a non-empty allow list.
    NotAllowed,
    /// Matched a deny entry.
    ExplicitlyDenied,
}

impl Attack {
    /// The audit event's `attack` field for an event of type `kind` (`process`, `network`, `dns`,
    /// `listen`), e.g. `processExplicitlyDenied`.
    pub fn name(self, kind: &str) -> String {
        let suffix = match self {
            Attack::NotAllowed => "NotAllowed",
            Attack::ExplicitlyDenied => "ExplicitlyDenied",
        };
        format!("{kind}{suffix}")
    }
}

/// One compiled rule. Built only by validation, so every pattern in it is valid.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(super) name: String,
    pub(super) disabled: bool,
    pub(super) images: Collection,
    pub(super) containers: Collection,
    /// The ECS lists; `None` when the rule does not name them (then any value, even unknown,
    /// matches).
    pub(super) clusters: Option<Collection>,
    pub(super) families: Option<Collection>,
    pub(super) services: Option<Collection>,
    /// The custom rules switched on, by event type (`Kind::index`).
    pub(super) custom: [Custom; 4],
    pub(super) processes: Processes,
    pub(super) network: Network,
    pub(super) dns: Dns,
}

/// A rule's custom rule references of one event type, in order, without the `disable`d ones.
#[derive(Debug, Clone, Default)]
pub struct Custom {
    references: Vec<Reference>,
    /// What their scripts read.
    fields: FieldSet,
    /// The strictest effect of a violation among them (`Disable` if they only allow or there are
    /// none): asked on every trapped call, so kept rather than recomputed.
    strictest: Effect,
}

/// Whether a reference's script is true for the event seen as any of `views`: true for one is
/// enough; `None` when no view says true and one cannot tell for a field not read.
fn truth(r: &Reference, views: &[Facts<'_>]) -> Option<bool> {
    let mut unknown = false;
    for facts in views {
        match r.entry.script.eval(facts) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(false)
}

/// One reference: a custom rule of the library, switched on with an effect (never `disable`).
#[derive(Debug, Clone)]
pub(super) struct Reference {
    pub(super) effect: CustomEffect,
    pub(super) entry: Arc<Entry>,
}

/// A compiled custom rule of the library, shared by the rules that reference it.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) message: Option<String>,
    pub(super) script: Script,
}

/// The custom rule that decided an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub name: &'a str,
    /// Its `message`, which then is the audit's.
    pub message: Option<&'a str>,
    /// The reference's effect: `allow` (an exception), `alert`, `prevent` or `block`.
    pub effect: CustomEffect,
}

impl Matched<'_> {
    /// The effect of a violation (`alert`, `prevent`, `block`); `None` for `allow`.
    pub fn violation(&self) -> Option<Effect> {
        violation(self.effect)
    }
}

/// The effect of a violation under a reference's effect; `None` for `allow` (and `disable`).
fn violation(effect: CustomEffect) -> Option<Effect> {
    match effect {
        CustomEffect::Allow | CustomEffect::Disable => None,
        CustomEffect::Alert => Some(Effect::Alert),
        CustomEffect::Prevent => Some(Effect::Prevent),
        CustomEffect::Block => Some(Effect::Block),
    }
}

impl Custom {
    pub(super) fn push(&mut self, reference: Reference) {
        self.fields = self.fields.union(reference.entry.script.fields());
        if let Some(effect) = violation(reference.effect) {
            self.strictest = self.strictest.stricter(effect);
        }
        self.references.push(reference);
    }

    /// Whether no custom rule of this type is switched on.
    pub fn is_empty(&self) -> bool {
        self.references.is_empty()
    }

    /// The fields the scripts read: the supervisor reads these, and no others.
    pub fn fields(&self) -> FieldSet {
        self.fields
    }

    /// The strictest effect of a violation among the references (`Disable` if they only allow or
    /// there are none).
    pub fn strictest(&self) -> Effect {
        self.strictest
    }

    /// The first reference whose script is true for the event, seen as any of `views` (a launch
    /// of a script is also seen as the launch of its interpreter): the semantics of the spec, the
    /// first true reference decides. `None`: no custom rule decides, the sections judge. A
    /// reference that depends on a field not read (see [`Custom::needs`]) is taken the closed
    /// way: true if it would object, false if it would allow.
    pub fn decide(&self, views: &[Facts<'_>]) -> Option<Matched<'_>> {
        self.references
            .iter()
            .find(|r| match truth(r, views) {
                Some(b) => b,
                None => r.effect != CustomEffect::Allow,
            })
            .map(|r| Matched {
                name: &r.entry.name,
                message: r.entry.message.as_deref(),
                effect: r.effect,
            })
    }

    /// The field not read yet (`Process::unread`) to read next: one of those the first undecided
    /// reference reads ([`FieldSet::first`]: a field read may decide it without the others); none
    /// when the references are decided (one is true, or all are false). Reading these and asking again reads only what the
    /// decision depends on: a script `proc.name = "nc" and proc.user = "jake"` reads no user for
    /// a launch of anything but nc.
    pub fn needs(&self, views: &[Facts<'_>]) -> FieldSet {
        for r in &self.references {
            match truth(r, views) {
                Some(true) => return FieldSet::default(),
                Some(false) => {}
                None => {
                    let unread = views
                        .iter()
                        .fold(FieldSet::default(), |u, f| u.union(f.process.unread));
                    return r.entry.script.fields().intersection(unread).first();
                }
            }
        }
        FieldSet::default()
    }
}

/// The `processes` section; a missing section is `Default`: effect disable, empty lists.
#[derive(Debug, Clone, Default)]
pub struct Processes {
    pub(super) effect: Effect,
    pub(super) lists: Lists<ProcessPattern>,
    /// The same lists, each as one [`PatternSet`], when globset could build them: a launch is
    /// matched against a whole list in one pass (literal names by hash, `nc.*` by prefix) instead
    /// of one regular expression per entry, on every exec.
    sets: Option<Lists<PatternSet>>,
}

/// The `network` section; a missing section is `Default`: effect disable, empty lists.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub(super) effect: Effect,
    pub(super) outbound: Lists<IpNet>,
    pub(super) outbound_ports: Lists<PortRange>,
    pub(super) listening_ports: Lists<PortRange>,
}

/// The `dns` section; a missing section is `Default`: effect disable, empty lists.
#[derive(Debug, Clone, Default)]
pub struct Dns {
    pub(super) effect: Effect,
    pub(super) lists: Lists<DomainPattern>,
}

/// Who a container is, as `collections` select it: its name and image, and on ECS its task's
/// cluster (by name), task-definition family and service when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub container: String,
    pub image: String,
    pub cluster: Option<String>,
    pub family: Option<String>,
    pub service: Option<String>,
}

impl Policy {
    /// The rule in force for a container: the first one not disabled whose collections match.
    pub fn rule_in_force(&self, who: &Identity) -> Option<&Rule> {
        self.index_in_force(who).map(|index| &self.rules[index])
    }

    /// Where the rule in force for a container is in the document's `rules` (the console's
    /// "which rule applies" answer names it by its place, as names need not be unique).
    pub fn index_in_force(&self, who: &Identity) -> Option<usize> {
        self.rules
            .iter()
            .position(|rule| !rule.disabled && rule.matches(who))
    }

    /// The rule in force for a container known by its name and image only (no ECS identity).
    pub fn rule_for(&self, container: &str, image: &str) -> Option<&Rule> {
        self.rule_in_force(&Identity {
            container: container.to_owned(),
            image: image.to_owned(),
            ..Identity::default()
        })
    }
}

impl Rule {
    /// Every list present matches. An ECS list fails closed on an unknown value: a rule that names
    /// clusters, families or services was written for ECS containers, and applying it to a
    /// container whose task is unknown would put someone else's rule in force.
    fn matches(&self, who: &Identity) -> bool {
        let ecs = |list: &Option<Collection>, value: &Option<String>| match (list, value) {
            (None, _) => true,
            (Some(list), Some(value)) => list.matches(value),
            (Some(_), None) => false,
        };
        self.images.matches(&who.image)
            && self.containers.matches(&who.container)
            && ecs(&self.clusters, &who.cluster)
            && ecs(&self.families, &who.family)
            && ecs(&self.services, &who.service)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn processes(&self) -> &Processes {
        &self.processes
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    /// The custom rules switched on for events of `kind`.
    pub fn custom(&self, kind: Kind) -> &Custom {
        &self.custom[kind.index()]
    }

    /// Whether launches are judged: by the `processes` section or by a custom rule that can object
    /// to one (a rule that only allows excepts from nothing when the section is off).
    pub fn judges_launches(&self) -> bool {
        self.processes.effect != Effect::Disable
            || self.custom(Kind::Processes).strictest() != Effect::Disable
    }

    /// The effect applied to a launch that turned out, at its exec stop, not to be the one decided
    /// on; `Disable` when launches need no such check. Launches are verified under an allow list
    /// (a swapped path would get around it) and under custom rules that prevent or block (a
    /// swapped path or command line would get around those): the strictest of their effects.
    pub fn launch_verification(&self) -> Effect {
        let section = match self.processes.has_allow_list() {
            true => self.processes.effect,
            false => Effect::Disable,
        };
        let custom = match self.custom(Kind::Processes).strictest() {
            e @ (Effect::Prevent | Effect::Block) => e,
            _ => Effect::Disable,
        };
        section.stricter(custom)
    }

    /// The effect for what gets past both the `network` and the `dns` checks (a raw socket, a
    /// socket call that cannot be inspected): the strictest of the two sections' effects and of
    /// the custom rules on outgoing connections, DNS questions and listening ports.
    pub fn socket_effect(&self) -> Effect {
        [Kind::NetworkOutgoing, Kind::Dns, Kind::Listening]
            .into_iter()
            .map(|kind| self.custom(kind).strictest())
            .fold(
                self.network.effect.stricter(self.dns.effect),
                Effect::stricter,
            )
    }

    /// Whether the rule enforces network or DNS: then socket calls are judged.
    pub fn enforces_network(&self) -> bool {
        self.socket_effect() != Effect::Disable
    }
}

/// What a violation of a section comes to, by the section's effect: the one mapping every sensor
/// applies (the supervisor turns it into the kernel's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consequence {
    /// The call goes on: `alert` reports and never breaks a workload; `disable` does not enforce
    /// (a disabled section is not judged at all, so it only reaches here through a policy that
    /// changed between a decision and its consequence).
    Proceed,
    /// `prevent`: the call fails (EPERM).
    Refuse,
    /// `block`: the call fails and the container is stopped.
    Stop,
}

impl Effect {
    /// The stricter of two effects (`disable` < `alert` < `prevent` < `block`).
    pub fn stricter(self, other: Effect) -> Effect {
        let rank = |e: Effect| match e {
            Effect::Disable => 0,
            Effect::Alert => 1,
            Effect::Prevent => 2,
            Effect::Block => 3,
        };
        if rank(self) >= rank(other) {
            self
        } else {
            other
        }
    }

    /// The consequence of a violation under this effect.
    pub fn consequence(self) -> Consequence {
        match self {
            Effect::Disable | Effect::Alert => Consequence::Proceed,
            Effect::Prevent => Consequence::Refuse,
            Effect::Block => Consequence::Stop,
        }
    }
}

// The checks below look at the lists only, whatever the effect: acting on the effect (including doing
// nothing for `disable`) is the caller's job.

impl Processes {
    pub(super) fn new(effect: Effect, lists: Lists<ProcessPattern>) -> Processes {
        let set = |list: &[ProcessPattern]| match list.is_empty() {
            // An empty list stays empty: `Lists::check` tells "no allow list" by it.
            true => Ok(Vec::new()),
            false => PatternSet::of(list).map(|set| vec![set]),
        };
        let sets = set(&lists.allow)
            .and_then(|allow| {
                Ok(Lists {
                    allow,
                    deny: set(&lists.deny)?,
                })
            })
            .ok();
        Processes {
            effect,
            lists,
            sets,
        }
    }

    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Whether the section has an allow list: then it admits only what it names, and a launch that
    /// swapped its path after the check would be a way around it (the supervisor verifies those).
    pub fn has_allow_list(&self) -> bool {
        !self.lists.allow.is_empty()
    }

    /// Checks one launch. `candidates` are absolute paths of that same launch (the path as executed,
    /// made absolute; the resolved real path; ...). One candidate matching a deny entry is enough for a
    /// violation, and one matching an allow entry is enough to be allowed, so `mkdir` denies
    /// `["/bin/mkdir", "/bin/busybox"]`. A script run through an interpreter is two launches: the
    /// caller checks each.
    pub fn check(&self, candidates: &[&str]) -> Option<Attack> {
        // Each name is prepared for matching once (a glob `Candidate` copies and normalizes its
        // text), not once per entry: a launch is judged on every exec.
        let prepared: Vec<Launched> = candidates
            .iter()
            .map(|path| {
                let name = path.rsplit('/').next().unwrap_or(path);
                Launched {
                    path,
                    name,
                    path_candidate: Candidate::new(path),
                    name_candidate: Candidate::new(name),
                }
            })
            .collect();
        match &self.sets {
            Some(sets) => sets.check(false, |set| prepared.iter().any(|l| set.matches(l))),
            None => self
                .lists
                .check(false, |entry| prepared.iter().any(|l| entry.matches(l))),
        }
    }
}

impl Network {
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Checks a destination against `outbound` and `outboundPorts`; a deny in either wins.
    ///
    /// Loopback destinations are exempt from both allow lists (containers of one task talk over
    /// localhost; the spec exempts loopback *destinations*, and a port belongs to the destination) but
    /// not from deny entries.
    /// A connect to the unspecified address (`0.0.0.0`, `::`) reaches the host itself: the kernel
    /// uses the loopback address instead (ip_route_connect, ip6_datagram_dst_update), so it is
    /// judged as loopback.
    pub fn check_outbound(&self, ip: IpAddr, port: u16) -> Option<Attack> {
        let ip = match ip.to_canonical() {
            // ::ffff:a.b.c.d is matched as a.b.c.d
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            other => other,
        };
        let exempt = ip.is_loopback();
        let by_ip = self.outbound.check(exempt, |net| net.contains(&ip));
        let by_port = self
            .outbound_ports
            .check(exempt, |range| range.contains(port));
        by_ip.max(by_port)
    }

    /// Checks a socket bound to `port`. Port 0 asks the kernel for any free port, which the spec does
    /// not check.
    pub fn check_listen(&self, port: u16) -> Option<Attack> {
        if port == 0 {
            return None;
        }
        self.listening_ports
            .check(false, |range| range.contains(port))
    }
}

impl Dns {
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Checks a DNS question name: case-insensitive, one trailing dot ignored.
    pub fn check_domain(&self, name: &str) -> Option<Attack> {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.lists.check(false, |pattern| pattern.matches(name))
    }
}

/// An allow list and a deny list of compiled entries.
#[derive(Debug, Clone)]
pub(super) struct Lists<T> {
    pub(super) allow: Vec<T>,
    pub(super) deny: Vec<T>,
}

// Not derived: the derive would require `T: Default`, which a glob matcher is not.
impl<T> Default for Lists<T> {
    fn default() -> Self {
        Lists {
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

impl<T> Lists<T> {
    /// The one allow/deny rule of the spec: a deny match is a violation; so is matching nothing in a
    /// non-empty allow list, unless the caller exempts this activity from allow lists; deny wins.
    fn check(&self, exempt_from_allow: bool, matches: impl Fn(&T) -> bool) -> Option<Attack> {
        if self.deny.iter().any(&matches) {
            Some(Attack::ExplicitlyDenied)
        } else if !exempt_from_allow && !self.allow.is_empty() && !self.allow.iter().any(matches) {
            Some(Attack::NotAllowed)
        } else {
            None
        }
    }
}

/// A `collections` list: `images`, `containers`, `clusters`, `families` or `services`.
///
/// Matches when an include pattern matches and no exclusion (`-pattern`) does. A list without any
/// include pattern (only exclusions, or empty) behaves as if it had `"*"`, so `["-*debug*"]` means
/// "everything but debug", like a missing list means everything.
#[derive(Debug, Clone, Default)]
pub(super) struct Collection {
    pub(super) include: Vec<GlobMatcher>,
    pub(super) exclude: Vec<GlobMatcher>,
}

impl Collection {
    fn matches(&self, name: &str) -> bool {
        let included =
            self.include.is_empty() || self.include.iter().any(|glob| glob.is_match(name));
        included && !self.exclude.iter().any(|glob| glob.is_match(name))
    }
}

/// A `processes` entry: a glob on the absolute path when it contains `/`, else on the file name.
#[derive(Debug, Clone)]
pub(super) struct ProcessPattern {
    pub(super) glob: NameGlob,
    pub(super) on_path: bool,
}

/// How a `processes` entry matches. An entry without glob syntax (`nmap`, `/usr/bin/nc`) matches
/// only itself, so it is compared as text: building a glob matcher builds a regex, tens of
/// microseconds each, paid at every start-up for the default policy's names. A glob is kept
/// parsed: its list's [`PatternSet`] is what matches it, and its own matcher is compiled only if
/// that set could not be built, so that start-up compiles each glob once.
#[derive(Debug, Clone)]
pub(super) enum NameGlob {
    Literal(String),
    Glob(Glob, OnceLock<GlobMatcher>),
}

/// A launch's path and its file name, each prepared for matching once.
struct Launched<'a> {
    path: &'a str,
    name: &'a str,
    path_candidate: Candidate<'a>,
    name_candidate: Candidate<'a>,
}

impl ProcessPattern {
    fn matches(&self, launched: &Launched) -> bool {
        let (text, candidate) = match self.on_path {
            true => (launched.path, &launched.path_candidate),
            false => (launched.name, &launched.name_candidate),
        };
        match &self.glob {
            NameGlob::Literal(literal) => literal == text,
            NameGlob::Glob(glob, matcher) => matcher
                .get_or_init(|| glob.compile_matcher())
                .is_match_candidate(candidate),
        }
    }
}

/// A list of `processes` entries matched together: the path globs and the name globs, each a
/// glob set, with the very globs of the entries (so it matches exactly what they match).
#[derive(Debug, Clone)]
pub(super) struct PatternSet {
    on_path: GlobSet,
    on_name: GlobSet,
}

impl PatternSet {
    fn of(entries: &[ProcessPattern]) -> Result<PatternSet, globset::Error> {
        let set = |on_path: bool| {
            let mut set = GlobSetBuilder::new();
            for entry in entries.iter().filter(|e| e.on_path == on_path) {
                set.add(match &entry.glob {
                    NameGlob::Glob(glob, _) => glob.clone(),
                    // Parsed only (globset then keeps a literal in a hash, with no regex), with
                    // the options of a compiled entry, so that it matches as the entry does.
                    NameGlob::Literal(text) => {
                        GlobBuilder::new(text).literal_separator(true).build()?
                    }
                });
            }
            set.build()
        };
        Ok(PatternSet {
            on_path: set(true)?,
            on_name: set(false)?,
        })
    }

    /// Whether an entry matches the launch.
    fn matches(&self, launched: &Launched) -> bool {
        self.on_path.is_match_candidate(&launched.path_candidate)
            || self.on_name.is_match_candidate(&launched.name_candidate)
    }
}

/// An inclusive port range; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PortRange {
    pub(super) lo: u16,
    pub(super) hi: u16,
}

impl PortRange {
    fn contains(self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// A `dns` entry. Names are stored lowercase, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DomainPattern {
    /// `*`: every name.
    Any,
    /// `example.org`: that name only.
    Exact(String),
    /// `*.example.org` (stored as `example.org`): any name below, at any depth, not the apex.
    Below(String),
}

impl DomainPattern {
    /// `name` has no trailing dot. Compared as bytes: a question name off the wire need not be UTF-8
    /// text cut at a char boundary where the suffix starts.
    fn matches(&self, name: &str) -> bool {
        let name = name.as_bytes();
        match self {
            DomainPattern::Any => true,
            DomainPattern::Exact(domain) => name.eq_ignore_ascii_case(domain.as_bytes()),
            DomainPattern::Below(domain) => {
                let Some(head_len) = name.len().checked_sub(domain.len() + 1) else {
                    return false;
                };
                head_len > 0
                    && name[head_len] == b'.'
                    && name[head_len + 1..].eq_ignore_ascii_case(domain.as_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule in force and its place: the first rule not disabled whose collections match.
    #[test]
    fn the_rule_in_force_and_its_index() {
        let policy = crate::policy::parse(
            r#"{"rules": [
                {"name": "off", "disabled": true, "collections": {"containers": ["web"]}},
                {"name": "web", "collections": {"containers": ["web"]}},
                {"name": "prod", "collections": {"clusters": ["prod"]}}
            ]}"#,
        )
        .unwrap();
        let who = |container: &str, cluster: Option<&str>| Identity {
            container: container.into(),
            cluster: cluster.map(str::to_owned),
            ..Identity::default()
        };
        let cases = [
            (who("web", None), Some((1, "web"))),
            (who("db", Some("prod")), Some((2, "prod"))),
            (who("db", None), None),
        ];
        for (identity, want) in cases {
            let index = policy.index_in_force(&identity);
            let name = policy.rule_in_force(&identity).map(Rule::name);
            assert_eq!(index.zip(name), want, "{identity:?}");
        }
    }

    /// Deciding with facts not read yet: `needs` asks for what the first undecided reference
    /// reads, nothing once one is true or all are false; `decide` takes an undecided reference
    /// the closed way.
    #[test]
    fn custom_rules_with_unread_facts() {
        use crate::policy::custom::{Facts, Field, FieldSet, Kind, Process, Subject};
        let policy = crate::policy::parse(
            r#"{"customRules": [
                {"name": "ok", "type": "processes", "script": "proc.name = \"mkdir\" and proc.pname = \"migrate\""},
                {"name": "nc", "type": "processes", "script": "proc.name = \"nc\" and proc.user = \"jake\""},
                {"name": "tty", "type": "processes", "script": "proc.interactive"}
              ],
              "rules": [{"name": "r", "customRules": [
                {"name": "ok", "effect": "allow"}, {"name": "nc", "effect": "prevent"},
                {"name": "tty", "effect": "alert"}]}]}"#,
        )
        .unwrap();
        let custom = policy.rule_for("c", "i").unwrap().custom(Kind::Processes);
        let unread = FieldSet::of(&[Field::ProcPname, Field::ProcUser, Field::ProcInteractive]);
        let launch = |name: &str, unread: FieldSet| Process {
            name: name.into(),
            pname: "migrate".into(),
            user: "jake".into(),
            unread,
            ..Process::default()
        };
        let of = |fields: &[Field]| FieldSet::of(fields);
        let cases: &[(&str, FieldSet, FieldSet, Option<&str>)] = &[
            // true calls for the interactive flag only, the earlier ones being false
            ("true", unread, of(&[Field::ProcInteractive]), Some("tty")),
            ("nc", unread, of(&[Field::ProcUser]), Some("nc")),
            (
                "nc",
                of(&[Field::ProcPname, Field::ProcInteractive]),
                FieldSet::default(),
                Some("nc"),
            ),
            // an allow that cannot be told is not granted
            ("mkdir", unread, of(&[Field::ProcPname]), Some("tty")),
            (
                "mkdir",
                of(&[Field::ProcUser, Field::ProcInteractive]),
                FieldSet::default(),
                Some("ok"),
            ),
            (
                "true",
                of(&[Field::ProcPname, Field::ProcUser]),
                FieldSet::default(),
                None,
            ),
        ];
        for (name, unread, needs, closed) in cases {
            let p = launch(name, *unread);
            let views = [Facts {
                process: &p,
                subject: Subject::Launch,
            }];
            assert_eq!(custom.needs(&views), *needs, "{name} {unread:?}");
            assert_eq!(
                custom.decide(&views).map(|m| m.name),
                *closed,
                "{name} {unread:?}"
            );
        }
    }

    #[test]
    fn consequences_and_the_strictest_socket_effect() {
        use Effect::*;
        for (effect, want) in [
            (Disable, Consequence::Proceed),
            (Alert, Consequence::Proceed),
            (Prevent, Consequence::Refuse),
            (Block, Consequence::Stop),
        ] {
            assert_eq!(effect.consequence(), want, "{effect:?}");
        }
        for (network, dns, want) in [
            (Disable, Disable, Disable),
            (Alert, Disable, Alert),
            (Disable, Alert, Alert),
            (Disable, Prevent, Prevent),
            (Prevent, Alert, Prevent),
            (Alert, Block, Block),
            (Block, Prevent, Block),
        ] {
            let json = format!(
                r#"{{"rules": [{{"name": "r", "network": {{"effect": "{}"}}, "dns": {{"effect": "{}"}}}}]}}"#,
                network.as_str(),
                dns.as_str()
            );
            let policy = crate::policy::parse(&json).unwrap();
            let rule = policy.rule_for("c", "i").unwrap();
            assert_eq!(rule.socket_effect(), want, "{network:?} {dns:?}");
            assert_eq!(
                rule.enforces_network(),
                want != Disable,
                "{network:?} {dns:?}"
            );
        }
    }
    use crate::policy::parse;

    use crate::policy::testing::rule;

    #[test]
    fn attack_names() {
        let cases = [
            (
                Attack::ExplicitlyDenied,
                "process",
                "processExplicitlyDenied",
            ),
            (Attack::NotAllowed, "process", "processNotAllowed"),
            (
                Attack::ExplicitlyDenied,
                "network",
                "networkExplicitlyDenied",
            ),
            (Attack::NotAllowed, "dns", "dnsNotAllowed"),
            (Attack::NotAllowed, "listen", "listenNotAllowed"),
        ];
        for (attack, kind, want) in cases {
            assert_eq!(attack.name(kind), want);
        }
    }

    #[test]
    fn rule_selection() {
        let policy = parse(
            r#"{"rules": [
                {"name": "off", "disabled": true, "collections": {"containers": ["web"]}},
                {"name": "web", "collections": {"images": ["*", "-*debug*"], "containers": ["Web*"]}},
                {"name": "not-debug", "collections": {"images": ["-*debug*"]}},
                {"name": "nginx", "collections": {"images": ["*/nginx:*"], "containers": ["*"]}}
            ]}"#,
        )
        .unwrap();
        let cases = [
            // (container, image, rule in force)
            ("web", "app:1", Some("web")), // first enabled match; the disabled one is skipped
            ("WEB-2", "APP:1", Some("web")), // case-insensitive
            ("web", "app:1-DEBUG", None),  // excluded from "web" and "not-debug"
            ("db", "app:1", Some("not-debug")), // exclusions only: as if "*" came first
            ("db", "docker.io/library/nginx:1-debug", Some("nginx")), // "*" crosses "/" here
            ("db", "debug", None),
        ];
        for (container, image, want) in cases {
            let got = policy.rule_for(container, image).map(Rule::name);
            assert_eq!(got, want, "container {container:?}, image {image:?}");
        }
    }

    /// The ECS lists: every list present must match, and a list present fails closed on a value
    /// that is unknown (the rule was meant for ECS), whatever its patterns.
    #[test]
    fn rule_selection_by_ecs_identity() {
        let policy = parse(
            r#"{"rules": [
                {"name": "orders", "collections": {"clusters": ["prod-*", "-prod-eu"], "services": ["orders*"]}},
                {"name": "batch", "collections": {"families": ["batch-*"], "containers": ["app"]}},
                {"name": "any-service", "collections": {"services": []}},
                {"name": "rest", "collections": {"images": ["*"]}}
            ]}"#,
        )
        .unwrap();
        let who = |cluster: Option<&str>, family: Option<&str>, service: Option<&str>| Identity {
            container: "app".into(),
            image: "i".into(),
            cluster: cluster.map(str::to_owned),
            family: family.map(str::to_owned),
            service: service.map(str::to_owned),
        };
        let cases = [
            // (cluster, family, service, rule in force)
            (Some("prod-us"), None, Some("Orders-API"), "orders"), // case-insensitive
            (Some("prod-eu"), None, Some("orders"), "any-service"), // the cluster is excluded
            (None, None, Some("orders"), "any-service"),           // unknown cluster: fail closed
            (Some("prod-us"), None, None, "rest"),                 // unknown service: fail closed
            (Some("dev"), Some("batch-nightly"), None, "batch"),
            (None, Some("web"), Some("web"), "any-service"), // `[]` matches any known value
            (None, None, None, "rest"),
        ];
        for (cluster, family, service, want) in cases {
            let got = policy.rule_in_force(&who(cluster, family, service));
            assert_eq!(
                got.map(Rule::name),
                Some(want),
                "{cluster:?} {family:?} {service:?}"
            );
        }
        // A container known by name and image only is never selected by an ECS list.
        assert_eq!(policy.rule_for("app", "i").map(Rule::name), Some("rest"));
    }

    #[test]
    fn empty_collection_list_means_everything() {
        let rule = rule(r#""collections": {"images": [], "containers": ["-db"]}"#);
        assert!(rule.images.matches("anything"));
        assert!(rule.containers.matches("web"));
        assert!(!rule.containers.matches("DB"));
    }

    #[test]
    fn processes() {
        let deny = rule(
            r#""processes": {"effect": "prevent", "deny": ["mkdir", "/usr/bin/nc*", "/opt/*", "nc.*", "xmr?g*", "[bc]at", "*miner", "{zmap,masscan}"]}"#,
        );
        let allow = rule(
            r#""processes": {"effect": "alert", "allow": ["sh", "/app/**"], "deny": ["/app/bin/bad"]}"#,
        );
        let none = rule(r#""processes": {"effect": "block"}"#);
        let denied = Some(Attack::ExplicitlyDenied);
        let not_allowed = Some(Attack::NotAllowed);
        let cases: &[(&Rule, &[&str], Option<Attack>)] = &[
            (&deny, &["/bin/mkdir"], denied),                 // name entry
            (&deny, &["/bin/mkdir", "/bin/busybox"], denied), // busybox applet: the path as executed counts
            (&deny, &["/usr/local/bin/mkdir"], denied), // a name entry matches in any directory
            (&deny, &["/bin/mkdir.sh"], None),          // whole file name, not a prefix
            (&deny, &["/bin/MKDIR"], None),             // case-sensitive, like the file system
            (&deny, &["/usr/bin/ncat"], denied),        // path glob
            (&deny, &["/usr/bin/x/nc"], None),
            (&deny, &["/opt/tool"], denied),
            (&deny, &["/opt/sub/tool"], None), // `*` does not cross `/` in path entries
            (&deny, &["/bin/ls"], None),
            (&deny, &["/bin/nc.openbsd"], denied), // name globs of every shape
            (&deny, &["/bin/nc"], None),
            (&deny, &["/tmp/xmrig-6"], denied),
            (&deny, &["/bin/cat"], denied),
            (&deny, &["/bin/at"], None),
            (&deny, &["/x/cpuminer"], denied),
            (&deny, &["/x/masscan"], denied),
            (&deny, &["/x/zmap2"], None),
            (&allow, &["/bin/sh"], None),
            (&allow, &["/app/bin/server"], None), // `**` crosses `/`
            (&allow, &["/bin/ls"], not_allowed),
            (&allow, &["/bin/ls", "/bin/sh"], None), // one candidate allowed is enough
            (&allow, &["/app/bin/bad"], denied),     // deny wins over allow
            (&none, &["/anything"], None),
        ];
        for (rule, candidates, want) in cases {
            // Each list matched as one glob set, and entry by entry (where globset could not
            // build the sets): the same answers.
            let processes = rule.processes();
            assert!(processes.sets.is_some(), "{candidates:?}: no glob sets");
            let one_by_one = Processes {
                sets: None,
                ..processes.clone()
            };
            assert_eq!(processes.check(candidates), *want, "{candidates:?}");
            assert_eq!(
                one_by_one.check(candidates),
                *want,
                "{candidates:?}, entry by entry"
            );
        }
    }

    #[test]
    fn missing_sections_are_disabled_and_empty() {
        let rule = rule(r#""disabled": false"#);
        assert_eq!(rule.processes().effect(), Effect::Disable);
        assert_eq!(rule.network().effect(), Effect::Disable);
        assert_eq!(rule.dns().effect(), Effect::Disable);
        assert_eq!(rule.processes().check(&["/usr/bin/nmap"]), None);
        assert_eq!(
            rule.network()
                .check_outbound("8.8.8.8".parse().unwrap(), 53),
            None
        );
        assert_eq!(rule.network().check_listen(22), None);
        assert_eq!(rule.dns().check_domain("example.org"), None);
    }

    #[test]
    fn outbound() {
        let deny = rule(
            r#""network": {"effect": "prevent",
                "outbound": {"deny": ["203.0.113.0/24", "2001:db8::/32", "127.0.0.2", "::ffff:198.51.100.7"]},
                "outboundPorts": {"deny": ["25", "6660-6669"]}}"#,
        );
        let allow = rule(
            r#""network": {"effect": "alert",
                "outbound": {"allow": ["10.0.0.0/8", "fd00::/8"], "deny": ["10.9.9.9"]},
                "outboundPorts": {"allow": ["443", "8000-8100"]}}"#,
        );
        let denied = Some(Attack::ExplicitlyDenied);
        let not_allowed = Some(Attack::NotAllowed);
        let cases = [
            (&deny, "203.0.113.9", 443, denied),
            (&deny, "::ffff:203.0.113.9", 443, denied), // mapped IPv6 is matched as IPv4
            (&deny, "2001:db8::1", 443, denied),
            (&deny, "198.51.100.7", 443, denied), // a mapped entry is matched as IPv4 too
            (&deny, "127.0.0.2", 80, denied),     // loopback is not exempt from deny
            (&deny, "192.0.2.1", 25, denied),     // port deny
            (&deny, "192.0.2.1", 6665, denied),
            (&deny, "192.0.2.1", 443, None),
            (&allow, "10.1.2.3", 443, None),
            (&allow, "10.1.2.3", 8100, None),
            (&allow, "fd00::1", 8000, None),
            (&allow, "192.0.2.1", 443, not_allowed), // outside the address allow list
            (&allow, "10.1.2.3", 22, not_allowed),   // outside the port allow list
            (&allow, "10.9.9.9", 443, denied),       // deny wins
            (&allow, "192.0.2.1", 22, not_allowed),
            (&allow, "127.0.0.1", 22, None), // loopback is exempt from both allow lists
            (&allow, "::1", 5432, None),
            (&allow, "::ffff:127.0.0.1", 5432, None),
            (&allow, "0.0.0.0", 5432, None), // the unspecified address is loopback
            (&allow, "::", 5432, None),
            (&deny, "0.0.0.0", 25, denied), // ... and not exempt from deny
        ];
        for (rule, ip, port, want) in cases {
            let got = rule.network().check_outbound(ip.parse().unwrap(), port);
            assert_eq!(got, want, "{ip} port {port}");
        }
        // Deny on the port wins over an address outside the allow list.
        let both = rule(
            r#""network": {"effect": "alert", "outbound": {"allow": ["10.0.0.0/8"]},
                "outboundPorts": {"deny": ["25"]}}"#,
        );
        assert_eq!(
            both.network()
                .check_outbound("192.0.2.1".parse().unwrap(), 25),
            denied
        );
    }

    #[test]
    fn listen() {
        let rule = rule(
            r#""network": {"effect": "prevent", "listeningPorts": {"allow": ["8080", "9000-9010"], "deny": ["9005"]}}"#,
        );
        let cases = [
            (8080, None),
            (9000, None),
            (9010, None),
            (9005, Some(Attack::ExplicitlyDenied)),
            (22, Some(Attack::NotAllowed)),
            (0, None), // any free port: not checked
        ];
        for (port, want) in cases {
            assert_eq!(rule.network().check_listen(port), want, "port {port}");
        }
    }

    #[test]
    fn dns() {
        let allow = rule(
            r#""dns": {"effect": "prevent", "allow": ["*.amazonaws.com", "example.org"], "deny": ["evil.example.org", "*.bad.amazonaws.com"]}"#,
        );
        let deny_all = rule(r#""dns": {"effect": "prevent", "deny": ["*"]}"#);
        let denied = Some(Attack::ExplicitlyDenied);
        let not_allowed = Some(Attack::NotAllowed);
        let cases = [
            (&allow, "example.org", None),
            (&allow, "Example.ORG.", None), // case and trailing dot ignored
            (&allow, "www.example.org", not_allowed), // a plain name matches exactly
            (&allow, "ecs.us-east-1.amazonaws.com", None), // any depth
            (&allow, "amazonaws.com", not_allowed), // not the apex
            (&allow, "notamazonaws.com", not_allowed), // a label boundary, not a string suffix
            (&allow, "evil.example.org", denied),
            (&allow, "x.BAD.amazonaws.com", denied), // deny wins
            (&allow, "bad.amazonaws.com", None),
            (&allow, "ünïcode.amazonaws.com", None),
            (&allow, "", not_allowed),
            (&deny_all, "anything.at.all", denied),
        ];
        for (rule, name, want) in cases {
            assert_eq!(rule.dns().check_domain(name), want, "{name:?}");
        }
    }

    #[test]
    fn compiled_policy_is_shareable() {
        fn shareable<T: Clone + std::fmt::Debug + Send + Sync>() {}
        shareable::<Policy>();
    }
}
