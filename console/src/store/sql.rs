//! What the audit query plans (`lists`, `rollup`, `sample`, `audits`) need of a database, so
//! that SQLite and PostgreSQL answer every query by the same plans: a [`Reader`] that runs one
//! statement and hands its rows over one at a time (stopping when told), and the [`Dialect`]
//! the few backend-specific pieces of SQL are written in.
//!
//! The plans write their SQL with numbered parameters `?1`, `?2`, ... (SQLite's syntax); the
//! PostgreSQL reader renumbers them as `$1`, `$2`, .... No other `?` may appear in their SQL.
//! Beyond the dialect's pieces, their SQL is what both accept: `WHERE 1 = 1`, a sum read as an
//! integer cast to `BIGINT` (PostgreSQL's sum of `BIGINT`s is `numeric`), every subquery in
//! `FROM` named.

use std::collections::BTreeSet;

use super::StoreError;
use super::audits::{fts_query, sqlite_glob};
use super::query::{GlobPart, Search, Term};
use crate::events::Event;

/// A parameter or a column's value: SQLite's own value type, which is what both backends bind
/// and read (integers, text, NULL).
pub type Value = rusqlite::types::Value;

/// SQLite's statement of [`Dialect::search_between`].
pub const SQLITE_SEARCH_BETWEEN: &str =
    "SELECT rowid FROM audits_text WHERE audits_text MATCH ?1 AND rowid >= ?2 AND rowid <= ?3";

/// Which SQL the backend speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `column` matches the glob `parts`, its parameter appended to `values`: SQLite's `GLOB`,
    /// PostgreSQL's regular expression match.
    pub fn glob(self, column: &str, parts: &[GlobPart], values: &mut Vec<Value>) -> String {
        let (op, pattern) = match self {
            Dialect::Sqlite => ("GLOB", sqlite_glob(parts)),
            Dialect::Postgres => ("~", regex(parts)),
        };
        values.push(Value::Text(pattern));
        format!("{column} {op} ?{}", values.len())
    }

    /// The condition on a row of `audits` that its words hold `search`, its parameter appended
    /// to `values`: through the FTS5 table (SQLite), or the row's `words` (PostgreSQL).
    pub fn search(self, search: &Search, values: &mut Vec<Value>) -> String {
        values.push(self.words_query(search));
        let n = values.len();
        match self {
            Dialect::Sqlite => {
                format!("seq IN (SELECT rowid FROM audits_text WHERE audits_text MATCH ?{n})")
            }
            Dialect::Postgres => format!("words @@ CAST(CAST(?{n} AS TEXT) AS tsquery)"),
        }
    }

    /// The statement of the `seq`s of every event whose words hold a search (`?1`), largest
    /// first, read from the words' index alone; and its parameter. None on PostgreSQL: its GIN
    /// index holds row addresses, not `seq`s, so every match would cost a table page.
    pub fn search_seqs(self, search: &Search) -> Option<(&'static str, Value)> {
        match self {
            Dialect::Sqlite => Some((
                "SELECT rowid FROM audits_text WHERE audits_text MATCH ?1 ORDER BY rowid DESC",
                self.words_query(search),
            )),
            Dialect::Postgres => None,
        }
    }

    /// The statement of the `seq`s of the last `?2` events to arrive whose words hold a search
    /// (`?1`), largest first, read from the words' index alone and stopping there: FTS5 reads
    /// its lists from their end. `None` on PostgreSQL, whose GIN index has no order.
    pub fn search_newest(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => Some(
                "SELECT rowid FROM audits_text WHERE audits_text MATCH ?1 \
                 ORDER BY rowid DESC LIMIT ?2",
            ),
            Dialect::Postgres => None,
        }
    }

    /// The statement of the `seq`s from `?2` to `?3` of the events whose words hold a search
    /// (`?1`): FTS5 seeks to `?2` in the words' lists and stops past `?3`. `None` on PostgreSQL,
    /// whose GIN index has no order.
    pub fn search_between(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => Some(SQLITE_SEARCH_BETWEEN),
            Dialect::Postgres => None,
        }
    }

    /// The statement counting the events whose words hold a search (`?1`), and its parameter.
    pub fn search_count(self, search: &Search) -> (&'static str, Value) {
        let sql = match self {
            Dialect::Sqlite => "SELECT count(*) FROM audits_text WHERE audits_text MATCH ?1",
            Dialect::Postgres => {
                "SELECT count(*) FROM audits WHERE words @@ CAST(CAST(?1 AS TEXT) AS tsquery)"
            }
        };
        (sql, self.words_query(search))
    }

    /// A search as the backend's full-text query.
    fn words_query(self, search: &Search) -> Value {
        Value::Text(match self {
            Dialect::Sqlite => fts_query(search),
            Dialect::Postgres => tsquery(search),
        })
    }

    /// `table` in a `FROM`, read through `index`: SQLite's planner is told (where its estimates
    /// would pick another index), PostgreSQL's takes no hint.
    pub fn indexed(self, table: &str, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{table} INDEXED BY {index}"),
            Dialect::Postgres => table.to_owned(),
        }
    }

    /// `table` read by its key alone, never through one of its indexes (SQLite's `NOT INDEXED`):
    /// for rows picked by `seq` (a list of them) with other conditions, which SQLite may
    /// otherwise read through a condition's index, all of its entries, when its sampled
    /// statistics (`PRAGMA optimize` under an `analysis_limit`) put the index's range at about
    /// a thousand rows: 3,218,250 of `effect = 'prevent'` at 10,000,000 events, 0.3 s.
    pub fn by_key(self, table: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{table} NOT INDEXED"),
            Dialect::Postgres => table.to_owned(),
        }
    }

    /// The whole Unix seconds of a stored time (an RFC 3339 text column) as an integer.
    pub fn seconds(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST(strftime('%s', {column}) AS INTEGER)"),
            Dialect::Postgres => {
                format!("CAST(floor(extract(epoch FROM CAST({column} AS timestamptz))) AS BIGINT)")
            }
        }
    }
}

/// The characters a backslash makes literal in a regular expression: those special somewhere in
/// PostgreSQL's or the `regex` crate's syntax (outside or inside a bracket). A letter or digit is
/// never escaped (a backslash before one is an escape such as `\d`), nor is any other character
/// (`\<` is a word boundary to the `regex` crate).
const REGEX_SPECIAL: &str = "\\.+*?()|[]{}^$#&-~";

fn push_literal(out: &mut String, c: char) {
    if REGEX_SPECIAL.contains(c) {
        out.push('\\');
    }
    out.push(c);
}

/// A glob as a POSIX regular expression (PostgreSQL's `~`), anchored at both ends: the same
/// strings as [`Pattern::matches`](super::query::Pattern::matches). `.` is any character, a
/// newline too (PostgreSQL's default); a class's items are read as `matches` reads them (a range
/// `a-z` between two characters, any other `-` itself), each character escaped, a range whose
/// ends are reversed (matching nothing) left out.
pub fn regex(parts: &[GlobPart]) -> String {
    let mut out = String::from("^");
    for part in parts {
        match part {
            GlobPart::Text(text) => text.chars().for_each(|c| push_literal(&mut out, c)),
            GlobPart::Any => out.push_str(".*"),
            GlobPart::One => out.push('.'),
            GlobPart::Class { negated, set } => {
                let s: Vec<char> = set.chars().collect();
                let mut items = String::new();
                let mut i = 0;
                while i < s.len() {
                    if i + 2 < s.len() && s[i + 1] == '-' {
                        if s[i] <= s[i + 2] {
                            push_literal(&mut items, s[i]);
                            items.push('-');
                            push_literal(&mut items, s[i + 2]);
                        }
                        i += 3;
                    } else {
                        push_literal(&mut items, s[i]);
                        i += 1;
                    }
                }
                match (items.is_empty(), negated) {
                    // Only reversed ranges: no character is in the set.
                    (true, false) => out.push_str(".^"),
                    (true, true) => out.push('.'),
                    (false, false) => out.push_str(&format!("[{items}]")),
                    (false, true) => out.push_str(&format!("[^{items}]")),
                }
            }
        }
    }
    out.push('$');
    out
}

/// The longest word PostgreSQL takes in a `tsvector` or a `tsquery` (bytes; a longer one in a
/// query is an error).
const MAX_WORD: usize = 2046;

/// The words of a text, as the text search reads them: runs of letters and digits, lowercased;
/// for PostgreSQL, a word longer than it takes cut to its first [`MAX_WORD`] bytes (whole
/// characters), in the events' `tsvector` and in a query alike, so that it is still found.
fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut w = w.to_lowercase();
            if w.len() > MAX_WORD {
                let end = (0..=MAX_WORD).rev().find(|&i| w.is_char_boundary(i));
                w.truncate(end.unwrap_or(0));
            }
            w
        })
}

/// A search as a PostgreSQL `tsquery`: each term's words one after the other (`<->`), the last
/// word of an unquoted term a prefix (`:*`), the terms all required (`&`). Words are letters and
/// digits only, so quoting them leaves nothing of the search to be syntax.
pub fn tsquery(search: &Search) -> String {
    search
        .terms
        .iter()
        .map(|t| {
            let mut term = words_of(&t.text)
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" <-> ");
            if t.prefix {
                term.push_str(":*");
            }
            term
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// An event's searched words as PostgreSQL stores them ([`tsvector`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Words {
    /// The `tsvector` literal stored in `words`.
    pub tsvector: String,
    /// Each word of it once: the lexemes PostgreSQL keeps, which the rollup counts
    /// ([`rollup::word_changes`](super::rollup::word_changes)).
    pub lexemes: BTreeSet<String>,
}

/// An event's texts the text search indexes: the columns of SQLite's `audits_text`, in order, and
/// what PostgreSQL's `words` are made of ([`tsvector`]).
pub fn searched(e: &Event) -> [Option<&str>; 6] {
    [
        Some(&e.message),
        e.cmdline.as_deref(),
        Some(&e.process),
        e.domain.as_deref(),
        e.ip.as_deref(),
        e.url.as_deref(),
    ]
}

/// The `tsvector` literal of an event's searched fields (message, command line, process, domain,
/// ip, url: `None` for one it lacks), which PostgreSQL stores in `words`, and its words: each word
/// with its position, counted from 1 within a field, the next field's first word `FIELD_GAP` after
/// the last one (no phrase, one word after the other, spans two fields), positions past
/// PostgreSQL's largest kept at it. (PostgreSQL keeps a word's first 256 positions only: a phrase
/// is missed after a word's 256th time in one event.) At most [`MOST_WORDS_BYTES`] long:
/// PostgreSQL refuses a `tsvector` of a MiB, and an event refused would be one the workload hid
/// (it writes its command lines); the words past it are not searchable, nor counted.
pub fn tsvector(texts: &[Option<&str>]) -> Words {
    /// The largest position PostgreSQL keeps.
    const MAX_POSITION: usize = 16_383;
    const FIELD_GAP: usize = 100;
    let mut out = Words::default();
    let mut position = 0;
    for text in texts.iter().flatten() {
        for (i, word) in words_of(text).enumerate() {
            position += match (i, position) {
                (0, 1..) => FIELD_GAP,
                _ => 1,
            };
            let entry = format!("'{word}':{}", position.min(MAX_POSITION));
            if out.tsvector.len() + 1 + entry.len() > MOST_WORDS_BYTES {
                return out;
            }
            if !out.tsvector.is_empty() {
                out.tsvector.push(' ');
            }
            out.tsvector.push_str(&entry);
            out.lexemes.insert(word);
        }
    }
    out
}

/// The one word a search is, and whether it is a prefix (an unquoted term): `None` unless the
/// search is one term of one word (as [`tsquery`] reads it).
pub fn one_word(search: &Search) -> Option<(String, bool)> {
    match search.terms.as_slice() {
        [term] => term_word(term),
        _ => None,
    }
}

/// The one word a term is, and whether it is a prefix; `None` for a term of several words.
pub fn term_word(term: &Term) -> Option<(String, bool)> {
    let mut words = words_of(&term.text);
    match (words.next(), words.next()) {
        (Some(word), None) => Some((word, term.prefix)),
        _ => None,
    }
}

/// The longest `tsvector` literal [`tsvector`] writes for an event.
pub const MOST_WORDS_BYTES: usize = 256 * 1024;

/// A database the plans read from, inside one snapshot (a read transaction) for its lifetime.
pub trait Reader {
    fn dialect(&self) -> Dialect;

    /// Runs `sql` with `values` bound to `?1`, `?2`, ..., calling `row` with each row's columns
    /// in order until it returns `false` or the rows end. Rows are fetched as they are asked
    /// for: stopping early stops reading.
    fn rows(
        &mut self,
        sql: &str,
        values: &[Value],
        row: &mut dyn FnMut(&[Value]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// A number that changes whenever a commit changes the audits (a kept sample is valid while
    /// it stays the same).
    fn version(&mut self) -> Result<i64, StoreError>;
}

/// The first column of every row of `sql` (with `values`), each read by `get` ([`int`],
/// [`text`]).
pub fn first_column<T>(
    r: &mut dyn Reader,
    sql: &str,
    values: &[Value],
    get: fn(&[Value], usize) -> Result<T, WrongType>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    r.rows(sql, values, &mut |row| {
        out.push(get(row, 0)?);
        Ok(true)
    })?;
    Ok(out)
}

/// A reader that passes every statement to the database and keeps it, with its parameters: the
/// tests' view of which statements a plan ran.
#[cfg(test)]
pub(in crate::store) struct Recorded<'a> {
    pub inner: &'a mut dyn Reader,
    pub statements: Vec<(String, Vec<Value>)>,
}

#[cfg(test)]
impl Reader for Recorded<'_> {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    fn rows(
        &mut self,
        sql: &str,
        values: &[Value],
        row: &mut dyn FnMut(&[Value]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.statements.push((sql.into(), values.to_vec()));
        self.inner.rows(sql, values, row)
    }

    fn version(&mut self) -> Result<i64, StoreError> {
        self.inner.version()
    }
}

/// A column that is not of the type the plan expects, named by its position.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: expected {expected}, found {found:?}")]
pub struct WrongType {
    pub column: usize,
    pub expected: &'static str,
    pub found: Value,
}

impl From<WrongType> for StoreError {
    fn from(e: WrongType) -> StoreError {
        StoreError {
            source: Box::new(e),
        }
    }
}

/// Column `i` as text (NULL is an error).
pub fn text(row: &[Value], i: usize) -> Result<String, WrongType> {
    match opt_text(row, i)? {
        Some(t) => Ok(t),
        None => Err(wrong(row, i, "text")),
    }
}

/// Column `i` as text, or `None` for NULL.
pub fn opt_text(row: &[Value], i: usize) -> Result<Option<String>, WrongType> {
    match row.get(i) {
        Some(Value::Text(t)) => Ok(Some(t.clone())),
        Some(Value::Null) => Ok(None),
        _ => Err(wrong(row, i, "text")),
    }
}

/// Column `i` as bytes (NULL is an error).
pub fn blob(row: &[Value], i: usize) -> Result<&[u8], WrongType> {
    match row.get(i) {
        Some(Value::Blob(b)) => Ok(b),
        _ => Err(wrong(row, i, "bytes")),
    }
}

/// Column `i` as an integer (NULL is an error).
pub fn int(row: &[Value], i: usize) -> Result<i64, WrongType> {
    match opt_int(row, i)? {
        Some(n) => Ok(n),
        None => Err(wrong(row, i, "an integer")),
    }
}

/// Column `i` as an integer, or `None` for NULL.
pub fn opt_int(row: &[Value], i: usize) -> Result<Option<i64>, WrongType> {
    match row.get(i) {
        Some(Value::Integer(n)) => Ok(Some(*n)),
        Some(Value::Null) => Ok(None),
        _ => Err(wrong(row, i, "an integer")),
    }
}

/// Column `i` as an integer of type `T` (NULL, or a number out of its range, is an error).
pub fn number<T: TryFrom<i64>>(row: &[Value], i: usize) -> Result<T, WrongType> {
    match opt_number(row, i)? {
        Some(n) => Ok(n),
        None => Err(wrong(row, i, std::any::type_name::<T>())),
    }
}

/// Column `i` as an integer of type `T`, or `None` for NULL.
pub fn opt_number<T: TryFrom<i64>>(row: &[Value], i: usize) -> Result<Option<T>, WrongType> {
    opt_int(row, i)?
        .map(|n| T::try_from(n).map_err(|_| wrong(row, i, std::any::type_name::<T>())))
        .transpose()
}

fn wrong(row: &[Value], i: usize, expected: &'static str) -> WrongType {
    WrongType {
        column: i,
        expected,
        found: row.get(i).cloned().unwrap_or(Value::Null),
    }
}

/// The PostgreSQL texts, checked as text (and a glob's regular expression against the glob).
#[cfg(test)]
mod dialect_tests {
    use super::*;
    use crate::store::query::Pattern;

    /// A small deterministic generator (xorshift), so that the table below is the same each run.
    struct Draw(u64);

    impl Draw {
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            from[(self.0 % from.len() as u64) as usize]
        }
    }

    /// Every string of at most `n` characters of `alphabet`.
    fn strings(alphabet: &[char], n: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..n {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn a_globs_regex_matches_what_the_glob_matches() {
        // Characters special to globs, to regular expressions of either syntax, in classes.
        let alphabet = ['a', 'b', 'z', '-', ']', '[', '^', '\\', '.', '$', 'é', '\n'];
        let texts = strings(&alphabet, 3);
        let mut globs: Vec<String> = [
            "a*", "*a", "?", "*", "a?b", "[ab]", "[!ab]", "[^a]", "[]]", "[!]]", "[]a]", "[-a]",
            "[a-]", "[a-z]", "[!a-z]", "[z-a]", "[!z-a]", "[z-aa]", "[\\]", "[\\-z]", "[a-\\]",
            "[[]", "[^^]", "[]-a]", "[.$]", "*.*", "\\**", "a\\?*", "\\[*", "[é]", "[a-é]", "?\n",
            "[--.]", "[!-]*", "*[]-]",
        ]
        .map(String::from)
        .into();
        let pieces = [
            "a", "b", "-", "]", "^", ".", "$", "é", "\\*", "\\?", "\\[", "\\\\", "*", "?", "[",
            "[!", "[^", "a-z", "z-a", "]",
        ];
        let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
        while globs.len() < 400 {
            let n = 1 + draw.pick(&[0, 1, 2, 3, 4]);
            let glob: String = (0..n).map(|_| draw.pick(&pieces)).collect();
            if matches!(Pattern::parse(&glob), Ok(Pattern::Glob(_))) {
                globs.push(glob);
            }
        }
        for glob in &globs {
            let pattern = Pattern::parse(glob).unwrap();
            let Pattern::Glob(parts) = &pattern else {
                panic!("{glob:?} is not a glob");
            };
            let re = regex(parts);
            // PostgreSQL's `.` takes a newline as any other character (not newline-sensitive).
            let compiled = regex::Regex::new(&format!("(?s){re}"))
                .unwrap_or_else(|e| panic!("{glob:?} -> {re:?}: {e}"));
            for text in &texts {
                assert_eq!(
                    compiled.is_match(text),
                    pattern.matches(text),
                    "{glob:?} -> {re:?} on {text:?}"
                );
            }
        }
    }

    #[test]
    fn globs_become_anchored_escaped_regular_expressions() {
        let re = |g: &str| match Pattern::parse(g).unwrap() {
            Pattern::Glob(parts) => regex(&parts),
            p => panic!("{p:?}"),
        };
        for (glob, want) in [
            ("prod-*", r"^prod\-.*$"),
            ("a.b?", r"^a\.b.$"),
            ("[!a-c]x", r"^[^a-c]x$"),
            ("[]^-]", r"^[\]\^\-]$"),
            ("[\\[]*", r"^[\\\[].*$"),
            ("[z-a]*", r"^.^.*$"),
            ("[!z-a]", r"^.$"),
            (r"\(x\)*", r"^\(x\).*$"),
        ] {
            assert_eq!(re(glob), want, "{glob}");
        }
    }

    #[test]
    fn searches_become_tsqueries_of_quoted_words() {
        for (q, want) in [
            ("curl", "'curl':*"),
            ("CURL launched", "'curl':* & 'launched':*"),
            ("/usr/bin/curl", "'usr' <-> 'bin' <-> 'curl':*"),
            (r#""rm -rf" x"#, "'rm' <-> 'rf' & 'x':*"),
            (r#"it's "a'b""#, "'it' <-> 's':* & 'a' <-> 'b'"),
            ("Été:443", "'été' <-> '443':*"),
            (r#"a\b NOT | ! <-> &"#, "'a' <-> 'b':* & 'not':*"),
        ] {
            assert_eq!(tsquery(&Search::parse(q).unwrap()), want, "{q}");
        }
    }

    #[test]
    fn an_events_words_are_a_tsvector_of_positions_apart_by_field() {
        let words = tsvector(&[
            Some("Process /usr/bin/curl"),
            None,
            Some("curl -s"),
            Some("--"),
            Some("it's"),
        ]);
        assert_eq!(
            words.tsvector,
            "'process':1 'usr':2 'bin':3 'curl':4 'curl':104 's':105 'it':205 's':206"
        );
        // Each word once, as PostgreSQL keeps its lexemes.
        assert_eq!(
            words.lexemes.iter().collect::<Vec<_>>(),
            ["bin", "curl", "it", "process", "s", "usr"]
        );
        assert_eq!(tsvector(&[None, Some(" -- ")]), Words::default());
        // A word too long for PostgreSQL is cut (whole characters), in a query the same way;
        // positions stop at 16383.
        let long = format!("a {}é b", "x".repeat(2045));
        let cut = "x".repeat(2045);
        let words = tsvector(&[Some(&long)]);
        assert_eq!(words.tsvector, format!("'a':1 '{cut}':2 'b':3"));
        assert!(words.lexemes.contains(&cut));
        let search = Search::parse(&format!("\"{}éé\"", "x".repeat(2045))).unwrap();
        assert_eq!(tsquery(&search), format!("'{cut}'"));
        let many = "w ".repeat(16_390);
        let v = tsvector(&[Some(&many)]).tsvector;
        let positions: Vec<usize> = v
            .split(' ')
            .map(|e| e.trim_start_matches("'w':").parse().unwrap())
            .collect();
        assert_eq!(positions.len(), 16_390);
        assert_eq!(positions[16_381..16_384], [16_382, 16_383, 16_383]);
        // However many words, never longer than PostgreSQL takes; a word left out is not one of
        // its lexemes either.
        let huge = "w ".repeat(200_000);
        let words = tsvector(&[Some(&huge), Some("last")]);
        let v = &words.tsvector;
        assert!(v.len() <= MOST_WORDS_BYTES, "{}", v.len());
        assert!(v.len() > MOST_WORDS_BYTES - 20);
        assert_eq!(words.lexemes.iter().collect::<Vec<_>>(), ["w"]);
        assert_eq!(positions.iter().max(), Some(&16_383));
    }

    #[test]
    fn a_search_of_one_word_is_that_word() {
        for (q, want) in [
            ("curl", Some(("curl", true))),
            ("CURL", Some(("curl", true))),
            ("\"Curl\"", Some(("curl", false))),
            ("  -curl- ", Some(("curl", true))),
            ("x86", Some(("x86", true))),
            ("curl wget", None),
            ("/usr/bin/curl", None),
            ("\"rm -rf\"", None),
        ] {
            let got = one_word(&Search::parse(q).unwrap());
            assert_eq!(got.as_ref().map(|(w, p)| (w.as_str(), *p)), want, "{q}");
        }
    }

    #[test]
    fn each_dialect_writes_its_own_pieces() {
        let parts = match Pattern::parse("web-*").unwrap() {
            Pattern::Glob(parts) => parts,
            p => panic!("{p:?}"),
        };
        let search = Search::parse("curl").unwrap();
        let mut values = vec![Value::Null];
        let (s, p) = (Dialect::Sqlite, Dialect::Postgres);
        assert_eq!(
            s.glob("container", &parts, &mut values),
            "container GLOB ?2"
        );
        assert_eq!(p.glob("container", &parts, &mut values), "container ~ ?3");
        assert_eq!(
            s.search(&search, &mut values),
            "seq IN (SELECT rowid FROM audits_text WHERE audits_text MATCH ?4)"
        );
        assert_eq!(
            p.search(&search, &mut values),
            "words @@ CAST(CAST(?5 AS TEXT) AS tsquery)"
        );
        assert_eq!(
            values[1..],
            ["web-*", r"^web\-.*$", "\"curl\" *", "'curl':*"].map(|t| Value::Text(t.into()))
        );
        assert_eq!(p.search_seqs(&search), None);
        assert_eq!(
            p.search_count(&search).0,
            "SELECT count(*) FROM audits WHERE words @@ CAST(CAST(?1 AS TEXT) AS tsquery)"
        );
        assert_eq!(
            s.indexed("audits", "audits_by_time"),
            "audits INDEXED BY audits_by_time"
        );
        assert_eq!(p.indexed("audits", "audits_by_time"), "audits");
        assert_eq!(s.seconds("time"), "CAST(strftime('%s', time) AS INTEGER)");
        assert_eq!(
            p.seconds("time"),
            "CAST(floor(extract(epoch FROM CAST(time AS timestamptz))) AS BIGINT)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_as_their_type_or_say_which_is_wrong() {
        let row = [
            Value::Text("a".into()),
            Value::Integer(7),
            Value::Null,
            Value::Real(1.5),
        ];
        assert_eq!(text(&row, 0).unwrap(), "a");
        assert_eq!(int(&row, 1).unwrap(), 7);
        assert_eq!(opt_text(&row, 2).unwrap(), None);
        assert_eq!(opt_int(&row, 2).unwrap(), None);
        let e = text(&row, 1).unwrap_err();
        assert_eq!(e.to_string(), "column 1: expected text, found Integer(7)");
        assert!(int(&row, 3).is_err());
        assert!(int(&row, 9).is_err());
    }
}
