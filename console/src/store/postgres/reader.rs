//! The audit query plans' [`Reader`] on PostgreSQL: one read-only, repeatable-read transaction
//! per store call (every statement of a plan sees the same snapshot, as SQLite's read
//! transaction does), each statement's rows fetched through a portal as the plan asks for them.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::store::StoreError;
use crate::store::sql::{Dialect, Reader, Value};

/// Rows fetched by the first request of a statement; each next request fetches twice as many,
/// up to [`MOST_ROWS`]: a plan that stops after a few rows reads a few, one that reads thousands
/// makes few round trips.
const FIRST_ROWS: i32 = 64;
const MOST_ROWS: i32 = 4096;

pub struct PgReader<'a> {
    runtime: &'a tokio::runtime::Runtime,
    tx: deadpool_postgres::Transaction<'a>,
}

impl<'a> PgReader<'a> {
    /// Runs `f` in a snapshot on `c`.
    pub fn with<T>(
        runtime: &'a tokio::runtime::Runtime,
        c: &'a mut deadpool_postgres::Object,
        f: impl FnOnce(&mut dyn Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = runtime.block_on(
            c.build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start(),
        )?;
        let mut reader = PgReader { runtime, tx };
        let out = f(&mut reader)?;
        runtime.block_on(reader.tx.commit())?;
        Ok(out)
    }
}

/// The plans' SQL with PostgreSQL's parameters: `?N` written `$N`.
pub fn numbered(sql: &str) -> String {
    sql.replace('?', "$")
}

/// A plan's parameter, bound as the type PostgreSQL inferred for its place.
#[derive(Debug)]
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(n), &Type::INT8) => n.to_sql(ty, out),
            (Value::Integer(n), &Type::INT4) => i32::try_from(*n)?.to_sql(ty, out),
            (Value::Integer(n), &Type::INT2) => i16::try_from(*n)?.to_sql(ty, out),
            (Value::Text(t), ty) if <&str as ToSql>::accepts(ty) => t.as_str().to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (value, ty) => Err(format!("a parameter of type {ty} given {value:?}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Column `i` of `r` as a [`Value`].
fn value(r: &tokio_postgres::Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    let ty = r.columns()[i].type_();
    Ok(match *ty {
        Type::INT8 => r
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Integer),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |n| Value::Integer(n.into())),
        Type::INT2 => r
            .try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null, |n| Value::Integer(n.into())),
        Type::BOOL => r
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |b| Value::Integer(b.into())),
        Type::FLOAT8 => r
            .try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, Value::Real),
        Type::BYTEA => r
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Value::Null, Value::Blob),
        // Text, and anything else PostgreSQL can send as text is refused by `try_get` with
        // the column's type named.
        _ => r
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text),
    })
}

impl Reader for PgReader<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn rows(
        &mut self,
        sql: &str,
        values: &[Value],
        row: &mut dyn FnMut(&[Value]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let sql = numbered(sql);
        let tx = &self.tx;
        self.runtime.block_on(async {
            let statement = tx.prepare_cached(&sql).await?;
            let portal = tx.bind_raw(&statement, values.iter().map(Param)).await?;
            let mut fetch = FIRST_ROWS;
            let mut columns = Vec::new();
            loop {
                let rows = tx.query_portal(&portal, fetch).await?;
                for r in &rows {
                    columns.clear();
                    for i in 0..r.len() {
                        columns.push(value(r, i)?);
                    }
                    if !row(&columns)? {
                        return Ok(());
                    }
                }
                if rows.len() < fetch as usize {
                    return Ok(());
                }
                fetch = (fetch * 2).min(MOST_ROWS);
            }
        })
    }

    fn version(&mut self) -> Result<i64, StoreError> {
        // Stored audits only ever get larger positions, and retention removes the smallest: the
        // two ends change with every change to the audits.
        let mut version = 0;
        self.rows(
            "SELECT COALESCE(MAX(seq), 0), COALESCE(MIN(seq), 0) FROM audits",
            &[],
            &mut |r| {
                let (newest, oldest) =
                    (crate::store::sql::int(r, 0)?, crate::store::sql::int(r, 1)?);
                version = newest ^ oldest.rotate_left(32);
                Ok(false)
            },
        )?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_are_renumbered_for_postgres() {
        assert_eq!(
            super::numbered("SELECT x FROM t WHERE a = ?1 AND b IN (?2, ?3) LIMIT ?4"),
            "SELECT x FROM t WHERE a = $1 AND b IN ($2, $3) LIMIT $4"
        );
    }
}
