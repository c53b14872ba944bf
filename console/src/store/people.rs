//! The people's tables in SQLite: users (password hashes), sessions (hashed ids), named tokens
//! (hashed), and the activity log. Nothing a caller presents (password, session id, token) is
//! stored as given: only its hash, so that a copy of the database logs no one in.

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ActivityEntry, ActivityQuery, SessionRecord, StoreError, TOKEN_COLUMNS, TokenRecord, UserRecord,
};

/// Migration: the people's tables, and the token that delivered each audit (`source`).
pub(super) const PEOPLE_SCHEMA: &str = "
CREATE TABLE users (
    name    TEXT PRIMARY KEY,
    role    TEXT NOT NULL,
    hash    TEXT NOT NULL, -- Argon2id, PHC string
    created TEXT NOT NULL
);
CREATE TABLE sessions (
    id_hash   TEXT PRIMARY KEY, -- SHA-256 of the cookie's session id
    user      TEXT NOT NULL,
    role      TEXT NOT NULL,
    csrf      TEXT NOT NULL,
    created   TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE TABLE tokens (
    name        TEXT PRIMARY KEY, -- never reused, so that an audit's source stays unambiguous
    role        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE, -- SHA-256 of the token
    collections TEXT, -- JSON, a rule's collections; defender tokens only
    created     TEXT NOT NULL,
    last_used   TEXT,
    revoked     TEXT
);
CREATE TABLE activity (
    seq    INTEGER PRIMARY KEY,
    time   TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL -- JSON
);
CREATE INDEX activity_by_time ON activity (time DESC, seq DESC);
ALTER TABLE audits ADD COLUMN source TEXT;
";

pub(super) fn add_user(c: &Connection, u: &UserRecord) -> Result<bool, StoreError> {
    Ok(c.execute(
        "INSERT OR IGNORE INTO users (name, role, hash, created) VALUES (?1, ?2, ?3, ?4)",
        params![u.name, u.role, u.hash, u.created],
    )? == 1)
}

fn user_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: r.get(0)?,
        role: r.get(1)?,
        hash: r.get(2)?,
        created: r.get(3)?,
    })
}

pub(super) fn user(c: &Connection, name: &str) -> Result<Option<UserRecord>, StoreError> {
    Ok(c.query_row(
        "SELECT name, role, hash, created FROM users WHERE name = ?1",
        [name],
        user_of,
    )
    .optional()?)
}

pub(super) fn users(c: &Connection) -> Result<Vec<UserRecord>, StoreError> {
    let mut select =
        c.prepare_cached("SELECT name, role, hash, created FROM users ORDER BY name")?;
    let rows = select.query_map([], user_of)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes the user and ends their sessions, together.
pub(super) fn delete_user(c: &mut Connection, name: &str) -> Result<bool, StoreError> {
    let tx = c.transaction()?;
    let deleted = tx.execute("DELETE FROM users WHERE name = ?1", [name])? == 1;
    tx.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
    tx.commit()?;
    Ok(deleted)
}

pub(super) fn add_session(c: &Connection, s: &SessionRecord) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO sessions (id_hash, user, role, csrf, created, last_seen) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![s.id_hash, s.user, s.role, s.csrf, s.last_seen],
    )?;
    Ok(())
}

/// The session, if seen since `idle_cutoff`, now seen again at `now`; sessions idle longer are
/// deleted on the way.
pub(super) fn session(
    c: &Connection,
    id_hash: &str,
    now: &str,
    idle_cutoff: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    c.execute("DELETE FROM sessions WHERE last_seen < ?1", [idle_cutoff])?;
    let found = c
        .query_row(
            "UPDATE sessions SET last_seen = ?2 WHERE id_hash = ?1 \
             RETURNING id_hash, user, role, csrf, last_seen",
            [id_hash, now],
            |r| {
                Ok(SessionRecord {
                    id_hash: r.get(0)?,
                    user: r.get(1)?,
                    role: r.get(2)?,
                    csrf: r.get(3)?,
                    last_seen: r.get(4)?,
                })
            },
        )
        .optional()?;
    Ok(found)
}

pub(super) fn delete_session(c: &Connection, id_hash: &str) -> Result<(), StoreError> {
    c.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
    Ok(())
}

pub(super) fn add_token(c: &Connection, t: &TokenRecord) -> Result<bool, StoreError> {
    Ok(c.execute(
        "INSERT OR IGNORE INTO tokens (name, role, hash, collections, created) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![t.name, t.role, t.hash, t.collections, t.created],
    )? == 1)
}

fn token_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        name: r.get(0)?,
        role: r.get(1)?,
        hash: r.get(2)?,
        collections: r.get(3)?,
        created: r.get(4)?,
        last_used: r.get(5)?,
        revoked: r.get(6)?,
    })
}

/// The token of this hash, if not revoked, its last use now recorded.
pub(super) fn use_token(
    c: &Connection,
    hash: &str,
    now: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    Ok(c.query_row(
        &format!(
            "UPDATE tokens SET last_used = ?2 WHERE hash = ?1 AND revoked IS NULL \
             RETURNING {TOKEN_COLUMNS}"
        ),
        [hash, now],
        token_of,
    )
    .optional()?)
}

pub(super) fn tokens(c: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut select = c.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created, name"
    ))?;
    let rows = select.query_map([], token_of)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn revoke_token(c: &Connection, name: &str, now: &str) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE tokens SET revoked = ?2 WHERE name = ?1 AND revoked IS NULL",
        [name, now],
    )? == 1)
}

pub(super) fn add_activity(c: &Connection, e: &ActivityEntry) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO activity (time, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
        params![e.time, e.actor, e.action, e.detail.to_string()],
    )?;
    Ok(())
}

pub(super) fn activity(
    c: &Connection,
    q: &ActivityQuery,
) -> Result<Vec<ActivityEntry>, StoreError> {
    let mut select = c.prepare_cached(
        "SELECT time, actor, action, detail FROM activity \
         WHERE (?1 IS NULL OR time >= ?1) AND (?2 IS NULL OR time < ?2) \
         ORDER BY time DESC, seq DESC LIMIT ?3",
    )?;
    let rows = select.query_map(params![q.since, q.until, q.limit], |r| {
        let detail: String = r.get(3)?;
        Ok(ActivityEntry {
            time: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, hash: &str) -> TokenRecord {
        TokenRecord {
            name: name.into(),
            role: "defender".into(),
            hash: hash.into(),
            collections: Some(r#"{"containers":["web"]}"#.into()),
            created: "t1".into(),
            last_used: None,
            revoked: None,
        }
    }

    #[test]
    fn tokens_are_found_by_hash_until_revoked_and_names_are_never_reused() {
        crate::store::tests::each_store(|s| {
            assert!(s.add_token(&token("orders", "h1")).unwrap());
            assert!(!s.add_token(&token("orders", "h2")).unwrap(), "name taken");
            let used = s.use_token("h1", "t2").unwrap().unwrap();
            assert_eq!(
                (used.name.as_str(), used.last_used.as_deref()),
                ("orders", Some("t2"))
            );
            assert_eq!(s.use_token("h2", "t2").unwrap(), None);
            assert!(s.revoke_token("orders", "t3").unwrap());
            assert!(!s.revoke_token("orders", "t4").unwrap(), "revoked already");
            assert_eq!(s.use_token("h1", "t5").unwrap(), None);
            let listed = s.tokens().unwrap();
            assert_eq!(
                (listed[0].revoked.as_deref(), listed[0].last_used.as_deref()),
                (Some("t3"), Some("t2"))
            );
            assert!(
                !s.add_token(&token("orders", "h3")).unwrap(),
                "never reused"
            );
        });
    }

    #[test]
    fn sessions_end_when_idle_or_with_their_user() {
        crate::store::tests::each_store(|s| {
            let user = UserRecord {
                name: "olga".into(),
                role: "operator".into(),
                hash: "$argon2id$x".into(),
                created: "t0".into(),
            };
            assert!(s.add_user(&user).unwrap());
            assert!(!s.add_user(&user).unwrap());
            let session = |id: &str, seen: &str| SessionRecord {
                id_hash: id.into(),
                user: "olga".into(),
                role: "operator".into(),
                csrf: "c".into(),
                last_seen: seen.into(),
            };
            s.add_session(&session("a", "t1")).unwrap();
            s.add_session(&session("b", "t1")).unwrap();
            // (id, now, idle cutoff, found)
            for (id, now, cutoff, found) in [
                ("a", "t2", "t0", true),  // seen at t1, renewed to t2
                ("a", "t3", "t2", true),  // seen at t2: not before the cutoff
                ("b", "t3", "t2", false), // seen at t1 only: ended (and deleted)
                ("b", "t4", "t0", false), // deleted: not revived by a later cutoff
                ("x", "t3", "t0", false),
            ] {
                let got = s.session(id, now, cutoff).unwrap();
                assert_eq!(got.is_some(), found, "{id} at {now}, cutoff {cutoff}");
            }
            assert!(s.delete_user("olga").unwrap());
            assert_eq!(s.session("a", "t5", "t0").unwrap(), None);
            assert_eq!(s.user("olga").unwrap(), None);
        });
    }

    #[test]
    fn activity_is_newest_first_within_the_window() {
        crate::store::tests::each_store(|s| {
            for (time, action) in [
                ("t1", "login"),
                ("t2", "policy"),
                ("t2", "logout"),
                ("t3", "x"),
            ] {
                let entry = ActivityEntry {
                    time: time.into(),
                    actor: "olga".into(),
                    action: action.into(),
                    detail: serde_json::json!({ "n": 1 }),
                };
                s.add_activity(&entry).unwrap();
            }
            let actions = |since: Option<&str>, until: Option<&str>, limit: u32| -> Vec<String> {
                let q = ActivityQuery {
                    since: since.map(str::to_owned),
                    until: until.map(str::to_owned),
                    limit,
                };
                s.activity(&q)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.action)
                    .collect()
            };
            assert_eq!(actions(None, None, 10), ["x", "logout", "policy", "login"]);
            assert_eq!(actions(Some("t2"), Some("t3"), 10), ["logout", "policy"]);
            assert_eq!(actions(None, None, 1), ["x"]);
            assert_eq!(
                s.activity(&ActivityQuery {
                    limit: 1,
                    ..Default::default()
                })
                .unwrap()[0]
                    .detail,
                serde_json::json!({ "n": 1 })
            );
        });
    }
}
