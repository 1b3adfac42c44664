//! The database's own state: how many of the embedded migrations are applied (for
//! `/readyz` and `doctor`), and the server's version.

use sqlx::PgExecutor;

use super::MIGRATOR;

/// The embedded migrations a current schema has applied.
pub fn migrations_expected() -> i64 {
    MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count() as i64
}

/// The migrations applied successfully (an error when the schema was never migrated).
pub async fn migrations_applied(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(db).await
}

/// `SHOW server_version`.
pub async fn server_version(db: impl PgExecutor<'_>) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SHOW server_version").fetch_one(db).await
}
