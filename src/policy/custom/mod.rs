//! Custom rules (docs/policy.md, "Custom rules"): a script over the fields of one event, compiled
//! once per policy revision into a typed expression, and evaluated on plain facts. Pure: the
//! supervisor reads the facts (only the fields some script in force needs) and passes them in.
//!
//! `grammar` turns the text into a syntax tree; here each comparison is checked against the
//! field's type and the rule's event type, and becomes a test that cannot fail at run time.

mod grammar;

use std::net::IpAddr;

use ipnet::IpNet;

use grammar::{Ast, Op, Spanned, Value};

/// The event type a custom rule is written for (`type` in the document).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A program launch.
    Processes,
    /// A connect, or a send that names a destination.
    NetworkOutgoing,
    /// One DNS question.
    Dns,
    /// A bind to a port.
    Listening,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Processes,
        Kind::NetworkOutgoing,
        Kind::Dns,
        Kind::Listening,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Processes => "processes",
            Kind::NetworkOutgoing => "network-outgoing",
            Kind::Dns => "dns",
            Kind::Listening => "listening",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// A field a script can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    // The `proc.` fields in the order of what reading them costs for a launch (`FieldSet::first`):
    // the launch's own, the uid (often known without a look), the launcher's image, its terminal.
    ProcName,
    ProcPath,
    ProcCmdline,
    ProcUid,
    ProcUser,
    ProcPname,
    ProcPpath,
    ProcInteractive,
    NetOutgoingIp,
    NetOutgoingPort,
    NetProtocol,
    NetListeningPort,
    DnsName,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Str,
    Int,
    Bool,
    Addr,
}

/// Every field: its name, type, and the event types that have it.
const FIELDS: &[(&str, Field, Type, &[Kind])] = {
    use Kind::*;
    const ALL: &[Kind] = &[Processes, NetworkOutgoing, Dns, Listening];
    &[
        ("proc.name", Field::ProcName, Type::Str, ALL),
        ("proc.path", Field::ProcPath, Type::Str, ALL),
        ("proc.cmdline", Field::ProcCmdline, Type::Str, ALL),
        ("proc.pname", Field::ProcPname, Type::Str, ALL),
        ("proc.ppath", Field::ProcPpath, Type::Str, ALL),
        ("proc.user", Field::ProcUser, Type::Str, ALL),
        ("proc.uid", Field::ProcUid, Type::Int, ALL),
        ("proc.interactive", Field::ProcInteractive, Type::Bool, ALL),
        (
            "net.outgoing_ip",
            Field::NetOutgoingIp,
            Type::Addr,
            &[NetworkOutgoing],
        ),
        (
            "net.outgoing_port",
            Field::NetOutgoingPort,
            Type::Int,
            &[NetworkOutgoing],
        ),
        (
            "net.protocol",
            Field::NetProtocol,
            Type::Str,
            &[NetworkOutgoing, Listening],
        ),
        (
            "net.listening_port",
            Field::NetListeningPort,
            Type::Int,
            &[Listening],
        ),
        ("dns.name", Field::DnsName, Type::Str, &[Dns]),
    ]
};

/// The values `net.protocol` takes: comparing it with anything else is a typo.
const PROTOCOLS: &[&str] = &["tcp", "udp", "raw"];

impl Field {
    pub fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f, _, _)| *f == self)
            .map(|(name, ..)| *name)
            .expect("every field is in FIELDS")
    }
}

/// A set of fields: what the scripts of a rule read, so that the supervisor reads nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(u16);

impl FieldSet {
    /// The set of these fields.
    pub const fn of(fields: &[Field]) -> FieldSet {
        let mut bits = 0;
        let mut i = 0;
        while i < fields.len() {
            bits |= 1 << fields[i] as u16;
            i += 1;
        }
        FieldSet(bits)
    }

    pub fn contains(self, field: Field) -> bool {
        self.0 & (1 << field as u16) != 0
    }

    pub fn insert(&mut self, field: Field) {
        self.0 |= 1 << field as u16;
    }

    /// The `proc.*` fields of the set: the facts about a process, which the supervisor reads
    /// (the others are the event's own).
    pub fn process(self) -> FieldSet {
        const PROCESS: FieldSet = FieldSet::of(&[
            Field::ProcName,
            Field::ProcPath,
            Field::ProcCmdline,
            Field::ProcPname,
            Field::ProcPpath,
            Field::ProcUser,
            Field::ProcUid,
            Field::ProcInteractive,
        ]);
        self.intersection(PROCESS)
    }

    /// The set of its first field in the order of `Field` (empty if it is empty): the order of the
    /// `proc.` fields is that of the cost of reading them for a launch, the launch's own first.
    pub fn first(self) -> FieldSet {
        FieldSet(self.0 & self.0.wrapping_neg())
    }

    /// The fields of this set that are not in `other`.
    pub fn without(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 & !other.0)
    }

    /// The fields in both sets.
    pub fn intersection(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 & other.0)
    }

    /// Whether every field of `other` is in this set.
    pub fn covers(self, other: FieldSet) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The process an event is about: for a launch, the program being launched (its parent is the
/// program launching it); for the other events, the calling program (and its parent process).
/// Fields no script in force reads may be left empty; fields not read yet are in `unread`, and a
/// script that needs one of them is undecided until it is read ([`Script::eval`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Process {
    pub name: String,
    pub path: String,
    pub cmdline: String,
    pub pname: String,
    pub ppath: String,
    pub user: String,
    pub uid: u32,
    pub interactive: bool,
    /// The `proc.` fields not read (yet): their values above mean nothing.
    pub unread: FieldSet,
}

/// `net.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Raw,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Raw => "raw",
        }
    }
}

/// What an event is, beyond its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    Launch,
    Outgoing {
        ip: IpAddr,
        port: u16,
        protocol: Protocol,
    },
    Listening {
        port: u16,
        protocol: Protocol,
    },
    Dns {
        name: &'a str,
    },
}

impl Subject<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Subject::Launch => Kind::Processes,
            Subject::Outgoing { .. } => Kind::NetworkOutgoing,
            Subject::Listening { .. } => Kind::Listening,
            Subject::Dns { .. } => Kind::Dns,
        }
    }
}

/// One event, as a script sees it.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub process: &'a Process,
    pub subject: Subject<'a>,
}

/// A compiled script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    kind: Kind,
    expr: Expr,
    fields: FieldSet,
}

/// A typed expression: every test compares a field with values of its own type.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Any(Vec<Expr>),
    All(Vec<Expr>),
    Not(Box<Expr>),
    /// True if the field compares true with any of the values (one, except for `in`).
    Str(Field, StrOp, Vec<String>),
    Int(Field, IntOp, Vec<u64>),
    Bool(Field, bool),
    /// The address is in any of the networks (a single address is a /32 or /128).
    Addr(Field, Vec<IpNet>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrOp {
    Eq,
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntOp {
    Eq,
    Gt,
    Lt,
    Ge,
    Le,
}

/// Why a script does not compile: the byte offset in the script, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    pub at: usize,
    pub message: String,
}

impl ScriptError {
    /// The line and column of the error in `script`, both from 1, the column in characters.
    pub fn position(&self, script: &str) -> (usize, usize) {
        let before = &script[..self.at.min(script.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, column)
    }
}

/// Compiles the script of a custom rule of type `kind`.
pub fn compile(kind: Kind, script: &str) -> Result<Script, ScriptError> {
    let ast = grammar::parse(script).map_err(|e| ScriptError {
        at: e.at,
        message: e.message,
    })?;
    let mut fields = FieldSet::default();
    let expr = typed(kind, &ast, &mut fields)?;
    Ok(Script { kind, expr, fields })
}

fn typed(kind: Kind, ast: &Ast, fields: &mut FieldSet) -> Result<Expr, ScriptError> {
    let all = |list: &[Ast], fields: &mut FieldSet| -> Result<Vec<Expr>, ScriptError> {
        list.iter().map(|a| typed(kind, a, fields)).collect()
    };
    Ok(match ast {
        Ast::Or(list) => Expr::Any(all(list, fields)?),
        Ast::And(list) => Expr::All(all(list, fields)?),
        Ast::Not(a) => Expr::Not(Box::new(typed(kind, a, fields)?)),
        Ast::Bare(name) => {
            let (field, ty) = field_of(kind, name)?;
            if ty != Type::Bool {
                return Err(ScriptError {
                    at: name.at,
                    message: format!(
                        "{} is not a boolean: compare it with a value (e.g. {} = ...)",
                        name.value, name.value
                    ),
                });
            }
            fields.insert(field);
            Expr::Bool(field, true)
        }
        Ast::Compare {
            field: name,
            op,
            values,
        } => {
            let (field, ty) = field_of(kind, name)?;
            fields.insert(field);
            let test = comparison(field, ty, name, *op, values)?;
            if *op == Op::Ne {
                Expr::Not(Box::new(test))
            } else {
                test
            }
        }
    })
}

fn field_of(kind: Kind, name: &Spanned<String>) -> Result<(Field, Type), ScriptError> {
    let error = |message| ScriptError {
        at: name.at,
        message,
    };
    let Some((_, field, ty, kinds)) = FIELDS.iter().find(|(n, ..)| *n == name.value) else {
        let known: Vec<&str> = FIELDS
            .iter()
            .filter(|(.., kinds)| kinds.contains(&kind))
            .map(|(n, ..)| *n)
            .collect();
        return Err(error(format!(
            "unknown field {}: a {} rule has {}",
            name.value,
            kind.as_str(),
            known.join(", ")
        )));
    };
    if !kinds.contains(&kind) {
        let types: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        return Err(error(format!(
            "{} is a field of {} events, not of {} events",
            name.value,
            types.join(" and "),
            kind.as_str()
        )));
    }
    Ok((*field, *ty))
}

/// One comparison, checked against the field's type.
fn comparison(
    field: Field,
    ty: Type,
    name: &Spanned<String>,
    op: Op,
    values: &[Spanned<Value>],
) -> Result<Expr, ScriptError> {
    let fname = name.value.as_str();
    let op_error = |takes: &str| ScriptError {
        at: name.at,
        message: format!(
            "{fname} cannot be compared with \"{}\": it takes {takes}",
            op.as_str()
        ),
    };
    let value_error = |v: &Spanned<Value>, what: &str| ScriptError {
        at: v.at,
        message: format!("{fname} compares with {what}, not {}", v.value),
    };
    match ty {
        Type::Str => {
            let op = match op {
                Op::Eq | Op::Ne | Op::In => StrOp::Eq,
                Op::StartsWith => StrOp::StartsWith,
                Op::EndsWith => StrOp::EndsWith,
                Op::Contains => StrOp::Contains,
                Op::Gt | Op::Lt | Op::Ge | Op::Le => {
                    return Err(op_error(
                        "=, !=, in, startswith, endswith and contains (it is a string)",
                    ));
                }
            };
            let mut strings = Vec::with_capacity(values.len());
            for v in values {
                let Value::Str(s) = &v.value else {
                    return Err(value_error(v, "strings"));
                };
                let s = match field {
                    // Names are compared lower-cased (DNS is case-insensitive, RFC 4343).
                    Field::DnsName => s.to_ascii_lowercase(),
                    Field::NetProtocol if op == StrOp::Eq && !PROTOCOLS.contains(&s.as_str()) => {
                        return Err(ScriptError {
                            at: v.at,
                            message: format!(
                                "net.protocol is one of {}, never {s:?}",
                                PROTOCOLS.join(", ")
                            ),
                        });
                    }
                    _ => s.clone(),
                };
                strings.push(s);
            }
            Ok(Expr::Str(field, op, strings))
        }
        Type::Int => {
            let op = match op {
                Op::Eq | Op::Ne | Op::In => IntOp::Eq,
                Op::Gt => IntOp::Gt,
                Op::Lt => IntOp::Lt,
                Op::Ge => IntOp::Ge,
                Op::Le => IntOp::Le,
                Op::StartsWith | Op::EndsWith | Op::Contains => {
                    return Err(op_error("=, !=, in, >, <, >= and <= (it is an integer)"));
                }
            };
            let max = match field {
                Field::ProcUid => u64::from(u32::MAX),
                _ => u64::from(u16::MAX),
            };
            let mut ints = Vec::with_capacity(values.len());
            for v in values {
                match v.value {
                    Value::Int(n) if n <= max => ints.push(n),
                    Value::Int(n) => {
                        return Err(ScriptError {
                            at: v.at,
                            message: format!("{fname} is at most {max}, so it is never {n}"),
                        });
                    }
                    _ => return Err(value_error(v, "integers")),
                }
            }
            Ok(Expr::Int(field, op, ints))
        }
        Type::Bool => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(op_error("= and != with true or false (or the field alone)"));
            }
            match values[0].value {
                Value::Bool(b) => Ok(Expr::Bool(field, b)),
                _ => Err(value_error(&values[0], "true or false")),
            }
        }
        Type::Addr => {
            if !matches!(op, Op::Eq | Op::Ne | Op::In) {
                return Err(op_error("=, != and in, with addresses or CIDRs"));
            }
            let mut nets = Vec::with_capacity(values.len());
            for v in values {
                let Value::Str(s) = &v.value else {
                    return Err(value_error(v, "an address or a CIDR in quotes"));
                };
                let net = s
                    .parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ScriptError {
                        at: v.at,
                        message: format!("{s:?} is not an IP address or a CIDR"),
                    })?;
                nets.push(net);
            }
            Ok(Expr::Addr(field, nets))
        }
    }
}

impl Script {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The fields the script reads.
    pub fn fields(&self) -> FieldSet {
        self.fields
    }

    /// Whether the script is true for an event; `None` when that depends on a field not read
    /// yet (`Process::unread`): `false and x` is false and `true or x` true whatever `x` is, so a
    /// field is needed only where it can change the outcome (Kleene's three-valued logic). An
    /// event of another type than the script's is never judged by it.
    pub fn eval(&self, facts: &Facts<'_>) -> Option<bool> {
        if facts.subject.kind() != self.kind {
            return Some(false);
        }
        self.expr.eval(facts)
    }
}

impl Expr {
    fn eval(&self, facts: &Facts<'_>) -> Option<bool> {
        let p = facts.process;
        match self {
            Expr::Any(list) => {
                let mut unknown = false;
                for e in list {
                    match e.eval(facts) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                (!unknown).then_some(false)
            }
            Expr::All(list) => {
                let mut unknown = false;
                for e in list {
                    match e.eval(facts) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                (!unknown).then_some(true)
            }
            Expr::Not(e) => e.eval(facts).map(|b| !b),
            Expr::Str(field, _, _) | Expr::Int(field, _, _) | Expr::Bool(field, _)
                if p.unread.contains(*field) =>
            {
                None
            }
            Expr::Str(field, op, values) => {
                let dns;
                let text: &str = match (field, facts.subject) {
                    (Field::ProcName, _) => &p.name,
                    (Field::ProcPath, _) => &p.path,
                    (Field::ProcCmdline, _) => &p.cmdline,
                    (Field::ProcPname, _) => &p.pname,
                    (Field::ProcPpath, _) => &p.ppath,
                    (Field::ProcUser, _) => &p.user,
                    (Field::NetProtocol, Subject::Outgoing { protocol, .. })
                    | (Field::NetProtocol, Subject::Listening { protocol, .. }) => {
                        protocol.as_str()
                    }
                    (Field::DnsName, Subject::Dns { name }) => {
                        dns = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
                        &dns
                    }
                    // A field of another event type: compilation refuses it for the script's
                    // type, and `eval` judges only events of that type.
                    _ => return Some(false),
                };
                Some(values.iter().any(|v| match op {
                    StrOp::Eq => text == v,
                    StrOp::StartsWith => text.starts_with(v.as_str()),
                    StrOp::EndsWith => text.ends_with(v.as_str()),
                    StrOp::Contains => text.contains(v.as_str()),
                }))
            }
            Expr::Int(field, op, values) => {
                let n = match (field, facts.subject) {
                    (Field::ProcUid, _) => u64::from(p.uid),
                    (Field::NetOutgoingPort, Subject::Outgoing { port, .. })
                    | (Field::NetListeningPort, Subject::Listening { port, .. }) => u64::from(port),
                    _ => return Some(false),
                };
                Some(values.iter().any(|&v| match op {
                    IntOp::Eq => n == v,
                    IntOp::Gt => n > v,
                    IntOp::Lt => n < v,
                    IntOp::Ge => n >= v,
                    IntOp::Le => n <= v,
                }))
            }
            Expr::Bool(Field::ProcInteractive, want) => Some(p.interactive == *want),
            Expr::Bool(..) => Some(false),
            Expr::Addr(_, nets) => Some(match facts.subject {
                // ::ffff:a.b.c.d is a.b.c.d, as the network section judges it.
                Subject::Outgoing { ip, .. } => {
                    let ip = ip.to_canonical();
                    nets.iter().any(|net| net.contains(&ip))
                }
                _ => false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> Process {
        Process {
            name: "nc".into(),
            path: "/usr/bin/nc.openbsd".into(),
            cmdline: "nc -l -p 4444".into(),
            pname: "sh".into(),
            ppath: "/usr/bin/dash".into(),
            user: "jake".into(),
            uid: 1000,
            interactive: false,
            unread: FieldSet::default(),
        }
    }

    #[test]
    fn evaluation() {
        let p = process();
        let launch = Facts {
            process: &p,
            subject: Subject::Launch,
        };
        let out = |ip: &str, port| Facts {
            process: &p,
            subject: Subject::Outgoing {
                ip: ip.parse().unwrap(),
                port,
                protocol: Protocol::Tcp,
            },
        };
        let dns = |name| Facts {
            process: &p,
            subject: Subject::Dns { name },
        };
        let listen = Facts {
            process: &p,
            subject: Subject::Listening {
                port: 8080,
                protocol: Protocol::Udp,
            },
        };
        use Kind::*;
        let cases: &[(Kind, &str, Facts, bool)] = &[
            (
                Processes,
                r#"proc.name in ("nc", "ncat", "netcat") and proc.cmdline contains " -l""#,
                launch,
                true,
            ),
            (
                Processes,
                r#"proc.name in ("ncat", "netcat")"#,
                launch,
                false,
            ),
            (
                Processes,
                r#"proc.user = "jake" and proc.uid >= 1000"#,
                launch,
                true,
            ),
            (Processes, "proc.uid > 1000", launch, false),
            (
                Processes,
                "proc.uid < 1001 and proc.uid <= 1000",
                launch,
                true,
            ),
            (
                Processes,
                r#"proc.path startswith "/usr/bin/""#,
                launch,
                true,
            ),
            (Processes, r#"proc.path endswith ".openbsd""#, launch, true),
            (Processes, r#"proc.path = "/usr/bin/nc""#, launch, false),
            (Processes, r#"proc.pname != "sh""#, launch, false),
            (Processes, r#"proc.ppath != "/bin/sh""#, launch, true),
            // case-sensitive strings
            (Processes, r#"proc.name = "NC""#, launch, false),
            (Processes, "proc.interactive", launch, false),
            (Processes, "not proc.interactive", launch, true),
            (Processes, "proc.interactive = false", launch, true),
            (Processes, "proc.interactive != false", launch, false),
            // precedence: and before or; parentheses change it
            (
                Processes,
                r#"proc.uid = 0 and proc.name = "x" or proc.name = "nc""#,
                launch,
                true,
            ),
            (
                Processes,
                r#"proc.uid = 0 and (proc.name = "x" or proc.name = "nc")"#,
                launch,
                false,
            ),
            (
                Processes,
                r#"not proc.uid = 0 and proc.name = "nc""#,
                launch,
                true,
            ),
            (
                Processes,
                r#"not (proc.uid = 1000 and proc.name = "nc")"#,
                launch,
                false,
            ),
            (
                NetworkOutgoing,
                "net.outgoing_port = 22",
                out("10.1.2.3", 22),
                true,
            ),
            (
                NetworkOutgoing,
                "net.outgoing_port in (80, 443)",
                out("10.1.2.3", 22),
                false,
            ),
            (
                NetworkOutgoing,
                r#"net.outgoing_ip = "10.0.0.0/8""#,
                out("10.1.2.3", 22),
                true,
            ),
            (
                NetworkOutgoing,
                r#"net.outgoing_ip = "10.1.2.3""#,
                out("10.1.2.3", 22),
                true,
            ),
            (
                NetworkOutgoing,
                r#"net.outgoing_ip = "10.1.2.4""#,
                out("10.1.2.3", 22),
                false,
            ),
            // a mapped address is its IPv4 address
            (
                NetworkOutgoing,
                r#"net.outgoing_ip = "10.0.0.0/8""#,
                out("::ffff:10.1.2.3", 22),
                true,
            ),
            (
                NetworkOutgoing,
                r#"net.outgoing_ip != "10.0.0.0/8""#,
                out("2001:db8::1", 22),
                true,
            ),
            (
                NetworkOutgoing,
                r#"net.outgoing_ip in ("192.0.2.0/24", "2001:db8::/32")"#,
                out("2001:db8::1", 22),
                true,
            ),
            (
                NetworkOutgoing,
                r#"net.protocol = "tcp""#,
                out("10.1.2.3", 22),
                true,
            ),
            (
                Dns,
                r#"dns.name endswith ".pastebin.com""#,
                dns("Evil.PasteBin.com."),
                true,
            ),
            (
                Dns,
                r#"dns.name = "EVIL.pastebin.com""#,
                dns("evil.pastebin.com"),
                true,
            ),
            (
                Dns,
                r#"dns.name = "pastebin.com""#,
                dns("evil.pastebin.com"),
                false,
            ),
            (
                Listening,
                r#"net.listening_port = 8080 and net.protocol = "udp""#,
                listen,
                true,
            ),
            (Listening, "net.listening_port < 1024", listen, false),
            // a script judges only events of its own type
            (Processes, r#"proc.name = "nc""#, out("10.1.2.3", 22), false),
            (NetworkOutgoing, "not net.outgoing_port = 1", launch, false),
        ];
        for (kind, script, facts, want) in cases {
            let compiled = compile(*kind, script).unwrap_or_else(|e| panic!("{script}: {e:?}"));
            assert_eq!(compiled.eval(facts), Some(*want), "{script}");
        }
    }

    /// A field not read makes a script undecided only where it can change the outcome.
    #[test]
    fn unread_fields() {
        let mut p = process();
        for f in [Field::ProcUser, Field::ProcInteractive] {
            p.unread.insert(f);
        }
        let launch = Facts {
            process: &p,
            subject: Subject::Launch,
        };
        let cases: &[(&str, Option<bool>)] = &[
            (r#"proc.user = "jake""#, None),
            (r#"not proc.user = "jake""#, None),
            (r#"proc.name = "x" and proc.user = "jake""#, Some(false)),
            (r#"proc.user = "jake" and proc.name = "x""#, Some(false)),
            (r#"proc.name = "nc" and proc.user = "jake""#, None),
            (r#"proc.name = "nc" or proc.interactive"#, Some(true)),
            (r#"proc.interactive or proc.name = "nc""#, Some(true)),
            (r#"proc.name = "x" or proc.interactive"#, None),
            (r#"not (proc.name = "x" and proc.interactive)"#, Some(true)),
            (r#"proc.uid = 1000"#, Some(true)),
        ];
        for (script, want) in cases {
            let compiled = compile(Kind::Processes, script).unwrap();
            assert_eq!(compiled.eval(&launch), *want, "{script}");
        }
    }

    #[test]
    fn fields_read() {
        let s = compile(
            Kind::NetworkOutgoing,
            r#"proc.cmdline contains "x" or not (net.outgoing_port = 1 and proc.interactive)"#,
        )
        .unwrap();
        let f = s.fields();
        assert!(f.contains(Field::ProcCmdline) && f.contains(Field::NetOutgoingPort));
        assert!(f.contains(Field::ProcInteractive) && !f.contains(Field::ProcName));
    }

    #[test]
    fn type_errors() {
        use Kind::*;
        let cases: &[(Kind, &str, &str)] = &[
            (
                NetworkOutgoing,
                r#"net.outgoing_port = "x""#,
                r#"script:1:21: net.outgoing_port compares with integers, not "x""#,
            ),
            (
                Processes,
                "proc.name = 3",
                "script:1:13: proc.name compares with strings, not 3",
            ),
            (
                Processes,
                "proc.nmae = \"x\"",
                "script:1:1: unknown field proc.nmae: a processes rule has proc.name, proc.path, \
                 proc.cmdline, proc.pname, proc.ppath, proc.user, proc.uid, proc.interactive",
            ),
            (
                Dns,
                "proc.uid = 0 and\n  net.outgoing_port = 22",
                "script:2:3: net.outgoing_port is a field of network-outgoing events, not of dns events",
            ),
            (
                Processes,
                "proc.name > \"a\"",
                "script:1:1: proc.name cannot be compared with \">\": it takes =, !=, in, \
                 startswith, endswith and contains (it is a string)",
            ),
            (
                Listening,
                "net.listening_port contains 80",
                "script:1:1: net.listening_port cannot be compared with \"contains\": it takes =, \
                 !=, in, >, <, >= and <= (it is an integer)",
            ),
            (
                Listening,
                "net.listening_port = 70000",
                "script:1:22: net.listening_port is at most 65535, so it is never 70000",
            ),
            (
                Processes,
                "proc.name",
                "script:1:1: proc.name is not a boolean: compare it with a value (e.g. proc.name = ...)",
            ),
            (
                Processes,
                "proc.interactive = 1",
                "script:1:20: proc.interactive compares with true or false, not 1",
            ),
            (
                Processes,
                "proc.interactive startswith true",
                "script:1:1: proc.interactive cannot be compared with \"startswith\": it takes = and != \
                 with true or false (or the field alone)",
            ),
            (
                NetworkOutgoing,
                r#"net.outgoing_ip = "10.0.0.300""#,
                r#"script:1:19: "10.0.0.300" is not an IP address or a CIDR"#,
            ),
            (
                NetworkOutgoing,
                r#"net.outgoing_ip startswith "10.""#,
                "script:1:1: net.outgoing_ip cannot be compared with \"startswith\": it takes =, != \
                 and in, with addresses or CIDRs",
            ),
            (
                NetworkOutgoing,
                r#"net.protocol = "TCP""#,
                r#"script:1:16: net.protocol is one of tcp, udp, raw, never "TCP""#,
            ),
            (
                Processes,
                "proc.name = \"é\" and proc.nope",
                "script:1:21: unknown field proc.nope: a processes rule has proc.name, proc.path, \
                 proc.cmdline, proc.pname, proc.ppath, proc.user, proc.uid, proc.interactive",
            ),
        ];
        for (kind, script, want) in cases {
            let e = compile(*kind, script).expect_err(script);
            let (line, column) = e.position(script);
            let located = format!("script:{line}:{column}: {}", e.message);
            assert_eq!(located, *want, "{script}");
        }
    }
}
