//! What a failed transactional call means for the stage, following librdkafka's transactional
//! error contract: retry the call, abort the transaction, or replace the producer.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How the stage reacts to an error of a transactional call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// The same call may be repeated (e.g. a commit that timed out).
    RetryCall,
    /// The transaction must be aborted; its records are processed again.
    Abort,
    /// Another live producer took this transactional id: this member must stop.
    Fenced,
    /// The producer is unusable; a new one (same transactional id) takes over.
    Replace,
}

/// Classifies a transactional call's error.
pub(crate) fn react(e: &KafkaError) -> Reaction {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => match t.code() {
            RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced => Reaction::Fenced,
            _ => Reaction::Replace,
        },
        KafkaError::Transaction(t) if t.txn_requires_abort() => Reaction::Abort,
        KafkaError::Transaction(t) if t.is_retriable() => Reaction::RetryCall,
        // A plain (non-transactional) error, e.g. a local queue error: abort to be safe.
        _ => Reaction::Abort,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_transactional_errors_abort() {
        assert_eq!(
            react(&KafkaError::Canceled),
            Reaction::Abort,
            "an error without transactional flags never lets a transaction commit"
        );
    }
}
