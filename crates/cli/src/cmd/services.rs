//! `up`, `down`, `status`: the local cluster and registry, through `scripts/services.sh`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// Finds `scripts/services.sh`: next to the working directory, or in the source tree this binary
/// was built from.
fn services_script() -> anyhow::Result<PathBuf> {
    let candidates = [
        PathBuf::from("scripts/services.sh"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services.sh"),
    ];
    candidates
        .into_iter()
        .find(|p| p.exists())
        .context("scripts/services.sh not found: run orderstream from the repository root")
}

fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    let script = services_script()?;
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

pub(crate) fn up(nodes: u8) -> anyhow::Result<ExitCode> {
    run(&["up", "--nodes", &nodes.to_string()])
}

pub(crate) fn down() -> anyhow::Result<ExitCode> {
    run(&["down"])
}

pub(crate) fn status() -> anyhow::Result<ExitCode> {
    run(&["status"])
}
