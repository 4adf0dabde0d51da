//! Running the built `orderstream` binary in tests.

use std::process::{Command, Output};

/// Runs `orderstream <args>` with the test environment's addresses.
#[allow(dead_code)] // not every test binary that includes this module runs against services
pub(crate) fn orderstream(env: &orderstream_testkit::TestEnv, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderstream"))
        .args(args)
        .env("ORDERSTREAM_BOOTSTRAP", &env.bootstrap)
        .env("ORDERSTREAM_REGISTRY_URL", &env.registry_url)
        .env_remove("ORDERSTREAM_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run orderstream")
}

/// Starts `orderstream <args>` with the test environment's addresses, its output collected.
#[allow(dead_code)] // not every test binary that includes this module starts a child
pub(crate) fn start(
    env: &orderstream_testkit::TestEnv,
    args: &[&str],
) -> orderstream_testkit::Spawned {
    orderstream_testkit::Spawned::start(
        "orderstream",
        Command::new(env!("CARGO_BIN_EXE_orderstream"))
            .args(args)
            .env("ORDERSTREAM_BOOTSTRAP", &env.bootstrap)
            .env("ORDERSTREAM_REGISTRY_URL", &env.registry_url)
            .env_remove("ORDERSTREAM_CONFIG")
            .env("RUST_LOG", "warn"),
    )
}

/// stdout and stderr as text, for assertion messages.
pub(crate) fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops a long-running `orderstream` child the way a user does (SIGINT, i.e. Ctrl-C) and
/// returns its output; kills it and fails the test when it has not exited within 60 s. Tests
/// give such children a generous `--for` and stop them once their assertions converged, so a
/// slow start (first group join on a busy machine) cannot end the process early.
#[allow(dead_code)] // not every test binary that includes this module stops a child
pub(crate) fn interrupt(child: orderstream_testkit::Spawned) -> Output {
    child.interrupt(std::time::Duration::from_secs(60))
}
