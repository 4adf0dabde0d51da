//! What the brokers last said to a client, so that a start-up failure can say *why* instead of
//! "no metadata within 10 s". librdkafka reports a refused password or an untrusted certificate
//! only through the client context's error callback, and keeps reconnecting; the metadata call
//! that the start-up check makes just times out.

use std::sync::Mutex;

use rdkafka::error::RDKafkaErrorCode;

/// The last connection-level error a client context saw. Shared by the context (writer) and the
/// start-up check (reader).
#[derive(Debug, Default)]
pub struct LastBrokerError {
    last: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

/// A broker refused this client: retrying with the same settings cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `Authentication` (wrong credentials or mechanism) or `SSL` (certificate not trusted, host
    /// name mismatch, no TLS listener).
    pub code: RDKafkaErrorCode,
    /// librdkafka's explanation, naming the broker.
    pub reason: String,
}

impl LastBrokerError {
    /// Called from a client context's `error` callback.
    pub fn record(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let code = code.unwrap_or(RDKafkaErrorCode::Fail);
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A refusal is the root cause, and "all brokers down" only a summary: neither may hide
        // what came before.
        let keep = match last.as_ref() {
            Some((c, _)) if is_refusal(*c) => !is_refusal(code),
            Some(_) => code == RDKafkaErrorCode::AllBrokersDown,
            None => false,
        };
        if !keep {
            *last = Some((code, reason.to_owned()));
        }
    }

    /// Called from a client context's `log` callback: librdkafka explains a dropped connection
    /// (facility `FAIL`) only in its log, the error callback then says just "brokers are down".
    pub fn record_log(&self, facility: &str, message: &str) {
        if facility == "FAIL" {
            self.record(Some(RDKafkaErrorCode::BrokerTransportFailure), message);
        }
    }

    /// The refusal seen, if any.
    pub fn refusal(&self) -> Option<Refusal> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.as_ref()
            .filter(|(code, _)| is_refusal(*code))
            .map(|(code, reason)| Refusal {
                code: *code,
                reason: reason.clone(),
            })
    }

    /// The last error's explanation, if any (for "unreachable" messages), with a hint when it
    /// shows a protocol mismatch.
    pub fn reason(&self) -> Option<String> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.as_ref()
            .map(|(_, reason)| match protocol_hint(reason) {
                Some(hint) => format!("{reason}; {hint}"),
                None => reason.clone(),
            })
    }
}

/// How a refusal reads in a message: `Kafka at HOST <verb>: reason`.
pub fn refusal_verb(code: RDKafkaErrorCode) -> String {
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            "refused the credentials".to_owned()
        }
        RDKafkaErrorCode::SSL => "failed the TLS handshake".to_owned(),
        other => format!("refused the client ({other:?})"),
    }
}

/// A broker that closes the connection at the very first request (`ApiVersion`) is almost
/// always a TLS or SASL listener spoken to in plaintext, or the reverse.
fn protocol_hint(reason: &str) -> Option<&'static str> {
    (reason.contains("APIVERSION_QUERY") && !reason.contains("security.protocol")).then_some(
        "the broker closed the connection at the first request: it probably expects another security.protocol (TLS or SASL: --security-protocol)",
    )
}

fn is_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_not_hidden_by_the_disconnects_that_follow() {
        let last = LastBrokerError::default();
        assert_eq!(last.refusal(), None);
        last.record(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "disconnected",
        );
        assert_eq!(last.refusal(), None);
        assert_eq!(last.reason().as_deref(), Some("disconnected"));
        last.record(
            Some(RDKafkaErrorCode::Authentication),
            "SASL authentication error",
        );
        last.record(
            Some(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let refusal = last.refusal().expect("kept");
        assert_eq!(refusal.code, RDKafkaErrorCode::Authentication);
        assert_eq!(refusal.reason, "SASL authentication error");
    }

    #[test]
    fn a_plaintext_client_on_a_tls_listener_gets_a_hint() {
        let last = LastBrokerError::default();
        last.record_log(
            "FAIL",
            "127.0.0.1:19092/bootstrap: Disconnected: connection closed by peer (after 2ms in state APIVERSION_QUERY)",
        );
        last.record(
            Some(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let reason = last.reason().expect("recorded");
        assert!(reason.contains("APIVERSION_QUERY"), "{reason}");
        assert!(reason.contains("security.protocol"), "{reason}");
        assert_eq!(
            last.refusal(),
            None,
            "not a refusal: it may be a broker restarting"
        );
    }
}
