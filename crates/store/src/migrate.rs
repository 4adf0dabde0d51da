//! Applies `crates/store/migrations/*.sql` in order, each once, in one transaction: members
//! starting together (several processes) serialise on a PostgreSQL advisory lock, or on
//! SQLite's file lock.

use sqlx::{AnyPool, Row};

use crate::StoreError;
use crate::url::Backend;

/// One migration: the same SQL for both backends unless a backend needs its own dialect
/// (e.g. how a table numbers its rows).
struct Migration {
    version: i64,
    name: &'static str,
    postgres: &'static str,
    sqlite: &'static str,
}

/// In order. A new migration is a new file (or one per backend) and a new entry here.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_order_projection.sql",
        postgres: include_str!("../migrations/0001_order_projection.sql"),
        sqlite: include_str!("../migrations/0001_order_projection.sql"),
    },
    Migration {
        version: 2,
        name: "0002_outbox",
        postgres: include_str!("../migrations/0002_outbox.postgres.sql"),
        sqlite: include_str!("../migrations/0002_outbox.sqlite.sql"),
    },
];

/// Key of the advisory lock migrations hold on PostgreSQL ("orderstr" in ASCII).
const LOCK_KEY: i64 = 0x6f72_6465_7273_7472;

fn statements(sql: &str) -> impl Iterator<Item = String> + '_ {
    // One statement per call: not every driver runs several in one.
    sql.split(';')
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|s| !s.trim().is_empty())
}

pub(crate) async fn run(pool: &AnyPool, backend: Backend, url: &str) -> Result<(), StoreError> {
    let fail = |version, name, source| StoreError::Migrate {
        url: crate::redact(url),
        version,
        name,
        source,
    };
    let mut tx = pool.begin().await.map_err(|e| fail(0, "begin", e))?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(|e| fail(0, "advisory lock", e))?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS orderstream_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| fail(0, "orderstream_migrations", e))?;
    for m in MIGRATIONS {
        let (version, name) = (&m.version, m.name);
        let sql = match backend {
            Backend::Postgres => m.postgres,
            Backend::Sqlite => m.sqlite,
        };
        let done = sqlx::query("SELECT version FROM orderstream_migrations WHERE version = $1")
            .bind(*version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| fail(*version, name, e))?
            .map(|r| r.try_get::<i64, _>("version"))
            .transpose()
            .map_err(|e| fail(*version, name, e))?;
        if done.is_some() {
            continue;
        }
        for statement in statements(sql) {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| fail(*version, name, e))?;
        }
        sqlx::query("INSERT INTO orderstream_migrations (version, name) VALUES ($1, $2)")
            .bind(*version)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| fail(*version, name, e))?;
        tracing::info!(version, name, "store migration applied");
    }
    tx.commit().await.map_err(|e| fail(0, "commit", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_without_comments() {
        let all: Vec<String> = statements(MIGRATIONS[0].postgres).collect();
        assert_eq!(all.len(), 3);
        assert!(
            all.iter()
                .all(|s| s.trim_start().starts_with("CREATE TABLE"))
        );
        for m in &MIGRATIONS[1..] {
            assert_eq!(
                statements(m.postgres).count(),
                statements(m.sqlite).count(),
                "{}: both dialects make the same objects",
                m.name
            );
        }
    }
}
