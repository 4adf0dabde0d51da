//! Waiting for a condition the test cannot be told about.

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it holds.
///
/// # Panics
/// After `timeout`, saying what it waited for.
pub async fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        poll_until(timeout, f).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Polls `f` every 50 ms until it holds (`true`) or `timeout` passes (`false`, after one last
/// look): for a test that has more to say, or to clean up, when the wait fails.
pub async fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}
