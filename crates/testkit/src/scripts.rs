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
