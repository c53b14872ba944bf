//! What an audit query asks of storage, backend-neutral: the audit fields one can filter and group
//! by, a filter value (exact text or a glob, parsed here once), the words of a text search, and
//! the shapes of the answers (a histogram bucket, a summary and its sample, what retention
//! deleted).

use crate::events::Effect;

/// An audit field a query filters on (or a summary groups by), by its name in `docs/audit.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuditField {
    Container,
    Image,
    Type,
    Effect,
    Rule,
    Attack,
    CustomRule,
    Task,
    Cluster,
    Family,
    Service,
    Pid,
    Process,
    Cmdline,
    Parent,
    Domain,
    Ip,
    Port,
    /// The token that delivered the event (the console's, not the event's).
    Source,
    Method,
    Url,
    SourceIp,
    Field,
    RequestId,
}

impl AuditField {
    pub const ALL: [AuditField; 24] = [
        AuditField::Container,
        AuditField::Image,
        AuditField::Type,
        AuditField::Effect,
        AuditField::Rule,
        AuditField::Attack,
        AuditField::CustomRule,
        AuditField::Task,
        AuditField::Cluster,
        AuditField::Family,
        AuditField::Service,
        AuditField::Pid,
        AuditField::Process,
        AuditField::Cmdline,
        AuditField::Parent,
        AuditField::Domain,
        AuditField::Ip,
        AuditField::Port,
        AuditField::Source,
        AuditField::Method,
        AuditField::Url,
        AuditField::SourceIp,
        AuditField::Field,
        AuditField::RequestId,
    ];

    /// The fields a summary (`stats?group=`) may group by.
    pub const GROUPS: [AuditField; 8] = [
        AuditField::Container,
        AuditField::Image,
        AuditField::Rule,
        AuditField::Attack,
        AuditField::Type,
        AuditField::Effect,
        AuditField::Domain,
        AuditField::Process,
    ];

    /// The name in events and in query strings.
    pub fn name(self) -> &'static str {
        match self {
            AuditField::Container => "container",
            AuditField::Image => "image",
            AuditField::Type => "type",
            AuditField::Effect => "effect",
            AuditField::Rule => "rule",
            AuditField::Attack => "attack",
            AuditField::CustomRule => "customRule",
            AuditField::Task => "task",
            AuditField::Cluster => "cluster",
            AuditField::Family => "family",
            AuditField::Service => "service",
            AuditField::Pid => "pid",
            AuditField::Process => "process",
            AuditField::Cmdline => "cmdline",
            AuditField::Parent => "parent",
            AuditField::Domain => "domain",
            AuditField::Ip => "ip",
            AuditField::Port => "port",
            AuditField::Source => "source",
            AuditField::Method => "method",
            AuditField::Url => "url",
            AuditField::SourceIp => "sourceIp",
            AuditField::Field => "field",
            AuditField::RequestId => "requestId",
        }
    }

    pub fn parse(name: &str) -> Option<AuditField> {
        AuditField::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether the field holds a number (`pid`, `port`): an exact value must be one.
    pub fn numeric(self) -> bool {
        matches!(self, AuditField::Pid | AuditField::Port)
    }
}

/// A filter's value: exact text, or a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Glob(Vec<GlobPart>),
}

/// One piece of a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobPart {
    /// Characters matched as they are.
    Text(String),
    /// `*`: any run of characters, `/` included.
    Any,
    /// `?`: one character.
    One,
    /// `[...]`: one character of the set (`negated`: `[!...]`, not of it). `set` is kept as
    /// written: single characters and ranges `a-z`, a leading `]` or a leading or trailing `-`
    /// being themselves.
    Class { negated: bool, set: String },
}

/// The characters that make a filter value a glob, or that a backslash makes literal.
const SPECIAL: [char; 7] = ['*', '?', '[', ']', '{', '}', '\\'];

impl Pattern {
    /// A filter value: a glob when it holds `*`, `?` or `[...]` outside a backslash escape, else
    /// the exact text (backslashes removed: `a\*` is exactly `a*`).
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        let flush = |literal: &mut String, parts: &mut Vec<GlobPart>| {
            if !literal.is_empty() {
                parts.push(GlobPart::Text(std::mem::take(literal)));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped) => literal.push(escaped),
                    None => return Err("a glob cannot end with a lone `\\`".into()),
                },
                '*' => {
                    flush(&mut literal, &mut parts);
                    // `**` is `*`: both cross `/`.
                    if parts.last() != Some(&GlobPart::Any) {
                        parts.push(GlobPart::Any);
                    }
                }
                '?' => {
                    flush(&mut literal, &mut parts);
                    parts.push(GlobPart::One);
                }
                '[' => {
                    flush(&mut literal, &mut parts);
                    parts.push(class(&mut chars)?);
                }
                '{' | '}' => {
                    return Err(format!(
                        "`{c}`: alternatives `{{a,b}}` are not supported in filters; write `\\{c}` \
                         for the character"
                    ));
                }
                c => literal.push(c),
            }
        }
        if parts.is_empty() {
            return Ok(Pattern::Exact(literal));
        }
        flush(&mut literal, &mut parts);
        Ok(Pattern::Glob(parts))
    }

    /// The filter value that matches exactly `text`: its glob characters escaped.
    pub fn literal(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if SPECIAL.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// Whether the glob matches `text`: the reference the stores' translations are tested
    /// against, and how a store picks the values of an index a glob matches.
    pub fn matches(&self, text: &str) -> bool {
        /// One character of the glob to match, or `*`.
        enum One<'a> {
            Char(char),
            Any,
            Some,
            Class(bool, &'a str),
        }
        fn in_set(set: &str, c: char) -> bool {
            let s: Vec<char> = set.chars().collect();
            let mut i = 0;
            while i < s.len() {
                if i + 2 < s.len() && s[i + 1] == '-' {
                    if (s[i]..=s[i + 2]).contains(&c) {
                        return true;
                    }
                    i += 3;
                } else {
                    if s[i] == c {
                        return true;
                    }
                    i += 1;
                }
            }
            false
        }
        let parts = match self {
            Pattern::Exact(t) => return t == text,
            Pattern::Glob(parts) => parts,
        };
        let glob: Vec<One<'_>> = parts
            .iter()
            .flat_map(|part| match part {
                GlobPart::Text(t) => t.chars().map(One::Char).collect(),
                GlobPart::Any => vec![One::Any],
                GlobPart::One => vec![One::Some],
                GlobPart::Class { negated, set } => vec![One::Class(*negated, set)],
            })
            .collect();
        let text: Vec<char> = text.chars().collect();
        // Greedy, going back only to the last `*` (which may then take one character more):
        // time linear in the text for each glob character, whatever the text and the glob, where
        // trying every split at every `*` is exponential in the number of `*`s.
        let (mut g, mut t) = (0, 0);
        let mut last_any: Option<(usize, usize)> = None;
        while t < text.len() {
            let here = glob.get(g).map(|one| match one {
                One::Char(c) => *c == text[t],
                One::Some => true,
                One::Class(negated, set) => in_set(set, text[t]) != *negated,
                One::Any => false,
            });
            if here == Some(true) {
                (g, t) = (g + 1, t + 1);
            } else if matches!(glob.get(g), Some(One::Any)) {
                last_any = Some((g + 1, t));
                g += 1;
            } else if let Some((after, from)) = last_any {
                last_any = Some((after, from + 1));
                (g, t) = (after, from + 1);
            } else {
                return false;
            }
        }
        glob[g..].iter().all(|one| matches!(one, One::Any))
    }
}

/// The rest of a `[...]` class, after its `[`.
fn class(chars: &mut std::str::Chars<'_>) -> Result<GlobPart, String> {
    let mut set = String::new();
    let mut negated = false;
    let mut first = true;
    loop {
        let c = chars
            .next()
            .ok_or("`[` opens a class that no `]` closes (write `\\[` for the character)")?;
        match c {
            '!' | '^' if first && !negated => {
                negated = true;
                continue;
            }
            ']' if !first => break,
            c => set.push(c),
        }
        first = false;
    }
    Ok(GlobPart::Class { negated, set })
}

/// A text search (`q`): every term must occur in the event's message, command line, process,
/// domain, ip or url (not necessarily the same one). Letters and digits make words, anything else
/// separates them, and case does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    pub terms: Vec<Term>,
}

/// Words that must occur one after the other (one word, a word written with punctuation such as
/// `/bin/sh` or `10.0.0.5`, or a quoted phrase).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// As the person wrote it; its punctuation only separates its words.
    pub text: String,
    /// Whether its last word may be the beginning of a longer one (`cur` finds `curl`): an
    /// unquoted term's is, a quoted phrase's is not.
    pub prefix: bool,
}

impl Search {
    /// `q`'s terms: whitespace separates them, and a `"..."` run is one term (a phrase); an
    /// unclosed quote runs to the end. A term without letters or digits searches nothing and is
    /// dropped; text with no term at all is an error. No character is an operator.
    pub fn parse(q: &str) -> Result<Search, String> {
        let mut terms = Vec::new();
        let mut rest = q;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let (text, prefix, after) = if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], false, quoted.get(end + 1..).unwrap_or(""))
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], true, &rest[end..])
            };
            if text.chars().any(char::is_alphanumeric) {
                terms.push(Term {
                    text: text.to_owned(),
                    prefix,
                });
            }
            rest = after;
        }
        if terms.is_empty() {
            return Err(format!("{q:?} has no letter or digit to search for"));
        }
        Ok(Search { terms })
    }
}

/// Which audit events to return (newest first), count or summarise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Conditions on fields, all of which must hold (an event without the field matches none).
    pub fields: Vec<(AuditField, Pattern)>,
    pub search: Option<Search>,
    /// `since <= time < until`.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Of the events (or of a summary's rows).
    pub limit: u32,
    pub offset: u32,
}

impl AuditQuery {
    /// This query with one more condition.
    pub fn with(mut self, field: AuditField, pattern: Pattern) -> AuditQuery {
        self.fields.push((field, pattern));
        self
    }
}

/// Events of one effect in one histogram bucket: `count` sums their `count` fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// RFC 3339 UTC, whole seconds.
    pub start: String,
    pub count: u64,
    pub effect: Effect,
}

/// A summary's rows, and whether they were computed over a sample: `sampled` is the number of
/// newest matching events read when more matched (the rollup could not answer and reading them
/// all would not be bounded); `None` when every matching event counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary<T> {
    pub rows: T,
    pub sampled: Option<u64>,
}

/// What one retention sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub audits: u64,
    pub activity: u64,
    pub defenders: u64,
    pub observations: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> GlobPart {
        GlobPart::Text(t.into())
    }

    #[test]
    fn filter_values_parse_as_exact_text_or_globs() {
        let class = |negated, set: &str| GlobPart::Class {
            negated,
            set: set.into(),
        };
        let cases: &[(&str, Result<Pattern, &str>)] = &[
            ("orders", Ok(Pattern::Exact("orders".into()))),
            ("", Ok(Pattern::Exact("".into()))),
            (r"a\*b\?", Ok(Pattern::Exact("a*b?".into()))),
            (r"x\\y", Ok(Pattern::Exact(r"x\y".into()))),
            (
                "orders-*",
                Ok(Pattern::Glob(vec![text("orders-"), GlobPart::Any])),
            ),
            (
                "a**b",
                Ok(Pattern::Glob(vec![text("a"), GlobPart::Any, text("b")])),
            ),
            ("?x", Ok(Pattern::Glob(vec![GlobPart::One, text("x")]))),
            (
                "[a-c]1",
                Ok(Pattern::Glob(vec![class(false, "a-c"), text("1")])),
            ),
            ("[!x]", Ok(Pattern::Glob(vec![class(true, "x")]))),
            ("[^x]", Ok(Pattern::Glob(vec![class(true, "x")]))),
            ("[]x]", Ok(Pattern::Glob(vec![class(false, "]x")]))),
            ("[!]]", Ok(Pattern::Glob(vec![class(true, "]")]))),
            (r"a\[*", Ok(Pattern::Glob(vec![text("a["), GlobPart::Any]))),
            ("[ab", Err("`[` opens a class")),
            ("x\\", Err("a glob cannot end")),
            ("{a,b}", Err("`{`: alternatives")),
        ];
        for (value, want) in cases {
            match (Pattern::parse(value), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{value}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{value}: {got}"),
                (got, want) => panic!("{value}: {got:?}, not {want:?}"),
            }
        }
    }

    #[test]
    fn literals_match_exactly_their_text() {
        for t in ["plain", "a*b", "[x]", r"back\slash", "{a,b}", "?", "-]"] {
            assert_eq!(
                Pattern::parse(&Pattern::literal(t)),
                Ok(Pattern::Exact(t.into()))
            );
        }
    }

    #[test]
    fn globs_match_as_documented() {
        let cases = [
            ("orders-*", "orders-api", true),
            ("orders-*", "orders-", true),
            ("orders-*", "Orders-api", false), // case counts
            ("*nginx*", "docker.io/library/nginx:1", true),
            ("/usr/bin/*", "/usr/bin/x/y", true), // `*` crosses `/`
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[!a-c]x", "bx", false),
            ("[!a-c]x", "dx", true),
            ("[]]", "]", true),
            ("[-a]", "-", true),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbx", false),
            ("a*", "a", true),
            ("*", "", true),
            ("?", "", false),
            ("a*b*c", "abxbc", true),
            ("a*?", "a", false),
            ("*ab", "aab", true),
        ];
        for (glob, text, want) in cases {
            assert_eq!(
                Pattern::parse(glob).unwrap().matches(text),
                want,
                "{glob} {text}"
            );
        }
        // A glob of many `*`s against a long stored value (both hostile) is decided at once, not
        // by trying every split of the text (which would not end).
        let many = Pattern::parse(&"*a".repeat(30)).unwrap();
        assert!(!many.matches(&format!("{}b", "a".repeat(29))));
        assert!(many.matches(&"a".repeat(10_000)));
    }

    #[test]
    fn search_terms() {
        let term = |text: &str, prefix| Term {
            text: text.into(),
            prefix,
        };
        let cases: &[(&str, Result<Vec<Term>, &str>)] = &[
            ("curl", Ok(vec![term("curl", true)])),
            (
                "  /bin/sh   10.0.0.5 ",
                Ok(vec![term("/bin/sh", true), term("10.0.0.5", true)]),
            ),
            (
                r#"wget "rm -rf" x"#,
                Ok(vec![
                    term("wget", true),
                    term("rm -rf", false),
                    term("x", true),
                ]),
            ),
            (
                r#""unclosed phrase"#,
                Ok(vec![term("unclosed phrase", false)]),
            ),
            // Operators of search syntaxes are words or punctuation here.
            (
                r#"a NEAR -b * "c" OR"#,
                Ok(vec![
                    term("a", true),
                    term("NEAR", true),
                    term("-b", true),
                    term("c", false),
                    term("OR", true),
                ]),
            ),
            ("x -- \"\"", Ok(vec![term("x", true)])),
            ("\"", Err("\"\\\"\" has no letter")),
            ("* - ()", Err("\"* - ()\" has no letter")),
        ];
        for (q, want) in cases {
            match (Search::parse(q), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got.terms, want, "{q}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{q}: {got}"),
                (got, want) => panic!("{q}: {got:?}, not {want:?}"),
            }
        }
    }
}
