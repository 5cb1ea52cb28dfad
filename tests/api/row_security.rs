//! Client isolation inside PostgreSQL: row-level security on every table of client data, so a query that
//! forgot its client filter, run for one client, reaches that client's rows and no other's. The store's own
//! filters are tested everywhere else (`isolation.rs`); here the filters are left out on purpose.

use recado::domain::{ClientSlug, PersonId};
use recado::store::Scope;
use reqwest::StatusCode;
use serde_json::json;

use crate::database::{Database, postgres_only, url_for};
use crate::helpers::spawn_app;

/// Tables that are not client data in this sense: read to authenticate, before any scope is known.
const IDENTITY: [&str; 2] = ["people", "tokens"];

/// Begins a transaction for the dental clinic only, as the store does for its token.
async fn scoped_to_dental(role: &tokio_postgres::Client) {
    role.batch_execute("BEGIN").await.expect("begin");
    let scope = "SELECT set_config('recado.scope', 'clients', true), set_config('recado.clients', 'dental', true)";
    role.execute(scope, &[]).await.expect("scoped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_forgets_its_client_filter_reaches_only_the_scoped_clients_rows() {
    if postgres_only("row-level security is PostgreSQL's; SQLite has only the queries' own filters") {
        return;
    }
    let app = spawn_app().await;
    for (slug, handle) in [("dental", "+34600111222"), ("bakery", "+34700111222")] {
        let token = app.create_client(slug).await;
        app.ingest_processed(slug, &token, "1", handle, "Hola, quin horari teniu?").await;
        let article = json!({ "language": "ca", "title": "Horari", "body": "De 9 a 18h." });
        let (status, created) = app.post(&format!("/api/v1/clients/{slug}/kb/articles"), &app.admin, article).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    let slug = |slug: &str| ClientSlug::parse(slug).expect("slug");

    // What the server's transactions for a caller reach when their statements name no client.
    assert_eq!(app.db.clients_visible_to(Scope::Client(slug("dental"))).await.expect("read"), [slug("dental")]);
    let assistant = Scope::Assistant { person: PersonId::generate(), clients: vec![slug("bakery")] };
    assert_eq!(app.db.clients_visible_to(assistant).await.expect("read"), [slug("bakery")]);
    let none = Scope::Assistant { person: PersonId::generate(), clients: Vec::new() };
    assert!(app.db.clients_visible_to(none).await.expect("read").is_empty(), "an assistant serving nobody");
    assert_eq!(app.db.clients_visible_to(Scope::All).await.expect("read"), [slug("bakery"), slug("dental")]);

    // Every table with a client column has row-level security, forced on the role that owns it.
    let superuser = Database::of(&app.data_dir);
    let tables: Vec<String> = superuser
        .query(
            "SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity FROM pg_class c
             WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
               AND (c.relname = 'clients' OR EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attname = 'client_id' AND NOT a.attisdropped))
             ORDER BY c.relname",
            &[],
        )
        .await
        .into_iter()
        .filter(|row| !IDENTITY.contains(&row[0].text()))
        .map(|row| {
            assert_eq!(row[1].integer(), 1, "{} has forced row-level security", row[0].text());
            row[0].text().to_owned()
        })
        .collect();
    assert!(tables.len() >= 20, "the tables of client data: {tables:?}");

    // The tables' own role, as another program logging in with it would be: a session that says nothing
    // reaches nothing; one scoped to the dental clinic reaches its rows only, and cannot write another's.
    let (role, connection) =
        tokio_postgres::connect(&url_for(&app.data_dir), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let column = |table: &str| if table == "clients" { "id" } else { "client_id" };
    let mut reached_by_dental = 0;
    for table in &tables {
        let everyone: i64 = superuser.value(&format!("SELECT COUNT(*) FROM {table}"), &[]).await.integer();
        let count = format!("SELECT COUNT(*) FROM {table}");
        let unscoped: i64 = role.query_one(&count, &[]).await.expect("count").get(0);
        assert_eq!(unscoped, 0, "{table}: {everyone} rows, none reached without a scope");
        scoped_to_dental(&role).await;
        let others = format!("SELECT COUNT(*) FROM {table} WHERE {} <> 'dental'", column(table));
        let reached: i64 = role.query_one(&others, &[]).await.expect("count").get(0);
        assert_eq!(reached, 0, "{table}: no other client's row reached");
        let own: i64 = role.query_one(&count, &[]).await.expect("count").get(0);
        reached_by_dental += own;
        role.batch_execute("ROLLBACK").await.expect("rollback");
    }
    let dental_rows = superuser.value("SELECT COUNT(*) FROM messages WHERE client_id = 'dental'", &[]).await.integer();
    assert!(dental_rows > 0 && reached_by_dental > dental_rows, "the scope reaches its own rows");
    let others = superuser.value("SELECT COUNT(*) FROM messages WHERE client_id = 'bakery'", &[]).await.integer();
    assert!(others > 0, "the other client has rows to hide");

    scoped_to_dental(&role).await;
    let written = role
        .execute(
            "INSERT INTO audit_log (client_id, id, actor, action, detail, at) VALUES ('bakery', 'aud_x', 'x', 'x', '{}', 0)",
            &[],
        )
        .await;
    let code = written.expect_err("another client's row is refused").code().cloned();
    assert_eq!(code, Some(tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    role.batch_execute("ROLLBACK").await.expect("rollback");
    app.stop().await;
}
