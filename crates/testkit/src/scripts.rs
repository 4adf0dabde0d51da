use std::path::PathBuf;
use std::process::Command;

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn run(script: &str, args: &[&str]) -> String {
    let path = repo_root().join("scripts").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `scripts/kafka.sh <args>` (fault injection: `kill 2`, `start 2`...) and returns stdout.
///
/// # Panics
/// When the script fails.
pub fn kafka_script(args: &[&str]) -> String {
    run("kafka.sh", args)
}

/// Runs `scripts/registry.sh <args>` and returns stdout.
///
/// # Panics
/// When the script fails.
pub fn registry_script(args: &[&str]) -> String {
    run("registry.sh", args)
}

/// The Python interpreter of the interop tests (confluent-kafka with its Avro serializer):
/// `ORDERSTREAM_PYTHON` when set, else the venv `scripts/python.sh` makes once and reuses.
///
/// # Panics
/// When the venv cannot be made (the script's message says why).
pub fn python() -> PathBuf {
    match std::env::var_os("ORDERSTREAM_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(run("python.sh", &["path"]).trim()),
    }
}

/// A fresh, empty PostgreSQL database for one test, on the server `scripts/postgres.sh` runs
/// (`ORDERSTREAM_DATABASE_URL` when set, else the script's URL); returns its URL.
///
/// # Panics
/// When the server is not running (the message says how to start it) or refuses.
pub fn fresh_database(name: &str) -> String {
    try_fresh_database(name).unwrap_or_else(|e| panic!("{e}"))
}

/// [`fresh_database`], reporting failure instead of panicking.
///
/// # Errors
/// The server is not running or refuses, or `psql` is missing.
pub fn try_fresh_database(name: &str) -> Result<String, String> {
    let base = match std::env::var("ORDERSTREAM_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let out = Command::new("bash")
                .arg(repo_root().join("scripts/postgres.sh"))
                .arg("url")
                .output()
                .map_err(|e| format!("run scripts/postgres.sh url: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "PostgreSQL is not running: start it with `scripts/services.sh up --with postgres` ({})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    let db: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    psql(&base, &format!("CREATE DATABASE \"{db}\""))?;
    let (server, _) = base
        .rsplit_once('/')
        .ok_or_else(|| "no database in the URL".to_owned())?;
    Ok(format!("{server}/{db}"))
}

/// Drops the database `url` names (made by [`try_fresh_database`]), from the server's
/// `postgres` database.
///
/// # Errors
/// The server refuses (e.g. the database is still in use), or `psql` is missing.
pub fn drop_database(url: &str) -> Result<(), String> {
    let (server, db) = url
        .rsplit_once('/')
        .ok_or_else(|| "no database in the URL".to_owned())?;
    let db = db.split('?').next().unwrap_or(db);
    psql(
        &format!("{server}/postgres"),
        &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
    )
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .map_err(|e| format!("run psql (Debian: apt-get install postgresql-client): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `scripts/rabbitmq.sh <args>` (`restart`, `stop`, `start`...) and returns stdout.
///
/// # Panics
/// When the script fails.
pub fn rabbitmq_script(args: &[&str]) -> String {
    run("rabbitmq.sh", args)
}

/// Runs `scripts/nats.sh <args>` (`restart`, `kill`, `start`...) and returns stdout.
///
/// # Panics
/// When the script fails.
pub fn nats_script(args: &[&str]) -> String {
    run("nats.sh", args)
}

/// The AMQP URL of the RabbitMQ `scripts/rabbitmq.sh` runs: `ORDERSTREAM_AMQP_URL` when set,
/// else the script's URL (with its generated password).
///
/// # Panics
/// When RabbitMQ was never started (the message says how).
pub fn amqp_url() -> String {
    match std::env::var("ORDERSTREAM_AMQP_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => run("rabbitmq.sh", &["url"]).trim().to_owned(),
    }
}

/// The URL of the NATS server `scripts/nats.sh` runs: `ORDERSTREAM_NATS_URL` when set, else
/// the script's.
pub fn nats_url() -> String {
    match std::env::var("ORDERSTREAM_NATS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => run("nats.sh", &["url"]).trim().to_owned(),
    }
}
