//! Running the built `orderstream` binary in tests.

use std::process::{Command, Output};

/// Runs `orderstream <args>` with the test environment's addresses.
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

/// stdout and stderr as text, for assertion messages.
pub(crate) fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
