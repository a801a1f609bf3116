//! A fresh database per test, on the shared test PostgreSQL.

use crate::required_env;
use sqlx::PgPool;
use uuid::Uuid;

/// Creates a fresh, empty database through the admin URL `BOXOFFICE_TEST_DATABASE_URL` and
/// returns its URL. The server migrates it when it starts.
pub async fn fresh_database() -> String {
    let admin = required_env("BOXOFFICE_TEST_DATABASE_URL");
    let name = format!("test_{}", Uuid::new_v4().simple());
    let pool = PgPool::connect(&admin).await.expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.expect("create database");
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// A fresh database with the service's migrations applied, for tests of the library without a
/// server.
pub async fn migrated_database() -> PgPool {
    let pool = PgPool::connect(&fresh_database().await).await.expect("connect to the test database");
    boxoffice::store::db::migrator().run(&pool).await.expect("migrate");
    pool
}
