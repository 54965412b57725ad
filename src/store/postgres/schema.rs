//! The database schema: versioned migrations (refinery), applied at start-up
//! under an advisory lock, so that gates starting together apply each one
//! once and none reads a half-made schema. Waiting for the lock and
//! migrating are bounded together by [`MIGRATE_TIMEOUTS`] store timeouts:
//! a gate stuck behind another's migration, or on a table lock, stops with
//! one line rather than hanging at start-up.

use std::cell::Cell;
use std::time::Duration;

use refinery_core::{Migration, Runner};
use tokio_postgres::Client;

/// The migrations, oldest first; a new one is appended, never edited.
const MIGRATIONS: &[(&str, &str)] = &[("V1__initial", include_str!("migrations/V1__initial.sql"))];

/// Where refinery records what it applied (in the connection's schema).
const HISTORY_TABLE: &str = "tachi_gate_schema_history";

/// The session advisory lock held while migrating (any fixed number; it
/// only has to be the same in every gate).
pub(super) const MIGRATION_LOCK: i64 = 0x7461_6368_695f_6761; // "tachi_ga"

/// How long, in store timeouts, start-up may wait for the migration lock and
/// migrate (a minute at the default 2 s): far more than the migrations
/// take, so that only a stuck lock or a wedged server reaches it.
pub(super) const MIGRATE_TIMEOUTS: u32 = 30;

/// How often a gate waiting for another's migration asks for the lock again.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A newer gate has migrated this database; running an older one on it
    /// could lose what the newer one keeps.
    #[error(
        "the database schema is at version {found}, newer than this gate knows \
         ({known}); run a tachi-gate at least as new as the one that migrated it"
    )]
    Newer { found: i64, known: i64 },
    #[error("migrating the database schema failed: {0}")]
    Migrate(String),
    #[error(
        "the database schema was not ready within {secs} s ({doing}); \
         raise store.timeout_ms for this start if a migration needs longer"
    )]
    Timeout { secs: u64, doing: &'static str },
}

/// The newest schema version this gate knows.
pub fn known_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the schema up to date, or refuses a newer one, within `timeout`
/// × [`MIGRATE_TIMEOUTS`]. The caller closes `client` after: on a timeout
/// that ends the session, and with it the lock and any transaction.
pub(super) async fn migrate(client: &mut Client, timeout: Duration) -> Result<(), SchemaError> {
    let within = timeout.saturating_mul(MIGRATE_TIMEOUTS);
    let doing = Cell::new("connecting");
    let bounded = tokio::time::timeout(within, migrate_within(client, within, &doing));
    match bounded.await {
        Ok(outcome) => outcome,
        Err(_) => Err(SchemaError::Timeout {
            secs: within.as_secs_f64().ceil() as u64,
            doing: doing.get(),
        }),
    }
}

async fn migrate_within(
    client: &mut Client,
    within: Duration,
    doing: &Cell<&'static str>,
) -> Result<(), SchemaError> {
    let failed = |e: tokio_postgres::Error| SchemaError::Migrate(super::describe(&e));
    // The server stops a statement past the bound too (a DDL waiting on a
    // table lock would otherwise go on after this gate gave up).
    client
        .batch_execute(&format!("SET statement_timeout = {}", within.as_millis()))
        .await
        .map_err(failed)?;
    doing.set("waiting for another gate's migration");
    loop {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(failed)?;
        if row.get::<_, bool>(0) {
            break;
        }
        tokio::time::sleep(LOCK_RETRY).await;
    }
    doing.set("migrating");
    let outcome = migrate_locked(client).await;
    // Also released when the connection closes, which follows at once.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    outcome
}

async fn migrate_locked(client: &mut Client) -> Result<(), SchemaError> {
    let failed = |e: tokio_postgres::Error| SchemaError::Migrate(super::describe(&e));
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&HISTORY_TABLE.to_string()],
        )
        .await
        .map_err(failed)?;
    if row.get::<_, bool>(0) {
        let row = client
            .query_one(
                &format!("SELECT max(version)::int8 FROM {HISTORY_TABLE}"),
                &[],
            )
            .await
            .map_err(failed)?;
        if let Some(found) = row.get::<_, Option<i64>>(0) {
            check_version(found)?;
        }
    }
    let migrations = MIGRATIONS
        .iter()
        .map(|(name, sql)| Migration::unapplied(name, sql))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SchemaError::Migrate(e.to_string()))?;
    let mut runner = Runner::new(&migrations).set_abort_divergent(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    runner
        .run_async(client)
        .await
        .map_err(|e| SchemaError::Migrate(e.to_string()))?;
    Ok(())
}

/// Whether a database at schema version `found` may be used.
fn check_version(found: i64) -> Result<(), SchemaError> {
    let known = known_version();
    if found > known {
        return Err(SchemaError::Newer { found, known });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_in_one_line() {
        assert!(check_version(known_version()).is_ok());
        assert!(check_version(0).is_ok());
        let e = check_version(known_version() + 1).unwrap_err().to_string();
        assert!(!e.contains('\n'));
        assert!(e.contains("newer than this gate knows"), "{e}");
    }

    #[test]
    fn the_migrations_are_numbered_from_one_in_order() {
        for (i, (name, _)) in MIGRATIONS.iter().enumerate() {
            let m = Migration::unapplied(name, "").unwrap();
            assert_eq!(i64::from(m.version()), i as i64 + 1, "{name}");
        }
    }
}
