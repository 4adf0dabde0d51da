//! Waiting for a condition the test cannot be told about.

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it holds.
///
/// # Panics
/// After `timeout`, saying what it waited for.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
