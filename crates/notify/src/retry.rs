//! The shared retry loop of the sinks: publish what is pending, back off, try again until every
//! notification is settled, the publish timeout passes, or the run is cancelled.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Reconnect and republish backoff: 100 ms doubling to 5 s, with jitter so members restarted
/// together do not reconnect in lock-step.
pub(crate) fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Sleeps the next backoff step, cut short by the deadline or cancellation. False when no time
/// is left to try again.
pub(crate) async fn pause(
    backoff: &mut impl Iterator<Item = Duration>,
    deadline: Instant,
    cancel: &CancellationToken,
) -> bool {
    let now = Instant::now();
    if now >= deadline || cancel.is_cancelled() {
        return false;
    }
    let step = backoff.next().unwrap_or(Duration::from_secs(5));
    let wake = (now + step).min(deadline);
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep_until(wake) => Instant::now() < deadline,
    }
}
