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

/// An organizer, a buyer (`buyer_email`, `buyer_name`) and the organizer's published
/// event "Rock Night" (JPY), written straight in SQL for tests of the library without a
/// server. Returns (buyer, event).
pub async fn buyer_and_published_event(pool: &PgPool, buyer_email: &str, buyer_name: &str) -> (Uuid, Uuid) {
    let (organizer, buyer, event) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for (id, mail, name, role) in [
        (organizer, format!("org-{organizer}@example.com"), "Org", "organizer"),
        (buyer, buyer_email.to_owned(), buyer_name, "customer"),
    ] {
        sqlx::query("INSERT INTO users (user_id, email, password_hash, name, user_type) VALUES ($1, $2, 'x', $3, $4)")
            .bind(id)
            .bind(mail)
            .bind(name)
            .bind(role)
            .execute(pool)
            .await
            .expect("insert user");
    }
    sqlx::query(
        "INSERT INTO events (event_id, organizer_id, title, venue_name, event_date, currency, status)
         VALUES ($1, $2, 'Rock Night', 'Budokan', '2027-01-15 19:00:00+00', 'JPY', 'published')",
    )
    .bind(event)
    .bind(organizer)
    .execute(pool)
    .await
    .expect("insert event");
    (buyer, event)
}

/// Ends `event`'s lease now, as if its owner had stalled past it: another node may
/// take the event over, while the owner still believes it holds it.
pub async fn expire_lease(pool: &PgPool, event: Uuid) {
    sqlx::query("UPDATE event_leases SET expires_at = now() - interval '1 second' WHERE event_id = $1")
        .bind(event)
        .execute(pool)
        .await
        .expect("expire the lease");
}

/// Each row of `table` as its `key` and the heap page its current version is on,
/// ordered by the key. An update whose new version stays on the row's page leaves
/// this unchanged.
pub async fn heap_pages<K>(pool: &PgPool, table: &str, key: &str) -> Vec<(K, i64)>
where
    K: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    // `table` and `key` are the caller's identifiers, never input.
    let sql = format!("SELECT {key}, (ctid::text::point)[0]::bigint FROM {table} ORDER BY {key}");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.expect("heap pages")
}
