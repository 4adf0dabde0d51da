//! `up`, `down`, `status`: the local cluster and registry, through `scripts/services.sh`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// Finds `scripts/<name>`: in `ORDERSTREAM_SCRIPTS_DIR`, under the working directory, or in
/// the source tree this binary was built from.
fn script(name: &str) -> anyhow::Result<PathBuf> {
    let candidates = [
        std::env::var_os("ORDERSTREAM_SCRIPTS_DIR").map(|d| PathBuf::from(d).join(name)),
        Some(PathBuf::from("scripts").join(name)),
        Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../scripts")
                .join(name),
        ),
    ];
    candidates.into_iter().flatten().find(|p| p.exists()).with_context(|| {
        format!(
            "scripts/{name} not found: run orderstream from a checkout of its repository, or set ORDERSTREAM_SCRIPTS_DIR to its scripts/ directory"
        )
    })
}

fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    run_script("services.sh", args)
}

fn run_script(name: &str, args: &[&str]) -> anyhow::Result<ExitCode> {
    let script = script(name)?;
    let status = Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("{} {} failed ({status})", script.display(), args.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `scripts/<name> <args>` and returns its stdout (trimmed); its stderr goes to ours.
pub(crate) fn script_output(name: &str, args: &[&str]) -> anyhow::Result<String> {
    let script = script(name)?;
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({})",
            script.display(),
            args.join(" "),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) fn up(
    nodes: u8,
    with: &[crate::choices::Service],
    secure: bool,
) -> anyhow::Result<ExitCode> {
    let nodes = nodes.to_string();
    let mut with: Vec<&str> = with.iter().map(|s| s.name()).collect();
    if secure {
        with.push("secure");
    }
    let with = with.join(",");
    let mut args = vec!["up", "--nodes", &nodes];
    if !with.is_empty() {
        args.extend(["--with", &with]);
    }
    run(&args)
}

pub(crate) fn down() -> anyhow::Result<ExitCode> {
    run(&["down"])
}

pub(crate) fn status() -> anyhow::Result<ExitCode> {
    run(&["status"])
}

/// `bench`: the benchmark suite (`scripts/bench.sh`), which writes BENCHMARKS.md.
pub(crate) fn bench(args: &[String]) -> anyhow::Result<ExitCode> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_script("bench.sh", &args)
}
