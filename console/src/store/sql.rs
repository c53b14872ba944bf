//! What the audit query plans (`lists`, `rollup`, `sample`, `audits`) need of a database, so
//! that SQLite and PostgreSQL answer every query by the same plans: a [`Reader`] that runs one
//! statement and hands its rows over one at a time (stopping when told), and the [`Dialect`]
//! the few backend-specific pieces of SQL are written in.
//!
//! The plans write their SQL with numbered parameters `?1`, `?2`, ... (SQLite's syntax); the
//! PostgreSQL reader renumbers them as `$1`, `$2`, .... No other `?` may appear in their SQL.

use super::StoreError;

/// A parameter or a column's value: SQLite's own value type, which is what both backends bind
/// and read (integers, text, NULL).
pub type Value = rusqlite::types::Value;

/// Which SQL the backend speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

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

/// The words of `text` as the text search reads them: runs of letters and digits, lowercased
/// (what [`super::Search`]'s documentation promises, and SQLite's FTS5 tokenizer does).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
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

fn wrong(row: &[Value], i: usize, expected: &'static str) -> WrongType {
    WrongType {
        column: i,
        expected,
        found: row.get(i).cloned().unwrap_or(Value::Null),
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

    #[test]
    fn words_are_runs_of_letters_and_digits_lowercased() {
        let w: Vec<String> = words("/usr/bin/Curl -s https://Ex.com:443/ÉTÉ?a=1").collect();
        assert_eq!(
            w,
            [
                "usr", "bin", "curl", "s", "https", "ex", "com", "443", "été", "a", "1"
            ]
        );
        assert_eq!(words(" -- ").count(), 0);
    }
}
