//! The benches' scratch databases: made fresh on the PostgreSQL of `SENTRA_TEST_PG_ADMIN_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped at the end.

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

pub fn admin_url() -> String {
    std::env::var("SENTRA_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The admin URL pointing at database `name` instead.
pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let (base, query) = admin.split_once('?').unwrap_or((admin.as_str(), ""));
    let cut = base.rfind('/').unwrap_or(base.len());
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..cut])
}

/// Runs `sql` (a CREATE or DROP DATABASE) as the admin.
pub async fn admin_sql(sql: String) {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL for the bench");
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .expect("create or drop the bench's database");
}
