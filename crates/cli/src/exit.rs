//! Exit codes, documented in `orderstream --help` and the operations guide.

use std::process::ExitCode;

/// Everything worked.
pub(crate) const SUCCESS: ExitCode = ExitCode::SUCCESS;
/// A runtime failure (unreachable cluster, registry error, ...).
pub(crate) const FAILURE: ExitCode = ExitCode::FAILURE;
/// Invalid configuration or input (exit code 2, like clap's usage errors).
pub(crate) const CONFIG: u8 = 2;
/// The cluster does not match the layout (drift).
pub(crate) const DRIFT: u8 = 3;
/// Some work was not confirmed: events failed or possibly persisted, or a consumer abandoned
/// running work or failed its last commit when stopping.
pub(crate) const INCOMPLETE: u8 = 4;

/// Errors about what the user gave us exit 2; the rest exit 1.
pub(crate) fn code_for(e: &anyhow::Error) -> ExitCode {
    let config = e.chain().any(|c| {
        c.is::<orderstream_topology::TopologyError>()
            && !matches!(
                c.downcast_ref::<orderstream_topology::TopologyError>(),
                Some(
                    orderstream_topology::TopologyError::Admin { .. }
                        | orderstream_topology::TopologyError::TopicAdmin { .. }
                )
            )
    }) || e.chain().any(|c| {
        c.is::<crate::exit::UsageError>()
            // Refused credentials or certificates: the settings are wrong, not the moment.
            || matches!(
                c.downcast_ref::<orderstream_producer::ProducerError>(),
                Some(orderstream_producer::ProducerError::Refused { .. })
            )
            || matches!(
                c.downcast_ref::<orderstream_consumer::ConsumerError>(),
                Some(orderstream_consumer::ConsumerError::Refused { .. })
            )
            || matches!(
                c.downcast_ref::<orderstream_schema::registry_admin::AdminError>(),
                Some(orderstream_schema::registry_admin::AdminError::Unauthorized { .. })
            )
    });
    if config {
        ExitCode::from(CONFIG)
    } else {
        FAILURE
    }
}

/// An error in what the user asked for, as opposed to a failure while doing it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

impl UsageError {
    /// From an error and its causes (the typed errors keep their causes out of their own
    /// message).
    pub(crate) fn of(e: &dyn std::error::Error) -> Self {
        UsageError(orderstream_schema::error_chain(e))
    }
}
