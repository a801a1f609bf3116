//! `boxoffice user create`: an operator bootstraps accounts (the first admin) from the command
//! line, against `DATABASE_URL` or the embedded cluster in the data directory, whether or not
//! the server is running; then signs in with them over HTTP.

use crate::{BOXOFFICE, Rig};
use boxoffice_testkit::required_env;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use uuid::Uuid;

const PASSWORD: &str = "operator chose this";

/// Runs `boxoffice user create ARGS` with only `env` (and PATH) in its environment, in `dir`,
/// writing `stdin` to it.
fn user_create(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BOXOFFICE)
        .args(["user", "create"])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run boxoffice user create");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The id printed by a successful run.
fn created(output: &Output) -> Uuid {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "user create failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.trim().parse().unwrap_or_else(|e| panic!("not a user id ({e}): {stdout:?}"))
}

/// A failed run, and what it said.
fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "accepted: {}", String::from_utf8_lossy(&output.stdout));
    assert!(output.stdout.is_empty(), "printed an id on failure: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn login(base: &str, email: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn user_create_makes_an_admin_who_signs_in() {
    let Rig { serial: _serial, dir, db_url, db, spec } = Rig::new("user-create", &[]).await;
    let env = [("DATABASE_URL", db_url.as_str())];
    // The database is fresh: the command migrates it.
    let output = user_create(
        dir.path(),
        &env,
        &["--email", "Root@Example.com", "--role", "admin", "--name", "Root"],
        &format!("{PASSWORD}\n"),
    );
    let admin_id = created(&output);

    // Refused, with a message, and nothing written: a taken email (any case), bad input.
    let taken = refused(&user_create(
        dir.path(),
        &env,
        &["--email", "root@example.com", "--role", "staff"],
        "another password\n",
    ));
    assert!(taken.contains("exists"), "{taken}");
    for (args, stdin, says) in [
        (&["--email", "not-an-email", "--role", "admin"][..], "long enough password\n", "email"),
        (&["--email", "short@example.com", "--role", "admin"], "short\n", "password"),
        (&["--email", "empty@example.com", "--role", "admin"], "", "password"),
        (&["--email", "name@example.com", "--role", "admin", "--name", "  "], "long enough password\n", "name"),
        (&["--email", "role@example.com", "--role", "owner"], "long enough password\n", "owner"),
    ] {
        let message = refused(&user_create(dir.path(), &env, args, stdin));
        assert!(message.to_lowercase().contains(says), "{args:?}: {message}");
    }
    let users: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT user_id, email, user_type FROM users").fetch_all(&db).await.unwrap();
    assert_eq!(users, vec![(admin_id, "Root@Example.com".to_owned(), "admin".to_owned())]);

    // The server on that database signs the admin in, and the admin can act as one.
    let server = spec.start().await;
    let r = login(&spec.base(), "root@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["user_id"], admin_id.to_string());
    assert_eq!(body["user"]["user_type"], "admin");
    let me = reqwest::Client::new()
        .get(format!("{}/auth/me", spec.base()))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(login(&spec.base(), "root@example.com", "a wrong password").await.status(), StatusCode::UNAUTHORIZED);
    server.terminate(std::time::Duration::from_secs(30)).await;
    spec.assert_no_panic_in_log();
}

/// With no `DATABASE_URL`, the command uses the embedded cluster in the data directory: it
/// starts the cluster when nothing runs (and stops it after), and uses the running server's
/// cluster when the server is up.
#[tokio::test]
async fn user_create_works_on_the_embedded_cluster_with_or_without_the_server() {
    let bin_dir = required_env("BOXOFFICE_TEST_PG_BIN_DIR");
    let server_env = [("DATABASE_URL", ""), ("BOXOFFICE_PG_BIN_DIR", bin_dir.as_str())];
    let Rig { serial: _serial, dir, spec, .. } = Rig::new("user-create-embedded", &server_env).await;
    // The server's data directory (see ServerSpec).
    let data_dir = dir.path().join("server");
    let env = [("BOXOFFICE_DATA_DIR", data_dir.to_str().unwrap()), ("BOXOFFICE_PG_BIN_DIR", bin_dir.as_str())];

    // Nothing runs: the command starts the cluster, creates the admin, stops it.
    created(&user_create(
        dir.path(),
        &env,
        &["--email", "admin@example.com", "--role", "admin"],
        &format!("{PASSWORD}\n"),
    ));
    assert!(!data_dir.join("postgres/postmaster.pid").exists(), "the cluster was left running");

    // The server on the same data directory, then the command beside it.
    let server = spec.start().await;
    created(&user_create(
        dir.path(),
        &env,
        &["--email", "seller@example.com", "--role", "organizer"],
        &format!("{PASSWORD}\n"),
    ));
    let message = refused(&user_create(
        dir.path(),
        &env,
        &["--email", "admin@example.com", "--role", "admin"],
        &format!("{PASSWORD}\n"),
    ));
    assert!(message.contains("exists"), "{message}");
    for (email, role) in [("admin@example.com", "admin"), ("seller@example.com", "organizer")] {
        let r = login(&spec.base(), email, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "{email}");
        assert_eq!(r.json::<Value>().await.unwrap()["user"]["user_type"], role);
    }
    // The server was not disturbed.
    let health = reqwest::get(format!("{}/readyz", spec.base())).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(server.terminate(std::time::Duration::from_secs(60)).await.is_some(), "the server did not stop");
    spec.assert_no_panic_in_log();
}
