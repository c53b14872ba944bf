//! The webhooks' delivery cursors: for each webhook, the arrival position (`seq`) of the last audit
//! it delivered, kept in the database so that neither a restart of the console nor one of the
//! receiver loses or repeats an event.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// Migration 8: one row per webhook, keyed by the SHA-256 of its URL (never the URL, which may
/// hold credentials).
pub const MIGRATION: &str = "CREATE TABLE deliveries (
    target TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
);";

/// The cursor of `target`; a webhook seen for the first time starts after the newest audit
/// stored, delivering what arrives from now on (not the whole history).
pub fn cursor(c: &Connection, target: &str) -> Result<i64, StoreError> {
    c.execute(
        "INSERT INTO deliveries (target, seq) \
         SELECT ?1, COALESCE(MAX(seq), 0) FROM audits WHERE true \
         ON CONFLICT (target) DO NOTHING",
        [target],
    )?;
    let seq = c
        .query_row(
            "SELECT seq FROM deliveries WHERE target = ?1",
            [target],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0))
}

pub fn set_cursor(c: &Connection, target: &str, seq: i64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE deliveries SET seq = ?2 WHERE target = ?1",
        params![target, seq],
    )?;
    Ok(())
}
