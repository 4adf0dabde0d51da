//! SIGINT/SIGTERM → cancellation.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM; a second signal exits at once.
pub(crate) fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for round in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if round == 0 {
                tracing::info!(
                    "shutting down: finishing the work in hand (signal again to exit now)"
                );
                token.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
}
