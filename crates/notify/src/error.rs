//! Errors of the notification sinks, with the message and endpoint they concern (credentials
//! never included).

/// Why a notification was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The settings cannot work (refused at start-up).
    #[error("invalid notification settings: {0}")]
    InvalidConfig(String),
    /// The broker could not be reached, or did not confirm within the publish timeout: the
    /// record is retried (transient); nothing was lost.
    #[error("{sink} at {endpoint}: event {event_id} not confirmed: {reason}")]
    Unavailable {
        /// `rabbitmq` or `nats`.
        sink: &'static str,
        /// The server, credentials removed.
        endpoint: String,
        /// The notification's event id.
        event_id: String,
        /// The last error seen.
        reason: String,
    },
    /// The broker refused the message (RabbitMQ `basic.nack`) until the publish timeout.
    #[error("{sink} at {endpoint}: event {event_id} refused by the broker (nack)")]
    Nacked {
        /// `rabbitmq`.
        sink: &'static str,
        /// The server, credentials removed.
        endpoint: String,
        /// The notification's event id.
        event_id: String,
    },
    /// No queue and no alternate exchange took the message: the broker returned it
    /// (`basic.return`). The record is dead-lettered in Kafka with this reason, never dropped.
    #[error("{sink} at {endpoint}: event {event_id} returned unroutable ({route}): {reply}")]
    Unroutable {
        /// `rabbitmq`.
        sink: &'static str,
        /// The server, credentials removed.
        endpoint: String,
        /// The notification's event id.
        event_id: String,
        /// The exchange and routing key published to: `exchange X, routing key Y`.
        route: String,
        /// The broker's reply code and text.
        reply: String,
    },
    /// Declaring the broker-side topology (exchanges, queues, stream) failed.
    #[error("{sink} at {endpoint}: declaring {what} failed: {reason}")]
    Declare {
        /// `rabbitmq` or `nats`.
        sink: &'static str,
        /// The server, credentials removed.
        endpoint: String,
        /// What was being declared.
        what: String,
        /// The broker's answer.
        reason: String,
    },
    /// The first connection failed (bad URL, server down, credentials refused).
    #[error("{sink}: cannot connect to {endpoint}: {reason}")]
    Connect {
        /// `rabbitmq` or `nats`.
        sink: &'static str,
        /// The server, credentials removed.
        endpoint: String,
        /// The client's error.
        reason: String,
    },
}

/// `url` with any user information removed, for logs and errors: `amqp://u:p@h:5672/v` →
/// `amqp://h:5672/v`.
pub fn endpoint(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_drops_credentials_only() {
        assert_eq!(
            endpoint("amqp://user:secret@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(
            endpoint("nats://tok@localhost:4222"),
            "nats://localhost:4222"
        );
        assert_eq!(endpoint("nats://localhost:4222"), "nats://localhost:4222");
        assert_eq!(endpoint("localhost:4222"), "localhost:4222");
    }
}
