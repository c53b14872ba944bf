//! The custom rule grammar (docs/policy.md, "Custom rules"): text to a syntax tree, with the byte
//! offset of every field and value kept for the errors of the next step (types, fields per event).
//!
//! Built on `winnow`'s combinators. Keywords and field names are case-insensitive words; once a
//! parser has committed (after an operator, `in`, `not` or `(`), a failure is final (`cut_err`), so
//! the error names what was expected there instead of a vague failure at the start.

use winnow::ascii::{digit1, multispace0};
use winnow::combinator::{alt, cut_err, eof, opt, preceded, separated, terminated};
use winnow::error::{ContextError, ErrMode, ParseError, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::stream::{LocatingSlice, Location};
use winnow::token::{one_of, take_while};

type Input<'a> = LocatingSlice<&'a str>;
type Result<T> = winnow::ModalResult<T>;

/// A parsed script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ast {
    Or(Vec<Ast>),
    And(Vec<Ast>),
    Not(Box<Ast>),
    /// `FIELD OP value` (one value) or `FIELD in (values)`.
    Compare {
        field: Spanned<String>,
        op: Op,
        values: Vec<Spanned<Value>>,
    },
    /// A field alone: true when the (boolean) field is.
    Bare(Spanned<String>),
}

/// Something with the byte offset where it starts in the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub at: usize,
    pub value: T,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    StartsWith,
    EndsWith,
    Contains,
    In,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
            Op::Contains => "contains",
            Op::In => "in",
        }
    }

    /// What the parser expects after this operator, as an error says it.
    fn value_expected(self) -> &'static str {
        match self {
            Op::Eq => "a value after \"=\"",
            Op::Ne => "a value after \"!=\"",
            Op::Gt => "a value after \">\"",
            Op::Lt => "a value after \"<\"",
            Op::Ge => "a value after \">=\"",
            Op::Le => "a value after \"<=\"",
            Op::StartsWith => "a value after \"startswith\"",
            Op::EndsWith => "a value after \"endswith\"",
            Op::Contains => "a value after \"contains\"",
            Op::In => "a value in the list after \"in\"",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A syntax error: where (byte offset) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: usize,
    pub message: String,
}

/// The words that are not field names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "startswith",
    "endswith",
    "contains",
    "true",
    "false",
];

/// Parses a whole script.
pub fn parse(script: &str) -> std::result::Result<Ast, SyntaxError> {
    terminated(
        expr,
        (
            multispace0,
            eof.context(expected("\"and\", \"or\" or the end of the script")),
        ),
    )
    .parse(LocatingSlice::new(script))
    .map_err(|e| syntax_error(script, &e))
}

fn syntax_error(script: &str, e: &ParseError<Input<'_>, ContextError>) -> SyntaxError {
    let mut at = e.offset();
    let inner = e.inner();
    // The error is reported at the first character that is not blank: "expected a value" points
    // at what stands there instead (or at the end).
    at += script[at..].len() - script[at..].trim_start().len();
    let expected: Vec<String> = inner
        .context()
        .filter_map(|c| match c {
            StrContext::Expected(v) => Some(v.to_string()),
            _ => None,
        })
        .collect();
    let label = inner.context().find_map(|c| match c {
        StrContext::Label(l) => Some(*l),
        _ => None,
    });
    let found = match script[at..].chars().next() {
        None => "the end of the script".to_owned(),
        Some(_) => format!("'{}'", token_at(&script[at..])),
    };
    let message = match (label, expected.first()) {
        (Some(label), _) => label.to_owned(),
        (None, Some(what)) => format!("expected {what}, found {found}"),
        (None, None) => format!("unexpected {found}"),
    };
    SyntaxError { at, message }
}

/// The token that starts `rest`, for an error: a word, or one character.
fn token_at(rest: &str) -> &str {
    let word = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    if word > 0 {
        &rest[..word]
    } else {
        let len = rest.chars().next().map_or(0, char::len_utf8);
        &rest[..len]
    }
}

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

fn expr(i: &mut Input<'_>) -> Result<Ast> {
    chain(i, "or", and, Ast::Or)
}

fn and(i: &mut Input<'_>) -> Result<Ast> {
    chain(i, "and", unary, Ast::And)
}

/// `term ( OP term )*` for the keyword `op`; one term alone is itself. After the keyword a term
/// must follow (`cut_err`), so `a = 1 and` says a field is missing, not that `and` is unexpected.
fn chain<'a>(
    i: &mut Input<'a>,
    op: &'static str,
    term: fn(&mut Input<'a>) -> Result<Ast>,
    many: fn(Vec<Ast>) -> Ast,
) -> Result<Ast> {
    let mut terms = vec![term(i)?];
    while opt(keyword(op)).parse_next(i)?.is_some() {
        terms.push(cut_err(term).parse_next(i)?);
    }
    Ok(if terms.len() == 1 {
        terms.remove(0)
    } else {
        many(terms)
    })
}

fn unary(i: &mut Input<'_>) -> Result<Ast> {
    let operand = expected("a field, \"not\" or \"(\"");
    alt((
        preceded(keyword("not"), cut_err(unary.context(operand.clone())))
            .map(|a| Ast::Not(Box::new(a))),
        preceded(
            (multispace0, '('),
            cut_err(terminated(
                expr.context(operand.clone()),
                (multispace0, ')').context(expected("\"and\", \"or\" or \")\"")),
            )),
        ),
        compare,
    ))
    .context(operand)
    .parse_next(i)
}

fn compare(i: &mut Input<'_>) -> Result<Ast> {
    let field = field(i)?;
    let Some(op) = opt(operator).parse_next(i)? else {
        return Ok(Ast::Bare(field));
    };
    let values = if op == Op::In {
        preceded(
            (multispace0, '(').context(expected("\"(\" after \"in\"")),
            terminated(
                separated(
                    1..,
                    value.context(expected(op.value_expected())),
                    (multispace0, ','),
                ),
                (multispace0, ')').context(expected("\",\" or \")\" in the list after \"in\"")),
            ),
        )
        .parse_next(i)
    } else {
        value
            .context(expected(op.value_expected()))
            .parse_next(i)
            .map(|v| vec![v])
    };
    let values = values.map_err(ErrMode::cut)?;
    Ok(Ast::Compare { field, op, values })
}

/// A word that is not a keyword: a field name, lower-cased.
fn field(i: &mut Input<'_>) -> Result<Spanned<String>> {
    multispace0.parse_next(i)?;
    let at = i.current_token_start();
    let w = word
        .verify(|w: &str| !KEYWORDS.contains(&w.to_ascii_lowercase().as_str()))
        .parse_next(i)?;
    Ok(Spanned {
        at,
        value: w.to_ascii_lowercase(),
    })
}

/// Letters, digits, `_` and `.`, starting with a letter.
fn word<'a>(i: &mut Input<'a>) -> Result<&'a str> {
    (
        one_of(|c: char| c.is_ascii_alphabetic()),
        take_while(0.., |c: char| {
            c.is_ascii_alphanumeric() || c == '_' || c == '.'
        }),
    )
        .take()
        .parse_next(i)
}

/// A keyword, whatever its case, as a whole word.
fn keyword<'a>(name: &'static str) -> impl Parser<Input<'a>, (), ErrMode<ContextError>> {
    move |i: &mut Input<'a>| {
        preceded(multispace0, word)
            .verify(|w: &str| w.eq_ignore_ascii_case(name))
            .void()
            .parse_next(i)
    }
}

fn operator(i: &mut Input<'_>) -> Result<Op> {
    multispace0.parse_next(i)?;
    alt((
        ">=".value(Op::Ge),
        "<=".value(Op::Le),
        "!=".value(Op::Ne),
        "=".value(Op::Eq),
        ">".value(Op::Gt),
        "<".value(Op::Lt),
        word.verify_map(|w: &str| match w.to_ascii_lowercase().as_str() {
            "startswith" => Some(Op::StartsWith),
            "endswith" => Some(Op::EndsWith),
            "contains" => Some(Op::Contains),
            "in" => Some(Op::In),
            _ => None,
        }),
    ))
    .parse_next(i)
}

fn value(i: &mut Input<'_>) -> Result<Spanned<Value>> {
    multispace0.parse_next(i)?;
    let at = i.current_token_start();
    let value = alt((
        string.map(Value::Str),
        digit1.try_map(str::parse::<u64>).map(Value::Int),
        word.verify_map(|w: &str| match w.to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        }),
    ))
    .parse_next(i)?;
    Ok(Spanned { at, value })
}

/// A double-quoted string with `\"` and `\\` escapes; anything else after `\` is an error, so
/// that a pattern written for another escaping (`\n`, `\.`) is not silently read differently.
fn string(i: &mut Input<'_>) -> Result<String> {
    '"'.parse_next(i)?;
    let mut out = String::new();
    loop {
        let chunk = take_while(0.., |c| c != '"' && c != '\\').parse_next(i)?;
        out.push_str(chunk);
        let end = cut_err(one_of(['"', '\\']).context(StrContext::Label(
            "unterminated string: a closing '\"' is missing",
        )))
        .parse_next(i)?;
        if end == '"' {
            return Ok(out);
        }
        let escaped = cut_err(one_of(['"', '\\']).context(StrContext::Label(
            "unknown escape in a string: only \\\" and \\\\ are escapes",
        )))
        .parse_next(i)?;
        out.push(escaped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, at: usize, op: Op, values: &[(usize, Value)]) -> Ast {
        Ast::Compare {
            field: Spanned {
                at,
                value: field.to_owned(),
            },
            op,
            values: values
                .iter()
                .map(|(at, v)| Spanned {
                    at: *at,
                    value: v.clone(),
                })
                .collect(),
        }
    }

    fn s(v: &str) -> Value {
        Value::Str(v.to_owned())
    }

    #[test]
    fn trees() {
        let bare = |at, f: &str| {
            Ast::Bare(Spanned {
                at,
                value: f.to_owned(),
            })
        };
        let cases: Vec<(&str, Ast)> = vec![
            (
                r#"proc.name = "nc""#,
                cmp("proc.name", 0, Op::Eq, &[(12, s("nc"))]),
            ),
            (
                // keywords and fields in any case; the value keeps its case
                r#"PROC.Name StartsWith "Nc""#,
                cmp("proc.name", 0, Op::StartsWith, &[(21, s("Nc"))]),
            ),
            (
                "net.outgoing_port>=1024",
                cmp("net.outgoing_port", 0, Op::Ge, &[(19, Value::Int(1024))]),
            ),
            (
                r#"proc.name in ("nc","ncat" , "netcat")"#,
                cmp(
                    "proc.name",
                    0,
                    Op::In,
                    &[(14, s("nc")), (19, s("ncat")), (28, s("netcat"))],
                ),
            ),
            (
                // and binds tighter than or
                r#"proc.interactive or proc.uid = 0 and not proc.user = "root""#,
                Ast::Or(vec![
                    bare(0, "proc.interactive"),
                    Ast::And(vec![
                        cmp("proc.uid", 20, Op::Eq, &[(31, Value::Int(0))]),
                        Ast::Not(Box::new(cmp("proc.user", 41, Op::Eq, &[(53, s("root"))]))),
                    ]),
                ]),
            ),
            (
                "(proc.interactive or proc.uid = 0) and proc.interactive = TRUE",
                Ast::And(vec![
                    Ast::Or(vec![
                        bare(1, "proc.interactive"),
                        cmp("proc.uid", 21, Op::Eq, &[(32, Value::Int(0))]),
                    ]),
                    cmp("proc.interactive", 39, Op::Eq, &[(58, Value::Bool(true))]),
                ]),
            ),
            (
                r#"proc.cmdline contains "say \"hi\" \\ ok""#,
                cmp(
                    "proc.cmdline",
                    0,
                    Op::Contains,
                    &[(22, s(r#"say "hi" \ ok"#))],
                ),
            ),
            (
                "not not proc.interactive",
                Ast::Not(Box::new(Ast::Not(Box::new(bare(8, "proc.interactive"))))),
            ),
            (
                // a keyword needs a word boundary: "order" is no "or"
                "\n  proc.name  !=  \"x\"\n",
                cmp("proc.name", 3, Op::Ne, &[(18, s("x"))]),
            ),
        ];
        for (script, want) in cases {
            assert_eq!(parse(script), Ok(want), "{script}");
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, usize, &str)] = &[
            (
                r#"proc.name in ("nc") and proc.cmdline contains"#,
                45,
                "expected a value after \"contains\", found the end of the script",
            ),
            (
                r#"proc.name = nc"#,
                12,
                "expected a value after \"=\", found 'nc'",
            ),
            (
                "proc.name == \"x\"",
                11,
                "expected a value after \"=\", found '='",
            ),
            (
                r#"proc.name = "nc" proc.uid = 0"#,
                17,
                "expected \"and\", \"or\" or the end of the script, found 'proc.uid'",
            ),
            (
                "",
                0,
                "expected a field, \"not\" or \"(\", found the end of the script",
            ),
            (
                "proc.uid = 0 and",
                16,
                "expected a field, \"not\" or \"(\", found the end of the script",
            ),
            (
                "not and",
                4,
                "expected a field, \"not\" or \"(\", found 'and'",
            ),
            (
                "(proc.uid = 0",
                13,
                "expected \"and\", \"or\" or \")\", found the end of the script",
            ),
            (
                "proc.name in \"nc\"",
                13,
                "expected \"(\" after \"in\", found '\"'",
            ),
            (
                "proc.name in (\"nc\" \"ncat\")",
                19,
                "expected \",\" or \")\" in the list after \"in\", found '\"'",
            ),
            (
                "proc.name in ()",
                14,
                "expected a value in the list after \"in\", found ')'",
            ),
            (
                r#"proc.name = "nc"#,
                15,
                "unterminated string: a closing '\"' is missing",
            ),
            (
                r#"proc.name = "a\nb""#,
                15,
                "unknown escape in a string: only \\\" and \\\\ are escapes",
            ),
            (
                "proc.uid = 99999999999999999999999",
                11,
                "expected a value after \"=\", found '99999999999999999999999'",
            ),
        ];
        for (script, at, message) in cases {
            let e = parse(script).expect_err(script);
            assert_eq!((e.at, e.message.as_str()), (*at, *message), "{script}");
        }
    }
}
